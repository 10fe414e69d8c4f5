//! `croo serve`: the HTTP API and the dashboard over a results store, and
//! the schedules of its configuration file.

use std::path::PathBuf;

use crate::args::session_options;
use crate::exit::Failure;

#[derive(clap::Args)]
pub struct Args {
    /// A server configuration file (TOML): every flag below under its own
    /// name (`memory_limit`, `key_rate`, ...), and `[[schedules]]`. A flag
    /// on the command line wins over the file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Results store folder [default: croo-results].
    #[arg(long)]
    pub results: Option<PathBuf>,
    /// Folder of formula files (`*.toml`) to list and to run.
    #[arg(long)]
    pub formulas: Option<PathBuf>,
    /// Keys file (made with `croo keys add`).
    #[arg(long)]
    pub keys: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long)]
    pub bind: Option<std::net::SocketAddr>,
    /// Serve without keys (everyone is admin); refused unless on loopback.
    #[arg(long)]
    pub insecure: bool,
    /// Threads of runs started over HTTP or by a schedule (default: all
    /// cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Memory limit of runs started over HTTP or by a schedule, e.g. 2GiB.
    #[arg(long)]
    pub memory_limit: Option<String>,
    /// Requests a second one key may make (bursts of twice that); past it,
    /// 429 [default: 10000].
    #[arg(long, value_name = "PER_SECOND")]
    pub key_rate: Option<u32>,
    /// Denied requests (no key, a wrong one) a second one address may make
    /// (bursts of 50) before it is slowed and answered 429 [default: 10].
    #[arg(long, value_name = "PER_SECOND")]
    pub denied_rate: Option<u32>,
}

pub async fn run(a: Args) -> Result<u8, Failure> {
    let (file, schedules, alerts) = match &a.config {
        Some(path) => {
            let r = api::config::read(path)?;
            (r.file, r.schedules, r.alerts)
        }
        None => Default::default(),
    };
    let session = session_options(
        a.threads.or(file.threads),
        a.memory_limit.as_deref().or(file.memory_limit.as_deref()),
    )?;
    let key_rate = a.key_rate.or(file.key_rate).unwrap_or(10_000);
    let denied_rate = a.denied_rate.or(file.denied_rate).unwrap_or(10);
    let config = api::Config {
        results: a
            .results
            .or(file.results)
            .unwrap_or_else(|| PathBuf::from("croo-results")),
        formulas: a.formulas.or(file.formulas),
        keys: a.keys.or(file.keys),
        bind: a
            .bind
            .or(file.bind)
            .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 8080))),
        insecure: a.insecure || file.insecure.unwrap_or(false),
        session,
        request_timeout: std::time::Duration::from_secs(30),
        limits: api::guard::Limits {
            key_per_second: key_rate.max(1),
            key_burst: key_rate.saturating_mul(2).max(1),
            denied_per_second: denied_rate.max(1),
            denied_burst: 50,
        },
        schedules,
        alerts,
    };
    api::serve(config, |addr| {
        eprintln!("croo serve: listening on http://{addr}");
    })
    .await?;
    Ok(0)
}
