//! End-to-end tests of the `croo` binary, and tidy checks of the workspace.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "tests report skipped services"
)]

mod cli;
mod cluster;
mod services;
mod snapshots;
mod sources;
mod tidy;
