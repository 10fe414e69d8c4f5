//! Alerts against a webhook receiver on loopback that checks each
//! signature (HMAC-SHA256 of `TIMESTAMP.BODY`, docs/alerts.md), fails the
//! first attempt and accepts the second.
//!
//! The case of `croo/tests/it/data/targets` (statuses worked out in
//! `croo/tests/it/targets.rs`): `ent` is on_track in January (1.25) and
//! off_track in February (0.75); `smb` off_track in January, at_risk in
//! February; the whole population's score rises from 53.33 to 93.33.
//! January is published before the server starts: it is the baseline,
//! news to no alert (smb's January off_track fires nothing).

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};

const SECRET: &str = "a-webhook-secret-of-32-bytes-0123";

#[derive(Default)]
struct Received {
    attempts: u32,
    /// (event id header, body) of accepted deliveries.
    accepted: Vec<(String, serde_json::Value)>,
    bad_signatures: u32,
}

/// Verifies the signature as a receiver would, from the documented scheme.
fn verify(headers: &HeaderMap, body: &[u8]) -> bool {
    let Some(sig) = headers
        .get("x-croo-signature")
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mut t = None;
    let mut v1 = None;
    for part in sig.split(',') {
        match part.split_once('=') {
            Some(("t", x)) => t = Some(x.to_string()),
            Some(("v1", x)) => v1 = Some(x.to_string()),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let Ok(stamp) = t.parse::<i64>() else {
        return false;
    };
    if (chrono::Utc::now().timestamp() - stamp).abs() > 300 {
        return false;
    }
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    let mut signed = t.into_bytes();
    signed.push(b'.');
    signed.extend_from_slice(body);
    let Ok(tag) = hex::decode(v1) else {
        return false;
    };
    ring::hmac::verify(&key, &signed, &tag).is_ok()
}

async fn receiver(received: Arc<Mutex<Received>>) -> String {
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let received = Arc::clone(&received);
            async move {
                let mut r = received.lock().unwrap();
                r.attempts += 1;
                if !verify(&headers, &body) {
                    r.bad_signatures += 1;
                    return StatusCode::UNAUTHORIZED;
                }
                // Every first attempt fails.
                if r.attempts % 2 == 1 {
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
                let id = headers
                    .get("x-croo-event")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                r.accepted
                    .push((id, serde_json::from_slice(&body).unwrap()));
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/hook")
}

async fn run(formulas: &std::path::Path, results: &std::path::Path, period: &str) {
    common::run(
        &formulas.join("goals.toml"),
        results,
        (period, period),
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_events_once_per_edition_after_a_retry() {
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
    run(&formulas, &results, "2026-01-01").await;

    let received = Arc::new(Mutex::new(Received::default()));
    let hook = receiver(Arc::clone(&received)).await;
    std::fs::write(dir.join("secret"), SECRET).unwrap();
    let cfg = dir.join("serve.toml");
    let alert = |name: &str, rule: &str, group: &str| {
        format!(
            "[[alerts]]\nname = \"{name}\"\nformula = \"goals\"\ngroup = \"{group}\"\n{rule}\nwebhook = \"{hook}\"\nsecret_file = \"secret\"\n"
        )
    };
    std::fs::write(
        &cfg,
        [
            alert(
                "ent-off-track",
                "status_becomes = \"off_track\"",
                "segment=ent",
            ),
            alert(
                "smb-off-track",
                "status_becomes = \"off_track\"",
                "segment=smb",
            ),
            alert("score-drop", "drops_by = 5.0", "all"),
        ]
        .concat(),
    )
    .unwrap();
    let alerts = api::config::read(&cfg).unwrap().alerts;
    common::serve(api::Config {
        alerts,
        ..common::config(&results, Some(&formulas), None)
    });
    // The baseline is recorded before February is published.
    let wait_for = |what: &dyn Fn() -> bool, secs: u64| {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end && !what() {
            std::thread::sleep(Duration::from_millis(50));
        }
        what()
    };
    assert!(wait_for(&|| results.join("alerts.json").is_file(), 10));

    run(&formulas, &results, "2026-02-01").await;
    assert!(
        wait_for(&|| !received.lock().unwrap().accepted.is_empty(), 15),
        "no event"
    );
    // The same numbers again: no new edition, no new event.
    run(&formulas, &results, "2026-02-01").await;
    std::thread::sleep(Duration::from_secs(2));
    let r = received.lock().unwrap();
    assert_eq!(r.bad_signatures, 0);
    assert_eq!(r.attempts, 2, "one failed attempt, one accepted");
    assert_eq!(r.accepted.len(), 1);
    let (id, e) = &r.accepted[0];
    assert_eq!(id, "ent-off-track:goals:2026-02-01:1");
    assert_eq!(e["id"], id.as_str());
    assert_eq!(e["alert"], "ent-off-track");
    assert_eq!(e["period"], "2026-02-01");
    assert_eq!(e["edition"], 1);
    assert_eq!(e["group"], "segment=ent");
    assert_eq!(e["status"], "off_track");
    assert_eq!(e["previous_status"], "on_track");
    assert_eq!(e["score"], 20.0);
    assert_eq!(e["previous_score"], 10.0);
    drop(r);
    let audit = std::fs::read_to_string(results.join("audit.jsonl")).unwrap();
    let sent: Vec<&str> = audit
        .lines()
        .filter(|l| l.contains("\"alert.sent\""))
        .collect();
    assert_eq!(sent.len(), 1, "{audit}");
    assert!(sent[0].contains("attempt 2"), "{}", sent[0]);
}
