//! `croo test`: the `[[tests]]` of formula files, a pass/fail line each and
//! what differs on failure.

use std::io::Write;
use std::path::PathBuf;

use crate::exit::Failure;

#[derive(clap::Args)]
pub struct Args {
    #[arg(required = true)]
    pub formulas: Vec<PathBuf>,
}

pub async fn run(a: Args) -> Result<u8, Failure> {
    let (mut passed, mut failed) = (0usize, 0usize);
    let mut out = std::io::stdout().lock();
    for path in &a.formulas {
        let loaded = engine::load(path)?;
        if loaded.formula.file.tests.is_empty() {
            let _ = writeln!(out, "{}: no [[tests]]", path.display());
            continue;
        }
        let outcomes = engine::formula_tests::run_tests(&loaded).await?;
        for o in outcomes {
            if o.passed() {
                passed += 1;
                let _ = writeln!(out, "PASS {}: {}", path.display(), o.name);
                continue;
            }
            failed += 1;
            let _ = writeln!(out, "FAIL {}: {}", path.display(), o.name);
            if let Some(e) = &o.error {
                let _ = writeln!(out, "     error: {e}");
            }
            for c in o.checks.iter().filter(|c| !c.passed) {
                let actual = c
                    .actual
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| "NULL".into());
                let expected = c
                    .expected
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| "NULL".into());
                let _ = writeln!(out, "     {}: expected {expected}, got {actual}", c.key);
            }
        }
    }
    let _ = writeln!(out, "\n{passed} passed, {failed} failed");
    Ok(if failed > 0 { 1 } else { 0 })
}
