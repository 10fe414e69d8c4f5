//! Schedules: formulas that `croo serve` runs by itself at the times of a
//! cron expression in a time zone (`[[schedules]]` of the server
//! configuration, `docs/operations.md`). A scheduled run goes through the
//! same queue as a run asked for over HTTP (`runs::start`), so it appears
//! in `/v1/runs`, the audit log and `/metrics`. The last slot each
//! schedule fired is kept in the results store (`schedules.json`): a slot
//! missed while the server was down runs once at start-up, not once per
//! missed slot. [`spawn`] is the entry point.

use std::collections::BTreeMap;
use std::str::FromStr as _;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::AppState;
use crate::error::Error;

/// What a schedule runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum What {
    /// The open period (the hub's near-real-time, provisional view).
    Current,
    /// `--last-complete`.
    LastComplete,
}

/// One `[[schedules]]` entry, checked.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Unique; the actor of its runs is `schedule:<name>`.
    pub name: String,
    /// The formula's name (a file of the formulas folder).
    pub formula: String,
    pub cron: croner::Cron,
    pub cron_text: String,
    pub time_zone: chrono_tz::Tz,
    pub what: What,
    pub lookback: u32,
}

/// A `[[schedules]]` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleFile {
    pub name: Option<String>,
    pub formula: String,
    pub cron: String,
    #[serde(default)]
    pub time_zone: Option<String>,
    /// `current` or `last-complete`.
    pub run: String,
    #[serde(default)]
    pub lookback: u32,
}

impl ScheduleFile {
    /// Checks the entry (`at` names it in messages).
    pub fn check(&self, at: &str) -> Result<Schedule, Error> {
        let cron = croner::Cron::from_str(&self.cron).map_err(|e| {
            Error::Invalid(format!(
                "{at}: `cron = \"{}\"` is not a cron expression: {e}",
                self.cron
            ))
        })?;
        let tz = self.time_zone.as_deref().unwrap_or("UTC");
        let time_zone = chrono_tz::Tz::from_str(tz).map_err(|_| {
            Error::Invalid(format!(
                "{at}: `time_zone = \"{tz}\"` is not a time zone of the IANA database (e.g. \"Europe/Berlin\")"
            ))
        })?;
        let what = match self.run.as_str() {
            "current" => What::Current,
            "last-complete" => What::LastComplete,
            other => {
                return Err(Error::Invalid(format!(
                    "{at}: `run = \"{other}\"`: expected \"current\" or \"last-complete\""
                )));
            }
        };
        Ok(Schedule {
            name: self
                .name
                .clone()
                .unwrap_or_else(|| format!("{}-{}", self.formula, self.run)),
            formula: self.formula.clone(),
            cron,
            cron_text: self.cron.clone(),
            time_zone,
            what,
            lookback: self.lookback,
        })
    }
}

impl Schedule {
    /// The first slot strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.time_zone);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// Whether a slot came between the last one fired and `now` (the
    /// server was down at its time): it runs once at start-up.
    pub fn missed(&self, last: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
        last.and_then(|l| self.next_after(l))
            .is_some_and(|n| n <= now)
    }
}

/// The last slot each schedule fired (`schedules.json` in the store).
struct Fired {
    path: std::path::PathBuf,
    lock: Mutex<()>,
}

impl Fired {
    fn read(&self) -> BTreeMap<String, String> {
        std::fs::read(&self.path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn last(&self, name: &str) -> Option<DateTime<Utc>> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.read()
            .get(name)
            .and_then(|t| engine::editions::parse_time(t))
    }

    fn record(&self, name: &str, slot: DateTime<Utc>) {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut all = self.read();
        all.insert(name.to_string(), slot.to_rfc3339());
        let json = serde_json::to_vec_pretty(&all).unwrap_or_default();
        if let Err(e) =
            engine::durable::replace_file(&self.path, &json, engine::durable::Access::Default)
        {
            tracing::error!(error = %e, file = %self.path.display(), "cannot record a schedule's last slot");
        }
    }
}

/// Starts one task per schedule; they run until the server stops.
pub fn spawn(state: &Arc<AppState>, schedules: Vec<Schedule>) -> Vec<tokio::task::JoinHandle<()>> {
    let fired = Arc::new(Fired {
        path: state.store.results.join("schedules.json"),
        lock: Mutex::new(()),
    });
    schedules
        .into_iter()
        .map(|s| {
            let state = Arc::clone(state);
            let fired = Arc::clone(&fired);
            tokio::spawn(async move { run(state, fired, s).await })
        })
        .collect()
}

async fn run(state: Arc<AppState>, fired: Arc<Fired>, s: Schedule) {
    let now = Utc::now();
    let mut last = fired.last(&s.name);
    if s.missed(last, now) {
        tracing::info!(schedule = %s.name, "a slot was missed while the server was down: running once now");
        fire(&state, &fired, &s, now);
        last = Some(now);
    }
    tracing::info!(schedule = %s.name, cron = %s.cron_text, time_zone = %s.time_zone, "schedule started");
    loop {
        let from = last.map_or(Utc::now(), |l| l.max(Utc::now()));
        let Some(next) = s.next_after(from) else {
            tracing::warn!(schedule = %s.name, "the cron expression has no further slot");
            return;
        };
        let wait = (next - Utc::now()).to_std().unwrap_or_default();
        tokio::time::sleep(wait).await;
        fire(&state, &fired, &s, next);
        last = Some(next);
    }
}

/// Queues the schedule's run (as `schedule:<name>`).
fn fire(state: &Arc<AppState>, fired: &Fired, s: &Schedule, slot: DateTime<Utc>) {
    fired.record(&s.name, slot);
    let actor = format!("schedule:{}", s.name);
    // One run of a schedule at a time: a slot that comes while the last
    // one is still queued or running is skipped (and counted).
    if state
        .runs
        .all()
        .iter()
        .any(|r| r.started_by == actor && (r.status == "queued" || r.status == "running"))
    {
        tracing::warn!(schedule = %s.name, "the previous run of this schedule has not ended: this slot is skipped");
        state.metrics.scheduled(&s.name, "skipped");
        return;
    }
    let formulas = state.store.formulas();
    let Some(f) = formulas.get(&s.formula) else {
        tracing::error!(schedule = %s.name, formula = %s.formula, "no such formula in the formulas folder: the scheduled run is skipped");
        state.metrics.scheduled(&s.name, "failed");
        let mut ev = crate::audit::AuditEvent::new("run.failed", "failed");
        ev.key = Some(actor);
        ev.detail = Some(format!("no formula `{}` in the formulas folder", s.formula));
        state.audit.record(&ev);
        return;
    };
    let choice = match s.what {
        What::Current => engine::PeriodChoice::Current,
        What::LastComplete => engine::PeriodChoice::LastComplete,
    };
    let publishing = engine::Publishing {
        publisher: engine::editions::Publisher {
            actor,
            restate: None,
            git: None,
        },
        lookback: s.lookback,
        force: false,
    };
    crate::runs::start(
        state,
        f.path.clone(),
        s.formula.clone(),
        choice,
        publishing,
        Some(format!("scheduled by `{}` ({})", s.name, s.cron_text)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        engine::editions::parse_time(s).unwrap()
    }

    fn schedule(cron: &str, tz: &str) -> Schedule {
        ScheduleFile {
            name: None,
            formula: "f".into(),
            cron: cron.into(),
            time_zone: Some(tz.into()),
            run: "current".into(),
            lookback: 0,
        }
        .check("test")
        .unwrap()
    }

    #[test]
    fn slots_follow_the_cron_expression_in_its_time_zone() {
        let every_15 = schedule("*/15 * * * *", "UTC");
        assert_eq!(
            every_15.next_after(t("2026-11-05T09:07:00Z")),
            Some(t("2026-11-05T09:15:00Z"))
        );
        // 06:00 in Berlin is 05:00 UTC in winter (CET) and 04:00 in summer.
        let daily = schedule("0 6 * * *", "Europe/Berlin");
        assert_eq!(
            daily.next_after(t("2026-11-05T09:00:00Z")),
            Some(t("2026-11-06T05:00:00Z"))
        );
        assert_eq!(
            daily.next_after(t("2026-07-05T09:00:00Z")),
            Some(t("2026-07-06T04:00:00Z"))
        );
    }

    #[test]
    fn a_missed_slot_runs_once() {
        let hourly = schedule("0 * * * *", "UTC");
        // Last fired at 09:00; down until 12:30: missed (once).
        assert!(hourly.missed(Some(t("2026-11-05T09:00:00Z")), t("2026-11-05T12:30:00Z")));
        // Last fired at 12:00; now 12:30: nothing missed.
        assert!(!hourly.missed(Some(t("2026-11-05T12:00:00Z")), t("2026-11-05T12:30:00Z")));
        // Never fired: nothing to catch up.
        assert!(!hourly.missed(None, t("2026-11-05T12:30:00Z")));
    }

    #[test]
    fn bad_entries_are_named() {
        let bad = |cron: &str, tz: &str, run: &str| {
            ScheduleFile {
                name: None,
                formula: "f".into(),
                cron: cron.into(),
                time_zone: Some(tz.into()),
                run: run.into(),
                lookback: 0,
            }
            .check("schedules[1]")
            .unwrap_err()
            .to_string()
        };
        assert!(bad("61 * * * *", "UTC", "current").contains("schedules[1]: `cron"));
        assert!(bad("0 * * * *", "Mars/Olympus", "current").contains("time_zone"));
        assert!(bad("0 * * * *", "UTC", "sometimes").contains("last-complete"));
    }
}
