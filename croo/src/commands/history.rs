//! `croo history`: the editions of one period of a formula, and what
//! differs between two of them.

use std::io::Write;
use std::path::PathBuf;

use chrono::NaiveDate;

use crate::args::{OutputFormat, span};
use crate::exit::{Failure, user};
use crate::render;

#[derive(clap::Args)]
pub struct Args {
    /// A formula file, or the name of a formula in the results store.
    pub formula: String,
    /// The period: a date or a label (2026-10-01, 2026-10). Without it,
    /// every period with editions: its state and current edition.
    #[arg(long)]
    pub period: Option<String>,
    /// Results store folder.
    #[arg(long, default_value = "croo-results")]
    pub out: PathBuf,
    /// Compare two editions: what differs in the formula, the sources,
    /// the population statistics and the scores.
    #[arg(long, num_args = 2, value_names = ["A", "B"], requires = "period")]
    pub compare: Option<Vec<u32>>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

/// The formula's name given a file or a name.
fn name_of(formula: &str) -> Result<String, Failure> {
    let path = std::path::Path::new(formula);
    Ok(if path.is_file() {
        engine::load(path)?.formula.name().to_string()
    } else {
        formula.to_string()
    })
}

/// Every period with editions: its state, current edition, and who
/// published it when.
fn overview(a: &Args) -> Result<u8, Failure> {
    let name = name_of(&a.formula)?;
    let periods = engine::history::periods(&a.out, &name)?;
    let (cal, grain) = calendar(&a.out, periods.values().find_map(|l| l.current()));
    let now = chrono::Utc::now();
    let mut out = std::io::stdout().lock();
    let state = |p: &str, l: &engine::editions::PeriodLog| {
        engine::period::parse_date(p).map(|d| l.state(cal.end(grain, d), now))
    };
    match a.format {
        OutputFormat::Json => {
            let doc: Vec<serde_json::Value> = periods
                .iter()
                .map(|(p, l)| {
                    serde_json::json!({
                        "period": p,
                        "state": state(p, l),
                        "edition": l.current().map(|e| e.edition),
                        "final_at": l.final_at,
                        "published_at": l.current().map(|e| e.published_at.clone()),
                        "actor": l.current().map(|e| e.actor.clone()),
                    })
                })
                .collect();
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({"formula": name, "periods": doc}))
                    .unwrap_or_default()
            );
        }
        OutputFormat::Table => {
            let headers = render::headers(&[
                "period",
                "state",
                "edition",
                "published_at",
                "actor",
                "final_at",
            ]);
            let rows: Vec<Vec<String>> = periods
                .iter()
                .map(|(p, l)| {
                    let e = l.current();
                    vec![
                        p.clone(),
                        state(p, l)
                            .map(|s| s.as_str().to_string())
                            .unwrap_or_default(),
                        e.map(|e| e.edition.to_string()).unwrap_or_default(),
                        e.map(|e| e.published_at.clone()).unwrap_or_default(),
                        e.map(|e| e.actor.clone()).unwrap_or_default(),
                        l.final_at.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            let _ = writeln!(out, "{name}");
            let _ = write!(out, "{}", render::table(&headers, &rows));
        }
    }
    Ok(0)
}

/// The calendar and grain of the run that published `edition` (the
/// default calendar and months when there is none).
fn calendar(
    out: &std::path::Path,
    edition: Option<&engine::editions::Edition>,
) -> (engine::calendar::Calendar, formulas::Grain) {
    edition
        .and_then(|e| engine::store::read_manifest(out, &e.run_id).ok())
        .map_or((Default::default(), formulas::Grain::Month), |m| {
            (m.calendar(), m.grain())
        })
}

/// The formula's name and the first day of the period the arguments name.
fn resolve(a: &Args, period: &str) -> Result<(String, NaiveDate), Failure> {
    let path = std::path::Path::new(&a.formula);
    if path.is_file() {
        let loaded = engine::load(path)?;
        let (cal, grain) = (
            engine::calendar::Calendar::of(&loaded.formula.file),
            loaded.formula.file.grain,
        );
        let (first, _) = span("--period", period, &cal)?;
        return Ok((loaded.formula.name().to_string(), cal.floor(grain, first)));
    }
    // A name: the period whose editions hold that day, in the calendar of
    // the published runs.
    let current = engine::store::read_current(&a.out)?;
    let (cal, grain) = calendar(
        &a.out,
        current
            .editions
            .get(&a.formula)
            .and_then(|ps| ps.values().find_map(|l| l.current())),
    );
    let (first, _) = span("--period", period, &cal)?;
    Ok((a.formula.clone(), cal.floor(grain, first)))
}

pub fn run(a: Args) -> Result<u8, Failure> {
    let Some(p) = a.period.clone() else {
        return overview(&a);
    };
    let (name, period) = resolve(&a, &p)?;
    let mut out = std::io::stdout().lock();
    if let Some(ab) = &a.compare {
        let (x, y) = match ab.as_slice() {
            [x, y] => (*x, *y),
            _ => return Err(user("--compare takes two edition numbers")),
        };
        let c = engine::history::compare(&a.out, &name, period, x, y)?;
        match a.format {
            OutputFormat::Json => {
                let _ = writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&c).unwrap_or_default()
                );
            }
            OutputFormat::Table => {
                let _ = write!(out, "{}", compare_text(&c));
            }
        }
        return Ok(0);
    }
    let log = engine::history::log(&a.out, &name, period)?;
    let (cal, grain) = calendar(&a.out, log.current());
    let state = log.state(cal.end(grain, period), chrono::Utc::now());
    match a.format {
        OutputFormat::Json => {
            let doc = serde_json::json!({
                "formula": name,
                "period": period,
                "state": state,
                "final_at": log.final_at,
                "final_run": log.final_run,
                "editions": log.editions,
            });
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&doc).unwrap_or_default()
            );
        }
        OutputFormat::Table => {
            let headers = render::headers(&[
                "edition",
                "published_at",
                "state",
                "actor",
                "version",
                "formula_hash",
                "git",
                "run_id",
                "reason",
            ]);
            let rows: Vec<Vec<String>> = log
                .editions
                .iter()
                .map(|e| {
                    vec![
                        e.edition.to_string(),
                        e.published_at.clone(),
                        format!(
                            "{}{}",
                            e.state.as_str(),
                            if e.restated { " (restated)" } else { "" }
                        ),
                        e.actor.clone(),
                        e.version.clone(),
                        short(&e.formula_hash),
                        e.git.as_ref().map_or("-".into(), |g| {
                            format!(
                                "{}{}",
                                &g.commit[..g.commit.len().min(10)],
                                if g.dirty { " (modified)" } else { "" }
                            )
                        }),
                        e.run_id.clone(),
                        e.reason.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            let _ = writeln!(
                out,
                "{name} {period}: {}{}",
                state.as_str(),
                log.final_at
                    .as_ref()
                    .map(|t| format!(" since {t}"))
                    .unwrap_or_default()
            );
            let _ = write!(out, "{}", render::table(&headers, &rows));
        }
    }
    Ok(0)
}

fn short(hash: &str) -> String {
    let h = hash.trim_start_matches("sha256:");
    h[..h.len().min(12)].to_string()
}

fn compare_text(c: &engine::history::Comparison) -> String {
    let num = |v: Option<f64>| render::number(v, 4);
    let mut s = format!(
        "{} {}: edition {} ({}, {}) and edition {} ({}, {})\n",
        c.formula,
        c.period,
        c.a.edition,
        c.a.published_at,
        c.a.actor,
        c.b.edition,
        c.b.published_at,
        c.b.actor
    );
    if let Some(r) = &c.b.reason {
        s.push_str(&format!("reason for edition {}: {r}\n", c.b.edition));
    }
    s.push_str("\nformula: ");
    if c.formula_changed {
        s.push_str(&format!(
            "changed: version {} ({}) -> {} ({})\n",
            c.a.version,
            short(&c.a.formula_hash),
            c.b.version,
            short(&c.b.formula_hash)
        ));
        for d in &c.definitions {
            s.push_str(&format!(
                "  {} `{}`: {} -> {}\n",
                d.kind,
                d.name,
                d.old.as_deref().unwrap_or("(none)"),
                d.new.as_deref().unwrap_or("(removed)")
            ));
        }
    } else {
        s.push_str(&format!(
            "the same ({} {})\n",
            c.a.version,
            short(&c.a.formula_hash)
        ));
    }
    s.push_str(&format!(
        "engine: {}\n",
        if c.engine_changed {
            format!("{} -> {}", c.a.engine_version, c.b.engine_version)
        } else {
            format!("the same ({})", c.a.engine_version)
        }
    ));
    s.push_str("\nsources:\n");
    let headers = render::headers(&["source", "files", "rows read A", "rows read B"]);
    let rows: Vec<Vec<String>> = c
        .sources
        .iter()
        .map(|x| {
            vec![
                x.source.clone(),
                if x.files_changed { "changed" } else { "same" }.into(),
                x.rows_read.0.to_string(),
                x.rows_read.1.to_string(),
            ]
        })
        .collect();
    s.push_str(&render::table(&headers, &rows));
    if !c.population_stats.is_empty() {
        s.push_str("\npopulation statistics (n, mean, stddev, min, max):\n");
        let headers = render::headers(&["function", "expression", "A", "B"]);
        let show = |p: &Option<engine::store::PopulationStats>| {
            p.as_ref().map_or("-".into(), |p| {
                format!(
                    "{} {} {} {} {}",
                    p.n,
                    num(p.mean),
                    num(p.stddev),
                    num(p.min),
                    num(p.max)
                )
            })
        };
        let rows: Vec<Vec<String>> = c
            .population_stats
            .iter()
            .map(|p| {
                vec![
                    p.function.clone(),
                    p.expression.clone(),
                    show(&p.a),
                    show(&p.b),
                ]
            })
            .collect();
        s.push_str(&render::table(&headers, &rows));
    }
    s.push_str("\nscores:\n");
    let headers = render::headers(&["group", "A", "B", "change", "included A", "included B"]);
    let rows: Vec<Vec<String>> = c
        .scores
        .iter()
        .map(|x| {
            vec![
                render::group(x.dimension.as_deref(), x.value.as_deref()),
                num(x.a),
                num(x.b),
                num(match (x.a, x.b) {
                    (Some(a), Some(b)) => Some(b - a),
                    _ => None,
                }),
                x.included.0.map_or("-".into(), |n| n.to_string()),
                x.included.1.map_or("-".into(), |n| n.to_string()),
            ]
        })
        .collect();
    s.push_str(&render::table(&headers, &rows));
    s
}
