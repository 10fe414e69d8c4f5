//! Golden files: the exact rendering of every kind of formula error by
//! `croo check`. Each `tests/it/data/check/NAME.toml` is one mistake; its
//! rendering is in `NAME.stderr`. After a deliberate change of the
//! rendering, review and accept with `CROO_BLESS=1 cargo test -p croo`.

use std::path::Path;
use std::process::Command;

#[test]
fn every_error_kind_renders_as_recorded() {
    goldens("check", &["check"], 20);
}

/// Errors that need the sources' schemas (`croo check --schemas`): a column
/// not in the source, a type that cannot be aggregated.
#[test]
fn every_schema_error_kind_renders_as_recorded() {
    goldens("check-schemas", &["check", "--schemas"], 3);
}

fn goldens(folder: &str, args: &[&str], at_least: usize) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/data")
        .join(folder);
    let bless = std::env::var_os("CROO_BLESS").is_some();
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    names.sort();
    assert!(names.len() >= at_least, "the error kinds are missing");
    let mut failures = Vec::new();
    for toml in names {
        let file = toml.file_name().unwrap().to_string_lossy().to_string();
        let o = Command::new(env!("CARGO_BIN_EXE_croo"))
            .args(args)
            .arg(&file)
            .current_dir(&dir)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{file} must fail the check");
        let actual = String::from_utf8_lossy(&o.stderr).to_string();
        let golden = toml.with_extension("stderr");
        if bless {
            std::fs::write(&golden, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&golden).unwrap_or_default();
        if expected != actual {
            failures.push(format!("--- {}\n+++ actual\n{actual}", golden.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "renderings changed (CROO_BLESS=1 to accept):\n{}",
        failures.join("\n")
    );
    // no golden file without its formula
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "stderr") {
            assert!(
                p.with_extension("toml").exists(),
                "orphaned {}",
                p.display()
            );
        }
    }
}
