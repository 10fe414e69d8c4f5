//! A key scoped to a segment sees the customers in it as of each period
//! (a history dimension): customers 1 and 2 move from `smb` to `ent` in
//! February, so a key scoped to `ent` sees February's `ent` row (mean
//! spend (200 + 60) / 2 = 130) and nothing of January, when nobody was in
//! `ent`.

mod common;

use serde_json::Value;

#[tokio::test]
async fn a_scope_follows_the_customers_as_of_each_period() {
    let dir = tempfile::tempdir().unwrap().keep();
    let formulas = dir.join("formulas");
    std::fs::create_dir_all(&formulas).unwrap();
    let write = |name: &str, text: &str| std::fs::write(formulas.join(name), text).unwrap();
    write("customers.csv", "customer_id,name\n1,a\n2,b\n3,c\n");
    write(
        "events.csv",
        "customer_id,at,amount\n1,2026-01-10T00:00:00Z,100\n1,2026-02-10T00:00:00Z,200\n2,2026-01-10T00:00:00Z,50\n2,2026-02-20T00:00:00Z,60\n3,2026-01-05T00:00:00Z,10\n3,2026-02-05T00:00:00Z,20\n",
    );
    write(
        "history.csv",
        "customer_id,segment,valid_from,valid_to\n1,smb,2025-01-01T00:00:00Z,2026-02-15T00:00:00Z\n1,ent,2026-02-15T00:00:00Z,\n2,smb,2025-06-01T00:00:00Z,2026-02-01T00:00:00Z\n2,ent,2026-02-01T00:00:00Z,\n",
    );
    write(
        "moves.toml",
        r#"
[formula]
name = "moves"
version = "1"
grain = "month"

[sources.customers]
role = "entity"
uri = "customers.csv"
key = "customer_id"

[sources.events]
uri = "events.csv"
key = "customer_id"
time = "at"

[sources.segments]
role = "history"
uri = "history.csv"
key = "customer_id"
valid_from = "valid_from"
valid_to = "valid_to"

[dimensions.segment]
source = "segments"
column = "segment"

[measures.spend]
source = "events"
expr = "sum(amount)"
default = 0

[score.components.value]
weight = 1
expr = "spend / 100"
"#,
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
