//! Hostile formulas: whatever `croo check` accepts, `croo run` runs to a
//! result or to a user error, never a panic, an abort or a failure of the
//! engine; and the check itself never panics nor hangs.
//!
//! Two generators, seeded (ChaCha8): formula-syntax expressions from the
//! grammar (nested calls, operator chains, population functions, literals
//! such as `NaN` and `inf`, sometimes past the documented limits) put in
//! place of the sample formula's `margin`, and random byte edits of the
//! whole sample formula. `cargo test` runs a bounded number of cases
//! (`CROO_FUZZ_CASES`, default 48 of each, about ten seconds);
//! `scripts/fuzz-formulas CASES` runs a longer budget. After an abort,
//! the case that caused it is in `$TMPDIR/croo-fuzz-last-case.txt`.

use std::path::Path;
use std::sync::OnceLock;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn cases() -> usize {
    std::env::var("CROO_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(48)
}

fn seed() -> u64 {
    std::env::var("CROO_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7)
}

/// A small sample data set, written once for all cases.
fn sample_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        engine::sample::write(
            dir.path(),
            &engine::sample::SampleOptions {
                customers: 60,
                months: 2,
                seed: 3,
            },
        )
        .unwrap();
        dir
    })
    .path()
}

const NAMES: [&str; 12] = [
    "revenue",
    "refunds",
    "cost_to_serve",
    "contacts",
    "fcr",
    "csat",
    "adoptions",
    "net_revenue",
    "digital_share",
    "satisfaction",
    "nope",
    "margin",
];
const FUNCTIONS: [(&str, usize); 15] = [
    ("min", 2),
    ("max", 3),
    ("abs", 1),
    ("floor", 1),
    ("ceil", 1),
    ("round", 1),
    ("sqrt", 1),
    ("ln", 1),
    ("exp", 1),
    ("clamp", 3),
    ("if", 3),
    ("goalpost", 3),
    ("minmax", 1),
    ("zscore", 1),
    ("pct_rank", 1),
];
const OPERATORS: [&str; 14] = [
    "+", "-", "*", "/", "%", "^", "==", "!=", "<", "<=", ">", ">=", "&&", "||",
];
const LITERALS: [&str; 9] = [
    "0",
    "1",
    "-0.0",
    "2.5",
    "1e308",
    "NaN",
    "inf",
    "true",
    "9223372036854775808",
];

/// A random formula-syntax expression; depth and length sometimes go past
/// the limits on purpose.
fn expression(rng: &mut ChaCha8Rng, depth: usize) -> String {
    let leaf = depth == 0 || rng.random_bool(0.3);
    if leaf {
        return if rng.random_bool(0.7) {
            NAMES[rng.random_range(0..NAMES.len())].to_string()
        } else {
            LITERALS[rng.random_range(0..LITERALS.len())].to_string()
        };
    }
    match rng.random_range(0..10) {
        0..=3 => {
            let (f, n) = FUNCTIONS[rng.random_range(0..FUNCTIONS.len())];
            let n = if rng.random_bool(0.1) { n + 1 } else { n };
            let args: Vec<String> = (0..n).map(|_| expression(rng, depth - 1)).collect();
            format!("{f}({})", args.join(", "))
        }
        4..=7 => {
            let op = OPERATORS[rng.random_range(0..OPERATORS.len())];
            format!(
                "{} {op} {}",
                expression(rng, depth - 1),
                expression(rng, depth - 1)
            )
        }
        8 => format!("-{}", expression(rng, depth - 1)),
        _ => {
            // A long chain or a deep nest, sometimes past the limits.
            let n = rng.random_range(1..400);
            if rng.random_bool(0.5) {
                let op = OPERATORS[rng.random_range(0..5)];
                format!("revenue{}", format!(" {op} 1").repeat(n))
            } else {
                let f = ["abs", "floor", "-", "sqrt"][rng.random_range(0..4)];
                format!(
                    "{}revenue{}",
                    format!("{f}(").repeat(n / 8),
                    ")".repeat(n / 8)
                )
            }
        }
    }
}

/// A random edit of `text`'s bytes: remove, insert or replace a few, or
/// splice in a fragment of the formula language.
fn mutate(rng: &mut ChaCha8Rng, text: &str) -> String {
    const FRAGMENTS: [&str; 14] = [
        "(",
        ")",
        "\"",
        "[",
        "]",
        "=",
        ",",
        "\n",
        "sum(",
        "array_agg(",
        "minmax(",
        " ^ ",
        "__",
        "\u{1F600}",
    ];
    let mut bytes = text.as_bytes().to_vec();
    for _ in 0..rng.random_range(1..6) {
        let at = rng.random_range(0..=bytes.len());
        match rng.random_range(0..4) {
            0 if at < bytes.len() => {
                let end = (at + rng.random_range(1..20)).min(bytes.len());
                bytes.drain(at..end);
            }
            1 => {
                let f = FRAGMENTS[rng.random_range(0..FRAGMENTS.len())];
                bytes.splice(at..at, f.bytes());
            }
            2 if at < bytes.len() => bytes[at] = rng.random(),
            _ => {
                let n = rng.random_range(1..50);
                let f = FRAGMENTS[rng.random_range(0..FRAGMENTS.len())].repeat(n);
                bytes.splice(at..at, f.bytes());
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Checks `text`; if the check accepts it, scores the sample's last month
/// with it. Panics (fails the test) on anything but a result or a user
/// error, and names the case.
async fn check_then_run(case: &str, text: &str) -> bool {
    let dir = sample_dir();
    let path = dir.join(format!("fuzz-{}.toml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    // An abort (a stack overflow) ends the process before any message:
    // the case being run is left where it can be read afterwards.
    let last = std::env::temp_dir().join("croo-fuzz-last-case.txt");
    std::fs::write(last, format!("# {case}\n{text}")).unwrap();
    let loaded = match engine::load(&path) {
        Ok(l) => l,
        Err(e) => {
            assert_eq!(e.class(), engine::Class::User, "{case}: check failed: {e}");
            return false;
        }
    };
    let period = engine::period::floor(loaded.formula.file.grain, engine::sample::last_month());
    let result = engine::score(&loaded, &[period], &engine::ScoreOptions::default()).await;
    if let Err(e) = result {
        assert_eq!(
            e.class(),
            engine::Class::User,
            "{case}: the check accepted it, and the run failed in the engine: {e}\n{text}"
        );
    }
    true
}

#[tokio::test]
async fn grammar_cases_check_and_run_without_failing() {
    let base = engine::sample::EXAMPLE_FORMULA;
    let mut rng = ChaCha8Rng::seed_from_u64(seed());
    let mut accepted = 0;
    for i in 0..cases() {
        let e = expression(&mut rng, 5);
        let text = base.replacen(
            "margin = \"net_revenue - cost_to_serve\"",
            &format!("margin = \"{}\"", e.replace('"', "")),
            1,
        );
        assert_ne!(text, base);
        if check_then_run(&format!("grammar case {i}"), &text).await {
            accepted += 1;
        }
    }
    // The generator is not all noise: some cases pass the check and run.
    assert!(accepted > 0, "no generated formula was accepted");
}

#[tokio::test]
async fn mutated_files_check_and_run_without_failing() {
    let base = engine::sample::EXAMPLE_FORMULA;
    let mut rng = ChaCha8Rng::seed_from_u64(seed() + 1);
    for i in 0..cases() {
        let text = mutate(&mut rng, base);
        check_then_run(&format!("mutation {i}"), &text).await;
    }
}
