//! Rollups of the per-customer table: for every period, the whole
//! population and each value of each dimension. [`ask`] says what they
//! need of the table's summary (`engine::summary`), [`rollups`] reads them
//! from it.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use datafusion::logical_expr::{col, ident};
use formulas::Formula;
use serde::Serialize;
use serde::ser::SerializeMap;

use crate::columns::{INCLUDED, SCORE, WEIGHT};
use crate::summary::Summary;

/// One component's rollup and contribution in one group.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct ComponentResult {
    pub rollup: Option<f64>,
    pub contribution: Option<f64>,
    /// Included customers whose value was imputed (`impute`), when the
    /// component imputes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub imputed: Option<u64>,
}

/// Components in declaration order, serialised as a JSON object.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Components(pub Vec<(String, ComponentResult)>);

impl Serialize for Components {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// One result row: a period and a group (the whole population when
/// `dimension` is `None`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResultRow {
    pub period: NaiveDate,
    pub dimension: Option<String>,
    pub value: Option<String>,
    pub score: Option<f64>,
    pub population: u64,
    pub included: u64,
    pub excluded: u64,
    pub weight_total: f64,
    /// False for a period published as incomplete: an event source whose
    /// `empty_periods = "incomplete"` had no rows in it.
    pub complete: bool,
    pub components: Components,
}

/// What the rollups read from the summary (`summary::Asked` indices).
#[derive(Debug)]
pub struct Asked {
    pop: usize,
    inc: usize,
    wt: usize,
    ws: usize,
    /// Per component: its weighted sum and its weight.
    cs: Vec<(usize, usize)>,
    /// Per component, for a geometric or harmonic score: the weighted sum
    /// of the customers' contributions.
    cc: Option<Vec<usize>>,
    /// Per component that imputes: its imputed included customers.
    ci: Vec<Option<usize>>,
}

/// Asks `summary` for what the rollups of `f` need.
pub fn ask(f: &Formula, summary: &mut crate::summary::Asked) -> Asked {
    let file = &f.file;
    let inc = col(INCLUDED);
    let pop = summary.count(None);
    let inc_n = summary.count(Some(inc.clone()));
    let wt = summary.sum(col(WEIGHT), Some(inc.clone()));
    let ws = summary.sum(col(WEIGHT) * col(SCORE), Some(inc.clone()));
    let cs = file
        .components
        .iter()
        .map(|c| {
            let cond = inc.clone().and(ident(&c.name.value).is_not_null());
            (
                summary.sum(col(WEIGHT) * ident(&c.name.value), Some(cond.clone())),
                summary.sum(col(WEIGHT), Some(cond)),
            )
        })
        .collect();
    // A geometric or harmonic score: each component's contribution is the
    // weighted mean of the customers' (`engine::aggregation`).
    let cc = (crate::aggregation::per_customer(file) && f.score.is_none()).then(|| {
        file.components
            .iter()
            .map(|c| {
                let name = crate::aggregation::contribution_col(&c.name.value);
                summary.sum(col(WEIGHT) * ident(&name), Some(inc.clone()))
            })
            .collect()
    });
    // Included customers whose component was imputed.
    let ci = file
        .components
        .iter()
        .map(|c| {
            c.impute.as_ref().map(|_| {
                summary.count(Some(
                    inc.clone()
                        .and(ident(crate::imputation::imputed_col(&c.name.value))),
                ))
            })
        })
        .collect();
    Asked {
        pop,
        inc: inc_n,
        wt,
        ws,
        cs,
        cc,
        ci,
    }
}

/// The rollups of the per-customer table, read from its `summary`, for
/// every period of `periods` and every group.
pub fn rollups(
    f: &Formula,
    summary: &Summary,
    asked: &Asked,
    periods: &[NaiveDate],
) -> Vec<ResultRow> {
    let file = &f.file;
    let default_combination = f.score.is_none();
    // (period, dimension index or none, value) -> row
    let mut out: BTreeMap<(NaiveDate, Option<usize>, Option<String>), ResultRow> = BTreeMap::new();
    let groupings = std::iter::once(None).chain((0..file.dimensions.len()).map(Some));
    for dim in groupings {
        for ((p, val), g) in summary.by(dim) {
            let included = g.count(asked.inc);
            let population = g.count(asked.pop);
            let weight_total = g.sum(asked.wt).unwrap_or(0.0);
            let score = (included > 0 && weight_total != 0.0)
                .then(|| g.sum(asked.ws).map(|s| file.scale * s / weight_total))
                .flatten();
            let mut comps = Vec::new();
            for (k, c) in file.components.iter().enumerate() {
                let (cs, cw) = asked.cs[k];
                let rollup = match (g.sum(cs), g.sum(cw)) {
                    (Some(s), Some(w)) if w != 0.0 && included > 0 => Some(s / w),
                    _ => None,
                };
                let contribution = if let Some(cc) = &asked.cc {
                    g.sum(cc[k])
                        .filter(|_| weight_total != 0.0 && included > 0)
                        .map(|s| file.scale * s / weight_total)
                } else if default_combination {
                    rollup.map(|x| file.scale * c.weight * x)
                } else {
                    None
                };
                let imputed = asked.ci[k].map(|i| g.count(i));
                comps.push((
                    c.name.value.clone(),
                    ComponentResult {
                        rollup,
                        contribution,
                        imputed,
                    },
                ));
            }
            out.insert(
                (p, dim, val.clone()),
                ResultRow {
                    period: p,
                    dimension: dim.map(|i| file.dimensions[i].name.value.clone()),
                    value: val,
                    score,
                    population,
                    included,
                    excluded: population - included,
                    weight_total,
                    complete: true,
                    components: Components(comps),
                },
            );
        }
    }
    // A period nobody was active in still gets its whole-population row.
    for p in periods {
        out.entry((*p, None, None)).or_insert_with(|| ResultRow {
            period: *p,
            dimension: None,
            value: None,
            score: None,
            population: 0,
            included: 0,
            excluded: 0,
            weight_total: 0.0,
            complete: true,
            components: Components(
                file.components
                    .iter()
                    .map(|c| {
                        (
                            c.name.value.clone(),
                            ComponentResult {
                                rollup: None,
                                contribution: None,
                                imputed: None,
                            },
                        )
                    })
                    .collect(),
            ),
        });
    }
    out.into_values().collect()
}
