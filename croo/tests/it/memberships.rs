//! Dimensions as of each period against an independent computation:
//! `tests/it/data/memberships/make_case.py` wrote the data (a segment
//! history with moves on and between month boundaries, customers without
//! history, one that leaves it) and the expected rows, in plain Python.

use std::path::Path;

use crate::sources::{croo, text};

#[test]
fn segments_as_of_each_period_agree_with_an_independent_computation() {
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/data/memberships");
    let tmp = tempfile::tempdir().unwrap();
    for f in [
        "customers.csv",
        "events.csv",
        "history.csv",
        "formula-end.toml",
        "formula-start.toml",
    ] {
        std::fs::copy(case.join(f), tmp.path().join(f)).unwrap();
    }
    let expected = std::fs::read_to_string(case.join("expected.csv")).unwrap();
    let mut checked = 0;
    for (as_of, file) in [
        ("period_end", "formula-end.toml"),
        ("period_start", "formula-start.toml"),
    ] {
        let o = croo(
            tmp.path(),
            &[
                "run", file, "--from", "2026-01", "--to", "2026-06", "--format", "json",
            ],
            &[],
        );
        assert!(o.status.success(), "{}", text(&o));
        let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let rows = doc["results"].as_array().unwrap();
        let mut groups = 0;
        for line in expected.lines().skip(1).filter(|l| l.starts_with(as_of)) {
            let f: Vec<&str> = line.split(',').collect();
            let (period, segment, population, score) = (
                f[1],
                f[2],
                f[3].parse::<u64>().unwrap(),
                f[4].parse::<f64>().unwrap(),
            );
            let got = rows
                .iter()
                .find(|r| {
                    r["period"] == period
                        && if segment.is_empty() {
                            r["dimension"].is_null()
                        } else {
                            r["dimension"] == "segment" && r["value"] == segment
                        }
                })
                .unwrap_or_else(|| panic!("{as_of} {period} {segment}: no row"));
            assert_eq!(got["population"], population, "{as_of} {period} {segment}");
            let s = got["score"].as_f64().unwrap();
            assert!(
                (s - score).abs() <= 1e-9 * score.abs().max(1.0),
                "{as_of} {period} {segment}: {s} vs {score}"
            );
            groups += 1;
        }
        // No group croo has that the computation has not.
        assert_eq!(rows.len(), groups, "{as_of}");
        checked += groups;
    }
    assert!(checked > 40, "{checked}");
}

/// Spend of three customers in January and February.
const MOVERS_EVENTS: &str = "customer_id,at,amount\n1,2026-01-10T00:00:00Z,100\n1,2026-02-10T00:00:00Z,200\n2,2026-01-10T00:00:00Z,50\n2,2026-02-20T00:00:00Z,60\n3,2026-01-05T00:00:00Z,10\n3,2026-02-05T00:00:00Z,20\n";

/// Customers 1 and 2 move from `smb` to `ent` (15 and exactly 1
/// February); 3 has no history.
const MOVERS_HISTORY: &str = "customer_id,segment,valid_from,valid_to\n1,smb,2025-01-01T00:00:00Z,2026-02-15T00:00:00Z\n1,ent,2026-02-15T00:00:00Z,\n2,smb,2025-06-01T00:00:00Z,2026-02-01T00:00:00Z\n2,ent,2026-02-01T00:00:00Z,\n";

/// The `period_end` formula of the data folder.
fn formula_end() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/data/memberships/formula-end.toml"),
    )
    .unwrap()
}

/// Customers 1 to 3, the events and history given, and `formula.toml`.
fn small_case(dir: &Path, events: &str, history: &str, formula: &str) {
    let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
    write("customers.csv", "customer_id,name\n1,a\n2,b\n3,c\n");
    write("events.csv", events);
    write("history.csv", history);
    write("formula.toml", formula);
}

/// Customers moving between segments show in the shift-share's mix term.
///
/// Customers 1 and 2 move from `smb` to `ent` in February (as of each
/// period's end); 3 has no history: `(none)`. Spend: c1 100 then 200, c2
/// 50 then 60, c3 10 then 20; a group's score is its mean spend, rollup
/// weights 1. January: smb 75 (share 2/3), (none) 10 (1/3), all 53.33;
/// February: ent 130 (2/3), (none) 20 (1/3), all 93.33; change 40.
/// Mix (share1 - share0) x score0 (a group missing in a period takes the
/// other period's score): ent 2/3 x 130 = 86.67, smb -2/3 x 75 = -50,
/// (none) 0; within share1 x (score1 - score0): (none) 1/3 x 10 = 3.33.
/// Mix 36.67 + within 3.33 = 40.
#[test]
fn movers_show_as_mix_in_explain() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    small_case(dir, MOVERS_EVENTS, MOVERS_HISTORY, &formula_end());
    let o = croo(
        dir,
        &[
            "explain",
            "formula.toml",
            "--period",
            "2026-02",
            "--compare",
            "2026-01",
            "--by",
            "segment",
            "--format",
            "json",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let e: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let close = |v: &serde_json::Value, x: f64| {
        let v = v.as_f64().unwrap_or(f64::NAN);
        assert!((v - x).abs() < 1e-9, "{v} vs {x}: {e:#}");
    };
    close(&e["mix_total"], 110.0 / 3.0);
    close(&e["within_total"], 10.0 / 3.0);
}

/// Exclusions per group: customer 3 (no history: `(none)`) spent 10 in
/// January, and `top = max(amount)` counts only amounts above 15 with no
/// default, so 3's `top`, its component and its score are NULL in
/// January: one customer excluded, in `(none)`, under those three causes;
/// nobody in `smb`.
#[test]
fn exclusions_are_counted_per_group() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let formula = formula_end()
        .replace(
            "[score.components.value]\nweight = 1\nexpr = \"spend / 100\"",
            "[measures.top]\nsource = \"events\"\nexpr = \"max(amount)\"\nfilter = \"amount > 15\"\n\n[score.components.value]\nweight = 1\nexpr = \"top / 100\"",
        );
    assert!(formula.contains("top / 100"));
    small_case(
        dir,
        "customer_id,at,amount\n1,2026-01-10T00:00:00Z,100\n2,2026-01-10T00:00:00Z,50\n3,2026-01-05T00:00:00Z,10\n",
        "customer_id,segment,valid_from,valid_to\n1,smb,2025-01-01T00:00:00Z,\n2,smb,2025-06-01T00:00:00Z,\n",
        &formula,
    );
    let o = croo(
        dir,
        &[
            "explain",
            "formula.toml",
            "--period",
            "2026-01",
            "--by",
            "segment",
            "--format",
            "json",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let e: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let expected = serde_json::json!({
        "measure `top` is NULL": 1,
        "component `value` is NULL": 1,
        "score is NULL": 1,
    });
    assert_eq!(e["exclusions"], expected, "{e:#}");
    assert_eq!(
        e["group_exclusions"],
        serde_json::json!({ "(none)": expected }),
        "{e:#}"
    );
    // The manifest of a run keeps them per group too.
    let o = croo(
        dir,
        &[
            "run",
            "formula.toml",
            "--period",
            "2026-01",
            "--format",
            "json",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let run = doc["run_id"].as_str().unwrap();
    let m: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            dir.join("croo-results/runs")
                .join(run)
                .join("manifest.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        m["group_exclusions"]["2026-01-01"],
        serde_json::json!({ "segment=(none)": expected })
    );
}
