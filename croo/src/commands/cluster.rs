//! `croo scheduler` and `croo executor`: Ballista's cluster processes with
//! croo's function registry (see `engine::cluster`).

use crate::exit::{Failure, user};

#[derive(clap::Args)]
pub struct SchedulerArgs {
    /// Address to listen on (gRPC for clients and executors).
    #[arg(long, default_value = "0.0.0.0:50050")]
    pub bind: std::net::SocketAddr,
}

#[derive(clap::Args)]
pub struct ExecutorArgs {
    /// The scheduler to join, HOST:PORT.
    #[arg(long, default_value = "localhost:50050")]
    pub scheduler: String,
    /// Host to bind the executor's ports to.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_host: String,
    /// Arrow Flight port (shuffle data).
    #[arg(long, default_value_t = 50051)]
    pub port: u16,
    /// gRPC port (tasks from the scheduler).
    #[arg(long, default_value_t = 50052)]
    pub grpc_port: u16,
    /// Host name the scheduler and other executors reach this one by.
    #[arg(long)]
    pub external_host: Option<String>,
    /// Concurrent tasks (default: all cores).
    #[arg(long, default_value_t = 0)]
    pub concurrent_tasks: usize,
    /// Folder for shuffle files (default: a temporary folder).
    #[arg(long)]
    pub work_dir: Option<String>,
}

pub async fn scheduler(a: SchedulerArgs) -> Result<u8, Failure> {
    eprintln!(
        "croo scheduler: listening on {} (clients: croo run --cluster df://HOST:{})",
        a.bind,
        a.bind.port()
    );
    engine::cluster::scheduler(a.bind).await?;
    Ok(0)
}

pub async fn executor(a: ExecutorArgs) -> Result<u8, Failure> {
    let (host, sport) = match a.scheduler.rsplit_once(':') {
        Some((h, p)) => (
            h.to_string(),
            p.parse::<u16>().map_err(|_| {
                user(format!(
                    "--scheduler `{}`: `{p}` is not a port",
                    a.scheduler
                ))
            })?,
        ),
        None => (a.scheduler.clone(), engine::cluster::DEFAULT_SCHEDULER_PORT),
    };
    eprintln!(
        "croo executor: joining the scheduler at {host}:{sport}; Flight on {}:{}, gRPC on {}:{}",
        a.bind_host, a.port, a.bind_host, a.grpc_port
    );
    engine::cluster::executor(engine::cluster::ExecutorOptions {
        scheduler_host: host,
        scheduler_port: sport,
        bind_host: a.bind_host,
        port: a.port,
        grpc_port: a.grpc_port,
        external_host: a.external_host,
        concurrent_tasks: a.concurrent_tasks,
        work_dir: a.work_dir,
    })
    .await?;
    Ok(0)
}
