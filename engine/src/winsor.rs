//! Winsorisation of measures (`winsorise = { lower, upper }` of
//! `[measures.NAME]`, docs/formula-reference.md "Outliers"): each period,
//! a measure's values beyond its `lower` and `upper` quantiles over the
//! period's population are set to those quantiles, before anything reads
//! the measure (derived values, population functions, components).
//! Quantiles interpolate linearly between order statistics (`h = (n - 1)
//! p`: Hyndman and Fan's type 7, numpy's default), over the customers with
//! a value; NULLs stay NULL. A flag column records who was changed (counted
//! in the manifest). [`clamp`] is the entry point.
//!
//! `winsorise = { coinr = N }` is COINr's rule instead ([`coinr_rule`]):
//! per period, while the values' |skewness| > 2 and excess kurtosis > 3.5
//! (the bias-corrected G1 and G2 of `croo inspect`), the most extreme
//! value on the side of the skew is set to the next one, up to N values;
//! if they are still outlying after N, none is winsorised and the period's
//! values are log-transformed instead: `ln(x - min + 1)` for a positive
//! skew, `-ln(max - x + 1)` for a negative one. [`coinr`] reads the
//! measure's values (one query over the plan so far) and returns the
//! treatment of each period as literals.

use datafusion::functions_aggregate::percentile_cont::percentile_cont_udaf;
use datafusion::logical_expr::expr::WindowFunction;
use datafusion::logical_expr::{Expr, col, ident, lit, when};
use datafusion::prelude::cast;
use formulas::{Measure, Winsorise};

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
    let Some(Winsorise::Quantiles(lower, upper)) = m.winsorise else {
        return None;
    };
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

/// What COINr's rule does to one period's values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Treatment {
    /// Not outlying: unchanged.
    Keep,
    /// The `low` smallest and `high` largest values set to the next ones:
    /// clamped to `[lo, hi]`.
    Clamp {
        lo: f64,
        hi: f64,
        low: usize,
        high: usize,
    },
    /// Still outlying after the most points: log-transformed.
    Log { positive: bool, min: f64, max: f64 },
}

fn outlying(v: &[f64]) -> Option<bool> {
    let skew = crate::describe::skewness(v)?;
    let kurt = crate::describe::kurtosis(v)?;
    (skew.abs() > 2.0 && kurt > 3.5).then_some(skew > 0.0)
}

/// COINr's rule over one period's values (see the module's documentation).
pub fn coinr_rule(values: &[f64], max_points: u32) -> Treatment {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let Some(first_side) = outlying(&sorted) else {
        return Treatment::Keep;
    };
    let (mut low, mut high) = (0usize, 0usize);
    let mut side = first_side;
    for _ in 0..max_points {
        if low + high + 2 > n {
            break;
        }
        if side {
            high += 1;
        } else {
            low += 1;
        }
        let (lo, hi) = (sorted[low], sorted[n - 1 - high]);
        let current: Vec<f64> = sorted.iter().map(|x| x.clamp(lo, hi)).collect();
        match outlying(&current) {
            None => {
                return Treatment::Clamp { lo, hi, low, high };
            }
            Some(s) => side = s,
        }
    }
    Treatment::Log {
        positive: first_side,
        min: sorted[0],
        max: sorted[n - 1],
    }
}

/// The treatments of each period by COINr's rule, from the measure's raw
/// values in `df`: `(period as days since the epoch, treatment)`.
pub async fn coinr_treatments(
    df: &datafusion::prelude::DataFrame,
    m: &Measure,
    max_points: u32,
) -> crate::error::Result<Vec<(i32, Treatment, usize)>> {
    use datafusion::arrow::array::{Array, AsArray};
    let batches = df
        .clone()
        .select(vec![
            col(PERIOD),
            cast(
                ident(raw_col(&m.name.value)),
                datafusion::arrow::datatypes::DataType::Float64,
            ),
        ])
        .map_err(crate::error::Error::engine("winsorising"))?
        .collect()
        .await
        .map_err(crate::error::Error::engine("winsorising"))?;
    let mut by: std::collections::BTreeMap<i32, Vec<f64>> = std::collections::BTreeMap::new();
    for b in &batches {
        let p = b
            .column(0)
            .as_primitive::<datafusion::arrow::datatypes::Date32Type>();
        let x = b
            .column(1)
            .as_primitive::<datafusion::arrow::datatypes::Float64Type>();
        for r in 0..b.num_rows() {
            let e = by.entry(p.value(r)).or_default();
            if !x.is_null(r) {
                e.push(x.value(r));
            }
        }
    }
    Ok(by
        .into_iter()
        .map(|(p, v)| (p, coinr_rule(&v, max_points), v.len()))
        .collect())
}

/// The measure treated by COINr's rule (over its raw column) and the
/// changed flag: per period, the clamp or the log of its treatment.
pub fn coinr_exprs(
    m: &Measure,
    treatments: &[(i32, Treatment, usize)],
) -> crate::error::Result<(Expr, Expr)> {
    let x = cast(
        ident(raw_col(&m.name.value)),
        datafusion::arrow::datatypes::DataType::Float64,
    );
    let null = || lit(datafusion::scalar::ScalarValue::Float64(None));
    let mut out: Option<datafusion::logical_expr::conditional_expressions::CaseBuilder> = None;
    for (p, t, _) in treatments {
        let e = match t {
            Treatment::Keep => continue,
            Treatment::Clamp { lo, hi, .. } => kernels::strict::least(vec![
                kernels::strict::greatest(vec![x.clone(), lit(*lo)]),
                lit(*hi),
            ]),
            Treatment::Log {
                positive: true,
                min,
                ..
            } => kernels::strict::ln(x.clone() - lit(*min) + lit(1.0)),
            Treatment::Log { max, .. } => -kernels::strict::ln(lit(*max) - x.clone() + lit(1.0)),
        };
        let cond = col(PERIOD).eq(lit(datafusion::scalar::ScalarValue::Date32(Some(*p))));
        out = Some(match out {
            None => when(cond, e),
            Some(b) => {
                let mut b = b;
                b.when(cond, e)
            }
        });
    }
    let treated = match out {
        None => x.clone(),
        Some(mut b) => b
            .otherwise(x.clone())
            .map_err(crate::error::Error::engine("winsorising"))?,
    };
    let treated = when(x.clone().is_null(), null())
        .otherwise(treated)
        .map_err(crate::error::Error::engine("winsorising"))?;
    let changed = x.clone().is_not_null().and(x.not_eq(treated.clone()));
    Ok((treated, changed))
}
