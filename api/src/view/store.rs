//! Reads for the API: the formulas folder and the results store, with an
//! in-memory cache. Runs are immutable once committed, so their rows are
//! cached by run id forever; `current.json` and the formulas folder are
//! re-read when their modification time changes, so new runs and edited
//! formulas are seen without a restart. Nothing here recomputes a score.
//!
//! What holds numbers (result rows, manifests) is readable only by the
//! parent module, [`crate::view`], which filters it by the key's scope.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use chrono::NaiveDate;
use engine::ResultRow;
use engine::store::{Current, Manifest};

use crate::error::ApiError;

/// A formula file found in the formulas folder.
#[derive(Clone)]
pub struct FormulaEntry {
    pub path: PathBuf,
    pub loaded: Arc<engine::Loaded>,
    /// Its targets file (`NAME.targets.toml` beside it), when there is one:
    /// read and checked, or why it could not be.
    pub targets: Option<Result<Arc<engine::targets::Targets>, String>>,
}

type Signature = Vec<(PathBuf, Option<SystemTime>, u64)>;

#[derive(Default)]
struct Cache {
    current: Option<(Option<SystemTime>, Arc<Current>)>,
    rows: HashMap<String, Arc<Vec<ResultRow>>>,
    /// Run id -> the formula version and hash that produced it.
    provenance: HashMap<String, (String, String)>,
    formulas: Option<(Signature, Arc<BTreeMap<String, FormulaEntry>>)>,
    /// Files that failed to load, with why (reported in the server log once).
    broken: BTreeMap<PathBuf, String>,
    /// Formula -> the digest of the targets last loaded (a change is
    /// written to the audit log).
    targets_seen: BTreeMap<String, String>,
    /// Per-customer tables of (run, period), most recently used last.
    periods: Vec<((String, NaiveDate), Arc<engine::customers::PeriodTable>)>,
    /// Sorts of those tables: (run, period, sort, previous run).
    orders: Vec<(OrderKey, Arc<engine::customers::Order>)>,
}

/// What a sort of one period's customers is cached under.
pub(super) type OrderKey = (String, NaiveDate, engine::customers::Sort, Option<String>);

/// How many per-customer period tables the cache keeps (each one period of
/// one run: ~8 bytes per customer and component, score and dimension).
const PERIOD_TABLES: usize = 8;
/// How many sorts of them it keeps (4 bytes per customer each).
const ORDERS: usize = 32;

pub struct Store {
    pub results: PathBuf,
    pub formulas_dir: Option<PathBuf>,
    cache: Mutex<Cache>,
    audit: Arc<crate::audit::AuditLog>,
}

/// An engine error as one text, with the place of each diagnostic.
fn engine_error_text(e: &engine::Error) -> String {
    match e {
        engine::Error::Formula { file, diagnostics } => diagnostics
            .iter()
            .map(|d| {
                let (l, c) = file.line_col(d.span.start);
                format!("{}:{l}:{c}: {}", file.path, d.message)
            })
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

impl Store {
    pub fn new(
        results: PathBuf,
        formulas_dir: Option<PathBuf>,
        audit: Arc<crate::audit::AuditLog>,
    ) -> Self {
        Self {
            results,
            formulas_dir,
            cache: Mutex::new(Cache::default()),
            audit,
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `current.json`, re-read when it changed.
    pub fn current(&self) -> Result<Arc<Current>, ApiError> {
        let path = self.results.join("current.json");
        let m = mtime(&path);
        if let Some((seen, c)) = &self.cache().current
            && *seen == m
            && m.is_some()
        {
            return Ok(Arc::clone(c));
        }
        let c =
            Arc::new(engine::store::read_current(&self.results).map_err(ApiError::from_engine)?);
        self.cache().current = Some((m, Arc::clone(&c)));
        Ok(c)
    }

    /// The rows of a committed run.
    pub(super) fn rows(&self, run_id: &str) -> Result<Arc<Vec<ResultRow>>, ApiError> {
        if let Some(r) = self.cache().rows.get(run_id) {
            return Ok(Arc::clone(r));
        }
        let rows = Arc::new(
            engine::store::read_results(&self.results, run_id).map_err(ApiError::from_engine)?,
        );
        self.cache()
            .rows
            .insert(run_id.to_string(), Arc::clone(&rows));
        Ok(rows)
    }

    /// The run holding the per-customer rows of each period's current
    /// edition of `formula` in `[from, to]` (`Edition::detail_run`; the
    /// edition's own run otherwise, whose reader then says it kept none).
    pub(super) fn detail_runs(
        &self,
        formula: &str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<BTreeMap<NaiveDate, String>, ApiError> {
        let current = self.current()?;
        let mut out = BTreeMap::new();
        for (p, run) in current.formulas.get(formula).into_iter().flatten() {
            let Some(d) = engine::period::parse_date(p) else {
                continue;
            };
            if d < from || d > to {
                continue;
            }
            let run = current
                .log(formula, p)
                .and_then(|l| l.current())
                .map_or(run.as_str(), |e| e.detail_run().unwrap_or(&e.run_id));
            out.insert(d, run.to_string());
        }
        Ok(out)
    }

    /// One period's customers of a committed run (`detail.parquet`), read
    /// once and kept while used.
    pub(super) async fn period_table(
        &self,
        run_id: &str,
        period: NaiveDate,
    ) -> Result<Arc<engine::customers::PeriodTable>, ApiError> {
        let key = (run_id.to_string(), period);
        {
            let mut c = self.cache();
            if let Some(i) = c.periods.iter().position(|(k, _)| *k == key) {
                let hit = c.periods.remove(i);
                let t = Arc::clone(&hit.1);
                c.periods.push(hit);
                return Ok(t);
            }
        }
        let t = Arc::new(
            engine::customers::read_period(&self.results, run_id, period)
                .await
                .map_err(ApiError::from_engine)?,
        );
        let mut c = self.cache();
        c.periods.push((key, Arc::clone(&t)));
        if c.periods.len() > PERIOD_TABLES {
            c.periods.remove(0);
        }
        Ok(t)
    }

    /// A sort of a period table, computed once and kept while used.
    pub(super) fn order(
        &self,
        key: OrderKey,
        table: &engine::customers::PeriodTable,
        previous: Option<&engine::customers::PeriodTable>,
    ) -> Result<Arc<engine::customers::Order>, ApiError> {
        {
            let mut c = self.cache();
            if let Some(i) = c.orders.iter().position(|(k, _)| *k == key) {
                let hit = c.orders.remove(i);
                let o = Arc::clone(&hit.1);
                c.orders.push(hit);
                return Ok(o);
            }
        }
        let o = Arc::new(
            table
                .order(&key.2, previous)
                .map_err(ApiError::from_engine)?,
        );
        let mut c = self.cache();
        c.orders.push((key, Arc::clone(&o)));
        if c.orders.len() > ORDERS {
            c.orders.remove(0);
        }
        Ok(o)
    }

    /// The formula version and hash of a committed run (runs are
    /// immutable: read once).
    pub(super) fn provenance(&self, run_id: &str) -> Option<(String, String)> {
        if let Some(p) = self.cache().provenance.get(run_id) {
            return Some(p.clone());
        }
        let m = self.manifest(run_id).ok()?;
        let p = (m.version, m.formula_hash);
        self.cache()
            .provenance
            .insert(run_id.to_string(), p.clone());
        Some(p)
    }

    pub(super) fn manifest(&self, run_id: &str) -> Result<Manifest, ApiError> {
        let valid = !run_id.is_empty()
            && run_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid
            || !engine::store::run_dir(&self.results, run_id)
                .join("manifest.json")
                .is_file()
        {
            return Err(ApiError::not_found(format!("no run `{run_id}`")));
        }
        engine::store::read_manifest(&self.results, run_id).map_err(ApiError::from_engine)
    }

    pub fn run_ids(&self) -> Result<Vec<String>, ApiError> {
        engine::store::list_runs(&self.results).map_err(ApiError::from_engine)
    }

    /// The formulas of the formulas folder by name, re-read when a file
    /// changed. Files that do not check are left out (and logged).
    pub fn formulas(&self) -> Arc<BTreeMap<String, FormulaEntry>> {
        let Some(dir) = &self.formulas_dir else {
            return Arc::new(BTreeMap::new());
        };
        let files = engine::folder::formula_files(dir).unwrap_or_default();
        // A formula and its targets file: a change to either is seen.
        let watched = files
            .iter()
            .flat_map(|p| [p.clone(), engine::targets::beside(p)]);
        let sig: Signature = watched
            .map(|p| {
                let m = std::fs::metadata(&p).ok();
                (
                    p,
                    m.as_ref().and_then(|m| m.modified().ok()),
                    m.map_or(0, |m| m.len()),
                )
            })
            .collect();
        if let Some((seen, f)) = &self.cache().formulas
            && *seen == sig
        {
            return Arc::clone(f);
        }
        let mut loaded = Vec::new();
        let mut broken = BTreeMap::new();
        for p in files {
            match engine::load(&p) {
                Ok(l) => loaded.push(l),
                Err(e) => {
                    broken.insert(p, e.to_string());
                }
            }
        }
        // One name, one formula: files that claim the same name are all
        // left out (serving one would describe or run another's numbers).
        let clashes = engine::folder::clashes(&loaded);
        for clash in &clashes {
            for (p, _, _) in &clash.files {
                broken.insert(p.clone(), clash.to_string());
            }
        }
        let mut out = BTreeMap::new();
        for l in loaded {
            let name = l.formula.file.name.value.clone();
            if clashes.iter().any(|c| c.name == name) {
                continue;
            }
            let beside = engine::targets::beside(&l.path);
            let targets = beside.is_file().then(|| {
                engine::targets::load(&beside, &l.formula.file)
                    .map(Arc::new)
                    .map_err(|e| engine_error_text(&e))
            });
            out.insert(
                name,
                FormulaEntry {
                    path: l.path.clone(),
                    loaded: Arc::new(l),
                    targets,
                },
            );
        }
        let mut cache = self.cache();
        // Targets loaded for the first time or changed: one audit line
        // each, with the file's version and digest.
        for (name, f) in &out {
            match &f.targets {
                Some(Ok(t)) if cache.targets_seen.get(name) != Some(&t.digest) => {
                    let mut e = crate::audit::AuditEvent::new("targets.loaded", "ok");
                    e.detail = Some(format!(
                        "formula {name}: {} version {} {}",
                        t.path.display(),
                        t.version,
                        t.digest
                    ));
                    self.audit.record(&e);
                    cache.targets_seen.insert(name.clone(), t.digest.clone());
                }
                Some(Err(why)) => {
                    let digest = format!("error:{why}");
                    if cache.targets_seen.get(name) != Some(&digest) {
                        tracing::warn!(formula = %name, error = %why, "targets left out");
                        let mut e = crate::audit::AuditEvent::new("targets.loaded", "failed");
                        e.detail = Some(format!("formula {name}: {why}"));
                        self.audit.record(&e);
                        cache.targets_seen.insert(name.clone(), digest);
                    }
                }
                _ => {}
            }
        }
        for (p, why) in &broken {
            if cache.broken.get(p) != Some(why) {
                tracing::warn!(file = %p.display(), error = %why, "formula left out");
            }
        }
        cache.broken = broken;
        let out = Arc::new(out);
        cache.formulas = Some((sig, Arc::clone(&out)));
        out
    }

    /// The targets of a formula of the formulas folder (`None`: it has no
    /// targets file; an error: the file does not check, and why).
    pub fn targets(
        &self,
        formula: &str,
    ) -> Result<Option<Arc<engine::targets::Targets>>, ApiError> {
        match self.formulas().get(formula).and_then(|f| f.targets.clone()) {
            None => Ok(None),
            Some(Ok(t)) => Ok(Some(t)),
            Some(Err(why)) => Err(ApiError::unprocessable(format!(
                "the targets of `{formula}` do not check: {why}"
            ))),
        }
    }

    /// The grain of a formula: from its file, else from its latest run.
    pub fn grain(&self, formula: &str) -> Result<formulas::Grain, ApiError> {
        Ok(self.calendar(formula)?.1)
    }

    /// The calendar and grain of `formula`: its file's, else those of its
    /// latest published run.
    pub fn calendar(
        &self,
        formula: &str,
    ) -> Result<(engine::calendar::Calendar, formulas::Grain), ApiError> {
        if let Some(f) = self.formulas().get(formula) {
            let file = &f.loaded.formula.file;
            return Ok((engine::calendar::Calendar::of(file), file.grain));
        }
        let current = self.current()?;
        let Some(run) = current
            .formulas
            .get(formula)
            .and_then(|m| m.values().next_back())
        else {
            return Err(ApiError::not_found(format!("no formula `{formula}`")));
        };
        let m = self.manifest(run)?;
        let grain = formulas::Grain::parse(&m.grain)
            .ok_or_else(|| ApiError::internal(format!("run `{run}` has an unknown grain")))?;
        let cal = engine::calendar::Calendar::new(m.calendar.as_ref())
            .map_err(|e| ApiError::internal(format!("run `{run}`: {e}")))?;
        Ok((cal, grain))
    }

    /// Whether the formula is known (a file or results).
    pub fn exists(&self, formula: &str) -> Result<bool, ApiError> {
        Ok(self.formulas().contains_key(formula) || self.current()?.formulas.contains_key(formula))
    }

    /// The rows of `formula` for the periods in `[from, to]` (inclusive;
    /// open ends when `None`) as `which` selects them, with the run,
    /// edition and state of each period.
    pub(super) fn selected_rows(
        &self,
        formula: &str,
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
        which: super::Which,
    ) -> Result<super::Selected, ApiError> {
        use engine::editions::State;
        let current = self.current()?;
        let mut out = super::Selected::default();
        let Some(pointers) = current.formulas.get(formula) else {
            return Ok(out);
        };
        let calendar = self.calendar(formula).ok();
        let logs = current.editions.get(formula);
        let now = chrono::Utc::now();
        let mut periods: Vec<&String> = pointers.keys().collect();
        if let Some(l) = logs {
            periods.extend(l.keys().filter(|p| !pointers.contains_key(*p)));
            periods.sort();
        }
        for p in periods {
            let Some(d) = engine::period::parse_date(p) else {
                continue;
            };
            if from.is_some_and(|f| d < f) || to.is_some_and(|t| d > t) {
                continue;
            }
            let log = logs.and_then(|l| l.get(p));
            let chosen = match (which, log) {
                (super::Which::Current, Some(log)) => log.current().map(|e| {
                    (
                        e.run_id.clone(),
                        Some(e.edition),
                        calendar.as_ref().map(|(c, g)| log.state(c.end(*g, d), now)),
                    )
                }),
                (super::Which::Current, None) => pointers.get(p).map(|r| (r.clone(), None, None)),
                (super::Which::Edition(n), Some(log)) => log
                    .edition(n)
                    .map(|e| (e.run_id.clone(), Some(e.edition), Some(e.state))),
                (super::Which::AsOf(t), Some(log)) => log.as_of(t).map(|e| {
                    let state = calendar.as_ref().map(|(c, g)| {
                        if t < c.end(*g, d) {
                            State::Open
                        } else if log.final_by(t) {
                            State::Final
                        } else {
                            State::Provisional
                        }
                    });
                    (e.run_id.clone(), Some(e.edition), state)
                }),
                (_, None) => None,
            };
            let Some((run, edition, state)) = chosen else {
                continue;
            };
            let all = self.rows(&run)?;
            out.rows
                .extend(all.iter().filter(|r| r.period == d).cloned());
            out.runs.insert(p.clone(), run);
            out.editions.insert(p.clone(), (edition, state));
        }
        out.rows.sort_by(|a, b| {
            (a.period, &a.dimension, &a.value).cmp(&(b.period, &b.dimension, &b.value))
        });
        Ok(out)
    }
}
