//! croo's one function registry: the kernels that croo plans call besides
//! DataFusion's built-ins. Every session that runs a croo plan (a local
//! run, a Ballista scheduler, each executor) calls [`register`], so that a
//! plan serialised by function name resolves to the same code everywhere.
//!
//! - [`sum`]: `croo_sum(x)`, the exact, order-independent sum of Float64
//!   values ([`exact::ExactSum`]), and `croo_var_pop(x)`, the population
//!   variance from exact sums of `x` and `x²`, and `croo_sum_state(x)`,
//!   `croo_sum`'s exact sum as bytes a caller merges;
//! - [`strict`]: the NULL-strict row functions of the formula syntax
//!   (`croo_least`, `croo_greatest`, `croo_div`, `croo_mod`, `croo_and`,
//!   `croo_or`, `croo_if`);
//! - [`fused`]: `croo_fused`, a straight-line program of row operators run
//!   as one vectorised kernel;
//! - [`bucket`]: `croo_period_bucket(micros, boundaries)`, the first day
//!   of an instant's period in a calendar given as literal boundaries;
//! - [`period`]: `croo_period_start(micros, grain)`, the first day of an
//!   instant's period, and `croo_period_key(key, period)`, (customer,
//!   period) as one grouping and join key;
//! - [`instant`]: `croo_instant(text, column)`, ISO 8601 text to a UTC
//!   instant.
//!
//! This crate knows nothing of formula files: `formulas` compiles formulas
//! to calls of these functions, `connectors` uses [`instant`] to read text
//! instants, and `engine` registers them in its sessions.

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::AggregateUDF;

pub mod bucket;
pub mod exact;
pub mod fused;
pub mod instant;
pub mod period;
pub mod strict;
pub mod sum;

/// Every function of the registry.
pub fn aggregates() -> Vec<Arc<AggregateUDF>> {
    vec![sum::sum_udaf(), sum::var_pop_udaf(), sum::sum_state_udaf()]
}

/// Every scalar function of the registry (the NULL-strict row functions
/// of [`strict`], [`fused`], [`period`], [`instant`]).
pub fn scalars() -> Vec<Arc<datafusion::logical_expr::ScalarUDF>> {
    let mut all = strict::all();
    all.push(fused::udf());
    all.push(period::udf());
    all.push(bucket::udf());
    all.push(period::key_udf());
    all.push(period::key_period_udf());
    all.push(instant::udf());
    all
}

/// Registers every function of the registry in `registry` (a
/// `SessionContext`, a Ballista scheduler's session, ...).
pub fn register(registry: &mut dyn FunctionRegistry) -> Result<()> {
    for f in aggregates() {
        registry.register_udaf(f)?;
    }
    for f in scalars() {
        registry.register_udf(f)?;
    }
    Ok(())
}
