//! Data contracts: bad source data stops the run, or is handled as the
//! formula declares and counted, never scored silently. Expected numbers
//! worked out by hand in the comments.

use engine::store::read_manifest;

use crate::{approx, row, run, write};

/// Three customers in January; `spend` sums their purchases; the score is
/// spend / 100 with weight 1, so the whole population's score is the mean
/// spend.
const FORMULA: &str = r#"
[formula]
name = "contracts"
version = "1"
grain = "month"

[sources.customers]
role = "entity"
uri = "customers.csv"
key = "customer_id"
CUSTOMER_CHECKS

[sources.tx]
uri = "tx.csv"
key = "customer_id"
time = "ts"
TX_CHECKS

[dimensions]
segment = "segment"

[measures.spend]
source = "tx"
expr = "sum(amount)"
default = 0

[score.components.s]
weight = 1
expr = "spend / 100"
"#;

const CUSTOMERS: &str = "customer_id,segment\n1,smb\n2,smb\n3,ent\n";

/// January: c1 buys 100 and 20, c2 30, c3 60; a row of customer 9 (no such
/// customer) and one with no customer at all. February: c1 buys 50.
const TX: &str = "customer_id,ts,amount,channel
1,2026-01-05T00:00:00Z,100,web
1,2026-01-06T00:00:00Z,20,phone
2,2026-01-07T00:00:00Z,30,web
3,2026-01-08T00:00:00Z,60,fax
9,2026-01-09T00:00:00Z,500,web
,2026-01-10T00:00:00Z,700,web
1,2026-02-05T00:00:00Z,50,web
";

fn setup(customer_checks: &str, tx_checks: &str, customers: &str, tx: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "customers.csv", customers);
    write(dir.path(), "tx.csv", tx);
    write(
        dir.path(),
        "formula.toml",
        &FORMULA
            .replace("CUSTOMER_CHECKS", customer_checks)
            .replace("TX_CHECKS", tx_checks),
    );
    dir
}

fn manifest(dir: &std::path::Path) -> engine::store::Manifest {
    let out = dir.join("results");
    let id = engine::store::list_runs(&out).unwrap().pop().unwrap();
    read_manifest(&out, &id).unwrap()
}

/// Clean data: the implicit key checks pass; 2 orphan rows (customer 9 and
/// the NULL key) of the 6 January rows are recorded.
///
/// January: spend 120, 30, 60 -> score 100 * (1.2 + 0.3 + 0.6) / 3 = 70.
#[tokio::test]
async fn clean_data_passes_and_orphans_are_counted() {
    let dir = setup("", "", CUSTOMERS, TX);
    let rows = run(dir.path(), "2026-01-01", "2026-01-01").await.unwrap();
    approx(row(&rows, "2026-01-01", None).score, 70.0);
    let m = manifest(dir.path());
    let checks: Vec<(&str, &str, &str)> = m
        .checks
        .iter()
        .map(|c| (c.source.as_str(), c.check.as_str(), c.outcome.as_str()))
        .collect();
    assert_eq!(
        checks,
        vec![
            ("customers", "not_null(customer_id)", "passed"),
            ("customers", "unique(customer_id)", "passed")
        ]
    );
    let tx = m.sources.iter().find(|s| s.name == "tx").unwrap();
    assert_eq!((tx.rows_read, tx.orphan_rows), (6, 2));
    // 2 of 6 rows is a third: above the 10% warning.
    assert!(
        m.warnings
            .iter()
            .any(|w| w.contains("source `tx`: 2 of its 6 rows (33.3%) match no customer")),
        "{:?}",
        m.warnings
    );
}

/// Duplicate entity keys stop the run, naming them; declared `drop`, every
/// row of a duplicated key is left out and counted.
///
/// With customer 2 twice (smb, then ent), dropped: c1 120, c3 60 -> score
/// 100 * (1.2 + 0.6) / 2 = 90; no `segment=ent` row holds customer 2.
#[tokio::test]
async fn duplicate_keys_stop_the_run_or_are_dropped() {
    let dup = format!("{CUSTOMERS}2,ent\n");
    let dir = setup("", "", &dup, TX);
    let e = run(dir.path(), "2026-01-01", "2026-01-01")
        .await
        .unwrap_err();
    assert_eq!(e.class(), engine::Class::User);
    let m = e.to_string();
    assert!(
        m.contains("source `customers`: check unique(customer_id) failed: 1 values of `customer_id` appear more than once, e.g. 2 (2 rows)"),
        "{m}"
    );

    let dir = setup(
        "checks = [{ unique = \"customer_id\", policy = \"drop\" }]",
        "",
        &dup,
        TX,
    );
    let rows = run(dir.path(), "2026-01-01", "2026-01-01").await.unwrap();
    let jan = row(&rows, "2026-01-01", None);
    assert_eq!(jan.population, 2);
    approx(jan.score, 90.0);
    approx(
        row(&rows, "2026-01-01", Some(("segment", "ent"))).score,
        60.0,
    );
    let c = manifest(dir.path())
        .checks
        .into_iter()
        .find(|c| c.check == "unique(customer_id)")
        .unwrap();
    assert_eq!(
        (c.failing, c.outcome.as_str(), c.declared),
        (1, "dropped", true)
    );
    assert_eq!(c.examples, vec!["2 (2 rows)"]);
}

/// NULL entity keys stop the run; `warn` goes on and records it.
#[tokio::test]
async fn null_keys_stop_the_run() {
    let with_null = format!("{CUSTOMERS},ent\n");
    let dir = setup("", "", &with_null, TX);
    let e = run(dir.path(), "2026-01-01", "2026-01-01")
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("check not_null(customer_id) failed: 1 rows have NULL in `customer_id`"),
        "{e}"
    );
    let dir = setup(
        "checks = [{ not_null = \"customer_id\", policy = \"drop\" }]",
        "",
        &with_null,
        TX,
    );
    let rows = run(dir.path(), "2026-01-01", "2026-01-01").await.unwrap();
    assert_eq!(row(&rows, "2026-01-01", None).population, 3);
}

/// `accepted_values` with `drop` on an event source: the fax row is left
/// out. January: c3 has no accepted row, spend 0 (its default) -> score
/// 100 * (1.2 + 0.3 + 0) / 3 = 50. `warn` keeps it (70) and records it.
#[tokio::test]
async fn accepted_values_drop_or_warn() {
    let check = |policy: &str| {
        format!(
            "checks = [{{ accepted_values = \"channel\", values = [\"web\", \"phone\"], policy = \"{policy}\" }}]"
        )
    };
    let dir = setup("", &check("drop"), CUSTOMERS, TX);
    let rows = run(dir.path(), "2026-01-01", "2026-01-01").await.unwrap();
    approx(row(&rows, "2026-01-01", None).score, 50.0);
    let c = manifest(dir.path()).checks.pop().unwrap();
    assert_eq!((c.failing, c.outcome.as_str()), (1, "dropped"));
    assert_eq!(c.examples, vec!["`fax` (1 rows)"]);

    let dir = setup("", &check("warn"), CUSTOMERS, TX);
    let rows = run(dir.path(), "2026-01-01", "2026-01-01").await.unwrap();
    approx(row(&rows, "2026-01-01", None).score, 70.0);
    let m = manifest(dir.path());
    assert_eq!(m.checks.last().unwrap().outcome, "warned");
    assert!(
        m.warnings
            .iter()
            .any(|w| w.contains("check accepted_values")),
        "{:?}",
        m.warnings
    );

    let dir = setup("", &check("error"), CUSTOMERS, TX);
    let e = run(dir.path(), "2026-01-01", "2026-01-01")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("e.g. `fax` (1 rows)"), "{e}");
}

/// A NaN amount makes `spend` NaN: an error naming the source column and
/// the customer, unless `finite` drops the row. Dropped: c2 has no row
/// left, spend 0 -> 100 * (1.2 + 0 + 0.6) / 3 = 60.
#[tokio::test]
async fn non_finite_values_stop_the_run_or_are_dropped() {
    let tx = TX.replace(
        "2,2026-01-07T00:00:00Z,30,web",
        "2,2026-01-07T00:00:00Z,NaN,web",
    );
    let dir = setup("", "", CUSTOMERS, &tx);
    let e = run(dir.path(), "2026-01-01", "2026-01-01")
        .await
        .unwrap_err();
    let m = e.to_string();
    assert!(
        m.contains("source `tx` column `amount` holds NaN or an infinity in 1 rows")
            && m.contains(
                "measure `spend` is NaN for 1 customer-periods (e.g. customer 2 in 2026-01-01)"
            ),
        "{m}"
    );
    let dir = setup(
        "",
        "checks = [{ finite = \"amount\", policy = \"drop\" }]",
        CUSTOMERS,
        &tx,
    );
    let rows = run(dir.path(), "2026-01-01", "2026-01-01").await.unwrap();
    approx(row(&rows, "2026-01-01", None).score, 60.0);

    // Two amounts that are finite alone but whose sum is not.
    let tx = TX
        .replace(
            "1,2026-01-05T00:00:00Z,100,web",
            "1,2026-01-05T00:00:00Z,1.7e308,web",
        )
        .replace(
            "1,2026-01-06T00:00:00Z,20,phone",
            "1,2026-01-06T00:00:00Z,1.7e308,phone",
        );
    let dir = setup("", "", CUSTOMERS, &tx);
    let e = run(dir.path(), "2026-01-01", "2026-01-01")
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("measure `spend` is inf for 1 customer-periods (e.g. customer 1 in 2026-01-01): its values overflow"),
        "{e}"
    );
}

/// A period with no rows of an event source: an error by default; with
/// `incomplete` it is published, marked; with `allow`, plainly. March has
/// no transaction.
#[tokio::test]
async fn empty_periods_fail_or_are_marked_incomplete() {
    let dir = setup("", "", CUSTOMERS, TX);
    let e = run(dir.path(), "2026-01-01", "2026-03-01")
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains(
            "source `tx` has no rows in period 2026-03-01 (in the run's range, its rows are in 2026-01-01 to 2026-02-01)"
        ),
        "{e}"
    );
    let dir = setup("", "empty_periods = \"incomplete\"", CUSTOMERS, TX);
    let rows = run(dir.path(), "2026-01-01", "2026-03-01").await.unwrap();
    assert!(row(&rows, "2026-01-01", None).complete);
    assert!(!row(&rows, "2026-03-01", None).complete);
    assert!(
        rows.iter()
            .filter(|r| r.period == crate::date("2026-03-01"))
            .all(|r| !r.complete)
    );
    let m = manifest(dir.path());
    assert_eq!(
        m.incomplete_periods.get("2026-03-01"),
        Some(&vec!["tx".to_string()])
    );
    let dir = setup("", "empty_periods = \"allow\"", CUSTOMERS, TX);
    let rows = run(dir.path(), "2026-01-01", "2026-03-01").await.unwrap();
    assert!(rows.iter().all(|r| r.complete));
}

/// `min_rows_per_period`: January has 6 rows, February 1.
#[tokio::test]
async fn minimum_rows_per_period() {
    let dir = setup("", "checks = [{ min_rows_per_period = 2 }]", CUSTOMERS, TX);
    let e = run(dir.path(), "2026-01-01", "2026-02-01")
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("check min_rows_per_period(2) failed: 1 periods have fewer than 2 rows, e.g. 2026-02-01 (1 rows)"),
        "{e}"
    );
    let dir = setup(
        "",
        "checks = [{ min_rows_per_period = 2, policy = \"warn\" }]",
        CUSTOMERS,
        TX,
    );
    run(dir.path(), "2026-01-01", "2026-02-01").await.unwrap();
    let c = manifest(dir.path()).checks.pop().unwrap();
    assert_eq!((c.failing, c.outcome.as_str()), (1, "warned"));
}
