//! `croo scheduler` and `croo executor`: Ballista's cluster processes with
//! croo's function registry (see `engine::cluster`).

use crate::{Failure, user};

pub async fn scheduler(bind: std::net::SocketAddr) -> Result<u8, Failure> {
    eprintln!(
        "croo scheduler: listening on {bind} (clients: croo run --cluster df://HOST:{})",
        bind.port()
    );
    engine::cluster::scheduler(bind)
        .await
        .map_err(Failure::from)?;
    Ok(0)
}

pub async fn executor(
    scheduler: &str,
    bind_host: String,
    port: u16,
    grpc_port: u16,
    external_host: Option<String>,
    concurrent_tasks: usize,
    work_dir: Option<String>,
) -> Result<u8, Failure> {
    let (host, sport) = match scheduler.rsplit_once(':') {
        Some((h, p)) => (
            h.to_string(),
            p.parse::<u16>()
                .map_err(|_| user(format!("--scheduler `{scheduler}`: `{p}` is not a port")))?,
        ),
        None => (
            scheduler.to_string(),
            engine::cluster::DEFAULT_SCHEDULER_PORT,
        ),
    };
    eprintln!(
        "croo executor: joining the scheduler at {host}:{sport}; Flight on {bind_host}:{port}, gRPC on {bind_host}:{grpc_port}"
    );
    engine::cluster::executor(engine::cluster::ExecutorOptions {
        scheduler_host: host,
        scheduler_port: sport,
        bind_host,
        port,
        grpc_port,
        external_host,
        concurrent_tasks,
        work_dir,
    })
    .await
    .map_err(Failure::from)?;
    Ok(0)
}
