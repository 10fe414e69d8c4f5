//! A key scoped to a segment sees the customers in it as of each period
//! (a history dimension): customers 1 and 2 move from `smb` to `ent` in
//! February, so a key scoped to `ent` sees February's `ent` row (mean
//! spend (200 + 60) / 2 = 130) and nothing of January, when nobody was in
//! `ent` (the case of `croo/tests/it/data/moves`).

mod common;

use serde_json::Value;

#[tokio::test]
async fn a_scope_follows_the_customers_as_of_each_period() {
    let (dir, formulas) = common::case(
        "moves",
        &["customers.csv", "events.csv", "history.csv", "moves.toml"],
    );
    let results = dir.join("results");
    common::run(
        &formulas.join("moves.toml"),
        &results,
        ("2026-01-01", "2026-02-01"),
        false,
    )
    .await;
    let (keys_file, keys) = common::viewers(&dir, &[("ent-lead", &["segment=ent"])]);
    let ent = keys[0].clone();
    let base = common::serve(common::config(&results, Some(&formulas), Some(&keys_file)));
    let client = reqwest::Client::new();
    let doc: Value = client
        .get(format!("{base}/v1/formulas/moves/scores?by=segment"))
        .bearer_auth(&ent)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rows = doc["results"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{doc:#}");
    assert_eq!(rows[0]["period"], "2026-02-01");
    assert_eq!(rows[0]["value"], "ent");
    assert_eq!(rows[0]["population"], 2);
    let score = rows[0]["score"].as_f64().unwrap();
    assert!((score - 130.0).abs() < 1e-9, "{score}");
}
