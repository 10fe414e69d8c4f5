//! `croo experiment` against an independent computation:
//! `tests/it/data/experiment/make_case.py` wrote the data (a chatbot arm
//! planted at +15 in smb and -12 in ent, exposures before and during the
//! first month, customers in both arms, another experiment's rows) and the
//! expected numbers with numpy and scipy (the formula's minmax normalised
//! against the control arm, delta-method means, Welch intervals, CUPED).

use std::path::Path;

use crate::sources::{croo, text};

fn case() -> tempfile::TempDir {
    crate::sources::data_case("experiment")
}

/// The numbers `make_case.py` computed.
fn expected() -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/data/experiment/expected.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

const ARGS: &[&str] = &[
    "experiment",
    "formula.toml",
    "--experiment",
    "chatbot-q1",
    "--assignments",
    "assignments.csv",
    "--from",
    "2026-02",
    "--to",
    "2026-03",
    "--pre-from",
    "2026-01",
    "--pre-to",
    "2026-01",
    "--format",
    "json",
];

#[test]
fn lifts_agree_with_numpy_and_a_failed_guardrail_exits_1() {
    let tmp = case();
    let dir = tmp.path();
    let expected = expected();
    let mut args = ARGS.to_vec();
    args.extend([
        "--guardrail",
        "segment=ent=0.5",
        "--guardrail",
        "segment=smb=0.5",
    ]);
    let o = croo(dir, &args, &[]);
    // ent's guardrail fails: exit 1, the report still printed.
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("guardrail failed: chatbot in segment=ent")
    );
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let arm = &r["arms"][0];
    assert_eq!(arm["arm"], "chatbot");
    let close = |got: &serde_json::Value, want: &serde_json::Value, what: &str| {
        for k in ["control", "treatment", "absolute", "lower", "upper", "p"] {
            let (g, w) = (got[k].as_f64().unwrap(), want[k].as_f64().unwrap());
            assert!(
                (g - w).abs() <= 1e-8 * w.abs().max(1.0),
                "{what} {k}: {g} vs {w}"
            );
        }
    };
    close(&arm["overall"]["lift"], &expected["overall"], "overall");
    assert_eq!(
        arm["overall"]["treatment_customers"],
        expected["overall"]["n_t"]
    );
    assert_eq!(
        arm["overall"]["control_customers"],
        expected["overall"]["n_c"]
    );
    for seg in ["smb", "ent"] {
        let g = arm["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["dimension"] == "segment" && g["value"] == seg)
            .unwrap();
        close(&g["lift"], &expected[seg], seg);
    }
    for c in ["value", "norm"] {
        let got = arm["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["component"] == c)
            .unwrap();
        close(&got["lift"], &expected[c], c);
    }
    close(&arm["cuped"]["lift"], &expected["cuped"], "cuped");
    let theta = arm["cuped"]["theta"].as_f64().unwrap();
    assert!((theta - expected["cuped"]["theta"].as_f64().unwrap()).abs() < 1e-9);
    // The planted effects: smb up, ent down, both significant after Holm.
    let guards = arm["guardrails"].as_array().unwrap();
    assert_eq!(guards[0]["result"], "fail");
    assert_eq!(guards[1]["result"], "pass");
    assert_eq!(
        r["excluded_multiple_arms"],
        expected["excluded_multiple_arms"]
    );
    assert_eq!(
        r["srm"]["observed"],
        serde_json::json!([
            expected["assigned"]["chatbot"],
            expected["assigned"]["control"]
        ])
    );
    assert_eq!(r["reference"], "control");
}

#[test]
fn a_sample_ratio_mismatch_invalidates_the_report() {
    let tmp = case();
    let dir = tmp.path();
    // Declared 3:1, assigned about 1:1.
    let mut args = ARGS.to_vec();
    args.extend(["--split", "control=3,chatbot=1"]);
    let o = croo(dir, &args, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("sample ratio mismatch"), "{}", text(&o));
    args.push("--allow-srm");
    let o = croo(dir, &args, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["srm"]["valid"], false);
    // Mistakes name the value.
    for (flag, value, says) in [
        ("--guardrail", "region=eu=1", "`region` is not a dimension"),
        ("--split", "control=x", "--split `control=x`"),
        (
            "--control",
            "placebo",
            "no customer of experiment `chatbot-q1` is in the control arm `placebo`",
        ),
    ] {
        let mut args = ARGS.to_vec();
        args.extend([flag, value]);
        let o = croo(dir, &args, &[]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(text(&o).contains(says), "{}", text(&o));
    }
}

/// `--reference pre`: minmax by January's whole cohort (the expected
/// `pre_reference` of `make_case.py`); it needs one pre-period, and refuses
/// `pct_rank`, which ranks against values another period cannot give.
#[test]
fn the_pre_period_as_the_reference() {
    let tmp = case();
    let dir = tmp.path();
    let expected = expected();
    let mut args = ARGS.to_vec();
    args.extend(["--reference", "pre"]);
    let o = croo(dir, &args, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["reference"], "pre");
    let got = r["arms"][0]["overall"]["lift"].clone();
    for k in ["control", "treatment", "absolute", "lower", "upper"] {
        let (g, w) = (
            got[k].as_f64().unwrap(),
            expected["pre_reference"][k].as_f64().unwrap(),
        );
        assert!((g - w).abs() <= 1e-8 * w.abs().max(1.0), "{k}: {g} vs {w}");
    }
    // Two pre-periods: refused.
    let mut two = ARGS.to_vec();
    two.extend(["--reference", "pre"]);
    let i = two.iter().position(|a| *a == "--pre-from").unwrap();
    two[i + 1] = "2025-12";
    let o = croo(dir, &two, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("one pre-period"), "{}", text(&o));
    // pct_rank cannot take another period's statistics.
    let f = std::fs::read_to_string(dir.join("formula.toml")).unwrap();
    std::fs::write(
        dir.join("formula.toml"),
        f.replace("minmax(spend)", "pct_rank(spend)"),
    )
    .unwrap();
    let o = croo(dir, &args, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("pct_rank(spend)"), "{}", text(&o));
}

/// `croo inspect` on the same data, February, every customer: spend's
/// distribution and the components' effective weights against
/// `make_case.py` (numpy and scipy); the heatmap is written.
#[test]
fn inspect_agrees_with_numpy() {
    let tmp = case();
    let dir = tmp.path();
    let expected = expected();
    let e = &expected["inspect"];
    let o = croo(
        dir,
        &[
            "inspect",
            "formula.toml",
            "--period",
            "2026-02",
            "--format",
            "json",
            "--svg",
            "heat.svg",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let spend = r["describe"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "spend")
        .unwrap();
    assert_eq!(spend["n"], e["n"]);
    for k in ["p5", "median", "p95", "skewness", "kurtosis"] {
        let (g, w) = (spend[k].as_f64().unwrap(), e[k].as_f64().unwrap());
        assert!((g - w).abs() <= 1e-9 * w.abs().max(1.0), "{k}: {g} vs {w}");
    }
    for (c, k) in [("value", "effective_value"), ("norm", "effective_norm")] {
        let w = r["weights"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["component"] == c)
            .unwrap();
        let (g, want) = (
            w["effective_weight"].as_f64().unwrap(),
            e[k].as_f64().unwrap(),
        );
        assert!((g - want).abs() <= 1e-9, "{c}: {g} vs {want}");
    }
    let svg = std::fs::read_to_string(dir.join("heat.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains(">value<") && svg.contains("1.00"),
        "{svg}"
    );
}
