//! Experiment reports over the API, through the scoped view. The case of
//! `croo/tests/it/data/experiment` (expected numbers from its
//! `make_case.py`, numpy and scipy).

mod common;

use serde_json::Value;

#[tokio::test]
async fn reports_through_the_scoped_view() {
    let (dir, formulas) = common::case(
        "experiment",
        &[
            "customers.csv",
            "events.csv",
            "assignments.csv",
            "formula.toml",
        ],
    );
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../croo/tests/it/data/experiment/expected.json"),
        )
        .unwrap(),
    )
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

    let (keys_file, keys) = common::viewers(&dir, &[("exec", &[]), ("ent-lead", &["segment=ent"])]);
    let (exec, ent) = (keys[0].clone(), keys[1].clone());
    let base = common::serve(common::config(&results, Some(&formulas), Some(&keys_file)));
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
