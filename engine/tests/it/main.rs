//! End-to-end tests of the engine: tiny data sets whose expected numbers
//! were worked out by hand (the arithmetic is in the comments), one test
//! per numbered rule of FORMULA.md and per data shape.

mod contracts;
mod fuzz;
mod memberships;
mod rules;
mod shapes;

use std::path::Path;

use chrono::{TimeZone, Utc};
use engine::{PeriodChoice, ResultRow, RunRequest, SessionOptions};

pub fn write(dir: &Path, name: &str, content: &str) {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(p, content).unwrap();
}

pub fn date(s: &str) -> chrono::NaiveDate {
    engine::period::parse_date(s).unwrap()
}

/// Runs `formula.toml` in `dir` over `[from, to]` and returns the rows.
pub async fn run(dir: &Path, from: &str, to: &str) -> engine::Result<Vec<ResultRow>> {
    run_with(dir, from, to, SessionOptions::default()).await
}

pub async fn run_with(
    dir: &Path,
    from: &str,
    to: &str,
    session: SessionOptions,
) -> engine::Result<Vec<ResultRow>> {
    let loaded = engine::load(&dir.join("formula.toml"))?;
    let req = RunRequest {
        periods: PeriodChoice::Range(date(from), date(to)),
        out: dir.join("results"),
        detail: false,
        session,
        // Every call computes: these tests are about the computation.
        publishing: engine::Publishing {
            force: true,
            ..Default::default()
        },
    };
    let clock = || Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 0).unwrap();
    Ok(engine::run(&loaded, &req, &clock).await?.rows)
}

/// The row of a period and group (`None` = whole population).
pub fn row<'a>(rows: &'a [ResultRow], period: &str, group: Option<(&str, &str)>) -> &'a ResultRow {
    rows.iter()
        .find(|r| {
            r.period == date(period)
                && match group {
                    None => r.dimension.is_none(),
                    Some((d, v)) => {
                        r.dimension.as_deref() == Some(d) && r.value.as_deref() == Some(v)
                    }
                }
        })
        .unwrap_or_else(|| panic!("no row for {period} {group:?} in {rows:#?}"))
}

pub fn component(r: &ResultRow, name: &str) -> engine::ComponentResult {
    r.components
        .0
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, c)| *c)
        .unwrap()
}

#[track_caller]
pub fn approx(actual: Option<f64>, expected: f64) {
    let a = actual.unwrap_or_else(|| panic!("expected {expected}, got NULL"));
    assert!(
        (a - expected).abs() <= 1e-9 * expected.abs().max(1.0),
        "expected {expected}, got {a}"
    );
}
