//! One module per command: its arguments, the engine call, the rendering.

pub mod check;
pub mod cluster;
pub mod customers;
pub mod diff;
pub mod experiment;
pub mod explain;
pub mod history;
pub mod inspect;
pub mod keys;
pub mod quickstart;
pub mod run;
pub mod sample;
pub mod schema;
pub mod serve;
pub mod status;
pub mod test;
