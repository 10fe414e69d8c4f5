//! Targets and statuses from the command line, with numbers worked out
//! by hand (docs/targets.md).
//!
//! Customers 1 and 2 are `smb`, 3 is `ent`; a customer's `value` is its
//! spend / 100, a group's score 100 x the mean. January spend 100, 50, 10:
//! smb 75, ent 10 (value 0.1), all 53.33; February 200, 60, 20: smb 130,
//! ent 20 (value 0.2), all 93.33.

use std::path::Path;

use crate::sources::{croo, text};

/// The case of `tests/it/data/targets`: `goals.toml` and, beside it,
/// `goals.targets.toml` with these targets:
///
/// - all, score 60 over 50: January (53.33 - 50) / 10 = 0.33 off_track,
///   February 4.33 on_track;
/// - smb, score 80 over 70 from January: 75 -> 0.5 off_track; from
///   February 140 over 40: 130 -> 0.9 at_risk;
/// - ent, the component `value`, lower is better, 0.15 under 0.35:
///   January 0.1 -> (0.1 - 0.35) / (0.15 - 0.35) = 1.25 on_track,
///   February 0.2 -> 0.75 off_track.
fn write_case(dir: &Path) {
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/data/targets");
    for f in [
        "customers.csv",
        "events.csv",
        "goals.toml",
        "goals.targets.toml",
    ] {
        std::fs::copy(case.join(f), dir.join(f)).unwrap();
    }
}

fn targets_text(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("goals.targets.toml")).unwrap()
}

fn json(dir: &Path, args: &[&str]) -> serde_json::Value {
    let o = croo(dir, args, &[]);
    assert!(o.status.success(), "{args:?}: {}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn statuses_follow_the_targets_in_force() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_case(dir);
    // The targets beside the formula are found; each row has its status.
    let doc = json(
        dir,
        &[
            "run",
            "goals.toml",
            "--from",
            "2026-01",
            "--to",
            "2026-02",
            "--format",
            "json",
        ],
    );
    let status = |period: &str, value: Option<&str>| -> serde_json::Value {
        doc["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["period"] == period && r["value"].as_str() == value)
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(status("2026-01-01", None), "off_track");
    assert_eq!(status("2026-02-01", None), "on_track");
    assert_eq!(status("2026-01-01", Some("smb")), "off_track");
    assert_eq!(status("2026-02-01", Some("smb")), "at_risk");
    assert_eq!(status("2026-01-01", Some("ent")), "on_track");
    assert_eq!(status("2026-02-01", Some("ent")), "off_track");
    assert_eq!(doc["results"][0]["targets_version"], "board-2026-1");
    // The table has a status column.
    let o = croo(dir, &["run", "goals.toml", "--period", "2026-02"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(out.lines().next().unwrap().contains("status"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("segment=smb") && l.contains("at_risk")),
        "{out}"
    );

    // `croo status`: the achievements in force, from the published rows.
    let doc = json(
        dir,
        &[
            "status",
            "goals.toml",
            "--period",
            "2026-02",
            "--format",
            "json",
        ],
    );
    let group = |value: Option<&str>| -> serde_json::Value {
        doc["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["value"].as_str() == value)
            .unwrap()
            .clone()
    };
    let smb = group(Some("smb"));
    assert_eq!(smb["status"], "at_risk");
    assert_eq!(smb["items"][0]["target"], 140.0);
    assert_eq!(smb["items"][0]["from"], "2026-02-01");
    let a = smb["items"][0]["achievement"].as_f64().unwrap();
    assert!((a - 0.9).abs() < 1e-12, "{a}");
    let ent = group(Some("ent"));
    assert_eq!(ent["items"][0]["for"], "component.value");
    let a = ent["items"][0]["achievement"].as_f64().unwrap();
    assert!((a - 0.75).abs() < 1e-12, "{a}");
    let all = group(None);
    let a = all["items"][0]["achievement"].as_f64().unwrap();
    assert!((a - (280.0 / 3.0 - 50.0) / 10.0).abs() < 1e-9, "{a}");
    // A new target never changes the score, its hash or its edition.
    let before = json(
        dir,
        &[
            "history", "goals", "--period", "2026-02", "--format", "json",
        ],
    );
    let changed = targets_text(dir).replace("value = 60", "value = 95");
    std::fs::write(dir.join("goals.targets.toml"), changed).unwrap();
    let doc = json(
        dir,
        &[
            "run",
            "goals.toml",
            "--period",
            "2026-02",
            "--format",
            "json",
        ],
    );
    assert_eq!(doc["outcome"], "unchanged", "{doc:#}");
    let r = doc["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["value"].is_null())
        .unwrap();
    // (93.33 - 50) / (95 - 50) = 0.96: at_risk.
    assert_eq!(r["status"], "at_risk");
    let after = json(
        dir,
        &[
            "history", "goals", "--period", "2026-02", "--format", "json",
        ],
    );
    assert_eq!(before["editions"], after["editions"]);
}

#[test]
fn a_broken_targets_file_names_its_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_case(dir);
    let broken = targets_text(dir).replacen("group = \"segment=smb\"", "group = \"region=eu\"", 1);
    std::fs::write(dir.join("goals.targets.toml"), broken).unwrap();
    let o = croo(dir, &["run", "goals.toml", "--period", "2026-01"], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("goals.targets.toml:16:"), "{out}");
    assert!(out.contains("region=eu"), "{out}");
    // Nothing was computed or published.
    assert!(!dir.join("croo-results/current.json").exists());
    // `croo status` without targets says where they go.
    std::fs::remove_file(dir.join("goals.targets.toml")).unwrap();
    let o = croo(dir, &["status", "goals.toml", "--period", "2026-01"], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("goals.targets.toml"), "{}", text(&o));
}
