//! Running on an Apache DataFusion Ballista cluster (cargo feature
//! `distributed`, on by default).
//!
//! Executors and the scheduler resolve functions by name, so croo ships its
//! own cluster processes ([`scheduler`], [`executor`]): Ballista's, with
//! croo's function registry ([`kernels`]) added. A client
//! session ([`connect`]) sends the logical plan to the scheduler, which
//! plans it with that registry and hands the stages to the executors.
//!
//! What runs where: reading the sources, the per-source aggregation, the
//! joins and the population functions run on the cluster; the executors
//! write every table the plan materialises (each source's aggregates, the
//! table before each population function, the per-customer table) to a
//! staging folder (`materialise::staged_under`) and the rollups,
//! population statistics and checks run on the cluster over it (the same
//! exact sums, so the same bits): only their results come back to the
//! client. Sources must be readable by every
//! executor: absolute paths on a shared file system or object store URLs.
//! PostgreSQL sources cannot be serialised to executors and are refused.

use std::net::SocketAddr;
use std::sync::Arc;

use ballista::prelude::{SessionConfigExt, SessionContextExt};
use ballista_core::config::BallistaConfig;
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use datafusion::execution::SessionState;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::error::{Error, Result};

/// The port a Ballista scheduler listens on unless told otherwise.
pub const DEFAULT_SCHEDULER_PORT: u16 = 50050;

fn cluster_err(context: &'static str) -> impl FnOnce(String) -> Error {
    move |e| Error::User(format!("{context}: {e}"))
}

/// Whether `ctx` sends its plans to a Ballista cluster.
pub fn is_distributed(ctx: &SessionContext) -> bool {
    ctx.state()
        .config()
        .options()
        .extensions
        .get::<BallistaConfig>()
        .is_some()
}

/// The session state of croo's scheduler: Ballista's default, plus croo's
/// functions.
fn scheduler_session(config: SessionConfig) -> datafusion::common::Result<SessionState> {
    let state = ballista_core::utils::default_session_builder(config)?;
    // The scheduler lists the sources' files when it plans: object stores
    // are opened from its own environment, as on executors.
    let runtime = RuntimeEnvBuilder::new()
        .with_object_store_registry(Arc::new(
            connectors::remote::LazyObjectStoreRegistry::default(),
        ))
        .build_arc()?;
    let mut state = SessionStateBuilder::new_from_existing(state)
        .with_runtime_env(runtime)
        .with_query_planner(crate::staged_write::query_planner())
        .build();
    kernels::register(&mut state)?;
    Ok(state)
}

/// A client session whose queries run on the cluster at `url`
/// (`df://host:port`), planned for `partitions` partitions (Ballista's
/// default when `None`); its materialised tables are written by the
/// executors under `staging` (`materialise::staged_under`).
pub async fn connect(
    url: &str,
    partitions: Option<usize>,
    staging: std::path::PathBuf,
) -> Result<SessionContext> {
    if !url.starts_with("df://") {
        return Err(Error::User(format!(
            "--cluster `{url}`: expected df://HOST:PORT (a Ballista scheduler)"
        )));
    }
    let mut config = SessionConfig::new_with_ballista();
    if let Some(n) = partitions {
        config = config.with_target_partitions(n.max(1));
    }
    let config = crate::materialise::staged_under(config, staging);
    let runtime = RuntimeEnvBuilder::new()
        .build_arc()
        .map_err(Error::engine("setting up the session"))?;
    let mut state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_default_features()
        .build();
    kernels::register(&mut state).map_err(Error::engine("registering croo's functions"))?;
    // The client connects lazily: try the scheduler's port first, so that
    // a wrong address is a clear error rather than a failed query.
    let addr = url.trim_start_matches("df://").trim_end_matches('/');
    let addr = if addr.contains(':') {
        addr.to_string()
    } else {
        format!("{addr}:{DEFAULT_SCHEDULER_PORT}")
    };
    match tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::net::TcpStream::connect(&addr),
    )
    .await
    {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            return Err(Error::User(format!(
                "cannot reach the Ballista scheduler at {url}: {e} (start one with `croo scheduler`)"
            )));
        }
        Err(_) => {
            return Err(Error::User(format!(
                "cannot reach the Ballista scheduler at {url}: no answer in 10 s"
            )));
        }
    }
    SessionContext::remote_with_state(url, state)
        .await
        .map_err(|e| Error::User(format!("cannot reach the Ballista scheduler at {url}: {e}")))
}

/// Runs croo's scheduler on `bind` until the process is stopped.
pub async fn scheduler(bind: SocketAddr) -> Result<()> {
    let config = SchedulerConfig {
        bind_host: bind.ip().to_string(),
        bind_port: bind.port(),
        override_session_builder: Some(Arc::new(scheduler_session)),
        override_physical_codec: Some(crate::staged_write::codec()),
        ..Default::default()
    };
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(|e| cluster_err("starting the scheduler")(e.to_string()))?;
    start_server(cluster, bind, Arc::new(config))
        .await
        .map_err(|e| cluster_err("scheduler")(e.to_string()))
}

/// Where an executor listens and which scheduler it joins.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    pub scheduler_host: String,
    pub scheduler_port: u16,
    /// Address the executor binds (its Flight port for shuffles is `port`,
    /// its gRPC port `grpc_port`).
    pub bind_host: String,
    pub port: u16,
    pub grpc_port: u16,
    /// The host name other executors and the scheduler reach it by.
    pub external_host: Option<String>,
    /// Concurrent tasks; all cores when 0.
    pub concurrent_tasks: usize,
    /// Folder for shuffle files; a temporary one when `None`.
    pub work_dir: Option<String>,
}

/// Runs croo's executor until it is stopped (SIGTERM, Ctrl-C, or the
/// scheduler).
pub async fn executor(opts: ExecutorOptions) -> Result<()> {
    // Ballista's registry does not take `register_udaf`: fill its map.
    let mut registry = BallistaFunctionRegistry::default();
    for f in kernels::aggregates() {
        registry
            .aggregate_functions
            .insert(f.name().to_string(), f.clone());
        for alias in f.aliases() {
            registry
                .aggregate_functions
                .insert(alias.clone(), f.clone());
        }
    }
    for f in kernels::scalars() {
        registry
            .scalar_functions
            .insert(f.name().to_string(), f.clone());
    }
    let work_dir = match opts.work_dir {
        Some(d) => d,
        None => {
            let d = std::env::temp_dir().join(format!("croo-executor-{}", std::process::id()));
            std::fs::create_dir_all(&d).map_err(Error::io(format!("creating {}", d.display())))?;
            d.to_string_lossy().to_string()
        }
    };
    let spill_dir = work_dir.clone();
    let config = ExecutorProcessConfig {
        scheduler_host: opts.scheduler_host,
        scheduler_port: opts.scheduler_port,
        bind_host: opts.bind_host,
        port: opts.port,
        grpc_port: opts.grpc_port,
        external_host: opts.external_host,
        vcores: opts.concurrent_tasks,
        work_dir: Some(work_dir),
        override_function_registry: Some(Arc::new(registry)),
        override_physical_codec: Some(crate::staged_write::codec()),
        // Object stores are opened on first use from the executor's own
        // environment (credentials never travel in plans).
        override_runtime_producer: Some(Arc::new(move |_config: &SessionConfig| {
            RuntimeEnvBuilder::new()
                .with_temp_file_path(spill_dir.clone())
                .with_object_store_registry(Arc::new(
                    connectors::remote::LazyObjectStoreRegistry::default(),
                ))
                .build_arc()
        })),
        ..Default::default()
    };
    start_executor_process(Arc::new(config))
        .await
        .map_err(|e| cluster_err("executor")(e.to_string()))
}
