//! The customers behind a number over the API, through the scoped view,
//! with segments as of each period: customers 1 and 2 move from `smb`
//! (January) to `ent` (February; 1 on 15 February, 2 on 1 February, both
//! `ent` at February's end); 3 has no history, `(none)`. A customer's
//! score is its spend: January 100, 50, 10; February 200, 60, 20 (the
//! case of `croo/tests/it/data/moves`).

mod common;

use serde_json::Value;

fn keys_of(doc: &Value) -> Vec<String> {
    doc["customers"]
        .as_array()
        .unwrap_or_else(|| panic!("{doc:#}"))
        .iter()
        .map(|c| c["key"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_scoped_key_sees_its_customers_as_of_each_period() {
    let (dir, formulas) = common::case(
        "moves",
        &["customers.csv", "events.csv", "history.csv", "moves.toml"],
    );
    let results = dir.join("results");
    common::run(
        &formulas.join("moves.toml"),
        &results,
        ("2026-01-01", "2026-02-01"),
        true,
    )
    .await;
    let (keys_file, keys) = common::viewers(
        &dir,
        &[
            ("exec", &[]),
            ("ent-lead", &["segment=ent"]),
            ("smb-lead", &["segment=smb"]),
        ],
    );
    let (exec, ent, smb) = (keys[0].clone(), keys[1].clone(), keys[2].clone());
    let base = common::serve(common::config(&results, Some(&formulas), Some(&keys_file)));
    let client = reqwest::Client::new();
    let get = |path: String, key: &str| {
        let req = client
            .get(format!("{base}/v1/formulas/moves{path}"))
            .bearer_auth(key);
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };

    // Pages: each key its customers of the period.
    let (s, doc) = get("/customers?period=2026-02".into(), &ent).await;
    assert_eq!(s, 200, "{doc:#}");
    assert_eq!(keys_of(&doc), ["2", "1"]);
    assert_eq!(doc["total"], 2);
    assert_eq!(doc["customers"][0]["score"], 60.0);
    let (_, doc) = get("/customers?period=2026-01".into(), &ent).await;
    assert_eq!(doc["total"], 0, "{doc:#}");
    let (_, doc) = get("/customers?period=2026-01&sort=-score".into(), &smb).await;
    assert_eq!(keys_of(&doc), ["1", "2"]);
    let (_, doc) = get("/customers?period=2026-02".into(), &smb).await;
    assert_eq!(doc["total"], 0, "{doc:#}");
    // Another group is forbidden, as on every data route.
    let (s, _) = get("/customers?period=2026-02&group=segment=smb".into(), &ent).await;
    assert_eq!(s, 403);
    // Movers: change since January, ties by key.
    let (_, doc) = get("/customers?period=2026-02&sort=change".into(), &exec).await;
    assert_eq!(keys_of(&doc), ["2", "3", "1"]);
    assert_eq!(doc["customers"][2]["change"], 100.0);
    // Paging with a cursor.
    let (_, doc) = get("/customers?period=2026-02&limit=2".into(), &exec).await;
    assert_eq!(keys_of(&doc), ["3", "2"]);
    let next = doc["next"].as_str().unwrap().to_string();
    let (_, doc) = get(
        format!("/customers?period=2026-02&limit=2&cursor={next}"),
        &exec,
    )
    .await;
    assert_eq!(keys_of(&doc), ["1"]);
    assert!(doc["next"].is_null());
    for bad in [
        "sort=colour",
        "limit=0",
        "limit=501",
        "cursor=nonsense",
        "group=segment",
    ] {
        let (s, doc) = get(format!("/customers?period=2026-02&{bad}"), &exec).await;
        assert_eq!(s, 400, "{bad}: {doc:#}");
    }

    // One customer: the periods in which the key may see it.
    let periods = |doc: &Value| -> Vec<String> {
        doc["periods"]
            .as_array()
            .map(|p| {
                p.iter()
                    .map(|p| p["period"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    let (_, doc) = get("/customers/1".into(), &exec).await;
    assert_eq!(periods(&doc), ["2026-01-01", "2026-02-01"]);
    assert_eq!(doc["periods"][1]["measures"]["spend"], 200.0);
    assert_eq!(
        doc["periods"][1]["components"]["value"]["contribution"],
        200.0
    );
    let (_, doc) = get("/customers/1".into(), &ent).await;
    assert_eq!(periods(&doc), ["2026-02-01"]);
    assert_eq!(doc["population_stats"], serde_json::json!([]));
    let (_, doc) = get("/customers/1?to=2026-01".into(), &smb).await;
    assert_eq!(periods(&doc), ["2026-01-01"]);
    // Not in scope, or not at all: the same 404.
    let (s3, d3) = get("/customers/3".into(), &ent).await;
    let (s9, d9) = get("/customers/999".into(), &ent).await;
    assert_eq!((s3, s9), (404, 404), "{d3:#} {d9:#}");
    assert_eq!(d3["error"]["code"], d9["error"]["code"]);
    let (s, _) = get("/customers/1?from=2026-01&to=2026-01".into(), &ent).await;
    assert_eq!(s, 404);
}
