//! Why customers are left out of the rollups. A customer is excluded when
//! their score or rollup weight is NULL or their weight is <= 0; a NULL
//! score comes from a NULL component, which comes from a NULL derived
//! value or measure. For each period, [`causes`] counts the excluded
//! customers per cause: the rollup weight NULL or <= 0, the score NULL, and
//! each measure, derived value and component that the score or the weight
//! depends on and that is NULL for them. A
//! customer counts under every cause that holds for them (a NULL measure
//! usually makes a derived value, a component and the score NULL too):
//! the measures are where to look first.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Date32Type, Int64Type};
use datafusion::functions_aggregate::expr_fn::sum;
use datafusion::logical_expr::{Expr, case, ident, lit};
use datafusion::prelude::{DataFrame, cast, col};
use formulas::Formula;

use crate::columns::{INCLUDED, PERIOD, SCORE, WEIGHT};
use crate::error::{Error, Result};

/// Per period: how many customers were excluded, per cause
/// (`measure \`fcr\` is NULL`, `rollup weight <= 0`, ...), causes with
/// no customer left out.
pub type Exclusions = BTreeMap<NaiveDate, BTreeMap<String, u64>>;

/// The same per group: period -> `dimension=value` (`segment=smb`;
/// `segment=(null)` for a NULL value) -> cause -> customers.
pub type GroupExclusions = BTreeMap<NaiveDate, BTreeMap<String, BTreeMap<String, u64>>>;

/// The name of a group in [`GroupExclusions`].
pub fn group_name(dimension: &str, value: Option<&str>) -> String {
    format!("{dimension}={}", value.unwrap_or("(null)"))
}

/// The names of the definitions the score and the rollup weight depend
/// on, directly or through others: only those can exclude a customer.
fn score_depends_on(f: &Formula) -> std::collections::BTreeSet<String> {
    use formulas::expr::Ast;
    let derived: BTreeMap<&str, &Ast> = f
        .derived
        .iter()
        .map(|(i, a)| (f.file.derived[*i].name.value.as_str(), a))
        .collect();
    let components: BTreeMap<&str, &Ast> = f
        .file
        .components
        .iter()
        .zip(&f.components)
        .map(|(c, a)| (c.name.value.as_str(), a))
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    let mut todo: Vec<&Ast> = f.weight.iter().collect();
    match &f.score {
        Some(score) => todo.push(score),
        None => {
            for (name, a) in &components {
                seen.insert(name.to_string());
                todo.push(a);
            }
        }
    }
    while let Some(a) = todo.pop() {
        for (id, _) in a.identifiers() {
            if seen.insert(id.to_string())
                && let Some(next) = derived.get(id).or_else(|| components.get(id))
            {
                todo.push(next);
            }
        }
    }
    seen
}

/// The causes of exclusion, and how to count each over the per-customer
/// table.
fn causes_of(f: &Formula) -> Vec<(String, Expr)> {
    let used = score_depends_on(f);
    let null = |name: &str| ident(name).is_null();
    let mut out = vec![
        ("rollup weight is NULL".to_string(), null(WEIGHT)),
        (
            "rollup weight is <= 0".to_string(),
            col(WEIGHT).lt_eq(lit(0.0)),
        ),
        ("score is NULL".to_string(), null(SCORE)),
    ];
    for c in f
        .file
        .components
        .iter()
        .filter(|c| used.contains(&c.name.value))
    {
        out.push((
            format!("component `{}` is NULL", c.name.value),
            null(&c.name.value),
        ));
    }
    for (i, _) in &f.derived {
        let d = &f.file.derived[*i].name.value;
        if used.contains(d) {
            out.push((format!("derived value `{d}` is NULL"), null(d)));
        }
    }
    for m in f
        .file
        .measures
        .iter()
        .filter(|m| used.contains(&m.name.value))
    {
        out.push((
            format!("measure `{}` is NULL", m.name.value),
            null(&m.name.value),
        ));
    }
    out
}

/// Counts the excluded customers of each period per cause (see the module
/// documentation), over the per-customer table `df`: for the whole
/// population, and for each group of each dimension.
pub async fn causes(f: &Formula, df: &DataFrame) -> Result<(Exclusions, GroupExclusions)> {
    let whole = count(f, df, None).await?;
    let mut groups = GroupExclusions::new();
    for (i, d) in f.file.dimensions.iter().enumerate() {
        for ((day, value), per) in count(f, df, Some(&crate::columns::dim_col(i))).await? {
            groups
                .entry(day)
                .or_default()
                .insert(group_name(&d.name.value, value.as_deref()), per);
        }
    }
    let whole = whole
        .into_iter()
        .map(|((day, _), per)| (day, per))
        .collect();
    Ok((whole, groups))
}

/// Per period (and value of the dimension column `by`), the causes.
async fn count(
    f: &Formula,
    df: &DataFrame,
    by: Option<&str>,
) -> Result<BTreeMap<(NaiveDate, Option<String>), BTreeMap<String, u64>>> {
    let causes = causes_of(f);
    let count_if = |e: Expr| {
        sum(case(e)
            .when(lit(true), lit(1i64))
            .otherwise(lit(0i64))
            .unwrap_or(lit(0i64)))
    };
    let mut aggs = vec![datafusion::functions_aggregate::expr_fn::count(lit(1i64)).alias("n")];
    for (i, (_, e)) in causes.iter().enumerate() {
        aggs.push(count_if(e.clone()).alias(format!("c{i}")));
    }
    let mut keys = vec![col(PERIOD)];
    if let Some(by) = by {
        keys.push(cast(col(by), DataType::Utf8).alias("__group"));
    }
    let batches = df
        .clone()
        .filter(col(INCLUDED).is_not_true())
        .and_then(|d| d.aggregate(keys, aggs))
        .and_then(|d| {
            let mut cols = vec![col(PERIOD)];
            cols.push(if by.is_some() {
                col("__group")
            } else {
                cast(
                    lit(datafusion::scalar::ScalarValue::Utf8(None)),
                    DataType::Utf8,
                )
                .alias("__group")
            });
            cols.push(cast(col("n"), DataType::Int64));
            for i in 0..causes.len() {
                cols.push(cast(col(format!("c{i}")), DataType::Int64));
            }
            d.select(cols)
        })
        .map_err(Error::engine("counting exclusions"))?
        .collect()
        .await
        .map_err(Error::engine("counting exclusions"))?;
    let mut out = BTreeMap::new();
    for b in &batches {
        let period = b.column(0).as_primitive::<Date32Type>();
        let group = b.column(1).as_string::<i32>();
        let count = |c: usize, r: usize| {
            let a = b.column(c).as_primitive::<Int64Type>();
            if a.is_null(r) {
                0
            } else {
                a.value(r).max(0) as u64
            }
        };
        for r in 0..b.num_rows() {
            let Some(day) = (!period.is_null(r))
                .then(|| period.value_as_date(r))
                .flatten()
            else {
                continue;
            };
            if count(2, r) == 0 {
                continue;
            }
            let value = (!group.is_null(r)).then(|| group.value(r).to_string());
            let per: &mut BTreeMap<String, u64> = out.entry((day, value)).or_default();
            for (i, (name, _)) in causes.iter().enumerate() {
                let n = count(i + 3, r);
                if n > 0 {
                    per.insert(name.clone(), n);
                }
            }
        }
    }
    Ok(out)
}

/// One line per period: `2026-10-01: measure `fcr` is NULL (9), ...`,
/// the causes ordered from the most customers to the fewest.
pub fn describe(day: NaiveDate, causes: &BTreeMap<String, u64>) -> String {
    let mut v: Vec<(&String, &u64)> = causes.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    format!(
        "{day}: {}",
        v.iter()
            .map(|(c, n)| format!("{c} ({n})"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}
