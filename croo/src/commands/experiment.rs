//! `croo experiment`: an experiment judged by the formula's own
//! per-customer score (docs/experiments.md).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use crate::args::{OutputFormat, session_options, span};
use crate::exit::{Failure, user};
use crate::render;

#[derive(clap::Args)]
pub struct Args {
    /// The formula file.
    pub formula: PathBuf,
    /// The experiment's id in the assignments.
    #[arg(long)]
    pub experiment: String,
    /// The assignments: any source URI (a file, a folder, s3://,
    /// postgres://) with a unit key, experiment id, arm and first exposure.
    #[arg(long, value_name = "URI")]
    pub assignments: String,
    /// First period (a date or a label).
    #[arg(long)]
    pub from: String,
    /// Last period.
    #[arg(long)]
    pub to: String,
    /// The control arm.
    #[arg(long, default_value = "control")]
    pub control: String,
    /// What population functions normalise against: `control` (the control
    /// arm of each period) or `pre` (the whole cohort in the pre-period;
    /// needs --pre-from/--pre-to naming one period).
    #[arg(long, default_value = "control", value_parser = ["control", "pre"])]
    pub reference: String,
    /// The declared split, ARM=SHARE,... (default: equal).
    #[arg(long, value_delimiter = ',')]
    pub split: Vec<String>,
    /// A guardrail: in GROUP (all, or DIMENSION=VALUE) the treatment must
    /// not lower the score by more than MARGIN points (repeatable).
    #[arg(long, value_name = "GROUP=MARGIN")]
    pub guardrail: Vec<String>,
    /// The pre-period of CUPED's covariate (first period).
    #[arg(long, requires = "pre_to")]
    pub pre_from: Option<String>,
    /// The pre-period's last period.
    #[arg(long, requires = "pre_from")]
    pub pre_to: Option<String>,
    /// Also a seeded bootstrap interval of the overall lift, N resamples.
    #[arg(long, value_name = "N")]
    pub bootstrap: Option<u32>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Report even when the sample-ratio check fails (p < 0.001).
    #[arg(long)]
    pub allow_srm: bool,
    /// Column names in the assignments.
    #[arg(long, value_name = "COLUMN")]
    pub unit_column: Option<String>,
    #[arg(long, value_name = "COLUMN", default_value = "experiment")]
    pub experiment_column: String,
    #[arg(long, value_name = "COLUMN", default_value = "arm")]
    pub arm_column: String,
    #[arg(long, value_name = "COLUMN", default_value = "first_exposure")]
    pub exposure_column: String,
    #[arg(long)]
    pub threads: Option<usize>,
    /// Results store folder: the report is kept in it
    /// (experiments/FORMULA/EXPERIMENT/), for the API and the dashboard.
    #[arg(long, default_value = "croo-results")]
    pub out: PathBuf,
    /// Do not keep the report.
    #[arg(long)]
    pub no_store: bool,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

pub async fn run(a: Args) -> Result<u8, Failure> {
    let loaded = engine::load(&a.formula)?;
    let file = &loaded.formula.file;
    let cal = engine::calendar::Calendar::of(file);
    let periods = cal.range(
        file.grain,
        span("--from", &a.from, &cal)?.0,
        span("--to", &a.to, &cal)?.1,
    );
    if periods.is_empty() {
        return Err(user("--to is before --from"));
    }
    let pre_periods = match (&a.pre_from, &a.pre_to) {
        (Some(f), Some(t)) => cal.range(
            file.grain,
            span("--pre-from", f, &cal)?.0,
            span("--pre-to", t, &cal)?.1,
        ),
        _ => Vec::new(),
    };
    let mut shares = BTreeMap::new();
    for s in &a.split {
        let (arm, share) = s
            .split_once('=')
            .and_then(|(a, v)| Some((a.trim().to_string(), v.trim().parse::<f64>().ok()?)))
            .filter(|(_, v)| v.is_finite() && *v > 0.0)
            .ok_or_else(|| {
                user(format!(
                    "--split `{s}`: expected ARM=SHARE with a positive share"
                ))
            })?;
        shares.insert(arm, share);
    }
    let mut guardrails = Vec::new();
    for g in &a.guardrail {
        let (group, margin) = g
            .rsplit_once('=')
            .and_then(|(grp, m)| Some((grp, m.trim().parse::<f64>().ok()?)))
            .filter(|(_, m)| m.is_finite() && *m >= 0.0)
            .ok_or_else(|| {
                user(format!(
                    "--guardrail `{g}`: expected GROUP=MARGIN (all=0.5 or segment=enterprise=0.5)"
                ))
            })?;
        let group = match group.trim() {
            "all" => None,
            g => match g.split_once('=') {
                Some((d, v)) if file.dimensions.iter().any(|x| x.name.value == d.trim()) => {
                    Some((d.trim().to_string(), v.trim().to_string()))
                }
                Some((d, _)) => {
                    return Err(user(format!(
                        "--guardrail `{g}`: `{d}` is not a dimension of the formula"
                    )));
                }
                None => {
                    return Err(user(format!(
                        "--guardrail `{g}`: expected GROUP=MARGIN (all=0.5 or segment=enterprise=0.5)"
                    )));
                }
            },
        };
        guardrails.push((group, margin));
    }
    let base_dir = std::env::current_dir().unwrap_or_default();
    let unit = a.unit_column.clone().unwrap_or_else(|| {
        file.entity()
            .map_or_else(|| "key".into(), |e| e.key.value.clone())
    });
    let req = engine::experiment::Request {
        experiment: a.experiment.clone(),
        assignments: engine::experiment::Assignments {
            uri: a.assignments.clone(),
            base_dir,
            key: unit,
            experiment: a.experiment_column.clone(),
            arm: a.arm_column.clone(),
            time: a.exposure_column.clone(),
        },
        control: a.control.clone(),
        reference: if a.reference == "pre" {
            engine::experiment::Reference::Pre
        } else {
            engine::experiment::Reference::Control
        },
        periods,
        pre_periods,
        shares,
        guardrails,
        bootstrap: a.bootstrap.map(|n| (n, a.seed)),
        session: session_options(a.threads, None)?,
    };
    let report = engine::experiment::evaluate(&loaded, &req).await?;
    if !a.no_store {
        engine::experiment::store::save(&a.out, &report, chrono::Utc::now())?;
    }
    let mut out = std::io::stdout().lock();
    match a.format {
        OutputFormat::Json => {
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
        }
        OutputFormat::Table => {
            let _ = write!(out, "{}", text(&report));
        }
    }
    if !report.srm.valid && !a.allow_srm {
        return Err(user(format!(
            "sample ratio mismatch: {} customers per arm ({}) against the split {:?}, chi-square {:.2}, p = {:.2e} < 0.001: the report is not valid (--allow-srm to see it anyway)",
            report
                .srm
                .observed
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(" / "),
            report.srm.arms.join(" / "),
            report.srm.shares,
            report.srm.test.chi2,
            report.srm.test.p
        )));
    }
    if report.guardrail_failed() {
        let failed: Vec<String> = report
            .arms
            .iter()
            .flat_map(|r| {
                r.guardrails
                    .iter()
                    .filter(|g| g.result == "fail")
                    .map(move |g| format!("{} in {}", r.arm, g.group))
            })
            .collect();
        return Err(user(format!("guardrail failed: {}", failed.join(", "))));
    }
    Ok(0)
}

/// The report as text.
pub fn text(r: &engine::experiment::Report) -> String {
    let num = |v: f64| render::number(Some(v), 3);
    let interval =
        |l: &engine::experiment::stats::Lift| format!("[{}, {}]", num(l.lower), num(l.upper));
    let mut s = format!(
        "experiment {} of {} ({} periods), control `{}`, population functions against {}\n",
        r.experiment,
        r.formula,
        r.periods.len(),
        r.control,
        if r.reference == "pre" {
            "the pre-period"
        } else {
            "the control"
        }
    );
    s += &format!(
        "customers per arm: {}; {} left out (in more than one arm); sample ratio: chi-square {:.3}, p = {:.4} ({})\n\n",
        r.srm
            .arms
            .iter()
            .zip(&r.srm.observed)
            .map(|(a, n)| format!("{a} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        r.excluded_multiple_arms,
        r.srm.test.chi2,
        r.srm.test.p,
        if r.srm.valid { "ok" } else { "MISMATCH" }
    );
    for a in &r.arms {
        let l = &a.overall.lift;
        let mut rows = vec![vec![
            "score".to_string(),
            num(l.control),
            num(l.treatment),
            num(l.absolute),
            interval(l),
            format!("{:.2}%", 100.0 * l.relative),
            format!("{:.4}", l.p),
        ]];
        if let Some(c) = &a.cuped {
            rows.push(vec![
                format!(
                    "score, CUPED (variance -{:.0}%)",
                    100.0 * c.variance_reduction
                ),
                num(c.lift.control),
                num(c.lift.treatment),
                num(c.lift.absolute),
                interval(&c.lift),
                format!("{:.2}%", 100.0 * c.lift.relative),
                format!("{:.4}", c.lift.p),
            ]);
        }
        for c in &a.components {
            let l = c.contribution.as_ref().unwrap_or(&c.comparison.lift);
            rows.push(vec![
                format!(
                    "{} ({})",
                    c.component,
                    if c.contribution.is_some() {
                        "contribution"
                    } else {
                        "rollup"
                    }
                ),
                num(l.control),
                num(l.treatment),
                num(l.absolute),
                interval(l),
                format!("{:.2}%", 100.0 * l.relative),
                format!("{:.4}", c.comparison.lift.p),
            ]);
        }
        s += &format!(
            "{} vs {} ({} vs {} customers)\n",
            a.arm, r.control, a.overall.treatment_customers, a.overall.control_customers
        );
        s += &render::table(
            &render::headers(&[
                "",
                "control",
                "treatment",
                "lift",
                "95% interval",
                "relative",
                "p",
            ]),
            &rows,
        );
        if let Some(b) = &a.bootstrap {
            s += &format!(
                "bootstrap ({} resamples, seed {}): [{}, {}]\n",
                b.resamples,
                b.seed,
                num(b.lower),
                num(b.upper)
            );
        }
        if !a.groups.is_empty() {
            let rows: Vec<Vec<String>> = a
                .groups
                .iter()
                .map(|g| {
                    let l = &g.comparison.lift;
                    vec![
                        format!("{}={}", g.dimension, g.value),
                        num(l.absolute),
                        interval(l),
                        format!("{:.4}", l.p),
                        format!("{:.4}", g.p_holm),
                        if g.significant { "yes" } else { "no" }.to_string(),
                    ]
                })
                .collect();
            s += "\n";
            s += &render::table(
                &render::headers(&[
                    "group",
                    "lift",
                    "95% interval",
                    "p",
                    "p (Holm)",
                    "significant",
                ]),
                &rows,
            );
        }
        for g in &a.guardrails {
            s += &format!(
                "guardrail {} (no more than -{}): {} {}\n",
                g.group,
                g.margin,
                g.result.to_uppercase(),
                match (g.lower, g.upper) {
                    (Some(lo), Some(hi)) => format!("[{}, {}]", num(lo), num(hi)),
                    _ => "(no customers)".into(),
                }
            );
        }
        s += "\n";
    }
    s
}
