//! End-to-end tests of the `croo` binary, and tidy checks of the workspace.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "tests report skipped services"
)]

mod aggregation;
mod bad_data;
mod calendars;
mod cli;
mod cluster;
mod crash;
mod customers;
mod experiment;
mod imputation;
mod memberships;
mod operations;
mod outliers;
mod serve;
mod services;
mod snapshots;
mod sources;
mod targets;
mod tidy;
mod uncertainty;
