//! Runs started over HTTP. Each run executes on its own thread with its own
//! Tokio runtime, so DataFusion's CPU work never starves the HTTP workers.
//! Runs of the same formula wait for each other (one lock per formula), so
//! two runs of one formula and period never write at the same time; the
//! store's own lock and atomic renames protect against other processes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::AppState;
use crate::audit::AuditEvent;

/// The state of a run started by this server.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RunStatus {
    pub run_id: String,
    pub formula: String,
    /// `queued`, `running`, `succeeded` or `failed`.
    pub status: String,
    /// Who started it (a key name).
    pub started_by: String,
    pub requested_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Periods computed, once known.
    pub periods: Vec<String>,
    /// What the run did to each period's editions (`2026-10-01: published
    /// edition 2 (final)`, `unchanged: edition 1`, ...).
    #[serde(default)]
    pub outcomes: Vec<String>,
}

/// Runs started by this server, and the per-formula locks.
#[derive(Default)]
pub struct Runs {
    pub statuses: Mutex<BTreeMap<String, RunStatus>>,
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl Runs {
    pub fn get(&self, id: &str) -> Option<RunStatus> {
        self.statuses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    pub fn all(&self) -> Vec<RunStatus> {
        self.statuses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut RunStatus)) {
        if let Some(s) = self
            .statuses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(id)
        {
            f(s);
        }
    }

    fn lock_for(&self, formula: &str) -> Arc<Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(locks.entry(formula.to_string()).or_default())
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Queues a run of the formula file at `path`; returns its id at once.
pub fn start(
    state: &Arc<AppState>,
    path: std::path::PathBuf,
    formula: String,
    periods: engine::PeriodChoice,
    publishing: engine::Publishing,
    note: Option<String>,
) -> String {
    let started_by = publishing.publisher.actor.clone();
    let run_id = engine::new_run_id(chrono::Utc::now());
    let status = RunStatus {
        run_id: run_id.clone(),
        formula: formula.clone(),
        status: "queued".into(),
        started_by: started_by.clone(),
        requested_at: now(),
        finished_at: None,
        error: None,
        periods: Vec::new(),
        outcomes: Vec::new(),
    };
    state
        .runs
        .statuses
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(run_id.clone(), status);
    let mut ev = AuditEvent::new("run.started", "queued");
    ev.key = Some(started_by.clone());
    ev.run_id = Some(run_id.clone());
    ev.detail = Some(match &note {
        Some(n) => format!("formula {formula}; {n}"),
        None => format!("formula {formula}"),
    });
    state.audit.record(&ev);

    let state = Arc::clone(state);
    let id = run_id.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("croo-run-{id}"))
        .spawn(move || execute(&state, &path, &formula, periods, publishing, &id));
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start a run thread");
    }
    run_id
}

fn execute(
    state: &Arc<AppState>,
    path: &std::path::Path,
    formula: &str,
    periods: engine::PeriodChoice,
    mut publishing: engine::Publishing,
    id: &str,
) {
    let started_by = publishing.publisher.actor.clone();
    let lock = state.runs.lock_for(formula);
    let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
    state.runs.update(id, |s| s.status = "running".into());
    let outcome = (|| -> Result<(Vec<String>, Vec<String>), String> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start a runtime: {e}"))?;
        let loaded = engine::load(path).map_err(|e| e.to_string())?;
        publishing.publisher.git = engine::provenance::git(path);
        let req = engine::RunRequest {
            periods,
            out: state.store.results.clone(),
            detail: false,
            session: state.session.clone(),
            publishing,
        };
        let clock = chrono::Utc::now;
        let report = rt
            .block_on(engine::run_with_id(&loaded, &req, id.to_string(), &clock))
            .map_err(|e| e.to_string())?;
        let outcomes: Vec<String> = report
            .manifest
            .publications
            .iter()
            .map(ToString::to_string)
            .collect();
        let refused = report.refused();
        if !refused.is_empty() {
            return Err(crate::runs::refusal(&refused));
        }
        Ok((report.manifest.periods, outcomes))
    })();
    let (status, error, (periods, outcomes)) = match outcome {
        Ok(p) => ("succeeded", None, p),
        Err(e) => ("failed", Some(e), (Vec::new(), Vec::new())),
    };
    state.metrics.run_outcome(status);
    if status == "succeeded" {
        state.metrics.succeeded(formula);
    }
    if let Some(schedule) = started_by.strip_prefix("schedule:") {
        state.metrics.scheduled(schedule, status);
    }
    state.runs.update(id, |s| {
        s.status = status.into();
        s.finished_at = Some(now());
        s.error = error.clone();
        s.periods = periods.clone();
        s.outcomes = outcomes.clone();
    });
    let mut ev = AuditEvent::new(
        if status == "succeeded" {
            "run.finished"
        } else {
            "run.failed"
        },
        status,
    );
    ev.key = Some(started_by.clone());
    ev.run_id = Some(id.to_string());
    ev.detail = error.or_else(|| Some(format!("periods {}", periods.join(", "))));
    state.audit.record(&ev);
}

/// The message of a run that would have changed final periods: each
/// period, its edition, the first numbers that would change.
pub fn refusal(refused: &[&engine::editions::Publication]) -> String {
    let mut m = String::from(
        "final periods would change; nothing was published for them (restate with a reason to publish a new edition):",
    );
    for p in refused {
        if let engine::editions::Outcome::Refused { edition, changes } = &p.outcome {
            m.push_str(&format!("\n  {} (edition {edition}):", p.period));
            for c in changes {
                m.push_str(&format!("\n    {c}"));
            }
        }
    }
    m
}
