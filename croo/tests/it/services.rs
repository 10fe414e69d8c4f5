//! The servers some tests need (PostgreSQL, an S3-compatible store), found
//! through `CROO_TEST_*` variables or the `target/services.env` file that
//! `scripts/services start` writes.
//!
//! Without them a test says how to start them and returns, unless
//! `CROO_REQUIRE_SERVICES=1` (CI), where it fails.

use std::collections::BTreeMap;
use std::path::PathBuf;

pub struct Services {
    vars: BTreeMap<String, String>,
}

impl Services {
    pub fn var(&self, name: &str) -> String {
        self.vars
            .get(name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} is not set (see scripts/services)"))
    }
}

fn env_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/services.env")
}

fn from_file() -> BTreeMap<String, String> {
    let Ok(text) = std::fs::read_to_string(env_file()) else {
        return BTreeMap::new();
    };
    text.lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
        .collect()
}

/// The services whose variables `needed` are all set, or `None` (after
/// saying how to start them) when they are not and CI does not require
/// them.
pub fn get(what: &str, needed: &[&str]) -> Option<Services> {
    let mut vars = from_file();
    for (k, v) in std::env::vars() {
        if k.starts_with("CROO_TEST_") {
            vars.insert(k, v);
        }
    }
    let missing: Vec<&str> = needed
        .iter()
        .copied()
        .filter(|n| !vars.contains_key(*n))
        .collect();
    if missing.is_empty() {
        return Some(Services { vars });
    }
    let msg = format!(
        "{what} is not running ({} not set): start it with `scripts/services start`, then run the tests again",
        missing.join(", ")
    );
    if std::env::var("CROO_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
        panic!("{msg}");
    }
    eprintln!("SKIPPED: {msg}");
    None
}
