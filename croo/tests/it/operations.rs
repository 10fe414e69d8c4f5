//! Finance operations through the binary: editions that are never
//! overwritten, unchanged reruns that compute nothing, restatements,
//! history, lookback, `--period current`, freshness and `--last-complete`
//! (docs/operations.md). Dates: the sample's data ends in October 2026, and
//! the clock is the real one (after it), so October has ended.

use std::path::Path;

use crate::sources::{croo, text};

fn sample(dir: &Path, settle: Option<&str>) {
    let o = croo(
        dir,
        &["sample", "--out", "s", "--customers", "60", "--months", "3"],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    if let Some(settle) = settle {
        let f = dir.join("s/retail-croo.toml");
        let mut t = std::fs::read_to_string(&f).unwrap();
        t.push_str(&format!("\n[operations]\nsettle = \"{settle}\"\n"));
        std::fs::write(&f, t).unwrap();
    }
}

/// Lets every event source have periods without rows (the open month).
fn allow_empty(dir: &Path) {
    let f = dir.join("s/retail-croo.toml");
    let t = std::fs::read_to_string(&f).unwrap();
    let mut out = String::new();
    for line in t.lines() {
        out.push_str(line);
        out.push('\n');
        if ["time = \"started_at\"", "time = \"ts\"", "time = \"at\""].contains(&line.trim()) {
            out.push_str("empty_periods = \"allow\"\n");
        }
    }
    std::fs::write(&f, out).unwrap();
}

fn run_json(dir: &Path, args: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let mut all = vec!["run", "s/retail-croo.toml", "--format", "json"];
    all.extend(args);
    let o = croo(dir, &all, &[]);
    let doc = serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null);
    (o.status.code(), doc, text(&o))
}

/// Appends copies of the first transaction of `month` (`2026-10`): late
/// revenue that lands in that month.
fn late_transactions(dir: &Path, month: &str, copies: usize) {
    let path = dir.join("s/transactions.csv");
    let t = std::fs::read_to_string(&path).unwrap();
    let line = t
        .lines()
        .find(|l| l.split(',').nth(1).is_some_and(|ts| ts.starts_with(month)))
        .unwrap_or_else(|| panic!("no transaction in {month}"))
        .to_string();
    let mut t = t;
    for _ in 0..copies {
        t.push_str(&line);
        t.push('\n');
    }
    std::fs::write(&path, t).unwrap();
}

fn whole(doc: &serde_json::Value, period: &str) -> serde_json::Value {
    doc["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["period"] == period && r["dimension"].is_null())
        .cloned()
        .unwrap_or_else(|| panic!("no whole-population row for {period}: {doc:#}"))
}

fn editions(dir: &Path, period: &str) -> serde_json::Value {
    let o = croo(
        dir,
        &[
            "history",
            "s/retail-croo.toml",
            "--period",
            period,
            "--format",
            "json",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn a_final_period_changes_only_by_restatement() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    sample(dir, None);

    // First publication: edition 1, final (settle 0, October has ended).
    let (code, first, out) = run_json(dir, &["--period", "2026-10", "--actor", "alice"]);
    assert_eq!(code, Some(0), "{out}");
    let row = whole(&first, "2026-10-01");
    assert_eq!(row["state"], "final");
    assert_eq!(row["edition"], 1);
    assert_eq!(first["publications"][0]["outcome"], "published");

    // The same inputs: nothing computed, nothing published.
    let (code, again, out) = run_json(dir, &["--period", "2026-10"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(again["outcome"], "unchanged", "{again:#}");
    assert_eq!(again["publications"][0]["outcome"], "unchanged");
    assert_eq!(again["publications"][0]["edition"], 1);
    assert_eq!(whole(&again, "2026-10-01")["score"], row["score"]);
    // Its manifest says so; it wrote no results.
    let run_dir = dir
        .join("croo-results/runs")
        .join(again["run_id"].as_str().unwrap());
    assert!(!run_dir.join("results.parquet").exists());
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["outcome"], "unchanged");

    // Late revenue in October: the run refuses to change a final period.
    late_transactions(dir, "2026-10", 40);
    let (code, _, out) = run_json(dir, &["--period", "2026-10"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("2026-10-01 is final at edition 1"), "{out}");
    assert!(
        out.contains("score"),
        "the first numbers that change: {out}"
    );
    assert!(out.contains("--restate"), "{out}");
    let h = editions(dir, "2026-10");
    assert_eq!(h["editions"].as_array().unwrap().len(), 1, "{h:#}");

    // Restated with a reason: edition 2, the same numbers as a fresh
    // computation of the new data in an empty store.
    let (code, restated, out) = run_json(
        dir,
        &[
            "--period",
            "2026-10",
            "--restate",
            "--reason",
            "late refunds",
            "--actor",
            "bob",
        ],
    );
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(restated["publications"][0]["outcome"], "restated");
    let new = whole(&restated, "2026-10-01");
    assert_eq!(new["edition"], 2);
    assert_ne!(
        new["score"], row["score"],
        "the late data changed the score"
    );
    let (code, fresh, out) = run_json(dir, &["--period", "2026-10", "--out", "fresh"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(whole(&fresh, "2026-10-01")["score"], new["score"]);

    // The history: two editions, who and why; edition 1 still readable.
    let h = editions(dir, "2026-10");
    let eds = h["editions"].as_array().unwrap();
    assert_eq!(eds.len(), 2);
    assert_eq!(eds[0]["actor"], "alice");
    assert_eq!(eds[1]["actor"], "bob");
    assert_eq!(eds[1]["reason"], "late refunds");
    assert_eq!(eds[1]["restated"], true);
    assert_eq!(h["state"], "final");
    let first_run = eds[0]["run_id"].as_str().unwrap();
    assert!(
        dir.join("croo-results/runs")
            .join(first_run)
            .join("results.parquet")
            .is_file()
    );

    // What differs: the transactions' files and rows, the scores.
    let o = croo(
        dir,
        &[
            "history",
            "retail-croo",
            "--period",
            "2026-10-01",
            "--compare",
            "1",
            "2",
            "--format",
            "json",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let c: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(c["formula_changed"], false);
    let tx = c["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == "transactions")
        .unwrap();
    assert_eq!(tx["files_changed"], true);
    let (a, b) = (
        tx["rows_read"][0].as_u64().unwrap(),
        tx["rows_read"][1].as_u64().unwrap(),
    );
    assert_eq!(b, a + 40, "40 late rows read");
    let interactions = c["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == "interactions")
        .unwrap();
    assert_eq!(interactions["files_changed"], false);
    let scores = c["scores"].as_array().unwrap();
    assert!(scores[0]["dimension"].is_null());
    assert_eq!(scores[0]["a"], row["score"]);
    assert_eq!(scores[0]["b"], new["score"]);
    // And as a table.
    let o = croo(
        dir,
        &[
            "history",
            "s/retail-croo.toml",
            "--period",
            "2026-10",
            "--compare",
            "1",
            "2",
        ],
        &[],
    );
    let t = text(&o);
    assert!(
        t.contains("formula: the same") && t.contains("transactions") && t.contains("changed"),
        "{t}"
    );

    // An unknown edition is an error naming the ones there are.
    let o = croo(
        dir,
        &[
            "history",
            "retail-croo",
            "--period",
            "2026-10",
            "--compare",
            "1",
            "7",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("no edition 7 (it has 1 to 2)"),
        "{}",
        text(&o)
    );
}

#[test]
fn lookback_recomputes_earlier_periods_and_keeps_unchanged_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // A long settle keeps August to October provisional.
    sample(dir, Some("3650d"));
    let (code, first, out) = run_json(dir, &["--from", "2026-08", "--to", "2026-10"]);
    assert_eq!(code, Some(0), "{out}");
    for p in ["2026-08-01", "2026-09-01", "2026-10-01"] {
        let r = whole(&first, p);
        assert_eq!(r["state"], "provisional", "{p}");
        assert_eq!(r["edition"], 1, "{p}");
    }
    // Late revenue in September; a run of October looking back one period.
    late_transactions(dir, "2026-09", 25);
    let (code, doc, out) = run_json(dir, &["--period", "2026-10", "--lookback", "1"]);
    assert_eq!(code, Some(0), "{out}");
    let outcomes: Vec<(String, String, u64)> = doc["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["period"].as_str().unwrap().to_string(),
                p["outcome"].as_str().unwrap().to_string(),
                p["edition"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        vec![
            ("2026-09-01".to_string(), "published".to_string(), 2),
            ("2026-10-01".to_string(), "unchanged".to_string(), 1),
        ]
    );
    // The overview: every period, its state and current edition.
    let o = croo(
        dir,
        &["history", "s/retail-croo.toml", "--format", "json"],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let all: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let seen: Vec<(String, String, u64)> = all["periods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["period"].as_str().unwrap().to_string(),
                p["state"].as_str().unwrap().to_string(),
                p["edition"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("2026-08-01".to_string(), "provisional".to_string(), 1),
            ("2026-09-01".to_string(), "provisional".to_string(), 2),
            ("2026-10-01".to_string(), "provisional".to_string(), 1),
        ]
    );
    // August was not asked for: it stays at edition 1.
    assert_eq!(
        editions(dir, "2026-08")["editions"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_ne!(
        whole(&doc, "2026-09-01")["score"],
        whole(&first, "2026-09-01")["score"]
    );
}

#[test]
fn the_current_period_is_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    sample(dir, None);
    // The sample has no data this month: allow empty periods to see the
    // state of the open one.
    allow_empty(dir);
    let (code, doc, out) = run_json(dir, &["--period", "current"]);
    assert_eq!(code, Some(0), "{out}");
    let today = chrono::Utc::now().date_naive();
    let p = doc["publications"][0]["period"]
        .as_str()
        .unwrap()
        .to_string();
    let first: chrono::NaiveDate = p.parse().unwrap();
    assert!(
        first <= today && today < first + chrono::Months::new(1),
        "{p}"
    );
    assert_eq!(doc["publications"][0]["state"], "open");
}

#[test]
fn last_complete_waits_for_fresh_data() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    sample(dir, None);
    // Without freshness: the latest period with data (the sample ends in
    // October; November has none).
    let (code, doc, out) = run_json(dir, &["--last-complete"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(doc["publications"][0]["period"], "2026-10-01", "{out}");
    assert!(
        out.contains("2026-10-01 is the latest complete period"),
        "{out}"
    );
    // The latest times are recorded: a run that reads the same files
    // takes them from here instead of scanning the sources again.
    let manifest = |doc: &serde_json::Value| -> serde_json::Value {
        let run = doc["run_id"].as_str().unwrap();
        serde_json::from_slice(
            &std::fs::read(
                dir.join("croo-results/runs")
                    .join(run)
                    .join("manifest.json"),
            )
            .unwrap(),
        )
        .unwrap()
    };
    let latest_of = |m: &serde_json::Value| {
        m["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "transactions")
            .unwrap()["latest"]
            .clone()
    };
    let first = latest_of(&manifest(&doc));
    assert!(
        first.as_str().is_some_and(|t| t.starts_with("2026-10")),
        "{first}"
    );
    let (code, again, out) = run_json(dir, &["--last-complete"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(again["outcome"], "unchanged", "{out}");
    assert_eq!(latest_of(&manifest(&again)), first);

    // Transactions must reach each period's end (less a day): their
    // latest is in October, before its end less a day only if the last
    // transaction is earlier than 31 October; September is complete.
    let f = dir.join("s/retail-croo.toml");
    let t = std::fs::read_to_string(&f).unwrap().replace(
        "time = \"ts\"",
        "time = \"ts\"\nfreshness = { warn_after = \"1h\", error_after = \"1d\" }",
    );
    std::fs::write(&f, t).unwrap();
    let latest = std::fs::read_to_string(dir.join("s/transactions.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').nth(1).map(str::to_string))
        .max()
        .unwrap();
    let (code, doc, out) = run_json(dir, &["--last-complete"]);
    assert_eq!(code, Some(0), "{out}");
    let expected = if latest.as_str() >= "2026-10-31" {
        "2026-10-01"
    } else {
        "2026-09-01"
    };
    assert_eq!(
        doc["publications"][0]["period"], expected,
        "latest {latest}: {out}"
    );

    // A transaction after October's end: October is complete, and the
    // source is fresh for it (no warning).
    let path = dir.join("s/transactions.csv");
    let mut t = std::fs::read_to_string(&path).unwrap();
    let line = t.lines().nth(1).unwrap().to_string();
    let mut fields: Vec<&str> = line.split(',').collect();
    fields[1] = "2026-11-01T00:30:00Z";
    t.push_str(&fields.join(","));
    t.push('\n');
    std::fs::write(&path, t).unwrap();
    let (code, doc, out) = run_json(dir, &["--last-complete"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(doc["publications"][0]["period"], "2026-10-01", "{out}");
    assert!(!out.contains("is stale"), "{out}");

    // No period qualifies: the source and its latest time are named.
    let t = std::fs::read_to_string(&f)
        .unwrap()
        .replace("uri = \"transactions.csv\"", "uri = \"empty.csv\"")
        .replace("time = \"ts\"", "time = \"ts\"\nempty_periods = \"allow\"");
    std::fs::write(&f, t).unwrap();
    std::fs::write(
        dir.join("s/empty.csv"),
        "customer_id,ts,amount,kind,product_id\n",
    )
    .unwrap();
    let (code, _, out) = run_json(dir, &["--last-complete"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("source `transactions` has no rows at all"),
        "{out}"
    );
}

#[test]
fn stale_sources_are_warned_about() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    sample(dir, None);
    let f = dir.join("s/retail-croo.toml");
    let t = std::fs::read_to_string(&f).unwrap().replace(
        "time = \"ts\"",
        "time = \"ts\"\nfreshness = { warn_after = \"0s\" }",
    );
    std::fs::write(&f, t).unwrap();
    // September's end (1 October) is before the latest transaction: fresh.
    // November has nothing after its end: stale, warned, in the manifest.
    let (code, _, out) = run_json(dir, &["--period", "2026-09"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("is stale"), "{out}");
    allow_empty(dir);
    let (code, doc, out) = run_json(dir, &["--period", "2026-11"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("source `transactions` is stale for 2026-11-01"),
        "{out}"
    );
    let w = doc["warnings"].as_array().unwrap();
    assert!(
        w.iter().any(|w| w.as_str().unwrap().contains("is stale")),
        "{w:?}"
    );
}

/// `--compare last-year`: the same month of the year before.
#[test]
fn explain_compares_with_the_same_period_last_year() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let o = croo(
        dir,
        &[
            "sample",
            "--out",
            "s",
            "--customers",
            "40",
            "--months",
            "13",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = croo(
        dir,
        &[
            "explain",
            "s/retail-croo.toml",
            "--period",
            "2026-10",
            "--compare",
            "last-year",
            "--format",
            "json",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let e: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(e["period"], "2026-10-01");
    assert_eq!(e["compare"], "2025-10-01");
    let change = e["change"].as_f64().unwrap();
    let (after, before) = (
        e["score"].as_f64().unwrap(),
        e["score_before"].as_f64().unwrap(),
    );
    assert!((change - (after - before)).abs() < 1e-9, "{e:#}");
}
