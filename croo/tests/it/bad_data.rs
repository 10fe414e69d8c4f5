//! A corpus of bad source data on the real sample, through the real binary:
//! each case must stop `croo run` with exit 1 (never 0 with other numbers,
//! never 2, never a panic), a message naming what is wrong and where, and
//! nothing published. The sample is written once; each case corrupts a
//! copy of it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The sample (200 customers, August to October 2026), written once.
fn sample() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep().join("sample");
        let o = Command::new(env!("CARGO_BIN_EXE_croo"))
            .args(["sample", "--customers", "200", "--months", "3", "--out"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(o.status.success());
        dir
    })
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

/// Copies the sample, lets `corrupt` change it, runs the sample formula
/// over August to October; returns the exit code, stderr and whether
/// anything was published.
fn run_corrupted(corrupt: impl FnOnce(&Path), extra: &[&str]) -> (Option<i32>, String, bool) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    copy(sample(), &dir);
    corrupt(&dir);
    let out = tmp.path().join("results");
    let o = Command::new(env!("CARGO_BIN_EXE_croo"))
        .args(["run", "retail-croo.toml", "--out"])
        .arg(&out)
        .args(["--from", "2026-08-01", "--to", "2026-10-01"])
        .args(extra)
        .current_dir(&dir)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    (o.status.code(), stderr, out.join("current.json").exists())
}

/// Replaces the `n`th line (1-based) of a text file.
fn set_line(path: &Path, n: usize, line: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[n - 1] = line.to_string();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn line(path: &Path, n: usize) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .nth(n - 1)
        .unwrap()
        .to_string()
}

#[test]
fn the_clean_sample_runs() {
    let (code, stderr, published) = run_corrupted(|_| {}, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(published);
}

/// Each case: a name, the corruption, and what the message must hold
/// (`{dir}` stands for the copy's folder: the whole path is named).
type Case = (&'static str, Box<dyn FnOnce(&Path)>, Vec<&'static str>);

fn cases() -> Vec<Case> {
    let september = "interactions/month=2026-09/part-0.parquet";
    vec![
        (
            "zero-byte Parquet file in a source folder",
            Box::new(move |d: &Path| std::fs::write(d.join(september), b"").unwrap()),
            vec!["{dir}/interactions/month=2026-09/part-0.parquet", "empty"],
        ),
        (
            "truncated Parquet file",
            Box::new(move |d: &Path| {
                let p = d.join(september);
                let bytes = std::fs::read(&p).unwrap();
                std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
            }),
            vec!["{dir}/interactions/month=2026-09/part-0.parquet"],
        ),
        (
            "a text file where Parquet is expected",
            Box::new(move |d: &Path| {
                std::fs::write(d.join(september), "customer_id,x\n1,2\n").unwrap()
            }),
            vec!["{dir}/interactions/month=2026-09/part-0.parquet"],
        ),
        (
            "zero-byte entity file",
            Box::new(|d: &Path| std::fs::write(d.join("customers.parquet"), b"").unwrap()),
            vec!["{dir}/customers.parquet", "empty"],
        ),
        (
            "a CSV row with too many fields, far down the file",
            Box::new(|d: &Path| {
                let p = d.join("transactions.csv");
                let l = line(&p, 700);
                set_line(&p, 700, &format!("{l},extra,fields"));
            }),
            vec!["{dir}/transactions.csv:700", "7 fields"],
        ),
        (
            "a CSV amount that is not a number",
            Box::new(|d: &Path| {
                let p = d.join("transactions.csv");
                let header = line(&p, 1);
                let at = header.split(',').position(|c| c == "amount").unwrap();
                let mut f: Vec<String> = line(&p, 650).split(',').map(str::to_string).collect();
                f[at] = "12.5.3".into();
                set_line(&p, 650, &f.join(","));
            }),
            vec!["`amount` is Utf8 (read as text: it holds `12.5.3`, which is not a number)"],
        ),
        (
            "non-UTF-8 bytes in a CSV file",
            Box::new(|d: &Path| {
                let p = d.join("transactions.csv");
                let mut bytes = std::fs::read(&p).unwrap();
                let at = bytes.len() / 2;
                bytes.splice(at..at, [0xff, 0xfe]);
                std::fs::write(&p, bytes).unwrap();
            }),
            vec!["{dir}/transactions.csv", "UTF-8"],
        ),
        (
            "duplicate CSV header names",
            Box::new(|d: &Path| {
                let p = d.join("transactions.csv");
                let header = line(&p, 1);
                let dup = header.replacen("amount", "ts", 1);
                set_line(&p, 1, &dup);
            }),
            vec!["{dir}/transactions.csv", "ts"],
        ),
        (
            "a broken NDJSON line",
            Box::new(|d: &Path| {
                let p = d.join("product_events.ndjson");
                set_line(&p, 300, "{\"customer_id\": 3, \"at\": ");
            }),
            vec!["{dir}/product_events.ndjson:300", "not valid JSON"],
        ),
        (
            "a timestamp that overflows",
            Box::new(|d: &Path| {
                let p = d.join("transactions.csv");
                let header = line(&p, 1);
                let at = header.split(',').position(|c| c == "ts").unwrap();
                let mut f: Vec<String> = line(&p, 40).split(',').map(str::to_string).collect();
                f[at] = "99999-01-01T00:00:00Z".into();
                set_line(&p, 40, &f.join(","));
            }),
            vec!["99999-01-01T00:00:00Z", "source `transactions`"],
        ),
        (
            "NaN in a column a measure sums",
            Box::new(|d: &Path| {
                let p = d.join("transactions.csv");
                let header = line(&p, 1);
                let amount = header.split(',').position(|c| c == "amount").unwrap();
                // Rows of August to October only: find one in the run's range.
                let text = std::fs::read_to_string(&p).unwrap();
                let n = text.lines().position(|l| l.contains(",2026-09-")).unwrap() + 1;
                let mut f: Vec<String> = line(&p, n).split(',').map(str::to_string).collect();
                f[amount] = "NaN".into();
                set_line(&p, n, &f.join(","));
            }),
            vec!["transactions", "amount", "NaN"],
        ),
    ]
}

#[test]
fn bad_data_stops_the_run_with_exit_1_naming_the_file_and_publishes_nothing() {
    let mut failures = Vec::new();
    for (name, corrupt, wants) in cases() {
        let mut seen_dir = PathBuf::new();
        let (code, stderr, published) = run_corrupted(
            |d| {
                seen_dir = d.to_path_buf();
                corrupt(d)
            },
            &[],
        );
        let dir = seen_dir.display().to_string();
        let missing: Vec<String> = wants
            .iter()
            .map(|w| w.replace("{dir}", &dir))
            .filter(|w| !stderr.contains(w.as_str()))
            .collect();
        if code != Some(1) || published || !missing.is_empty() || stderr.contains("panicked") {
            failures.push(format!(
                "{name}: exit {code:?}, published {published}, missing {missing:?}\n{stderr}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn a_period_without_events_is_refused_or_marked_incomplete() {
    // The sample's data ends in October: November has no events.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    copy(sample(), &dir);
    let run = |formula: &str, out: &str| {
        Command::new(env!("CARGO_BIN_EXE_croo"))
            .args(["run", formula, "--out", out, "--from", "2026-10-01"])
            .args(["--to", "2026-11-01", "--format", "json"])
            .current_dir(&dir)
            .output()
            .unwrap()
    };
    let o = run("retail-croo.toml", "r1");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("2026-11-01"), "{stderr}");
    assert!(!dir.join("r1/current.json").exists());

    // Allowed as incomplete: published, November marked so.
    let text = std::fs::read_to_string(dir.join("retail-croo.toml")).unwrap();
    let text = text.replace(
        "time = \"started_at\"",
        "time = \"started_at\"\nempty_periods = \"incomplete\"",
    );
    let text = text
        .replace(
            "time = \"ts\"",
            "time = \"ts\"\nempty_periods = \"incomplete\"",
        )
        .replace(
            "time = \"at\"",
            "time = \"at\"\nempty_periods = \"incomplete\"",
        );
    std::fs::write(dir.join("incomplete.toml"), text).unwrap();
    let o = run("incomplete.toml", "r2");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = doc["results"].as_array().unwrap();
    let complete = |period: &str| {
        rows.iter()
            .filter(|r| r["period"] == period)
            .map(|r| r["complete"].as_bool().unwrap())
            .collect::<Vec<_>>()
    };
    assert!(complete("2026-10-01").iter().all(|c| *c));
    let nov = complete("2026-11-01");
    assert!(!nov.is_empty() && nov.iter().all(|c| !*c), "{doc}");
}
