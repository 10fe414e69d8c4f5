//! `croo serve`: the HTTP API and the dashboard over a results store.

use std::path::PathBuf;

use crate::args::session_options;
use crate::exit::Failure;

#[derive(clap::Args)]
pub struct Args {
    /// Results store folder.
    #[arg(long, default_value = "croo-results")]
    pub results: PathBuf,
    /// Folder of formula files (`*.toml`) to list and to run.
    #[arg(long)]
    pub formulas: Option<PathBuf>,
    /// Keys file (made with `croo keys add`).
    #[arg(long)]
    pub keys: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub bind: std::net::SocketAddr,
    /// Serve without keys (everyone is admin); refused unless on loopback.
    #[arg(long)]
    pub insecure: bool,
    /// Threads of runs started over HTTP (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Memory limit of runs started over HTTP, e.g. 2GiB.
    #[arg(long)]
    pub memory_limit: Option<String>,
    /// Requests a second one key may make (bursts of twice that); past it, 429.
    #[arg(long, default_value_t = 10_000, value_name = "PER_SECOND")]
    pub key_rate: u32,
    /// Denied requests (no key, a wrong one) a second one address may make
    /// (bursts of 50) before it is slowed and answered 429.
    #[arg(long, default_value_t = 10, value_name = "PER_SECOND")]
    pub denied_rate: u32,
}

pub async fn run(a: Args) -> Result<u8, Failure> {
    let session = session_options(a.threads, a.memory_limit.as_deref())?;
    let config = api::Config {
        results: a.results,
        formulas: a.formulas,
        keys: a.keys,
        bind: a.bind,
        insecure: a.insecure,
        session,
        request_timeout: std::time::Duration::from_secs(30),
        limits: api::guard::Limits {
            key_per_second: a.key_rate.max(1),
            key_burst: a.key_rate.saturating_mul(2).max(1),
            denied_per_second: a.denied_rate.max(1),
            denied_burst: 50,
        },
    };
    api::serve(config, |addr| {
        eprintln!("croo serve: listening on http://{addr}");
    })
    .await?;
    Ok(0)
}
