//! The sources' aggregates brought to the population with one join, on a
//! cluster. Entered through [`measures`].
//!
//! Locally each source's aggregate is joined to the population in turn
//! (`agg RIGHT JOIN pop`, one hash table per source, no data moved). On
//! Ballista a chain of joins costs a shuffle per join: the adaptive planner
//! cannot tell that a join's output is already partitioned by the key the
//! next join needs, so it shuffles the population, which grows wider with
//! every join, again before each one, or it broadcasts an aggregate to
//! every task (its bytes times the tasks). Both grow faster than the data.
//!
//! Here the aggregates are first made one table: their rows stacked
//! (`UNION ALL`, each source's columns NULL in the other sources' rows)
//! and grouped by the join key, each column taking its one non-NULL value
//! (`max`). Then that table is joined to the population once. The work is
//! one shuffle of the aggregates' rows and one join: linear in the data.
//!
//! The same rows and bits as the chain of joins: every source's aggregate
//! has at most one row per key, so a key's group holds at most one non-NULL
//! value per column, and `max` of one value is that value; a key a source
//! has no row for gets NULL in that source's columns, as the outer join
//! gives. The population keeps its own rows (and its multiplicity) through
//! the one `RIGHT JOIN`.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::functions_aggregate::expr_fn::max;
use datafusion::logical_expr::{Expr, JoinType, col, ident, lit};
use datafusion::prelude::DataFrame;

use crate::error::{Error, Result};

/// The combined table's key columns (`__u0`, `__u1`, ...).
fn key_col(i: usize) -> String {
    format!("__u{i}")
}

/// One source's aggregate and the columns it joins on, in the order of
/// the population's key columns.
pub struct Aggregate {
    /// At most one row per key.
    pub df: DataFrame,
    /// Its key columns.
    pub keys: Vec<String>,
}

/// `pop` with every aggregate's columns, as `aggs[i] RIGHT JOIN pop` for each `i` in turn on
/// `pop_keys`, as one grouping and one join (see the module's doc). Every
/// aggregate joins on as many columns as `pop_keys`, of the same types.
/// The aggregates' key columns are not kept.
pub fn measures(pop: DataFrame, aggs: Vec<Aggregate>, pop_keys: &[&str]) -> Result<DataFrame> {
    let what = || Error::engine("combining the sources' measures");
    // Every aggregate's value columns, typed, in order.
    let mut values: Vec<(String, DataType)> = Vec::new();
    for a in &aggs {
        for f in a.df.schema().fields() {
            if !a.keys.iter().any(|k| k == f.name()) {
                values.push((f.name().clone(), f.data_type().clone()));
            }
        }
    }
    let mut stacked: Option<DataFrame> = None;
    for a in aggs {
        let mut sel: Vec<Expr> = a
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| ident(k).alias(key_col(i)))
            .collect();
        for (name, ty) in &values {
            if a.df.schema().has_column_with_unqualified_name(name) {
                sel.push(ident(name));
            } else {
                // A NULL of the column's type.
                sel.push(lit(ScalarValue::try_from(ty).map_err(what())?).alias(name));
            }
        }
        let df = a.df.select(sel).map_err(what())?;
        stacked = Some(match stacked {
            None => df,
            Some(s) => s.union(df).map_err(what())?,
        });
    }
    // No aggregate: the population as it is, as no join gives.
    let Some(stacked) = stacked else {
        return Ok(pop);
    };
    let group: Vec<Expr> = (0..pop_keys.len()).map(|i| col(key_col(i))).collect();
    let aggs: Vec<Expr> = values
        .iter()
        .map(|(name, _)| max(ident(name)).alias(name))
        .collect();
    let combined = stacked.aggregate(group, aggs).map_err(what())?;
    let ukeys: Vec<String> = (0..pop_keys.len()).map(key_col).collect();
    let ukeys: Vec<&str> = ukeys.iter().map(String::as_str).collect();
    combined
        .join(pop, JoinType::Right, &ukeys, pop_keys, None)
        .map_err(what())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Float64Array, Int32Array, Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::arrow::util::display::array_value_to_string;
    use datafusion::prelude::SessionContext;
    use std::sync::Arc;

    fn table(
        ctx: &SessionContext,
        cols: Vec<(&str, Arc<dyn datafusion::arrow::array::Array>)>,
    ) -> DataFrame {
        let schema = Schema::new(
            cols.iter()
                .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
                .collect::<Vec<_>>(),
        );
        let batch =
            RecordBatch::try_new(Arc::new(schema), cols.into_iter().map(|(_, a)| a).collect())
                .unwrap();
        ctx.read_batch(batch).unwrap()
    }

    /// The rows of `df` as text (floats with every bit, in hexadecimal),
    /// sorted, for an order-free comparison.
    async fn rows(df: DataFrame) -> Vec<String> {
        let batches = df.collect().await.unwrap();
        let mut out: Vec<String> = Vec::new();
        for b in &batches {
            for r in 0..b.num_rows() {
                let mut line = String::new();
                for (c, f) in b.schema().fields().iter().enumerate() {
                    let a = b.column(c);
                    let v = if let Some(x) = a.as_any().downcast_ref::<Float64Array>() {
                        // Every bit of a float.
                        if a.is_null(r) {
                            "NULL".to_string()
                        } else {
                            format!("{:#x}", x.value(r).to_bits())
                        }
                    } else {
                        array_value_to_string(a, r).unwrap()
                    };
                    line.push_str(&format!("{}={v} ", f.name()));
                }
                out.push(line);
            }
        }
        out.sort();
        out
    }

    /// Stacking and grouping the aggregates, then one join, gives the
    /// rows and bits of the chain of `agg RIGHT JOIN pop`: keys in some
    /// sources only, keys in no source, aggregate keys outside the
    /// population, a population key twice, NULL, NaN and -0.0 values, an
    /// integer and a float column.
    #[tokio::test]
    async fn one_grouping_and_one_join_is_the_chain_of_joins() {
        let ctx = SessionContext::new();
        let pop = || {
            table(
                &ctx,
                vec![
                    ("__key", Arc::new(Int64Array::from(vec![1, 2, 3, 4, 4, 5]))),
                    (
                        "__tag",
                        Arc::new(Int32Array::from(vec![10, 20, 30, 40, 41, 50])),
                    ),
                ],
            )
        };
        let a = || {
            table(
                &ctx,
                vec![
                    ("__kp_a", Arc::new(Int64Array::from(vec![1, 2, 4, 9]))),
                    (
                        "__rows_a",
                        Arc::new(Int32Array::from(vec![Some(3), None, Some(1), Some(7)])),
                    ),
                    (
                        "__m_x",
                        Arc::new(Float64Array::from(vec![
                            Some(-0.0),
                            Some(f64::NAN),
                            None,
                            Some(1.5),
                        ])),
                    ),
                ],
            )
        };
        let b = || {
            table(
                &ctx,
                vec![
                    ("__kp_b", Arc::new(Int64Array::from(vec![2, 3, 4, 8]))),
                    ("__n_b", Arc::new(Int64Array::from(vec![5, 0, -2, 6]))),
                    (
                        "__m_y",
                        Arc::new(Float64Array::from(vec![
                            Some(0.1 + 0.2),
                            Some(-1e300),
                            Some(0.0),
                            None,
                        ])),
                    ),
                ],
            )
        };
        let chain = b()
            .join(
                a().join(pop(), JoinType::Right, &["__kp_a"], &["__key"], None)
                    .unwrap(),
                JoinType::Right,
                &["__kp_b"],
                &["__key"],
                None,
            )
            .unwrap();
        let keep = |df: DataFrame| {
            df.select_columns(&["__key", "__tag", "__rows_a", "__m_x", "__n_b", "__m_y"])
                .unwrap()
        };
        let one = measures(
            pop(),
            vec![
                Aggregate {
                    df: a(),
                    keys: vec!["__kp_a".into()],
                },
                Aggregate {
                    df: b(),
                    keys: vec!["__kp_b".into()],
                },
            ],
            &["__key"],
        )
        .unwrap();
        let expected = rows(keep(chain)).await;
        assert_eq!(expected.len(), 6);
        assert_eq!(rows(keep(one)).await, expected);
    }
}
