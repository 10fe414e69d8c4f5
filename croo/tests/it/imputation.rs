//! Imputation and coverage against numpy:
//! `tests/it/data/imputation/make_case.py` computed each variant's group
//! scores, contributions and imputed counts.

use crate::sources::{croo, group_row, only_manifest, text};

#[test]
fn imputed_and_reweighted_scores_agree_with_numpy() {
    let tmp = crate::sources::data_case("imputation");
    let dir = tmp.path();
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    for variant in ["zero", "mean", "median", "group", "coverage", "strict"] {
        let o = croo(
            dir,
            &[
                "run",
                &format!("{variant}.toml"),
                "--period",
                "2026-01",
                "--format",
                "json",
                "--out",
                variant,
            ],
            &[],
        );
        assert!(o.status.success(), "{variant}: {}", text(&o));
        let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        for group in ["all", "smb", "ent"] {
            let r = group_row(&doc, group);
            let e = &expected[variant][group];
            let close = |g: &serde_json::Value, w: &serde_json::Value, what: &str| {
                let (g, w) = (g.as_f64().unwrap(), w.as_f64().unwrap());
                assert!(
                    (g - w).abs() <= 1e-9 * w.abs().max(1.0),
                    "{variant} {group} {what}: {g} vs {w}"
                );
            };
            assert_eq!(r["population"], e["population"], "{variant} {group}");
            assert_eq!(r["included"], e["included"], "{variant} {group}");
            close(&r["score"], &e["score"], "score");
            close(
                &r["components"]["value"]["contribution"],
                &e["value_contribution"],
                "value contribution",
            );
            let imputed = r["components"]["value"]["imputed"].as_u64().unwrap_or(0);
            assert_eq!(
                imputed,
                e["imputed"].as_u64().unwrap(),
                "{variant} {group} imputed"
            );
            // The contributions add up to the score.
            let sum: f64 = ["value", "ease"]
                .iter()
                .map(|c| r["components"][c]["contribution"].as_f64().unwrap())
                .sum();
            assert!(
                (sum - r["score"].as_f64().unwrap()).abs() < 1e-9,
                "{variant} {group}"
            );
        }
    }
    // The manifest records what the missing customers got.
    let m = only_manifest(&dir.join("median"));
    let s = m["population_stats"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["function"] == "impute_median")
        .unwrap();
    assert_eq!(
        s["n"],
        14 - expected["median"]["all"]["imputed"].as_u64().unwrap()
    );
    assert!(s["value"].as_f64().is_some(), "{s}");
    // A group_median of a dimension the formula lacks: an error at its place.
    let bad = std::fs::read_to_string(dir.join("group.toml"))
        .unwrap()
        .replace("group_median = \"segment\"", "group_median = \"region\"");
    std::fs::write(dir.join("bad.toml"), bad).unwrap();
    let o = croo(dir, &["check", "bad.toml"], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("no dimension `region`"), "{}", text(&o));
}
