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

/// A customer's score from its components (the default combination).
pub fn score(file: &FormulaFile) -> Expr {
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

/// The per-customer contribution columns of a geometric or harmonic
/// score, `(column, expression)` over the score column; none for the
/// arithmetic mean (its contributions come from the component rollups).
pub fn contributions(file: &FormulaFile) -> Result<Vec<(String, Expr)>> {
    let w: f64 = file.components.iter().map(|c| c.weight).sum();
    let part = |c: &formulas::Component| -> Expr {
        match file.method {
            Method::Geometric => lit(c.weight) * strict::ln(t(file, &c.name.value)),
            _ => strict::div(lit(c.weight), t(file, &c.name.value)),
        }
    };
    if file.method == Method::Arithmetic {
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
