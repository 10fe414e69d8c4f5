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
use datafusion::logical_expr::{Expr, ident, lit};
use datafusion::prelude::col;
use formulas::Formula;

use crate::columns::{INCLUDED, SCORE, WEIGHT};
use crate::summary::Summary;

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

/// What the causes read from the summary (`summary::Asked` indices): the
/// excluded customers, and those of them under each cause.
#[derive(Debug)]
pub struct Asked {
    excluded: usize,
    causes: Vec<(String, usize)>,
}

/// Asks `summary` for what the causes of `f`'s exclusions need.
pub fn ask(f: &Formula, summary: &mut crate::summary::Asked) -> Asked {
    // Not `included IS NOT TRUE`: DataFusion 55 plans that shared
    // subexpression as nullable and refuses the aggregation ("physical
    // input schema should be the same"); a CASE of literals is not.
    let out = datafusion::logical_expr::when(col(INCLUDED), lit(false))
        .otherwise(lit(true))
        .unwrap_or_else(|_| col(INCLUDED).is_not_true());
    Asked {
        excluded: summary.count(Some(out.clone())),
        causes: causes_of(f)
            .into_iter()
            .map(|(name, e)| (name, summary.count(Some(out.clone().and(e)))))
            .collect(),
    }
}

/// The excluded customers of each period per cause (see the module
/// documentation), read from the per-customer table's `summary`: for the
/// whole population, and for each group of each dimension.
pub fn causes(f: &Formula, summary: &Summary, asked: &Asked) -> (Exclusions, GroupExclusions) {
    let whole = count(summary, asked, None)
        .into_iter()
        .map(|((day, _), per)| (day, per))
        .collect();
    let mut groups = GroupExclusions::new();
    for (i, d) in f.file.dimensions.iter().enumerate() {
        for ((day, value), per) in count(summary, asked, Some(i)) {
            groups
                .entry(day)
                .or_default()
                .insert(group_name(&d.name.value, value.as_deref()), per);
        }
    }
    (whole, groups)
}

/// Per period (and value of dimension `by`), the causes, for the groups
/// with an excluded customer.
fn count(
    summary: &Summary,
    asked: &Asked,
    by: Option<usize>,
) -> BTreeMap<crate::summary::Key, BTreeMap<String, u64>> {
    summary
        .by(by)
        .into_iter()
        .filter(|(_, g)| g.count(asked.excluded) > 0)
        .map(|(key, g)| {
            let per = asked
                .causes
                .iter()
                .map(|(name, i)| (name.clone(), g.count(*i)))
                .filter(|(_, n)| *n > 0)
                .collect();
            (key, per)
        })
        .collect()
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
