//! Which formula version produced which numbers, over real HTTP: every
//! score row names its run, version and hash, and a run started over HTTP
//! with another version of the file than the current results' says so.

mod common;

use std::time::Duration;

use api::keys::{KeysFile, Role, Scope};
use serde_json::Value;

#[tokio::test]
async fn rows_name_their_version_and_a_new_version_is_announced() {
    let dir = tempfile::tempdir().unwrap().keep();
    let formulas = dir.join("formulas");
    engine::sample::write(
        &formulas,
        &engine::sample::SampleOptions {
            customers: 50,
            months: 2,
            seed: 3,
        },
    )
    .unwrap();
    let file = formulas.join(engine::sample::FORMULA_FILE);
    let results = dir.join("results");
    let loaded = engine::load(&file).unwrap();
    let report = engine::run(
        &loaded,
        &engine::RunRequest {
            periods: engine::PeriodChoice::One(engine::period::parse_date("2026-10-01").unwrap()),
            out: results.clone(),
            detail: false,
            session: engine::SessionOptions::default(),
            publishing: engine::Publishing::default(),
        },
        &chrono::Utc::now,
    )
    .await
    .unwrap();
    let keys_file = dir.join("keys.json");
    let mut keys = KeysFile::default();
    let ops = keys.add("ops", Role::Admin, Scope::new(), "t").unwrap().0;
    keys.write(&keys_file).unwrap();
    let config = api::Config {
        results,
        formulas: Some(formulas),
        keys: Some(keys_file),
        bind: "127.0.0.1:0".parse().unwrap(),
        insecure: false,
        session: engine::SessionOptions::default(),
        request_timeout: Duration::from_secs(30),
        limits: api::guard::Limits::default(),
        schedules: Vec::new(),
        alerts: Vec::new(),
    };
    let base = common::serve(config);
    let client = reqwest::Client::new();
    let get = |path: &str| {
        let req = client.get(format!("{base}{path}")).bearer_auth(&ops);
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };

    let scores = get("/v1/formulas/retail-croo/scores?by=segment").await;
    let rows = scores["results"].as_array().unwrap();
    assert!(!rows.is_empty());
    for r in rows {
        assert_eq!(r["run_id"], report.manifest.run_id.as_str());
        assert_eq!(r["version"], "2026.11.1");
        assert_eq!(r["formula_hash"], loaded.hash.as_str());
    }

    // The same version: no note.
    let post = |body: &'static str| {
        let req = client
            .post(format!("{base}/v1/formulas/retail-croo/runs"))
            .bearer_auth(&ops)
            .header("content-type", "application/json")
            .body(body);
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let same = post(r#"{"period": "2026-09-01"}"#).await;
    assert!(same["run_id"].is_string(), "{same}");
    assert!(same.get("note").is_none(), "{same}");

    // Another version of the file: the answer and the audit log say so.
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace("version = \"2026.11.1\"", "version = \"2026.12.1\""),
    )
    .unwrap();
    let other = post(r#"{"period": "2026-09-01"}"#).await;
    let note = other["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("version 2026.12.1") && note.contains("from version 2026.11.1"),
        "{other}"
    );
    let audit = get("/v1/audit").await;
    assert!(
        audit["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event"] == "run.started"
                && e["run_id"] == other["run_id"]
                && e["detail"]
                    .as_str()
                    .unwrap_or("")
                    .contains("version 2026.12.1")),
        "{audit}"
    );
}
