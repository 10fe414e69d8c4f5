//! `croo inspect`: a formula's components and measures in one period, their
//! correlations and effective weights (docs/methods.md).

use std::io::Write;
use std::path::PathBuf;

use crate::args::{OutputFormat, one_period, session_options};
use crate::exit::Failure;
use crate::render;

#[derive(clap::Args)]
pub struct Args {
    /// The formula file.
    pub formula: PathBuf,
    /// The period (a date or a label).
    #[arg(long)]
    pub period: String,
    /// Also write an SVG heatmap of the components' Pearson correlations.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    #[arg(long)]
    pub threads: Option<usize>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

pub async fn run(a: Args) -> Result<u8, Failure> {
    let loaded = engine::load(&a.formula)?;
    let file = &loaded.formula.file;
    let cal = engine::calendar::Calendar::of(file);
    let p = one_period("--period", &a.period, (&cal, file.grain))?;
    let r = engine::inspect::inspect(&loaded, p, session_options(a.threads, None)?).await?;
    if let Some(path) = &a.svg {
        let svg = engine::inspect::heatmap_svg(
            &r.components,
            &r.pearson,
            &format!("{}: Pearson correlations of the components, {p}", r.formula),
        );
        std::fs::write(path, svg)
            .map_err(|e| crate::exit::user(format!("cannot write {}: {e}", path.display())))?;
    }
    let mut out = std::io::stdout().lock();
    match a.format {
        OutputFormat::Json => {
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&r).unwrap_or_default()
            );
        }
        OutputFormat::Table => {
            let num = |v: Option<f64>| render::number(v, 3);
            let rows: Vec<Vec<String>> = r
                .describe
                .iter()
                .map(|d| {
                    vec![
                        format!("{} ({})", d.name, d.kind),
                        d.n.to_string(),
                        format!("{:.1}%", 100.0 * d.missing),
                        num(d.min),
                        num(d.p5),
                        num(d.median),
                        num(d.p95),
                        num(d.max),
                        num(d.skewness),
                        num(d.kurtosis),
                    ]
                })
                .collect();
            let _ = write!(
                out,
                "{}",
                render::table(
                    &render::headers(&[
                        "", "n", "missing", "min", "p5", "median", "p95", "max", "skewness",
                        "kurtosis"
                    ]),
                    &rows
                )
            );
            let mut headers = render::headers(&["pearson"]);
            headers.extend(r.components.iter().cloned());
            let rows: Vec<Vec<String>> = r
                .components
                .iter()
                .zip(&r.pearson)
                .map(|(n, row)| {
                    let mut v = vec![n.clone()];
                    v.extend(row.iter().map(|x| num(*x)));
                    v
                })
                .collect();
            let _ = write!(out, "\n{}", render::table(&headers, &rows));
            let rows: Vec<Vec<String>> = r
                .weights
                .iter()
                .map(|w| {
                    vec![
                        w.component.clone(),
                        num(Some(w.nominal_weight)),
                        num(w.effective_weight),
                        num(w.pearson_with_score),
                        num(w.spearman_with_score),
                    ]
                })
                .collect();
            let _ = write!(
                out,
                "\n{}",
                render::table(
                    &render::headers(&[
                        "component",
                        "weight",
                        "effective weight",
                        "pearson with score",
                        "spearman with score"
                    ]),
                    &rows
                )
            );
            for w in &r.warnings {
                let _ = writeln!(out, "warning: {w}");
            }
        }
    }
    Ok(0)
}
