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
