//! Winsorisation of measures (`winsorise = { lower, upper }` of
//! `[measures.NAME]`, docs/formula-reference.md "Outliers"): each period,
//! a measure's values beyond its `lower` and `upper` quantiles over the
//! period's population are set to those quantiles, before anything reads
//! the measure (derived values, population functions, components).
//! Quantiles interpolate linearly between order statistics (`h = (n - 1)
//! p`: Hyndman and Fan's type 7, numpy's default), over the customers with
//! a value; NULLs stay NULL. A flag column records who was changed (counted
//! in the manifest). [`clamp`] is the entry point.

use datafusion::functions_aggregate::percentile_cont::percentile_cont_udaf;
use datafusion::logical_expr::expr::WindowFunction;
use datafusion::logical_expr::{Expr, col, ident, lit, when};
use datafusion::prelude::cast;
use formulas::Measure;

use crate::columns::PERIOD;

/// The measure as aggregated, before winsorisation.
pub fn raw_col(measure: &str) -> String {
    format!("__unwinsorised_{measure}")
}

/// Whether the customer's measure was changed (boolean).
pub fn changed_col(measure: &str) -> String {
    format!("__winsorised_{measure}")
}

fn quantile(x: Expr, p: f64) -> Expr {
    let mut w = WindowFunction::new(percentile_cont_udaf(), vec![x.clone(), lit(p)]);
    w.params.partition_by = vec![col(PERIOD)];
    w.params.order_by = vec![x.sort(true, false)];
    // The whole period, whatever the order.
    w.params.window_frame = datafusion::logical_expr::WindowFrame::new(None);
    Expr::WindowFunction(Box::new(w))
}

/// The winsorised measure (over its raw column) and the changed flag, for
/// a measure that winsorises.
pub fn clamp(m: &Measure) -> Option<(Expr, Expr)> {
    let (lower, upper) = m.winsorise?;
    let x = cast(
        ident(raw_col(&m.name.value)),
        datafusion::arrow::datatypes::DataType::Float64,
    );
    let (lo, hi) = (quantile(x.clone(), lower), quantile(x.clone(), upper));
    let clamped = when(
        x.clone().is_null(),
        lit(datafusion::scalar::ScalarValue::Float64(None)),
    )
    .when(x.clone().lt(lo.clone()), lo)
    .when(x.clone().gt(hi.clone()), hi)
    .otherwise(x.clone())
    .ok()?;
    let changed = x.clone().is_not_null().and(x.not_eq(clamped.clone()));
    Some((clamped, changed))
}
