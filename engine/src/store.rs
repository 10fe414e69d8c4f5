//! The results store: a folder of Parquet files plus one JSON manifest per
//! run. Layout:
//!
//! ```text
//! OUT/runs/<run_id>/manifest.json   what ran, on what, with what outcome
//! OUT/runs/<run_id>/results.parquet one row per period and group
//! OUT/runs/<run_id>/detail.parquet  per-customer rows (with --detail)
//! OUT/current.json                  formula -> period -> current run id
//! OUT/.lock                         held while a run commits
//! ```
//!
//! A run is written under `runs/.tmp-<run_id>/` and renamed into place, and
//! `current.json` is replaced by rename, so readers see the old results or
//! the new, never half. Commits take an exclusive lock on `OUT/.lock`, so two
//! runs of the same formula and period never write at the same time: the
//! second waits.

use std::collections::BTreeMap;
use std::fs::TryLockError;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Float64Array, RecordBatch, StringArray, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use crate::durable;
use crate::error::{Error, Result};
use crate::leftovers;
use crate::rollup::ResultRow;

/// Reference statistics of one population function argument in one period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PopulationStats {
    pub expression: String,
    pub function: String,
    pub period: String,
    pub n: u64,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub mean: Option<f64>,
    pub stddev: Option<f64>,
    /// For an imputation (`impute_zero`, `impute_mean`, `impute_median`):
    /// the value the period's missing customers got.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// For a winsorisation (`winsorise`, `min` and `max` its quantiles):
    /// the customers whose value it changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceRecord {
    pub name: String,
    pub uri: String,
    pub rows_read: u64,
    /// Rows whose key matched no customer of their period (NULL keys
    /// included).
    #[serde(default)]
    pub orphan_rows: u64,
    pub files: Vec<connectors::FileFingerprint>,
    /// The source's latest time (RFC 3339) when the run read it
    /// (`freshness`); a later run with the same files reuses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub run_id: String,
    pub formula: String,
    pub version: String,
    pub formula_hash: String,
    pub formula_path: String,
    pub engine_version: String,
    pub grain: String,
    /// The formula's `[calendar]`, when it declares one: how its periods
    /// are bounded and named (`engine::calendar`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calendar: Option<formulas::CalendarSpec>,
    pub periods: Vec<String>,
    pub parameters: BTreeMap<String, serde_json::Value>,
    pub started_at: String,
    pub finished_at: String,
    pub sources: Vec<SourceRecord>,
    pub population_stats: Vec<PopulationStats>,
    pub warnings: Vec<String>,
    /// The data checks of the sources and their outcomes.
    #[serde(default)]
    pub checks: Vec<crate::contracts::CheckResult>,
    /// Periods published as incomplete, with the sources that had no rows
    /// in them.
    #[serde(default)]
    pub incomplete_periods: BTreeMap<String, Vec<String>>,
    /// Per period, the customers excluded from the rollups counted per
    /// cause (`engine::exclusions`); periods without exclusions are absent.
    #[serde(default)]
    pub exclusions: BTreeMap<String, BTreeMap<String, u64>>,
    /// The same per group: period -> `dimension=value` -> cause ->
    /// customers.
    #[serde(default)]
    pub group_exclusions: BTreeMap<String, BTreeMap<String, BTreeMap<String, u64>>>,
    /// What the run did to each period's editions (`engine::editions`).
    #[serde(default)]
    pub publications: Vec<crate::editions::Publication>,
    /// `succeeded`, `unchanged` (nothing computed: the inputs were those
    /// of the current editions) or `failed`.
    pub outcome: String,
    pub error: Option<String>,
}

/// `current.json`: for each formula and period, the run id that is
/// current, and the editions published (`editions`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Current {
    pub formulas: BTreeMap<String, BTreeMap<String, String>>,
    /// Formula -> period -> its editions (stores written before editions
    /// existed have none: their current run counts as edition 1).
    #[serde(default)]
    pub editions: BTreeMap<String, BTreeMap<String, crate::editions::PeriodLog>>,
}

impl Manifest {
    /// The calendar the run's periods are in (a calendar that cannot be
    /// rebuilt, from an edited manifest, is the default one).
    pub fn calendar(&self) -> crate::calendar::Calendar {
        crate::calendar::Calendar::new(self.calendar.as_ref()).unwrap_or_default()
    }

    /// The run's grain.
    pub fn grain(&self) -> formulas::Grain {
        formulas::Grain::parse(&self.grain).unwrap_or(formulas::Grain::Month)
    }
}

impl Current {
    /// The editions of `formula` in `period`.
    pub fn log(&self, formula: &str, period: &str) -> Option<&crate::editions::PeriodLog> {
        self.editions.get(formula)?.get(period)
    }

    pub(crate) fn log_mut(
        &mut self,
        formula: &str,
        period: &str,
    ) -> &mut crate::editions::PeriodLog {
        self.editions
            .entry(formula.to_string())
            .or_default()
            .entry(period.to_string())
            .or_default()
    }
}

fn io(ctx: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    Error::io(ctx)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    durable::replace_file(path, bytes, durable::Access::Default)
        .map_err(io(format!("writing {}", path.display())))
}

/// The Arrow form of result rows, with one pair of columns per component
/// (`<component>.rollup`, `<component>.contribution`).
pub fn results_batch(
    manifest: &Manifest,
    rows: &[ResultRow],
    components: &[String],
) -> Result<RecordBatch> {
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    let n = rows.len();
    let s = |v: &str| -> ArrayRef { Arc::new(StringArray::from(vec![v; n])) };
    let mut fields = vec![
        Field::new("formula", DataType::Utf8, false),
        Field::new("version", DataType::Utf8, false),
        Field::new("formula_hash", DataType::Utf8, false),
        Field::new("run_id", DataType::Utf8, false),
        Field::new("period", DataType::Date32, false),
        Field::new("dimension", DataType::Utf8, true),
        Field::new("value", DataType::Utf8, true),
        Field::new("score", DataType::Float64, true),
        Field::new("population", DataType::UInt64, false),
        Field::new("included", DataType::UInt64, false),
        Field::new("excluded", DataType::UInt64, false),
        Field::new("weight_total", DataType::Float64, false),
        Field::new("complete", DataType::Boolean, false),
    ];
    let mut cols: Vec<ArrayRef> = vec![
        s(&manifest.formula),
        s(&manifest.version),
        s(&manifest.formula_hash),
        s(&manifest.run_id),
        Arc::new(Date32Array::from_iter_values(
            rows.iter().map(|r| (r.period - epoch).num_days() as i32),
        )),
        Arc::new(StringArray::from_iter(
            rows.iter().map(|r| r.dimension.as_deref()),
        )),
        Arc::new(StringArray::from_iter(
            rows.iter().map(|r| r.value.as_deref()),
        )),
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.score))),
        Arc::new(UInt64Array::from_iter_values(
            rows.iter().map(|r| r.population),
        )),
        Arc::new(UInt64Array::from_iter_values(
            rows.iter().map(|r| r.included),
        )),
        Arc::new(UInt64Array::from_iter_values(
            rows.iter().map(|r| r.excluded),
        )),
        Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|r| r.weight_total),
        )),
        Arc::new(BooleanArray::from_iter(
            rows.iter().map(|r| Some(r.complete)),
        )),
    ];
    for (k, name) in components.iter().enumerate() {
        fields.push(Field::new(
            format!("{name}.rollup"),
            DataType::Float64,
            true,
        ));
        fields.push(Field::new(
            format!("{name}.contribution"),
            DataType::Float64,
            true,
        ));
        cols.push(Arc::new(Float64Array::from_iter(
            rows.iter()
                .map(|r| r.components.0.get(k).and_then(|c| c.1.rollup)),
        )));
        cols.push(Arc::new(Float64Array::from_iter(
            rows.iter()
                .map(|r| r.components.0.get(k).and_then(|c| c.1.contribution)),
        )));
        // Only a component that imputes has the count of its imputed
        // customers.
        if rows
            .iter()
            .any(|r| r.components.0.get(k).is_some_and(|c| c.1.imputed.is_some()))
        {
            fields.push(Field::new(
                format!("{name}.imputed"),
                DataType::UInt64,
                true,
            ));
            cols.push(Arc::new(UInt64Array::from_iter(
                rows.iter()
                    .map(|r| r.components.0.get(k).and_then(|c| c.1.imputed)),
            )));
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)
        .map_err(|e| Error::engine("building results")(e.into()))
}

fn write_parquet(path: &Path, batches: &[RecordBatch]) -> Result<()> {
    let Some(first) = batches.first() else {
        return Ok(());
    };
    let file = File::create(path).map_err(io(format!("writing {}", path.display())))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut w = ArrowWriter::try_new(file, first.schema(), Some(props))
        .map_err(|e| Error::engine(format!("writing {}", path.display()))(e.into()))?;
    for b in batches {
        w.write(b)
            .map_err(|e| Error::engine(format!("writing {}", path.display()))(e.into()))?;
    }
    let f = w
        .into_inner()
        .map_err(|e| Error::engine(format!("writing {}", path.display()))(e.into()))?;
    f.sync_all()
        .map_err(io(format!("writing {}", path.display())))
}

/// The run folder of `run_id` in store `out`.
pub fn run_dir(out: &Path, run_id: &str) -> PathBuf {
    out.join("runs").join(run_id)
}

/// What a run writes besides its manifest.
pub struct RunFiles {
    pub results: RecordBatch,
    pub detail: Vec<RecordBatch>,
    /// Or the per-customer rows already written as Parquet (by a
    /// cluster's executors): moved, or copied, into the run folder.
    pub detail_file: Option<PathBuf>,
    /// The formula file's text, kept beside the results (`formula.toml`)
    /// so that two editions' formulas can be compared later.
    pub formula: String,
}

/// Decides under the store's lock what a run publishes: given the store's
/// `current.json`, updates it and the run's manifest (its publications).
pub type Decide<'a> = dyn FnMut(&mut Current, &mut Manifest) + Send + 'a;

/// Writes a finished run into the store: its files, then, under the lock,
/// `decide` updates `current.json` and the manifest, the manifest is
/// written, the run folder renamed into place and `current.json` replaced.
/// Nothing is visible until the final renames.
pub fn commit(
    out: &Path,
    manifest: &mut Manifest,
    files: RunFiles,
    decide: &mut Decide<'_>,
) -> Result<PathBuf> {
    let runs = out.join("runs");
    fs::create_dir_all(&runs).map_err(io(format!("creating {}", runs.display())))?;
    let tmp = runs.join(format!(".tmp-{}", manifest.run_id));
    // Owned by this process until it is committed: a run killed meanwhile
    // leaves it to `leftovers::clean_store`.
    let owner = leftovers::claim(&tmp).map_err(io(format!("creating {}", tmp.display())))?;
    fs::create_dir_all(&tmp).map_err(io(format!("creating {}", tmp.display())))?;
    write_parquet(&tmp.join("results.parquet"), &[files.results])?;
    if let Some(f) = &files.detail_file {
        let to = tmp.join("detail.parquet");
        if fs::rename(f, &to).is_err() {
            fs::copy(f, &to).map_err(io(format!("copying {} to {}", f.display(), to.display())))?;
        }
    } else if !files.detail.is_empty() {
        write_parquet(&tmp.join("detail.parquet"), &files.detail)?;
    }
    write_atomically(&tmp.join("formula.toml"), files.formula.as_bytes())?;

    let _lock = lock(out)?;
    let mut current = read_current(out)?;
    decide(&mut current, manifest);
    let json = serde_json::to_vec_pretty(&*manifest).map_err(|e| Error::User(e.to_string()))?;
    write_atomically(&tmp.join("manifest.json"), &json)?;
    durable::sync_dir(&tmp).map_err(io(format!("writing {}", tmp.display())))?;
    let dest = run_dir(out, &manifest.run_id);
    durable::rename(&tmp, &dest).map_err(io(format!("moving the run into {}", dest.display())))?;
    drop(owner);
    let json = serde_json::to_vec_pretty(&current).map_err(|e| Error::User(e.to_string()))?;
    write_atomically(&out.join("current.json"), &json)?;
    Ok(dest)
}

/// Updates `current.json` under the lock without a run folder's files: a
/// run that skipped its computation records its manifest and what it
/// confirmed.
pub fn record(out: &Path, manifest: &mut Manifest, decide: &mut Decide<'_>) -> Result<PathBuf> {
    let _lock = lock(out)?;
    let mut current = read_current(out)?;
    decide(&mut current, manifest);
    let dir = run_dir(out, &manifest.run_id);
    fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    let json = serde_json::to_vec_pretty(&*manifest).map_err(|e| Error::User(e.to_string()))?;
    write_atomically(&dir.join("manifest.json"), &json)?;
    let json = serde_json::to_vec_pretty(&current).map_err(|e| Error::User(e.to_string()))?;
    write_atomically(&out.join("current.json"), &json)?;
    Ok(dir)
}

/// Records a failed run (manifest only); it never becomes current.
pub fn record_failure(out: &Path, manifest: &Manifest) -> Result<()> {
    let dir = run_dir(out, &manifest.run_id);
    fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    let json = serde_json::to_vec_pretty(manifest).map_err(|e| Error::User(e.to_string()))?;
    write_atomically(&dir.join("manifest.json"), &json)
}

/// How long a run waits for another run's lock on the same store before
/// giving up with [`Error::Busy`] (`CROO_LOCK_TIMEOUT`, in seconds).
pub fn lock_timeout() -> Duration {
    std::env::var("CROO_LOCK_TIMEOUT")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(Duration::from_secs(120), Duration::from_secs_f64)
}

/// Exclusive lock on the store, released when dropped. Another run holding
/// it is waited for, up to [`lock_timeout`].
pub fn lock(out: &Path) -> Result<File> {
    fs::create_dir_all(out).map_err(io(format!("creating {}", out.display())))?;
    let path = out.join(".lock");
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(format!("opening {}", path.display())))?;
    let timeout = lock_timeout();
    let start = Instant::now();
    loop {
        match f.try_lock() {
            Ok(()) => return Ok(f),
            Err(TryLockError::WouldBlock) if start.elapsed() < timeout => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(TryLockError::WouldBlock) => {
                return Err(Error::Busy(format!(
                    "the results store {} is locked by another run (waited {:.0} s; CROO_LOCK_TIMEOUT sets the wait)",
                    out.display(),
                    timeout.as_secs_f64()
                )));
            }
            Err(TryLockError::Error(e)) => {
                return Err(io(format!("locking {}", path.display()))(e));
            }
        }
    }
}

/// Reads `current.json` (empty when the store is new).
pub fn read_current(out: &Path) -> Result<Current> {
    let path = out.join("current.json");
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            Error::User(format!(
                "{} is not a valid results index: {e}",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Current::default()),
        Err(e) => Err(Error::io(format!("reading {}", path.display()))(e)),
    }
}

/// Reads the manifest of a run.
pub fn read_manifest(out: &Path, run_id: &str) -> Result<Manifest> {
    let path = run_dir(out, run_id).join("manifest.json");
    let bytes = fs::read(&path).map_err(io(format!("reading {}", path.display())))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::User(format!("{}: {e}", path.display())))
}

/// Reads the result rows of a committed run (the inverse of
/// [`results_batch`]).
pub fn read_results(out: &Path, run_id: &str) -> Result<Vec<ResultRow>> {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{Date32Type, Float64Type, UInt64Type};
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    let path = run_dir(out, run_id).join("results.parquet");
    let bad = |what: &str| Error::User(format!("{}: {what}", path.display()));
    let file = File::open(&path).map_err(io(format!("reading {}", path.display())))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| Error::engine(format!("reading {}", path.display()))(e.into()))?;
    let mut rows = Vec::new();
    for batch in reader {
        let b =
            batch.map_err(|e| Error::engine(format!("reading {}", path.display()))(e.into()))?;
        let column = |name: &str| {
            b.column_by_name(name)
                .ok_or_else(|| bad(&format!("no column `{name}`")))
        };
        let period = column("period")?
            .as_primitive_opt::<Date32Type>()
            .ok_or_else(|| bad("period"))?
            .clone();
        let dimension = column("dimension")?
            .as_string_opt::<i32>()
            .ok_or_else(|| bad("dimension"))?
            .clone();
        let value = column("value")?
            .as_string_opt::<i32>()
            .ok_or_else(|| bad("value"))?
            .clone();
        let float = |name: &str| -> Result<datafusion::arrow::array::Float64Array> {
            Ok(column(name)?
                .as_primitive_opt::<Float64Type>()
                .ok_or_else(|| bad(name))?
                .clone())
        };
        let count = |name: &str| -> Result<UInt64Array> {
            Ok(column(name)?
                .as_primitive_opt::<UInt64Type>()
                .ok_or_else(|| bad(name))?
                .clone())
        };
        let (score, weight_total) = (float("score")?, float("weight_total")?);
        let complete = b
            .column_by_name("complete")
            .and_then(|c| c.as_boolean_opt())
            .cloned();
        let (population, included, excluded) =
            (count("population")?, count("included")?, count("excluded")?);
        let names: Vec<String> = b
            .schema()
            .fields()
            .iter()
            .filter_map(|f| f.name().strip_suffix(".rollup").map(str::to_string))
            .collect();
        let mut comps = Vec::new();
        for n in &names {
            comps.push((
                float(&format!("{n}.rollup"))?,
                float(&format!("{n}.contribution"))?,
                b.column_by_name(&format!("{n}.imputed"))
                    .and_then(|c| c.as_primitive_opt::<datafusion::arrow::datatypes::UInt64Type>())
                    .cloned(),
            ));
        }
        let opt = |a: &datafusion::arrow::array::Float64Array, r: usize| {
            (!a.is_null(r)).then(|| a.value(r))
        };
        let text = |a: &StringArray, r: usize| (!a.is_null(r)).then(|| a.value(r).to_string());
        for r in 0..b.num_rows() {
            rows.push(ResultRow {
                period: period.value_as_date(r).ok_or_else(|| bad("period"))?,
                dimension: text(&dimension, r),
                value: text(&value, r),
                score: opt(&score, r),
                population: population.value(r),
                included: included.value(r),
                excluded: excluded.value(r),
                weight_total: weight_total.value(r),
                // Stores written before the column existed: complete.
                complete: complete.as_ref().is_none_or(|c| c.value(r)),
                components: crate::rollup::Components(
                    names
                        .iter()
                        .zip(&comps)
                        .map(|(n, (ro, co, im))| {
                            (
                                n.clone(),
                                crate::rollup::ComponentResult {
                                    rollup: opt(ro, r),
                                    contribution: opt(co, r),
                                    imputed: im
                                        .as_ref()
                                        .and_then(|a| (!a.is_null(r)).then(|| a.value(r))),
                                },
                            )
                        })
                        .collect(),
                ),
            });
        }
    }
    Ok(rows)
}

/// Every run id in the store, oldest first (run ids sort by time).
pub fn list_runs(out: &Path) -> Result<Vec<String>> {
    let runs = out.join("runs");
    let entries = match fs::read_dir(&runs) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("reading {}", runs.display()))(e)),
    };
    let mut ids: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("manifest.json").is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect();
    ids.sort();
    Ok(ids)
}

/// Whether the results store `out` is an object store URL (`s3://...`)
/// rather than a local folder.
pub fn is_remote(out: &Path) -> bool {
    connectors::remote::is_object_store_uri(&out.to_string_lossy())
}

/// The object store of a results store URL, its prefix, and the URL.
fn remote_store(
    out: &Path,
) -> Result<(
    std::sync::Arc<dyn object_store::ObjectStore>,
    object_store::path::Path,
    String,
)> {
    let uri = out.to_string_lossy().trim_end_matches('/').to_string();
    let url = connectors::remote::parse_url(&uri)
        .map_err(|m| Error::User(format!("results store: {m}")))?;
    let store = connectors::remote::store_for(&url)
        .map_err(|m| Error::User(format!("results store: {m}")))?;
    let prefix = connectors::remote::object_path(&url)
        .map_err(|m| Error::User(format!("results store: {m}")))?;
    Ok((store, prefix, uri))
}

/// `current.json` of a local or object store results store.
pub async fn read_current_anywhere(out: &Path) -> Result<Current> {
    use object_store::ObjectStoreExt;
    if !is_remote(out) {
        return read_current(out);
    }
    let (store, prefix, uri) = remote_store(out)?;
    match store.get(&prefix.clone().join("current.json")).await {
        Ok(got) => {
            let bytes = got.bytes().await.map_err(|e| {
                Error::User(format!("results store `{uri}`: reading current.json: {e}"))
            })?;
            serde_json::from_slice(&bytes).map_err(|e| {
                Error::User(format!(
                    "{uri}/current.json is not a valid results index: {e}"
                ))
            })
        }
        Err(object_store::Error::NotFound { .. }) => Ok(Current::default()),
        Err(e) => Err(Error::User(format!(
            "results store `{uri}`: reading current.json: {e}"
        ))),
    }
}

/// Copies the results of the current editions of `manifest`'s final
/// periods from the object store `out` into the local store `local`, so
/// that a refused restatement can say which numbers would change. Best
/// effort: what cannot be read is left out (the refusal then names the
/// period alone).
pub async fn fetch_final_results(out: &Path, manifest: &Manifest, local: &Path) {
    let Ok(current) = read_current_anywhere(out).await else {
        return;
    };
    let runs: Vec<String> = manifest
        .periods
        .iter()
        .filter_map(|p| current.log(&manifest.formula, p))
        .filter(|l| l.final_at.is_some())
        .filter_map(|l| l.current().map(|e| e.run_id.clone()))
        .collect();
    fetch_runs(out, &runs, &["results.parquet"], local).await;
}

/// Copies the `files` of the runs `runs` from the object store `out` into
/// the local store `local` (best effort: what cannot be read is left out).
pub async fn fetch_runs(out: &Path, runs: &[String], files: &[&str], local: &Path) {
    use object_store::ObjectStoreExt;
    let Ok((store, prefix, _)) = remote_store(out) else {
        return;
    };
    let mut runs: Vec<&String> = runs.iter().collect();
    runs.sort_unstable();
    runs.dedup();
    for run in runs {
        for name in files {
            let path = prefix.clone().join("runs").join(run.as_str()).join(*name);
            let Ok(got) = store.get(&path).await else {
                continue;
            };
            let Ok(bytes) = got.bytes().await else {
                continue;
            };
            let dir = run_dir(local, run);
            if fs::create_dir_all(&dir).is_ok() {
                let _ = fs::write(dir.join(name), &bytes);
            }
        }
    }
}

/// Copies a run committed in the local staging store `staging` into the
/// object store `out` (`s3://bucket/prefix`), the same layout as a local
/// store: the run's files first, then, when `decide` is given, the run's
/// manifest and `current.json` as `decide` updates them. Object stores
/// have no rename and no lock: `current.json` is replaced by a conditional
/// write (`If-Match` its ETag, `If-None-Match` when it is new), so of two
/// writers only one wins each round; the other reads it again, decides
/// again and retries. A run folder with a manifest is complete. A failed
/// run (`decide` `None`) uploads its manifest only.
pub async fn publish(
    staging: &Path,
    out: &Path,
    manifest: &mut Manifest,
    decide: Option<&mut Decide<'_>>,
) -> Result<PathBuf> {
    use object_store::path::Path as ObjectPath;
    use object_store::{ObjectStoreExt, PutMode, PutOptions, UpdateVersion};
    let (store, prefix, uri) = remote_store(out)?;
    let remote_err = |what: &str, e: &dyn std::fmt::Display| {
        Error::User(format!("results store `{uri}`: {what}: {e}"))
    };
    let child = |parts: &[&str]| {
        let mut p = prefix.clone();
        for part in parts {
            p = p.clone().join(*part);
        }
        p
    };
    let local = run_dir(staging, &manifest.run_id);
    for name in ["results.parquet", "detail.parquet", "formula.toml"] {
        let path = local.join(name);
        if !path.exists() {
            continue;
        }
        let bytes = fs::read(&path).map_err(io(format!("reading {}", path.display())))?;
        let dest: ObjectPath = child(&["runs", &manifest.run_id, name]);
        store
            .put(&dest, bytes.into())
            .await
            .map_err(|e| remote_err(&format!("writing {dest}"), &e))?;
    }
    let run_uri = PathBuf::from(format!("{uri}/runs/{}", manifest.run_id));
    let manifest_path: ObjectPath = child(&["runs", &manifest.run_id, "manifest.json"]);
    let Some(decide) = decide else {
        let json = serde_json::to_vec_pretty(&*manifest).map_err(|e| Error::User(e.to_string()))?;
        store
            .put(&manifest_path, json.into())
            .await
            .map_err(|e| remote_err("writing the manifest", &e))?;
        return Ok(run_uri);
    };
    let cur_path = child(&["current.json"]);
    let timeout = lock_timeout();
    let started = Instant::now();
    loop {
        let (mut current, version): (Current, Option<UpdateVersion>) =
            match store.get(&cur_path).await {
                Ok(got) => {
                    let version = UpdateVersion {
                        e_tag: got.meta.e_tag.clone(),
                        version: got.meta.version.clone(),
                    };
                    let bytes = got
                        .bytes()
                        .await
                        .map_err(|e| remote_err("reading current.json", &e))?;
                    let c = serde_json::from_slice(&bytes).map_err(|e| {
                        Error::User(format!(
                            "{uri}/current.json is not a valid results index: {e}"
                        ))
                    })?;
                    (c, Some(version))
                }
                Err(object_store::Error::NotFound { .. }) => (Current::default(), None),
                Err(e) => return Err(remote_err("reading current.json", &e)),
            };
        let mut m = manifest.clone();
        decide(&mut current, &mut m);
        let json = serde_json::to_vec_pretty(&m).map_err(|e| Error::User(e.to_string()))?;
        store
            .put(&manifest_path, json.into())
            .await
            .map_err(|e| remote_err("writing the manifest", &e))?;
        let json = serde_json::to_vec_pretty(&current).map_err(|e| Error::User(e.to_string()))?;
        let mode = match version {
            Some(v) => PutMode::Update(v),
            None => PutMode::Create,
        };
        let put = store
            .put_opts(
                &cur_path,
                json.into(),
                PutOptions {
                    mode,
                    ..Default::default()
                },
            )
            .await;
        match put {
            Ok(_) => {
                *manifest = m;
                return Ok(run_uri);
            }
            // Another writer replaced current.json since it was read.
            Err(object_store::Error::Precondition { .. })
            | Err(object_store::Error::AlreadyExists { .. })
                if started.elapsed() < timeout =>
            {
                let wait: u64 = 20 + rand::random::<u64>() % 80;
                tokio::time::sleep(Duration::from_millis(wait)).await;
            }
            Err(
                e @ (object_store::Error::Precondition { .. }
                | object_store::Error::AlreadyExists { .. }),
            ) => {
                return Err(Error::Busy(format!(
                    "the results store {uri} kept changing under this run for {:.0} s (other writers): {e}",
                    timeout.as_secs_f64()
                )));
            }
            Err(e) => return Err(remote_err("writing current.json", &e)),
        }
    }
}
