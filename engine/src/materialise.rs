//! Materialising an intermediate table once for several readers: in memory
//! (`DataFrame::cache`) by default, or, under a memory limit, as Parquet
//! files in a scratch folder that is removed with the session, so that a
//! table larger than the limit never has to sit in memory; on a cluster,
//! as Parquet files the executors write into a shared staging folder, so
//! that the table never passes through the client.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::prelude::{DataFrame, ParquetReadOptions, SessionConfig, SessionContext};

use crate::error::{Error, Result};

/// A scratch folder for materialised tables, removed when dropped (with the
/// session whose config holds it).
#[derive(Debug)]
pub struct Scratch {
    dir: PathBuf,
    next: AtomicUsize,
    /// Held while the folder exists (see `leftovers`).
    owner: Option<crate::leftovers::Owner>,
}

impl Scratch {
    fn new() -> Scratch {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "croo-scratch-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        // Claimed before the folder is made; a process killed meanwhile
        // leaves both to `leftovers::clean_temp`.
        let owner = crate::leftovers::claim(&dir).ok();
        Scratch {
            dir,
            next: AtomicUsize::new(0),
            owner,
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        // The owner file goes after the folder.
        self.owner.take();
    }
}

/// Makes sessions of `config` materialise on disk.
pub fn on_disk(config: SessionConfig) -> SessionConfig {
    config.with_extension(Arc::new(Scratch::new()))
}

/// Whether sessions of `ctx` run under a memory limit (and materialise in
/// a scratch folder).
pub fn is_limited(ctx: &SessionContext) -> bool {
    ctx.state().config().get_extension::<Scratch>().is_some()
}

/// Whether sessions of `ctx` materialise on disk: they run under a memory
/// limit, or on a cluster.
pub fn is_on_disk(ctx: &SessionContext) -> bool {
    let state = ctx.state();
    let config = state.config();
    config.get_extension::<Scratch>().is_some()
        || config.get_extension::<ClusterStaging>().is_some()
}

/// `df` computed once, readable many times. On a cluster the executors
/// write it (see [`staged_under`]) and every query over it runs on the
/// cluster.
pub async fn materialise(ctx: &SessionContext, df: DataFrame, what: &str) -> Result<DataFrame> {
    if let Some(path) = std::env::var_os("CROO_EXPLAIN_ANALYZE") {
        profile(&df, what, Path::new(&path)).await?;
    }
    if let Some(staging) = ctx.state().config().get_extension::<ClusterStaging>() {
        return staging.stage(ctx, df, what).await;
    }
    let Some(scratch) = ctx.state().config().get_extension::<Scratch>() else {
        return df.cache().await.map_err(Error::engine(what.to_string()));
    };
    let n = scratch.next.fetch_add(1, Ordering::Relaxed);
    let dir = scratch.dir.join(format!("t{n}"));
    std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    let path = format!("{}/", dir.display());
    let schema = df.schema().inner().clone();
    df.write_parquet(&path, DataFrameWriteOptions::new(), None)
        .await
        .map_err(Error::engine(what.to_string()))?;
    ctx.read_parquet(&path, ParquetReadOptions::default().schema(&schema))
        .await
        .map_err(Error::engine(what.to_string()))
}

/// On a cluster: where the executors write the tables [`materialise`]
/// keeps (a folder every executor, the scheduler and this process reach at
/// the same path: a shared file system), and the folders written so far,
/// removed with the session whose config holds this.
#[derive(Debug)]
pub struct ClusterStaging {
    under: PathBuf,
    held: std::sync::Mutex<Vec<Staged>>,
}

/// Makes a cluster session's materialised tables Parquet folders the
/// executors write under `under`.
pub fn staged_under(config: SessionConfig, under: PathBuf) -> SessionConfig {
    config.with_extension(Arc::new(ClusterStaging {
        under,
        held: std::sync::Mutex::new(Vec::new()),
    }))
}

impl ClusterStaging {
    fn fresh(&self, name: &str) -> Result<Staged> {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let dir = self.under.join(format!(
            "croo-staged-{}-{}-{}{name}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        Ok(Staged { dir })
    }

    /// `df` written by the executors into a fresh folder and read back
    /// through the cluster: every later query over it runs on the
    /// executors and only its result comes to this process.
    async fn stage(&self, ctx: &SessionContext, df: DataFrame, what: &str) -> Result<DataFrame> {
        let staged = self.fresh("")?;
        let path = format!("{}/", staged.dir.display());
        // Held before the write: a failed write's files go with the session.
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(staged);
        let schema = df.schema().inner().clone();
        df.write_parquet(&path, DataFrameWriteOptions::new(), None)
            .await
            .map_err(Error::engine(what.to_string()))?;
        ctx.read_parquet(&path, ParquetReadOptions::default().schema(&schema))
            .await
            .map_err(Error::engine(what.to_string()))
    }
}

/// A folder the executors of a cluster wrote a table into, removed when
/// dropped.
#[derive(Debug)]
struct Staged {
    dir: PathBuf,
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// On a cluster session (see [`staged_under`]): `df` written by the
/// executors as one Parquet file into a fresh folder under the staging
/// folder, which lives as long as the returned file, not the session.
pub async fn write_file(ctx: &SessionContext, df: DataFrame, name: &str) -> Result<StagedFile> {
    let Some(staging) = ctx.state().config().get_extension::<ClusterStaging>() else {
        return Err(Error::User(format!(
            "writing {name}: this session has no staging folder (not on a cluster)"
        )));
    };
    let staged = staging.fresh(&format!("-{name}"))?;
    let dir = &staged.dir;
    // One partition (the plan ends in a sort): one file in the folder.
    let df = df
        .repartition(datafusion::logical_expr::Partitioning::RoundRobinBatch(1))
        .map_err(Error::engine(format!("writing {name} on the cluster")))?;
    df.write_parquet(
        &format!("{}/", dir.display()),
        DataFrameWriteOptions::new(),
        None,
    )
    .await
    .map_err(Error::engine(format!("writing {name} on the cluster")))?;
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(Error::io(format!("reading {}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .collect();
    match files.as_slice() {
        [one] => Ok(StagedFile {
            path: one.clone(),
            _staged: staged,
        }),
        other => Err(Error::User(format!(
            "the cluster wrote {} files for {name} into {} (expected one)",
            other.len(),
            dir.display()
        ))),
    }
}

/// A file the executors wrote, removed (with its folder) when dropped.
#[derive(Debug)]
pub struct StagedFile {
    pub path: PathBuf,
    _staged: Staged,
}

/// Appends DataFusion's `EXPLAIN ANALYZE` of `df` (every operator with its
/// rows and time) to `path`, under a `== what` line:
/// `CROO_EXPLAIN_ANALYZE=FILE`, for profiling (each materialised table,
/// i.e. each source's aggregates and the per-customer table, is computed
/// one more time).
async fn profile(df: &DataFrame, what: &str, path: &Path) -> Result<()> {
    let batches = df
        .clone()
        .explain(false, true)
        .map_err(Error::engine("explaining the plan"))?
        .collect()
        .await
        .map_err(Error::engine("explaining the plan"))?;
    let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
        .map_err(|e| Error::engine("explaining the plan")(e.into()))?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(Error::io(format!("writing {}", path.display())))?;
    // One write: sources are aggregated (and profiled) at the same time.
    file.write_all(format!("== {what}\n{text}\n").as_bytes())
        .map_err(Error::io(format!("writing {}", path.display())))
}
