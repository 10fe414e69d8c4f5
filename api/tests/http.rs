//! The API over real HTTP on loopback: every route, role and scope. One
//! server (on its own thread and runtime) serves a results store made by
//! a real run of the sample formula; each test is a client.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use api::keys::{KeysFile, Role, Scope, parse_scope};
use reqwest::StatusCode;
use serde_json::Value;

struct Fixture {
    base: String,
    dir: PathBuf,
    results: PathBuf,
    keys_file: PathBuf,
    admin: String,
    viewer: String,
    operator: String,
    smb: String,
    /// `croo run --format json`'s rows of the sample run.
    rows: Value,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    // Built on a thread of its own: the tests run inside a Tokio runtime,
    // which cannot block on another.
    F.get_or_init(|| std::thread::spawn(make_fixture).join().unwrap())
}

fn make_fixture() -> Fixture {
    {
        let dir = tempfile::tempdir().unwrap().keep();
        let sample = dir.join("formulas");
        engine::sample::write(
            &sample,
            &engine::sample::SampleOptions {
                customers: 300,
                months: 4,
                seed: 5,
            },
        )
        .unwrap();
        let results = dir.join("results");
        let rt = tokio::runtime::Runtime::new().unwrap();
        let loaded = engine::load(&sample.join(engine::sample::FORMULA_FILE)).unwrap();
        let req = engine::RunRequest {
            periods: engine::PeriodChoice::Range(date("2026-08-01"), date("2026-10-01")),
            out: results.clone(),
            detail: false,
            session: engine::SessionOptions::default(),
            publishing: engine::Publishing::default(),
        };
        let report = rt
            .block_on(engine::run(&loaded, &req, &chrono::Utc::now))
            .unwrap();
        // Through text, as a client sees it (serde_json's float parsing is
        // not always correctly rounded, so both sides parse the same text).
        let mut rows: Value =
            serde_json::from_str(&serde_json::to_string(&report.rows).unwrap()).unwrap();
        // Each row also says what produced it (`croo run --format json`
        // adds the same).
        for r in rows.as_array_mut().unwrap() {
            let o = r.as_object_mut().unwrap();
            o.insert("run_id".into(), report.manifest.run_id.clone().into());
            o.insert("version".into(), report.manifest.version.clone().into());
            o.insert(
                "formula_hash".into(),
                report.manifest.formula_hash.clone().into(),
            );
            // The first run of each period: edition 1; the periods have
            // ended and no settle is declared, so they are final.
            o.insert("edition".into(), 1.into());
            o.insert("state".into(), "final".into());
        }

        let keys_file = dir.join("keys.json");
        let mut keys = KeysFile::default();
        let mut add =
            |name: &str, role: Role, scope: Scope| keys.add(name, role, scope, "t").unwrap().0;
        let admin = add("root", Role::Admin, Scope::new());
        let viewer = add("exec", Role::Viewer, Scope::new());
        let operator = add("ops", Role::Operator, Scope::new());
        let smb = add(
            "smb-lead",
            Role::Viewer,
            parse_scope(&["segment=smb".into()]).unwrap(),
        );
        keys.write(&keys_file).unwrap();

        let config = api::Config {
            results: results.clone(),
            formulas: Some(sample),
            keys: Some(keys_file.clone()),
            bind: "127.0.0.1:0".parse().unwrap(),
            insecure: false,
            session: engine::SessionOptions {
                threads: Some(2),
                memory_limit: None,
                cluster: None,
                staging: None,
                input_bytes: None,
            },
            limits: api::guard::Limits::default(),
            request_timeout: Duration::from_secs(30),
            schedules: Vec::new(),
            alerts: Vec::new(),
        };
        let base = common::serve(config);
        Fixture {
            base,
            dir,
            results,
            keys_file,
            admin,
            viewer,
            operator,
            smb,
            rows,
        }
    }
}

fn date(s: &str) -> chrono::NaiveDate {
    engine::period::parse_date(s).unwrap()
}

async fn get(path: &str, key: Option<&str>) -> (StatusCode, Value) {
    let f = fixture();
    let mut req = reqwest::Client::new().get(format!("{}{path}", f.base));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn post(path: &str, key: &str, body: &str) -> (StatusCode, Value) {
    let f = fixture();
    let r = reqwest::Client::new()
        .post(format!("{}{path}", f.base))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn error_code(v: &Value) -> &str {
    v["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error body: {v}"))
}

fn rows_where(rows: &Value, f: impl Fn(&Value) -> bool) -> Vec<Value> {
    rows.as_array()
        .unwrap()
        .iter()
        .filter(|r| f(r))
        .cloned()
        .collect()
}

#[tokio::test]
async fn open_routes_need_no_key() {
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/",
        "/assets/app.js",
    ] {
        let (s, _) = get(path, None).await;
        assert_eq!(s, StatusCode::OK, "{path}");
    }
    let (_, doc) = get("/openapi.json", None).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for p in [
        "/v1/formulas",
        "/v1/formulas/{name}",
        "/v1/formulas/{name}/scores",
        "/v1/formulas/{name}/scores/{period}",
        "/v1/formulas/{name}/explain",
        "/v1/formulas/{name}/runs",
        "/v1/runs",
        "/v1/runs/{id}",
        "/v1/audit",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(
            doc["paths"][p].is_object(),
            "{p} missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test]
async fn data_routes_need_a_valid_key() {
    let f = fixture();
    for key in [None, Some("croo_0000"), Some("")] {
        let (s, body) = get("/v1/formulas", key).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{key:?}");
        assert_eq!(error_code(&body), "unauthorized");
    }
    // The key file holds hashes only.
    let text = std::fs::read_to_string(&f.keys_file).unwrap();
    for k in [&f.admin, &f.viewer, &f.operator, &f.smb] {
        assert!(!text.contains(k.as_str()) && !text.contains(&k[5..]));
    }
    let (s, body) = get("/v1/formulas/retail-croo/scores", Some("Bearer nope")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&body), "unauthorized");
    // Any case of the scheme; another scheme is no key.
    for (scheme, expected) in [
        ("bearer", StatusCode::OK),
        ("BEARER", StatusCode::OK),
        ("Basic", StatusCode::UNAUTHORIZED),
    ] {
        let r = reqwest::Client::new()
            .get(format!("{}/v1/formulas", f.base))
            .header("authorization", format!("{scheme} {}", f.viewer))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), expected, "{scheme}");
    }
}

#[tokio::test]
async fn a_viewer_reads_the_numbers_of_croo_run() {
    let f = fixture();
    let (s, list) = get("/v1/formulas", Some(&f.viewer)).await;
    assert_eq!(s, StatusCode::OK);
    let formula = &list["formulas"][0];
    assert_eq!(formula["name"], "retail-croo");
    assert_eq!(formula["periods"].as_array().unwrap().len(), 3);
    assert!(formula["measures"].as_array().unwrap().len() >= 5);
    assert_eq!(formula["components"][0]["name"], "value");
    let (s, one) = get("/v1/formulas/retail-croo", Some(&f.viewer)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(one["version"], formula["version"]);

    // The series: exactly the whole-population rows of the run.
    let (s, series) = get("/v1/formulas/retail-croo/scores", Some(&f.viewer)).await;
    assert_eq!(s, StatusCode::OK);
    let whole = rows_where(&f.rows, |r| r["dimension"].is_null());
    assert_eq!(series["results"].as_array().unwrap(), &whole);
    // A range and a breakdown.
    let (_, by) = get(
        "/v1/formulas/retail-croo/scores?by=segment&from=2026-09-01&to=2026-10-31",
        Some(&f.viewer),
    )
    .await;
    let expected = rows_where(&f.rows, |r| {
        r["dimension"] == "segment" && r["period"].as_str().unwrap() >= "2026-09-01"
    });
    assert!(!expected.is_empty());
    assert_eq!(by["results"].as_array().unwrap(), &expected);
    // One period with its groups.
    let (s, p) = get(
        "/v1/formulas/retail-croo/scores/2026-10-15?by=plan",
        Some(&f.viewer),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let expected = rows_where(&f.rows, |r| {
        r["period"] == "2026-10-01" && (r["dimension"].is_null() || r["dimension"] == "plan")
    });
    assert_eq!(p["results"].as_array().unwrap(), &expected);
}

#[tokio::test]
async fn explain_is_the_clis_explanation() {
    let f = fixture();
    let (s, e) = get(
        "/v1/formulas/retail-croo/explain?period=2026-10-01&compare=2026-09-01&by=segment",
        Some(&f.viewer),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    // The change splits exactly into component changes and into mix + within.
    let change = e["change"].as_f64().unwrap();
    let parts: f64 = e["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["change"].as_f64().unwrap())
        .sum();
    assert!((change - parts).abs() < 1e-9, "{change} vs {parts}");
    let split = e["mix_total"].as_f64().unwrap() + e["within_total"].as_f64().unwrap();
    assert!((change - split).abs() < 1e-9, "{change} vs {split}");
    let before = rows_where(&f.rows, |r| {
        r["period"] == "2026-09-01" && r["dimension"].is_null()
    });
    let after = rows_where(&f.rows, |r| {
        r["period"] == "2026-10-01" && r["dimension"].is_null()
    });
    let expected = after[0]["score"].as_f64().unwrap() - before[0]["score"].as_f64().unwrap();
    assert!((change - expected).abs() < 1e-9);
    // Periods by label, as on the command line.
    let (s, by_label) = get(
        "/v1/formulas/retail-croo/explain?period=2026-10&compare=2026-09&by=segment",
        Some(&f.viewer),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(by_label, e);
    let (s, body) = get(
        "/v1/formulas/retail-croo/explain?period=2026-Q4",
        Some(&f.viewer),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("spans several month periods")
    );
    // Default compare: the previous period.
    let (_, d) = get(
        "/v1/formulas/retail-croo/explain?period=2026-10-01",
        Some(&f.viewer),
    )
    .await;
    assert_eq!(d["compare"], "2026-09-01");
    // Why customers were excluded, as the run's manifest counts them.
    assert!(d["exclusions"].is_object(), "{d}");
    let run = series_run(&f.rows, "2026-10-01");
    let (_, m) = get(&format!("/v1/runs/{run}"), Some(&f.viewer)).await;
    let expected = match &m["exclusions"]["2026-10-01"] {
        Value::Null => serde_json::json!({}),
        x => x.clone(),
    };
    assert_eq!(d["exclusions"], expected);
}

/// The run id of a period's rows.
fn series_run(rows: &Value, period: &str) -> String {
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["period"] == period)
        .and_then(|r| r["run_id"].as_str())
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn a_scoped_key_sees_only_its_groups() {
    let f = fixture();
    let k = Some(f.smb.as_str());
    for path in [
        "/v1/formulas/retail-croo/scores",
        "/v1/formulas/retail-croo/scores?by=region",
        "/v1/formulas/retail-croo/scores/2026-10-01",
        "/v1/formulas/retail-croo/explain?period=2026-10-01&by=segment",
        "/v1/formulas/retail-croo/explain?period=2026-10-01&group=segment=enterprise",
        "/v1/audit",
    ] {
        let (s, body) = get(path, k).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{path}: {body}");
        assert_eq!(error_code(&body), "forbidden");
    }
    let (s, by) = get("/v1/formulas/retail-croo/scores?by=segment", k).await;
    assert_eq!(s, StatusCode::OK);
    let expected = rows_where(&f.rows, |r| {
        r["dimension"] == "segment" && r["value"] == "smb"
    });
    assert_eq!(expected.len(), 3);
    assert_eq!(by["results"].as_array().unwrap(), &expected);
    let (_, p) = get("/v1/formulas/retail-croo/scores/2026-10-01?by=segment", k).await;
    let expected = rows_where(&f.rows, |r| {
        r["period"] == "2026-10-01" && r["dimension"] == "segment" && r["value"] == "smb"
    });
    assert_eq!(p["results"].as_array().unwrap(), &expected);
    // Its explanation is the group's own.
    let (s, e) = get("/v1/formulas/retail-croo/explain?period=2026-10-01", k).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(e["group"]["value"], "smb");
    assert_eq!(e["score"], expected[0]["score"]);
    // With the group's own exclusions (as the full manifest counts them),
    // never another group's.
    let run = series_run(&f.rows, "2026-10-01");
    let (_, full) = get(&format!("/v1/runs/{run}"), Some(&f.viewer)).await;
    assert!(full["group_exclusions"].is_object(), "{full}");
    let own = match &full["group_exclusions"]["2026-10-01"]["segment=smb"] {
        Value::Null => serde_json::json!({}),
        x => x.clone(),
    };
    assert_eq!(e["exclusions"], own, "{e}");
    // Manifests without numbers.
    let (_, runs) = get("/v1/runs", k).await;
    let id = runs["runs"][0]["run_id"].as_str().unwrap().to_string();
    let (s, m) = get(&format!("/v1/runs/{id}"), k).await;
    assert_eq!(s, StatusCode::OK);
    assert!(m.get("population_stats").is_none());
    assert!(m.get("group_exclusions").is_none());
    assert!(m["sources"][0].get("rows_read").is_none());
    let (_, full) = get(&format!("/v1/runs/{id}"), Some(&f.viewer)).await;
    assert!(full["population_stats"].is_array());
}

#[tokio::test]
async fn bad_requests_get_json_errors() {
    let f = fixture();
    let k = Some(f.viewer.as_str());
    for (path, status, code) in [
        (
            "/v1/formulas/nope/scores",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        ("/v1/formulas/nope", StatusCode::NOT_FOUND, "not_found"),
        (
            "/v1/formulas/retail-croo/scores?by=colour",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "/v1/formulas/retail-croo/scores?from=yesterday",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "/v1/formulas/retail-croo/scores/notadate",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "/v1/formulas/retail-croo/scores/1999-01-01",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "/v1/formulas/retail-croo/explain",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        ("/v1/runs/../../etc", StatusCode::NOT_FOUND, "not_found"),
        ("/v1/runs/nope", StatusCode::NOT_FOUND, "not_found"),
        ("/v2/anything", StatusCode::NOT_FOUND, "not_found"),
    ] {
        let (s, body) = get(path, k).await;
        assert_eq!(s, status, "{path}: {body}");
        assert_eq!(error_code(&body), code, "{path}");
    }
    let long = format!("/v1/formulas?x={}", "a".repeat(5000));
    let (s, body) = get(&long, k).await;
    assert_eq!(s, StatusCode::URI_TOO_LONG);
    assert_eq!(error_code(&body), "uri_too_long");
    let (s, body) = post(
        "/v1/formulas/retail-croo/runs",
        &f.operator,
        &"x".repeat(100_000),
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(&body), "payload_too_large");
    let (s, body) = post(
        "/v1/formulas/retail-croo/runs",
        &f.operator,
        "{\"period\": 3}",
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "bad_request");
}

#[tokio::test]
async fn operators_start_runs_and_admins_read_the_audit_log() {
    let f = fixture();
    let (s, body) = post("/v1/formulas/retail-croo/runs", &f.viewer, "{}").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(error_code(&body), "forbidden");
    let (s, body) = post(
        "/v1/formulas/retail-croo/runs",
        &f.operator,
        r#"{"period": "2026-07-01"}"#,
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    let id = body["run_id"].as_str().unwrap().to_string();
    // Two at once for the same formula: both succeed, one after the other.
    let (s2, body2) = post(
        "/v1/formulas/retail-croo/runs",
        &f.operator,
        r#"{"period": "2026-07-01"}"#,
    )
    .await;
    assert_eq!(s2, StatusCode::ACCEPTED);
    let id2 = body2["run_id"].as_str().unwrap().to_string();
    for id in [&id, &id2] {
        let mut status = String::new();
        for _ in 0..600 {
            let (_, r) = get(&format!("/v1/runs/{id}"), Some(&f.viewer)).await;
            status = r["status"].as_str().unwrap_or("").to_string();
            if status == "succeeded" || status == "failed" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(status, "succeeded");
    }
    let (_, series) = get(
        "/v1/formulas/retail-croo/scores?from=2026-07-01&to=2026-07-01",
        Some(&f.viewer),
    )
    .await;
    assert_eq!(series["results"].as_array().unwrap().len(), 1);
    // The second found the first's numbers: nothing new to publish, the
    // period stays at the first run's edition 1.
    assert_eq!(series["runs"]["2026-07-01"], id.as_str());
    assert_eq!(series["results"][0]["edition"], 1);
    let (_, runs) = get("/v1/runs", Some(&f.operator)).await;
    let second = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["run_id"] == id2.as_str())
        .cloned()
        .unwrap();
    assert_eq!(second["started_by"], "ops", "{second}");
    assert!(
        second["outcomes"][0]
            .as_str()
            .unwrap_or("")
            .contains("2026-07-01: unchanged: edition 1"),
        "{second}"
    );

    // The audit log: admins only, with runs and denials, never a key.
    let (s, _) = get("/v1/audit", Some(&f.viewer)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let _ = get("/v1/formulas", Some("croo_bogus")).await;
    let (s, audit) = get("/v1/audit", Some(&f.admin)).await;
    assert_eq!(s, StatusCode::OK);
    let events = audit["events"].as_array().unwrap();
    let has = |event: &str, f: &dyn Fn(&Value) -> bool| {
        events.iter().any(|e| e["event"] == event && f(e))
    };
    assert!(has("run.started", &|e| e["run_id"] == id.as_str()
        && e["key"] == "ops"));
    assert!(has("run.finished", &|e| e["run_id"] == id.as_str()));
    // Denials are counted per address, key and minute (the minute still
    // running is shown from memory); the detail names each route.
    let on = |e: &Value, route: &str| e["detail"].as_str().unwrap_or("").contains(route);
    assert!(has("auth.denied", &|e| e["key"].is_null()
        && on(e, "GET /v1/formulas (")
        && e["count"].as_u64() >= Some(1)));
    assert!(has("auth.denied", &|e| e["key"] == "exec"
        && on(e, "GET /v1/audit (")
        && e["detail"].as_str().unwrap_or("").contains(" x 403")));
    let text = std::fs::read_to_string(f.results.join("audit.jsonl")).unwrap();
    for k in [&f.admin, &f.viewer, &f.operator, &f.smb] {
        assert!(!text.contains(k.as_str()));
    }
}

#[tokio::test]
async fn metrics_count_requests_per_route() {
    let f = fixture();
    let _ = get("/v1/formulas/retail-croo/scores", Some(&f.viewer)).await;
    let (_, m) = get("/metrics", None).await;
    let text = m.as_str().unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("croo_http_requests_total{")
                && l.contains("route=\"/v1/formulas/{name}/scores\"")
                && l.contains("status=\"200\"")),
        "{text}"
    );
    assert!(text.contains("croo_http_request_duration_seconds_bucket"));
}

#[tokio::test]
async fn the_server_refuses_to_start_without_keys() {
    let f = fixture();
    let mut config = api::Config {
        results: f.dir.join("other"),
        formulas: None,
        keys: None,
        bind: "127.0.0.1:0".parse().unwrap(),
        insecure: false,
        session: engine::SessionOptions::default(),
        limits: api::guard::Limits::default(),
        request_timeout: Duration::from_secs(5),
        schedules: Vec::new(),
        alerts: Vec::new(),
    };
    assert!(matches!(api::state(&config), Err(api::Error::Invalid(_))));
    config.insecure = true;
    config.bind = "0.0.0.0:0".parse().unwrap();
    assert!(matches!(api::state(&config), Err(api::Error::Invalid(_))));
    config.bind = "127.0.0.1:0".parse().unwrap();
    assert!(api::state(&config).is_ok());
    config.keys = Some(f.dir.join("missing-keys.json"));
    assert!(matches!(api::state(&config), Err(api::Error::Invalid(_))));
}

/// One name, one formula: two files of the formulas folder claiming one
/// name stop the server from starting, naming both.
#[tokio::test]
async fn two_files_claiming_one_name_are_refused() {
    let f = fixture();
    let dir = f.dir.join("clash");
    std::fs::create_dir_all(&dir).unwrap();
    let text = engine::sample::EXAMPLE_FORMULA;
    std::fs::write(dir.join("a.toml"), text).unwrap();
    std::fs::write(
        dir.join("b.toml"),
        text.replace("version = \"2026.11.1\"", "version = \"2\""),
    )
    .unwrap();
    let config = api::Config {
        results: f.dir.join("clash-results"),
        formulas: Some(dir.clone()),
        keys: Some(f.keys_file.clone()),
        bind: "127.0.0.1:0".parse().unwrap(),
        insecure: false,
        session: engine::SessionOptions::default(),
        limits: api::guard::Limits::default(),
        request_timeout: Duration::from_secs(5),
        schedules: Vec::new(),
        alerts: Vec::new(),
    };
    let Err(api::Error::Invalid(message)) = api::state(&config) else {
        panic!("a folder with two `retail-croo` files was accepted");
    };
    for want in ["a.toml", "b.toml", "`retail-croo`", "version 2"] {
        assert!(message.contains(want), "{want}: {message}");
    }
    std::fs::remove_file(dir.join("b.toml")).unwrap();
    assert!(api::state(&config).is_ok());
}
