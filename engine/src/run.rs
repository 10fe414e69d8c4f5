//! A run: the periods a request names, scored, and committed to the results
//! store with its manifest.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, NaiveDate, Utc};

use crate::calendar::Calendar;
use crate::editions::{Outcome, Publication, Publisher};
use crate::error::{Error, Result};
use crate::freshness;
use crate::load::Loaded;
use crate::publish;
use crate::rollup::ResultRow;
use crate::score::{ScoreOptions, score};
use crate::session::SessionOptions;
use crate::store::{self, Manifest, SourceRecord};

/// Which periods to compute.
#[derive(Debug, Clone)]
pub enum PeriodChoice {
    One(NaiveDate),
    Range(NaiveDate, NaiveDate),
    /// The latest period that has ended, settled and has all its data
    /// (`freshness`).
    LastComplete,
    /// The period that holds now (open).
    Current,
}

/// Everything `croo run` asks of the engine.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub periods: PeriodChoice,
    pub out: PathBuf,
    pub detail: bool,
    pub session: SessionOptions,
    pub publishing: Publishing,
}

/// How a run publishes: who, on what authority, and how much it
/// recomputes.
#[derive(Debug, Clone, Default)]
pub struct Publishing {
    pub publisher: Publisher,
    /// Also recompute this many periods before the chosen ones (late
    /// data lands in its period; unchanged periods keep their edition).
    pub lookback: u32,
    /// Compute even when the inputs are those of the current editions.
    pub force: bool,
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub manifest: Manifest,
    /// The rows computed (empty when the run was skipped: `unchanged`).
    pub rows: Vec<ResultRow>,
    pub dir: PathBuf,
}

impl RunReport {
    /// The periods a run would have changed but could not: final, and
    /// not restated.
    pub fn refused(&self) -> Vec<&Publication> {
        self.manifest
            .publications
            .iter()
            .filter(|p| matches!(p.outcome, Outcome::Refused { .. }))
            .collect()
    }
}

/// The periods a request names, for a formula's grain.
pub fn resolve_periods(
    loaded: &Loaded,
    choice: &PeriodChoice,
    now: DateTime<Utc>,
) -> Result<Vec<NaiveDate>> {
    let grain = loaded.formula.file.grain;
    let cal = Calendar::of(&loaded.formula.file);
    let periods = match choice {
        PeriodChoice::One(p) => vec![cal.floor(grain, *p)],
        PeriodChoice::Range(from, to) => {
            if to < from {
                return Err(Error::User(format!("--to {to} is before --from {from}")));
            }
            cal.range(grain, *from, *to)
        }
        PeriodChoice::LastComplete => vec![cal.last_complete(grain, now)],
        PeriodChoice::Current => vec![cal.floor(grain, cal.day_of(now))],
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
    // What killed runs left behind (their process is gone) goes first.
    if !store::is_remote(&req.out) {
        crate::leftovers::clean_store(&req.out);
    }
    crate::leftovers::clean_temp();
    let started = clock();
    let f = &loaded.formula.file;
    let grain = f.grain;
    let cal = Calendar::of(f);
    let settle = f.operations.settle.0;
    let base = loaded.base_dir();
    let mut sources = Vec::new();
    for s in &f.sources {
        let files = connectors::fingerprint(&connectors::SourceSpec {
            name: &s.name.value,
            uri: &s.uri.value,
            format: None,
            base_dir: &base,
            instants: &[],
            columns: &[],
            delimiter: None,
            quote: None,
        })
        .await;
        sources.push(SourceRecord {
            name: s.name.value.clone(),
            uri: s.uri.value.clone(),
            rows_read: 0,
            orphan_rows: 0,
            files,
            latest: None,
        });
    }
    // `--last-complete` and declared freshness read the sources' latest
    // times: recorded by an earlier run that read the same files, or read
    // now.
    let last_complete = matches!(req.periods, PeriodChoice::LastComplete);
    let wanted = freshness::wanted(loaded, last_complete);
    let mut latest = if store::is_remote(&req.out) || req.publishing.force {
        freshness::Latest::new()
    } else {
        freshness::recorded(&req.out, &f.name.value, &loaded.hash, &sources)
    };
    latest.retain(|name, _| wanted.contains(name));
    let unread: Vec<String> = wanted
        .iter()
        .filter(|n| !latest.contains_key(*n))
        .cloned()
        .collect();
    if !unread.is_empty() {
        let ctx = crate::session::session_for(&req.session).await?;
        crate::sources::register_sources(&ctx, loaded, &[]).await?;
        latest.extend(freshness::latest_times(&ctx, loaded, &unread).await?);
    }
    for s in &mut sources {
        s.latest = latest
            .get(&s.name)
            .copied()
            .flatten()
            .map(|t| t.to_rfc3339());
    }
    let mut notes = Vec::new();
    let mut periods = if last_complete {
        let (p, note) = freshness::last_complete(loaded, &latest, started, settle)?;
        notes.extend(note);
        vec![p]
    } else {
        resolve_periods(loaded, &req.periods, started)?
    };
    if let Some(&first) = periods.first() {
        let mut before = Vec::new();
        let mut p = first;
        for _ in 0..req.publishing.lookback.min(1000) {
            p = cal.floor(grain, p.pred_opt().unwrap_or(p));
            before.push(p);
        }
        before.reverse();
        before.append(&mut periods);
        periods = before;
    }
    notes.extend(freshness::warnings(loaded, &latest, &periods, started));
    for n in &notes {
        tracing::warn!(formula = %f.name.value, "{n}");
    }
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
    let publishing = &req.publishing;
    parameters.insert("lookback".into(), serde_json::json!(publishing.lookback));
    parameters.insert("force".into(), serde_json::json!(publishing.force));
    parameters.insert(
        "actor".into(),
        serde_json::json!(publishing.publisher.actor),
    );
    if let Some(reason) = &publishing.publisher.restate {
        parameters.insert("restate".into(), serde_json::json!(reason));
    }
    let mut manifest = Manifest {
        run_id: run_id.clone(),
        formula: f.name.value.clone(),
        version: f.version.value.clone(),
        formula_hash: loaded.hash.clone(),
        formula_path: loaded.path.display().to_string(),
        engine_version: env!("CARGO_PKG_VERSION").to_string(),
        grain: f.grain.as_str().to_string(),
        calendar: f.calendar.clone(),
        periods: periods.iter().map(|p| p.to_string()).collect(),
        parameters,
        started_at: started.to_rfc3339(),
        finished_at: String::new(),
        sources,
        population_stats: Vec::new(),
        checks: Vec::new(),
        incomplete_periods: BTreeMap::new(),
        exclusions: BTreeMap::new(),
        group_exclusions: BTreeMap::new(),
        publications: Vec::new(),
        warnings: loaded.warnings.iter().map(|d| d.message.clone()).collect(),
        outcome: "running".into(),
        error: None,
    };
    manifest.warnings.extend(notes);

    // The same formula, engine and input files as every period's current
    // edition: the numbers cannot differ, so nothing is computed.
    if !publishing.force {
        let current = store::read_current_anywhere(&req.out).await?;
        if let Some(eds) = publish::unchanged_inputs(
            &current,
            &manifest.formula,
            &manifest.periods,
            &manifest.formula_hash,
            &manifest.engine_version,
            publish::inputs_digest(&manifest.sources).as_deref(),
            req.detail,
        ) {
            let runs: Vec<(NaiveDate, String)> = periods
                .iter()
                .zip(&eds)
                .filter_map(|(p, e)| {
                    let log = current.log(&manifest.formula, &p.to_string())?;
                    Some((*p, log.edition(*e)?.run_id.clone()))
                })
                .collect();
            // A bucket's runs are read from a local copy.
            let staging = if store::is_remote(&req.out) {
                let s = Staging::new(&manifest.run_id)?;
                let ids: Vec<String> = runs.iter().map(|(_, r)| r.clone()).collect();
                store::fetch_runs(&req.out, &ids, &["results.parquet", "manifest.json"], &s.0)
                    .await;
                Some(s)
            } else {
                None
            };
            let from = staging.as_ref().map_or(req.out.clone(), |s| s.0.clone());
            let mut rows = Vec::new();
            for (p, run) in &runs {
                rows.extend(
                    store::read_results(&from, run)?
                        .into_iter()
                        .filter(|r| r.period == *p),
                );
                // What the current edition's run found about the period.
                let key = p.to_string();
                if let Ok(m) = store::read_manifest(&from, run) {
                    if let Some(x) = m.exclusions.get(&key) {
                        manifest.exclusions.insert(key.clone(), x.clone());
                    }
                    if let Some(x) = m.group_exclusions.get(&key) {
                        manifest.group_exclusions.insert(key.clone(), x.clone());
                    }
                    if let Some(x) = m.incomplete_periods.get(&key) {
                        manifest.incomplete_periods.insert(key.clone(), x.clone());
                    }
                    manifest
                        .population_stats
                        .extend(m.population_stats.into_iter().filter(|s| s.period == key));
                }
            }
            manifest.outcome = "unchanged".into();
            manifest.finished_at = clock().to_rfc3339();
            let now = clock();
            let (formula, run) = (manifest.formula.clone(), manifest.run_id.clone());
            let names = manifest.periods.clone();
            let mut decide = |cur: &mut store::Current, m: &mut Manifest| {
                m.publications =
                    publish::confirm(cur, &formula, (&cal, grain), &names, settle, &run, now);
            };
            let dir = match &staging {
                Some(s) => store::publish(&s.0, &req.out, &mut manifest, Some(&mut decide)).await?,
                None => store::record(&req.out, &mut manifest, &mut decide)?,
            };
            return Ok(RunReport {
                manifest,
                rows,
                dir,
            });
        }
    }

    let options = ScoreOptions {
        session: req.session.clone(),
        detail: req.detail,
        detail_written: true,
        ..ScoreOptions::default()
    };
    let result = score(loaded, &periods, &options).await;
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
            for s in &mut manifest.sources {
                s.orphan_rows = c.orphans.get(&s.name).copied().unwrap_or(0);
            }
            manifest.population_stats = c.population_stats;
            manifest.checks = c.checks;
            manifest.incomplete_periods = c
                .incomplete
                .iter()
                .map(|(p, s)| (p.to_string(), s.clone()))
                .collect();
            manifest.exclusions = c
                .exclusions
                .iter()
                .map(|(p, causes)| (p.to_string(), causes.clone()))
                .collect();
            manifest.group_exclusions = c
                .group_exclusions
                .iter()
                .map(|(p, groups)| (p.to_string(), groups.clone()))
                .collect();
            manifest.warnings.extend(c.warnings);
            manifest.outcome = "succeeded".into();
            let comps: Vec<String> = f.components.iter().map(|c| c.name.value.clone()).collect();
            let files = store::RunFiles {
                results: store::results_batch(&manifest, &c.rows, &comps)?,
                detail: detail_for_users(&loaded.formula, c.detail)?,
                detail_file: c.detail_file.as_ref().map(|f| f.path.clone()),
                formula: loaded.file.text.clone(),
            };
            let now = clock();
            let rows = &c.rows;
            let remote = store::is_remote(&req.out);
            let staging = if remote {
                Some(Staging::new(&manifest.run_id)?)
            } else {
                None
            };
            // Where the current editions' rows are read from, for the numbers
            // a refused restatement would change: the store, or for a bucket
            // the staging folder, where those of final periods are copied.
            let old_store = match &staging {
                Some(s) => {
                    store::fetch_final_results(&req.out, &manifest, &s.0).await;
                    s.0.clone()
                }
                None => req.out.clone(),
            };
            let mut decide = |cur: &mut store::Current, m: &mut Manifest| {
                let old = |run: &str| store::read_results(&old_store, run).ok();
                m.publications =
                    publish::publish(cur, m, rows, settle, &publishing.publisher, now, &old);
            };
            let dir = match &staging {
                Some(staging) => {
                    store::commit(&staging.0, &mut manifest, files, &mut |_, _| {})?;
                    store::publish(&staging.0, &req.out, &mut manifest, Some(&mut decide)).await?
                }
                None => store::commit(&req.out, &mut manifest, files, &mut decide)?,
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
                        let _ = store::publish(&staging.0, &req.out, &mut manifest, None).await;
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
struct Staging(PathBuf, Option<crate::leftovers::Owner>);

impl Staging {
    fn new(run_id: &str) -> Result<Staging> {
        let dir = std::env::temp_dir().join(format!("croo-staging-{run_id}"));
        let owner = crate::leftovers::claim(&dir)
            .map_err(Error::io(format!("creating {}", dir.display())))?;
        std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        Ok(Staging(dir, Some(owner)))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        self.1.take();
    }
}

/// The per-customer rows under the names of `columns::detail_names`.
fn detail_for_users(
    f: &formulas::Formula,
    detail: Vec<datafusion::arrow::record_batch::RecordBatch>,
) -> Result<Vec<datafusion::arrow::record_batch::RecordBatch>> {
    use datafusion::arrow::datatypes::{Field, Schema};
    let Some(first) = detail.first() else {
        return Ok(detail);
    };
    let (_, public) = crate::columns::detail_names_of(f, &first.schema());
    let schema = std::sync::Arc::new(Schema::new(
        first
            .schema()
            .fields()
            .iter()
            .zip(&public)
            .map(|(field, name)| Field::new(name, field.data_type().clone(), field.is_nullable()))
            .collect::<Vec<_>>(),
    ));
    detail
        .into_iter()
        .map(|b| {
            datafusion::arrow::record_batch::RecordBatch::try_new(
                std::sync::Arc::clone(&schema),
                b.columns().to_vec(),
            )
            .map_err(|e| Error::Engine {
                context: "renaming the per-customer columns".into(),
                error: Box::new(e.into()),
            })
        })
        .collect()
}
