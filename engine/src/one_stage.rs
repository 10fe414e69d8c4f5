//! Grouped aggregations in one stage where a partial one saves nothing.
//!
//! DataFusion aggregates in two stages: a partial aggregation per input
//! partition, an exchange on the group's hash, and a final aggregation that
//! merges the partial states. That pays when the partial stage shrinks the
//! rows. A source's aggregation by (customer, period) does not: its groups
//! are a third or more of its rows, and a file's rows of one customer and
//! period mostly sit in one partition, so the partial stage emits about as
//! many states as the final stage then groups again (measured on the
//! whole-run benchmark's data: 762 k states from 2.19 M interactions, 691 k
//! from 1.65 M transactions, every one of them a final group).
//!
//! [`one_stage`] rewrites such a plan so that the rows are exchanged on the
//! group's hash first and aggregated once per partition
//! (`AggregateMode::SinglePartitioned`, what DataFusion itself plans for
//! input already partitioned on the group). Aggregates over ordered rows
//! (`first_value(x ORDER BY t)`) keep their two stages: an exchange does
//! not keep a sort's order. The result is the same rows:
//! the same aggregate functions over the same rows of each group, and every
//! floating-point sum is exact (`croo_sum`), so the order rows reach a
//! group in does not change its bits.

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::{ExecutionPlan, Partitioning};

/// `plan` with every partial-exchange-final aggregation grouped by plain
/// expressions (no grouping sets) turned into an exchange of the rows on
/// the group's hash and one aggregation per partition.
pub fn one_stage(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        let Some(rewritten) = rewrite(&node)? else {
            return Ok(Transformed::no(node));
        };
        Ok(Transformed::yes(rewritten))
    })
    .map(|t| t.data)
}

/// The one-stage form of `node`, when it is a final aggregation over a hash
/// exchange of a partial one.
fn rewrite(node: &Arc<dyn ExecutionPlan>) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let Some(last) = node.downcast_ref::<AggregateExec>() else {
        return Ok(None);
    };
    if *last.mode() != AggregateMode::FinalPartitioned {
        return Ok(None);
    }
    let Some(exchange) = last.input().downcast_ref::<RepartitionExec>() else {
        return Ok(None);
    };
    let &Partitioning::Hash(_, parts) = exchange.partitioning() else {
        return Ok(None);
    };
    let Some(first) = exchange.input().downcast_ref::<AggregateExec>() else {
        return Ok(None);
    };
    // An aggregate over ordered rows (`first_value(x ORDER BY t)`) reads
    // its partition's rows in the order a sort below gave them, which an
    // exchange would not keep: such plans stay as they are.
    if *first.mode() != AggregateMode::Partial
        || first.group_expr().has_grouping_set()
        || first.group_expr().is_empty()
        || first.aggr_expr().iter().any(|a| !a.order_bys().is_empty())
    {
        return Ok(None);
    }
    let rows = Arc::new(RepartitionExec::try_new(
        Arc::clone(first.input()),
        Partitioning::Hash(first.group_expr().input_exprs(), parts),
    )?);
    let once = AggregateExec::try_new(
        AggregateMode::SinglePartitioned,
        first.group_expr().clone(),
        first.aggr_expr().to_vec(),
        first.filter_expr().to_vec(),
        rows,
        first.input_schema(),
    )?
    .with_limit_options(last.limit_options());
    Ok(Some(Arc::new(once)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Float64Array, Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::physical_plan::{collect, displayable};
    use datafusion::prelude::{SessionConfig, SessionContext};

    /// A table of `(k, x)` rows over four partitions, each partition
    /// holding every key (so that a partial stage would merge nothing).
    fn context() -> SessionContext {
        let mut ctx =
            SessionContext::new_with_config(SessionConfig::new().with_target_partitions(4));
        kernels::register(&mut ctx).expect("croo's functions");
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("x", DataType::Float64, true),
        ]));
        let parts: Vec<Vec<RecordBatch>> = (0..4)
            .map(|p| {
                let k: Vec<Option<i64>> = (0..50)
                    .map(|i| (i % 7 != 3).then_some((i * 13 + p) % 17))
                    .collect();
                let x: Vec<Option<f64>> = (0..50)
                    .map(|i| (i % 5 != 1).then(|| (i as f64 + p as f64 * 0.37).sin() * 1e3))
                    .collect();
                vec![
                    RecordBatch::try_new(
                        schema.clone(),
                        vec![
                            Arc::new(Int64Array::from(k)),
                            Arc::new(Float64Array::from(x)),
                        ],
                    )
                    .expect("a batch"),
                ]
            })
            .collect();
        let table = datafusion::datasource::MemTable::try_new(schema, parts).expect("a table");
        ctx.register_table("t", Arc::new(table))
            .expect("registered");
        ctx
    }

    const QUERY: &str = "SELECT k, count(*) AS n, count(x) AS nx, croo_sum(x) AS s, \
        min(x) AS lo, max(x) FILTER (WHERE x > 0) AS hi, \
        count(DISTINCT CAST(x > 0 AS INT)) AS signs \
        FROM t GROUP BY k ORDER BY k";

    #[tokio::test]
    async fn one_stage_aggregations_give_the_rows_of_two_stage_ones() {
        let ctx = context();
        let df = ctx.sql(QUERY).await.expect("planned");
        let two = df.clone().create_physical_plan().await.expect("a plan");
        let shown = displayable(two.as_ref()).indent(false).to_string();
        assert!(shown.contains("mode=Partial"), "{shown}");
        let one = one_stage(Arc::clone(&two)).expect("rewritten");
        let shown = displayable(one.as_ref()).indent(false).to_string();
        assert!(
            shown.contains("mode=SinglePartitioned") && !shown.contains("mode=Partial"),
            "{shown}"
        );
        let run = |p: Arc<dyn ExecutionPlan>| {
            let task = ctx.task_ctx();
            async move {
                pretty_format_batches(&collect(p, task).await.expect("ran"))
                    .expect("shown")
                    .to_string()
            }
        };
        let (a, b) = (run(two).await, run(one).await);
        assert_eq!(a, b);
        assert_eq!(a.lines().count(), 17 + 1 + 4, "{a}");
    }

    #[tokio::test]
    async fn aggregations_without_groups_or_over_ordered_rows_are_left_alone() {
        let ctx = context();
        for sql in [
            "SELECT count(*), croo_sum(x) FROM t",
            "SELECT k, first_value(x ORDER BY x DESC) FROM t GROUP BY k",
        ] {
            let plan = ctx
                .sql(sql)
                .await
                .expect("planned")
                .create_physical_plan()
                .await
                .expect("a plan");
            let before = displayable(plan.as_ref()).indent(false).to_string();
            // Two stages, which the rewrite would otherwise take.
            assert!(
                before.contains("mode=Partial") && before.contains("mode=Final"),
                "{before}"
            );
            let after = displayable(one_stage(plan).expect("rewritten").as_ref())
                .indent(false)
                .to_string();
            assert_eq!(before, after, "{sql}");
        }
    }
}
