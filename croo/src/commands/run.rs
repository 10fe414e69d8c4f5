//! `croo run`: compute a formula for some periods, commit the results to
//! the store, print them as a table or JSON.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use chrono::Utc;
use engine::{PeriodChoice, RunRequest};

use crate::args::{OutputFormat, PeriodArgs, RunArgs};
use crate::exit::{Failure, color};
use crate::render;

#[derive(clap::Args)]
pub struct Args {
    pub formula: PathBuf,
    #[command(flatten)]
    pub periods: PeriodArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

pub async fn run(a: Args) -> Result<u8, Failure> {
    run_formula(&a.formula, &|cal| a.periods.choice(cal), &a.run).await
}

/// The periods of a run, named in the formula's calendar.
pub type Choose<'a> = &'a dyn Fn(&engine::calendar::Calendar) -> Result<PeriodChoice, Failure>;

/// Runs the formula at `path` over `choice` and prints the result rows.
pub async fn run_formula(path: &Path, choose: Choose<'_>, args: &RunArgs) -> Result<u8, Failure> {
    let mut session = args.session()?;
    let loaded = engine::load(path)?;
    if session.cluster.is_none() && session.memory_limit.is_none() {
        session.input_bytes = engine::sources::input_bytes(&loaded).await;
        if session
            .input_bytes
            .is_some_and(|b| b >= crate::allocator::HUGE_PAGE_INPUT_BYTES)
            && std::env::var_os("CROO_NO_HUGE_PAGES").is_none()
        {
            crate::allocator::huge_pages();
        }
    }
    let cal = engine::calendar::Calendar::of(&loaded.formula.file);
    let choice = choose(&cal)?;
    let targets = crate::args::targets(args.targets.as_deref(), path, &loaded.formula.file)?;
    let status = |r: &engine::ResultRow| targets.as_ref().and_then(|t| t.group_status(r).status);
    for w in &loaded.warnings {
        eprintln!("{}", render::diagnostic(&loaded.file, w, color()));
    }
    let req = RunRequest {
        periods: choice,
        out: args.out.clone(),
        detail: args.detail,
        session,
        publishing: args.publishing(path)?,
    };
    let spinner = std::io::stderr().is_terminal().then(|| {
        let pb = indicatif::ProgressBar::new_spinner();
        pb.set_message(format!("computing {}", loaded.formula.name()));
        pb.enable_steady_tick(std::time::Duration::from_millis(120));
        pb
    });
    let report = engine::run(&loaded, &req, &Utc::now).await;
    if let Some(pb) = spinner {
        pb.finish_and_clear();
    }
    let report = report?;
    // What the run found on the way (data checks that warned or dropped
    // rows, orphans, incomplete periods), after the formula's own warnings.
    let found = report
        .manifest
        .warnings
        .get(loaded.warnings.len()..)
        .unwrap_or_default();
    for w in found {
        eprintln!("warning: {w}");
    }
    // Each period's state and edition after the run; the rows of periods
    // that were refused (final, not restated) are not shown as results.
    let published: std::collections::BTreeMap<chrono::NaiveDate, &engine::editions::Publication> =
        report
            .manifest
            .publications
            .iter()
            .filter(|p| !matches!(p.outcome, engine::editions::Outcome::Refused { .. }))
            .filter_map(|p| Some((engine::period::parse_date(&p.period)?, p)))
            .collect();
    let rows: Vec<&engine::ResultRow> = report
        .rows
        .iter()
        .filter(|r| published.contains_key(&r.period))
        .collect();
    let mut stdout = std::io::stdout().lock();
    match args.format {
        OutputFormat::Json => {
            // Each row says what produced it, as the API's rows do.
            let m = &report.manifest;
            let rows: Vec<serde_json::Value> = rows
                .iter()
                .map(|r| {
                    let mut v = serde_json::to_value(r).unwrap_or_default();
                    if let Some(o) = v.as_object_mut() {
                        o.insert("run_id".into(), m.run_id.clone().into());
                        o.insert("version".into(), m.version.clone().into());
                        o.insert("formula_hash".into(), m.formula_hash.clone().into());
                        if let Some(l) = cal.label(loaded.formula.file.grain, r.period) {
                            o.insert("period_label".into(), l.into());
                        }
                        if let Some(t) = &targets {
                            o.insert("status".into(), status(r).into());
                            o.insert("targets_version".into(), t.version.clone().into());
                        }
                        if let Some(p) = published.get(&r.period) {
                            o.insert("state".into(), p.state.as_str().into());
                            o.insert("edition".into(), p.outcome.edition().into());
                        }
                    }
                    v
                })
                .collect();
            let doc = serde_json::json!({
                "formula": report.manifest.formula,
                "version": report.manifest.version,
                "formula_hash": report.manifest.formula_hash,
                "run_id": report.manifest.run_id,
                "outcome": report.manifest.outcome,
                "warnings": found,
                "exclusions": report.manifest.exclusions,
                "publications": report.manifest.publications,
                "results": rows,
            });
            let _ = writeln!(
                stdout,
                "{}",
                serde_json::to_string_pretty(&doc).unwrap_or_default()
            );
        }
        OutputFormat::Table => {
            let comps: Vec<String> = loaded
                .formula
                .file
                .components
                .iter()
                .map(|c| c.name.value.clone())
                .collect();
            let labelled = !cal.is_default();
            let mut headers = render::headers(&["period"]);
            if labelled {
                headers.extend(render::headers(&["fiscal"]));
            }
            if targets.is_some() {
                headers.extend(render::headers(&["status"]));
            }
            headers.extend(render::headers(&[
                "state",
                "group",
                "score",
                "population",
                "included",
                "excluded",
            ]));
            headers.extend(comps.iter().cloned());
            let num = |v: Option<f64>| render::number(v, 2);
            let rows: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    let mut row = vec![r.period.to_string()];
                    if labelled {
                        row.extend(cal.label(loaded.formula.file.grain, r.period));
                    }
                    if targets.is_some() {
                        row.push(status(r).unwrap_or_else(|| "-".into()));
                    }
                    row.extend([
                        published
                            .get(&r.period)
                            .map(|p| p.state.as_str().to_string())
                            .unwrap_or_default(),
                        render::group(r.dimension.as_deref(), r.value.as_deref()),
                        num(r.score),
                        r.population.to_string(),
                        r.included.to_string(),
                        r.excluded.to_string(),
                    ]);
                    row.extend(
                        r.components
                            .0
                            .iter()
                            .map(|(_, c)| num(c.contribution.or(c.rollup))),
                    );
                    row
                })
                .collect();
            let _ = write!(stdout, "{}", render::table(&headers, &rows));
            let _ = writeln!(
                stdout,
                "\n{} {} ({}) run {} -> {}",
                report.manifest.formula,
                report.manifest.version,
                if loaded.formula.score.is_none() {
                    "component columns are contributions"
                } else {
                    "component columns are rollups"
                },
                report.manifest.run_id,
                report.dir.display()
            );
            for p in &report.manifest.publications {
                let _ = writeln!(stdout, "{p}");
            }
            // Why the excluded customers are excluded, per period.
            for (period, causes) in &report.manifest.exclusions {
                if let Ok(day) = period.parse() {
                    let _ = writeln!(
                        stdout,
                        "excluded in {}",
                        engine::exclusions::describe(day, causes)
                    );
                }
            }
        }
    }
    let refused = report.refused();
    if !refused.is_empty() {
        return Err(crate::exit::user(refusal(&refused)));
    }
    Ok(0)
}

/// The message of a run that would have changed final periods.
fn refusal(refused: &[&engine::editions::Publication]) -> String {
    let mut m = String::from("final periods would change; nothing was published for them:");
    for p in refused {
        if let engine::editions::Outcome::Refused { edition, changes } = &p.outcome {
            m.push_str(&format!(
                "\n  {} is final at edition {edition}; this run would change:",
                p.period
            ));
            for c in changes {
                m.push_str(&format!("\n    {c}"));
            }
        }
    }
    m.push_str("\nto publish a new edition: croo run ... --restate --reason \"why\"");
    m
}
