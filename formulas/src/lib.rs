//! Formula files: read, check and compile.
//!
//! A formula file (TOML) is read with spans kept for every value
//! ([`syntax`]), checked as a whole with every problem collected
//! ([`check`]), and its formula-syntax expressions are compiled to
//! vectorised DataFusion expressions ([`compile`]) that call DataFusion's
//! built-ins and the kernels of croo's one function registry (the
//! `kernels` crate). This crate does no I/O: text in, a [`Formula`] and
//! [`Diagnostic`]s out.

pub mod check;
pub mod compile;
pub mod diagnostic;
pub mod expr;
pub mod limits;
pub mod measure;
pub mod model;
pub mod reference;
pub mod schema;
pub mod syntax;

pub use check::{Formula, check};
pub use diagnostic::{Diagnostic, Severity, SourceFile};
pub use model::*;
