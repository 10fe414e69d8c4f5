//! `croo explain`: what each component contributes to a period's score,
//! what moved it since another period (per component, and mix and within
//! over a dimension), and how robust the scores and ranks are to the
//! component weights and the method's declared alternatives
//! (`engine::uncertainty`).

use std::io::Write;
use std::path::PathBuf;

use engine::ScoreOptions;

use crate::args::{OutputFormat, one_period};
use crate::exit::{Failure, user};
use crate::render;

#[derive(clap::Args)]
pub struct Args {
    pub formula: PathBuf,
    /// The period to explain: any date inside it, or its label (2026-11,
    /// 2026-Q4, 2026-W45, 2026).
    #[arg(long)]
    pub period: String,
    /// The period to compare with: a date or label, or `last-year` (the
    /// same period of the year before) (default: the one before --period, as
    /// the API).
    #[arg(long)]
    pub compare: Option<String>,
    /// Split the change into within-group and mix effects over this dimension.
    #[arg(long)]
    pub by: Option<String>,
    /// Re-score the period N times, drawing the component weights around
    /// their nominal values and each declared alternative (normalisation,
    /// imputation, winsorisation, aggregation method).
    #[arg(long, value_name = "N")]
    pub uncertainty: Option<usize>,
    /// Seed of the draws (the same seed gives the same figures).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Each weight is drawn within +-SPREAD of its nominal value (0.2 = 20%).
    #[arg(long, default_value_t = 0.2)]
    pub spread: f64,
    /// With --uncertainty, also each customer's rank interval.
    #[arg(long)]
    pub detail: bool,
    /// With --uncertainty, write every draw (choices, each group's score
    /// and rank) to this CSV file.
    #[arg(long, value_name = "FILE")]
    pub draws: Option<PathBuf>,
    /// Threads (default: all cores); the figures are the same for any.
    #[arg(long)]
    pub threads: Option<usize>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

pub async fn run(a: Args) -> Result<u8, Failure> {
    let (path, period, compare, by, format) = (
        a.formula.as_path(),
        a.period.as_str(),
        a.compare.as_deref(),
        a.by.as_deref(),
        a.format,
    );
    let uncertainty = a.uncertainty.map(|n| (n, a.seed, a.spread));
    if let Some((n, _, spread)) = uncertainty
        && (n == 0 || n > 1_000_000 || !(0.0..1.0).contains(&spread))
    {
        return Err(user(
            "--uncertainty takes 1 to 1000000 draws and --spread a number in [0, 1)",
        ));
    }
    if uncertainty.is_none() && (a.detail || a.draws.is_some()) {
        return Err(user(
            "--detail and --draws describe an --uncertainty analysis: add --uncertainty N",
        ));
    }
    let session = crate::args::session_options(a.threads, None)?;
    let loaded = engine::load(path)?;
    let grain = loaded.formula.file.grain;
    let cal = engine::calendar::Calendar::of(&loaded.formula.file);
    let p = one_period("--period", period, (&cal, grain))?;
    // The period before, unless another is named (as the API does).
    let explicit = compare.is_some();
    let mut c = match compare {
        Some(c) if c.trim() == engine::period::LAST_YEAR => {
            Some(cal.last_year(grain, p).ok_or_else(|| {
                crate::exit::user(format!(
                    "--compare last-year: {p} has no counterpart in the year before (a week 53, or 29 February): name the period to compare with"
                ))
            })?)
        }
        Some(c) => Some(one_period("--compare", c, (&cal, grain))?),
        None => p
            .pred_opt()
            .map(|d| cal.floor(grain, d))
            .filter(|d| *d != p),
    };
    if let Some(d) = by
        && !loaded
            .formula
            .file
            .dimensions
            .iter()
            .any(|x| x.name.value == d)
    {
        let known: Vec<&str> = loaded
            .formula
            .file
            .dimensions
            .iter()
            .map(|x| x.name.value.as_str())
            .collect();
        return Err(user(format!(
            "--by `{d}` is not a dimension of the formula (dimensions: {})",
            known.join(", ")
        )));
    }
    let mut periods = vec![p];
    periods.extend(c);
    periods.sort();
    periods.dedup();
    let options = ScoreOptions {
        session: session.clone(),
        ..ScoreOptions::default()
    };
    let computed = match engine::score(&loaded, &periods, &options).await {
        Ok(computed) => computed,
        // The default comparison cannot be scored (no data before, say):
        // the period alone, and a note saying why.
        Err(e) if !explicit && c.is_some() => {
            if let Some(before) = c.take() {
                eprintln!("note: no comparison with {before}: {e}");
            }
            engine::score(&loaded, &[p], &options).await?
        }
        Err(e) => return Err(e.into()),
    };
    let e = engine::explain::explain(&computed.rows, p, c, by);
    let by_index = by.and_then(|d| {
        loaded
            .formula
            .file
            .dimensions
            .iter()
            .position(|x| x.name.value == d)
    });
    let u = match uncertainty {
        Some((n, seed, spread)) => {
            let threads = a.threads.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
            });
            let opts = engine::uncertainty::Options {
                period: p,
                by: by_index,
                draws: n,
                seed,
                spread,
                detail: a.detail,
                threads,
                session,
            };
            let u = engine::uncertainty::analyse(&loaded, &opts).await?;
            if let Some(file) = &a.draws {
                std::fs::write(file, u.record.csv()).map_err(|e| {
                    user(format!("cannot write the draws to {}: {e}", file.display()))
                })?;
            }
            Some(u)
        }
        None => None,
    };
    // With --by, why customers of each of its groups were excluded.
    let by_groups: std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>> =
        match by {
            Some(d) => computed
                .group_exclusions
                .get(&p)
                .map(|g| {
                    g.iter()
                        .filter_map(|(name, causes)| {
                            let value = name.strip_prefix(d)?.strip_prefix('=')?;
                            Some((value.to_string(), causes.clone()))
                        })
                        .collect()
                })
                .unwrap_or_default(),
            None => Default::default(),
        };
    let mut out = std::io::stdout().lock();
    if format == OutputFormat::Json {
        let mut doc = serde_json::to_value(&e).unwrap_or_default();
        doc["exclusions"] =
            serde_json::to_value(computed.exclusions.get(&p).cloned().unwrap_or_default())
                .unwrap_or_default();
        if by.is_some() {
            doc["group_exclusions"] = serde_json::to_value(&by_groups).unwrap_or_default();
        }
        if let Some(u) = &u {
            doc["uncertainty"] = serde_json::to_value(u).unwrap_or_default();
        }
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        );
        return Ok(0);
    }
    let num = |v: Option<f64>| render::number(v, 4);
    let _ = writeln!(
        out,
        "{} {}: score {} in {p}",
        loaded.formula.name(),
        loaded.formula.file.version.value,
        num(e.score)
    );
    if let Some(c) = c {
        let _ = writeln!(
            out,
            "was {} in {c}; change {}",
            num(e.score_before),
            num(e.change)
        );
    }
    // The JSON's names: `before` and `after` are contributions.
    let headers = render::headers(&["component", "before", "after", "change"]);
    let rows: Vec<Vec<String>> = e
        .components
        .iter()
        .map(|x| {
            vec![
                x.component.clone(),
                num(x.before),
                num(x.after),
                num(x.change),
            ]
        })
        .collect();
    let _ = write!(out, "\n{}", render::table(&headers, &rows));
    if let Some(causes) = computed.exclusions.get(&p) {
        let _ = writeln!(
            out,
            "excluded in {}",
            engine::exclusions::describe(p, causes)
        );
    }
    if let Some(d) = by {
        for (value, causes) in &by_groups {
            let _ = writeln!(
                out,
                "  of them in {d}={value}: {}",
                engine::exclusions::describe(p, causes)
                    .split_once(": ")
                    .map_or("", |x| x.1)
            );
        }
    }
    // Shift-share needs a comparison.
    if let (Some(d), Some(_)) = (&e.by, c) {
        let headers = render::headers(&[
            d.as_str(),
            "share before",
            "share after",
            "score before",
            "score after",
            "mix",
            "within",
        ]);
        let rows: Vec<Vec<String>> = e
            .groups
            .iter()
            .map(|g| {
                vec![
                    g.value.clone().unwrap_or_else(|| "(null)".into()),
                    num(Some(g.share_before)),
                    num(Some(g.share_after)),
                    num(g.score_before),
                    num(g.score_after),
                    num(Some(g.mix)),
                    num(Some(g.within)),
                ]
            })
            .collect();
        let _ = write!(out, "\n{}", render::table(&headers, &rows));
        let _ = writeln!(
            out,
            "\nmix {} + within {} = change {}",
            num(e.mix_total),
            num(e.within_total),
            num(e.change)
        );
    }
    if let Some(u) = &u {
        uncertainty_table(&mut out, u, by.is_some());
    }
    Ok(0)
}

/// The uncertainty analysis as tables: what varied, each group's score
/// and rank intervals, the sensitivity indices, and with --detail the
/// customers whose rank moves most.
fn uncertainty_table(out: &mut impl Write, u: &engine::uncertainty::Uncertainty, by: bool) {
    let num = |v: Option<f64>| render::number(v, 4);
    let varied: Vec<String> = u
        .factors
        .iter()
        .filter(|f| !f.name.starts_with("weight."))
        .map(|f| format!("{} ({})", f.name, f.levels.join(", ")))
        .collect();
    let _ = writeln!(
        out,
        "\nuncertainty: {} draws (seed {}), weights within +-{}%{}",
        u.draws,
        u.seed,
        u.spread * 100.0,
        if varied.is_empty() {
            String::new()
        } else {
            format!("; {}", varied.join("; "))
        }
    );
    let headers = render::headers(&[
        "group",
        "nominal",
        "median",
        "5%",
        "95%",
        "rank",
        "median rank",
        "rank 5%",
        "rank 95%",
    ]);
    let rows: Vec<Vec<String>> = u
        .groups
        .iter()
        .map(|g| {
            let all = if by { "(null)" } else { "all" };
            vec![
                g.value.clone().unwrap_or_else(|| all.into()),
                num(g.nominal),
                num(g.median),
                num(g.p05),
                num(g.p95),
                g.rank_nominal
                    .map(|r| r.to_string())
                    .unwrap_or_else(|| "-".into()),
                num(g.rank_median),
                num(g.rank_p05),
                num(g.rank_p95),
            ]
        })
        .collect();
    let _ = write!(out, "{}", render::table(&headers, &rows));
    let headers = render::headers(&[
        "choice",
        "rank variance explained",
        "score variance explained",
    ]);
    let rows: Vec<Vec<String>> = u
        .sensitivity
        .iter()
        .map(|s| {
            vec![
                s.factor.clone(),
                num(s.first_order),
                num(s.score_first_order),
            ]
        })
        .collect();
    let _ = write!(
        out,
        "\nwhich choice the ranking rests on (first-order sensitivity indices):\n{}",
        render::table(&headers, &rows)
    );
    if !u.customers.is_empty() {
        const SHOWN: usize = 20;
        let mut c: Vec<&engine::uncertainty::CustomerUncertainty> = u.customers.iter().collect();
        let width = |x: &engine::uncertainty::CustomerUncertainty| {
            x.rank_p95.unwrap_or(0.0) - x.rank_p05.unwrap_or(0.0)
        };
        c.sort_by(|a, b| width(b).total_cmp(&width(a)).then(a.key.cmp(&b.key)));
        let headers = render::headers(&[
            "customer",
            "score",
            "rank",
            "median rank",
            "rank 5%",
            "rank 95%",
        ]);
        let rows: Vec<Vec<String>> = c
            .iter()
            .take(SHOWN)
            .map(|x| {
                vec![
                    x.key.clone(),
                    num(x.nominal),
                    x.rank_nominal
                        .map(|r| r.to_string())
                        .unwrap_or_else(|| "-".into()),
                    num(x.rank_median),
                    num(x.rank_p05),
                    num(x.rank_p95),
                ]
            })
            .collect();
        let _ = write!(
            out,
            "\ncustomers whose rank moves most ({} of {}; all with --format json):\n{}",
            rows.len(),
            u.customers.len(),
            render::table(&headers, &rows)
        );
    }
}
