//! Statuses over the API: the targets file beside the formula in the
//! formulas folder, read through the scoped view, its loads and changes in
//! the audit log. The case of `croo/tests/it/data/targets` (hand-computed
//! statuses in `croo/tests/it/targets.rs`): February, all on_track, smb
//! at_risk (130 against 140 over 40: 0.9), ent off_track (its component
//! 0.2 against 0.15 under 0.35: 0.75).

mod common;

use serde_json::Value;

#[tokio::test]
async fn statuses_through_the_scoped_view() {
    let (dir, formulas) = common::case(
        "targets",
        &[
            "customers.csv",
            "events.csv",
            "goals.toml",
            "goals.targets.toml",
        ],
    );
    let results = dir.join("results");
    common::run(
        &formulas.join("goals.toml"),
        &results,
        ("2026-01-01", "2026-02-01"),
        false,
    )
    .await;
    let (keys_file, keys) = common::viewers(&dir, &[("exec", &[]), ("smb-lead", &["segment=smb"])]);
    let (all, smb) = (keys[0].clone(), keys[1].clone());
    let base = common::serve(common::config(&results, Some(&formulas), Some(&keys_file)));
    let client = reqwest::Client::new();
    let get = |path: &str, key: &str| {
        let req = client.get(format!("{base}{path}")).bearer_auth(key);
        async move { req.send().await.unwrap() }
    };
    let statuses = |doc: &Value| -> Vec<(Option<String>, Option<String>)> {
        doc["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| {
                (
                    g["value"].as_str().map(String::from),
                    g["status"].as_str().map(String::from),
                )
            })
            .collect()
    };
    let s = |v: &str| Some(v.to_string());
    let doc: Value = get("/v1/formulas/goals/status?period=2026-02", &all)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(doc["targets_version"], "board-2026-1");
    let mut got = statuses(&doc);
    got.sort();
    assert_eq!(
        got,
        vec![
            (None, s("on_track")),
            (s("ent"), s("off_track")),
            (s("smb"), s("at_risk"))
        ]
    );
    // A key scoped to smb sees smb's status and nobody else's.
    let doc: Value = get("/v1/formulas/goals/status?period=2026-02", &smb)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(statuses(&doc), vec![(s("smb"), s("at_risk"))], "{doc:#}");
    // Score rows carry the status.
    let doc: Value = get("/v1/formulas/goals/scores/2026-01?by=segment", &all)
        .await
        .json()
        .await
        .unwrap();
    let row = |v: Option<&str>| {
        doc["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["value"].as_str() == v)
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(row(None), "off_track");
    assert_eq!(row(Some("smb")), "off_track");
    assert_eq!(row(Some("ent")), "on_track");

    // The load is in the audit log; a change is another line, with the
    // new version and digest; the scores stay.
    let audit = || {
        std::fs::read_to_string(results.join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"targets.loaded\""))
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(audit().len(), 1, "{:?}", audit());
    assert!(audit()[0].contains("board-2026-1"));
    let text = std::fs::read_to_string(formulas.join("goals.targets.toml")).unwrap();
    std::fs::write(
        formulas.join("goals.targets.toml"),
        text.replace("board-2026-1", "board-2026-2")
            .replace("value = 60", "value = 100"),
    )
    .unwrap();
    let doc: Value = get("/v1/formulas/goals/status?period=2026-02", &all)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(doc["targets_version"], "board-2026-2");
    // All: (93.33 - 50) / (100 - 50) = 0.87: off_track.
    assert!(statuses(&doc).contains(&(None, s("off_track"))), "{doc:#}");
    let lines = audit();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[1].contains("board-2026-2") && lines[1].contains("sha256:"));
    // A targets file that does not check: 422 naming the file and line.
    std::fs::write(
        formulas.join("goals.targets.toml"),
        text.replace("direction = \"lower\"", "direction = \"down\""),
    )
    .unwrap();
    let r = get("/v1/formulas/goals/status?period=2026-02", &all).await;
    assert_eq!(r.status(), 422);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("goals.targets.toml:") && body.contains("down"),
        "{body}"
    );
    // The scores are still served, without statuses.
    let doc: Value = get("/v1/formulas/goals/scores/2026-02", &all)
        .await
        .json()
        .await
        .unwrap();
    assert!(doc["results"][0]["status"].is_null(), "{doc:#}");
}
