//! End-to-end tests of the `croo` binary, and tidy checks of the workspace.

mod cli;
mod snapshots;
mod tidy;
