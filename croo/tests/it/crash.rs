//! Crash and concurrency safety, shown: `croo run` killed with SIGKILL at
//! random moments leaves every published edition readable and `current`
//! pointing at complete runs, and the next run succeeds with no manual
//! clean-up; two runs of one period at once end with one consistent
//! edition history (docs/operations.md, "Crashes and two runs at once").

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::sources::{croo, text};

fn sample(dir: &Path, customers: &str) {
    let o = croo(
        dir,
        &[
            "sample",
            "--out",
            "s",
            "--customers",
            customers,
            "--months",
            "3",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    // Provisional periods take new editions without --restate.
    let f = dir.join("s/retail-croo.toml");
    let mut t = std::fs::read_to_string(&f).unwrap();
    t.push_str("\n[operations]\nsettle = \"3650d\"\n");
    std::fs::write(&f, t).unwrap();
}

/// One more late transaction in each month: every run has new numbers to
/// publish.
fn late_data(dir: &Path, round: usize) {
    let path = dir.join("s/transactions.csv");
    let mut t = std::fs::read_to_string(&path).unwrap();
    let rows: Vec<String> = ["2026-08", "2026-09", "2026-10"]
        .iter()
        .filter_map(|m| {
            t.lines()
                .find(|l| l.split(',').nth(1).is_some_and(|ts| ts.starts_with(m)))
                .map(|l| {
                    let mut f: Vec<String> = l.split(',').map(str::to_string).collect();
                    f[2] = format!("{}.25", 10 + round);
                    f.join(",")
                })
        })
        .collect();
    for r in rows {
        t.push_str(&r);
        t.push('\n');
    }
    std::fs::write(&path, t).unwrap();
}

const RUN: [&str; 6] = [
    "run",
    "s/retail-croo.toml",
    "--from",
    "2026-08",
    "--to",
    "2026-10",
];

/// Everything published is readable: each edition's run folder has its
/// manifest and results, and `current.json` points at the last edition.
fn check_store(dir: &Path) -> usize {
    let store = dir.join("croo-results");
    let Ok(bytes) = std::fs::read(store.join("current.json")) else {
        return 0;
    };
    let current: serde_json::Value =
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("current.json is not whole: {e}"));
    let mut editions = 0;
    if let Some(periods) = current["editions"]["retail-croo"].as_object() {
        for (period, log) in periods {
            let eds = log["editions"].as_array().unwrap();
            for (i, e) in eds.iter().enumerate() {
                assert_eq!(e["edition"], i + 1, "{period}: editions numbered 1, 2, ...");
                let run = store.join("runs").join(e["run_id"].as_str().unwrap());
                let m: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(run.join("manifest.json")).unwrap())
                        .unwrap();
                assert_eq!(m["outcome"], "succeeded");
                let results = std::fs::read(run.join("results.parquet")).unwrap();
                assert!(results.starts_with(b"PAR1") && results.ends_with(b"PAR1"));
                editions += 1;
            }
            let last = eds.last().unwrap()["run_id"].clone();
            assert_eq!(current["formulas"]["retail-croo"][period], last, "{period}");
        }
    }
    editions
}

#[test]
fn runs_killed_at_random_moments_leave_the_store_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    sample(dir, "3000");
    // How long a whole run takes here: kills land anywhere inside it.
    let start = Instant::now();
    let o = croo(dir, &RUN, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let full = start.elapsed();
    let mut published = check_store(dir);
    assert_eq!(published, 3);
    // A small deterministic generator: the same moments on every machine
    // relative to a whole run's time.
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..20 {
        late_data(dir, round);
        let at = full.mul_f64((next() % 1000) as f64 / 1000.0 * 1.1);
        let mut child = Command::new(env!("CARGO_BIN_EXE_croo"))
            .args(RUN)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(at);
        // SIGKILL: no destructor, no clean-up of its own.
        let _ = child.kill();
        let _ = child.wait();
        let now = check_store(dir);
        assert!(now >= published, "round {round}: editions went missing");
        published = now;
        // The next run needs no clean-up and publishes what is new.
        if round % 5 == 4 {
            let o = croo(dir, &RUN, &[]);
            assert!(o.status.success(), "round {round}: {}", text(&o));
            published = check_store(dir);
        }
    }
    // Nothing is left over: no temporary run folder, the lock free.
    let o = croo(dir, &RUN, &[("CROO_LOCK_TIMEOUT", "0".to_string())]);
    assert!(o.status.success(), "{}", text(&o));
    check_store(dir);
    let leftovers: Vec<String> = std::fs::read_dir(dir.join("croo-results/runs"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn two_runs_at_once_end_with_one_history() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    sample(dir, "400");
    let o = croo(dir, &RUN, &[]);
    assert!(o.status.success(), "{}", text(&o));
    late_data(dir, 0);
    let spawn = || {
        let dir = dir.to_path_buf();
        std::thread::spawn(move || {
            croo(
                &dir,
                &[
                    "run",
                    "s/retail-croo.toml",
                    "--from",
                    "2026-08",
                    "--to",
                    "2026-10",
                    "--format",
                    "json",
                ],
                &[("CROO_LOCK_TIMEOUT", "60".to_string())],
            )
        })
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.join().unwrap(), b.join().unwrap());
    assert!(a.status.success(), "{}", text(&a));
    assert!(b.status.success(), "{}", text(&b));
    // The same new numbers from both: one published edition 2, the other
    // found it unchanged (whichever came second).
    let outcomes = |o: &std::process::Output| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["publications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| format!("{} {}", p["outcome"].as_str().unwrap(), p["edition"]))
            .collect()
    };
    let mut both = [outcomes(&a), outcomes(&b)];
    both.sort();
    assert_eq!(
        both,
        [
            vec!["published 2".to_string(); 3],
            vec!["unchanged 2".to_string(); 3]
        ],
        "{} / {}",
        text(&a),
        text(&b)
    );
    assert_eq!(check_store(dir), 6);

    // A bounded wait: a store locked by someone else is a clear exit 1.
    let lock = std::fs::File::options()
        .write(true)
        .open(dir.join("croo-results/.lock"))
        .unwrap();
    lock.lock().unwrap();
    late_data(dir, 1);
    let start = Instant::now();
    let o = croo(dir, &RUN, &[("CROO_LOCK_TIMEOUT", "1".to_string())]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("locked by another run"), "{}", text(&o));
    assert!(start.elapsed() < Duration::from_secs(60));
    drop(lock);
    check_store(dir);
}
