//! One test per numbered rule of FORMULA.md, on hand-computed data.

use crate::*;

const CUSTOMERS: &str = "customer_id,segment,joined_at,left_at
1,smb,2025-12-15T00:00:00Z,
2,smb,2026-01-01T00:00:00Z,2026-01-01T00:00:00Z
3,ent,2026-02-01T00:00:00Z,
4,ent,2025-01-01T00:00:00Z,2025-12-31T23:59:59Z
";

const TX: &str = "customer_id,ts,amount,kind
1,2026-01-10T00:00:00Z,100,buy
1,2026-01-20T00:00:00Z,50,refund
2,2026-01-31T23:59:59Z,30,buy
2,2026-02-01T00:00:00Z,999,buy
3,2026-01-15T00:00:00Z,40,buy
9,2026-01-15T00:00:00Z,500,buy
";

const BASIC: &str = r#"
[formula]
name = "rules"
version = "1"
grain = "month"

[sources.customers]
role = "entity"
uri = "customers.csv"
key = "customer_id"
active_from = "joined_at"
active_to = "left_at"

[sources.tx]
uri = "tx.csv"
key = "customer_id"
time = "ts"

[dimensions]
segment = "segment"

[measures.spend]
source = "tx"
expr = "sum(amount)"
filter = "kind = 'buy'"
default = 0

[measures.n]
source = "tx"
expr = "count(*)"

[score.components.a]
weight = 0.5
expr = "spend / 100"

[score.components.b]
weight = 0.5
expr = "n"
"#;

/// The components of [`BASIC`], which the tests of measure shapes replace.
const COMPONENTS_AB: &str = "[score.components.a]\nweight = 0.5\nexpr = \"spend / 100\"\n\n[score.components.b]\nweight = 0.5\nexpr = \"n\"\n";

/// Runs January of `formula` (a variant of [`BASIC`] whose components are
/// replaced by one component `d` of weight 1) in `dir`, where both
/// customers are included. Returns d's rollup and the score.
async fn january_d(dir: &std::path::Path, formula: &str) -> (Option<f64>, Option<f64>) {
    assert!(formula.contains("components.d"), "{formula}");
    write(dir, "formula.toml", formula);
    let rows = run(dir, "2026-01-01", "2026-01-01").await.unwrap();
    let jan = row(&rows, "2026-01-01", None);
    assert_eq!((jan.population, jan.included), (2, 2));
    (component(jan, "d").rollup, jan.score)
}

fn basic() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "customers.csv", CUSTOMERS);
    write(dir.path(), "tx.csv", TX);
    write(dir.path(), "formula.toml", BASIC);
    dir
}

/// Rules 1, 2, 5, 6: population boundaries, measure windows, filters,
/// defaults, orphan keys, exclusion and the weighted rollup.
///
/// January: customer 1 (joined Dec 15) and 2 (left exactly at Jan 1, so
/// `active_to >= start`) are active; 3 joined exactly at Feb 1 (not
/// `< end`) and 4 left before Jan 1. spend: c1 = 100 (the refund is
/// filtered out), c2 = 30 (the 999 at exactly Feb 1 belongs to February).
/// n (no filter): c1 = 2, c2 = 1. a = spend/100 = 1.0, 0.3; b = 2, 1.
/// score = 0.5a + 0.5b = 1.5, 0.65; rollup = 100 * 2.15 / 2 = 107.5;
/// a's rollup 0.65 (contribution 32.5), b's 1.5 (contribution 75).
#[tokio::test]
async fn population_measures_and_rollup_by_hand() {
    let dir = basic();
    let rows = run(dir.path(), "2026-01-01", "2026-02-01").await.unwrap();
    let jan = row(&rows, "2026-01-01", None);
    assert_eq!((jan.population, jan.included, jan.excluded), (2, 2, 0));
    approx(jan.score, 107.5);
    approx(Some(jan.weight_total), 2.0);
    approx(component(jan, "a").rollup, 0.65);
    approx(component(jan, "a").contribution, 32.5);
    approx(component(jan, "b").rollup, 1.5);
    approx(component(jan, "b").contribution, 75.0);
    approx(
        row(&rows, "2026-01-01", Some(("segment", "smb"))).score,
        107.5,
    );
    assert!(
        rows.iter()
            .all(|r| r.value.as_deref() != Some("ent") || r.period != date("2026-01-01"))
    );

    // February: c1 and c3 are active; neither has a transaction, so spend
    // falls back to its default 0 but n (no default) is NULL: both
    // customers have a NULL score and are excluded.
    let feb = row(&rows, "2026-02-01", None);
    assert_eq!((feb.population, feb.included, feb.excluded), (2, 0, 2));
    assert_eq!(feb.score, None);
    assert_eq!(component(feb, "a").rollup, None);
    let ent = row(&rows, "2026-02-01", Some(("segment", "ent")));
    assert_eq!((ent.population, ent.included), (1, 0));
}

/// Rule 1 without active columns: every entity row is in every period, and
/// a period nobody is active in still has a whole-population row.
#[tokio::test]
async fn empty_period_and_no_active_columns() {
    let dir = basic();
    // No transaction in November 2024: by default a run stops there (the
    // data has not arrived, see `contracts`).
    let e = run(dir.path(), "2024-11-01", "2024-11-01")
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("source `tx` has no rows in period 2024-11-01"),
        "{e}"
    );
    // Declared normal for the source, the period is scored.
    let allow = BASIC.replace(
        "time = \"ts\"\n",
        "time = \"ts\"\nempty_periods = \"allow\"\n",
    );
    write(dir.path(), "formula.toml", &allow);
    // customer 4, the earliest, joined on 2025-01-01
    let rows = run(dir.path(), "2024-11-01", "2024-11-01").await.unwrap();
    let nov = row(&rows, "2024-11-01", None);
    assert_eq!((nov.population, nov.included), (0, 0));
    assert_eq!(nov.score, None);
    assert_eq!(rows.len(), 1, "no dimension rows for an empty period");

    let f = allow.replace("active_from = \"joined_at\"\nactive_to = \"left_at\"\n", "");
    write(dir.path(), "formula.toml", &f);
    let rows = run(dir.path(), "2024-11-01", "2024-11-01").await.unwrap();
    assert_eq!(row(&rows, "2024-11-01", None).population, 4);
}

const VALUES: &str = "customer_id,at,x,y
1,2026-03-05T00:00:00Z,1,0
2,2026-03-05T00:00:00Z,2,2
3,2026-03-05T00:00:00Z,3,4
4,2026-03-05T00:00:00Z,4,
";

fn values_formula(derived: &str, components: &str, extra: &str) -> String {
    format!(
        r#"
[formula]
name = "values"
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

[measures.x]
source = "ev"
expr = "max(x)"

[measures.y]
source = "ev"
expr = "max(y)"

[derived]
{derived}

{components}
{extra}
"#
    )
}

fn values_dir(formula: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "customers.csv",
        "customer_id,segment\n1,a\n2,a\n3,b\n4,b\n",
    );
    write(dir.path(), "ev.csv", VALUES);
    write(dir.path(), "formula.toml", formula);
    dir
}

/// Rules 3 and 4: division by zero is NULL, `if` takes the else branch on
/// NULL, and the population functions over one period.
///
/// x = 1, 2, 3, 4; y = 0, 2, 4, NULL (customer 4 has a row, so no default).
/// ratio = x / y = NULL, 1, 0.75, NULL; c_if = if(ratio > 0.8, 1, 0) =
/// 0, 1, 0, 0 -> rollup 0.25.
/// minmax(x) = (x - 1) / 3 = 0, 1/3, 2/3, 1 -> mean 0.5.
/// zscore(x): mean 2.5, population sd sqrt(5/4); z^2 averages to exactly 1
/// (a sample sd would give 0.75).
/// pct_rank(y) over the 3 non-NULL values 0, 2, 4 = 0, 0.5, 1, NULL for
/// customer 4 -> if(pr >= 0, pr, 0.2) = 0, 0.5, 1, 0.2 -> mean 0.425.
/// score = 100 * 0.25 * (0.5 + 1 + 0.425 + 0.25) = 54.375.
#[tokio::test]
async fn formula_values_and_population_functions_by_hand() {
    let f = values_formula(
        "ratio = \"x / y\"\nmm = \"minmax(x)\"\nz = \"zscore(x)\"\npr = \"pct_rank(y)\"",
        r#"
[score.components.c_mm]
weight = 0.25
expr = "mm"
[score.components.c_z]
weight = 0.25
expr = "z * z"
[score.components.c_pr]
weight = 0.25
expr = "if(pr >= 0, pr, 0.2)"
[score.components.c_if]
weight = 0.25
expr = "if(ratio > 0.8, 1, 0)"
"#,
        "",
    );
    let dir = values_dir(&f);
    let rows = run(dir.path(), "2026-03-01", "2026-03-01").await.unwrap();
    let all = row(&rows, "2026-03-01", None);
    assert_eq!((all.population, all.included), (4, 4));
    approx(component(all, "c_mm").rollup, 0.5);
    approx(component(all, "c_z").rollup, 1.0);
    approx(component(all, "c_pr").rollup, 0.425);
    approx(component(all, "c_if").rollup, 0.25);
    approx(all.score, 54.375);
    approx(component(all, "c_pr").contribution, 10.625);
}

/// `coalesce` and `is_null`.
///
/// x = 1, 2, 3, 4; y = 0, 2, 4, NULL. ratio = x / y = NULL, 1, 0.75, NULL.
/// c_co = coalesce(ratio, y, 9): customer 1's ratio is NULL and y is 0,
/// so 0; then 1, 0.75; customer 4's ratio and y are NULL, so 9 -> mean
/// (0 + 1 + 0.75 + 9) / 4 = 2.6875.
/// c_nul = if(is_null(ratio), 1, 0) = 1, 0, 0, 1 -> mean 0.5.
/// score = 100 * 0.5 * (2.6875 + 0.5) = 159.375.
#[tokio::test]
async fn coalesce_and_is_null_by_hand() {
    let f = values_formula(
        "ratio = \"x / y\"",
        r#"
[score.components.c_co]
weight = 0.5
expr = "coalesce(ratio, y, 9)"
[score.components.c_nul]
weight = 0.5
expr = "if(is_null(ratio), 1, 0)"
"#,
        "",
    );
    let dir = values_dir(&f);
    let rows = run(dir.path(), "2026-03-01", "2026-03-01").await.unwrap();
    let all = row(&rows, "2026-03-01", None);
    assert_eq!((all.population, all.included), (4, 4));
    approx(component(all, "c_co").rollup, 2.6875);
    approx(component(all, "c_nul").rollup, 0.5);
    approx(all.score, 159.375);
}

/// Rule 4: minmax gives 0.5 when max = min, zscore 0 when the deviation is
/// 0, pct_rank 0 when one customer has a value; ties take the lowest rank.
#[tokio::test]
async fn population_function_edge_cases() {
    let f = values_formula(
        "",
        r#"
[score.components.flat_mm]
weight = 1
expr = "minmax(x * 0 + 7)"
[score.components.flat_z]
weight = 1
expr = "zscore(x * 0 + 7)"
[score.components.one_pr]
weight = 1
expr = "if(x == 4, pct_rank(if(x == 4, x, x / 0)), 0)"
[score.components.ties]
weight = 1
expr = "pct_rank(min(x, 2))"
"#,
        "",
    );
    let dir = values_dir(&f);
    let rows = run(dir.path(), "2026-03-01", "2026-03-01").await.unwrap();
    let all = row(&rows, "2026-03-01", None);
    approx(component(all, "flat_mm").rollup, 0.5);
    approx(component(all, "flat_z").rollup, 0.0);
    approx(component(all, "one_pr").rollup, 0.0);
    // min(x, 2) = 1, 2, 2, 2: ranks 1, 2, 2, 2 -> 0, 1/3, 1/3, 1/3; mean 0.25
    approx(component(all, "ties").rollup, 0.25);
}

/// Rules 5 and 6 with a custom `score.expr` and a rollup weight: customers
/// with a weight <= 0 are excluded; contributions are NULL.
///
/// v = 10, 10, 20, 30; w = 1, 0, 2, -1. p = pct_rank(v) = 0, 0, 2/3, 1;
/// q = v / 10 = 1, 1, 2, 3; score = p * q = 0, 0, 4/3, 3.
/// Included: c1 (w 1) and c3 (w 2). score = 100 * (0 + 2 * 4/3) / 3 =
/// 800/9; p's rollup (2 * 2/3) / 3 = 4/9; q's (1 + 4) / 3 = 5/3.
/// Segment a: only c1 -> 0; segment b: only c3 -> 400/3.
#[tokio::test]
async fn custom_score_and_rollup_weight_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "customers.csv",
        "customer_id,segment\n1,a\n2,a\n3,b\n4,b\n",
    );
    write(
        dir.path(),
        "ev.ndjson",
        r#"{"customer_id": 1, "at": "2026-03-01T00:00:00Z", "v": 10, "w": 1}
{"customer_id": 2, "at": "2026-03-02T00:00:00Z", "v": 10, "w": 0}
{"customer_id": 3, "at": "2026-03-03T00:00:00Z", "v": 20, "w": 2}
{"customer_id": 4, "at": "2026-03-31T23:59:59Z", "v": 30, "w": -1}
"#,
    );
    write(
        dir.path(),
        "formula.toml",
        r#"
[formula]
name = "custom"
version = "1"
grain = "month"
[sources.customers]
role = "entity"
uri = "customers.csv"
key = "customer_id"
[sources.ev]
uri = "ev.ndjson"
key = "customer_id"
time = "at"
[dimensions]
segment = "segment"
[measures.v]
source = "ev"
expr = "max(v)"
[measures.w]
source = "ev"
expr = "max(w)"
[score.components.p]
weight = 0.5
expr = "pct_rank(v)"
[score.components.q]
weight = 0.5
expr = "v / 10"
[score]
expr = "p * q"
[rollup]
weight = "w"
"#,
    );
    let rows = run(dir.path(), "2026-03-01", "2026-03-01").await.unwrap();
    let all = row(&rows, "2026-03-01", None);
    assert_eq!((all.population, all.included, all.excluded), (4, 2, 2));
    approx(all.score, 800.0 / 9.0);
    approx(Some(all.weight_total), 3.0);
    approx(component(all, "p").rollup, 4.0 / 9.0);
    approx(component(all, "q").rollup, 5.0 / 3.0);
    assert_eq!(component(all, "p").contribution, None);
    let a = row(&rows, "2026-03-01", Some(("segment", "a")));
    assert_eq!((a.included, a.excluded), (1, 1));
    approx(a.score, 0.0);
    approx(
        row(&rows, "2026-03-01", Some(("segment", "b"))).score,
        400.0 / 3.0,
    );
}

/// Rule 7 and the results store: a run writes its Parquet results and
/// manifest and publishes edition 1; a second run with the same numbers
/// is kept but publishes nothing (edition 1 stays current); changed data
/// publishes edition 2, which becomes current.
#[tokio::test]
async fn store_keeps_runs_and_tracks_current() {
    let dir = basic();
    let out = dir.path().join("results");
    let current = |out: &std::path::Path| {
        engine::store::read_current(out).unwrap().formulas["rules"]["2026-01-01"].clone()
    };
    run(dir.path(), "2026-01-01", "2026-01-01").await.unwrap();
    let first = current(&out);
    run(dir.path(), "2026-01-01", "2026-01-01").await.unwrap();
    let second = current(&out);
    assert_eq!(first, second, "the same numbers: edition 1 stays current");
    let runs: Vec<_> = std::fs::read_dir(out.join("runs"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(runs.len(), 2, "both runs are kept");
    let log = engine::store::read_current(&out).unwrap().editions["rules"]["2026-01-01"].clone();
    assert_eq!(log.editions.len(), 1);
    let id = &second;
    let m = engine::store::read_manifest(&out, id).unwrap();
    assert_eq!(m.outcome, "succeeded");
    assert!(m.formula_hash.starts_with("sha256:"));
    let tx = m.sources.iter().find(|s| s.name == "tx").unwrap();
    // January rows: c1 twice, c2, c3 and the orphan 9 (the 999 at exactly
    // Feb 1 is outside the range)
    assert_eq!(tx.rows_read, 5);
    assert!(out.join("runs").join(id).join("results.parquet").exists());
    // Another January event: different numbers, edition 2 is current.
    let tx_path = dir.path().join("tx.csv");
    let mut text = std::fs::read_to_string(&tx_path).unwrap();
    let first_row = text.lines().nth(1).unwrap().to_string();
    text.push_str(&first_row);
    text.push('\n');
    std::fs::write(&tx_path, text).unwrap();
    // January is final (the clock is in November, no settle): without a
    // restatement nothing is published for it...
    let loaded = engine::load(&dir.path().join("formula.toml")).unwrap();
    let mut req = engine::RunRequest {
        periods: engine::PeriodChoice::One(date("2026-01-01")),
        out: out.clone(),
        detail: false,
        session: Default::default(),
        publishing: Default::default(),
    };
    let clock = || chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 11, 23, 9, 0, 0).unwrap();
    let refused = engine::run(&loaded, &req, &clock).await.unwrap();
    assert!(matches!(
        refused.manifest.publications[0].outcome,
        engine::editions::Outcome::Refused { edition: 1, .. }
    ));
    assert_eq!(current(&out), first);
    // ... and with one, edition 2 is published and current.
    req.publishing.publisher.restate = Some("a late event".into());
    engine::run(&loaded, &req, &clock).await.unwrap();
    let third = current(&out);
    assert_ne!(third, first, "edition 2 is current");
    let log = engine::store::read_current(&out).unwrap().editions["rules"]["2026-01-01"].clone();
    assert_eq!(log.editions.len(), 2);
    assert_eq!(log.editions[1].run_id, third);
}

/// Sums and means of small integers (`CASE ... THEN 1.0 ELSE 0.0 END`, an
/// integer column, a `CASE` without `ELSE`) are summed as integers and
/// divided as floats.
///
/// January: customer 1 has three contacts, flags [true, false, false],
/// csat [4, 5, NULL]; customer 2 one contact, flag true, csat 3.
/// share = avg(CASE flag 1.0 ELSE 0.0) → 1/3, 1; twice = sum(CASE flag 2.0
/// ELSE 0.0) → 2, 2; sat = avg(csat) → 4.5, 3; hit = avg(CASE flag THEN 7
/// END) → 7, 7 (NULLs are not counted). d = share + twice + sat + hit →
/// 13.8333.., 13; rollup 13.41666...
#[tokio::test]
async fn means_of_small_integers_by_hand() {
    let dir = basic();
    write(
        dir.path(),
        "contacts.csv",
        "customer_id,at,flag,csat\n1,2026-01-02T00:00:00Z,true,4\n1,2026-01-03T00:00:00Z,false,5\n1,2026-01-04T00:00:00Z,false,\n2,2026-01-05T00:00:00Z,true,3\n",
    );
    let f = BASIC.replace(
        COMPONENTS_AB,
        "[sources.contacts]\nuri = \"contacts.csv\"\nkey = \"customer_id\"\ntime = \"at\"\n\n\
         [measures.share]\nsource = \"contacts\"\nexpr = \"avg(CASE WHEN flag THEN 1.0 ELSE 0.0 END)\"\n\n\
         [measures.twice]\nsource = \"contacts\"\nexpr = \"sum(CASE WHEN flag THEN 2.0 ELSE 0.0 END)\"\n\n\
         [measures.sat]\nsource = \"contacts\"\nexpr = \"avg(csat)\"\n\n\
         [measures.hit]\nsource = \"contacts\"\nexpr = \"avg(CASE WHEN flag THEN 7 END)\"\n\n\
         [score.components.d]\nweight = 1\nexpr = \"share + twice + sat + hit + 0 * spend * n\"\n",
    );
    let (d, _) = january_d(dir.path(), &f).await;
    approx(d, (1.0 / 3.0 + 2.0 + 4.5 + 7.0 + 13.0) / 2.0);
}

/// A source whose only aggregates are one DISTINCT aggregate and row
/// counts is aggregated in one pass (grouped by key, period and value,
/// then by key and period); the numbers are those of the plain rules.
///
/// January, with a second 100 buy for customer 1: buys = count(DISTINCT
/// amount) over `amount > 60`: c1 {100} → 1; c2's only row (30) fails the
/// filter → no row counts → default 0. n = count(*): c1 3, c2 1.
/// d = buys + n / 10 → 1.3, 0.1; rollup 0.7, score 70. With
/// `sum(DISTINCT amount)` instead: c1 100 (not 200), c2 default 0 →
/// d = total / 100 + n / 10 → 1.3, 0.1 again.
#[tokio::test]
async fn one_distinct_aggregate_with_counts_by_hand() {
    for (measure, d) in [
        ("buys = \"count(DISTINCT amount)\"", "buys + n / 10"),
        ("total = \"sum(DISTINCT amount)\"", "total / 100 + n / 10"),
    ] {
        let (name, expr) = measure.split_once(" = ").unwrap();
        let dir = basic();
        write(
            dir.path(),
            "tx.csv",
            &format!("{TX}1,2026-01-25T00:00:00Z,100,buy\n"),
        );
        let f = BASIC
            .replace(
                "[measures.spend]\nsource = \"tx\"\nexpr = \"sum(amount)\"\nfilter = \"kind = 'buy'\"\ndefault = 0\n",
                &format!("[measures.{name}]\nsource = \"tx\"\nexpr = {expr}\nfilter = \"amount > 60\"\ndefault = 0\n"),
            )
            .replace(
                COMPONENTS_AB,
                &format!("[score.components.d]\nweight = 1\nexpr = \"{d}\"\n"),
            );
        assert!(f.contains("DISTINCT") && f.contains("components.d"), "{f}");
        write(dir.path(), "formula.toml", &f);
        let rows = run(dir.path(), "2026-01-01", "2026-01-01").await.unwrap();
        let jan = row(&rows, "2026-01-01", None);
        assert_eq!((jan.population, jan.included), (2, 2), "{measure}");
        approx(component(jan, "d").rollup, 0.7);
        approx(jan.score, 70.0);
    }
}

/// DISTINCT aggregates (computed over distinct key, period and value rows)
/// with a filter, next to plain aggregates of the same source.
///
/// January, customer 1: amounts 100 (buy), 50 (refund) → buys {100}:
/// kinds = count(DISTINCT kind) = 2, buys = count(DISTINCT amount) over
/// buys = 1, total = sum(DISTINCT amount) over buys = 100. Customer 2:
/// one buy of 30 in January (the 999 is February) → kinds 1, buys 1,
/// total 30. Component d = kinds + buys + total / 100: c1 = 4, c2 = 2.3;
/// equal weights → rollup (4 + 2.3) / 2 = 3.15, score 315.
#[tokio::test]
async fn distinct_aggregates_with_filters_by_hand() {
    let dir = basic();
    let f = BASIC
        .replace(
            COMPONENTS_AB,
            "[measures.kinds]\nsource = \"tx\"\nexpr = \"count(DISTINCT kind)\"\n\n[measures.buys]\nsource = \"tx\"\nexpr = \"count(DISTINCT amount)\"\nfilter = \"kind = 'buy'\"\ndefault = 0\n\n[measures.total]\nsource = \"tx\"\nexpr = \"sum(DISTINCT amount)\"\nfilter = \"kind = 'buy'\"\n\n[score.components.d]\nweight = 1\nexpr = \"kinds + buys + total / 100 + 0 * spend * n\"\n",
        );
    assert!(f.contains("count(DISTINCT kind)"));
    write(dir.path(), "formula.toml", &f);
    let rows = run(dir.path(), "2026-01-01", "2026-01-01").await.unwrap();
    let jan = row(&rows, "2026-01-01", None);
    assert_eq!((jan.population, jan.included), (2, 2));
    approx(component(jan, "d").rollup, 3.15);
    approx(jan.score, 315.0);
}

/// Measures that repeat an aggregate (each is computed once) and `count`s
/// of values that can or cannot be NULL (only the latter become row
/// counts). January, customer 1: 100 buy, 50 refund, one buy without an
/// amount; customer 2: 30 buy.
///
/// n = rows = count(*): c1 3, c2 1. priced = count(amount): c1 2, c2 1.
/// buyshare = avg(CASE kind = 'buy' THEN 1.0 ELSE 0.0): c1 2/3, c2 1.
/// mean = avg(amount): c1 (100 + 50) / 2 = 75, c2 30.
/// d = n + rows + priced + buyshare + mean / 100: c1 3 + 3 + 2 + 2/3 +
/// 0.75 = 9.41667, c2 1 + 1 + 1 + 1 + 0.3 = 4.3; rollup 6.858333, score
/// 685.8333.
#[tokio::test]
async fn repeated_aggregates_and_counts_of_nullable_values_by_hand() {
    let dir = basic();
    write(
        dir.path(),
        "tx.csv",
        &format!("{TX}1,2026-01-12T00:00:00Z,,buy\n"),
    );
    let f = BASIC.replace(
        COMPONENTS_AB,
        "[measures.rows]\nsource = \"tx\"\nexpr = \"count(*)\"\n\n[measures.priced]\nsource = \"tx\"\nexpr = \"count(amount)\"\n\n[measures.buyshare]\nsource = \"tx\"\nexpr = \"avg(CASE WHEN kind = 'buy' THEN 1.0 ELSE 0.0 END)\"\n\n[measures.mean]\nsource = \"tx\"\nexpr = \"avg(amount)\"\n\n[score.components.d]\nweight = 1\nexpr = \"n + rows + priced + buyshare + mean / 100 + 0 * spend\"\n",
    );
    let (d, score) = january_d(dir.path(), &f).await;
    approx(d, (8.0 + 2.0 / 3.0 + 0.75 + 4.3) / 2.0);
    approx(score, 100.0 * (8.0 + 2.0 / 3.0 + 0.75 + 4.3) / 2.0);
}

/// Text keys take the (key, period) pair path, integer keys the packed
/// one (`croo_period_key`): the same customers with keys `c1`, `c2`, ...
/// give the same result rows, with the by-hand January of
/// `population_measures_and_rollup_by_hand`.
#[tokio::test]
async fn text_keys_give_the_numbers_of_integer_keys() {
    let text = |csv: &str| -> String {
        csv.lines()
            .enumerate()
            .map(|(i, l)| {
                if i == 0 {
                    format!("{l}\n")
                } else {
                    format!("c{l}\n")
                }
            })
            .collect()
    };
    let ints = basic();
    let texts = basic();
    write(texts.path(), "customers.csv", &text(CUSTOMERS));
    write(texts.path(), "tx.csv", &text(TX));
    assert!(
        std::fs::read_to_string(texts.path().join("tx.csv"))
            .unwrap()
            .contains("\nc2,")
    );
    let a = run(ints.path(), "2026-01-01", "2026-02-01").await.unwrap();
    let b = run(texts.path(), "2026-01-01", "2026-02-01").await.unwrap();
    assert_eq!(a, b);
    let jan = row(&b, "2026-01-01", None);
    assert_eq!((jan.population, jan.included), (2, 2));
    approx(jan.score, 107.5);
}
