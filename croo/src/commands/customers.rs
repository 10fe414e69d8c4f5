//! `croo customers`: the customers behind a published number, from the
//! per-customer detail of the store (`croo run --detail`): a page of one
//! period's customers of a group, sorted by score, a component's
//! contribution or change since the previous period, or (`--key`) one
//! customer over time.

use std::io::Write;
use std::path::PathBuf;

use chrono::NaiveDate;

use crate::args::{OutputFormat, span};
use crate::exit::{Failure, user};
use crate::render;

#[derive(clap::Args)]
pub struct Args {
    /// The formula file.
    pub formula: PathBuf,
    /// The period (a date or a label); with --key, the periods.
    #[arg(long)]
    pub period: String,
    /// One group, DIMENSION=VALUE.
    #[arg(long)]
    pub group: Option<String>,
    /// score, change (since the previous period) or contribution.COMPONENT;
    /// lowest first, `-` in front for highest first (`--sort=-score`).
    #[arg(long, default_value = "score", allow_hyphen_values = true)]
    pub sort: String,
    /// Customers to show.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Customers to skip.
    #[arg(long, default_value_t = 0)]
    pub offset: usize,
    /// One customer: its rows in the periods of --period.
    #[arg(long)]
    pub key: Option<String>,
    /// Results store folder.
    #[arg(long, default_value = "croo-results")]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

pub async fn run(a: Args) -> Result<u8, Failure> {
    let loaded = engine::load(&a.formula)?;
    let file = &loaded.formula.file;
    let name = loaded.formula.name();
    let cal = engine::calendar::Calendar::of(file);
    let (first, last) = span("--period", &a.period, &cal)?;
    let current = engine::store::read_current(&a.out)?;
    // The run holding the detail of each period's current edition.
    let run_of = |p: NaiveDate| -> Option<String> {
        let key = p.to_string();
        let run = current.formulas.get(name)?.get(&key)?;
        Some(
            current
                .log(name, &key)
                .and_then(|l| l.current())
                .map_or(run.as_str(), |e| e.detail_run().unwrap_or(&e.run_id))
                .to_string(),
        )
    };
    let mut out = std::io::stdout().lock();
    if let Some(key) = &a.key {
        let mut rows = Vec::new();
        for p in cal.range(file.grain, first, last) {
            if let Some(run) = run_of(p) {
                rows.extend(engine::customers::read_customer(&a.out, &run, key, &[p]).await?);
            }
        }
        if rows.is_empty() {
            return Err(user(format!(
                "no customer `{key}` of `{name}` in {} (published with --detail?)",
                a.period
            )));
        }
        match a.format {
            OutputFormat::Json => {
                let doc = serde_json::json!({ "formula": name, "key": key, "periods": rows });
                let _ = writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&doc).unwrap_or_default()
                );
            }
            OutputFormat::Table => {
                let mut headers = render::headers(&["period", "score", "included"]);
                let first = &rows[0];
                headers.extend(first.dimensions.keys().cloned());
                headers.extend(first.measures.keys().cloned());
                headers.extend(first.derived.keys().cloned());
                headers.extend(first.components.keys().cloned());
                let num = |v: Option<f64>| render::number(v, 4);
                let table: Vec<Vec<String>> = rows
                    .iter()
                    .map(|r| {
                        let mut row =
                            vec![r.period.to_string(), num(r.score), r.included.to_string()];
                        row.extend(r.dimensions.values().map(|v| v.clone().unwrap_or_default()));
                        row.extend(r.measures.values().map(|v| num(*v)));
                        row.extend(r.derived.values().map(|v| num(*v)));
                        row.extend(r.components.values().map(|c| num(c.value)));
                        row
                    })
                    .collect();
                let _ = write!(out, "{}", render::table(&headers, &table));
            }
        }
        return Ok(0);
    }
    let p = cal.floor(file.grain, first);
    if cal.floor(file.grain, last) != p {
        return Err(user(format!(
            "--period `{}` spans several periods; name one (or use --key)",
            a.period
        )));
    }
    let sort = engine::customers::Sort::parse(&a.sort).ok_or_else(|| {
        user(format!(
            "--sort `{}`: expected score, change or contribution.COMPONENT (with - for highest first)",
            a.sort
        ))
    })?;
    let group = match &a.group {
        Some(g) => {
            let (d, v) = g
                .split_once('=')
                .ok_or_else(|| user(format!("--group `{g}`: expected DIMENSION=VALUE")))?;
            if !file.dimensions.iter().any(|x| x.name.value == d) {
                return Err(user(format!(
                    "--group `{g}`: `{d}` is not a dimension of `{name}`"
                )));
            }
            Some((d, v))
        }
        None => None,
    };
    let Some(run) = run_of(p) else {
        return Err(user(format!(
            "`{name}` has no published numbers for {p} in {}",
            a.out.display()
        )));
    };
    let table = engine::customers::read_period(&a.out, &run, p).await?;
    let before = cal.floor(file.grain, p.pred_opt().unwrap_or(p));
    let previous = match (&sort, run_of(before)) {
        (engine::customers::Sort::Change { .. }, Some(r)) if before != p => {
            Some(engine::customers::read_period(&a.out, &r, before).await?)
        }
        _ => None,
    };
    let order = table.order(&sort, previous.as_ref())?;
    let page = table.page(&order, group, None, a.offset, a.limit);
    match a.format {
        OutputFormat::Json => {
            let doc = serde_json::json!({
                "formula": name, "period": p, "run_id": run, "group": a.group,
                "sort": a.sort, "total": page.total, "customers": page.customers,
            });
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&doc).unwrap_or_default()
            );
        }
        OutputFormat::Table => {
            let mut headers = render::headers(&["key", "score", "change", "included"]);
            let comps: Vec<String> = file
                .components
                .iter()
                .map(|c| c.name.value.clone())
                .collect();
            headers.extend(comps.iter().map(|c| format!("{c} (contribution)")));
            let num = |v: Option<f64>| render::number(v, 2);
            let rows: Vec<Vec<String>> = page
                .customers
                .iter()
                .map(|c| {
                    let mut row = vec![
                        c.key.clone(),
                        num(c.score),
                        num(c.change),
                        c.included.to_string(),
                    ];
                    row.extend(comps.iter().map(|n| {
                        num(c.components.get(n).and_then(|v| v.contribution.or(v.value)))
                    }));
                    row
                })
                .collect();
            let _ = write!(out, "{}", render::table(&headers, &rows));
            let _ = writeln!(
                out,
                "\n{} of {} customers{} in {p}, sorted by {}",
                page.customers.len(),
                page.total,
                a.group
                    .as_deref()
                    .map(|g| format!(" of {g}"))
                    .unwrap_or_default(),
                a.sort
            );
        }
    }
    Ok(0)
}
