//! Names of the columns the engine's tables share: the per-customer table
//! that `plan` builds and `rollup`, `score` and `uncertainty` read, and the
//! tables sources are registered as.

/// The entity key, cast to the common key type.
pub const KEY: &str = "__key";
/// The period's first day (`Date32`).
pub const PERIOD: &str = "__period";
/// The customer's score (Float64).
pub const SCORE: &str = "__score";
/// The customer's rollup weight (Float64).
pub const WEIGHT: &str = "__weight";
/// Whether the customer counts in rollups (score and weight not NULL,
/// weight > 0).
pub const INCLUDED: &str = "__included";

/// Column name of dimension `i` in the per-customer table.
pub fn dim_col(i: usize) -> String {
    format!("__dim_{i}")
}

/// Table name a source is registered under.
pub fn table_name(source: &str) -> String {
    format!("croo_src_{source}")
}
