//! `croo explain --uncertainty` across methods against numpy:
//! `tests/it/data/uncertainty/make_case.py` scored every combination of
//! the formula's declared alternatives (winsorisation, aggregation method,
//! a component's normalisation and imputation, another's normalisation)
//! and computed each choice's first-order index exactly over them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::sources::{croo, text};

fn case() -> (tempfile::TempDir, PathBuf, serde_json::Value) {
    let tmp = crate::sources::data_case("uncertainty");
    let dir = tmp.path().to_path_buf();
    let expected =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    (tmp, dir, expected)
}

fn explain(dir: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "explain",
        "formula.toml",
        "--period",
        "2026-01",
        "--by",
        "segment",
        "--format",
        "json",
    ];
    args.extend(extra);
    let o = croo(dir, &args, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The type-7 quantile of the discrete distribution `sorted` (every value
/// equally likely) when `q` is not within 0.02 of a jump of its CDF
/// (where a sample's quantile may fall on either side): `None` there.
fn clear_quantile(sorted: &[f64], q: f64) -> Option<f64> {
    let n = sorted.len() as f64;
    let below = |x: f64| sorted.iter().filter(|v| **v <= x).count() as f64 / n;
    let mut values = sorted.to_vec();
    values.dedup();
    if values.iter().any(|v| (below(*v) - q).abs() < 0.02) {
        return None;
    }
    values.into_iter().find(|v| below(*v) > q)
}

#[test]
fn draws_scores_and_indices_agree_with_numpy() {
    let (_tmp, dir, expected) = case();
    let doc = explain(
        &dir,
        &[
            "--uncertainty",
            "4000",
            "--spread",
            "0",
            "--seed",
            "11",
            "--draws",
            "draws.csv",
            "--detail",
        ],
    );
    let u = &doc["uncertainty"];
    let close = |a: f64, b: f64, what: &str| {
        assert!(
            (a - b).abs() <= 1e-9 * b.abs().max(1.0),
            "{what}: {a} vs {b}"
        )
    };
    // Every draw's group scores and ranks are those numpy computed for
    // its configuration.
    let configs = expected["configurations"].as_array().unwrap();
    let csv = std::fs::read_to_string(dir.join("draws.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let at = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let mut seen = BTreeMap::new();
    let mut n = 0;
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        let config = configs
            .iter()
            .find(|c| {
                [
                    "winsorise",
                    "method",
                    "normalise.value",
                    "impute.value",
                    "normalise.ease",
                ]
                .iter()
                .all(|f| c[*f].as_str() == Some(cells[at(f)]))
            })
            .unwrap_or_else(|| panic!("no configuration for {line}"));
        *seen
            .entry(
                line.split(',')
                    .skip(1)
                    .take(8)
                    .collect::<Vec<_>>()
                    .join(","),
            )
            .or_insert(0) += 1;
        for g in ["north", "south", "east", "west"] {
            let score: f64 = cells[at(&format!("score.{g}"))].parse().unwrap();
            close(score, config["scores"][g].as_f64().unwrap(), g);
            assert_eq!(
                cells[at(&format!("rank.{g}"))],
                config["ranks"][g].to_string(),
                "{line}"
            );
        }
        assert_eq!(cells[at("weight.value")], "0.5");
        n += 1;
    }
    assert_eq!(n, 4000);
    assert_eq!(seen.len(), 48, "every configuration is drawn");
    // The nominal configuration, and the rank intervals of the 48
    // equally likely configurations.
    for g in u["groups"].as_array().unwrap() {
        let name = g["value"].as_str().unwrap();
        close(
            g["nominal"].as_f64().unwrap(),
            expected["nominal"][name].as_f64().unwrap(),
            name,
        );
        assert_eq!(g["rank_nominal"], expected["nominal_ranks"][name]);
        let dist: Vec<f64> = expected["rank_distribution"][name]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        for (q, key) in [(0.05, "rank_p05"), (0.5, "rank_median"), (0.95, "rank_p95")] {
            if let Some(want) = clear_quantile(&dist, q) {
                assert_eq!(g[key].as_f64().unwrap(), want, "{name} {key}");
            }
        }
    }
    // First-order indices: the draws estimate the exact ones (each level
    // has about 4000 / levels draws; the estimator's error is a few
    // thousandths here).
    let sensitivity = u["sensitivity"].as_array().unwrap();
    assert_eq!(sensitivity.len(), 5, "{sensitivity:?}");
    for (factor, exact) in expected["first_order"].as_object().unwrap() {
        let s = sensitivity
            .iter()
            .find(|s| s["factor"] == factor.as_str())
            .unwrap_or_else(|| panic!("no index for {factor}"));
        let got = s["first_order"].as_f64().unwrap();
        assert!(
            (got - exact.as_f64().unwrap()).abs() < 0.02,
            "{factor}: {got} vs {exact}"
        );
    }
    // Largest first: `method` and `normalise.ease` (0.141) before
    // `normalise.value` (0.044).
    assert_eq!(sensitivity[4]["factor"], "normalise.value");
    // Customers: nominal ranks exactly, rank intervals where clear.
    let customers = u["customers"].as_array().unwrap();
    assert_eq!(customers.len(), 30);
    for c in customers {
        let key = c["key"].as_str().unwrap();
        assert_eq!(
            c["rank_nominal"], expected["customer_nominal_ranks"][key],
            "{key}"
        );
        let mut dist: Vec<f64> = expected["customer_ranks"][key]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_f64())
            .collect();
        dist.sort_by(f64::total_cmp);
        if let Some(want) = clear_quantile(&dist, 0.5) {
            assert_eq!(c["rank_median"].as_f64().unwrap(), want, "customer {key}");
        }
    }
}

/// The same seed gives the same bits on one thread or three, weights
/// drawn as well; the weights are factors of their own.
#[test]
fn the_analysis_is_the_same_on_any_thread_count() {
    let (_tmp, dir, _) = case();
    let args = |t: &'static str, f: &'static str| {
        vec![
            "--uncertainty",
            "300",
            "--seed",
            "5",
            "--draws",
            f,
            "--detail",
            "--threads",
            t,
        ]
    };
    let one = explain(&dir, &args("1", "one.csv"));
    let three = explain(&dir, &args("3", "three.csv"));
    assert_eq!(one, three);
    assert_eq!(
        std::fs::read(dir.join("one.csv")).unwrap(),
        std::fs::read(dir.join("three.csv")).unwrap()
    );
    let factors: Vec<&str> = one["uncertainty"]["factors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        factors,
        [
            "winsorise",
            "method",
            "normalise.value",
            "impute.value",
            "weight.value",
            "normalise.ease",
            "weight.ease",
            "weight.tenure"
        ]
    );
}

/// A geometric mean drawn with a normalisation that goes below -shift is
/// refused before any draw, naming the component; alternatives that
/// cannot apply are errors at their line.
#[test]
fn impossible_alternatives_are_refused() {
    let (_tmp, dir, _) = case();
    let formula = std::fs::read_to_string(dir.join("formula.toml")).unwrap();
    std::fs::write(
        dir.join("zscore.toml"),
        formula.replace(
            "alternatives = { normalise = [\"minmax\"] }",
            "alternatives = { normalise = [\"zscore\"] }",
        ),
    )
    .unwrap();
    let o = croo(
        &dir,
        &[
            "explain",
            "zscore.toml",
            "--period",
            "2026-01",
            "--uncertainty",
            "10",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("component `ease` normalised by zscore"),
        "{}",
        text(&o)
    );
    std::fs::write(
        dir.join("bad.toml"),
        formula.replace(
            "expr = \"clamp(age / 24, 0, 1)\"",
            "expr = \"clamp(age / 24, 0, 1)\"\nalternatives = { normalise = [\"minmax\"], impute = [\"avg\"] }",
        ),
    )
    .unwrap();
    let o = croo(&dir, &["check", "bad.toml"], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("which calls none"), "{t}");
    assert!(t.contains("`alternatives.impute = \"avg\"`"), "{t}");
    assert!(t.contains("bad.toml:56:"), "{t}");
}
