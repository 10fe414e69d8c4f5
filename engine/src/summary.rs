//! The per-customer table summarised once for every reader that groups it
//! by period, or by period and one dimension: the rollups and the
//! exclusions' causes. [`summarise`] runs one aggregation by period and
//! every dimension at once (on a cluster, one per grouping), whose counts
//! are plain counts and whose sums come back as exact partial sums
//! (`croo_sum_state`); [`Summary::by`] merges its rows into any of those
//! groupings. The merged sums are the
//! bits `croo_sum` gives over the same customers (exact sums, rounded
//! once), so a rollup read from the summary is the rollup computed alone.
//!
//! One aggregation instead of one per grouping and reader: every
//! expression is evaluated once per customer, and the table is read once
//! (measured on the whole-run benchmark, benches/README.md).

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Date32Type, Int64Type};
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::logical_expr::{Expr, col, lit};
use datafusion::prelude::{DataFrame, cast};
use kernels::sum::{SumState, exact_sum_state};

use crate::columns::{PERIOD, dim_col};
use crate::error::{Error, Result};

/// What the readers ask of the summary: counts of customers (under a
/// filter) and exact sums (of an expression, under a filter). Each is
/// known by the index [`Self::count`] or [`Self::sum`] returned.
#[derive(Debug, Default)]
pub struct Asked {
    counts: Vec<Option<Expr>>,
    sums: Vec<(Expr, Option<Expr>)>,
}

impl Asked {
    /// The customers for whom `filter` is true (all without one).
    pub fn count(&mut self, filter: Option<Expr>) -> usize {
        self.counts.push(filter);
        self.counts.len() - 1
    }

    /// The exact sum of `x` (as Float64) over the customers for whom
    /// `filter` is true; NULL when no value is non-NULL.
    pub fn sum(&mut self, x: Expr, filter: Option<Expr>) -> usize {
        self.sums.push((x, filter));
        self.sums.len() - 1
    }
}

/// One group's counts and sums, in the order they were asked.
#[derive(Debug, Clone, Default)]
pub struct Group {
    counts: Vec<u64>,
    sums: Vec<SumState>,
}

impl Group {
    pub fn count(&self, i: usize) -> u64 {
        self.counts.get(i).copied().unwrap_or(0)
    }

    /// The sum, rounded as `croo_sum` rounds it.
    pub fn sum(&self, i: usize) -> Option<f64> {
        self.sums.get(i).and_then(SumState::value)
    }
}

/// The table aggregated by period and dimensions.
#[derive(Debug)]
pub struct Summary {
    dims: usize,
    /// Each aggregation: the dimensions it grouped by (with the period),
    /// and its rows.
    parts: Vec<(Vec<usize>, Vec<Fine>)>,
}

#[derive(Debug)]
struct Fine {
    period: NaiveDate,
    /// The values of the part's dimensions, in its order.
    values: Vec<Option<String>>,
    group: Group,
}

/// A group of [`Summary::by`]: a period, and the dimension's value (`None`
/// for the whole population, or a NULL value).
pub type Key = (NaiveDate, Option<String>);

/// Aggregates `df` (the per-customer table, with `dims` dimension
/// columns), computing what `asked` lists: `together`, by period and every
/// dimension in one aggregation (one pass over the table); otherwise one
/// aggregation per grouping (by period, and by period and each dimension),
/// at the same time: what a cluster runs, so that the client receives
/// O(periods x groups) rows however many combinations of the dimensions'
/// values there are.
pub async fn summarise(
    df: &DataFrame,
    dims: usize,
    asked: &Asked,
    together: bool,
) -> Result<Summary> {
    let parts: Vec<Vec<usize>> = if together {
        vec![(0..dims).collect()]
    } else {
        std::iter::once(Vec::new())
            .chain((0..dims).map(|i| vec![i]))
            .collect()
    };
    let rows = futures::future::try_join_all(parts.iter().map(|p| aggregate(df, p, asked))).await?;
    Ok(Summary {
        dims,
        parts: parts.into_iter().zip(rows).collect(),
    })
}

/// The rows of `df` aggregated by period and `dims`.
async fn aggregate(df: &DataFrame, dims: &[usize], asked: &Asked) -> Result<Vec<Fine>> {
    let err = || Error::engine("summarising the customers");
    let mut by = vec![col(PERIOD)];
    for &i in dims {
        by.push(cast(col(dim_col(i)), DataType::Utf8).alias(format!("__v{i}")));
    }
    let dims = dims.len();
    let filtered = |mut e: Expr, filter: &Option<Expr>| {
        if let (Some(f), Expr::AggregateFunction(af)) = (filter, &mut e) {
            af.params.filter = Some(Box::new(f.clone()));
        }
        e
    };
    let mut aggs = Vec::new();
    for (i, f) in asked.counts.iter().enumerate() {
        aggs.push(filtered(count(lit(1)), f).alias(format!("__n{i}")));
    }
    for (i, (x, f)) in asked.sums.iter().enumerate() {
        aggs.push(filtered(exact_sum_state(x.clone()), f).alias(format!("__s{i}")));
    }
    let batches = df
        .clone()
        .aggregate(by, aggs)
        .map_err(err())?
        .collect()
        .await
        .map_err(err())?;
    let (n, m) = (asked.counts.len(), asked.sums.len());
    let mut rows = Vec::new();
    for b in &batches {
        let period = b.column(0).as_primitive::<Date32Type>();
        let values: Vec<_> = (0..dims)
            .map(|i| b.column(1 + i).as_string::<i32>())
            .collect();
        let counts: Vec<_> = (0..n)
            .map(|i| b.column(1 + dims + i).as_primitive::<Int64Type>())
            .collect();
        let sums: Vec<_> = (0..m)
            .map(|i| b.column(1 + dims + n + i).as_binary::<i32>())
            .collect();
        for r in 0..b.num_rows() {
            let Some(day) = (!period.is_null(r))
                .then(|| period.value_as_date(r))
                .flatten()
            else {
                continue;
            };
            let mut group = Group {
                counts: counts
                    .iter()
                    .map(|c| {
                        if c.is_null(r) {
                            0
                        } else {
                            c.value(r).max(0) as u64
                        }
                    })
                    .collect(),
                sums: vec![SumState::default(); m],
            };
            for (s, a) in group.sums.iter_mut().zip(&sums) {
                if a.is_valid(r) {
                    s.merge(a.value(r)).map_err(err())?;
                }
            }
            rows.push(Fine {
                period: day,
                values: values
                    .iter()
                    .map(|v| (!v.is_null(r)).then(|| v.value(r).to_string()))
                    .collect(),
                group,
            });
        }
    }
    Ok(rows)
}

impl Summary {
    /// The groups of the whole population per period (`by` = `None`), or
    /// of dimension `by`'s values per period, in order.
    pub fn by(&self, by: Option<usize>) -> BTreeMap<Key, Group> {
        let by = by.filter(|&i| i < self.dims);
        // The coarsest aggregation that has the grouping's dimension.
        let part = match by {
            None => self.parts.iter().min_by_key(|(d, _)| d.len()),
            Some(i) => self.parts.iter().find(|(d, _)| d.contains(&i)),
        };
        let Some((part_dims, rows)) = part else {
            return BTreeMap::new();
        };
        let at = by.and_then(|i| part_dims.iter().position(|&d| d == i));
        let mut out: HashMap<(NaiveDate, Option<&str>), Group> = HashMap::new();
        for row in rows {
            let value = at.and_then(|k| row.values[k].as_deref());
            let into = out.entry((row.period, value)).or_insert_with(|| Group {
                counts: vec![0; row.group.counts.len()],
                sums: vec![SumState::default(); row.group.sums.len()],
            });
            for (a, b) in into.counts.iter_mut().zip(&row.group.counts) {
                *a += b;
            }
            for (a, b) in into.sums.iter_mut().zip(&row.group.sums) {
                a.add(b);
            }
        }
        out.into_iter()
            .map(|((p, v), g)| ((p, v.map(str::to_string)), g))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use datafusion::arrow::array::{Date32Array, Float64Array, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{Field, Float64Type, Schema};
    use datafusion::prelude::SessionContext;
    use kernels::sum::exact_sum;

    /// 600 customers over three periods and two dimensions (some values
    /// NULL), with values whose floating-point sums depend on the order.
    async fn table() -> (SessionContext, DataFrame) {
        let n = 600;
        let schema = Arc::new(Schema::new(vec![
            Field::new(PERIOD, DataType::Date32, true),
            Field::new(dim_col(0), DataType::Utf8, true),
            Field::new(dim_col(1), DataType::Utf8, true),
            Field::new("x", DataType::Float64, true),
        ]));
        let period: Date32Array = (0..n).map(|i| Some(20_000 + 31 * (i % 3))).collect();
        let d0: StringArray = (0..n)
            .map(|i| (i % 11 != 0).then(|| ["a", "b", "c"][(i % 4) as usize % 3]))
            .collect();
        let d1: StringArray = (0..n)
            .map(|i| Some(["x", "y"][(i % 5) as usize % 2]))
            .collect();
        let x: Float64Array = (0..n)
            .map(|i| {
                let f = f64::from(i);
                (i % 7 != 0).then(|| (f * 0.37).sin() * 10f64.powi(i % 9 - 4))
            })
            .collect();
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(period), Arc::new(d0), Arc::new(d1), Arc::new(x)],
        )
        .expect("a batch");
        let ctx = SessionContext::new();
        let df = ctx.read_batch(batch).expect("a table");
        (ctx, df)
    }

    #[tokio::test]
    async fn every_grouping_merged_from_the_summary_is_its_own_aggregation() {
        let (_ctx, df) = table().await;
        let positive = col("x").gt(lit(0.0));
        let mut asked = Asked::default();
        let all = asked.count(None);
        let pos = asked.count(Some(positive.clone()));
        let sum = asked.sum(col("x"), None);
        let pos_sum = asked.sum(col("x") * lit(3.0), Some(positive.clone()));
        for together in [true, false] {
            let summary = summarise(&df, 2, &asked, together)
                .await
                .expect("summarised");
            for by in [None, Some(0), Some(1)] {
                // The same numbers, grouped by DataFusion directly.
                let mut keys = vec![col(PERIOD)];
                keys.push(
                    match by {
                        Some(i) => col(dim_col(i)),
                        None => cast(
                            lit(datafusion::scalar::ScalarValue::Utf8(None)),
                            DataType::Utf8,
                        ),
                    }
                    .alias("v"),
                );
                let mut c = count(lit(1));
                let mut s = exact_sum(col("x") * lit(3.0));
                for e in [&mut c, &mut s] {
                    if let Expr::AggregateFunction(af) = e {
                        af.params.filter = Some(Box::new(positive.clone()));
                    }
                }
                let batches = df
                    .clone()
                    .aggregate(
                        keys,
                        vec![
                            count(lit(1)).alias("n"),
                            c.alias("np"),
                            exact_sum(col("x")).alias("s"),
                            s.alias("sp"),
                        ],
                    )
                    .expect("planned")
                    .collect()
                    .await
                    .expect("ran");
                let mut want = BTreeMap::new();
                for b in &batches {
                    let p = b.column(0).as_primitive::<Date32Type>();
                    let v = b.column(1).as_string::<i32>();
                    let ints = |i: usize| b.column(i).as_primitive::<Int64Type>();
                    let floats = |i: usize| b.column(i).as_primitive::<Float64Type>();
                    for r in 0..b.num_rows() {
                        let key = (
                            p.value_as_date(r).expect("a day"),
                            (!v.is_null(r)).then(|| v.value(r).to_string()),
                        );
                        let opt = |a: &Float64Array| (!a.is_null(r)).then(|| a.value(r).to_bits());
                        want.insert(
                            key,
                            (
                                ints(2).value(r) as u64,
                                ints(3).value(r) as u64,
                                opt(floats(4)),
                                opt(floats(5)),
                            ),
                        );
                    }
                }
                let got: BTreeMap<_, _> = summary
                    .by(by)
                    .into_iter()
                    .map(|(k, g)| {
                        let bits = |i| g.sum(i).map(f64::to_bits);
                        (k, (g.count(all), g.count(pos), bits(sum), bits(pos_sum)))
                    })
                    .collect();
                assert_eq!(got, want, "grouping {by:?}, together {together}");
                assert!(got.len() >= 3, "{got:?}");
            }
        }
    }
}
