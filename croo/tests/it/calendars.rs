//! Fiscal and retail calendars against an independent computation:
//! `tests/it/data/calendars/make_case.py` wrote the data (events on and
//! just before period boundaries, a segment history with moves) and the
//! expected rows of an NRF 4-5-4 formula across the 53-week fiscal 2023
//! and of a July fiscal year in Berlin local time, in plain Python.

use std::path::Path;

use crate::sources::{croo, text};

fn case() -> tempfile::TempDir {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/data/calendars");
    let tmp = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, tmp.path().join(p.file_name().unwrap())).unwrap();
    }
    tmp
}

fn json(dir: &Path, args: &[&str]) -> serde_json::Value {
    let o = croo(dir, args, &[]);
    assert!(o.status.success(), "{args:?}: {}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn fiscal_periods_agree_with_an_independent_computation() {
    let tmp = case();
    let expected = std::fs::read_to_string(tmp.path().join("expected.csv")).unwrap();
    let mut checked = 0;
    // Fiscal names on the command line: the first and last periods.
    for (name, from, to) in [
        ("nrf", "FY2022-M11", "FY2024-M01"),
        ("july", "FY2026-Q3", "FY2027-Q2"),
    ] {
        let doc = json(
            tmp.path(),
            &[
                "run",
                &format!("{name}.toml"),
                "--from",
                from,
                "--to",
                to,
                "--format",
                "json",
            ],
        );
        let rows = doc["results"].as_array().unwrap();
        let mut groups = 0;
        for line in expected
            .lines()
            .skip(1)
            .filter(|l| l.starts_with(&format!("{name},")))
        {
            let f: Vec<&str> = line.split(',').collect();
            let (period, label, segment) = (f[1], f[2], f[3]);
            let (population, score) = (f[4].parse::<u64>().unwrap(), f[5].parse::<f64>().unwrap());
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
                .unwrap_or_else(|| panic!("{name} {period} {segment}: no row"));
            assert_eq!(got["period_label"], label, "{name} {period}");
            assert_eq!(got["population"], population, "{name} {period} {segment}");
            let s = got["score"].as_f64().unwrap();
            assert!(
                (s - score).abs() <= 1e-9 * score.abs().max(1.0),
                "{name} {period} {segment}: {s} vs {score}"
            );
            groups += 1;
        }
        assert_eq!(
            rows.len(),
            groups,
            "{name}: rows croo has that Python has not"
        );
        checked += groups;
    }
    assert!(checked > 80, "{checked}");
}

/// A fiscal name, a date inside a period and the API's `period_label`
/// all name the same period; week 53 has no counterpart last year.
#[test]
fn fiscal_names_select_periods() {
    let tmp = case();
    let dir = tmp.path();
    // A day inside FY2023-M12 (2023-12-31 to 2024-02-03, five weeks).
    let doc = json(
        dir,
        &[
            "run",
            "nrf.toml",
            "--period",
            "2024-02-03",
            "--format",
            "json",
        ],
    );
    assert_eq!(doc["results"][0]["period"], "2023-12-31");
    assert_eq!(doc["results"][0]["period_label"], "FY2023-M12");
    // A fiscal year names its twelve months.
    let doc = json(
        dir,
        &["run", "nrf.toml", "--period", "fy2023", "--format", "json"],
    );
    let mut periods: Vec<&str> = doc["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["period"].as_str().unwrap())
        .collect();
    periods.dedup();
    assert_eq!(periods.len(), 12);
    assert_eq!(periods[0], "2023-01-29");
    // An unknown fiscal name is an error naming the flag and the value.
    let o = croo(dir, &["run", "nrf.toml", "--period", "FY2023-M13"], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("--period `FY2023-M13`"), "{}", text(&o));
    // Weekly: week 53 of fiscal 2023 exists; compared with last year it
    // has no counterpart (the documented convention) and says so.
    let weekly = std::fs::read_to_string(dir.join("nrf.toml"))
        .unwrap()
        .replace("grain = \"month\"", "grain = \"week\"");
    std::fs::write(dir.join("weekly.toml"), weekly).unwrap();
    let doc = json(
        dir,
        &[
            "run",
            "weekly.toml",
            "--period",
            "FY2023-W53",
            "--format",
            "json",
        ],
    );
    assert_eq!(doc["results"][0]["period"], "2024-01-28");
    assert_eq!(doc["results"][0]["period_label"], "FY2023-W53");
    let o = croo(
        dir,
        &[
            "explain",
            "weekly.toml",
            "--period",
            "FY2023-W53",
            "--compare",
            "last-year",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("no counterpart"), "{}", text(&o));
    // Week 52 is compared with week 52 of fiscal 2022 (starting
    // 2023-01-22).
    let doc = json(
        dir,
        &[
            "explain",
            "weekly.toml",
            "--period",
            "FY2023-W52",
            "--compare",
            "last-year",
            "--format",
            "json",
        ],
    );
    assert_eq!(doc["compare"], "2023-01-22", "{doc:#}");
}

/// Mistakes in `[calendar]` are reported at their line and column.
#[test]
fn calendar_mistakes_name_their_place() {
    let tmp = case();
    let dir = tmp.path();
    let base = std::fs::read_to_string(dir.join("july.toml")).unwrap();
    for (from, to, says) in [
        (
            "fiscal_year_start = 7",
            "fiscal_year_start = 13",
            "month number from 1",
        ),
        (
            "time_zone = \"Europe/Berlin\"",
            "time_zone = \"Europe/Berln\"",
            "did you mean `Europe/Berlin`",
        ),
        (
            "year_label = \"end\"",
            "year_label = \"middle\"",
            "not a valid `year_label`",
        ),
        (
            "year_label = \"end\"",
            "pattern = \"4-5-4\"",
            "applies to `type = \"retail\"`",
        ),
        (
            "year_label = \"end\"",
            "year_lable = \"end\"",
            "did you mean `year_label`",
        ),
    ] {
        let bad = base.replace(from, to);
        assert_ne!(bad, base);
        std::fs::write(dir.join("bad.toml"), &bad).unwrap();
        let o = croo(dir, &["check", "bad.toml"], &[]);
        assert_eq!(o.status.code(), Some(1), "{to}: {}", text(&o));
        let line = bad.lines().position(|l| l.contains(to)).unwrap() + 1;
        let out = text(&o);
        assert!(out.contains(says), "{to}: {out}");
        assert!(out.contains(&format!("bad.toml:{line}:")), "{to}: {out}");
    }
}
