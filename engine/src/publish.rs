//! What a finished run publishes: for each of its periods, a new edition,
//! the current one confirmed, or a refusal (a final period changed
//! without `--restate`). [`publish`] is the decision, taken under the
//! store's lock; [`unchanged_inputs`] tells a run it need not compute.

use chrono::{DateTime, Utc};
use formulas::Grain;
use sha2::{Digest, Sha256};

use crate::calendar::Calendar;
use crate::editions::{
    Edition, Outcome, Publication, Publisher, State, changes, results_digest, state_at,
};
use crate::period;
use crate::rollup::ResultRow;
use crate::store::{Current, Manifest, SourceRecord};

/// A digest of everything a run read: per source its name, URI and the
/// fingerprints of its files. `None` when a source has none (a database
/// table): then only recomputing can tell whether its data changed.
pub fn inputs_digest(sources: &[SourceRecord]) -> Option<String> {
    if sources.is_empty() || sources.iter().any(|s| s.files.is_empty()) {
        return None;
    }
    let mut h = Sha256::new();
    for s in sources {
        h.update(format!("source\0{}\0{}\0", s.name, s.uri));
        for f in &s.files {
            h.update(format!(
                "file\0{}\0{}\0{}\0{}\0",
                f.path, f.size, f.modified, f.version
            ));
        }
    }
    Some(format!("sha256:{}", hex::encode(h.finalize())))
}

/// Decides, for each period of a finished run, what it publishes, and
/// records it in `current` (editions and current pointers). `rows` are the
/// run's result rows; `old_rows` reads a committed run's rows (for the
/// numbers a refused restatement would change).
pub fn publish(
    current: &mut Current,
    manifest: &Manifest,
    rows: &[ResultRow],
    settle_s: i64,
    who: &Publisher,
    now: DateTime<Utc>,
    old_rows: &dyn Fn(&str) -> Option<Vec<ResultRow>>,
) -> Vec<Publication> {
    let (cal, grain) = (manifest.calendar(), manifest.grain());
    let inputs = inputs_digest(&manifest.sources);
    let mut out = Vec::new();
    for p in &manifest.periods {
        let Some(day) = period::parse_date(p) else {
            continue;
        };
        let log = current.log_mut(&manifest.formula, p);
        let digest = results_digest(rows, day);
        let end = cal.end(grain, day);
        let at_publication = state_at(end, settle_s, now);
        let next = log.current().map_or(1, |e| e.edition + 1);
        let new_edition = |restated: bool| Edition {
            edition: next,
            run_id: manifest.run_id.clone(),
            published_at: now.to_rfc3339(),
            state: at_publication,
            actor: who.actor.clone(),
            reason: who.restate.clone(),
            restated,
            version: manifest.version.clone(),
            formula_hash: manifest.formula_hash.clone(),
            engine_version: manifest.engine_version.clone(),
            inputs: inputs.clone(),
            results: digest.clone(),
            git: who.git.clone(),
            detail: manifest.parameters.get("detail") == Some(&serde_json::Value::Bool(true)),
            detail_run: None,
        };
        let detail = manifest.parameters.get("detail") == Some(&serde_json::Value::Bool(true));
        let outcome = match log.editions.last_mut() {
            Some(e) if e.results == digest => {
                // The same numbers: the edition stays; a run that kept the
                // per-customer rows its run did not is where they are.
                if detail && e.detail_run().is_none() {
                    e.detail_run = Some(manifest.run_id.clone());
                }
                Outcome::Unchanged { edition: e.edition }
            }
            Some(e) if log.final_at.is_some() => {
                if who.restate.is_some() {
                    log.editions.push(new_edition(true));
                    Outcome::Restated { edition: next }
                } else {
                    let before = old_rows(&e.run_id).unwrap_or_default();
                    Outcome::Refused {
                        edition: e.edition,
                        changes: changes(&before, rows, day, 5),
                    }
                }
            }
            _ => {
                log.editions.push(new_edition(false));
                Outcome::Published { edition: next }
            }
        };
        if at_publication == State::Final
            && log.final_at.is_none()
            && !matches!(outcome, Outcome::Refused { .. })
        {
            log.final_at = Some(now.to_rfc3339());
            log.final_run = Some(manifest.run_id.clone());
        }
        let state = log.state(end, now);
        if let Some(e) = log.current() {
            let run = e.run_id.clone();
            current
                .formulas
                .entry(manifest.formula.clone())
                .or_default()
                .insert(p.clone(), run);
        }
        out.push(Publication {
            period: p.clone(),
            outcome,
            state,
        });
    }
    out
}

/// Whether a run of `periods` may skip its computation: every period
/// already has a current edition computed by the same formula file, engine
/// and inputs (and with per-customer rows when `detail` asks for them).
/// Returns the editions, or `None` when something differs or the inputs
/// cannot be fingerprinted.
pub fn unchanged_inputs(
    current: &Current,
    formula: &str,
    periods: &[String],
    formula_hash: &str,
    engine_version: &str,
    inputs: Option<&str>,
    detail: bool,
) -> Option<Vec<u32>> {
    let inputs = inputs?;
    periods
        .iter()
        .map(|p| {
            let e = current.log(formula, p)?.current()?;
            (e.formula_hash == formula_hash
                && e.engine_version == engine_version
                && e.inputs.as_deref() == Some(inputs)
                && (e.detail_run().is_some() || !detail))
                .then_some(e.edition)
        })
        .collect()
}

/// Confirms unchanged periods without a computation: each keeps its
/// edition, and one whose end + settle has passed becomes final.
pub fn confirm(
    current: &mut Current,
    formula: &str,
    (cal, grain): (&Calendar, Grain),
    periods: &[String],
    settle_s: i64,
    run_id: &str,
    now: DateTime<Utc>,
) -> Vec<Publication> {
    let mut out = Vec::new();
    for p in periods {
        let Some(day) = period::parse_date(p) else {
            continue;
        };
        let log = current.log_mut(formula, p);
        let Some(edition) = log.current().map(|e| e.edition) else {
            continue;
        };
        let end = cal.end(grain, day);
        if state_at(end, settle_s, now) == State::Final && log.final_at.is_none() {
            log.final_at = Some(now.to_rfc3339());
            log.final_run = Some(run_id.to_string());
        }
        out.push(Publication {
            period: p.clone(),
            outcome: Outcome::Unchanged { edition },
            state: log.state(end, now),
        });
    }
    out
}
