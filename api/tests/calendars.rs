//! The API reads fiscal names in the calendar the results were computed
//! in (recorded in each run's manifest, so without the formula file too)
//! and gives each row its fiscal name. The July fiscal year of
//! `croo/tests/it/data/calendars` (expected rows from its `make_case.py`).

mod common;

use serde_json::Value;

#[tokio::test]
async fn scores_are_read_by_fiscal_name() {
    let case =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../croo/tests/it/data/calendars");
    let dir = tempfile::tempdir().unwrap().keep();
    for e in std::fs::read_dir(&case).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
    }
    let results = dir.join("results");
    let loaded = engine::load(&dir.join("july.toml")).unwrap();
    let cal = engine::calendar::Calendar::of(&loaded.formula.file);
    let (first, _) = cal.parse_span("FY2026-Q3").unwrap();
    let (_, last) = cal.parse_span("FY2027-Q2").unwrap();
    engine::run(
        &loaded,
        &engine::RunRequest {
            periods: engine::PeriodChoice::Range(first, last),
            out: results.clone(),
            detail: false,
            session: engine::SessionOptions::default(),
            publishing: engine::Publishing::default(),
        },
        &chrono::Utc::now,
    )
    .await
    .unwrap();
    // No formulas folder: the calendar comes from the manifests.
    let base = common::serve(common::config(&results, None, None));
    let expected = std::fs::read_to_string(dir.join("expected.csv")).unwrap();
    let whole = |label: &str| -> (String, f64) {
        let line = expected
            .lines()
            .find(|l| l.starts_with("july,") && l.contains(&format!(",{label},,")))
            .unwrap();
        let f: Vec<&str> = line.split(',').collect();
        (f[1].to_string(), f[5].parse().unwrap())
    };
    let client = reqwest::Client::new();
    let get = |url: String| {
        let client = client.clone();
        async move { client.get(url).send().await.unwrap() }
    };
    for label in ["FY2027-Q1", "fy2026-q4"] {
        let (period, score) = whole(&label.to_uppercase());
        let doc: Value = get(format!(
            "{base}/v1/formulas/calendar-july/scores?from={label}&to={label}"
        ))
        .await
        .json()
        .await
        .unwrap();
        let rows = doc["results"].as_array().unwrap();
        assert_eq!(rows.len(), 1, "{doc:#}");
        assert_eq!(rows[0]["period"], period.as_str());
        assert_eq!(rows[0]["period_label"], label.to_uppercase());
        let got = rows[0]["score"].as_f64().unwrap();
        assert!(
            (got - score).abs() <= 1e-9 * score.abs().max(1.0),
            "{got} vs {score}"
        );
        let doc: Value = get(format!("{base}/v1/formulas/calendar-july/scores/{label}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(doc["results"][0]["period"], period.as_str(), "{doc:#}");
    }
    // A day names the quarter holding it; a bad fiscal name is a 400
    // naming it.
    let doc: Value = get(format!(
        "{base}/v1/formulas/calendar-july/scores/2026-08-15"
    ))
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(doc["results"][0]["period_label"], "FY2027-Q1", "{doc:#}");
    let r = get(format!("{base}/v1/formulas/calendar-july/scores/FY2027-Q5")).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("FY2027-Q5"));
}
