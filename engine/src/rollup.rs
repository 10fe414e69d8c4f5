//! Rollups of the per-customer table: for every period, the whole
//! population and each value of each dimension.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Date32Type, Float64Type, Int64Type};
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::logical_expr::{Expr, col, ident, lit};
use datafusion::prelude::{DataFrame, cast};
use formulas::Formula;
use kernels::sum::exact_sum;
use serde::Serialize;
use serde::ser::SerializeMap;

use crate::columns::{INCLUDED, PERIOD, SCORE, WEIGHT, dim_col};
use crate::error::{Error, Result};

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

/// Computes the rollups of `scored` (the per-customer table) for every
/// period of `periods` and every group.
pub async fn rollups(
    f: &Formula,
    scored: &DataFrame,
    periods: &[NaiveDate],
) -> Result<Vec<ResultRow>> {
    let file = &f.file;
    let default_combination = f.score.is_none();
    let inc = col(INCLUDED);
    // Exact sums: the same bits whatever the number of threads.
    let filtered_sum = |e: Expr, cond: Expr| -> Expr {
        let mut s = exact_sum(e);
        if let Expr::AggregateFunction(af) = &mut s {
            af.params.filter = Some(Box::new(cond));
        }
        s
    };
    let mut aggs = vec![
        count(lit(1)).alias("pop"),
        {
            let mut c = count(lit(1));
            if let Expr::AggregateFunction(af) = &mut c {
                af.params.filter = Some(Box::new(inc.clone()));
            }
            c.alias("inc")
        },
        filtered_sum(col(WEIGHT), inc.clone()).alias("wt"),
        filtered_sum(col(WEIGHT) * col(SCORE), inc.clone()).alias("ws"),
    ];
    for (k, c) in file.components.iter().enumerate() {
        let cond = inc.clone().and(ident(&c.name.value).is_not_null());
        aggs.push(
            filtered_sum(col(WEIGHT) * ident(&c.name.value), cond.clone()).alias(format!("cs{k}")),
        );
        aggs.push(filtered_sum(col(WEIGHT), cond).alias(format!("cw{k}")));
    }
    // A geometric or harmonic score: each component's contribution is the
    // weighted mean of the customers' (`engine::aggregation`).
    let shares = crate::aggregation::per_customer(file) && default_combination;
    if shares {
        for (k, c) in file.components.iter().enumerate() {
            let name = crate::aggregation::contribution_col(&c.name.value);
            aggs.push(
                filtered_sum(col(WEIGHT) * ident(&name), inc.clone()).alias(format!("cc{k}")),
            );
        }
    }
    // Included customers whose component was imputed.
    let imputing: Vec<usize> = (0..file.components.len())
        .filter(|k| file.components[*k].impute.is_some())
        .collect();
    for &k in &imputing {
        let mut c = count(lit(1));
        if let Expr::AggregateFunction(af) = &mut c {
            af.params.filter = Some(Box::new(inc.clone().and(ident(
                crate::imputation::imputed_col(&file.components[k].name.value),
            ))));
        }
        aggs.push(c.alias(format!("ci{k}")));
    }

    let mut groups: Vec<(Option<usize>, Vec<Expr>)> = vec![(None, vec![col(PERIOD)])];
    for i in 0..file.dimensions.len() {
        groups.push((Some(i), vec![col(PERIOD), col(dim_col(i))]));
    }
    // (period, dimension index or none, value) -> row
    let mut out: BTreeMap<(NaiveDate, Option<usize>, Option<String>), ResultRow> = BTreeMap::new();
    let mut planned = Vec::new();
    for (dim, by) in groups {
        let mut sel = vec![col(PERIOD)];
        sel.push(match dim {
            Some(i) => cast(col(dim_col(i)), DataType::Utf8).alias("value"),
            None => cast(
                lit(datafusion::scalar::ScalarValue::Utf8(None)),
                DataType::Utf8,
            )
            .alias("value"),
        });
        for name in ["pop", "inc"] {
            sel.push(cast(col(name), DataType::Int64).alias(name));
        }
        for name in ["wt", "ws"] {
            sel.push(cast(col(name), DataType::Float64).alias(name));
        }
        for k in 0..file.components.len() {
            for name in [format!("cs{k}"), format!("cw{k}")] {
                sel.push(cast(col(&name), DataType::Float64).alias(name));
            }
        }
        if shares {
            for k in 0..file.components.len() {
                let name = format!("cc{k}");
                sel.push(cast(col(&name), DataType::Float64).alias(name));
            }
        }
        for &k in &imputing {
            let name = format!("ci{k}");
            sel.push(cast(col(&name), DataType::Int64).alias(name));
        }
        let df = scored
            .clone()
            .aggregate(by, aggs.clone())
            .and_then(|d| d.select(sel))
            .map_err(Error::engine("planning the rollups"))?;
        planned.push((dim, df));
    }
    // The groupings at the same time: each is a small aggregation over the
    // same materialised table, and one's tail overlaps the next one's scan.
    let computed = futures::future::try_join_all(planned.into_iter().map(|(dim, df)| async move {
        df.collect()
            .await
            .map(|batches| (dim, batches))
            .map_err(Error::engine("computing the rollups"))
    }))
    .await?;
    for (dim, batches) in computed {
        for b in batches {
            let period = b.column(0).as_primitive::<Date32Type>();
            let value = b.column(1).as_string::<i32>();
            let ints = |i: usize| b.column(i).as_primitive::<Int64Type>().clone();
            let floats = |i: usize| b.column(i).as_primitive::<Float64Type>().clone();
            let (pop, inc, wt, ws) = (ints(2), ints(3), floats(4), floats(5));
            for r in 0..b.num_rows() {
                let Some(p) = period.value_as_date(r) else {
                    continue;
                };
                let val = (!value.is_null(r)).then(|| value.value(r).to_string());
                let opt = |a: &datafusion::arrow::array::Float64Array| {
                    (!a.is_null(r)).then(|| a.value(r))
                };
                let included = inc.value(r) as u64;
                let population = pop.value(r) as u64;
                let weight_total = opt(&wt).unwrap_or(0.0);
                let score = (included > 0 && weight_total != 0.0)
                    .then(|| opt(&ws).map(|s| file.scale * s / weight_total))
                    .flatten();
                let mut comps = Vec::new();
                for (k, c) in file.components.iter().enumerate() {
                    let (cs, cw) = (floats(6 + 2 * k), floats(7 + 2 * k));
                    let rollup = match (opt(&cs), opt(&cw)) {
                        (Some(s), Some(w)) if w != 0.0 && included > 0 => Some(s / w),
                        _ => None,
                    };
                    let contribution = if shares {
                        let cc = floats(6 + 2 * file.components.len() + k);
                        opt(&cc)
                            .filter(|_| weight_total != 0.0 && included > 0)
                            .map(|s| file.scale * s / weight_total)
                    } else if default_combination {
                        rollup.map(|x| file.scale * c.weight * x)
                    } else {
                        None
                    };
                    // After the shares, the imputed counts (in component order).
                    let first_ci = 6
                        + 2 * file.components.len()
                        + if shares { file.components.len() } else { 0 };
                    let imputed = imputing.iter().position(|j| *j == k).map(|i| {
                        let a = ints(first_ci + i);
                        if a.is_null(r) { 0 } else { a.value(r) as u64 }
                    });
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
    Ok(out.into_values().collect())
}
