//! The engine: plans and runs a formula over its sources with DataFusion,
//! computes the rollups, and writes the results store.
//!
//! Entry points: [`load`] (read and check a formula file), [`score`]
//! (compute some periods, writing nothing: `croo explain`, `diff`, `test`),
//! [`run`] (score and commit a run to the results store) and
//! [`check_sources`] (the sources' schemas against the formula). The engine
//! never prints.
//!
//! Its modules depend on each other one way, from the bottom up: `error`,
//! `columns`, `period`, `materialise`, `combine` and `cluster` depend on nothing else
//! here; `session` on those; `load`, `folder`; `sources` on `session` and `load`;
//! `plan` and `rollup`; `store`; `score` on all of those; `run`,
//! `formula_tests`, `explain`, `diff` and `uncertainty` on `score`'s
//! results. `croo/tests/it/tidy.rs` checks it.

#[cfg(feature = "distributed")]
pub mod aggregation;
pub mod calendar;
pub mod cluster;
pub mod columns;
pub mod combine;
pub mod contracts;
pub mod customers;
pub mod describe;
pub mod diff;
pub mod durable;
pub mod editions;
pub mod error;
pub mod exclusions;
pub mod experiment;
pub mod explain;
pub mod folder;
pub mod formula_tests;
pub mod freshness;
pub mod history;
pub mod imputation;
pub mod inspect;
pub mod leftovers;
pub mod load;
pub mod materialise;
pub mod memberships;
pub mod one_stage;
pub mod period;
pub mod plan;
pub mod population;
pub mod provenance;
pub mod publish;
pub mod rollup;
pub mod run;
pub mod sample;
pub mod score;
pub mod session;
pub mod sources;
pub mod staged_write;
pub mod store;
pub mod summary;
pub mod targets;
pub mod uncertainty;
pub mod winsor;

pub use error::{Class, Error, Result};
pub use load::{Loaded, load};
pub use rollup::{ComponentResult, Components, ResultRow};
pub use run::{
    PeriodChoice, Publishing, RunReport, RunRequest, new_run_id, resolve_periods, run, run_with_id,
};
pub use score::{Computed, ScoreOptions, score};
pub use session::{SessionOptions, is_distributed, session};
pub use sources::{Reach, check_sources};
