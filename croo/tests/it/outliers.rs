//! Winsorisation against numpy: `tests/it/data/outliers/make_case.py`
//! computed the 10% and 90% quantiles (linear interpolation), how many
//! values changed, and each group's minmax-normalised score.

use crate::sources::{croo, only_manifest, text};

#[test]
fn winsorised_measures_agree_with_numpy() {
    let tmp = crate::sources::data_case("outliers");
    let dir = tmp.path();
    let e: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
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
    let close = |g: f64, w: f64, what: &str| {
        assert!(
            (g - w).abs() <= 1e-9 * w.abs().max(1.0),
            "{what}: {g} vs {w}"
        )
    };
    for r in doc["results"].as_array().unwrap() {
        let g = r["value"].as_str().unwrap_or("all");
        close(r["score"].as_f64().unwrap(), e[g].as_f64().unwrap(), g);
    }
    // The manifest: the quantiles and the points changed.
    let m = only_manifest(&dir.join("croo-results"));
    let s = m["population_stats"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["function"] == "winsorise")
        .unwrap();
    close(
        s["min"].as_f64().unwrap(),
        e["lower"].as_f64().unwrap(),
        "lower",
    );
    close(
        s["max"].as_f64().unwrap(),
        e["upper"].as_f64().unwrap(),
        "upper",
    );
    assert_eq!(s["changed"], e["changed"]);
    assert_eq!(s["n"], e["n"]);
    // Quantiles the wrong way round: an error at the key.
    let bad = std::fs::read_to_string(dir.join("formula.toml"))
        .unwrap()
        .replace("lower = 0.1, upper = 0.9", "lower = 0.9, upper = 0.1");
    std::fs::write(dir.join("bad.toml"), bad).unwrap();
    let o = croo(dir, &["check", "bad.toml"], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("0 <= lower < upper <= 1"), "{}", text(&o));
    // COINr's rule: one point winsorised on this data; with two far
    // outliers and one point allowed, a log transform.
    for (file, key, function) in [
        ("coinr.toml", "coinr", "winsorise_coinr"),
        ("coinr_log.toml", "coinr_log", "log_coinr"),
    ] {
        let out = format!("out-{key}");
        let o = croo(
            dir,
            &[
                "run", file, "--period", "2026-01", "--format", "json", "--out", &out,
            ],
            &[],
        );
        assert!(o.status.success(), "{}", text(&o));
        let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        for r in doc["results"].as_array().unwrap() {
            let g = r["value"].as_str().unwrap_or("all");
            close(
                r["score"].as_f64().unwrap(),
                e[key][g].as_f64().unwrap(),
                &format!("{key} {g}"),
            );
        }
        let m = only_manifest(&dir.join(&out));
        let s = m["population_stats"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["function"] == function)
            .unwrap_or_else(|| panic!("{key}: {m:#}"));
        assert_eq!(s["changed"], e[key]["changed"], "{key}");
    }
}
