//! End-to-end tests of the `croo` binary, and tidy checks of the workspace.

mod cli;
mod cluster;
mod services;
mod snapshots;
mod sources;
mod tidy;
