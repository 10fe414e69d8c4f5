//! Dimensions as of each period, from a history source (docs/formula-
//! reference.md, "Dimensions as of each period"); numbers by hand.
//!
//! Customer 1 is `smb` until 15 February, then `ent`; customer 2 is `smb`
//! until exactly 1 February, then `ent`; customer 3 has no history row:
//! `(none)`. Spend: c1 100 in January, 200 in February; c2 50, 60; c3 10,
//! 20. One component `spend / 100` of weight 1, rollup weight 1: a
//! group's score is the mean spend of its customers.
//!
//! As of each period's end (the default: from < end <= to):
//! January (end 1 Feb): c1 smb, c2 smb (its smb row ends exactly at 1 Feb,
//! so it is valid at the last instant of January), c3 (none): smb (100 +
//! 50) / 2 = 75, (none) 10, everyone (100 + 50 + 10) / 3 = 53.33.
//! February (end 1 Mar): c1 ent, c2 ent, c3 (none): ent (200 + 60) / 2 =
//! 130, (none) 20; no smb group.
//!
//! As of each period's start (from <= start < to):
//! January (1 Jan): c1 smb, c2 smb: smb 75, (none) 10.
//! February (1 Feb): c1 smb (until 15 Feb), c2 ent (from exactly 1 Feb):
//! smb 200, ent 60, (none) 20.

use crate::*;

const CUSTOMERS: &str = "customer_id,name
1,a
2,b
3,c
";

const TX: &str = "customer_id,ts,amount
1,2026-01-10T00:00:00Z,100
1,2026-02-10T00:00:00Z,200
2,2026-01-10T00:00:00Z,50
2,2026-02-20T00:00:00Z,60
3,2026-01-05T00:00:00Z,10
3,2026-02-05T00:00:00Z,20
";

const HISTORY: &str = "customer_id,segment,valid_from,valid_to
1,smb,2025-01-01T00:00:00Z,2026-02-15T00:00:00Z
1,ent,2026-02-15T00:00:00Z,
2,smb,2025-06-01T00:00:00Z,2026-02-01T00:00:00Z
2,ent,2026-02-01T00:00:00Z,
";

fn formula(as_of: &str) -> String {
    format!(
        r#"
[formula]
name = "moves"
version = "1"
grain = "month"

[sources.customers]
role = "entity"
uri = "customers.csv"
key = "customer_id"

[sources.tx]
uri = "tx.csv"
key = "customer_id"
time = "ts"

[sources.segments]
role = "history"
uri = "history.csv"
key = "customer_id"
valid_from = "valid_from"
valid_to = "valid_to"

[dimensions.segment]
source = "segments"
column = "segment"
{as_of}

[measures.spend]
source = "tx"
expr = "sum(amount)"
default = 0

[score.components.a]
weight = 1
expr = "spend / 100"
"#
    )
}

fn setup(as_of: &str, history: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "customers.csv", CUSTOMERS);
    write(dir.path(), "tx.csv", TX);
    write(dir.path(), "history.csv", history);
    write(dir.path(), "formula.toml", &formula(as_of));
    dir
}

fn score(rows: &[ResultRow], period: &str, segment: &str) -> Option<f64> {
    rows.iter()
        .find(|r| {
            r.period == date(period)
                && r.dimension.as_deref() == Some("segment")
                && r.value.as_deref() == Some(segment)
        })
        .map(|r| r.score.unwrap())
}

#[tokio::test]
async fn a_customer_is_in_the_segment_of_the_period_end() {
    let dir = setup("", HISTORY);
    let rows = run(dir.path(), "2026-01-01", "2026-02-01").await.unwrap();
    approx(score(&rows, "2026-01-01", "smb"), 75.0);
    approx(score(&rows, "2026-01-01", "(none)"), 10.0);
    assert_eq!(score(&rows, "2026-01-01", "ent"), None);
    approx(row(&rows, "2026-01-01", None).score, 160.0 / 3.0);
    approx(score(&rows, "2026-02-01", "ent"), 130.0);
    approx(score(&rows, "2026-02-01", "(none)"), 20.0);
    assert_eq!(score(&rows, "2026-02-01", "smb"), None);
    // Every customer is counted, in exactly one group per period.
    for p in ["2026-01-01", "2026-02-01"] {
        let n: u64 = rows
            .iter()
            .filter(|r| r.period == date(p) && r.dimension.is_some())
            .map(|r| r.population)
            .sum();
        assert_eq!(n, 3, "{p}");
    }
}

#[tokio::test]
async fn or_of_the_period_start() {
    let dir = setup("as_of = \"period_start\"", HISTORY);
    let rows = run(dir.path(), "2026-01-01", "2026-02-01").await.unwrap();
    approx(score(&rows, "2026-01-01", "smb"), 75.0);
    approx(score(&rows, "2026-01-01", "(none)"), 10.0);
    approx(score(&rows, "2026-02-01", "smb"), 200.0);
    approx(score(&rows, "2026-02-01", "ent"), 60.0);
    approx(score(&rows, "2026-02-01", "(none)"), 20.0);
}

#[tokio::test]
async fn a_history_that_contradicts_itself_is_refused() {
    let cases = [
        (
            "customer_id,segment,valid_from,valid_to\n1,smb,2025-01-01T00:00:00Z,2026-03-01T00:00:00Z\n1,ent,2026-02-15T00:00:00Z,\n",
            "overlapping validity intervals for customer_id 1",
        ),
        (
            "customer_id,segment,valid_from,valid_to\n2,smb,2026-05-01T00:00:00Z,2026-04-01T00:00:00Z\n",
            "`valid_to` before `valid_from` (or no `valid_from`) for customer_id 2",
        ),
        (
            "customer_id,segment,valid_from,valid_to\n3,smb,2025-01-01T00:00:00Z,\n3,ent,2026-01-01T00:00:00Z,\n",
            "more than one open row (`valid_to` NULL) for customer_id 3",
        ),
    ];
    for (history, message) in cases {
        let dir = setup("", history);
        let e = run(dir.path(), "2026-01-01", "2026-02-01")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("source `segments`") && e.contains(message),
            "{e}"
        );
    }
}
