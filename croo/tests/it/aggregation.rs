//! Geometric and harmonic scores against numpy:
//! `tests/it/data/aggregation/make_case.py` computed every group's score,
//! component rollups and contributions (log shares, reciprocal shares).

use crate::sources::{croo, group_row, text};

fn case() -> tempfile::TempDir {
    crate::sources::data_case("aggregation")
}

#[test]
fn geometric_and_harmonic_scores_add_up_and_agree_with_numpy() {
    let tmp = case();
    let dir = tmp.path();
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    for method in ["geometric", "harmonic"] {
        let o = croo(
            dir,
            &[
                "run",
                &format!("{method}.toml"),
                "--period",
                "2026-01",
                "--format",
                "json",
            ],
            &[],
        );
        assert!(o.status.success(), "{}", text(&o));
        let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        for group in ["all", "smb", "ent"] {
            let r = group_row(&doc, group);
            let e = &expected[method][group];
            let close = |g: &serde_json::Value, w: &serde_json::Value, what: &str| {
                let (g, w) = (g.as_f64().unwrap(), w.as_f64().unwrap());
                assert!(
                    (g - w).abs() <= 1e-9 * w.abs().max(1.0),
                    "{method} {group} {what}: {g} vs {w}"
                );
            };
            close(&r["score"], &e["score"], "score");
            let mut sum = 0.0;
            for c in ["value", "ease"] {
                close(&r["components"][c]["rollup"], &e[c]["rollup"], c);
                close(
                    &r["components"][c]["contribution"],
                    &e[c]["contribution"],
                    c,
                );
                sum += r["components"][c]["contribution"].as_f64().unwrap();
            }
            // The decomposition adds up to the score.
            assert!(
                (sum - r["score"].as_f64().unwrap()).abs() < 1e-9,
                "{method} {group}"
            );
        }
    }
}

/// A component that reaches 0 stops a geometric run, naming it and how
/// many customers; `shift` makes it valid; `croo check` warns beforehand.
#[test]
fn a_component_at_zero_needs_a_shift() {
    let tmp = case();
    let dir = tmp.path();
    let f = std::fs::read_to_string(dir.join("geometric.toml"))
        .unwrap()
        .replace(
            "expr = \"1 / (1 + contacts)\"",
            "expr = \"minmax(contacts)\"",
        );
    std::fs::write(dir.join("zero.toml"), &f).unwrap();
    let o = croo(dir, &["check", "zero.toml"], &[]);
    assert!(
        text(&o).contains("component `ease` is not known to stay above 0"),
        "{}",
        text(&o)
    );
    let o = croo(dir, &["run", "zero.toml", "--period", "2026-01"], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("component `ease` + shift (0) is 0 or less for"),
        "{out}"
    );
    assert!(out.contains("2026-01-01"), "{out}");
    std::fs::write(
        dir.join("zero.toml"),
        f.replace(
            "method = \"geometric\"",
            "method = \"geometric\"\nshift = 1",
        ),
    )
    .unwrap();
    let o = croo(
        dir,
        &[
            "run",
            "zero.toml",
            "--period",
            "2026-01",
            "--format",
            "json",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    // `method` with `expr`, and `shift` without a method, are mistakes.
    let bad = f.replace("[score]\n", "[score]\nexpr = \"value\"\n");
    std::fs::write(dir.join("bad.toml"), bad).unwrap();
    let o = croo(dir, &["check", "bad.toml"], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("keep one"), "{}", text(&o));
}

/// A customer's contributions under a geometric mean are its shares of
/// its score: on the customer pages they add up to the customer's score.
#[test]
fn customer_contributions_add_up_under_a_geometric_mean() {
    let tmp = case();
    let dir = tmp.path();
    let o = croo(
        dir,
        &["run", "geometric.toml", "--period", "2026-01", "--detail"],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = croo(
        dir,
        &[
            "customers",
            "geometric.toml",
            "--period",
            "2026-01",
            "--limit",
            "20",
            "--format",
            "json",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let customers = doc["customers"].as_array().unwrap();
    assert_eq!(customers.len(), 12);
    for c in customers {
        let sum: f64 = ["value", "ease"]
            .iter()
            .map(|k| c["components"][k]["contribution"].as_f64().unwrap())
            .sum();
        let score = c["score"].as_f64().unwrap();
        assert!((sum - score).abs() < 1e-9, "{c}");
    }
}
