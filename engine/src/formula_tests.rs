//! The `[[tests]]` of a formula file: inline rows replace the named
//! sources, the formula runs over the test's periods, and the expected
//! scores are compared with a tolerance.

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use formulas::{ExpectKey, ExpectWhat, TestCase, TestValue};

use crate::error::{Error, Result};
use crate::load::Loaded;
use crate::rollup::ResultRow;
use crate::score::{ScoreOptions, score};

/// One expectation's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// The expectation's key (`score`, `"segment=smb value.rollup"`, ...).
    pub key: String,
    /// `None`: NULL expected.
    pub expected: Option<f64>,
    pub actual: Option<f64>,
    pub passed: bool,
}

/// One test's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct TestOutcome {
    pub name: String,
    pub checks: Vec<Check>,
    /// Set when the test could not run (bad rows, unknown source).
    pub error: Option<String>,
}

impl TestOutcome {
    pub fn passed(&self) -> bool {
        self.error.is_none() && self.checks.iter().all(|c| c.passed)
    }
}

/// Runs every test of a formula file.
pub async fn run_tests(loaded: &Loaded) -> Result<Vec<TestOutcome>> {
    let mut out = Vec::new();
    for t in &loaded.formula.file.tests {
        let outcome = match run_one(loaded, t).await {
            Ok(checks) => TestOutcome {
                name: t.name.clone(),
                checks,
                error: None,
            },
            Err(e) => TestOutcome {
                name: t.name.clone(),
                checks: Vec::new(),
                error: Some(e.to_string()),
            },
        };
        out.push(outcome);
    }
    Ok(out)
}

/// Columns the formula names in a source's measures: those in `expr` are
/// numbers (Float64), the others (filters) text.
fn referenced_columns(loaded: &Loaded, source: &str) -> Vec<(String, DataType)> {
    let f = &loaded.formula;
    let mut out: Vec<(String, DataType)> = Vec::new();
    for (m, cols) in f.file.measures.iter().zip(&f.measure_columns) {
        if m.source.value != source {
            continue;
        }
        for (c, span) in cols {
            let in_expr = m.expr.span.start <= span.start && span.end <= m.expr.span.end;
            let ty = if in_expr {
                DataType::Float64
            } else {
                DataType::Utf8
            };
            match out.iter_mut().find(|(n, _)| n == c) {
                Some(e) if ty == DataType::Float64 => e.1 = ty,
                Some(_) => {}
                None => out.push((c.clone(), ty)),
            }
        }
    }
    if let Some(e) = f.file.entity().filter(|e| e.name.value == source) {
        for d in &f.file.dimensions {
            if !out.iter().any(|(n, _)| *n == d.column.value) {
                out.push((d.column.value.clone(), DataType::Utf8));
            }
        }
        for t in [&e.active_from, &e.active_to].into_iter().flatten() {
            if !out.iter().any(|(n, _)| *n == t.value) {
                out.push((t.value.clone(), DataType::Utf8));
            }
        }
    }
    out
}

fn batch_of(
    loaded: &Loaded,
    source: &str,
    rows: &[Vec<(String, TestValue)>],
) -> Result<RecordBatch> {
    let mut names: Vec<String> = Vec::new();
    for r in rows {
        for (k, _) in r {
            if !names.contains(k) {
                names.push(k.clone());
            }
        }
    }
    let mut fields = Vec::new();
    let mut cols: Vec<ArrayRef> = Vec::new();
    for name in &names {
        let cells: Vec<Option<&TestValue>> = rows
            .iter()
            .map(|r| r.iter().find(|(k, _)| k == name).map(|(_, v)| v))
            .collect();
        let present: Vec<&TestValue> = cells.iter().flatten().copied().collect();
        let all = |f: fn(&TestValue) -> bool| present.iter().all(|v| f(v));
        let (ty, col): (DataType, ArrayRef) = if all(|v| matches!(v, TestValue::Int(_))) {
            let v = cells.iter().map(|c| match c {
                Some(TestValue::Int(i)) => Some(*i),
                _ => None,
            });
            (DataType::Int64, Arc::new(Int64Array::from_iter(v)))
        } else if all(|v| matches!(v, TestValue::Int(_) | TestValue::Float(_))) {
            let v = cells.iter().map(|c| match c {
                Some(TestValue::Int(i)) => Some(*i as f64),
                Some(TestValue::Float(f)) => Some(*f),
                _ => None,
            });
            (DataType::Float64, Arc::new(Float64Array::from_iter(v)))
        } else if all(|v| matches!(v, TestValue::Bool(_))) {
            let v = cells.iter().map(|c| match c {
                Some(TestValue::Bool(b)) => Some(*b),
                _ => None,
            });
            (DataType::Boolean, Arc::new(BooleanArray::from_iter(v)))
        } else if all(|v| matches!(v, TestValue::Str(_) | TestValue::Datetime(_))) {
            let v = cells.iter().map(|c| match c {
                Some(TestValue::Str(s)) | Some(TestValue::Datetime(s)) => Some(s.clone()),
                _ => None,
            });
            (DataType::Utf8, Arc::new(StringArray::from_iter(v)))
        } else {
            return Err(Error::User(format!(
                "test rows of `{source}`: column `{name}` mixes types (numbers, text, booleans)"
            )));
        };
        fields.push(Field::new(name, ty, true));
        cols.push(col);
    }
    // Columns the formula needs but the rows leave out are NULL.
    for (name, ty) in referenced_columns(loaded, source) {
        if !names.contains(&name) {
            cols.push(datafusion::arrow::array::new_null_array(&ty, rows.len()));
            fields.push(Field::new(name, ty, true));
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)
        .map_err(|e| Error::User(format!("test rows of `{source}`: {e}")))
}

async fn run_one(loaded: &Loaded, t: &TestCase) -> Result<Vec<Check>> {
    let mut options = ScoreOptions::default();
    for d in &t.data {
        let name = &d.source.value;
        if loaded.formula.file.source(name).is_none() {
            return Err(Error::User(format!(
                "test data for unknown source `{name}`"
            )));
        }
        options
            .inline
            .push((name.clone(), batch_of(loaded, name, &d.rows)?));
    }
    let grain = loaded.formula.file.grain;
    let cal = crate::calendar::Calendar::of(&loaded.formula.file);
    let mut periods = BTreeSet::new();
    for p in &t.periods {
        let (d, _) = cal.parse_span(&p.value).ok_or_else(|| {
            Error::User(format!("test period `{}` is not a date or period", p.value))
        })?;
        periods.insert(cal.floor(grain, d));
    }
    let periods: Vec<_> = periods.into_iter().collect();
    let Some(first) = periods.first().copied() else {
        return Err(Error::User("the test names no period".into()));
    };
    let rows = score(loaded, &periods, &options).await?.rows;
    let tolerance = t.tolerance.unwrap_or(1e-9);
    let find = |dim: Option<(&str, &str)>| -> Option<&ResultRow> {
        rows.iter().find(|r| {
            r.period == first
                && match dim {
                    None => r.dimension.is_none(),
                    Some((d, v)) => {
                        r.dimension.as_deref() == Some(d) && r.value.as_deref() == Some(v)
                    }
                }
        })
    };
    let mut checks = Vec::new();
    for e in &t.expect {
        let key = ExpectKey::parse(&e.key.value).map_err(Error::User)?;
        let group = key.group.as_ref().map(|(d, v)| (d.as_str(), v.as_str()));
        let Some(row) = find(group) else {
            // A group with no row: say which values the dimension has.
            let (d, v) = group.unwrap_or(("", ""));
            let known: Vec<String> = rows
                .iter()
                .filter(|r| r.period == first && r.dimension.as_deref() == Some(d))
                .map(|r| r.value.clone().unwrap_or_else(|| "NULL".into()))
                .collect();
            return Err(Error::User(format!(
                "no group `{d}={v}` in {first}: the values of `{d}` there are {}",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            )));
        };
        let component = |c: &str| {
            row.components
                .0
                .iter()
                .find(|(n, _)| n == c)
                .map(|(_, r)| r)
        };
        let actual = match &key.what {
            ExpectWhat::Score => row.score,
            ExpectWhat::Population => Some(row.population as f64),
            ExpectWhat::Included => Some(row.included as f64),
            ExpectWhat::Excluded => Some(row.excluded as f64),
            ExpectWhat::Rollup(c) => component(c).and_then(|r| r.rollup),
            ExpectWhat::Contribution(c) => component(c).and_then(|r| r.contribution),
        };
        let passed = match (e.value, actual) {
            (None, None) => true,
            (Some(x), Some(a)) => (a - x).abs() <= tolerance,
            _ => false,
        };
        checks.push(Check {
            key: e.key.value.clone(),
            expected: e.value,
            actual,
            passed,
        });
    }
    Ok(checks)
}
