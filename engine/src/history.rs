//! A period's history: its editions, and what differs between two of them
//! (the formula's definitions, the sources read, the population
//! functions' reference statistics, the scores per group). Reads the
//! store only; [`compare`] is the entry point of the comparison.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::NaiveDate;
use serde::Serialize;

use crate::diff::DefinitionChange;
use crate::editions::{Edition, PeriodLog};
use crate::error::{Error, Result};
use crate::store::{self, Manifest, PopulationStats};

/// Every period of `formula` with editions, and its editions (an error
/// naming the formulas that have some when it has none).
pub fn periods(out: &Path, formula: &str) -> Result<BTreeMap<String, PeriodLog>> {
    let mut current = store::read_current(out)?;
    match current.editions.remove(formula) {
        Some(periods) => Ok(periods),
        None => {
            let known: Vec<&str> = current.editions.keys().map(String::as_str).collect();
            Err(Error::User(format!(
                "no editions of formula `{formula}` in {} (formulas with editions: {})",
                out.display(),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )))
        }
    }
}

/// The editions of `formula` in `period` (an error naming the formulas or
/// periods that have some when there are none).
pub fn log(out: &Path, formula: &str, period: NaiveDate) -> Result<PeriodLog> {
    let periods = periods(out, formula)?;
    periods.get(&period.to_string()).cloned().ok_or_else(|| {
        let known: Vec<&str> = periods.keys().map(String::as_str).collect();
        Error::User(format!(
            "formula `{formula}` has no editions for {period} (periods with editions: {})",
            known.join(", ")
        ))
    })
}

/// One source as two editions read it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceChange {
    pub source: String,
    /// Whether its files (paths, sizes, modification times) differ.
    pub files_changed: bool,
    pub rows_read: (u64, u64),
}

/// One population function's reference statistics in both editions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatsChange {
    pub function: String,
    pub expression: String,
    pub a: Option<PopulationStats>,
    pub b: Option<PopulationStats>,
}

/// One group's score in both editions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreChange {
    pub dimension: Option<String>,
    pub value: Option<String>,
    pub a: Option<f64>,
    pub b: Option<f64>,
    pub included: (Option<u64>, Option<u64>),
}

/// What differs between two editions of one period.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub formula: String,
    pub period: NaiveDate,
    pub a: Edition,
    pub b: Edition,
    /// Whether the formula files differ (their hashes).
    pub formula_changed: bool,
    /// The definitions that differ, when both files are kept in the store.
    pub definitions: Vec<DefinitionChange>,
    pub engine_changed: bool,
    pub sources: Vec<SourceChange>,
    pub population_stats: Vec<StatsChange>,
    pub scores: Vec<ScoreChange>,
}

fn edition(log: &PeriodLog, n: u32, formula: &str, period: NaiveDate) -> Result<Edition> {
    log.edition(n).cloned().ok_or_else(|| {
        Error::User(format!(
            "`{formula}` {period} has no edition {n} (it has 1 to {})",
            log.editions.len()
        ))
    })
}

/// The formula a run kept (`formula.toml`), checked.
fn kept_formula(out: &Path, run_id: &str) -> Option<formulas::Formula> {
    let path = store::run_dir(out, run_id).join("formula.toml");
    let text = std::fs::read_to_string(&path).ok()?;
    formulas::check(&formulas::SourceFile::new(path.display().to_string(), text)).0
}

/// Compares editions `a` and `b` of `formula` in `period`.
pub fn compare(out: &Path, formula: &str, period: NaiveDate, a: u32, b: u32) -> Result<Comparison> {
    let log = log(out, formula, period)?;
    let (ea, eb) = (
        edition(&log, a, formula, period)?,
        edition(&log, b, formula, period)?,
    );
    let (ma, mb) = (
        store::read_manifest(out, &ea.run_id)?,
        store::read_manifest(out, &eb.run_id)?,
    );
    let definitions = match (kept_formula(out, &ea.run_id), kept_formula(out, &eb.run_id)) {
        (Some(fa), Some(fb)) => crate::diff::definitions(&fa, &fb),
        _ => Vec::new(),
    };
    let (ra, rb) = (
        store::read_results(out, &ea.run_id)?,
        store::read_results(out, &eb.run_id)?,
    );
    Ok(Comparison {
        formula: formula.to_string(),
        period,
        formula_changed: ea.formula_hash != eb.formula_hash,
        definitions,
        engine_changed: ea.engine_version != eb.engine_version,
        sources: sources(&ma, &mb),
        population_stats: stats(&ma, &mb, period),
        scores: scores(&ra, &rb, period),
        a: ea,
        b: eb,
    })
}

fn sources(a: &Manifest, b: &Manifest) -> Vec<SourceChange> {
    let mut names: Vec<&str> = a.sources.iter().map(|s| s.name.as_str()).collect();
    for s in &b.sources {
        if !names.contains(&s.name.as_str()) {
            names.push(&s.name);
        }
    }
    names
        .into_iter()
        .map(|n| {
            let (sa, sb) = (
                a.sources.iter().find(|s| s.name == n),
                b.sources.iter().find(|s| s.name == n),
            );
            SourceChange {
                source: n.to_string(),
                files_changed: sa.map(|s| (&s.uri, &s.files)) != sb.map(|s| (&s.uri, &s.files)),
                rows_read: (sa.map_or(0, |s| s.rows_read), sb.map_or(0, |s| s.rows_read)),
            }
        })
        .collect()
}

fn stats(a: &Manifest, b: &Manifest, period: NaiveDate) -> Vec<StatsChange> {
    let p = period.to_string();
    let mut out: BTreeMap<(String, String), StatsChange> = BTreeMap::new();
    for (side, m) in [(0, a), (1, b)] {
        for s in m.population_stats.iter().filter(|s| s.period == p) {
            let e = out
                .entry((s.function.clone(), s.expression.clone()))
                .or_insert_with(|| StatsChange {
                    function: s.function.clone(),
                    expression: s.expression.clone(),
                    a: None,
                    b: None,
                });
            if side == 0 {
                e.a = Some(s.clone());
            } else {
                e.b = Some(s.clone());
            }
        }
    }
    out.into_values().collect()
}

fn scores(a: &[crate::ResultRow], b: &[crate::ResultRow], period: NaiveDate) -> Vec<ScoreChange> {
    let mut out: BTreeMap<(Option<String>, Option<String>), ScoreChange> = BTreeMap::new();
    for (side, rows) in [(0, a), (1, b)] {
        for r in rows.iter().filter(|r| r.period == period) {
            let e = out
                .entry((r.dimension.clone(), r.value.clone()))
                .or_insert_with(|| ScoreChange {
                    dimension: r.dimension.clone(),
                    value: r.value.clone(),
                    a: None,
                    b: None,
                    included: (None, None),
                });
            if side == 0 {
                e.a = r.score;
                e.included.0 = Some(r.included);
            } else {
                e.b = r.score;
                e.included.1 = Some(r.included);
            }
        }
    }
    out.into_values().collect()
}
