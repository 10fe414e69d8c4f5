//! `croo check`: every error of formula files with file:line:col and a
//! caret, and every column checked against the sources it can reach.

use std::path::PathBuf;

use engine::{Error, Reach};

use crate::args::OutputFormat;
use crate::exit::{Failure, color};
use crate::render;

#[derive(clap::Args)]
pub struct Args {
    /// Formula files, or folders of them (their `*.toml` files, as
    /// `croo serve --formulas` reads them).
    #[arg(required = true)]
    pub formulas: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    /// Also read remote sources (PostgreSQL, object stores) and check every
    /// column against them; a source that cannot be read is an error.
    /// Local files that exist are always checked.
    #[arg(long, conflicts_with = "offline")]
    pub schemas: bool,
    /// Read no source at all: check the formula files alone.
    #[arg(long)]
    pub offline: bool,
}

pub async fn run(a: Args) -> Result<u8, Failure> {
    let reach = match (a.schemas, a.offline) {
        (_, true) => None,
        (true, false) => Some(Reach::All),
        (false, false) => Some(Reach::Local),
    };
    let mut errors = 0usize;
    let mut records = Vec::new();
    let mut text = String::new();
    let mut paths = Vec::new();
    for path in &a.formulas {
        if path.is_dir() {
            let files = engine::folder::formula_files(path).map_err(|e| {
                crate::exit::user(format!("cannot read the folder {}: {e}", path.display()))
            })?;
            if files.is_empty() {
                return Err(crate::exit::user(format!(
                    "the folder {} has no formula files (*.toml)",
                    path.display()
                )));
            }
            paths.extend(files);
        } else {
            paths.push(path.clone());
        }
    }
    let mut all_loaded = Vec::new();
    for path in &paths {
        let result = match engine::load(path) {
            Ok(loaded) => {
                all_loaded.push(loaded.clone());
                let mut diags = loaded.warnings.clone();
                let mut err = None;
                if let Some(reach) = reach {
                    match engine::check_sources(&loaded, reach).await {
                        Ok(d) => diags.extend(d),
                        Err(e) => err = Some(e),
                    }
                }
                diags.sort_by_key(|d| (d.span.start, d.span.end));
                Ok((loaded.file, diags, err))
            }
            Err(Error::Formula { file, diagnostics }) => Ok((*file, diagnostics, None)),
            Err(e) => Err(e),
        };
        match result {
            Ok((file, diags, err)) => {
                for d in &diags {
                    if d.is_error() {
                        errors += 1;
                    }
                    records.push(render::diagnostic_json(&file, d));
                    text.push_str(&render::diagnostic(&file, d, color()));
                    text.push('\n');
                }
                if let Some(e) = err {
                    errors += 1;
                    records.push(serde_json::json!({"file": file.path, "severity": "error", "code": "croo::source", "message": e.to_string()}));
                    text.push_str(&format!("error: {e}\n"));
                }
            }
            Err(e) => {
                errors += 1;
                records.push(serde_json::json!({"file": path.display().to_string(), "severity": "error", "code": "croo::io", "message": e.to_string()}));
                text.push_str(&format!("error: {e}\n"));
            }
        }
    }
    // One name, one formula (as `croo serve` requires of its folder).
    for clash in engine::folder::clashes(&all_loaded) {
        errors += 1;
        let (first, line, _) = &clash.files[0];
        records.push(serde_json::json!({"file": first.display().to_string(), "line": line, "severity": "error", "code": "croo::name-clash", "message": clash.to_string()}));
        text.push_str(&format!("error[croo::name-clash]: {clash}\n"));
    }
    match a.format {
        OutputFormat::Json => {
            let doc = serde_json::json!({"errors": errors, "diagnostics": records});
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        }
        OutputFormat::Table => {
            eprint!("{text}");
            if errors == 0 {
                println!("{} formula file(s) OK", paths.len());
            } else {
                eprintln!("{errors} error(s)");
            }
        }
    }
    Ok(if errors > 0 { 1 } else { 0 })
}
