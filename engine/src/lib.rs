//! The engine: plans and runs a formula over its sources with DataFusion,
//! computes the rollups, and writes the results store.
//!
//! Entry points: [`load`] (read and check a formula file), [`run`] (compute
//! and commit a run), and the lower-level [`register_sources`] and
//! [`compute`] used by `croo test` and `croo explain`. The engine never
//! prints.

#[cfg(feature = "distributed")]
pub mod cluster;
pub mod diff;
pub mod error;
pub mod explain;
pub mod formula_tests;
pub mod materialise;
pub mod period;
pub mod plan;
pub mod rollup;
pub mod run;
pub mod sample;
pub mod store;
pub mod uncertainty;

pub use error::{Class, Error, Result};
pub use rollup::{ComponentResult, Components, ResultRow};
pub use run::{
    Computed, Loaded, PeriodChoice, RunReport, RunRequest, SessionOptions, compute, is_distributed,
    load, new_run_id, register_sources, resolve_periods, run, run_with_id, session, session_for,
};
