//! Missing components imputed from the period's population (`impute` of
//! `[score.components.NAME]`, docs/formula-reference.md "Missing
//! components"): a customer whose component is NULL gets 0, the mean or
//! the median of the period's customers that have one, or the median of
//! its group of a dimension; a flag column records who was imputed (the
//! result rows count them). [`fill`] is the entry point.

use datafusion::functions_aggregate::count::count_udaf;
use datafusion::functions_aggregate::median::median_udaf;
use datafusion::logical_expr::expr::WindowFunction;
use datafusion::logical_expr::{Expr, col, ident, lit};
use datafusion::prelude::{cast, coalesce};
use formulas::{Component, FormulaFile, Impute};

use crate::columns::{PERIOD, dim_col};

/// The component as computed, before imputation.
pub fn raw_col(component: &str) -> String {
    format!("__raw_{component}")
}

/// Whether the customer's component was imputed (boolean).
pub fn imputed_col(component: &str) -> String {
    format!("__imputed_{component}")
}

fn window(
    f: std::sync::Arc<datafusion::logical_expr::AggregateUDF>,
    x: Expr,
    by: Vec<Expr>,
) -> Expr {
    let mut w = WindowFunction::new(f, vec![x]);
    w.params.partition_by = by;
    Expr::WindowFunction(Box::new(w))
}

/// The imputed component (over its raw column) and the imputed flag, for
/// a component that imputes.
pub fn fill(file: &FormulaFile, c: &Component) -> Option<(Expr, Expr)> {
    let raw = cast(
        ident(raw_col(&c.name.value)),
        datafusion::arrow::datatypes::DataType::Float64,
    );
    let by = vec![col(PERIOD)];
    let stat = match c.impute.as_ref()? {
        Impute::Zero => lit(0.0),
        Impute::Mean => {
            // Exact sums: the same bits whatever the order of the rows.
            let s = window(kernels::sum::sum_udaf(), raw.clone(), by.clone());
            let n = window(count_udaf(), raw.clone(), by);
            s / cast(n, datafusion::arrow::datatypes::DataType::Float64)
        }
        Impute::Median => window(median_udaf(), raw.clone(), by),
        Impute::GroupMedian(d) => {
            let i = file
                .dimensions
                .iter()
                .position(|x| x.name.value == d.value)?;
            window(
                median_udaf(),
                raw.clone(),
                vec![col(PERIOD), col(dim_col(i))],
            )
        }
    };
    let filled = coalesce(vec![raw.clone(), stat]);
    let flag = raw.is_null().and(filled.clone().is_not_null());
    Some((filled, flag))
}
