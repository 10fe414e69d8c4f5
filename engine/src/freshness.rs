//! Freshness: how far each event source's data reaches, whether a period
//! has all of its data, and which period `--last-complete` means.
//!
//! A source's *latest time* is the greatest value of its `loaded_at`
//! column when it has one, else of its event `time`. An event source has
//! data up to a period's end when its latest time is at or after that end
//! less its `freshness.error_after` (0 when only `warn_after` is given);
//! a source without `freshness` needs only data in the period (a latest
//! time at or after the period's start). [`latest_times`] is the one scan.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::TimestampMicrosecondType;
use datafusion::functions_aggregate::expr_fn::max;
use datafusion::prelude::SessionContext;
use formulas::Source;

use crate::calendar::Calendar;
use crate::columns::table_name;
use crate::error::{Error, Result};
use crate::load::Loaded;
use crate::store::SourceRecord;

/// The latest time of each event source (`None`: the source has no rows).
pub type Latest = BTreeMap<String, Option<DateTime<Utc>>>;

fn measured_by(s: &Source) -> Option<&str> {
    s.loaded_at
        .as_ref()
        .or(s.time.as_ref())
        .map(|t| t.value.as_str())
}

/// The event sources whose latest time a run needs: all of them for
/// `--last-complete` (`all`), else those that declare `freshness`.
pub fn wanted(loaded: &Loaded, all: bool) -> Vec<String> {
    loaded
        .formula
        .file
        .sources
        .iter()
        .filter(|s| !s.entity && !s.history && (all || s.freshness.is_some()))
        .filter(|s| measured_by(s).is_some())
        .map(|s| s.name.value.clone())
        .collect()
}

/// The latest times recorded by the newest runs of `formula` in store
/// `out` from the same formula file (`hash`: the same columns measured),
/// for the sources in `sources` whose files are exactly those recorded
/// (the same fingerprints: the same latest time, with no scan).
pub fn recorded(
    out: &std::path::Path,
    formula: &str,
    hash: &str,
    sources: &[SourceRecord],
) -> Latest {
    let mut found = Latest::new();
    let Ok(runs) = crate::store::list_runs(out) else {
        return found;
    };
    // The newest first (run ids sort by time); a few are enough: a
    // schedule's last run read the same files or none of these did.
    for run in runs.iter().rev().take(16) {
        if found.len() == sources.len() {
            break;
        }
        let Ok(m) = crate::store::read_manifest(out, run) else {
            continue;
        };
        if m.formula != formula || m.formula_hash != hash || m.outcome == "failed" {
            continue;
        }
        for s in sources {
            if found.contains_key(&s.name) || s.files.is_empty() {
                continue;
            }
            if let Some(r) = m.sources.iter().find(|r| {
                r.name == s.name && r.uri == s.uri && r.files == s.files && r.latest.is_some()
            }) {
                found.insert(
                    s.name.clone(),
                    r.latest.as_deref().and_then(crate::editions::parse_time),
                );
            }
        }
    }
    found
}

/// Reads the latest time of each source named in `wanted` from the
/// sources registered in `ctx`.
pub async fn latest_times(
    ctx: &SessionContext,
    loaded: &Loaded,
    wanted: &[String],
) -> Result<Latest> {
    let mut out = Latest::new();
    for s in &loaded.formula.file.sources {
        if !wanted.contains(&s.name.value) {
            continue;
        }
        let Some(column) = measured_by(s) else {
            continue;
        };
        let what = format!("reading the latest time of source `{}`", s.name.value);
        let df = ctx
            .table(table_name(&s.name.value).as_str())
            .await
            .map_err(Error::engine(what.clone()))?;
        let ty = df
            .schema()
            .field_with_unqualified_name(column)
            .map(|f| f.data_type().clone())
            .map_err(|_| {
                Error::User(format!(
                    "source `{}` has no column `{column}`",
                    s.name.value
                ))
            })?;
        let Some(instant) = crate::columns::as_instant(column, &ty) else {
            // A column whose type could not be inferred (no rows at all)
            // is read as numbers: no rows, no latest time.
            let rows = df.count().await.map_err(Error::engine(what.clone()))?;
            if rows == 0 {
                out.insert(s.name.value.clone(), None);
                continue;
            }
            return Err(Error::User(format!(
                "source `{}`: column `{column}` ({ty}) does not hold times",
                s.name.value
            )));
        };
        let batches = df
            .aggregate(vec![], vec![max(instant).alias("latest")])
            .map_err(Error::engine(what.clone()))?
            .collect()
            .await
            .map_err(Error::engine(what))?;
        let latest = batches.first().and_then(|b| {
            let a = b.column(0).as_primitive_opt::<TimestampMicrosecondType>()?;
            (a.len() == 1 && !a.is_null(0))
                .then(|| DateTime::from_timestamp_micros(a.value(0)))
                .flatten()
        });
        out.insert(s.name.value.clone(), latest);
    }
    Ok(out)
}

/// The instant from which a source counts as having data up to the end of
/// `p`.
fn needed(s: &Source, (cal, grain): (&Calendar, formulas::Grain), p: NaiveDate) -> DateTime<Utc> {
    match &s.freshness {
        Some(f) => cal.end(grain, p) - Duration::seconds(f.error_after.map_or(0, |e| e.0)),
        None => cal.instant(p),
    }
}

/// The sources that lack data up to the end of `p`, with their latest
/// times.
pub fn missing(
    loaded: &Loaded,
    latest: &Latest,
    p: NaiveDate,
) -> Vec<(String, Option<DateTime<Utc>>)> {
    let grain = loaded.formula.file.grain;
    let cal = Calendar::of(&loaded.formula.file);
    loaded
        .formula
        .file
        .sources
        .iter()
        .filter_map(|s| {
            let l = latest.get(&s.name.value)?;
            let ok = l.is_some_and(|t| t >= needed(s, (&cal, grain), p));
            (!ok).then(|| (s.name.value.clone(), *l))
        })
        .collect()
}

fn show(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || "no rows at all".to_string(),
        |t| format!("latest {}", t.to_rfc3339()),
    )
}

/// The period `--last-complete` names at `now`: the latest one whose end
/// plus settle has passed and whose every event source has data up to its
/// end. Also returns a note when that is not the last period to have ended.
pub fn last_complete(
    loaded: &Loaded,
    latest: &Latest,
    now: DateTime<Utc>,
    settle_s: i64,
) -> Result<(NaiveDate, Option<String>)> {
    let grain = loaded.formula.file.grain;
    let cal = Calendar::of(&loaded.formula.file);
    let before = |p: NaiveDate| cal.floor(grain, p.pred_opt().unwrap_or(p));
    let mut p = cal.last_complete(grain, now);
    // The latest period that has ended and settled.
    while cal.end(grain, p) + Duration::seconds(settle_s) > now {
        p = before(p);
    }
    let settled = p;
    let mut first_missing = None;
    let mut blocking = Vec::new();
    for _ in 0..1000 {
        let lacking = missing(loaded, latest, p);
        if lacking.is_empty() {
            let note = (p != settled).then(|| {
                let (name, t) = first_missing.clone().unwrap_or_default();
                format!(
                    "--last-complete: {p} is the latest complete period; {settled} lacks data from source `{name}` ({})",
                    show(t)
                )
            });
            return Ok((p, note));
        }
        if first_missing.is_none() {
            first_missing = lacking.first().cloned();
        }
        blocking = lacking;
        p = before(p);
    }
    let why: Vec<String> = blocking
        .iter()
        .map(|(name, t)| format!("source `{name}` has {}", show(*t)))
        .collect();
    Err(Error::User(format!(
        "--last-complete: no period of `{}` is complete: {}",
        loaded.formula.name(),
        why.join("; ")
    )))
}

/// Warnings for the periods of a run that have ended: each event source
/// with `freshness.warn_after` whose latest time is more than that before
/// a period's end.
pub fn warnings(
    loaded: &Loaded,
    latest: &Latest,
    periods: &[NaiveDate],
    now: DateTime<Utc>,
) -> Vec<String> {
    let grain = loaded.formula.file.grain;
    let cal = Calendar::of(&loaded.formula.file);
    let mut out = Vec::new();
    for s in &loaded.formula.file.sources {
        let (Some(f), Some(l)) = (&s.freshness, latest.get(&s.name.value)) else {
            continue;
        };
        for p in periods {
            let end = cal.end(grain, *p);
            if end > now {
                continue;
            }
            let behind = l.map(|t| (end - t).num_seconds());
            let late = |after: Option<formulas::Seconds>| {
                after.is_some_and(|a| behind.is_none_or(|b| b > a.0))
            };
            let what = if late(f.error_after) {
                "error_after"
            } else if late(f.warn_after) {
                "warn_after"
            } else {
                continue;
            };
            let limit = if what == "error_after" {
                f.error_after
            } else {
                f.warn_after
            }
            .unwrap_or_default();
            out.push(format!(
                "source `{}` is stale for {p}: {} while the period ended {} ({what} {limit})",
                s.name.value,
                show(*l),
                end.to_rfc3339()
            ));
        }
    }
    out
}
