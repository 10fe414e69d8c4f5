//! The DataFusion session a computation runs in: threads, partitions,
//! batch size and memory limit, croo's function registry, and whether the
//! plans run here or on a Ballista cluster.

use std::sync::Arc;

use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::error::{Error, Result};

/// How a session is set up.
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    /// Threads; all cores when `None`. DataFusion plans for
    /// [`PARTITIONS_PER_THREAD`] partitions per thread (one under a memory
    /// limit). Results are the same bits for any value.
    pub threads: Option<usize>,
    /// Memory limit in bytes; operators spill to disk past it.
    pub memory_limit: Option<usize>,
    /// A Ballista scheduler (`df://host:port`) to run on instead of this
    /// process.
    pub cluster: Option<String>,
    /// On a cluster, the folder under which the executors write the
    /// per-customer table for the rollups to read (every executor, the
    /// scheduler and this process must reach it at this path); the
    /// system's temporary folder when `None`.
    pub staging: Option<std::path::PathBuf>,
    /// The sources' total size in bytes, when every source is a local file
    /// or folder: under [`SMALL_INPUT_BYTES`] the session keeps
    /// DataFusion's default batch size (see [`session`]).
    pub input_bytes: Option<u64>,
}

/// Inputs smaller than this (128 MiB) are read in DataFusion's default
/// batches of 8192 rows rather than croo's 32768.
pub const SMALL_INPUT_BYTES: u64 = 128 << 20;

/// The session a run uses: a local one ([`session`]), or a client of the
/// Ballista cluster named in `opts.cluster`.
pub async fn session_for(opts: &SessionOptions) -> Result<SessionContext> {
    match &opts.cluster {
        None => session(opts),
        #[cfg(feature = "distributed")]
        Some(url) => {
            let under = opts.staging.clone().unwrap_or_else(std::env::temp_dir);
            crate::cluster::connect(url, opts.threads, under).await
        }
        #[cfg(not(feature = "distributed"))]
        Some(url) => Err(Error::User(format!(
            "--cluster {url}: this build of croo has no cluster support (build with the `distributed` feature)"
        ))),
    }
}

/// Whether `ctx` runs its plans on a Ballista cluster.
pub fn is_distributed(ctx: &SessionContext) -> bool {
    #[cfg(feature = "distributed")]
    return crate::cluster::is_distributed(ctx);
    #[cfg(not(feature = "distributed"))]
    {
        let _ = ctx;
        false
    }
}

/// DataFusion partitions per thread, without a memory limit.
pub const PARTITIONS_PER_THREAD: usize = 8;

/// A DataFusion session with croo's settings.
pub fn session(opts: &SessionOptions) -> Result<SessionContext> {
    // All cores unless told otherwise. Results do not depend on the number
    // of partitions: every floating-point sum is exact (croo_sum), see
    // ARCHITECTURE.md.
    let threads = opts
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    // DataFusion's own settings can be tuned from `DATAFUSION_*` variables
    // (`DATAFUSION_EXECUTION_BATCH_SIZE=...`), as in `datafusion-cli`; the
    // ones croo sets below win, except the partitions (see below). Results
    // do not depend on them.
    let mut config =
        SessionConfig::from_env().map_err(Error::engine("reading DATAFUSION_* settings"))?;
    // Eight partitions per thread (unless DATAFUSION_EXECUTION_TARGET_PARTITIONS
    // says otherwise): each partition's hash tables (the sources'
    // aggregates, the measure joins) are an eighth of the size, and the
    // runtime interleaves them. A 450k-customer run on 2 threads
    // (benches/whole-run.sh's data, interleaved): 2 partitions 9.5 s and
    // 2.8 GiB, 8 partitions 8.0 s and 1.9 GiB (measured 2026-11-23); with huge pages
    // and dictionary-encoded dimensions, 16 partitions 4.58-4.83 s against
    // 4.69-5.16 s for 8, and 7% less memory (2026-11-24). Under a memory
    // limit, one per thread: the measured configuration there, and each
    // partition's operators get a larger share of the limit.
    if std::env::var_os("DATAFUSION_EXECUTION_TARGET_PARTITIONS").is_none() {
        let per_thread = if opts.memory_limit.is_some() {
            1
        } else {
            PARTITIONS_PER_THREAD
        };
        config = config.with_target_partitions(threads * per_thread);
    }
    // Batches of 32768 rows unless told otherwise: a croo run is a few
    // large scans and aggregations, where larger batches cost fewer
    // per-batch overheads (about 8% of a 450k-customer run, measured
    // interleaved with benches/whole-run.sh's data; 10-15% against 8192
    // rows on 2026-12-03). Under a memory limit the smaller default keeps
    // each operator's buffers small, and so it does for small inputs,
    // where every partition's operators hold a batch or two whatever the
    // data: at 28k customers (70 MB of files) 8192-row batches lowered the
    // peak by 20-40 MiB (10-15%) at the same time; at 112k customers (264
    // MB) they no longer did.
    let small = opts.input_bytes.is_some_and(|b| b < SMALL_INPUT_BYTES);
    if std::env::var_os("DATAFUSION_EXECUTION_BATCH_SIZE").is_none()
        && opts.memory_limit.is_none()
        && !small
    {
        config = config.with_batch_size(32_768);
    }
    let mut rt = RuntimeEnvBuilder::new();
    if let Some(limit) = opts.memory_limit {
        rt = rt.with_memory_pool(Arc::new(FairSpillPool::new(limit)));
        // Under a memory limit, joins are sort-merge joins: their sorts
        // spill to disk, where a hash join's build side must fit in memory
        // (the population is one row per customer and period).
        config = config.set_bool("datafusion.optimizer.prefer_hash_join", false);
    }
    // Intermediate tables go to a scratch folder: all of them as Parquet
    // under a memory limit, the sources' aggregates as Arrow IPC files
    // otherwise (`engine::materialise`).
    config = crate::materialise::in_scratch(config, opts.memory_limit.is_some());
    let rt = rt
        .build_arc()
        .map_err(Error::engine("setting up the session"))?;
    let mut ctx = SessionContext::new_with_config_rt(config, rt);
    kernels::register(&mut ctx).map_err(Error::engine("registering croo's functions"))?;
    Ok(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch_rows(input_bytes: Option<u64>, memory_limit: Option<usize>) -> usize {
        let ctx = session(&SessionOptions {
            threads: Some(1),
            memory_limit,
            input_bytes,
            ..SessionOptions::default()
        })
        .unwrap();
        ctx.state().config().batch_size()
    }

    #[test]
    fn small_inputs_and_memory_limits_keep_datafusions_batch_size() {
        assert_eq!(batch_rows(None, None), 32_768);
        assert_eq!(batch_rows(Some(SMALL_INPUT_BYTES), None), 32_768);
        assert_eq!(batch_rows(Some(SMALL_INPUT_BYTES - 1), None), 8192);
        assert_eq!(batch_rows(Some(0), None), 8192);
        assert_eq!(batch_rows(None, Some(256 << 20)), 8192);
    }
}
