//! How components combine into a customer's score (`[score] method`,
//! docs/formula-reference.md "Score and rollups"): the weighted arithmetic
//! mean, or the weighted geometric or harmonic mean of `component +
//! shift`, less `shift`; and, for the latter two, each customer's
//! contribution of each component, a decomposition that adds up to its
//! score exactly:
//!
//! - geometric, log shares: `S = exp(sum(w_k ln t_k) / W) - shift` with
//!   `t_k = c_k + shift`, `W = sum(w_k)`; `contribution_k = S w_k ln t_k /
//!   sum(w_j ln t_j)` (`S w_k / W` when that sum is 0);
//! - harmonic, reciprocal shares: `S = W / sum(w_k / t_k) - shift`;
//!   `contribution_k = S (w_k / t_k) / sum(w_j / t_j)`.
//!
//! A group's contribution is the rollup-weighted mean of its customers'
//! (times `scale`), so the group's contributions add up to its score.
//! [`score`] and [`contributions`] are the entry points.

use datafusion::logical_expr::{Expr, ident, lit, when};
use datafusion::prelude::cast;
use formulas::{FormulaFile, Method};
use kernels::strict;

use crate::columns::SCORE;
use crate::error::{Error, Result};

/// The column of component `k`'s per-customer contribution.
pub fn contribution_col(component: &str) -> String {
    format!("__contribution_{component}")
}

fn t(file: &FormulaFile, c: &str) -> Expr {
    cast(ident(c), datafusion::arrow::datatypes::DataType::Float64) + lit(file.shift)
}

/// `1` when component `c` has a value, else `0`.
fn present(c: &str) -> Expr {
    when(ident(c).is_null(), lit(0.0))
        .otherwise(lit(1.0))
        .unwrap_or(lit(1.0))
}

/// `e` for a customer with a value of `c`, else 0.
fn if_present(c: &str, e: Expr) -> Expr {
    when(ident(c).is_null(), lit(0.0))
        .otherwise(e)
        .unwrap_or(lit(0.0))
}

/// The weight of the components a customer has values for (`W'`).
fn present_weight(file: &FormulaFile) -> Expr {
    file.components
        .iter()
        .map(|c| lit(c.weight) * present(&c.name.value))
        .reduce(|a, b| a + b)
        .unwrap_or(lit(0.0))
}

/// A customer's score from its components (the default combination).
/// With `min_coverage`, the components it has values for, re-weighted
/// (`W'` their weight): arithmetic `W sum_present(w c) / W'`, geometric
/// and harmonic over `W'`; NULL when `W' / W < min_coverage`.
pub fn score(file: &FormulaFile) -> Expr {
    let Some(min) = file.min_coverage else {
        return full(file);
    };
    let w: f64 = file.components.iter().map(|c| c.weight).sum();
    let wp = present_weight(file);
    let sum = |terms: Vec<Expr>| terms.into_iter().reduce(|a, b| a + b).unwrap_or(lit(0.0));
    let s = match file.method {
        Method::Arithmetic => strict::div(
            lit(w)
                * sum(file
                    .components
                    .iter()
                    .map(|c| if_present(&c.name.value, lit(c.weight) * ident(&c.name.value)))
                    .collect()),
            wp.clone(),
        ),
        Method::Geometric => {
            let logs = sum(file
                .components
                .iter()
                .map(|c| {
                    if_present(
                        &c.name.value,
                        lit(c.weight) * strict::ln(t(file, &c.name.value)),
                    )
                })
                .collect());
            datafusion::functions::math::expr_fn::exp(strict::div(logs, wp.clone()))
                - lit(file.shift)
        }
        Method::Harmonic => {
            let inv = sum(file
                .components
                .iter()
                .map(|c| {
                    if_present(
                        &c.name.value,
                        strict::div(lit(c.weight), t(file, &c.name.value)),
                    )
                })
                .collect());
            strict::div(wp.clone(), inv) - lit(file.shift)
        }
    };
    when(wp.gt_eq(lit(min * w)).and(lit(w).gt(lit(0.0))), s)
        .otherwise(lit(datafusion::scalar::ScalarValue::Float64(None)))
        .unwrap_or(lit(datafusion::scalar::ScalarValue::Float64(None)))
}

fn full(file: &FormulaFile) -> Expr {
    let w: f64 = file.components.iter().map(|c| c.weight).sum();
    let sum = |terms: Vec<Expr>| terms.into_iter().reduce(|a, b| a + b).unwrap_or(lit(0.0));
    match file.method {
        Method::Arithmetic => sum(file
            .components
            .iter()
            .map(|c| lit(c.weight) * ident(&c.name.value))
            .collect()),
        Method::Geometric => {
            let logs = sum(file
                .components
                .iter()
                .map(|c| lit(c.weight) * strict::ln(t(file, &c.name.value)))
                .collect());
            datafusion::functions::math::expr_fn::exp(strict::div(logs, lit(w))) - lit(file.shift)
        }
        Method::Harmonic => {
            let inv = sum(file
                .components
                .iter()
                .map(|c| strict::div(lit(c.weight), t(file, &c.name.value)))
                .collect());
            strict::div(lit(w), inv) - lit(file.shift)
        }
    }
}

/// Whether contributions are the rollups of per-customer ones
/// ([`contributions`]): geometric and harmonic means, and re-weighted
/// arithmetic means (`min_coverage`).
pub fn per_customer(file: &FormulaFile) -> bool {
    file.method != Method::Arithmetic || file.min_coverage.is_some()
}

/// The per-customer contribution columns, `(column, expression)` over the
/// score column, when [`per_customer`]: shares of the score (log,
/// reciprocal, or of the present weighted components); none for a plain
/// arithmetic mean (its contributions come from the component rollups).
pub fn contributions(file: &FormulaFile) -> Result<Vec<(String, Expr)>> {
    let w: f64 = file.components.iter().map(|c| c.weight).sum();
    let part = |c: &formulas::Component| -> Expr {
        let e = match file.method {
            Method::Geometric => lit(c.weight) * strict::ln(t(file, &c.name.value)),
            Method::Harmonic => strict::div(lit(c.weight), t(file, &c.name.value)),
            Method::Arithmetic => lit(c.weight) * ident(&c.name.value),
        };
        if file.min_coverage.is_some() {
            if_present(&c.name.value, e)
        } else {
            e
        }
    };
    if !per_customer(file) {
        return Ok(Vec::new());
    }
    let total = file
        .components
        .iter()
        .map(part)
        .reduce(|a, b| a + b)
        .unwrap_or(lit(0.0));
    file.components
        .iter()
        .map(|c| {
            let share = when(total.clone().eq(lit(0.0)), lit(c.weight / w))
                .otherwise(strict::div(part(c), total.clone()))
                .map_err(Error::engine("contributions"))?;
            Ok((contribution_col(&c.name.value), ident(SCORE) * share))
        })
        .collect()
}

/// The run-time check of a geometric or harmonic score: for each
/// component, `(name, condition)` true for a customer whose `component +
/// shift` is not above 0.
pub fn not_positive(file: &FormulaFile) -> Vec<(String, Expr)> {
    if file.method == Method::Arithmetic {
        return Vec::new();
    }
    file.components
        .iter()
        .map(|c| (c.name.value.clone(), t(file, &c.name.value).lt_eq(lit(0.0))))
        .collect()
}
