//! Population functions (`minmax`, `zscore`, `pct_rank`) without windows
//! over a whole period, for runs under a memory limit and on a cluster.
//! DataFusion's `WindowAggExec` concatenates each partition into one batch
//! (6.6 GB at 4.5M customers x 12 months, whatever the limit), and on a
//! cluster a window partitioned by period is one task per period: one
//! executor holds the whole period. Entered through [`without_windows`].
//!
//! The table the windows read is materialised (a scratch folder, or the
//! cluster's staging folder). The whole-period aggregates (`min`, `max`,
//! `croo_sum`, `count`, `croo_var_pop` over a period) and the partition
//! sizes of `percent_rank` are computed over it per partition (one row per
//! period, two-phase on a cluster) and come back as literals: `CASE WHEN
//! __period = p1 THEN v1 ... END` (no join: under a memory limit an
//! equi-join is a sort-merge join, which would sort the whole population).
//! `percent_rank()` becomes `(rank() - 1) / max(n - 1, 1)`, DataFusion's own
//! formula, with `rank() - 1` the number of the partition's values below
//! the customer's:
//! - under a memory limit, `rank()` is a streaming window over a spillable
//!   sort;
//! - on a cluster, the values are split into buckets at approximate
//!   quantiles of their partition (`approx_percentile_cont`, one bucket per
//!   target partition). A value's rows below are those of the earlier
//!   buckets (counted per bucket, brought back as literals) plus those
//!   below it in its own bucket, summed over the distinct values (one row
//!   per partition, value and count) by a window per partition and bucket,
//!   joined back on the value. Every bucket's values are below every later
//!   bucket's, so the count is exact whatever the quantiles are; ties stay
//!   in one distinct-value row, so a tied population is a small table.
//!
//! The same aggregate functions over the same rows, the same integer
//! counts: the same bits as the windows (tested against them).

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::functions_aggregate::expr_fn::{approx_percentile_cont, count};
use datafusion::logical_expr::expr::{AggregateFunction, WindowFunction, WindowFunctionDefinition};
use datafusion::logical_expr::{
    Expr, JoinType, WindowFrame, WindowFrameBound, WindowFrameUnits, col, lit, when,
};
use datafusion::prelude::{DataFrame, SessionContext, cast};
use datafusion::scalar::ScalarValue;

use crate::error::{Error, Result};

/// Replaces the population functions' whole-period windows in `e` (an
/// expression over `df`) when the session runs under a memory limit or on
/// a cluster, and returns the table and expression to use instead; `e` as
/// it is otherwise (without a limit the windows were as fast, and the
/// rewrite held 25% more memory: an extra materialised table). `counter`
/// numbers the columns the rewrite adds, across calls.
pub async fn without_windows(
    ctx: &SessionContext,
    df: DataFrame,
    e: Expr,
    counter: &mut usize,
    what: &str,
) -> Result<(DataFrame, Expr)> {
    let buckets = crate::session::is_distributed(ctx)
        .then(|| ctx.state().config().target_partitions().max(2));
    rewrite(ctx, df, e, counter, what, buckets).await
}

/// A `percent_rank` window whose ranks are counted by buckets.
struct Bucketed {
    /// The window's partition (period, whether the value is NULL).
    part: Vec<Expr>,
    /// The ordered value.
    x: Expr,
    /// The column of the number of values below (added by the join) and
    /// prefix of the rewrite's other columns.
    below: String,
    /// The aggregates that are the bucket boundaries.
    bounds: Vec<String>,
}

/// One aggregate per partition of a window, as computed.
struct PerPartition {
    part: Vec<Expr>,
    /// The partition's key values and the aggregate's value.
    rows: Vec<(Vec<ScalarValue>, ScalarValue)>,
}

async fn rewrite(
    ctx: &SessionContext,
    df: DataFrame,
    e: Expr,
    counter: &mut usize,
    what: &str,
    buckets: Option<usize>,
) -> Result<(DataFrame, Expr)> {
    let err = || Error::engine(what.to_string());
    let mut found: Vec<WindowFunction> = Vec::new();
    e.apply(|x| {
        if let Expr::WindowFunction(w) = x
            && !found.contains(w)
        {
            found.push(w.as_ref().clone());
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .map_err(err())?;
    if found.is_empty() || !crate::materialise::is_on_disk(ctx) {
        return Ok((df, e));
    }
    let mut df = crate::materialise::materialise(ctx, df, what).await?;
    // Per partition key list: the aggregates to compute.
    let mut groups: Vec<(Vec<Expr>, Vec<Expr>)> = Vec::new();
    let mut replace: Vec<(WindowFunction, Expr)> = Vec::new();
    let mut bucketed: Vec<Bucketed> = Vec::new();
    for w in found {
        let part = w.params.partition_by.clone();
        let g = match groups.iter().position(|(p, _)| *p == part) {
            Some(g) => g,
            None => {
                groups.push((part.clone(), Vec::new()));
                groups.len() - 1
            }
        };
        let alias = format!("__wv{}", *counter);
        *counter += 1;
        match &w.fun {
            WindowFunctionDefinition::AggregateUDF(f) if w.params.order_by.is_empty() => {
                let agg = Expr::AggregateFunction(AggregateFunction::new_udf(
                    Arc::clone(f),
                    w.params.args.clone(),
                    false,
                    None,
                    vec![],
                    None,
                ));
                groups[g].1.push(agg.alias(&alias));
                replace.push((w, col(&alias)));
            }
            WindowFunctionDefinition::WindowUDF(f)
                if f.name() == "percent_rank" && w.params.order_by.len() == 1 =>
            {
                groups[g].1.push(count(lit(1)).alias(&alias));
                let below = match buckets {
                    None => {
                        let mut r = WindowFunction::new(
                            datafusion::functions_window::rank::rank_udwf(),
                            vec![],
                        );
                        r.params.partition_by = part;
                        r.params.order_by = w.params.order_by.clone();
                        cast(Expr::WindowFunction(Box::new(r)), DataType::Float64) - lit(1.0)
                    }
                    Some(k) => {
                        let x = w.params.order_by[0].expr.clone();
                        let below = format!("{alias}_below");
                        let mut bounds = Vec::new();
                        for j in 1..k {
                            let name = format!("{alias}_q{j}");
                            groups[g].1.push(
                                approx_percentile_cont(
                                    as_f64(x.clone()).sort(true, false),
                                    lit(j as f64 / k as f64),
                                    None,
                                )
                                .alias(&name),
                            );
                            bounds.push(name);
                        }
                        bucketed.push(Bucketed {
                            part,
                            x,
                            below: below.clone(),
                            bounds,
                        });
                        cast(col(&below), DataType::Float64)
                    }
                };
                let n = cast(col(&alias), DataType::Float64);
                let denominator = when(n.clone().gt(lit(2.0)), n - lit(1.0))
                    .otherwise(lit(1.0))
                    .map_err(err())?;
                replace.push((w, below / denominator));
            }
            _ => {}
        }
    }
    let mut values: Vec<(String, PerPartition)> = Vec::new();
    for (part, aggs) in groups {
        if aggs.is_empty() {
            continue;
        }
        let keys: Vec<String> = (0..part.len()).map(|j| format!("__wk{j}")).collect();
        let by: Vec<Expr> = part
            .iter()
            .zip(&keys)
            .map(|(p, k)| p.clone().alias(k))
            .collect();
        let names: Vec<String> = aggs.iter().map(|a| a.schema_name().to_string()).collect();
        let batches = df
            .clone()
            .aggregate(by, aggs)
            .map_err(err())?
            .collect()
            .await
            .map_err(err())?;
        let rows = scalars(&batches).map_err(err())?;
        for (a, name) in names.iter().enumerate() {
            let rows = rows
                .iter()
                .map(|r| (r[..part.len()].to_vec(), r[part.len() + a].clone()))
                .collect();
            values.push((
                name.clone(),
                PerPartition {
                    part: part.clone(),
                    rows,
                },
            ));
        }
    }
    for b in &bucketed {
        df = count_below(df, b, &values, what).await?;
    }
    let literal = |name: &str| -> Option<Result<Expr>> {
        let (_, v) = values.iter().find(|(n, _)| n == name)?;
        Some(by_partition(&v.part, v.rows.iter().map(|(k, s)| (k, lit(s.clone())))).map_err(err()))
    };
    let mut replaced = Vec::new();
    for (w, by) in replace {
        let mut failed = None;
        let by = by
            .transform_up(|x| match &x {
                Expr::Column(c) => match literal(&c.name) {
                    Some(Ok(v)) => Ok(Transformed::yes(v)),
                    Some(Err(e)) => {
                        failed = Some(e);
                        Ok(Transformed::no(x))
                    }
                    None => Ok(Transformed::no(x)),
                },
                _ => Ok(Transformed::no(x)),
            })
            .map_err(err())?
            .data;
        if let Some(e) = failed {
            return Err(e);
        }
        replaced.push((w, by));
    }
    let e = e
        .transform_up(|x| match x {
            Expr::WindowFunction(w) => match replaced.iter().find(|(r, _)| *r == *w) {
                Some((_, by)) => Ok(Transformed::yes(by.clone())),
                None => Ok(Transformed::no(Expr::WindowFunction(w))),
            },
            other => Ok(Transformed::no(other)),
        })
        .map_err(err())?
        .data;
    Ok((df, e))
}

fn as_f64(x: Expr) -> Expr {
    cast(x, DataType::Float64)
}

/// Every row of `batches` as scalars.
fn scalars(batches: &[RecordBatch]) -> datafusion::common::Result<Vec<Vec<ScalarValue>>> {
    let mut out = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            out.push(
                b.columns()
                    .iter()
                    .map(|c| ScalarValue::try_from_array(c, r))
                    .collect::<datafusion::common::Result<_>>()?,
            );
        }
    }
    Ok(out)
}

/// `CASE WHEN part = keys1 THEN v1 ... END` (NULL in a partition not
/// listed, whose value is never read).
fn by_partition<'a>(
    part: &[Expr],
    values: impl Iterator<Item = (&'a Vec<ScalarValue>, Expr)>,
) -> datafusion::common::Result<Expr> {
    let mut case: Option<datafusion::logical_expr::conditional_expressions::CaseBuilder> = None;
    for (keys, v) in values {
        let mut cond = lit(true);
        for (p, k) in part.iter().zip(keys) {
            cond = cond.and(p.clone().eq(lit(k.clone())));
        }
        case = Some(match case {
            None => when(cond, v),
            Some(mut c) => c.when(cond, v),
        });
    }
    match case {
        Some(c) => c.end(),
        None => Ok(lit(ScalarValue::Null)),
    }
}

/// `df` with `b.below`: for each row, the number of rows of its partition
/// whose value is below its value (NULL where the value is NULL).
async fn count_below(
    df: DataFrame,
    b: &Bucketed,
    values: &[(String, PerPartition)],
    what: &str,
) -> Result<DataFrame> {
    let err = || Error::engine(what.to_string());
    // Each partition's boundaries, ascending and distinct.
    let mut bounds: Vec<(Vec<ScalarValue>, Vec<f64>)> = Vec::new();
    for name in &b.bounds {
        let Some((_, v)) = values.iter().find(|(n, _)| n == name) else {
            continue;
        };
        for (keys, s) in &v.rows {
            let at = match bounds.iter().position(|(k, _)| k == keys) {
                Some(at) => at,
                None => {
                    bounds.push((keys.clone(), Vec::new()));
                    bounds.len() - 1
                }
            };
            if let ScalarValue::Float64(Some(q)) = s
                && !q.is_nan()
            {
                bounds[at].1.push(*q);
            }
        }
    }
    for (_, q) in &mut bounds {
        q.sort_by(f64::total_cmp);
        q.dedup_by(|a, b| a.total_cmp(b).is_eq());
    }
    // A value's bucket: the number of its partition's boundaries below it.
    // `as_f64` is monotone, so a bucket's values are below every later
    // bucket's.
    let bucket = |part: &[Expr], v: &Expr| {
        by_partition(
            part,
            bounds.iter().map(|(k, q)| {
                let n = q.iter().fold(lit(0i64), |n, q| {
                    n + cast(as_f64(v.clone()).gt(lit(*q)), DataType::Int64)
                });
                (k, n)
            }),
        )
    };
    let present = df
        .clone()
        .filter(b.x.clone().is_not_null())
        .map_err(err())?;
    let keys: Vec<String> = (0..b.part.len())
        .map(|j| format!("{}_k{j}", b.below))
        .collect();
    let key_cols: Vec<Expr> = keys.iter().map(col).collect();
    let (value, n, bk) = (
        format!("{}_x", b.below),
        format!("{}_n", b.below),
        format!("{}_b", b.below),
    );
    // The partition's expressions under the rewrite's key names.
    let keyed = || -> Vec<Expr> {
        b.part
            .iter()
            .zip(&keys)
            .map(|(p, k)| p.clone().alias(k))
            .collect()
    };
    // Rows per partition and bucket.
    let mut by = keyed();
    by.push(bucket(&b.part, &b.x).map_err(err())?.alias(&bk));
    let counted = scalars(
        &present
            .clone()
            .aggregate(by, vec![count(lit(1)).alias(&n)])
            .map_err(err())?
            .collect()
            .await
            .map_err(err())?,
    )
    .map_err(err())?;
    let per_bucket = |keys: &Vec<ScalarValue>, j: i64| -> i64 {
        counted
            .iter()
            .find(|r| r[..keys.len()] == keys[..] && r[keys.len()] == ScalarValue::Int64(Some(j)))
            .and_then(|r| match r[keys.len() + 1] {
                ScalarValue::Int64(Some(c)) => Some(c),
                _ => None,
            })
            .unwrap_or(0)
    };
    // The rows of the earlier buckets: one count per boundary below.
    let offset = |part: &[Expr], v: &Expr| {
        by_partition(
            part,
            bounds.iter().map(|(k, q)| {
                let o = q.iter().enumerate().fold(lit(0i64), |o, (j, q)| {
                    o + cast(as_f64(v.clone()).gt(lit(*q)), DataType::Int64)
                        * lit(per_bucket(k, j as i64))
                });
                (k, o)
            }),
        )
    };
    // One row per partition and distinct value, with its rows.
    let mut by = keyed();
    by.push(b.x.clone().alias(&value));
    let distinct = present
        .aggregate(by, vec![count(lit(1)).alias(&n)])
        .map_err(err())?;
    let mut sel = key_cols.clone();
    sel.push(col(&value));
    sel.push(col(&n));
    sel.push(bucket(&key_cols, &col(&value)).map_err(err())?.alias(&bk));
    sel.push(
        offset(&key_cols, &col(&value))
            .map_err(err())?
            .alias(&b.below),
    );
    let distinct = distinct.select(sel).map_err(err())?;
    // Rows up to this value in its bucket, this value's excluded.
    let mut w = WindowFunction::new(
        datafusion::functions_aggregate::sum::sum_udaf(),
        vec![col(&n)],
    );
    w.params.partition_by = key_cols.iter().cloned().chain([col(&bk)]).collect();
    w.params.order_by = vec![col(&value).sort(true, false)];
    w.params.window_frame = WindowFrame::new_bounds(
        WindowFrameUnits::Rows,
        WindowFrameBound::Preceding(ScalarValue::UInt64(None)),
        WindowFrameBound::CurrentRow,
    );
    let up_to = Expr::WindowFunction(Box::new(w));
    let mut sel = key_cols.clone();
    sel.push(col(&value));
    sel.push((col(&b.below) + up_to - col(&n)).alias(&b.below));
    let distinct = distinct.select(sel).map_err(err())?;
    let mut on: Vec<Expr> = b
        .part
        .iter()
        .zip(&key_cols)
        .map(|(p, k)| p.clone().eq(k.clone()))
        .collect();
    on.push(b.x.clone().eq(col(&value)));
    df.join_on(distinct, JoinType::Left, on).map_err(err())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::columns::PERIOD;
    use datafusion::arrow::array::{
        Array, ArrayRef, AsArray, Date32Array, Float64Array, Int64Array,
    };
    use datafusion::arrow::datatypes::{Float64Type, Int64Type};
    use formulas::expr::Func;

    /// `minmax`, `zscore` and `pct_rank` without whole-period windows
    /// (aggregates brought back as literals; ranks by `rank()` over a
    /// spillable sort, or counted by buckets of 2, 3 and 16 as on a
    /// cluster) give the same bits as the window expressions they replace:
    /// over periods with NULLs, ties, one with a constant value (minmax
    /// 0.5, zscore 0) and one with only NULLs, of a float and of an integer.
    #[tokio::test]
    async fn population_aggregates_as_literals_are_the_windows_bits() {
        let mut ids = Vec::new();
        let mut days = Vec::new();
        let mut xs = Vec::new();
        let mut ns = Vec::new();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for i in 0..400i64 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let p = (i % 4) as i32;
            ids.push(i);
            days.push(20_000 + 31 * p);
            ns.push(match p {
                _ if seed.is_multiple_of(11) => None,
                0 | 3 => Some((seed % 1000) as i64 - 500),
                1 => Some((seed % 3) as i64),
                _ => Some(7),
            });
            xs.push(match p {
                _ if seed.is_multiple_of(9) => None,
                0 => Some((seed % 100_000) as f64 / 7.0 - 3000.0),
                1 => Some((seed % 5) as f64),
                2 => Some(42.5),
                _ => None,
            });
        }
        let batch = RecordBatch::try_from_iter(vec![
            ("i", Arc::new(Int64Array::from(ids)) as ArrayRef),
            (PERIOD, Arc::new(Date32Array::from(days)) as ArrayRef),
            ("n", Arc::new(Int64Array::from(ns)) as ArrayRef),
            ("x", Arc::new(Float64Array::from(xs)) as ArrayRef),
        ])
        .unwrap();
        let ctx = crate::session::session(&crate::session::SessionOptions {
            threads: Some(2),
            memory_limit: Some(256 << 20),
            cluster: None,
            staging: None,
            input_bytes: None,
        })
        .unwrap();
        ctx.register_batch("t", batch).unwrap();
        let bits = |batches: Vec<RecordBatch>| -> Vec<(i64, Option<u64>)> {
            let mut out = Vec::new();
            for b in &batches {
                let (i, v) = (
                    b.column(0).as_primitive::<Int64Type>(),
                    b.column(1).as_primitive::<Float64Type>(),
                );
                for r in 0..b.num_rows() {
                    out.push((i.value(r), (!v.is_null(r)).then(|| v.value(r).to_bits())));
                }
            }
            out
        };
        let cases = [
            (Func::MinMax, "x", None),
            (Func::ZScore, "x", None),
            (Func::PctRank, "x", None),
            (Func::PctRank, "x", Some(2)),
            (Func::PctRank, "x", Some(3)),
            (Func::PctRank, "x", Some(16)),
            (Func::PctRank, "n", Some(3)),
            (Func::MinMax, "n", Some(3)),
        ];
        for (f, x, buckets) in cases {
            let e = formulas::compile::window_population(f, col(x), vec![col(PERIOD)]).unwrap();
            let df = ctx.table("t").await.unwrap();
            let eval = |df: DataFrame, e: Expr| async move {
                df.select(vec![col("i"), cast(e, DataType::Float64).alias("v")])
                    .unwrap()
                    .sort(vec![col("i").sort(true, false)])
                    .unwrap()
                    .collect()
                    .await
                    .unwrap()
            };
            let want = bits(eval(df.clone(), e.clone()).await);
            let mut counter = 0;
            let (d, replaced) = rewrite(&ctx, df, e.clone(), &mut counter, "test", buckets)
                .await
                .unwrap();
            // No window over a whole period is left (only `rank()`).
            let mut whole = 0;
            replaced
                .apply(|x| {
                    if let Expr::WindowFunction(w) = x
                        && w.params.order_by.is_empty()
                    {
                        whole += 1;
                    }
                    Ok(TreeNodeRecursion::Continue)
                })
                .unwrap();
            assert_eq!(whole, 0, "{f:?} {x} {buckets:?}: {replaced}");
            assert_ne!(replaced, e, "{f:?} {x} {buckets:?}");
            let got = bits(eval(d, replaced).await);
            assert_eq!(got.len(), 400);
            assert!(got.iter().any(|(_, v)| v.is_none()) && got.iter().any(|(_, v)| v.is_some()));
            assert_eq!(got, want, "{f:?} {x} {buckets:?}");
        }
    }
}
