//! `croo status`: each group's status against its targets, for the
//! published numbers of a period (the current editions in the store).

use std::io::Write;
use std::path::PathBuf;

use crate::args::{OutputFormat, span};
use crate::exit::{Failure, user};
use crate::render;

#[derive(clap::Args)]
pub struct Args {
    /// The formula file (its targets: NAME.targets.toml beside it, or
    /// --targets).
    pub formula: PathBuf,
    /// The period: a date or a label (2026-10-01, 2026-10, FY2027-Q1); a
    /// label spanning several periods gives each one's.
    #[arg(long)]
    pub period: String,
    /// The targets file.
    #[arg(long, value_name = "FILE")]
    pub targets: Option<PathBuf>,
    /// Results store folder.
    #[arg(long, default_value = "croo-results")]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

pub fn run(a: Args) -> Result<u8, Failure> {
    let loaded = engine::load(&a.formula)?;
    let file = &loaded.formula.file;
    let Some(targets) = crate::args::targets(a.targets.as_deref(), &a.formula, file)? else {
        return Err(user(format!(
            "no targets for {}: write {} or give --targets FILE",
            a.formula.display(),
            engine::targets::beside(&a.formula).display()
        )));
    };
    let cal = engine::calendar::Calendar::of(file);
    let (first, last) = span("--period", &a.period, &cal)?;
    let periods = cal.range(file.grain, first, last);
    let name = loaded.formula.name();
    let current = engine::store::read_current(&a.out)?;
    let mut rows = Vec::new();
    for p in &periods {
        let Some(run) = current
            .formulas
            .get(name)
            .and_then(|m| m.get(&p.to_string()))
        else {
            return Err(user(format!(
                "`{name}` has no published numbers for {p} in {}: run it first",
                a.out.display()
            )));
        };
        rows.extend(
            engine::store::read_results(&a.out, run)?
                .into_iter()
                .filter(|r| r.period == *p),
        );
    }
    let statuses = targets.evaluate(&rows);
    let mut out = std::io::stdout().lock();
    match a.format {
        OutputFormat::Json => {
            let groups: Vec<serde_json::Value> = statuses
                .iter()
                .map(|s| {
                    let mut v = serde_json::to_value(s).unwrap_or_default();
                    if let Some(o) = v.as_object_mut()
                        && let Some(l) = cal.label(file.grain, s.period)
                    {
                        o.insert("period_label".into(), l.into());
                    }
                    v
                })
                .collect();
            let doc = serde_json::json!({
                "formula": name,
                "targets": targets.path.display().to_string(),
                "targets_version": targets.version,
                "targets_digest": targets.digest,
                "groups": groups,
            });
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&doc).unwrap_or_default()
            );
        }
        OutputFormat::Table => {
            let headers = render::headers(&[
                "period",
                "group",
                "status",
                "for",
                "actual",
                "target",
                "baseline",
                "achievement",
                "item status",
            ]);
            let num = |v: Option<f64>| render::number(v, 2);
            let mut table = Vec::new();
            for s in &statuses {
                let group = render::group(s.dimension.as_deref(), s.value.as_deref());
                let period = cal
                    .label(file.grain, s.period)
                    .unwrap_or_else(|| s.period.to_string());
                if s.items.is_empty() {
                    table.push(vec![period, group, "-".into(), "(no target)".into()]);
                    continue;
                }
                for i in &s.items {
                    table.push(vec![
                        period.clone(),
                        group.clone(),
                        s.status.clone().unwrap_or_default(),
                        i.item.clone(),
                        num(i.actual),
                        num(Some(i.target)),
                        num(Some(i.baseline)),
                        num(i.achievement),
                        i.status.clone(),
                    ]);
                }
            }
            let _ = write!(out, "{}", render::table(&headers, &table));
            let _ = writeln!(
                out,
                "\ntargets {} (version {})",
                targets.path.display(),
                targets.version
            );
        }
    }
    Ok(0)
}
