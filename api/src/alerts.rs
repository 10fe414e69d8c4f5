//! Alerts: rules of the server configuration (`[[alerts]]`,
//! docs/alerts.md) evaluated on every edition published to the store,
//! each firing POSTed as a signed JSON event to a webhook.
//!
//! A watcher task ([`spawn`]) reads `current.json` when it changes and, for
//! each alert, each period of its formula whose current edition it has not
//! evaluated yet: the edition's row of the alert's group against the
//! previous period's current edition (a status that *becomes* one named, or
//! a score that *drops* by more than some points). Editions evaluated are
//! kept in the store (`alerts.json`), so an edition is evaluated once, by
//! whichever run published it (the CLI, the API, a schedule); editions that
//! existed when an alert was first seen are its baseline, not news.
//!
//! Each event is signed with HMAC-SHA256 over `TIMESTAMP.BODY` with the
//! alert's secret (`X-Croo-Signature: t=TIMESTAMP,v1=HEX`), carries a
//! stable id (`X-Croo-Event`), is retried with exponential backoff on a
//! failure, and is written to the audit log (`alert.sent`,
//! `alert.failed`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::audit::AuditEvent;
use crate::error::Error;

/// Attempts per event, and the wait before the second (doubling after).
const ATTEMPTS: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// How often the watcher looks at `current.json`.
const POLL: Duration = Duration::from_millis(500);

/// What makes an alert fire.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    /// The group's status against its targets is this one, and was not in
    /// the previous period.
    StatusBecomes(String),
    /// The group's score is more than this many points below the previous
    /// period's.
    DropsBy(f64),
}

/// One `[[alerts]]` entry, checked (its `Debug` leaves the secret out).
#[derive(Clone)]
pub struct Alert {
    pub name: String,
    pub formula: String,
    /// `None`: the whole population.
    pub group: Option<(String, String)>,
    pub rule: Rule,
    pub webhook: String,
    secret: Vec<u8>,
}

impl std::fmt::Debug for Alert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alert")
            .field("name", &self.name)
            .field("formula", &self.formula)
            .field("group", &self.group)
            .field("rule", &self.rule)
            .field("webhook", &self.webhook)
            .finish_non_exhaustive()
    }
}

/// An `[[alerts]]` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertFile {
    pub name: String,
    pub formula: String,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub status_becomes: Option<String>,
    #[serde(default)]
    pub drops_by: Option<f64>,
    pub webhook: String,
    /// The environment variable holding the signing secret.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// A file holding it (relative to the configuration file).
    #[serde(default)]
    pub secret_file: Option<std::path::PathBuf>,
}

impl AlertFile {
    /// Checks the entry (`at` names it in messages; `base` is the
    /// configuration file's folder).
    pub fn check(&self, at: &str, base: &std::path::Path) -> Result<Alert, Error> {
        let bad = |m: String| Error::Invalid(format!("{at}: {m}"));
        if self.name.trim().is_empty() {
            return Err(bad("`name` is empty".into()));
        }
        let rule = match (&self.status_becomes, self.drops_by) {
            (Some(s), None) if !s.trim().is_empty() => Rule::StatusBecomes(s.trim().to_string()),
            (None, Some(p)) if p.is_finite() && p >= 0.0 => Rule::DropsBy(p),
            (None, Some(p)) => {
                return Err(bad(format!(
                    "`drops_by = {p}`: a number of points, 0 or more"
                )));
            }
            _ => {
                return Err(bad(
                    "give one rule: `status_becomes = \"off_track\"` or `drops_by = 5.0`".into(),
                ));
            }
        };
        let group = match self.group.as_deref().map(str::trim) {
            None | Some("all") => None,
            Some(g) => {
                let (d, v) = g.split_once('=').ok_or_else(|| {
                    bad(format!(
                        "`group = \"{g}\"`: expected \"all\" or DIMENSION=VALUE"
                    ))
                })?;
                Some((d.trim().to_string(), v.trim().to_string()))
            }
        };
        let url = reqwest::Url::parse(&self.webhook)
            .map_err(|e| bad(format!("`webhook = \"{}\"`: {e}", self.webhook)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad(format!(
                "`webhook = \"{}\"`: an http or https URL",
                self.webhook
            )));
        }
        let secret = match (&self.secret_env, &self.secret_file) {
            (Some(var), None) => std::env::var(var)
                .map_err(|_| bad(format!("`secret_env = \"{var}\"`: the variable is not set")))?
                .into_bytes(),
            (None, Some(f)) => {
                let path = if f.is_relative() {
                    base.join(f)
                } else {
                    f.clone()
                };
                std::fs::read_to_string(&path)
                    .map_err(|e| {
                        bad(format!(
                            "`secret_file`: cannot read {}: {e}",
                            path.display()
                        ))
                    })?
                    .trim()
                    .as_bytes()
                    .to_vec()
            }
            _ => {
                return Err(bad(
                    "give the signing secret: `secret_env` or `secret_file`".into(),
                ));
            }
        };
        if secret.len() < 16 {
            return Err(bad("the signing secret has fewer than 16 bytes".into()));
        }
        Ok(Alert {
            name: self.name.trim().to_string(),
            formula: self.formula.clone(),
            group,
            rule,
            webhook: self.webhook.clone(),
            secret,
        })
    }
}

/// `t=TIMESTAMP,v1=HEX`: HMAC-SHA256 of `TIMESTAMP.BODY` with `secret`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("t={timestamp},v1={}", hex::encode(ctx.sign().as_ref()))
}

/// What the watcher has evaluated: alert -> period -> edition.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Seen {
    alerts: BTreeMap<String, BTreeMap<String, u32>>,
}

/// One event, as POSTed.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub id: String,
    pub alert: String,
    pub formula: String,
    pub period: NaiveDate,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period_label: Option<String>,
    pub edition: u32,
    pub run_id: String,
    pub group: String,
    pub rule: String,
    pub score: Option<f64>,
    pub previous_period: Option<NaiveDate>,
    pub previous_score: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_status: Option<String>,
    pub published_at: String,
}

/// Starts the watcher (nothing without alerts).
pub fn spawn(state: &Arc<AppState>, alerts: Vec<Alert>) -> Option<tokio::task::JoinHandle<()>> {
    if alerts.is_empty() {
        return None;
    }
    let state = Arc::clone(state);
    Some(tokio::spawn(async move { watch(state, alerts).await }))
}

async fn watch(state: Arc<AppState>, alerts: Vec<Alert>) {
    let path = state.store.results.join("alerts.json");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default();
    let mut last_seen_current: Option<std::time::SystemTime> = None;
    loop {
        let stamp = std::fs::metadata(state.store.results.join("current.json"))
            .and_then(|m| m.modified())
            .ok();
        if stamp != last_seen_current || last_seen_current.is_none() {
            last_seen_current = stamp;
            let mut seen: Seen = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            let mut changed = false;
            for a in &alerts {
                changed |= evaluate(&state, &client, a, &mut seen, &path).await;
            }
            if changed {
                save(&path, &seen);
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

fn save(path: &std::path::Path, seen: &Seen) {
    let json = serde_json::to_vec_pretty(seen).unwrap_or_default();
    if let Err(e) = engine::durable::replace_file(path, &json, engine::durable::Access::Default) {
        tracing::error!(error = %e, file = %path.display(), "cannot record the editions alerts evaluated");
    }
}

/// Evaluates `a` on every edition of its formula it has not seen; true
/// when `seen` changed.
async fn evaluate(
    state: &Arc<AppState>,
    client: &reqwest::Client,
    a: &Alert,
    seen: &mut Seen,
    path: &std::path::Path,
) -> bool {
    let Ok(current) = state.store.current() else {
        return false;
    };
    let Some(periods) = current.editions.get(&a.formula) else {
        return false;
    };
    let first_time = !seen.alerts.contains_key(&a.name);
    let new: Vec<(String, engine::editions::Edition)> = {
        let mine = seen.alerts.entry(a.name.clone()).or_default();
        periods
            .iter()
            .filter_map(|(p, log)| Some((p.clone(), log.current()?.clone())))
            .filter(|(p, e)| mine.get(p).is_none_or(|n| *n < e.edition))
            .collect()
    };
    for (p, e) in &new {
        if !first_time && let Some(event) = fires(state, a, p, e) {
            deliver(state, client, a, &event).await;
        }
        seen.alerts
            .entry(a.name.clone())
            .or_default()
            .insert(p.clone(), e.edition);
        // Recorded at once: an edition is evaluated once, even if the
        // server stops before the next one is.
        save(path, seen);
    }
    first_time || !new.is_empty()
}

/// The event `a` fires on edition `e` of period `p`, if it does.
fn fires(
    state: &Arc<AppState>,
    a: &Alert,
    p: &str,
    e: &engine::editions::Edition,
) -> Option<Event> {
    let store = &state.store;
    let day = engine::period::parse_date(p)?;
    let (cal, grain) = store.calendar(&a.formula).ok()?;
    let row_of = |rows: &[engine::ResultRow], day: NaiveDate| -> Option<engine::ResultRow> {
        rows.iter()
            .find(|r| {
                r.period == day
                    && match &a.group {
                        None => r.dimension.is_none(),
                        Some((d, v)) => {
                            r.dimension.as_deref() == Some(d) && r.value.as_deref() == Some(v)
                        }
                    }
            })
            .cloned()
    };
    let now = row_of(&crate::view::server_rows(state, &e.run_id).ok()?, day)?;
    let before_day = cal.floor(grain, day.pred_opt()?);
    let current = store.current().ok()?;
    let before = current
        .log(&a.formula, &before_day.to_string())
        .and_then(|l| l.current())
        .and_then(|b| {
            row_of(
                &crate::view::server_rows(state, &b.run_id).ok()?,
                before_day,
            )
        });
    let (status, previous_status, rule) = match &a.rule {
        Rule::StatusBecomes(target) => {
            let targets = store.targets(&a.formula).ok().flatten()?;
            let status = targets.group_status(&now).status;
            let previous = before.as_ref().and_then(|b| targets.group_status(b).status);
            if status.as_deref() != Some(target) || previous.as_deref() == Some(target) {
                return None;
            }
            (status, previous, format!("status_becomes {target}"))
        }
        Rule::DropsBy(points) => {
            let drop = before.as_ref()?.score? - now.score?;
            if drop <= *points {
                return None;
            }
            (None, None, format!("drops_by {points}"))
        }
    };
    let group = a
        .group
        .as_ref()
        .map_or_else(|| "all".to_string(), |(d, v)| format!("{d}={v}"));
    Some(Event {
        id: format!("{}:{}:{}:{}", a.name, a.formula, p, e.edition),
        alert: a.name.clone(),
        formula: a.formula.clone(),
        period: day,
        period_label: cal.label(grain, day),
        edition: e.edition,
        run_id: e.run_id.clone(),
        group,
        rule,
        score: now.score,
        previous_period: before.as_ref().map(|_| before_day),
        previous_score: before.as_ref().and_then(|b| b.score),
        status,
        previous_status,
        published_at: e.published_at.clone(),
    })
}

/// POSTs the event, retrying with backoff, and writes the outcome to the
/// audit log.
async fn deliver(state: &Arc<AppState>, client: &reqwest::Client, a: &Alert, event: &Event) {
    let body = serde_json::to_vec(event).unwrap_or_default();
    let mut wait = FIRST_BACKOFF;
    let mut why = String::new();
    for attempt in 1..=ATTEMPTS {
        let t = Utc::now().timestamp();
        let sent = client
            .post(&a.webhook)
            .header("content-type", "application/json")
            .header("x-croo-event", &event.id)
            .header("x-croo-signature", signature(&a.secret, t, &body))
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                let mut e = AuditEvent::new("alert.sent", "ok");
                e.run_id = Some(event.run_id.clone());
                e.detail = Some(format!("{} (attempt {attempt}) to {}", event.id, a.webhook));
                state.audit.record(&e);
                return;
            }
            Ok(r) => why = format!("answered {}", r.status()),
            Err(e) => why = e.to_string(),
        }
        tracing::warn!(alert = %a.name, event = %event.id, attempt, error = %why, "webhook failed");
        if attempt < ATTEMPTS {
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }
    let mut e = AuditEvent::new("alert.failed", "failed");
    e.run_id = Some(event.run_id.clone());
    e.detail = Some(format!(
        "{} to {}: {why} after {ATTEMPTS} attempts",
        event.id, a.webhook
    ));
    state.audit.record(&e);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231, test case 2: HMAC-SHA256 of "what do ya want for
    /// nothing?" with the key "Jefe" (here as "TIMESTAMP.BODY" split at
    /// the dot).
    #[test]
    fn signatures_are_rfc_4231_hmac_sha256() {
        // "what do ya want " + "." would change the message; use a body
        // whose signed text is exactly the RFC's: timestamp "what do ya
        // want for nothing?" cannot be a number, so check the HMAC itself.
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"Jefe");
        let tag = ring::hmac::sign(&key, b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(tag.as_ref()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // And the header signs "t.body" with the same construction.
        let s = signature(b"Jefe", 1_700_000_000, b"{}");
        let expected = ring::hmac::sign(&key, b"1700000000.{}");
        assert_eq!(
            s,
            format!("t=1700000000,v1={}", hex::encode(expected.as_ref()))
        );
    }
}
