//! Running a formula: load and check it, register its sources, plan and
//! compute the scores, and commit the results to the store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Date32Type, Float64Type, Int64Type, SchemaRef};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::functions_aggregate::expr_fn::{count, max, min};
use datafusion::logical_expr::{col, lit};
use datafusion::prelude::{SessionConfig, SessionContext, cast};
use formulas::compile::{Scope, compile};
use formulas::expr::Ast;
use formulas::functions::{exact_sum, exact_var_pop};
use formulas::{Diagnostic, Format, Formula, SourceFile};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::period;
use crate::plan::{self, PERIOD};
use crate::rollup::{self, ResultRow};
use crate::store::{self, Manifest, PopulationStats, SourceRecord};

/// A formula file read from disk and checked.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub path: PathBuf,
    pub file: SourceFile,
    pub formula: Formula,
    /// Warnings found while checking (errors make [`load`] fail).
    pub warnings: Vec<Diagnostic>,
    /// `sha256:<hex>` of the file's bytes.
    pub hash: String,
}

impl Loaded {
    /// Directory relative source paths are resolved against.
    pub fn base_dir(&self) -> PathBuf {
        self.path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."))
    }
}

/// Reads and checks a formula file (no data is read).
pub fn load(path: &Path) -> Result<Loaded> {
    let bytes = std::fs::read(path).map_err(|e| {
        Error::User(format!(
            "cannot read formula file `{}`: {e}",
            path.display()
        ))
    })?;
    let text = String::from_utf8(bytes.clone())
        .map_err(|_| Error::User(format!("formula file `{}` is not UTF-8", path.display())))?;
    let file = SourceFile::new(path.display().to_string(), text);
    let (formula, diagnostics) = formulas::check(&file);
    let Some(formula) = formula else {
        return Err(Error::Formula {
            file: Box::new(file),
            diagnostics,
        });
    };
    Ok(Loaded {
        path: path.to_path_buf(),
        file,
        formula,
        warnings: diagnostics,
        hash: format!("sha256:{}", hex::encode(Sha256::digest(&bytes))),
    })
}

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
}

/// The session a run uses: a local one ([`session`]), or a client of the
/// Ballista cluster named in `opts.cluster`.
pub async fn session_for(opts: &SessionOptions) -> Result<SessionContext> {
    match &opts.cluster {
        None => session(opts),
        #[cfg(feature = "distributed")]
        Some(url) => crate::cluster::connect(url, opts).await,
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
    // 2.8 GiB, 8 partitions 8.0 s and 1.9 GiB (session 5); with huge pages
    // and dictionary-encoded dimensions, 16 partitions 4.58-4.83 s against
    // 4.69-5.16 s for 8, and 7% less memory (session 7). Under a memory
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
    // interleaved with benches/whole-run.sh's data); under a memory limit
    // the smaller default keeps each operator's buffers small.
    if std::env::var_os("DATAFUSION_EXECUTION_BATCH_SIZE").is_none() && opts.memory_limit.is_none()
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
        // Intermediate tables go to disk rather than memory.
        config = crate::materialise::on_disk(config);
    }
    let rt = rt
        .build_arc()
        .map_err(Error::engine("setting up the session"))?;
    let mut ctx = SessionContext::new_with_config_rt(config, rt);
    formulas::functions::register(&mut ctx)
        .map_err(Error::engine("registering croo's functions"))?;
    Ok(ctx)
}

fn connector_format(f: Format) -> Option<connectors::FileFormat> {
    match f {
        Format::Parquet => Some(connectors::FileFormat::Parquet),
        Format::Csv => Some(connectors::FileFormat::Csv),
        Format::Ndjson => Some(connectors::FileFormat::Ndjson),
        Format::Postgres => None,
    }
}

/// Registers every source of the formula in `ctx`, except those in `skip`
/// (already registered, for instance by a test's inline rows), and checks
/// that every column the formula names exists.
pub async fn register_sources(
    ctx: &SessionContext,
    loaded: &Loaded,
    skip: &[String],
) -> Result<BTreeMap<String, SchemaRef>> {
    let base = loaded.base_dir();
    let mut schemas = BTreeMap::new();
    for s in &loaded.formula.file.sources {
        let table = plan::table_name(&s.name.value);
        if skip.contains(&s.name.value) {
            let provider = ctx
                .table_provider(table.as_str())
                .await
                .map_err(Error::engine(format!("source `{}`", s.name.value)))?;
            schemas.insert(s.name.value.clone(), provider.schema());
            continue;
        }
        if is_distributed(ctx) && connectors::is_postgres_uri(&s.uri.value) {
            return Err(Error::User(format!(
                "source `{}` is a PostgreSQL table, which Ballista executors cannot read: stage it to Parquet on a shared folder or an object store first, or run without --cluster",
                s.name.value
            )));
        }
        let instants: Vec<&str> = [&s.time, &s.active_from, &s.active_to]
            .into_iter()
            .flatten()
            .map(|t| t.value.as_str())
            .collect();
        let spec = connectors::SourceSpec {
            name: &s.name.value,
            uri: &s.uri.value,
            format: s.format.and_then(connector_format),
            base_dir: &base,
            instants: &instants,
        };
        let mut schema = connectors::register(ctx, &table, &spec).await?;
        if schema
            .fields()
            .iter()
            .any(|f| f.data_type() == &DataType::Null)
        {
            schema = retype_null_columns(ctx, &table).await?;
        }
        schemas.insert(s.name.value.clone(), schema);
    }
    let diagnostics = plan::check_columns(&loaded.formula, &loaded.file, &schemas);
    if !diagnostics.is_empty() {
        return Err(Error::Formula {
            file: Box::new(loaded.file.clone()),
            diagnostics,
        });
    }
    Ok(schemas)
}

/// A column whose type could not be inferred because every value is NULL
/// (NDJSON, CSV) is read as Float64, so that aggregates over it give NULL
/// instead of failing.
async fn retype_null_columns(ctx: &SessionContext, table: &str) -> Result<SchemaRef> {
    let df = ctx
        .table(table)
        .await
        .map_err(Error::engine(format!("reading `{table}`")))?;
    let exprs: Vec<_> = df
        .schema()
        .fields()
        .iter()
        .map(|f| {
            let c = datafusion::logical_expr::ident(f.name());
            if f.data_type() == &DataType::Null {
                cast(c, DataType::Float64).alias(f.name())
            } else {
                c
            }
        })
        .collect();
    let view = df
        .select(exprs)
        .map_err(Error::engine(format!("reading `{table}`")))?;
    let schema: SchemaRef = Arc::new(view.schema().as_arrow().clone());
    ctx.deregister_table(table)
        .map_err(Error::engine(format!("reading `{table}`")))?;
    ctx.register_table(table, view.into_view())
        .map_err(Error::engine(format!("reading `{table}`")))?;
    Ok(schema)
}

/// What a computation produced, before anything is written.
pub struct Computed {
    pub rows: Vec<ResultRow>,
    pub rows_read: BTreeMap<String, u64>,
    pub population_stats: Vec<PopulationStats>,
    /// Per-customer rows, when asked for.
    pub detail: Vec<RecordBatch>,
}

/// Computes the results of a formula whose sources are registered in `ctx`.
pub async fn compute(
    ctx: &SessionContext,
    loaded: &Loaded,
    schemas: &BTreeMap<String, SchemaRef>,
    periods: &[NaiveDate],
    detail: bool,
) -> Result<Computed> {
    let f = &loaded.formula;
    let clock = std::time::Instant::now();
    let lap =
        |what: &str| tracing::info!(elapsed_ms = clock.elapsed().as_millis() as u64, "{what}");
    let scored = plan::plan(ctx, f, schemas, periods).await?;
    lap("measures aggregated per source");
    // Materialise the per-customer table once; every rollup reads it. On a
    // cluster it comes back to this process (Ballista cannot cache), and
    // the rollups run here, over the same exact sums.
    let df = if is_distributed(ctx) {
        let schema = scored.df.schema().inner().clone();
        let batches = scored
            .df
            .collect()
            .await
            .map_err(Error::engine("scoring customers on the cluster"))?;
        // Ballista's batches may differ in nullability from the plan's
        // schema: the batches' own schema is the truth.
        let schema = batches.first().map(|b| b.schema()).unwrap_or(schema);
        let local = session(&SessionOptions::default())?;
        let table = datafusion::datasource::MemTable::try_new(schema, vec![batches])
            .map_err(Error::engine("scoring customers"))?;
        local
            .read_table(Arc::new(table))
            .map_err(Error::engine("scoring customers"))?
    } else {
        crate::materialise::materialise(ctx, scored.df, "scoring customers").await?
    };
    lap("customers scored");
    // The rollups and the population statistics read the same table: at
    // the same time.
    let (rows, population_stats) =
        futures::future::try_join(rollup::rollups(f, &df, periods), population_stats(f, &df))
            .await?;
    lap("rollups and population statistics computed");
    let mut rows_read = BTreeMap::new();
    for (name, frame) in scored.rows_read {
        let batches = frame
            .collect()
            .await
            .map_err(Error::engine(format!("counting rows of `{name}`")))?;
        let n: i64 = batches
            .iter()
            .filter(|b| b.num_rows() > 0)
            .filter_map(|b| b.column(0).as_primitive_opt::<Int64Type>())
            .filter(|a| !a.is_null(0))
            .map(|a| a.value(0))
            .sum();
        rows_read.insert(name, n.max(0) as u64);
    }
    lap("rows read counted");
    let detail = if detail {
        df.sort(vec![
            col(PERIOD).sort(true, false),
            col(plan::KEY).sort(true, false),
        ])
        .map_err(Error::engine("sorting per-customer rows"))?
        .collect()
        .await
        .map_err(Error::engine("collecting per-customer rows"))?
    } else {
        Vec::new()
    };
    Ok(Computed {
        rows,
        rows_read,
        population_stats,
        detail,
    })
}

struct Columns;

impl Scope for Columns {
    fn ident(&self, name: &str) -> Option<datafusion::logical_expr::Expr> {
        Some(datafusion::logical_expr::ident(name))
    }

    fn partition(&self) -> Vec<datafusion::logical_expr::Expr> {
        vec![col(PERIOD)]
    }
}

/// Reference statistics (n, min, max, mean, population standard deviation)
/// of every population function's argument in every period.
async fn population_stats(
    f: &Formula,
    df: &datafusion::prelude::DataFrame,
) -> Result<Vec<PopulationStats>> {
    let mut calls: Vec<(String, String, Ast)> = Vec::new();
    let mut collect = |place: String, a: &Ast| {
        a.walk(&mut |n| {
            if let Ast::Call(func, args, _) = n
                && func.is_population()
            {
                calls.push((place.clone(), func.name().to_string(), args[0].clone()));
            }
        });
    };
    for (i, a) in &f.derived {
        collect(format!("derived.{}", f.file.derived[*i].name.value), a);
    }
    for (c, a) in f.file.components.iter().zip(&f.components) {
        collect(format!("score.components.{}", c.name.value), a);
    }
    if let Some(a) = &f.score {
        collect("score.expr".into(), a);
    }
    let mut out = Vec::new();
    for (place, func, arg) in calls {
        let x = compile(&arg, &Columns).map_err(Error::engine("population statistics"))?;
        let x = cast(x, DataType::Float64);
        let batches = df
            .clone()
            .aggregate(
                vec![col(PERIOD)],
                vec![
                    count(x.clone()).alias("n"),
                    min(x.clone()).alias("min"),
                    max(x.clone()).alias("max"),
                    // Exact sums, as in the population functions themselves.
                    (exact_sum(x.clone()) / cast(count(x.clone()), DataType::Float64))
                        .alias("mean"),
                    datafusion::functions::math::expr_fn::sqrt(exact_var_pop(x)).alias("sd"),
                ],
            )
            .and_then(|d| d.sort(vec![col(PERIOD).sort(true, false)]))
            .map_err(Error::engine("population statistics"))?
            .collect()
            .await
            .map_err(Error::engine("population statistics"))?;
        for b in batches {
            let p = b.column(0).as_primitive::<Date32Type>();
            let n = b.column(1).as_primitive::<Int64Type>();
            let fl = |i: usize, r: usize| {
                let a = b.column(i).as_primitive::<Float64Type>();
                (!a.is_null(r)).then(|| a.value(r))
            };
            for r in 0..b.num_rows() {
                out.push(PopulationStats {
                    expression: format!("{func}({}) in {place}", show(&arg)),
                    function: func.clone(),
                    period: p
                        .value_as_date(r)
                        .map(|d| d.to_string())
                        .unwrap_or_default(),
                    n: n.value(r) as u64,
                    min: fl(2, r),
                    max: fl(3, r),
                    mean: fl(4, r),
                    stddev: fl(5, r),
                });
            }
        }
    }
    let _ = lit(0);
    Ok(out)
}

/// Formula syntax text of an expression.
pub fn show(a: &Ast) -> String {
    match a {
        Ast::Num(n) => format!("{n}"),
        Ast::Bool(b) => format!("{b}"),
        Ast::Ident(n, _) => n.clone(),
        Ast::Neg(x) => format!("-{}", show(x)),
        Ast::Not(x) => format!("!{}", show(x)),
        Ast::Bin(op, l, r) => format!("({} {} {})", show(l), op.symbol(), show(r)),
        Ast::Call(f, args, _) => format!(
            "{}({})",
            f.name(),
            args.iter().map(show).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// Which periods to compute.
#[derive(Debug, Clone)]
pub enum PeriodChoice {
    One(NaiveDate),
    Range(NaiveDate, NaiveDate),
    LastComplete,
}

/// Everything `croo run` asks of the engine.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub periods: PeriodChoice,
    pub out: PathBuf,
    pub detail: bool,
    pub session: SessionOptions,
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub manifest: Manifest,
    pub rows: Vec<ResultRow>,
    pub dir: PathBuf,
}

/// The periods a request names, for a formula's grain.
pub fn resolve_periods(
    loaded: &Loaded,
    choice: &PeriodChoice,
    today: NaiveDate,
) -> Result<Vec<NaiveDate>> {
    let grain = loaded.formula.file.grain;
    let periods = match choice {
        PeriodChoice::One(p) => vec![period::floor(grain, *p)],
        PeriodChoice::Range(from, to) => {
            if to < from {
                return Err(Error::User(format!("--to {to} is before --from {from}")));
            }
            period::range(grain, *from, *to)
        }
        PeriodChoice::LastComplete => vec![period::last_complete(grain, today)],
    };
    if periods.len() > 100_000 {
        return Err(Error::User(format!(
            "{} periods requested: narrow --from/--to",
            periods.len()
        )));
    }
    Ok(periods)
}

/// A new run id: the UTC start time, then random hex (sortable by time).
pub fn new_run_id(now: DateTime<Utc>) -> String {
    let r: u32 = rand::random();
    format!(
        "{}-{r:08x}",
        now.format("%Y%m%dT%H%M%S%.3fZ")
            .to_string()
            .replace('.', "")
    )
}

/// Runs a formula and commits its results to the store. `clock` gives the
/// current time (injected so that tests control it).
pub async fn run(
    loaded: &Loaded,
    req: &RunRequest,
    clock: &dyn Fn() -> DateTime<Utc>,
) -> Result<RunReport> {
    let run_id = new_run_id(clock());
    run_with_id(loaded, req, run_id, clock).await
}

/// [`run`] under a run id chosen by the caller (the HTTP API answers with
/// the id before the run ends).
pub async fn run_with_id(
    loaded: &Loaded,
    req: &RunRequest,
    run_id: String,
    clock: &dyn Fn() -> DateTime<Utc>,
) -> Result<RunReport> {
    let started = clock();
    let periods = resolve_periods(loaded, &req.periods, started.date_naive())?;
    let f = &loaded.formula.file;
    let mut parameters = BTreeMap::new();
    parameters.insert(
        "periods".into(),
        serde_json::json!(format!("{:?}", req.periods)),
    );
    parameters.insert("detail".into(), serde_json::json!(req.detail));
    parameters.insert("threads".into(), serde_json::json!(req.session.threads));
    parameters.insert(
        "memory_limit".into(),
        serde_json::json!(req.session.memory_limit),
    );
    let base = loaded.base_dir();
    let mut sources = Vec::new();
    for s in &f.sources {
        let files = connectors::fingerprint(&connectors::SourceSpec {
            name: &s.name.value,
            uri: &s.uri.value,
            format: None,
            base_dir: &base,
            instants: &[],
        })
        .await;
        sources.push(SourceRecord {
            name: s.name.value.clone(),
            uri: s.uri.value.clone(),
            rows_read: 0,
            files,
        });
    }
    let mut manifest = Manifest {
        run_id: run_id.clone(),
        formula: f.name.value.clone(),
        version: f.version.value.clone(),
        formula_hash: loaded.hash.clone(),
        formula_path: loaded.path.display().to_string(),
        engine_version: env!("CARGO_PKG_VERSION").to_string(),
        grain: f.grain.as_str().to_string(),
        periods: periods.iter().map(|p| p.to_string()).collect(),
        parameters,
        started_at: started.to_rfc3339(),
        finished_at: String::new(),
        sources,
        population_stats: Vec::new(),
        warnings: loaded.warnings.iter().map(|d| d.message.clone()).collect(),
        outcome: "running".into(),
        error: None,
    };
    let result = async {
        let ctx = session_for(&req.session).await?;
        let schemas = register_sources(&ctx, loaded, &[]).await?;
        compute(&ctx, loaded, &schemas, &periods, req.detail).await
    }
    .await;
    manifest.finished_at = clock().to_rfc3339();
    match result {
        Ok(c) => {
            for s in &mut manifest.sources {
                s.rows_read = c.rows_read.get(&s.name).copied().unwrap_or(0);
                if loaded
                    .formula
                    .file
                    .entity()
                    .is_some_and(|e| e.name.value == s.name)
                {
                    s.rows_read = s.rows_read.max(
                        c.rows
                            .iter()
                            .filter(|r| r.dimension.is_none())
                            .map(|r| r.population)
                            .max()
                            .unwrap_or(0),
                    );
                }
            }
            manifest.population_stats = c.population_stats;
            manifest.outcome = "succeeded".into();
            let comps: Vec<String> = f.components.iter().map(|c| c.name.value.clone()).collect();
            let batch = store::results_batch(&manifest, &c.rows, &comps)?;
            let dir = if store::is_remote(&req.out) {
                let staging = Staging::new(&manifest.run_id)?;
                store::commit(&staging.0, &manifest, batch, c.detail)?;
                store::publish(&staging.0, &req.out, &manifest, true).await?
            } else {
                store::commit(&req.out, &manifest, batch, c.detail)?
            };
            Ok(RunReport {
                manifest,
                rows: c.rows,
                dir,
            })
        }
        Err(e) => {
            manifest.outcome = "failed".into();
            manifest.error = Some(e.to_string());
            // Only failures of the engine are recorded; a user error wrote nothing.
            if e.class() == crate::error::Class::Failure {
                if store::is_remote(&req.out) {
                    if let Ok(staging) = Staging::new(&manifest.run_id)
                        && store::record_failure(&staging.0, &manifest).is_ok()
                    {
                        let _ = store::publish(&staging.0, &req.out, &manifest, false).await;
                    }
                } else {
                    let _ = store::record_failure(&req.out, &manifest);
                }
            }
            Err(e)
        }
    }
}

/// A local folder a run is committed to before it is copied into an
/// object store; removed when dropped.
struct Staging(PathBuf);

impl Staging {
    fn new(run_id: &str) -> Result<Staging> {
        let dir = std::env::temp_dir().join(format!("croo-staging-{run_id}"));
        std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        Ok(Staging(dir))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
