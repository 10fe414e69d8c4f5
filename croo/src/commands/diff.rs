//! `croo diff`: two versions of a formula on the same data, the
//! definitions that differ and the scores side by side per group.

use std::io::Write;
use std::path::PathBuf;

use engine::ScoreOptions;

use crate::args::{OutputFormat, one_period};
use crate::exit::Failure;
use crate::render;

#[derive(clap::Args)]
pub struct Args {
    pub old: PathBuf,
    pub new: PathBuf,
    /// The period to score: any date inside it, or its label (2026-11).
    #[arg(long)]
    pub period: String,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

/// The result rows of one period of a formula, written nowhere.
async fn score_period(
    loaded: &engine::Loaded,
    day: chrono::NaiveDate,
) -> Result<Vec<engine::ResultRow>, Failure> {
    let cal = engine::calendar::Calendar::of(&loaded.formula.file);
    let p = cal.floor(loaded.formula.file.grain, day);
    Ok(engine::score(loaded, &[p], &ScoreOptions::default())
        .await?
        .rows)
}

pub async fn run(a: Args) -> Result<u8, Failure> {
    let (old, new) = (engine::load(&a.old)?, engine::load(&a.new)?);
    let cal = engine::calendar::Calendar::of(&old.formula.file);
    let day = one_period("--period", &a.period, (&cal, old.formula.file.grain))?;
    let definitions = engine::diff::definitions(&old.formula, &new.formula);
    let results = engine::diff::results(
        &score_period(&old, day).await?,
        &score_period(&new, day).await?,
    );
    let mut out = std::io::stdout().lock();
    if a.format == OutputFormat::Json {
        let doc = serde_json::json!({
            "old": {"formula": old.formula.name(), "version": old.formula.file.version.value, "formula_hash": old.hash},
            "new": {"formula": new.formula.name(), "version": new.formula.file.version.value, "formula_hash": new.hash},
            "definitions": definitions,
            "results": results,
        });
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        );
        return Ok(0);
    }
    let _ = writeln!(
        out,
        "old: {} {}   new: {} {}\n",
        old.formula.name(),
        old.formula.file.version.value,
        new.formula.name(),
        new.formula.file.version.value
    );
    if definitions.is_empty() {
        let _ = writeln!(out, "no definition differs");
    }
    for d in &definitions {
        let name = if d.name.is_empty() {
            String::new()
        } else {
            format!(" `{}`", d.name)
        };
        match (&d.old, &d.new) {
            (Some(o), Some(n)) => {
                let _ = writeln!(out, "~ {}{name}: {o}  ->  {n}", d.kind);
            }
            (Some(o), None) => {
                let _ = writeln!(out, "- {}{name}: {o}", d.kind);
            }
            (None, Some(n)) => {
                let _ = writeln!(out, "+ {}{name}: {n}", d.kind);
            }
            (None, None) => {}
        }
    }
    let num = |v: Option<f64>| render::number(v, 4);
    let headers = render::headers(&["period", "group", "old", "new", "change"]);
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            vec![
                r.period.to_string(),
                render::group(r.dimension.as_deref(), r.value.as_deref()),
                num(r.old),
                num(r.new),
                num(r.change),
            ]
        })
        .collect();
    let _ = write!(out, "\n{}", render::table(&headers, &rows));
    Ok(0)
}
