//! The API under abuse, over real HTTP on loopback: keys in URLs, oversized
//! requests, clients over their quota, denied traffic, a keys file changed
//! behind the server's back, and a hostile formula in the formulas folder.
//! Each test starts a server of its own with small quotas.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use api::keys::{KeysFile, Role, Scope};
use reqwest::StatusCode;
use serde_json::Value;

struct Server {
    base: String,
    dir: PathBuf,
    keys_file: PathBuf,
    /// A viewer's key (`exec`) and an admin's (`root`).
    viewer: String,
    admin: String,
}

/// A server over an empty results store, a formulas folder holding the
/// sample formula and `extra` files, and two keys.
fn start(limits: api::guard::Limits, extra: &[(&str, String)]) -> Server {
    let dir = tempfile::tempdir().unwrap().keep();
    let formulas = dir.join("formulas");
    engine::sample::write(
        &formulas,
        &engine::sample::SampleOptions {
            customers: 20,
            months: 1,
            seed: 1,
        },
    )
    .unwrap();
    for (name, text) in extra {
        std::fs::write(formulas.join(name), text).unwrap();
    }
    let results = dir.join("results");
    std::fs::create_dir_all(&results).unwrap();
    let keys_file = dir.join("keys.json");
    let mut keys = KeysFile::default();
    let viewer = keys.add("exec", Role::Viewer, Scope::new(), "t").unwrap().0;
    let admin = keys.add("root", Role::Admin, Scope::new(), "t").unwrap().0;
    keys.write(&keys_file).unwrap();
    let config = api::Config {
        results,
        formulas: Some(formulas),
        keys: Some(keys_file.clone()),
        bind: "127.0.0.1:0".parse().unwrap(),
        insecure: false,
        session: engine::SessionOptions::default(),
        request_timeout: Duration::from_secs(30),
        limits,
        schedules: Vec::new(),
        alerts: Vec::new(),
    };
    let base = common::serve(config);
    Server {
        base,
        dir,
        keys_file,
        viewer,
        admin,
    }
}

fn roomy() -> api::guard::Limits {
    api::guard::Limits::default()
}

async fn get(s: &Server, path: &str, key: Option<&str>) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new().get(format!("{}{path}", s.base));
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

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_key_in_a_url_is_refused_and_never_written() {
    let s = start(roomy(), &[]);
    for param in [
        "key",
        "token",
        "api_key",
        "access_token",
        "API_KEY",
        "apikey",
    ] {
        let path = format!("/v1/formulas?{param}={}", s.viewer);
        // With the key in the header as well, and without: both refused.
        for header in [Some(s.viewer.as_str()), None] {
            let (status, body) = get(&s, &path, header).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{param}");
            assert_eq!(code(&body), "bad_request");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("Authorization"),
                "{body}"
            );
        }
    }
    // Open routes too: the key is in the URL whatever the route.
    let (status, _) = get(&s, &format!("/healthz?token={}", s.viewer), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Counted as denials, and nothing on disk holds the key.
    let (_, audit) = get(&s, "/v1/audit", Some(&s.admin)).await;
    let counted: u64 = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "auth.denied" && e["status"] == 400)
        .filter_map(|e| e["count"].as_u64())
        .sum();
    assert_eq!(counted, 13);
    for entry in walk(&s.dir) {
        let bytes = std::fs::read(&entry).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(&s.viewer), "{}", entry.display());
    }
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn oversized_requests_get_json_errors() {
    let s = start(roomy(), &[]);
    let client = reqwest::Client::new();
    // Headers past 16 KiB in all, or past 100 fields: 431 in JSON.
    let r = client
        .get(format!("{}/v1/formulas", s.base))
        .bearer_auth(&s.viewer)
        .header("x-padding", "a".repeat(20 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let body: Value = r.json().await.unwrap();
    assert_eq!(code(&body), "headers_too_large", "{body}");
    let mut many = client.get(format!("{}/v1/formulas", s.base));
    for i in 0..150 {
        many = many.header(format!("x-h{i}"), "1");
    }
    let r = many.send().await.unwrap();
    assert_eq!(r.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert!(r.json::<Value>().await.is_ok());
    // A URI past 4 KiB: 414 in JSON.
    let (status, body) = get(
        &s,
        &format!("/v1/formulas?by={}", "x".repeat(5000)),
        Some(&s.viewer),
    )
    .await;
    assert_eq!(status, StatusCode::URI_TOO_LONG);
    assert_eq!(code(&body), "uri_too_long", "{body}");
    // The server still answers.
    let (status, _) = get(&s, "/v1/formulas", Some(&s.viewer)).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_key_over_its_quota_gets_429_and_others_do_not() {
    let s = start(
        api::guard::Limits {
            key_per_second: 1,
            key_burst: 5,
            ..roomy()
        },
        &[],
    );
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..8 {
        let r = client
            .get(format!("{}/v1/formulas", s.base))
            .bearer_auth(&s.viewer)
            .send()
            .await
            .unwrap();
        statuses.push(r.status());
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            retry_after = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let body: Value = r.json().await.unwrap();
            assert_eq!(code(&body), "rate_limited", "{body}");
        }
    }
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    // Five at once, perhaps one more refilled while the loop ran.
    assert!((5..=6).contains(&ok), "{statuses:?}");
    assert!(statuses.contains(&StatusCode::TOO_MANY_REQUESTS));
    assert!(retry_after.is_some_and(|s| (1..=2).contains(&s)));
    // Another key is not slowed by this one.
    let (status, _) = get(&s, "/v1/formulas", Some(&s.admin)).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn an_address_that_keeps_being_denied_is_slowed_then_refused() {
    let s = start(
        api::guard::Limits {
            denied_per_second: 1,
            denied_burst: 5,
            ..roomy()
        },
        &[],
    );
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(get(&s, "/v1/formulas", Some("croo_bogus")).await.0);
    }
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::UNAUTHORIZED)
            .count(),
        5 + statuses
            .iter()
            .skip(5)
            .filter(|s| **s == StatusCode::UNAUTHORIZED)
            .count(),
        "{statuses:?}"
    );
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    // Each refusal waited for the quota to refill (about a second), so
    // at most one more was let through in between.
    assert!(refused >= 2, "{statuses:?}");
    // A valid key from the same address is not refused.
    let started = Instant::now();
    let (status, _) = get(&s, "/v1/formulas", Some(&s.viewer)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(started.elapsed() < Duration::from_millis(500));
    // The audit has counts for the minute, not a line per request.
    let (_, audit) = get(&s, "/v1/audit", Some(&s.admin)).await;
    let denied: Vec<&Value> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "auth.denied")
        .collect();
    let total: u64 = denied.iter().filter_map(|e| e["count"].as_u64()).sum();
    assert_eq!(total, 8, "{denied:?}");
    // One line per minute (two when the minute turned during the test).
    assert!(denied.len() <= 2, "{denied:?}");
    assert!(denied.iter().all(|e| e["address"] == "127.0.0.1"));
}

#[tokio::test]
async fn a_revoked_key_stops_working_even_when_the_time_is_set_back() {
    let s = start(roomy(), &[]);
    let (status, _) = get(&s, "/v1/formulas", Some(&s.viewer)).await;
    assert_eq!(status, StatusCode::OK);
    let modified = std::fs::metadata(&s.keys_file).unwrap().modified().unwrap();
    let mut keys = KeysFile::read(&s.keys_file).unwrap();
    keys.revoke("exec", "t").unwrap();
    keys.write(&s.keys_file).unwrap();
    // Whoever rewrote the file set its modification time back.
    std::fs::File::options()
        .write(true)
        .open(&s.keys_file)
        .unwrap()
        .set_modified(modified)
        .unwrap();
    assert_eq!(
        std::fs::metadata(&s.keys_file).unwrap().modified().unwrap(),
        modified
    );
    let (status, body) = get(&s, "/v1/formulas", Some(&s.viewer)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _) = get(&s, "/v1/formulas", Some(&s.admin)).await;
    assert_eq!(status, StatusCode::OK);
}

/// The sample formula with the `service` component's expression replaced
/// and another name.
fn variant(name: &str, expr: &str) -> String {
    let text = engine::sample::EXAMPLE_FORMULA;
    assert!(text.contains("expr = \"service_quality\""));
    text.replace("name = \"retail-croo\"", &format!("name = \"{name}\""))
        .replace("expr = \"service_quality\"", &format!("expr = \"{expr}\""))
}

#[tokio::test]
async fn a_hostile_formula_in_the_folder_is_left_out_and_the_server_lives() {
    // Each of these overflowed the stack of the thread that read it (a
    // Tokio worker, whose stack is small) and took the server down.
    let minus = variant("deep-minus", &format!("{}1", "-".repeat(10_000)));
    let abs = variant(
        "deep-abs",
        &format!("{}1{}", "abs(".repeat(5_000), ")".repeat(5_000)),
    );
    let chain = variant("long-chain", &format!("1{}", " + 1".repeat(10_000)));
    let s = start(
        roomy(),
        &[
            ("deep-minus.toml", minus),
            ("deep-abs.toml", abs),
            ("long-chain.toml", chain),
            ("garbage.toml", "\u{0}\u{1}[[[".into()),
            ("fine.toml", variant("fine", "service_quality * 1")),
        ],
    );
    for _ in 0..2 {
        let (status, body) = get(&s, "/v1/formulas", Some(&s.viewer)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let names: Vec<&str> = body["formulas"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|f| f["name"].as_str())
            .collect();
        assert_eq!(names, ["fine", "retail-croo"], "{body}");
    }
    let (status, _) = get(&s, "/healthz", None).await;
    assert_eq!(status, StatusCode::OK);
}
