//! Editions: what was published for each (formula, period), never
//! overwritten. A run that computes different numbers for a period adds
//! edition n+1; one that computes the same numbers adds nothing; a period
//! that is `final` changes only when the run is a restatement with a
//! reason. This module holds what an edition is and a period's state;
//! `publish` takes the decision, under the store's lock, against
//! `current.json`, which holds the editions (`Current::editions`) beside
//! the pointers to the current runs.
//!
//! A period's state: `open` until its end, `provisional` from its end
//! until a run after end + `[operations] settle` publishes it (or confirms
//! it unchanged), `final` from then on.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::rollup::ResultRow;

/// Where a period stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Open,
    Provisional,
    Final,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Open => "open",
            State::Provisional => "provisional",
            State::Final => "final",
        }
    }
}

/// The formula file's place in a git repository when it was run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Git {
    /// The commit checked out (`HEAD`).
    pub commit: String,
    /// Whether the file differed from that commit (or was not in it).
    pub dirty: bool,
}

/// One published version of a (formula, period).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Edition {
    /// 1, 2, ... per (formula, period).
    pub edition: u32,
    pub run_id: String,
    /// RFC 3339, when the run published it.
    pub published_at: String,
    /// The period's state when this edition was published.
    pub state: State,
    /// Who published it: `--actor`, else the OS user; the API key's name
    /// over the API; `schedule:<name>` for a scheduled run.
    pub actor: String,
    /// Why (required to restate a final period).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Whether this edition changed a final period.
    #[serde(default)]
    pub restated: bool,
    pub version: String,
    pub formula_hash: String,
    pub engine_version: String,
    /// Digest of what the run read (`inputs_digest`); `None` when a source
    /// cannot be fingerprinted (a database table).
    pub inputs: Option<String>,
    /// Digest of the period's published rows (`results_digest`).
    pub results: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<Git>,
    /// Whether the run kept per-customer rows.
    #[serde(default)]
    pub detail: bool,
    /// A later run that computed the same numbers and kept the
    /// per-customer rows this edition's run did not: where its detail is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail_run: Option<String>,
}

impl Edition {
    /// The run whose `detail.parquet` holds this edition's customers.
    pub fn detail_run(&self) -> Option<&str> {
        if self.detail {
            Some(&self.run_id)
        } else {
            self.detail_run.as_deref()
        }
    }
}

/// The editions of one (formula, period), oldest first, and when it
/// became final.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PeriodLog {
    pub editions: Vec<Edition>,
    /// When a run after end + settle first published or confirmed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_run: Option<String>,
}

impl PeriodLog {
    pub fn current(&self) -> Option<&Edition> {
        self.editions.last()
    }

    /// The edition with number `n`.
    pub fn edition(&self, n: u32) -> Option<&Edition> {
        self.editions.iter().find(|e| e.edition == n)
    }

    /// The edition that was current at `at`: the latest published at or
    /// before it.
    pub fn as_of(&self, at: DateTime<Utc>) -> Option<&Edition> {
        self.editions
            .iter()
            .rev()
            .find(|e| parse_time(&e.published_at).is_some_and(|t| t <= at))
    }

    /// The state at `now` of the period ending at `end`
    /// ([`crate::calendar::Calendar::end`]).
    pub fn state(&self, end: DateTime<Utc>, now: DateTime<Utc>) -> State {
        if now < end {
            State::Open
        } else if self.final_at.is_some() {
            State::Final
        } else {
            State::Provisional
        }
    }

    /// Whether the period was final at `at` (for `as_of` reads).
    pub fn final_by(&self, at: DateTime<Utc>) -> bool {
        self.final_at
            .as_deref()
            .and_then(parse_time)
            .is_some_and(|t| t <= at)
    }
}

/// What a publication at `at` makes of a period ending at `end`: open
/// before its end, provisional until end + settle, final after.
pub fn state_at(end: DateTime<Utc>, settle_s: i64, at: DateTime<Utc>) -> State {
    if at < end {
        State::Open
    } else if at < end + chrono::Duration::seconds(settle_s) {
        State::Provisional
    } else {
        State::Final
    }
}

pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// A digest of the result rows of one period: every group, every count
/// and the exact bits of every number.
pub fn results_digest(rows: &[ResultRow], period: NaiveDate) -> String {
    let mut mine: Vec<&ResultRow> = rows.iter().filter(|r| r.period == period).collect();
    mine.sort_by(|a, b| (&a.dimension, &a.value).cmp(&(&b.dimension, &b.value)));
    let bits = |v: Option<f64>| v.map_or_else(|| "null".to_string(), |x| x.to_bits().to_string());
    let mut h = Sha256::new();
    for r in mine {
        h.update(format!(
            "{:?}\0{:?}\0{}\0{}\0{}\0{}\0{}\0{}\0",
            r.dimension,
            r.value,
            bits(r.score),
            r.population,
            r.included,
            r.excluded,
            r.weight_total.to_bits(),
            r.complete
        ));
        for (name, c) in &r.components.0 {
            h.update(format!(
                "{name}\0{}\0{}\0",
                bits(c.rollup),
                bits(c.contribution)
            ));
        }
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// Who publishes, and on what authority.
#[derive(Debug, Clone, Default)]
pub struct Publisher {
    pub actor: String,
    /// `Some(reason)`: the run may restate final periods.
    pub restate: Option<String>,
    pub git: Option<Git>,
}

/// What became of one period of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub enum Outcome {
    /// A new edition (the first, or different numbers).
    Published { edition: u32 },
    /// A new edition of a final period, with `--restate`.
    Restated { edition: u32 },
    /// The same numbers (or the same inputs) as the current edition.
    Unchanged { edition: u32 },
    /// Different numbers for a final period, without `--restate`: nothing
    /// published. `changes` are the first numbers that would change.
    Refused { edition: u32, changes: Vec<String> },
}

impl Outcome {
    /// The edition that is current for the period after the run.
    pub fn edition(&self) -> u32 {
        match self {
            Outcome::Published { edition }
            | Outcome::Restated { edition }
            | Outcome::Unchanged { edition }
            | Outcome::Refused { edition, .. } => *edition,
        }
    }
}

/// One period of a run: its outcome and its state after the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Publication {
    pub period: String,
    #[serde(flatten)]
    pub outcome: Outcome,
    pub state: State,
}

impl std::fmt::Display for Publication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = &self.period;
        let s = self.state.as_str();
        match &self.outcome {
            Outcome::Published { edition } => write!(f, "{p}: published edition {edition} ({s})"),
            Outcome::Restated { edition } => write!(f, "{p}: restated as edition {edition} ({s})"),
            Outcome::Unchanged { edition } => write!(f, "{p}: unchanged: edition {edition} ({s})"),
            Outcome::Refused { edition, .. } => {
                write!(f, "{p}: final, stays at edition {edition}: not restated")
            }
        }
    }
}

/// The first `limit` numbers of period `day` that differ between `before`
/// and `after`, one line each (`segment=smb  score 61.2 -> 61.4`).
pub fn changes(
    before: &[ResultRow],
    after: &[ResultRow],
    day: NaiveDate,
    limit: usize,
) -> Vec<String> {
    let key = |r: &ResultRow| (r.dimension.clone(), r.value.clone());
    let old: BTreeMap<_, &ResultRow> = before
        .iter()
        .filter(|r| r.period == day)
        .map(|r| (key(r), r))
        .collect();
    let mut new: Vec<&ResultRow> = after.iter().filter(|r| r.period == day).collect();
    new.sort_by_key(|r| key(r));
    let num = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |x| format!("{x:.4}"));
    let mut out = Vec::new();
    for r in new {
        let group = match (&r.dimension, &r.value) {
            (None, _) => "whole population".to_string(),
            (Some(d), Some(v)) => format!("{d}={v}"),
            (Some(d), None) => format!("{d}=(null)"),
        };
        let Some(o) = old.get(&key(r)) else {
            out.push(format!("{group}: new group, score {}", num(r.score)));
            continue;
        };
        let same = |a: Option<f64>, b: Option<f64>| a.map(f64::to_bits) == b.map(f64::to_bits);
        if !same(o.score, r.score) {
            out.push(format!(
                "{group}: score {} -> {}",
                num(o.score),
                num(r.score)
            ));
        } else if o.population != r.population || o.included != r.included {
            out.push(format!(
                "{group}: included {} -> {} of {} -> {}",
                o.included, r.included, o.population, r.population
            ));
        } else if let Some((name, a, b)) = o
            .components
            .0
            .iter()
            .zip(&r.components.0)
            .find(|((_, a), (_, b))| !same(a.rollup, b.rollup))
            .map(|((n, a), (_, b))| (n, a.rollup, b.rollup))
        {
            out.push(format!("{group}: {name} {} -> {}", num(a), num(b)));
        } else if o.complete != r.complete || o.weight_total.to_bits() != r.weight_total.to_bits() {
            out.push(format!("{group}: weights or completeness"));
        }
        if out.len() >= limit {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use formulas::Grain;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn t(s: &str) -> DateTime<Utc> {
        parse_time(s).unwrap()
    }

    #[test]
    fn a_period_is_open_then_provisional_then_final() {
        let settle = 5 * 86_400;
        let end = crate::calendar::Calendar::default().end(Grain::Month, d("2026-10-01"));
        assert_eq!(
            state_at(end, settle, t("2026-10-31T23:59:59Z")),
            State::Open
        );
        assert_eq!(
            state_at(end, settle, t("2026-11-01T00:00:00Z")),
            State::Provisional
        );
        assert_eq!(
            state_at(end, settle, t("2026-11-05T23:59:59Z")),
            State::Provisional
        );
        assert_eq!(
            state_at(end, settle, t("2026-11-06T00:00:00Z")),
            State::Final
        );
        // No settle: final as soon as the period has ended.
        assert_eq!(state_at(end, 0, t("2026-11-01T00:00:00Z")), State::Final);
    }

    #[test]
    fn durations_parse() {
        use formulas::Seconds;
        assert_eq!(Seconds::parse("5d"), Some(Seconds(432_000)));
        assert_eq!(Seconds::parse("1d12h"), Some(Seconds(129_600)));
        assert_eq!(Seconds::parse("90m"), Some(Seconds(5400)));
        assert_eq!(Seconds::parse("0"), Some(Seconds(0)));
        assert_eq!(Seconds::parse("5"), None);
        assert_eq!(Seconds::parse("5 days"), None);
        assert_eq!(Seconds::parse("99999999999w"), None);
        assert_eq!(Seconds(129_600).to_string(), "1d12h");
    }
}
