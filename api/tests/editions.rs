//! Editions over real HTTP: the current edition by default, `?edition=N`,
//! `?as_of=` (what the board saw), the state on every row; and a schedule
//! of `croo serve` that runs by itself and shows in `/v1/runs`, the audit
//! log and `/metrics` (docs/operations.md).

mod common;

use std::path::Path;
use std::time::Duration;

use api::keys::Role;
use serde_json::Value;

fn sample(formulas: &Path) {
    engine::sample::write(
        formulas,
        &engine::sample::SampleOptions {
            customers: 50,
            months: 2,
            seed: 5,
        },
    )
    .unwrap();
}

/// `copies` more copies of the sample's first October transaction.
fn late_revenue(formulas: &Path, copies: usize) {
    let tx = formulas.join("transactions.csv");
    let mut text = std::fs::read_to_string(&tx).unwrap();
    let line = text
        .lines()
        .find(|l| {
            l.split(',')
                .nth(1)
                .is_some_and(|t| t.starts_with("2026-10"))
        })
        .unwrap()
        .to_string();
    for _ in 0..copies {
        text.push_str(&line);
        text.push('\n');
    }
    std::fs::write(&tx, text).unwrap();
}

fn request(period: &str, restate: Option<&str>, out: &Path) -> engine::RunRequest {
    engine::RunRequest {
        periods: engine::PeriodChoice::One(engine::period::parse_date(period).unwrap()),
        out: out.to_path_buf(),
        detail: false,
        session: engine::SessionOptions::default(),
        publishing: engine::Publishing {
            publisher: engine::editions::Publisher {
                actor: "finance".into(),
                restate: restate.map(str::to_string),
                git: None,
            },
            ..Default::default()
        },
    }
}

fn whole_score(rows: &[engine::ResultRow]) -> f64 {
    rows.iter()
        .find(|r| r.dimension.is_none())
        .and_then(|r| r.score)
        .unwrap()
}

fn config(dir: &Path, keys_file: &Path, schedules: Vec<api::schedules::Schedule>) -> api::Config {
    api::Config {
        results: dir.join("results"),
        formulas: Some(dir.join("formulas")),
        keys: Some(keys_file.to_path_buf()),
        bind: "127.0.0.1:0".parse().unwrap(),
        insecure: false,
        session: engine::SessionOptions {
            threads: Some(2),
            memory_limit: None,
            cluster: None,
            staging: None,
            input_bytes: None,
        },
        request_timeout: Duration::from_secs(30),
        limits: api::guard::Limits::default(),
        schedules,
        alerts: Vec::new(),
    }
}

#[tokio::test]
async fn the_board_sees_what_was_published_at_the_time() {
    let dir = tempfile::tempdir().unwrap().keep();
    let formulas = dir.join("formulas");
    sample(&formulas);
    let file = formulas.join(engine::sample::FORMULA_FILE);
    let results = dir.join("results");

    let loaded = engine::load(&file).unwrap();
    let one = engine::run(
        &loaded,
        &request("2026-10-01", None, &results),
        &chrono::Utc::now,
    )
    .await
    .unwrap();
    let between = chrono::Utc::now();
    std::thread::sleep(Duration::from_millis(20));
    // Late revenue in October, restated.
    late_revenue(&formulas, 3);
    let two = engine::run(
        &loaded,
        &request("2026-10-01", Some("late revenue"), &results),
        &chrono::Utc::now,
    )
    .await
    .unwrap();
    assert_eq!(
        two.manifest.publications[0].outcome,
        engine::editions::Outcome::Restated { edition: 2 }
    );
    let (s1, s2) = (whole_score(&one.rows), whole_score(&two.rows));
    assert_ne!(s1, s2);

    let (keys_file, viewer) = common::one_key(&dir, "board", Role::Viewer);
    let base = common::serve(config(&dir, &keys_file, Vec::new()));
    let client = reqwest::Client::new();
    let get = |path: String| {
        let req = client.get(format!("{base}{path}")).bearer_auth(&viewer);
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let whole = |doc: &Value| -> Value {
        doc["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["dimension"].is_null())
            .cloned()
            .unwrap()
    };
    let p = "/v1/formulas/retail-croo/scores/2026-10";

    let (code, now) = get(p.to_string()).await;
    assert_eq!(code, 200, "{now}");
    assert_eq!(whole(&now)["score"].as_f64(), Some(s2));
    assert_eq!(whole(&now)["edition"], 2);
    assert_eq!(whole(&now)["state"], "final");

    let (code, then) = get(format!("{p}?as_of={}", between.to_rfc3339())).await;
    assert_eq!(code, 200, "{then}");
    assert_eq!(whole(&then)["score"].as_f64(), Some(s1));
    assert_eq!(whole(&then)["edition"], 1);
    assert_eq!(whole(&then)["run_id"], one.manifest.run_id.as_str());

    let (code, e1) = get(format!("{p}?edition=1")).await;
    assert_eq!(code, 200, "{e1}");
    assert_eq!(whole(&e1)["score"].as_f64(), Some(s1));

    // The series endpoint takes the same selectors.
    let (code, series) = get(format!(
        "/v1/formulas/retail-croo/scores?as_of={}",
        between.to_rfc3339()
    ))
    .await;
    assert_eq!(code, 200, "{series}");
    assert_eq!(whole(&series)["score"].as_f64(), Some(s1));

    // Before anything was published, an edition that does not exist, a
    // bad instant, both selectors.
    let (code, body) = get(format!("{p}?as_of=2020-01-01T00:00:00Z")).await;
    assert_eq!(code, 404, "{body}");
    let (code, body) = get(format!("{p}?edition=3")).await;
    assert_eq!(code, 404, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("no edition 3"),
        "{body}"
    );
    let (code, body) = get(format!("{p}?as_of=yesterday")).await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("yesterday"),
        "{body}"
    );
    let (code, _) = get(format!("{p}?edition=1&as_of={}", between.to_rfc3339())).await;
    assert_eq!(code, 400);

    // The editions themselves: who, when, why; no numbers.
    let (code, log) = get("/v1/formulas/retail-croo/editions?period=2026-10".to_string()).await;
    assert_eq!(code, 200, "{log}");
    assert_eq!(log["state"], "final");
    let eds = log["editions"].as_array().unwrap();
    assert_eq!(eds.len(), 2);
    assert_eq!(eds[0]["run_id"], one.manifest.run_id.as_str());
    assert_eq!(eds[1]["reason"], "late revenue");
    assert_eq!(eds[1]["restated"], true);
    let (code, _) = get("/v1/formulas/retail-croo/editions?period=2026-08".to_string()).await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn a_schedule_runs_inside_the_server() {
    let dir = tempfile::tempdir().unwrap().keep();
    let formulas = dir.join("formulas");
    sample(&formulas);
    std::fs::create_dir_all(dir.join("results")).unwrap();
    let (keys_file, admin) = common::one_key(&dir, "ops", Role::Admin);
    // Every two seconds (croner reads a sixth field as seconds).
    let cfg = dir.join("serve.toml");
    std::fs::write(
        &cfg,
        "formulas = \"formulas\"\n[[schedules]]\nname = \"board\"\nformula = \"retail-croo\"\ncron = \"*/2 * * * * *\"\nrun = \"last-complete\"\n",
    )
    .unwrap();
    let schedules = api::config::read(&cfg).unwrap().schedules;
    let base = common::serve(config(&dir, &keys_file, schedules));
    let client = reqwest::Client::new();
    let get = |path: &str| {
        let req = client.get(format!("{base}{path}")).bearer_auth(&admin);
        async move { req.send().await.unwrap().text().await.unwrap() }
    };
    // Until one scheduled run has published October and a later one found
    // it unchanged (each run's outcomes, once this server has ended it).
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let runs: Value = serde_json::from_str(&get("/v1/runs").await).unwrap();
        let outcomes: Vec<String> = runs["runs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["started_by"] == "schedule:board")
            .flat_map(|r| r["outcomes"].as_array().cloned().unwrap_or_default())
            .map(|o| o.as_str().unwrap_or("").to_string())
            .collect();
        if outcomes
            .iter()
            .any(|o| o.contains("2026-10-01: published edition 1"))
            && outcomes.iter().any(|o| o.contains("unchanged: edition 1"))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no scheduled run published and then found nothing new: {runs:#}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let metrics = get("/metrics").await;
    assert!(
        metrics.contains("croo_last_success_timestamp_seconds{formula=\"retail-croo\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("croo_scheduled_runs_total{schedule=\"board\",outcome=\"succeeded\"}"),
        "{metrics}"
    );
    let audit = get("/v1/audit").await;
    assert!(audit.contains("schedule:board"), "{audit}");
    // The last slot is kept for the next start.
    let fired: Value =
        serde_json::from_slice(&std::fs::read(dir.join("results/schedules.json")).unwrap())
            .unwrap();
    assert!(fired["board"].is_string(), "{fired}");
}

/// Over the API a final period changes only with `restate`, and the
/// edition names the key that asked.
#[tokio::test]
async fn a_restatement_over_the_api_names_the_key() {
    let dir = tempfile::tempdir().unwrap().keep();
    let formulas = dir.join("formulas");
    sample(&formulas);
    let results = dir.join("results");
    let loaded = engine::load(&formulas.join(engine::sample::FORMULA_FILE)).unwrap();
    engine::run(
        &loaded,
        &request("2026-10-01", None, &results),
        &chrono::Utc::now,
    )
    .await
    .unwrap();
    late_revenue(&formulas, 2);

    let (keys_file, op) = common::one_key(&dir, "controller", Role::Operator);
    let base = common::serve(config(&dir, &keys_file, Vec::new()));
    let client = reqwest::Client::new();
    let run = |body: &'static str| {
        let client = client.clone();
        let base = base.clone();
        let op = op.clone();
        async move {
            let r: Value = client
                .post(format!("{base}/v1/formulas/retail-croo/runs"))
                .bearer_auth(&op)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let id = r["run_id"].as_str().unwrap().to_string();
            for _ in 0..600 {
                // This server's own status of the run (the manifest is
                // written a moment before the run is over).
                let detail: Value = client
                    .get(format!("{base}/v1/runs/{id}"))
                    .bearer_auth(&op)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                if detail["status"] == "succeeded" || detail["status"] == "failed" {
                    return detail;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("run {id} did not end");
        }
    };
    let detail = run(r#"{"period": "2026-10"}"#).await;
    assert_eq!(detail["status"], "failed", "{detail}");
    let error = detail["error"].as_str().unwrap_or("");
    assert!(
        error.contains("2026-10-01 (edition 1)") && error.contains("score"),
        "{detail}"
    );
    let (code, body) = {
        let r = client
            .post(format!("{base}/v1/formulas/retail-croo/runs"))
            .bearer_auth(&op)
            .header("content-type", "application/json")
            .body(r#"{"period": "2026-10", "restate": "  "}"#)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(code, 400, "{body}");
    let done = run(r#"{"period": "2026-10", "restate": "late revenue"}"#).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert!(
        done["outcomes"][0]
            .as_str()
            .unwrap_or("")
            .contains("2026-10-01: restated as edition 2"),
        "{done}"
    );
    let log = engine::store::read_current(&results).unwrap().editions["retail-croo"]["2026-10-01"]
        .clone();
    assert_eq!(log.editions.len(), 2);
    assert_eq!(log.editions[1].actor, "controller");
    assert_eq!(log.editions[1].reason.as_deref(), Some("late revenue"));
}

/// A slot missed while the server was down runs once at start-up.
#[tokio::test]
async fn a_missed_slot_runs_at_start_up() {
    let dir = tempfile::tempdir().unwrap().keep();
    let formulas = dir.join("formulas");
    sample(&formulas);
    std::fs::create_dir_all(dir.join("results")).unwrap();
    // Yearly (1 January, midnight: no slot comes while the test runs); it
    // last fired more than two years ago, so at least two slots were
    // missed.
    let last = chrono::Utc::now() - chrono::Duration::days(800);
    std::fs::write(
        dir.join("results/schedules.json"),
        serde_json::json!({ "yearly": last.to_rfc3339() }).to_string(),
    )
    .unwrap();
    let cfg = dir.join("serve.toml");
    std::fs::write(
        &cfg,
        "formulas = \"formulas\"\n[[schedules]]\nname = \"yearly\"\nformula = \"retail-croo\"\ncron = \"0 0 1 1 *\"\nrun = \"last-complete\"\n",
    )
    .unwrap();
    let schedules = api::config::read(&cfg).unwrap().schedules;
    let (keys_file, admin) = common::one_key(&dir, "ops", Role::Admin);
    let base = common::serve(config(&dir, &keys_file, schedules));
    let client = reqwest::Client::new();
    let count = || {
        let req = client.get(format!("{base}/v1/runs")).bearer_auth(&admin);
        async move {
            let runs: Value = req.send().await.unwrap().json().await.unwrap();
            runs["runs"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["started_by"] == "schedule:yearly")
                .count()
        }
    };
    for _ in 0..300 {
        if count().await > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Once, not once per missed slot.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count().await, 1, "the missed slot ran once at start-up");
    let fired: Value =
        serde_json::from_slice(&std::fs::read(dir.join("results/schedules.json")).unwrap())
            .unwrap();
    let now_fired = engine::editions::parse_time(fired["yearly"].as_str().unwrap()).unwrap();
    assert!(now_fired > last + chrono::Duration::hours(2), "{fired}");
}
