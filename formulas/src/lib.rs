//! Formula files: read, check and compile.
//!
//! A formula file (TOML) is read with spans kept for every value
//! ([`syntax`]), checked as a whole with every problem collected
//! ([`check`]), and its formula-syntax expressions are compiled to
//! vectorised DataFusion expressions ([`compile`]). [`functions`] is croo's
//! one registry of non-built-in functions (exact sums). This crate does no I/O:
//! text in, a [`Formula`] and [`Diagnostic`]s out.

pub mod check;
pub mod compile;
pub mod diagnostic;
pub mod exact;
pub mod expr;
pub mod functions;
pub mod fused;
pub mod instant;
pub mod measure;
pub mod model;
pub mod period;
pub mod reference;
pub mod schema;
pub mod strict;
pub mod syntax;

pub use check::{Formula, check};
pub use diagnostic::{Diagnostic, Severity, SourceFile};
pub use model::*;
