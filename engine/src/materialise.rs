//! Materialising an intermediate table once for several readers: in memory
//! (`DataFrame::cache`) by default, the sources' aggregates as Arrow IPC
//! files in a scratch folder removed with the session ([`spool`]), or,
//! under a memory limit, every table as Parquet files in that folder, so
//! that a table larger than the limit never has to sit in memory; on a cluster,
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
    /// The session runs under a memory limit: tables are Parquet files.
    /// Otherwise the tables [`spool`] keeps are Arrow IPC files.
    limited: bool,
    /// Held while the folder exists (see `leftovers`); claimed with the
    /// first table, so that a session that keeps none leaves no trace.
    owner: std::sync::Mutex<Option<crate::leftovers::Owner>>,
}

impl Scratch {
    fn new(limited: bool) -> Scratch {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "croo-scratch-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        Scratch {
            dir,
            next: AtomicUsize::new(0),
            limited,
            owner: std::sync::Mutex::new(None),
        }
    }

    /// A fresh folder for one table.
    fn table_dir(&self) -> Result<PathBuf> {
        {
            // Claimed before the folder is made; a process killed meanwhile
            // leaves both to `leftovers::clean_temp`.
            let mut owner = self.owner.lock().unwrap_or_else(|e| e.into_inner());
            if owner.is_none() {
                *owner = crate::leftovers::claim(&self.dir).ok();
            }
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let dir = self.dir.join(format!("t{n}"));
        std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        Ok(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        // The owner file goes after the folder.
        self.owner.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// Makes sessions of `config` materialise in a scratch folder: as Parquet
/// when `limited` (they run under a memory limit), else as Arrow IPC.
pub fn in_scratch(config: SessionConfig, limited: bool) -> SessionConfig {
    config.with_extension(Arc::new(Scratch::new(limited)))
}

/// Whether sessions of `ctx` run under a memory limit (and materialise
/// Parquet files in a scratch folder).
pub fn is_limited(ctx: &SessionContext) -> bool {
    ctx.state()
        .config()
        .get_extension::<Scratch>()
        .is_some_and(|s| s.limited)
}

/// Whether sessions of `ctx` materialise as Parquet: they run under a
/// memory limit, or on a cluster.
pub fn is_on_disk(ctx: &SessionContext) -> bool {
    is_limited(ctx)
        || ctx
            .state()
            .config()
            .get_extension::<ClusterStaging>()
            .is_some()
}

/// `df` computed once, readable many times. On a cluster the executors
/// write it (see [`staged_under`]) and every query over it runs on the
/// cluster.
pub async fn materialise(ctx: &SessionContext, df: DataFrame, what: &str) -> Result<DataFrame> {
    materialise_as(ctx, df, what, false).await
}

/// The same, but in a local session without a memory limit, as Arrow IPC
/// files in the scratch folder rather than in memory: for the sources'
/// aggregates, which are read twice (by the population join and by the
/// count of rows read) and would otherwise stay in the process's memory
/// through the whole per-customer computation. In files they sit in the
/// operating system's file cache, which the system reclaims when memory is
/// short: the 450k-customer run's peak is about 0.45 GiB lower, for about
/// 0.3 s more (benches/README.md, "Wall time and peak memory against DuckDB"). Their
/// grouped aggregations run in one stage ([`crate::one_stage`]).
pub async fn spool(ctx: &SessionContext, df: DataFrame, what: &str) -> Result<DataFrame> {
    materialise_as(ctx, df, what, true).await
}

async fn materialise_as(
    ctx: &SessionContext,
    df: DataFrame,
    what: &str,
    spool: bool,
) -> Result<DataFrame> {
    if let Some(path) = std::env::var_os("CROO_EXPLAIN_ANALYZE") {
        let config = ctx.state().config().clone();
        let in_ipc = spool
            && config.get_extension::<ClusterStaging>().is_none()
            && config
                .get_extension::<Scratch>()
                .is_some_and(|s| !s.limited);
        profile(&df, what, Path::new(&path), in_ipc).await?;
    }
    if let Some(staging) = ctx.state().config().get_extension::<ClusterStaging>() {
        return staging.stage(ctx, df, what).await;
    }
    let Some(scratch) = ctx.state().config().get_extension::<Scratch>() else {
        return df.cache().await.map_err(Error::engine(what.to_string()));
    };
    if !scratch.limited {
        if !spool {
            return df.cache().await.map_err(Error::engine(what.to_string()));
        }
        return in_ipc_files(ctx, df, &scratch.table_dir()?, what).await;
    }
    in_parquet_files(ctx, df, &scratch.table_dir()?, what).await
}

/// `df` written as Parquet files into `dir` and read back: the scratch
/// tables of a session under a memory limit (a cluster's staged tables
/// are written by `staged_write`).
async fn in_parquet_files(
    ctx: &SessionContext,
    df: DataFrame,
    dir: &Path,
    what: &str,
) -> Result<DataFrame> {
    let path = format!("{}/", dir.display());
    let schema = df.schema().inner().clone();
    df.write_parquet(&path, DataFrameWriteOptions::new(), None)
        .await
        .map_err(Error::engine(what.to_string()))?;
    ctx.read_parquet(&path, ParquetReadOptions::default().schema(&schema))
        .await
        .map_err(Error::engine(what.to_string()))
}

/// `df` written as Arrow IPC files into `dir`, one per partition, each by
/// a task of its own (the partitions are computed in parallel), and read
/// back. The table lives in the operating system's file cache while
/// memory allows, not in the process's memory: the process holds only the
/// batches being read. Unlike Parquet, nothing is encoded: writing and
/// reading cost about a copy.
async fn in_ipc_files(
    ctx: &SessionContext,
    df: DataFrame,
    dir: &Path,
    what: &str,
) -> Result<DataFrame> {
    use datafusion::arrow::ipc::writer::FileWriter;
    use futures::StreamExt;
    let err = || Error::engine(what.to_string());
    let schema = df.schema().inner().clone();
    // A source's aggregation: one stage, not partial then final.
    let task = Arc::new(df.task_ctx());
    let plan = df.create_physical_plan().await.map_err(err())?;
    let plan = crate::one_stage::one_stage(plan).map_err(err())?;
    let streams =
        datafusion::physical_plan::execute_stream_partitioned(plan, task).map_err(err())?;
    let mut tasks = Vec::new();
    for (i, mut stream) in streams.into_iter().enumerate() {
        let path = dir.join(format!("part-{i}.arrow"));
        let schema = schema.clone();
        tasks.push(tokio::spawn(async move {
            let file = std::fs::File::create(&path)
                .map_err(Error::io(format!("creating {}", path.display())))?;
            let mut w = FileWriter::try_new(std::io::BufWriter::new(file), &schema)
                .map_err(|e| Error::engine("writing a scratch table")(e.into()))?;
            while let Some(batch) = stream.next().await {
                let batch = batch.map_err(Error::engine("computing a scratch table"))?;
                w.write(&batch)
                    .map_err(|e| Error::engine("writing a scratch table")(e.into()))?;
            }
            w.finish()
                .map_err(|e| Error::engine("writing a scratch table")(e.into()))?;
            Ok::<_, Error>(())
        }));
    }
    for t in tasks {
        t.await
            .map_err(|e| Error::User(format!("{what}: a task failed: {e}")))??;
    }
    let path = format!("{}/", dir.display());
    ctx.read_arrow(
        &path,
        datafusion::datasource::file_format::options::ArrowReadOptions {
            schema: Some(&schema),
            ..Default::default()
        },
    )
    .await
    .map_err(err())
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
        let dir = staged.dir.clone();
        // Held before the write: a failed write's files go with the session.
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(staged);
        // One file per partition, each written by the task that computed
        // it (`staged_write`), rather than every row through one task.
        let schema = df.schema().inner().clone();
        let writers = crate::staged_write::write(df, &dir)
            .await
            .map_err(Error::engine(what.to_string()))?;
        tracing::debug!(writers, "{what}: staged");
        ctx.read_parquet(
            &format!("{}/", dir.display()),
            ParquetReadOptions::default().schema(&schema),
        )
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

/// Appends the plan of `df` with every operator's metrics (rows, time), as
/// DataFusion's `EXPLAIN ANALYZE` shows them, to `path`, under a `== what`
/// line: `CROO_EXPLAIN_ANALYZE=FILE`, for profiling (each materialised
/// table, i.e. each source's aggregates and the per-customer table, is
/// computed one more time). `one_stage`: the plan as [`in_ipc_files`] runs
/// it ([`crate::one_stage`]).
async fn profile(df: &DataFrame, what: &str, path: &Path, one_stage: bool) -> Result<()> {
    let err = || Error::engine("explaining the plan");
    let task = Arc::new(df.task_ctx());
    let mut plan = df.clone().create_physical_plan().await.map_err(err())?;
    if one_stage {
        plan = crate::one_stage::one_stage(plan).map_err(err())?;
    }
    datafusion::physical_plan::collect(Arc::clone(&plan), task)
        .await
        .map_err(err())?;
    let text =
        datafusion::physical_plan::display::DisplayableExecutionPlan::with_metrics(plan.as_ref())
            .indent(true);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(Error::io(format!("writing {}", path.display())))?;
    // One write: sources are aggregated (and profiled) at the same time.
    file.write_all(format!("== {what}\n{text}\n").as_bytes())
        .map_err(Error::io(format!("writing {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray, Int64Array, StringArray};
    use datafusion::arrow::datatypes::Int64Type;
    use datafusion::arrow::record_batch::RecordBatch;

    /// A spooled table reads back the same rows from Arrow IPC files in the
    /// session's scratch folder (one per partition), which goes with the
    /// session; a session that spools nothing makes no folder.
    #[tokio::test]
    async fn spooled_tables_round_trip_and_go_with_the_session() {
        let ctx = SessionContext::new_with_config(in_scratch(
            SessionConfig::new().with_target_partitions(3),
            false,
        ));
        let dir = ctx
            .state()
            .config()
            .get_extension::<Scratch>()
            .unwrap()
            .dir
            .clone();
        assert!(!dir.exists());
        let n = 60_000i64;
        let batch = RecordBatch::try_from_iter(vec![
            ("k", Arc::new(Int64Array::from_iter_values(0..n)) as _),
            (
                "s",
                Arc::new(StringArray::from_iter(
                    (0..n).map(|i| (i % 7 != 0).then(|| format!("v{i}"))),
                )) as _,
            ),
        ])
        .unwrap();
        // Three partitions of two batches each.
        let parts: Vec<Vec<RecordBatch>> = (0..3)
            .map(|p| {
                (0..2)
                    .map(|h| {
                        let len = (n / 6) as usize;
                        batch.slice((p * 2 + h) * len, len)
                    })
                    .collect()
            })
            .collect();
        let table = datafusion::datasource::MemTable::try_new(batch.schema(), parts).unwrap();
        ctx.register_table("t", Arc::new(table)).unwrap();
        let df = ctx.table("t").await.unwrap();
        let spooled = spool(&ctx, df, "test").await.unwrap();
        let files = std::fs::read_dir(dir.join("t0")).unwrap().count();
        assert_eq!(files, 3);
        let rows = |batches: Vec<RecordBatch>| {
            let mut out: Vec<(i64, Option<String>)> = Vec::new();
            for b in &batches {
                let (k, s) = (
                    b.column(0).as_primitive::<Int64Type>(),
                    b.column(1).as_string::<i32>(),
                );
                for r in 0..b.num_rows() {
                    out.push((k.value(r), (!s.is_null(r)).then(|| s.value(r).to_string())));
                }
            }
            out.sort();
            out
        };
        let want = rows(ctx.table("t").await.unwrap().collect().await.unwrap());
        assert_eq!(want.len(), n as usize);
        // Read twice, as the sources' aggregates are.
        assert_eq!(rows(spooled.clone().collect().await.unwrap()), want);
        assert_eq!(rows(spooled.collect().await.unwrap()), want);
        drop(ctx);
        assert!(!dir.exists());
    }
}
