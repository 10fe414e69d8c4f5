//! The real binary on real files: exit codes, outputs, diagnostics.

use std::path::Path;
use std::process::{Command, Output};

fn croo(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_croo"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

const GOOD: &str = r#"[formula]
name = "cli"
version = "1"
grain = "month"

[sources.customers]
role = "entity"
uri = "customers.csv"
key = "customer_id"

[sources.ev]
uri = "ev.csv"
key = "customer_id"
time = "at"

[measures.spend]
source = "ev"
expr = "sum(amount)"
default = 0

[measures.visits]
source = "ev"
expr = "count(*)"
default = 0

[derived]
avg_spend = "spend / visits"

[score.components.value]
weight = 0.5
expr = "minmax(spend)"

[score.components.habit]
weight = 0.5
expr = "min(visits, 2) / 2"

[rollup]
weight = "visits + 1"
"#;

fn good_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("customers.csv"), "customer_id\n1\n2\n").unwrap();
    std::fs::write(
        dir.path().join("ev.csv"),
        "customer_id,at,amount\n1,2026-03-01T00:00:00Z,10\n1,2026-03-02T00:00:00Z,30\n2,2026-03-03T00:00:00Z,5\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("formula.toml"), GOOD).unwrap();
    dir
}

/// `croo run --format json` prints PRODUCT.md's shape.
///
/// spend = 40, 5; visits = 2, 1. value = minmax(spend) = 1, 0; habit =
/// min(visits, 2) / 2 = 1, 0.5; score = 1, 0.25; weight = visits + 1 = 3, 2.
/// rollup = 100 * (3 * 1 + 2 * 0.25) / 5 = 70.
#[test]
fn run_prints_json_results() {
    let dir = good_dir();
    let o = croo(
        dir.path(),
        &[
            "run",
            "formula.toml",
            "--period",
            "2026-03-15",
            "--format",
            "json",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["formula"], "cli");
    assert_eq!(doc["version"], "1");
    assert!(doc["formula_hash"].as_str().unwrap().starts_with("sha256:"));
    let r = &doc["results"][0];
    assert_eq!(r["period"], "2026-03-01");
    assert_eq!(r["dimension"], serde_json::Value::Null);
    assert_eq!(r["population"], 2);
    assert!((r["score"].as_f64().unwrap() - 70.0).abs() < 1e-9);
    assert!((r["weight_total"].as_f64().unwrap() - 5.0).abs() < 1e-9);
    // value: (3 * 1 + 2 * 0) / 5 = 0.6 -> contribution 100 * 0.5 * 0.6 = 30
    assert!((r["components"]["value"]["rollup"].as_f64().unwrap() - 0.6).abs() < 1e-9);
    assert!((r["components"]["value"]["contribution"].as_f64().unwrap() - 30.0).abs() < 1e-9);
    assert!(dir.path().join("croo-results/current.json").exists());
}

#[test]
fn bad_arguments_exit_1() {
    let dir = good_dir();
    let o = croo(dir.path(), &["run", "formula.toml"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let o = croo(
        dir.path(),
        &["run", "missing.toml", "--period", "2026-03-01"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("missing.toml"));
    let o = croo(dir.path(), &["run", "formula.toml", "--period", "March"]);
    assert_eq!(o.status.code(), Some(1));
    let o = croo(
        dir.path(),
        &[
            "run",
            "formula.toml",
            "--period",
            "2026-03-01",
            "--memory-limit",
            "lots",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn missing_data_exits_1_naming_the_source() {
    let dir = good_dir();
    std::fs::remove_file(dir.path().join("ev.csv")).unwrap();
    let o = croo(
        dir.path(),
        &["run", "formula.toml", "--period", "2026-03-01"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("source `ev`"), "{}", text(&o));
}

/// A time value that is not an instant, in CSV and in NDJSON: exit 1,
/// naming the source, the column and the value; nothing is written.
#[test]
fn unparsable_instants_exit_1_naming_source_column_and_value() {
    for (file, body) in [
        (
            "ev.csv",
            "customer_id,at,amount\n1,2026-03-01T00:00:00Z,10\n2,yesterday,5\n",
        ),
        (
            "ev.ndjson",
            "{\"customer_id\":1,\"at\":\"2026-03-01T00:00:00Z\",\"amount\":10}\n{\"customer_id\":2,\"at\":\"yesterday\",\"amount\":5}\n",
        ),
    ] {
        let dir = good_dir();
        std::fs::remove_file(dir.path().join("ev.csv")).unwrap();
        std::fs::write(dir.path().join(file), body).unwrap();
        let formula = GOOD.replace("uri = \"ev.csv\"", &format!("uri = \"{file}\""));
        std::fs::write(dir.path().join("formula.toml"), formula).unwrap();
        let o = croo(
            dir.path(),
            &["run", "formula.toml", "--period", "2026-03-01"],
        );
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{file}: {t}");
        for want in ["source `ev`", "yesterday"] {
            assert!(t.contains(want), "{file}: `{want}` not in {t}");
        }
        assert!(!t.contains("panicked"), "{t}");
        assert!(!dir.path().join("croo-results/current.json").exists());
    }
}

/// Each broken variant of a good formula: exit 1, the right line, the
/// right name, in text and in JSON.
#[test]
fn check_reports_each_mistake_at_its_line() {
    let cases: &[(&str, &str, usize, &str)] = &[
        // (replace, with, expected line, expected text)
        (
            "expr = \"minmax(spend)\"",
            "expr = \"minmax(spend_)\"",
            31,
            "did you mean `spend`?",
        ),
        (
            "avg_spend = \"spend / visits\"",
            "avg_spend = \"spend / avg_spend\"",
            27,
            "cycle",
        ),
        (
            "expr = \"minmax(spend)\"",
            "expr = \"minmax(zscore(spend))\"",
            31,
            "nested",
        ),
        (
            "weight = \"visits + 1\"",
            "weight = \"pct_rank(visits)\"",
            38,
            "rollup.weight",
        ),
        (
            "expr = \"sum(amount)\"",
            "expr = \"amount\"",
            18,
            "aggregate",
        ),
        (
            "expr = \"sum(amount)\"",
            "expr = \"sum(max(amount))\"",
            18,
            "nested",
        ),
        (
            "source = \"ev\"\nexpr = \"count(*)\"",
            "source = \"evv\"\nexpr = \"count(*)\"",
            22,
            "did you mean `ev`?",
        ),
        (
            "expr = \"min(visits, 2) / 2\"",
            "expr = \"min(visits) / 2\"",
            35,
            "at least 2 arguments",
        ),
        (
            "expr = \"min(visits, 2) / 2\"",
            "expr = \"mni(visits, 2) / 2\"",
            35,
            "did you mean `min`?",
        ),
        (
            "weight = 0.5\nexpr = \"minmax",
            "weight = nan\nexpr = \"minmax",
            30,
            "not a finite number",
        ),
        (
            "grain = \"month\"",
            "grain = \"mnoth\"",
            4,
            "did you mean `month`?",
        ),
        (
            "default = 0\n\n[measures.visits]",
            "defualt = 0\n\n[measures.visits]",
            19,
            "did you mean `default`?",
        ),
        ("[derived]\navg_spend", "[derived]\nspend", 27, "used twice"),
        ("version = \"1\"", "version = \"1", 3, "TOML"),
    ];
    for (from, to, line, needle) in cases {
        let dir = good_dir();
        assert!(GOOD.contains(from), "case {from:?} does not apply");
        std::fs::write(dir.path().join("formula.toml"), GOOD.replacen(from, to, 1)).unwrap();
        let o = croo(dir.path(), &["check", "formula.toml"]);
        let out = text(&o);
        assert_eq!(o.status.code(), Some(1), "{to}: {out}");
        assert!(
            out.contains(&format!("formula.toml:{line}:")),
            "{to}: expected line {line} in\n{out}"
        );
        assert!(out.contains(needle), "{to}: expected {needle:?} in\n{out}");

        let o = croo(dir.path(), &["check", "formula.toml", "--format", "json"]);
        assert_eq!(o.status.code(), Some(1));
        let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let lines: Vec<u64> = doc["diagnostics"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["severity"] == "error")
            .map(|d| d["line"].as_u64().unwrap())
            .collect();
        assert!(
            lines.contains(&(*line as u64)),
            "{to}: json lines {lines:?}"
        );
    }
}

#[test]
fn check_finds_all_errors_in_one_run() {
    let dir = good_dir();
    let broken = GOOD.replacen("minmax(spend)", "minmax(spnd)", 1).replacen(
        "min(visits, 2) / 2",
        "min(vists, 2) / 2",
        1,
    );
    std::fs::write(dir.path().join("formula.toml"), broken).unwrap();
    let o = croo(dir.path(), &["check", "formula.toml", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["errors"], 2, "{doc}");
}

/// A misspelt column of a local source is found by a plain `croo check`
/// (the files exist, so they are read), at its line; `--offline` reads
/// nothing; `--schemas` reads the same files.
#[test]
fn check_reads_the_local_sources_that_exist() {
    let dir = good_dir();
    std::fs::write(
        dir.path().join("formula.toml"),
        GOOD.replacen("sum(amount)", "sum(amont)", 1),
    )
    .unwrap();
    for args in [
        &["check", "formula.toml"][..],
        &["check", "--schemas", "formula.toml"][..],
    ] {
        let o = croo(dir.path(), args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", text(&o));
        let out = text(&o);
        assert!(
            out.contains("formula.toml:18:") && out.contains("did you mean `amount`?"),
            "{args:?}: {out}"
        );
    }
    let o = croo(dir.path(), &["check", "--offline", "formula.toml"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "--offline reads no data: {}",
        text(&o)
    );
}

/// Sources that are not local files (PostgreSQL, object stores) are read
/// only with `--schemas`; one that cannot be read is then an error at its
/// `uri`. A local source that does not exist is left out of a plain check.
#[test]
fn check_reads_remote_sources_only_when_asked() {
    let dir = good_dir();
    let formula = GOOD
        .replacen(
            "uri = \"ev.csv\"",
            "uri = \"postgres://croo@127.0.0.1:1/nowhere?table=ev&sslmode=disable\"",
            1,
        )
        .replacen(
            "uri = \"customers.csv\"",
            "uri = \"missing/customers.csv\"",
            1,
        );
    std::fs::write(dir.path().join("formula.toml"), &formula).unwrap();
    let o = croo(dir.path(), &["check", "formula.toml"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = croo(dir.path(), &["check", "--schemas", "formula.toml"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let ev_uri = formula
        .lines()
        .position(|l| l.contains("postgres://"))
        .unwrap()
        + 1;
    let customers_uri = formula
        .lines()
        .position(|l| l.contains("missing/"))
        .unwrap()
        + 1;
    assert!(out.contains(&format!("formula.toml:{ev_uri}:")), "{out}");
    assert!(out.contains("cannot read source `ev`"), "{out}");
    assert!(
        out.contains(&format!("formula.toml:{customers_uri}:")),
        "{out}"
    );
    assert!(out.contains("cannot read source `customers`"), "{out}");
}

/// Errors of different phases in one run: an invalid value near the top
/// does not hide an unknown identifier far below it, and a definition with
/// an error sets off no knock-on errors or warnings where it is used.
#[test]
fn check_reports_errors_of_every_phase_at_once() {
    let dir = good_dir();
    let padding: String = (0..80).map(|i| format!("# note {i}\n")).collect();
    let formula = GOOD
        .replacen("grain = \"month\"", "grain = \"fortnight\"", 1)
        .replacen("[rollup]", &format!("{padding}[rollup]"), 1)
        .replacen("weight = \"visits + 1\"", "weight = \"vists + 1\"", 1);
    std::fs::write(dir.path().join("formula.toml"), &formula).unwrap();
    let o = croo(dir.path(), &["check", "formula.toml", "--format", "json"]);
    assert_eq!(o.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let errors: Vec<(u64, String)> = doc["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["severity"] == "error")
        .map(|d| {
            (
                d["line"].as_u64().unwrap(),
                d["code"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let weight_line = formula.lines().position(|l| l.contains("vists")).unwrap() as u64 + 1;
    assert!(weight_line > 80);
    assert_eq!(
        errors,
        vec![
            (4, "croo::invalid-value".to_string()),
            (weight_line, "croo::unknown-identifier".to_string())
        ],
        "{doc}"
    );

    // `spend` loses its `expr`: one error (the missing key), no "unknown
    // identifier" where components use it, no "never used" warning.
    let formula = GOOD.replacen("expr = \"sum(amount)\"\n", "", 1);
    std::fs::write(dir.path().join("formula.toml"), &formula).unwrap();
    let o = croo(
        dir.path(),
        &["check", "--offline", "formula.toml", "--format", "json"],
    );
    assert_eq!(o.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let all = doc["diagnostics"].as_array().unwrap();
    assert_eq!(all.len(), 1, "{doc}");
    assert_eq!(all[0]["code"], "croo::missing-key", "{doc}");
}

#[test]
fn sample_then_run_example_formula() {
    let dir = tempfile::tempdir().unwrap();
    let o = croo(
        dir.path(),
        &[
            "sample",
            "--out",
            "s",
            "--customers",
            "200",
            "--months",
            "2",
            "--seed",
            "3",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let first = std::fs::read(dir.path().join("s/transactions.csv")).unwrap();
    let o = croo(
        dir.path(),
        &[
            "sample",
            "--out",
            "s2",
            "--customers",
            "200",
            "--months",
            "2",
            "--seed",
            "3",
        ],
    );
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        first,
        std::fs::read(dir.path().join("s2/transactions.csv")).unwrap(),
        "same seed, same data"
    );
    assert!(dir.path().join("s/croo-formula.schema.json").exists());
    let o = croo(dir.path(), &["schema"]);
    let schema: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(schema["title"], "croo formula file");
    let o = croo(dir.path(), &["check", "--schemas", "s/retail-croo.toml"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = croo(
        dir.path(),
        &[
            "run",
            "s/retail-croo.toml",
            "--from",
            "2026-09-01",
            "--to",
            "2026-10-01",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("2026-10-01  final  segment=enterprise"),
        "{out}"
    );
}

/// The formula of the `croo test` tests, up to its first measure's `expr`.
const TESTED_HEAD: &str = r#"[formula]
name = "tested"
version = "1"
grain = "month"

[sources.customers]
role = "entity"
uri = "customers.parquet"
key = "customer_id"

[sources.interactions]
uri = "interactions/"
key = "customer_id"
time = "started_at"

[dimensions]
segment = "segment"

[measures.cost]
source = "interactions"
expr = "sum(handle_seconds * cost_per_second)"
"#;

/// `croo test` runs the `[[tests]]` of FORMULA.md's example: inline rows
/// replace the sources; a failing expectation shows expected and actual.
///
/// Customers 1 (smb) and 2 (ent); customer 1 has one 300 s interaction in
/// January at 0.02 EUR/s -> cost 6; customer 2 none -> cost 0 (default).
/// service = if(cost > 5, 0, 1) = 0, 1; the score is their mean: 100 * 0.5
/// = 50; smb = 0, ent = 100.
#[test]
fn test_command_passes_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let formula = format!(
        "{TESTED_HEAD}{}",
        r#"filter = "channel <> 'test'"
default = 0

[score.components.service]
weight = 1
expr = "if(cost > 5, 0, 1)"

[[tests]]
name = "a costly customer pulls the score down"
periods = ["2026-01-01"]
[tests.data.customers]
rows = [ { customer_id = 1, segment = "smb" }, { customer_id = 2, segment = "ent" } ]
[tests.data.interactions]
rows = [ { customer_id = 1, started_at = 2026-01-03T10:00:00Z, channel = "phone", handle_seconds = 300, cost_per_second = 0.02 } ]
[tests.expect]
score = 50.0
"segment=smb" = 0.0
"segment=ent" = 100
tolerance = 1e-9

[[tests]]
name = "a wrong expectation fails"
periods = ["2026-01-15"]
[tests.data.customers]
rows = [ { customer_id = 1, segment = "smb" } ]
[tests.data.interactions]
rows = [ { customer_id = 1, started_at = "2026-02-01T00:00:00Z", handle_seconds = 300, cost_per_second = 0.02 } ]
[tests.expect]
score = 0.0
"#
    );
    std::fs::write(dir.path().join("f.toml"), &formula).unwrap();
    let o = croo(dir.path(), &["test", "f.toml"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("PASS f.toml: a costly customer pulls the score down"),
        "{out}"
    );
    // the only interaction is at exactly Feb 1, outside January: cost 0 -> 100
    assert!(
        out.contains("FAIL f.toml: a wrong expectation fails"),
        "{out}"
    );
    assert!(out.contains("score: expected 0, got 100"), "{out}");
    assert!(out.contains("1 passed, 1 failed"), "{out}");

    let passing = formula.split("[[tests]]\nname = \"a wrong").next().unwrap();
    std::fs::write(dir.path().join("g.toml"), passing).unwrap();
    let o = croo(dir.path(), &["test", "g.toml"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

/// `croo test` expects NULL, component rollups and contributions, counts,
/// per group; an unknown group is an error listing the dimension's values,
/// and `croo check` reports every unknown expectation key.
///
/// The test of `test_command_passes_and_fails`: service = 0 (smb), 1 (ent);
/// whole population: rollup 0.5, contribution 100 * 1 * 0.5 = 50; smb's
/// contribution 0 (weights `w` = 1 interaction each). A customer `3` in
/// segment `mid` with a NULL weight (`w = count(*)` has no default and 3
/// has no interaction) is excluded: the mid
/// group's score is NULL, and the whole population counts 1 excluded.
#[test]
fn test_expectations_of_every_kind() {
    let dir = tempfile::tempdir().unwrap();
    let base = format!(
        "{TESTED_HEAD}{}",
        r#"default = 0

[measures.w]
source = "interactions"
expr = "count(*)"

[score.components.service]
weight = 1
expr = "if(cost > 5, 0, 1)"

[rollup]
weight = "w"

[[tests]]
name = "every kind"
periods = ["2026-01-01"]
[tests.data.customers]
rows = [ { customer_id = 1, segment = "smb" }, { customer_id = 2, segment = "ent" }, { customer_id = 3, segment = "mid" } ]
[tests.data.interactions]
rows = [ { customer_id = 1, started_at = 2026-01-03T10:00:00Z, handle_seconds = 300, cost_per_second = 0.02 }, { customer_id = 2, started_at = 2026-01-04T10:00:00Z, handle_seconds = 1, cost_per_second = 0.0 } ]
[tests.expect]
score = 50.0
"service.rollup" = 0.5
"service.contribution" = 50
"segment=smb service.contribution" = 0
"segment=mid" = "null"
"segment=mid included" = 0
excluded = 1
population = 3
"#
    );
    std::fs::write(dir.path().join("f.toml"), &base).unwrap();
    let o = croo(dir.path(), &["test", "f.toml"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("PASS f.toml: every kind"), "{}", text(&o));

    // NULL expected where there is a number: a failure saying both.
    let wrong = base.replace("\"segment=mid\" = \"null\"", "\"segment=smb\" = \"null\"");
    std::fs::write(dir.path().join("g.toml"), &wrong).unwrap();
    let o = croo(dir.path(), &["test", "g.toml"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("segment=smb: expected NULL, got 0"),
        "{}",
        text(&o)
    );

    // A group that is not in the results: the values there are.
    let unknown = base.replace("\"segment=mid\" = \"null\"", "\"segment=PAYG\" = 1");
    std::fs::write(dir.path().join("h.toml"), &unknown).unwrap();
    let o = croo(dir.path(), &["test", "h.toml"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("no group `segment=PAYG` in 2026-01-01: the values of `segment` there are `ent`, `mid`, `smb`"),
        "{}",
        text(&o)
    );

    // Unknown dimension, component and kind: each reported by check.
    let bad = base.replace(
        "excluded = 1\n",
        "excluded = 1\n\"Plan=PAYG\" = 1\n\"servise.rollup\" = 1\n\"segment=smb median\" = 1\n",
    );
    std::fs::write(dir.path().join("i.toml"), &bad).unwrap();
    let o = croo(dir.path(), &["check", "--offline", "i.toml"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    for want in [
        "unknown dimension `Plan` in an expectation",
        "the dimensions are: `segment`",
        "unknown component `servise` in an expectation",
        "did you mean `service`?",
        "`median` is not something a test can expect",
        "3 error(s)",
    ] {
        assert!(t.contains(want), "{want}: {t}");
    }
}

/// `croo explain` on the worked example of docs/formula-reference.md:
/// March 2026 contributions are 30 (value) and 40 (habit).
#[test]
fn explain_shows_contributions() {
    let dir = good_dir();
    let o = croo(
        dir.path(),
        &[
            "explain",
            "formula.toml",
            "--period",
            "2026-03-01",
            "--format",
            "json",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let e: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!((e["score"].as_f64().unwrap() - 70.0).abs() < 1e-9);
    assert!((e["components"][0]["after"].as_f64().unwrap() - 30.0).abs() < 1e-9);
    assert!((e["components"][1]["after"].as_f64().unwrap() - 40.0).abs() < 1e-9);
    let o = croo(
        dir.path(),
        &[
            "explain",
            "formula.toml",
            "--period",
            "2026-03-01",
            "--compare",
            "2026-02-01",
            "--by",
            "nope",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("not a dimension"));
}

/// `croo diff`: the worked example with the weights moved from 0.5/0.5 to
/// 0.25/0.75. New scores: c1 = 0.25 + 0.75 = 1, c2 = 0.75 * 0.5 = 0.375;
/// 100 * (3 * 1 + 2 * 0.375) / 5 = 75, against 70 before.
#[test]
fn diff_shows_definitions_and_scores() {
    let dir = good_dir();
    let new = GOOD
        .replacen(
            "weight = 0.5\nexpr = \"minmax",
            "weight = 0.25\nexpr = \"minmax",
            1,
        )
        .replacen(
            "weight = 0.5\nexpr = \"min(",
            "weight = 0.75\nexpr = \"min(",
            1,
        )
        .replacen("version = \"1\"", "version = \"2\"", 1)
        // Other spacing and redundant parentheses: no change.
        .replacen(
            "avg_spend = \"spend / visits\"",
            "avg_spend = \"(spend)/visits\"",
            1,
        );
    assert!(new.contains("(spend)/visits"));
    std::fs::write(dir.path().join("new.toml"), new).unwrap();
    let o = croo(
        dir.path(),
        &[
            "diff",
            "formula.toml",
            "new.toml",
            "--period",
            "2026-03-01",
            "--format",
            "json",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let d: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let defs = d["definitions"].as_array().unwrap();
    assert_eq!(defs.len(), 2, "{defs:?}");
    assert_eq!(defs[0]["name"], "value");
    assert_eq!(defs[0]["new"], "0.25 x minmax(spend)");
    let r = &d["results"][0];
    assert!((r["old"].as_f64().unwrap() - 70.0).abs() < 1e-9);
    assert!((r["new"].as_f64().unwrap() - 75.0).abs() < 1e-9);
    assert!((r["change"].as_f64().unwrap() - 5.0).abs() < 1e-9);
    let o = croo(
        dir.path(),
        &["diff", "formula.toml", "new.toml", "--period", "2026-03-01"],
    );
    assert!(
        text(&o).contains(
            "~ component `habit`: 0.5 x (min(visits, 2) / 2)  ->  0.75 x (min(visits, 2) / 2)"
        ),
        "{}",
        text(&o)
    );
}

/// `croo explain --uncertainty`: the same seed gives the same figures, the
/// nominal group scores are the rollups of `croo run`, and the 5-95%
/// interval holds the median.
#[test]
fn uncertainty_is_reproducible_and_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let o = croo(
        dir.path(),
        &[
            "sample",
            "--out",
            "s",
            "--customers",
            "300",
            "--months",
            "1",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let args = [
        "explain",
        "s/retail-croo.toml",
        "--period",
        "2026-10-01",
        "--by",
        "segment",
        "--uncertainty",
        "200",
        "--seed",
        "7",
        "--format",
        "json",
    ];
    let a = croo(dir.path(), &args);
    assert_eq!(a.status.code(), Some(0), "{}", text(&a));
    assert_eq!(
        a.stdout,
        croo(dir.path(), &args).stdout,
        "same seed, same figures"
    );
    let e: serde_json::Value = serde_json::from_slice(&a.stdout).unwrap();
    let run = croo(
        dir.path(),
        &[
            "run",
            "s/retail-croo.toml",
            "--period",
            "2026-10-01",
            "--format",
            "json",
        ],
    );
    let run: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let groups = e["uncertainty"]["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 3);
    for g in groups {
        let row = run["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["dimension"] == "segment" && r["value"] == g["value"])
            .unwrap();
        let (nominal, score) = (
            g["nominal"].as_f64().unwrap(),
            row["score"].as_f64().unwrap(),
        );
        assert!(
            (nominal - score).abs() < 1e-9 * score.abs().max(1.0),
            "{nominal} vs {score}"
        );
        let (lo, med, hi) = (
            g["p05"].as_f64().unwrap(),
            g["median"].as_f64().unwrap(),
            g["p95"].as_f64().unwrap(),
        );
        assert!(lo <= med && med <= hi && lo < hi, "{lo} {med} {hi}");
    }
    assert_eq!(e["uncertainty"]["sensitivity"].as_array().unwrap().len(), 3);
}

#[test]
fn warnings_are_reported_at_their_line_and_do_not_fail_the_check() {
    let dir = good_dir();
    // A count over the entity source (no time, no filter) with a default,
    // an unused measure, and weights adding up to 0.9.
    let formula = GOOD
        .replacen(
            "[derived]",
            "[measures.accounts]\nsource = \"customers\"\nexpr = \"count(*)\"\ndefault = 0\n\n[measures.kept]\nsource = \"customers\"\nexpr = \"count(*)\"\n\n[derived]",
            1,
        )
        .replacen("weight = 0.5\nexpr = \"min(visits", "weight = 0.4\nexpr = \"min(visits", 1)
        .replacen("\"visits + 1\"", "\"visits + kept\"", 1);
    let lines: Vec<&str> = formula.lines().collect();
    let accounts = lines
        .iter()
        .position(|l| *l == "[measures.accounts]")
        .unwrap();
    let default_line = accounts + 4; // 1-based: the 4th line after the header
    assert_eq!(lines[default_line - 1], "default = 0");
    std::fs::write(dir.path().join("formula.toml"), &formula).unwrap();
    let o = croo(dir.path(), &["check", "formula.toml"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains(
            "warning[croo::redundant-default]: the default of measure `accounts` never applies"
        ),
        "{out}"
    );
    assert!(
        out.contains(&format!("formula.toml:{default_line}:")),
        "{out}"
    );
    assert!(
        out.contains("warning[croo::unused-measure]: measure `accounts` is never used"),
        "{out}"
    );
    assert!(
        out.contains("warning[croo::weights-sum]: component weights add up to 0.9"),
        "{out}"
    );
    // `kept` has no default, so nothing to say about it.
    assert!(!out.contains("measure `kept`"), "{out}");

    let o = croo(dir.path(), &["check", "formula.toml", "--format", "json"]);
    assert_eq!(o.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let redundant: Vec<&serde_json::Value> = doc["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["code"] == "croo::redundant-default")
        .collect();
    assert_eq!(redundant.len(), 1, "{doc}");
    assert_eq!(redundant[0]["severity"], "warning");
    assert_eq!(
        redundant[0]["line"].as_u64(),
        Some(default_line as u64),
        "{doc}"
    );
}

/// `croo check --schemas` runs the data checks over all rows: an implicit
/// one (the entity key) that fails is an error at the key's line; a
/// declared `warn` one is a warning at its own line.
#[test]
fn check_with_schemas_runs_the_data_checks() {
    let dir = good_dir();
    std::fs::write(dir.path().join("customers.csv"), "customer_id\n1\n1\n2\n").unwrap();
    let o = croo(dir.path(), &["check", "--schemas", "formula.toml"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("error[croo::data-check]: source `customers`: check unique(customer_id) failed: 1 values of `customer_id` appear more than once, e.g. 1 (2 rows)"),
        "{out}"
    );
    assert!(out.contains("formula.toml:9:"), "{out}");

    std::fs::write(dir.path().join("customers.csv"), "customer_id\n1\n2\n").unwrap();
    let formula = GOOD.replacen(
        "time = \"at\"",
        "time = \"at\"\nchecks = [{ accepted_values = \"amount\", values = [\"10\", \"30\"], policy = \"warn\" }]",
        1,
    );
    std::fs::write(dir.path().join("formula.toml"), &formula).unwrap();
    let o = croo(dir.path(), &["check", "--schemas", "formula.toml"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains("warning[croo::data-check]: source `ev`: check accepted_values(amount: 10, 30) failed: 1 rows have a value of `amount` that is not accepted, e.g. `5` (1 rows); a run goes on (policy warn)"),
        "{out}"
    );
    assert!(out.contains("formula.toml:15:"), "{out}");
}

/// `--period` takes a label of any grain: the periods that overlap it.
#[test]
fn periods_by_label() {
    let dir = good_dir();
    let score = |args: &[&str]| {
        let mut a = vec!["run", "formula.toml", "--format", "json"];
        a.extend_from_slice(args);
        let o = croo(dir.path(), &a);
        (o.status.code(), text(&o), o.stdout)
    };
    // The month, by its label or a day inside it: the same rows (score 70,
    // worked out at `run_prints_json_results`).
    let (code, t, stdout) = score(&["--period", "2026-03"]);
    assert_eq!(code, Some(0), "{t}");
    let v: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
    assert_eq!(v["results"][0]["period"], "2026-03-01");
    assert!((v["results"][0]["score"].as_f64().unwrap() - 70.0).abs() < 1e-9);
    // A quarter is its three months: January has no events, which stops
    // the run naming it.
    let (code, t, _) = score(&["--period", "2026-Q1"]);
    assert_eq!(code, Some(1), "{t}");
    assert!(t.contains("2026-01-01"), "{t}");
    // --from and --to: from the first day of one label to the last of the
    // other.
    let (code, t, _) = score(&["--from", "2026-03", "--to", "2026-03"]);
    assert_eq!(code, Some(0), "{t}");
    for bad in ["2026-13", "2026-Q5", "March"] {
        let (code, t, _) = score(&["--period", bad]);
        assert_eq!(code, Some(1), "{t}");
        assert!(t.contains("is not a date or a period"), "{t}");
    }
    // explain needs one period of the formula's grain.
    let o = croo(
        dir.path(),
        &["explain", "formula.toml", "--period", "2026-Q1"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("spans several month periods"),
        "{}",
        text(&o)
    );
}

/// `croo check DIR` checks the folder's formula files, and refuses two
/// that claim one name, naming both with their lines and versions.
#[test]
fn check_a_folder_refuses_one_name_twice() {
    let dir = good_dir();
    let o = croo(dir.path(), &["check", "."]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("1 formula file(s) OK"), "{}", text(&o));
    std::fs::write(
        dir.path().join("newer.toml"),
        GOOD.replace("version = \"1\"", "version = \"2\""),
    )
    .unwrap();
    let o = croo(dir.path(), &["check", "."]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    for want in [
        "2 files claim the formula name `cli`",
        "formula.toml:2 (version 1)",
        "newer.toml:2 (version 2)",
    ] {
        assert!(t.contains(want), "{want}: {t}");
    }
}

/// A bare number where an expression goes (`weight = 1`) is that
/// expression. Scores 1 and 0.25 (see `run_prints_json_results`), equal
/// weights: 100 * (1 + 0.25) / 2 = 62.5.
#[test]
fn numbers_are_expressions() {
    let dir = good_dir();
    let formula = GOOD
        .replace("weight = \"visits + 1\"", "weight = 1")
        .replace("[derived]\n", "[derived]\nhalf = 0.5\n")
        .replace(
            "expr = \"min(visits, 2) / 2\"",
            "expr = \"min(visits, 2) * half\"",
        );
    assert!(formula.contains("weight = 1\n") && formula.contains("half = 0.5"));
    std::fs::write(dir.path().join("formula.toml"), formula).unwrap();
    let o = croo(
        dir.path(),
        &[
            "run",
            "formula.toml",
            "--period",
            "2026-03-01",
            "--format",
            "json",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let score = doc["results"][0]["score"].as_f64().unwrap();
    assert!((score - 62.5).abs() < 1e-9, "{score}");
}

/// `--detail` keeps the per-customer rows under the names of
/// docs/results-store.md; the values are those worked out at
/// `run_prints_json_results` (customer 1: spend 40, visits 2, score 1,
/// weight 3; customer 2: spend 5, visits 1, score 0.25, weight 2).
#[test]
fn the_detail_file_speaks_the_formulas_names() {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::{Float64Type, Int64Type};
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let dir = good_dir();
    let formula = GOOD.replace(
        "[measures.spend]",
        "[dimensions]\ntier = \"customer_id\"\n\n[measures.spend]",
    );
    std::fs::write(dir.path().join("formula.toml"), formula).unwrap();
    let o = croo(
        dir.path(),
        &[
            "run",
            "formula.toml",
            "--period",
            "2026-03",
            "--detail",
            "--out",
            "r",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let runs = dir.path().join("r/runs");
    let run = std::fs::read_dir(&runs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let file = std::fs::File::open(run.join("detail.parquet")).unwrap();
    let batch = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let schema = batch.schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    for want in [
        "customer_id",
        "period",
        "tier",
        "spend",
        "visits",
        "avg_spend",
        "value",
        "habit",
        "score",
        "rollup_weight",
        "included",
    ] {
        assert!(names.contains(&want), "{want} not in {names:?}");
    }
    assert!(!names.iter().any(|n| n.starts_with("__")), "{names:?}");
    let f64s = |name: &str| -> Vec<f64> {
        let c = batch.column_by_name(name).unwrap();
        let c =
            datafusion::arrow::compute::cast(c, &datafusion::arrow::datatypes::DataType::Float64)
                .unwrap();
        let a = c.as_primitive::<Float64Type>();
        (0..a.len()).map(|i| a.value(i)).collect()
    };
    let key = datafusion::arrow::compute::cast(
        batch.column_by_name("customer_id").unwrap(),
        &datafusion::arrow::datatypes::DataType::Int64,
    )
    .unwrap();
    let keys: Vec<i64> = key.as_primitive::<Int64Type>().values().to_vec();
    assert_eq!(keys, [1, 2]);
    assert_eq!(f64s("spend"), [40.0, 5.0]);
    assert_eq!(f64s("score"), [1.0, 0.25]);
    assert_eq!(f64s("rollup_weight"), [3.0, 2.0]);
    let included = batch.column_by_name("included").unwrap().as_boolean();
    assert!(included.value(0) && included.value(1));
}

/// Why customers are excluded, counted per cause. Customers 1 and 2 have
/// events, customer 3 none: `top = max(amount)` has no default, so it is
/// NULL for 3, and so are the component `value = minmax(top)` and the
/// score; 3's rollup weight `visits` is 0. So one customer is excluded,
/// under each of those four causes, and nobody under any other.
#[test]
fn exclusions_are_counted_by_cause() {
    let dir = good_dir();
    std::fs::write(dir.path().join("customers.csv"), "customer_id\n1\n2\n3\n").unwrap();
    let formula = GOOD
        .replace(
            "[measures.visits]",
            "[measures.top]\nsource = \"ev\"\nexpr = \"max(amount)\"\n\n[measures.visits]",
        )
        .replace("expr = \"minmax(spend)\"", "expr = \"minmax(top)\"")
        .replace("weight = \"visits + 1\"", "weight = \"visits\"");
    std::fs::write(dir.path().join("formula.toml"), &formula).unwrap();
    let o = croo(
        dir.path(),
        &[
            "run",
            "formula.toml",
            "--period",
            "2026-03",
            "--format",
            "json",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let whole = &doc["results"][0];
    assert_eq!(whole["excluded"], 1);
    assert_eq!(
        doc["exclusions"]["2026-03-01"],
        serde_json::json!({
            "measure `top` is NULL": 1,
            "component `value` is NULL": 1,
            "score is NULL": 1,
            "rollup weight is <= 0": 1,
        })
    );
    // So does explain.
    let o = croo(
        dir.path(),
        &[
            "explain",
            "formula.toml",
            "--period",
            "2026-03",
            "--format",
            "json",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let e: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(e["exclusions"], doc["exclusions"]["2026-03-01"]);
    // The table says it too.
    let o = croo(dir.path(), &["run", "formula.toml", "--period", "2026-03"]);
    assert!(
        text(&o).contains("excluded in 2026-03-01: "),
        "{}",
        text(&o)
    );

    // Every customer excluded: a warning naming the causes (in a store of
    // its own: March is final in the first, and this version changes it).
    let all_out = formula.replace("weight = \"visits\"", "weight = \"visits - 5\"");
    std::fs::write(dir.path().join("formula.toml"), all_out).unwrap();
    let o = croo(
        dir.path(),
        &[
            "run",
            "formula.toml",
            "--period",
            "2026-03",
            "--format",
            "json",
            "--out",
            "all-out",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["exclusions"]["2026-03-01"]["rollup weight is <= 0"], 3);
    let warned = doc["warnings"].as_array().unwrap().iter().any(|w| {
        let w = w.as_str().unwrap();
        w.contains("every one of the 3 active customers is excluded")
            && w.contains("rollup weight is <= 0 (3)")
    });
    assert!(warned, "{doc}");
}

/// `croo explain` compares with the period before by default, as the API
/// does (`explain_is_the_clis_explanation` in api/tests/http.rs); when that
/// period cannot be scored (no data before March here) it explains the
/// period alone, says why, and prints no shift-share table.
#[test]
fn explain_compares_with_the_period_before_by_default() {
    let dir = good_dir();
    // Customer 1 also spends 8 in February: spend 8, 0; visits 1, 0
    // (customer 2 has no event: defaults). value = minmax = 1, 0; habit =
    // 0.5, 0; score 1 * ... = 0.75, 0; weights 2, 1: 100 * 1.5 / 3 = 50.
    std::fs::write(
        dir.path().join("ev.csv"),
        "customer_id,at,amount\n1,2026-02-10T00:00:00Z,8\n1,2026-03-01T00:00:00Z,10\n1,2026-03-02T00:00:00Z,30\n2,2026-03-03T00:00:00Z,5\n",
    )
    .unwrap();
    let json = |extra: &[&str]| {
        let mut a = vec![
            "explain",
            "formula.toml",
            "--period",
            "2026-03",
            "--format",
            "json",
        ];
        a.extend_from_slice(extra);
        let o = croo(dir.path(), &a);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let by_default = json(&[]);
    assert_eq!(by_default, json(&["--compare", "2026-02"]));
    assert_eq!(by_default["compare"], "2026-02-01");
    assert!((by_default["score_before"].as_f64().unwrap() - 50.0).abs() < 1e-9);
    assert!((by_default["score"].as_f64().unwrap() - 70.0).abs() < 1e-9);

    // March alone: February has no events now.
    std::fs::write(
        dir.path().join("ev.csv"),
        "customer_id,at,amount\n1,2026-03-01T00:00:00Z,10\n2,2026-03-03T00:00:00Z,5\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("formula.toml"),
        GOOD.replace(
            "[measures.spend]",
            "[dimensions]\ntier = \"customer_id\"\n\n[measures.spend]",
        ),
    )
    .unwrap();
    let o = croo(
        dir.path(),
        &[
            "explain",
            "formula.toml",
            "--period",
            "2026-03",
            "--by",
            "tier",
        ],
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(t.contains("note: no comparison with 2026-02-01"), "{t}");
    assert!(!t.contains("share before"), "{t}");
}

/// `croo keys add --scope` warns when no formula of `--formulas` has the
/// scope's dimension; the key is made all the same.
#[test]
fn a_scope_on_an_unknown_dimension_is_warned() {
    let dir = tempfile::tempdir().unwrap();
    let o = croo(
        dir.path(),
        &["sample", "--out", "s", "--customers", "20", "--months", "1"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let add = |name: &str, scope: &str| {
        croo(
            dir.path(),
            &[
                "keys",
                "add",
                "--file",
                "keys.json",
                "--name",
                name,
                "--role",
                "viewer",
                "--scope",
                scope,
                "--formulas",
                "s",
                "--results",
                "r",
            ],
        )
    };
    let o = add("lead", "Plan=PAYG");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let t = String::from_utf8_lossy(&o.stderr);
    assert!(
        t.contains("warning: no formula in s has a dimension `Plan` (dimensions there: plan, region, segment)"),
        "{t}"
    );
    let o = add("smb", "segment=smb");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("warning"));
}

/// A telecom's exports as they come: `;`-separated CSV, phone numbers as
/// keys (text, leading zero), UK dates, events with epoch seconds. Read as
/// the source's `columns`, `delimiter` say, `croo check` passes and `croo
/// run` reads every value.
///
/// Customer 07700900001 joined 01/02/2026, 07700900002 on 15/01/2026: both
/// active in March. Events: ...001 spends 10 on 2026-03-02 (1772409600) and
/// 20 on 2026-03-20 (1773964800); ...002 spends 100 on 2026-02-10
/// (1770681600), outside March. value = min(spend / 30, 1) = 1, 0;
/// score = 100 * (1 + 0) / 2 = 50, population 2.
#[test]
fn sources_say_how_to_read_their_columns() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("subscribers.csv"),
        "phone;segment;joined\n07700900001;a;01/02/2026\n07700900002;b;15/01/2026\n",
    )
    .unwrap();
    std::fs::write(
        d.join("usage.ndjson"),
        "{\"msisdn\":\"07700900001\",\"at\":1772409600,\"amount\":10}\n{\"msisdn\":\"07700900001\",\"at\":1773964800,\"amount\":20}\n{\"msisdn\":\"07700900002\",\"at\":1770681600,\"amount\":100}\n",
    )
    .unwrap();
    let formula = r#"[formula]
name = "telco"
version = "1"
grain = "month"

[sources.subscribers]
role = "entity"
uri = "subscribers.csv"
key = "phone"
active_from = "joined"
delimiter = ";"
[sources.subscribers.columns.phone]
type = "text"
[sources.subscribers.columns.joined]
format = "%d/%m/%Y"

[sources.usage]
uri = "usage.ndjson"
key = "msisdn"
time = "at"
empty_periods = "allow"
[sources.usage.columns.at]
unit = "s"

[dimensions]
segment = "segment"

[measures.spend]
source = "usage"
expr = "sum(amount)"
default = 0

[score.components.value]
weight = 1
expr = "min(spend / 30, 1)"
"#;
    std::fs::write(d.join("telco.toml"), formula).unwrap();
    let o = croo(d, &["check", "--schemas", "telco.toml"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = croo(
        d,
        &[
            "run",
            "telco.toml",
            "--period",
            "2026-03",
            "--format",
            "json",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let whole = &doc["results"][0];
    assert_eq!(whole["population"], 2, "{doc}");
    assert!(
        (whole["score"].as_f64().unwrap() - 50.0).abs() < 1e-9,
        "{doc}"
    );

    // A date that is not in the format: check names the source as the
    // formula does, and the value; so does run.
    std::fs::write(
        d.join("subscribers.csv"),
        "phone;segment;joined\n07700900001;a;01/02/2026\n07700900002;b;2026-01-15\n",
    )
    .unwrap();
    for args in [
        vec!["check", "--schemas", "telco.toml"],
        vec!["run", "telco.toml", "--period", "2026-03"],
    ] {
        let o = croo(d, &args);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {t}");
        assert!(
            t.contains("subscribers") && t.contains("2026-01-15"),
            "{args:?}: {t}"
        );
        assert!(!t.contains("scoring customers"), "{args:?}: {t}");
    }
}
