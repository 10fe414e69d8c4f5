//! The customers behind a number: pages of one period's customers of a
//! group, sorted by score, by a component's contribution or by change
//! since the previous period, and one customer's rows over time, read from
//! the per-customer detail of the store (`croo run --detail`,
//! `detail.parquet`).
//!
//! [`read_period`] loads one period of a run (detail files are sorted by
//! period, so Parquet statistics skip the other periods) into a compact
//! [`PeriodTable`]; [`PeriodTable::order`] sorts it once for a sort key;
//! [`PeriodTable::page`] walks that order keeping the customers a caller
//! may see. [`read_customer`] reads one customer's rows of a run.
//!
//! A customer's score is shown on the published scale (`[formula] scale`
//! x the detail's `score`), so that a group's score is the rollup-weighted
//! mean of its customers'. A customer's contribution to a component is
//! `scale x weight x value` for a weighted sum, and its share of the score
//! (`engine::aggregation`, read from the detail) for a geometric, harmonic
//! or re-weighted mean: the contributions add up to its score, and their
//! rollup over a group is the group's contribution; a formula that combines
//! its components with `[score] expr` has none.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use chrono::NaiveDate;
use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::prelude::{ParquetReadOptions, SessionContext, col, lit};
use datafusion::scalar::ScalarValue;
use serde::Serialize;

use crate::columns::{INCLUDED, KEY, PERIOD, SCORE, WEIGHT, dim_col};
use crate::error::{Error, Result};
use crate::store;

/// What a page is sorted by. Ascending puts the lowest first: the
/// customers pulling a group down, or (for `change`) falling most.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Sort {
    Score { descending: bool },
    Contribution { component: String, descending: bool },
    Change { descending: bool },
}

impl Sort {
    /// `score`, `-score`, `change`, `-change`, `contribution.NAME`,
    /// `-contribution.NAME` (`-`: highest first).
    pub fn parse(s: &str) -> Option<Sort> {
        let (descending, name) = match s.trim().strip_prefix('-') {
            Some(n) => (true, n),
            None => (false, s.trim()),
        };
        match name {
            "score" => Some(Sort::Score { descending }),
            "change" => Some(Sort::Change { descending }),
            _ => name
                .strip_prefix("contribution.")
                .filter(|c| !c.is_empty())
                .map(|c| Sort::Contribution {
                    component: c.to_string(),
                    descending,
                }),
        }
    }

    fn descending(&self) -> bool {
        match self {
            Sort::Score { descending }
            | Sort::Change { descending }
            | Sort::Contribution { descending, .. } => *descending,
        }
    }
}

/// The names of a formula's columns in its detail files.
#[derive(Debug, Clone)]
struct Layout {
    key: String,
    period: String,
    dims: Vec<String>,
    measures: Vec<String>,
    derived: Vec<String>,
    components: Vec<(String, f64)>,
    score: String,
    weight: String,
    included: String,
    scale: f64,
    /// False when `[score] expr` combines the components.
    additive: bool,
    /// The per-customer contribution columns (geometric, harmonic or
    /// re-weighted means: `engine::aggregation`), in component order.
    shares: Option<Vec<String>>,
}

impl Layout {
    fn of(f: &formulas::Formula) -> Layout {
        let file = &f.file;
        let mut internal = vec![KEY.to_string(), PERIOD.to_string()];
        internal.extend((0..file.dimensions.len()).map(dim_col));
        internal.extend(file.measures.iter().map(|m| m.name.value.clone()));
        internal.extend(file.derived.iter().map(|d| d.name.value.clone()));
        internal.extend(file.components.iter().map(|c| c.name.value.clone()));
        internal.extend([SCORE.to_string(), WEIGHT.to_string(), INCLUDED.to_string()]);
        let per_customer = f.score.is_none() && crate::aggregation::per_customer(file);
        if per_customer {
            internal.extend(
                file.components
                    .iter()
                    .map(|c| crate::aggregation::contribution_col(&c.name.value)),
            );
        }
        let names = crate::columns::detail_names(f, &internal);
        let nd = file.dimensions.len();
        let (nm, nv) = (file.measures.len(), file.derived.len());
        let at = |i: usize| names[i].clone();
        let base = 2 + nd + nm + nv;
        Layout {
            key: at(0),
            period: at(1),
            dims: (0..nd).map(|i| at(2 + i)).collect(),
            measures: (0..nm).map(|i| at(2 + nd + i)).collect(),
            derived: (0..nv).map(|i| at(2 + nd + nm + i)).collect(),
            components: file
                .components
                .iter()
                .enumerate()
                .map(|(i, c)| (at(base + i), c.weight))
                .collect(),
            score: at(base + file.components.len()),
            weight: at(base + file.components.len() + 1),
            included: at(base + file.components.len() + 2),
            scale: file.scale,
            additive: f.score.is_none() && !per_customer,
            shares: per_customer.then(|| {
                (0..file.components.len())
                    .map(|i| at(base + file.components.len() + 3 + i))
                    .collect()
            }),
        }
    }

    /// Each component's per-customer contributions (published scale) from
    /// the detail, when the formula has them.
    fn shares_of(&self, b: &RecordBatch) -> Result<Option<Vec<Vec<Option<f64>>>>> {
        self.shares
            .as_ref()
            .map(|cols| {
                cols.iter()
                    .map(|c| Ok(scaled(floats(b, c)?, self.scale)))
                    .collect::<Result<Vec<_>>>()
            })
            .transpose()
    }

    /// Component `k`'s contribution in row `r`: a per-customer share, or
    /// `scale x weight x value` for a plain weighted sum.
    fn contribution(
        &self,
        shares: &Option<Vec<Vec<Option<f64>>>>,
        k: usize,
        r: usize,
        v: Option<f64>,
    ) -> Option<f64> {
        match shares {
            Some(s) => s[k][r],
            None => self
                .additive
                .then(|| v.map(|v| self.scale * self.components[k].1 * v))
                .flatten(),
        }
    }
}

/// The formula a run computed (its folder keeps the file).
fn formula_of(out: &Path, run_id: &str) -> Result<formulas::Formula> {
    let path = store::run_dir(out, run_id).join("formula.toml");
    let text =
        std::fs::read_to_string(&path).map_err(Error::io(format!("reading {}", path.display())))?;
    formulas::check(&formulas::SourceFile::new(path.display().to_string(), text))
        .0
        .ok_or_else(|| {
            Error::User(format!(
                "{}: the run's formula does not check",
                path.display()
            ))
        })
}

/// One period's customers of one run: the columns pages need.
#[derive(Debug)]
pub struct PeriodTable {
    pub run_id: String,
    pub period: NaiveDate,
    keys: Vec<String>,
    /// Dimension name, and per customer an index into its values.
    dims: Vec<(String, Vec<u32>, Vec<Option<String>>)>,
    score: Vec<Option<f64>>,
    included: Vec<bool>,
    /// Component name, weight, and per customer its value.
    components: Vec<(String, f64, Vec<Option<f64>>)>,
    /// Per component, the customers' contributions (published scale).
    contributions: Vec<Vec<Option<f64>>>,
    /// Whether the customers have contributions (not with `[score] expr`).
    has_contributions: bool,
}

/// A sort of a [`PeriodTable`]: its rows in order, with each customer's
/// change since the previous period when sorted by it.
#[derive(Debug)]
pub struct Order {
    rows: Vec<u32>,
    change: Option<Vec<Option<f64>>>,
    previous: Option<Vec<Option<f64>>>,
}

/// One customer of a page.
#[derive(Debug, Clone, Serialize)]
pub struct CustomerRow {
    pub key: String,
    pub score: Option<f64>,
    pub included: bool,
    /// Since the previous period (with `sort=change`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_score: Option<f64>,
    pub dimensions: BTreeMap<String, Option<String>>,
    /// Component -> `{value, contribution}`.
    pub components: BTreeMap<String, ComponentValue>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ComponentValue {
    pub value: Option<f64>,
    /// `scale x weight x value`; absent with `[score] expr`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contribution: Option<f64>,
}

/// A page of customers.
#[derive(Debug, Clone, Serialize)]
pub struct Page {
    /// Customers of the group (and visible) in the period.
    pub total: usize,
    pub customers: Vec<CustomerRow>,
    /// The offset of the next page, when there is one.
    pub next: Option<usize>,
}

fn floats(batch: &RecordBatch, name: &str) -> Result<Vec<Option<f64>>> {
    let a = batch
        .column_by_name(name)
        .ok_or_else(|| Error::User(format!("the detail has no column `{name}`")))?;
    let a =
        cast(a, &DataType::Float64).map_err(|e| Error::engine("reading the detail")(e.into()))?;
    Ok(a.as_primitive::<Float64Type>().iter().collect())
}

/// A customer's score on the published scale (`[formula] scale` x the
/// detail's score), where the group scores are.
fn scaled(v: Vec<Option<f64>>, scale: f64) -> Vec<Option<f64>> {
    v.into_iter().map(|x| x.map(|x| x * scale)).collect()
}

fn texts(batch: &RecordBatch, name: &str) -> Result<Vec<Option<String>>> {
    let a = batch
        .column_by_name(name)
        .ok_or_else(|| Error::User(format!("the detail has no column `{name}`")))?;
    let a = cast(a, &DataType::Utf8).map_err(|e| Error::engine("reading the detail")(e.into()))?;
    Ok(a.as_string::<i32>()
        .iter()
        .map(|v| v.map(str::to_string))
        .collect())
}

/// `detail.parquet` of a run, which must have kept one.
fn detail_path(out: &Path, run_id: &str) -> Result<std::path::PathBuf> {
    let path = store::run_dir(out, run_id).join("detail.parquet");
    if !path.is_file() {
        return Err(Error::User(format!(
            "run {run_id} kept no per-customer detail: run with --detail"
        )));
    }
    Ok(path)
}

/// Reads `detail.parquet` of a run, rows where `filter` holds.
async fn read_detail(
    out: &Path,
    run_id: &str,
    filter: datafusion::prelude::Expr,
) -> Result<RecordBatch> {
    let path = detail_path(out, run_id)?;
    // Filters evaluated while decoding (the key column first, the other
    // columns only where it matched) and pages skipped by their
    // statistics: one customer's rows are a few of millions.
    let config = datafusion::prelude::SessionConfig::new()
        .set_bool("datafusion.execution.parquet.pushdown_filters", true)
        .set_bool("datafusion.execution.parquet.reorder_filters", true)
        .set_bool("datafusion.execution.parquet.enable_page_index", true);
    let ctx = SessionContext::new_with_config(config);
    let df = ctx
        .read_parquet(path.display().to_string(), ParquetReadOptions::default())
        .await
        .map_err(Error::engine("reading the detail"))?
        .filter(filter)
        .map_err(Error::engine("reading the detail"))?;
    let schema = std::sync::Arc::new(df.schema().as_arrow().clone());
    let batches = df
        .collect()
        .await
        .map_err(Error::engine("reading the detail"))?;
    datafusion::arrow::compute::concat_batches(&schema, &batches)
        .map_err(|e| Error::engine("reading the detail")(e.into()))
}

/// The type of column `name` of a Parquet file.
fn key_type(path: &Path, name: &str) -> Result<DataType> {
    let file =
        std::fs::File::open(path).map_err(Error::io(format!("reading {}", path.display())))?;
    let builder =
        datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| Error::engine("reading the detail")(e.into()))?;
    builder
        .schema()
        .field_with_name(name)
        .map(|f| f.data_type().clone())
        .map_err(|_| Error::User(format!("the detail has no column `{name}`")))
}

fn date_lit(d: NaiveDate) -> datafusion::prelude::Expr {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    lit(ScalarValue::Date32(Some((d - epoch).num_days() as i32)))
}

/// One period's customers of run `run_id` in the store `out`.
pub async fn read_period(out: &Path, run_id: &str, period: NaiveDate) -> Result<PeriodTable> {
    let f = formula_of(out, run_id)?;
    let l = Layout::of(&f);
    let b = read_detail(out, run_id, col(l.period.as_str()).eq(date_lit(period))).await?;
    let mut dims = Vec::new();
    for d in &l.dims {
        let values = texts(&b, d)?;
        let mut index: HashMap<Option<String>, u32> = HashMap::new();
        let mut dict = Vec::new();
        let codes = values
            .into_iter()
            .map(|v| {
                *index.entry(v.clone()).or_insert_with(|| {
                    dict.push(v);
                    (dict.len() - 1) as u32
                })
            })
            .collect();
        dims.push((d.clone(), codes, dict));
    }
    let included = b
        .column_by_name(&l.included)
        .and_then(|a| {
            a.as_boolean_opt()
                .map(|a| a.iter().map(|v| v == Some(true)).collect())
        })
        .unwrap_or_else(|| vec![false; b.num_rows()]);
    let mut components = Vec::new();
    for (c, w) in &l.components {
        components.push((c.clone(), *w, floats(&b, c)?));
    }
    let shares = l.shares_of(&b)?;
    let contributions = (0..components.len())
        .map(|k| {
            (0..b.num_rows())
                .map(|r| l.contribution(&shares, k, r, components[k].2[r]))
                .collect()
        })
        .collect();
    Ok(PeriodTable {
        run_id: run_id.to_string(),
        period,
        keys: texts(&b, &l.key)?
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect(),
        dims,
        score: scaled(floats(&b, &l.score)?, l.scale),
        included,
        components,
        contributions,
        has_contributions: l.additive || l.shares.is_some(),
    })
}

impl PeriodTable {
    /// How many customers the period has.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The customer's value of each dimension.
    fn dimensions(&self, row: usize) -> BTreeMap<String, Option<String>> {
        self.dims
            .iter()
            .map(|(d, codes, dict)| (d.clone(), dict[codes[row] as usize].clone()))
            .collect()
    }

    /// The rows sorted by `sort` (NULLs last, ties by key); `previous` is
    /// the previous period's table, for `change`.
    pub fn order(&self, sort: &Sort, previous: Option<&PeriodTable>) -> Result<Order> {
        let (value, previous_scores): (Vec<Option<f64>>, Option<Vec<Option<f64>>>) = match sort {
            Sort::Score { .. } => (self.score.clone(), None),
            Sort::Contribution { component, .. } => {
                if !self.has_contributions {
                    return Err(Error::User(
                        "the formula combines its components with [score] expr: customers have no contributions to sort by".into(),
                    ));
                }
                let Some(k) = self.components.iter().position(|(c, _, _)| c == component) else {
                    return Err(Error::User(format!(
                        "no component `{component}`: sort by contribution.{}",
                        self.components
                            .iter()
                            .map(|c| c.0.as_str())
                            .collect::<Vec<_>>()
                            .join(", contribution.")
                    )));
                };
                (self.contributions[k].clone(), None)
            }
            Sort::Change { .. } => {
                let before: HashMap<&str, Option<f64>> = previous
                    .map(|p| {
                        p.keys
                            .iter()
                            .map(String::as_str)
                            .zip(p.score.iter().copied())
                            .collect()
                    })
                    .unwrap_or_default();
                let prev: Vec<Option<f64>> = self
                    .keys
                    .iter()
                    .map(|k| before.get(k.as_str()).copied().flatten())
                    .collect();
                let change = self
                    .score
                    .iter()
                    .zip(&prev)
                    .map(|(a, b)| Some((*a)? - (*b)?))
                    .collect();
                (change, Some(prev))
            }
        };
        let descending = sort.descending();
        let mut rows: Vec<u32> = (0..self.keys.len() as u32).collect();
        rows.sort_by(|&a, &b| {
            let (x, y) = (value[a as usize], value[b as usize]);
            let by_value = match (x, y) {
                (Some(x), Some(y)) if descending => y.total_cmp(&x),
                (Some(x), Some(y)) => x.total_cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            };
            by_value.then_with(|| self.keys[a as usize].cmp(&self.keys[b as usize]))
        });
        let is_change = matches!(sort, Sort::Change { .. });
        Ok(Order {
            rows,
            change: is_change.then_some(value),
            previous: previous_scores,
        })
    }

    /// For each dimension, whether each of its values is one `scope`
    /// allows.
    fn scope_masks(&self, scope: &Scope) -> Vec<Vec<bool>> {
        self.dims
            .iter()
            .map(|(d, _, dict)| {
                dict.iter()
                    .map(|v| {
                        scope
                            .get(d)
                            .is_some_and(|vs| v.as_ref().is_some_and(|v| vs.contains(v)))
                    })
                    .collect()
            })
            .collect()
    }

    /// The customers at `offset..offset + limit` of `order` among those in
    /// `group` (all when `None`) and, with a `scope`, in one of its groups
    /// ([`sees`]).
    pub fn page(
        &self,
        order: &Order,
        group: Option<(&str, &str)>,
        scope: Option<&Scope>,
        offset: usize,
        limit: usize,
    ) -> Page {
        // The group and the scope as dimension codes: one comparison per
        // customer.
        let group = group.map(|(d, v)| {
            self.dims.iter().position(|(n, _, _)| n == d).and_then(|i| {
                let code = self.dims[i]
                    .2
                    .iter()
                    .position(|x| x.as_deref() == Some(v))?;
                Some((i, code as u32))
            })
        });
        let masks = scope.map(|s| self.scope_masks(s));
        let mut total = 0;
        let mut customers = Vec::new();
        for &r in &order.rows {
            let r = r as usize;
            match group {
                Some(None) => break,
                Some(Some((i, code))) if self.dims[i].1[r] != code => continue,
                _ => {}
            }
            if let Some(m) = &masks
                && !m
                    .iter()
                    .zip(&self.dims)
                    .any(|(allowed, (_, codes, _))| allowed[codes[r] as usize])
            {
                continue;
            }
            if total >= offset && customers.len() < limit {
                customers.push(CustomerRow {
                    key: self.keys[r].clone(),
                    score: self.score[r],
                    included: self.included[r],
                    change: order.change.as_ref().and_then(|c| c[r]),
                    previous_score: order.previous.as_ref().and_then(|p| p[r]),
                    dimensions: self.dimensions(r),
                    components: self
                        .components
                        .iter()
                        .enumerate()
                        .map(|(k, (c, _, v))| {
                            (
                                c.clone(),
                                ComponentValue {
                                    value: v[r],
                                    contribution: self.contributions[k][r],
                                },
                            )
                        })
                        .collect(),
                });
            }
            total += 1;
        }
        let next = (offset + customers.len() < total && !customers.is_empty())
            .then_some(offset + customers.len());
        Page {
            total,
            customers,
            next,
        }
    }
}

/// Groups a reader may see: dimension -> values (an API key's scope).
pub type Scope = BTreeMap<String, Vec<String>>;

/// Whether a customer whose dimension `d` has the value `value_of(d)` is
/// in a group of `scope`. The one rule for pages and single customers.
pub fn sees(scope: &Scope, value_of: &dyn Fn(&str) -> Option<String>) -> bool {
    scope
        .iter()
        .any(|(d, vs)| value_of(d).is_some_and(|v| vs.contains(&v)))
}

/// One customer in one period: everything its score was computed from.
#[derive(Debug, Clone, Serialize)]
pub struct CustomerPeriod {
    pub period: NaiveDate,
    pub run_id: String,
    pub dimensions: BTreeMap<String, Option<String>>,
    pub measures: BTreeMap<String, Option<f64>>,
    pub derived: BTreeMap<String, Option<f64>>,
    pub components: BTreeMap<String, ComponentValue>,
    pub score: Option<f64>,
    pub rollup_weight: Option<f64>,
    pub included: bool,
}

/// The rows of customer `key` in the periods `periods` of run `run_id`.
pub async fn read_customer(
    out: &Path,
    run_id: &str,
    key: &str,
    periods: &[NaiveDate],
) -> Result<Vec<CustomerPeriod>> {
    let f = formula_of(out, run_id)?;
    let l = Layout::of(&f);
    let Some(first) = periods.first() else {
        return Ok(Vec::new());
    };
    // The key compared in the column's own type (a customer is named by
    // its text in the API and on the command line), so that the Parquet
    // page statistics of a file sorted by period then key skip the pages
    // of other customers.
    let key_type = key_type(&detail_path(out, run_id)?, &l.key)?;
    let key_lit = if key_type.is_integer() {
        match key.trim().parse::<i64>() {
            Ok(k) => datafusion::prelude::cast(lit(k), key_type),
            // No integer key is named so: no rows.
            Err(_) => return Ok(Vec::new()),
        }
    } else {
        datafusion::prelude::cast(lit(key), key_type)
    };
    let filter = col(l.key.as_str())
        .eq(key_lit)
        .and(col(l.period.as_str()).gt_eq(date_lit(*first)))
        .and(col(l.period.as_str()).lt_eq(date_lit(*periods.last().unwrap_or(first))));
    let b = read_detail(out, run_id, filter).await?;
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    let days: Vec<Option<i32>> = {
        let a = b
            .column_by_name(&l.period)
            .ok_or_else(|| Error::User("the detail has no period column".into()))?;
        a.as_primitive_opt::<datafusion::arrow::datatypes::Date32Type>()
            .map(|a| a.iter().collect())
            .unwrap_or_default()
    };
    let numbers = |names: &[String]| -> Result<Vec<(String, Vec<Option<f64>>)>> {
        names
            .iter()
            .map(|n| Ok((n.clone(), floats(&b, n)?)))
            .collect()
    };
    let (measures, derived) = (numbers(&l.measures)?, numbers(&l.derived)?);
    let comps: Vec<String> = l.components.iter().map(|c| c.0.clone()).collect();
    let components = numbers(&comps)?;
    let dims: Vec<(String, Vec<Option<String>>)> = l
        .dims
        .iter()
        .map(|d| Ok((d.clone(), texts(&b, d)?)))
        .collect::<Result<_>>()?;
    let shares = l.shares_of(&b)?;
    let (score, weight) = (
        scaled(floats(&b, &l.score)?, l.scale),
        floats(&b, &l.weight)?,
    );
    let included: Vec<bool> = b
        .column_by_name(&l.included)
        .and_then(|a| {
            a.as_boolean_opt()
                .map(|a| a.iter().map(|v| v == Some(true)).collect())
        })
        .unwrap_or_else(|| vec![false; b.num_rows()]);
    let mut out = Vec::new();
    for r in 0..b.num_rows() {
        let Some(day) = days.get(r).copied().flatten() else {
            continue;
        };
        let period = epoch + chrono::Duration::days(i64::from(day));
        if !periods.contains(&period) {
            continue;
        }
        out.push(CustomerPeriod {
            period,
            run_id: run_id.to_string(),
            dimensions: dims
                .iter()
                .map(|(d, v)| (d.clone(), v[r].clone()))
                .collect(),
            measures: measures.iter().map(|(n, v)| (n.clone(), v[r])).collect(),
            derived: derived.iter().map(|(n, v)| (n.clone(), v[r])).collect(),
            components: components
                .iter()
                .enumerate()
                .map(|(k, (n, v))| {
                    (
                        n.clone(),
                        ComponentValue {
                            value: v[r],
                            contribution: l.contribution(&shares, k, r, v[r]),
                        },
                    )
                })
                .collect(),
            score: score[r],
            rollup_weight: weight[r],
            included: included[r],
        });
    }
    out.sort_by_key(|c| c.period);
    Ok(out)
}
