//! Experiment reports over the API, through the scoped view. The case of
//! `croo/tests/it/data/experiment` (expected numbers from its
//! `make_case.py`, numpy and scipy).

mod common;

use std::time::Duration;

use api::keys::{KeysFile, Role, parse_scope};
use serde_json::Value;

#[tokio::test]
async fn reports_through_the_scoped_view() {
    let case =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../croo/tests/it/data/experiment");
    let dir = tempfile::tempdir().unwrap().keep();
    let formulas = dir.join("formulas");
    std::fs::create_dir_all(&formulas).unwrap();
    for f in [
        "customers.csv",
        "events.csv",
        "assignments.csv",
        "formula.toml",
    ] {
        std::fs::copy(case.join(f), formulas.join(f)).unwrap();
    }
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(case.join("expected.json")).unwrap())
            .unwrap();
    let results = dir.join("results");
    let loaded = engine::load(&formulas.join("formula.toml")).unwrap();
    let month = |m: u32| chrono::NaiveDate::from_ymd_opt(2026, m, 1).unwrap();
    let req = engine::experiment::Request {
        experiment: "chatbot-q1".into(),
        assignments: engine::experiment::Assignments {
            uri: "assignments.csv".into(),
            base_dir: formulas.clone(),
            key: "customer_id".into(),
            experiment: "experiment".into(),
            arm: "arm".into(),
            time: "first_exposure".into(),
        },
        control: "control".into(),
        reference: engine::experiment::Reference::Control,
        periods: vec![month(2), month(3)],
        pre_periods: Vec::new(),
        shares: Default::default(),
        guardrails: vec![(Some(("segment".into(), "ent".into())), 0.5)],
        bootstrap: None,
        session: engine::SessionOptions::default(),
    };
    let report = engine::experiment::evaluate(&loaded, &req).await.unwrap();
    engine::experiment::store::save(&results, &report, chrono::Utc::now()).unwrap();

    let keys_file = dir.join("keys.json");
    let mut keys = KeysFile::default();
    let exec = keys
        .add("exec", Role::Viewer, parse_scope(&[]).unwrap(), "t")
        .unwrap()
        .0;
    let ent = keys
        .add(
            "ent-lead",
            Role::Viewer,
            parse_scope(&["segment=ent".into()]).unwrap(),
            "t",
        )
        .unwrap()
        .0;
    keys.write(&keys_file).unwrap();
    let base = common::serve(api::Config {
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
    });
    let client = reqwest::Client::new();
    let get = |path: &str, key: &str| {
        let req = client
            .get(format!("{base}/v1/formulas/chatbot{path}"))
            .bearer_auth(key);
        async move {
            let r = req.send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (s, list) = get("/experiments", &exec).await;
    assert_eq!(s, 200);
    assert_eq!(list["experiments"][0]["experiment"], "chatbot-q1");
    let (_, r) = get("/experiments/chatbot-q1", &exec).await;
    let overall = r["arms"][0]["overall"]["lift"]["absolute"]
        .as_f64()
        .unwrap();
    let want = expected["overall"]["absolute"].as_f64().unwrap();
    assert!((overall - want).abs() < 1e-9, "{overall} vs {want}");
    assert_eq!(r["arms"][0]["guardrails"][0]["result"], "fail");
    assert!(r["report_id"].is_string() && r["srm"]["valid"] == true);
    // The enterprise lead: its segment only.
    let (_, r) = get("/experiments/chatbot-q1", &ent).await;
    let arm = &r["arms"][0];
    assert!(
        arm["overall"].is_null() && arm["components"].is_null() && r["srm"].is_null(),
        "{r:#}"
    );
    let groups: Vec<&str> = arm["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["value"].as_str().unwrap())
        .collect();
    assert_eq!(groups, ["ent"]);
    let ent_lift = arm["groups"][0]["lift"]["absolute"].as_f64().unwrap();
    assert!((ent_lift - expected["ent"]["absolute"].as_f64().unwrap()).abs() < 1e-9);
    assert_eq!(arm["guardrails"][0]["group"], "segment=ent");
    let (s, _) = get("/experiments/no-such", &exec).await;
    assert_eq!(s, 404);
    let (s, _) = get("/experiments/..%2Fkeys", &exec).await;
    assert!(s == 400 || s == 404, "{s}");
}
