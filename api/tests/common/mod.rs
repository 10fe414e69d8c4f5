//! What the API tests share: a real server on loopback, and the steps
//! that set one up (a case's files, a run, keys). Each test binary uses
//! some of them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use api::keys::{KeysFile, Role, parse_scope};

/// Serves `config` on its own thread and Tokio runtime (the tests run
/// inside another runtime); returns the base URL once it listens.
pub fn serve(config: api::Config) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(api::serve(config, move |addr| tx.send(addr).unwrap()))
            .unwrap();
    });
    format!(
        "http://{}",
        rx.recv_timeout(Duration::from_secs(30)).unwrap()
    )
}

/// A server over `results` and `formulas`, with a keys file (`None`:
/// no keys, on loopback only), default limits, no schedules or alerts.
pub fn config(results: &Path, formulas: Option<&Path>, keys: Option<&Path>) -> api::Config {
    api::Config {
        results: results.to_path_buf(),
        formulas: formulas.map(Path::to_path_buf),
        keys: keys.map(Path::to_path_buf),
        bind: "127.0.0.1:0".parse().unwrap(),
        insecure: keys.is_none(),
        session: engine::SessionOptions::default(),
        request_timeout: Duration::from_secs(30),
        limits: api::guard::Limits::default(),
        schedules: Vec::new(),
        alerts: Vec::new(),
    }
}

/// A fresh folder with a `formulas` folder holding `files` of the case
/// `croo/tests/it/data/NAME`; returns (folder, formulas folder).
pub fn case(name: &str, files: &[&str]) -> (PathBuf, PathBuf) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../croo/tests/it/data")
        .join(name);
    let dir = tempfile::tempdir().unwrap().keep();
    let formulas = dir.join("formulas");
    std::fs::create_dir_all(&formulas).unwrap();
    for f in files {
        std::fs::copy(from.join(f), formulas.join(f)).unwrap();
    }
    (dir, formulas)
}

/// Runs the formula at `formula` over `[from, to]` (first days) into
/// `results`.
pub async fn run(formula: &Path, results: &Path, (from, to): (&str, &str), detail: bool) {
    let loaded = engine::load(formula).unwrap();
    let day = |s: &str| engine::period::parse_date(s).unwrap();
    engine::run(
        &loaded,
        &engine::RunRequest {
            periods: engine::PeriodChoice::Range(day(from), day(to)),
            out: results.to_path_buf(),
            detail,
            session: engine::SessionOptions::default(),
            publishing: engine::Publishing::default(),
        },
        &chrono::Utc::now,
    )
    .await
    .unwrap();
}

/// A keys file in `dir` with one unscoped key of `role`; returns its path
/// and the key.
pub fn one_key(dir: &Path, name: &str, role: Role) -> (PathBuf, String) {
    let path = dir.join("keys.json");
    let mut keys = KeysFile::default();
    let key = keys
        .add(name, role, parse_scope(&[]).unwrap(), "t")
        .unwrap()
        .0;
    keys.write(&path).unwrap();
    (path, key)
}

/// A keys file in `dir` with one viewer per `(name, scope)`; returns its
/// path and the keys, in order.
pub fn viewers(dir: &Path, who: &[(&str, &[&str])]) -> (PathBuf, Vec<String>) {
    let path = dir.join("keys.json");
    let mut keys = KeysFile::default();
    let out = who
        .iter()
        .map(|(name, scope)| {
            let scope: Vec<String> = scope.iter().map(|s| s.to_string()).collect();
            keys.add(name, Role::Viewer, parse_scope(&scope).unwrap(), "t")
                .unwrap()
                .0
        })
        .collect();
    keys.write(&path).unwrap();
    (path, out)
}
