//! Experiment reports in the results store: each evaluation is written
//! once, never replaced, as `OUT/experiments/FORMULA/EXPERIMENT/ID.json`
//! (`ID` as a run id: its time, then random hex, so the names sort by
//! time); readers take the latest.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The folder of one experiment's reports.
fn folder(out: &Path, formula: &str, experiment: &str) -> Result<PathBuf> {
    let safe = |s: &str| {
        !s.is_empty()
            && s.len() <= 128
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !s.starts_with('.')
    };
    if !safe(experiment) {
        return Err(Error::User(format!(
            "experiment id `{experiment}`: letters, digits, `-`, `_` and `.` only, to be stored"
        )));
    }
    Ok(out.join("experiments").join(formula).join(experiment))
}

/// Writes `report` (as JSON); returns its path.
pub fn save(
    out: &Path,
    report: &super::Report,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<PathBuf> {
    let dir = folder(out, &report.formula, &report.experiment)?;
    std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    let id = crate::run::new_run_id(now);
    let path = dir.join(format!("{id}.json"));
    let mut v = serde_json::to_value(report).map_err(|e| Error::User(e.to_string()))?;
    if let Some(o) = v.as_object_mut() {
        o.insert("report_id".into(), id.clone().into());
        o.insert("evaluated_at".into(), now.to_rfc3339().into());
    }
    let json = serde_json::to_vec_pretty(&v).map_err(|e| Error::User(e.to_string()))?;
    crate::durable::replace_file(&path, &json, crate::durable::Access::Default)
        .map_err(Error::io(format!("writing {}", path.display())))?;
    Ok(path)
}

/// The experiments with reports of `formula`, each with its latest
/// report's id.
pub fn list(out: &Path, formula: &str) -> Result<Vec<(String, String)>> {
    let dir = out.join("experiments").join(formula);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut outl = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(id) = latest_id(&e.path()) {
            outl.push((name, id));
        }
    }
    outl.sort();
    Ok(outl)
}

fn latest_id(dir: &Path) -> Option<String> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            n.strip_suffix(".json").map(str::to_string)
        })
        .max()
}

/// The latest report of an experiment of `formula`, if any.
pub fn latest(out: &Path, formula: &str, experiment: &str) -> Result<Option<serde_json::Value>> {
    let dir = folder(out, formula, experiment)?;
    let Some(id) = latest_id(&dir) else {
        return Ok(None);
    };
    let path = dir.join(format!("{id}.json"));
    let bytes = std::fs::read(&path).map_err(Error::io(format!("reading {}", path.display())))?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::User(format!("{}: {e}", path.display())))
}
