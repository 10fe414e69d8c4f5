//! Data shapes: file formats, key widths, time zones, NULL columns, grains,
//! and the errors bad data must give.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Int32Array, RecordBatch, StringArray, TimestampNanosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::parquet::arrow::ArrowWriter;
use engine::{Class, Error};

use crate::*;

fn parquet(path: &std::path::Path, fields: Vec<Field>, cols: Vec<ArrayRef>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap();
    let mut w =
        ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

const EVENTS_FORMULA: &str = r#"
[formula]
name = "shapes"
version = "1"
grain = "GRAIN"
[sources.customers]
role = "entity"
uri = "customers.parquet"
key = "id"
active_from = "since"
[sources.ev]
uri = "events/"
key = "customer"
time = "at"
[dimensions]
tier = "tier"
[measures.n]
source = "ev"
expr = "count(*)"
default = 0
[measures.score_sum]
source = "ev"
expr = "sum(points)"
default = 0
[score.components.c]
weight = 1
expr = "n + score_sum / 1000"
"#;

/// Int32 keys in Parquet meet Int64 keys in NDJSON; nanosecond timestamps
/// and ISO strings with offsets are read as UTC instants; a directory of
/// NDJSON files with hive-style folders is one source.
///
/// Customer 1 joined 2026-01-31 23:30 UTC (stored in ns). Events: one at
/// "2026-02-01T01:00:00+02:00" = Jan 31 23:00 UTC (January), one at
/// "2026-02-01T00:00:00Z" (February), one for customer 2 in January.
/// January: c1 active (since < Feb 1) with 1 event whose points are NULL:
/// it has a row, so `sum(points)` is NULL (not the default) and c1 is
/// excluded; c2 has 1 event and 5 points -> 1.005 -> score 100.5.
#[tokio::test]
async fn key_widths_time_zones_and_partitioned_ndjson() {
    let dir = tempfile::tempdir().unwrap();
    let ns = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_nanos_opt()
            .unwrap()
    };
    parquet(
        &dir.path().join("customers.parquet"),
        vec![
            Field::new("id", DataType::Int32, false),
            Field::new("tier", DataType::Int32, false),
            Field::new(
                "since",
                DataType::Timestamp(TimeUnit::Nanosecond, Some("+01:00".into())),
                false,
            ),
        ],
        vec![
            Arc::new(Int32Array::from(vec![1, 2])),
            Arc::new(Int32Array::from(vec![1, 2])),
            Arc::new(
                TimestampNanosecondArray::from(vec![
                    ns("2026-01-31T23:30:00Z"),
                    ns("2025-01-01T00:00:00Z"),
                ])
                .with_timezone("+01:00"),
            ),
        ],
    );
    write(
        dir.path(),
        "events/day=1/a.ndjson",
        "{\"customer\": 1, \"at\": \"2026-02-01T01:00:00+02:00\", \"points\": null}\n{\"customer\": 1, \"at\": \"2026-02-01T00:00:00Z\", \"points\": 7}\n",
    );
    write(
        dir.path(),
        "events/day=2/b.ndjson",
        "{\"customer\": 2, \"at\": \"2026-01-15T12:00:00Z\", \"points\": 5}\n{\"customer\": 77, \"at\": \"2026-01-15T12:00:00Z\", \"points\": 1000}\n",
    );
    write(
        dir.path(),
        "formula.toml",
        &EVENTS_FORMULA.replace("GRAIN", "month"),
    );
    let rows = run(dir.path(), "2026-01-01", "2026-02-01").await.unwrap();
    let jan = row(&rows, "2026-01-01", None);
    assert_eq!((jan.population, jan.included), (2, 1));
    approx(jan.score, 100.5);
    // the integer dimension value is its decimal text
    approx(row(&rows, "2026-01-01", Some(("tier", "2"))).score, 100.5);
    // February: c1 has the event at exactly Feb 1 (1 + 7/1000), c2 none (0)
    approx(
        row(&rows, "2026-02-01", None).score,
        100.0 * (1.007 + 0.0) / 2.0,
    );
}

/// ISO weeks start on Monday: an event on Sunday 23:59:59 belongs to the
/// week before the Monday 00:00 one.
#[tokio::test]
async fn weeks_start_on_monday() {
    let dir = tempfile::tempdir().unwrap();
    parquet(
        &dir.path().join("customers.parquet"),
        vec![
            Field::new("id", DataType::Int32, false),
            Field::new("tier", DataType::Utf8, false),
            Field::new("since", DataType::Utf8, false),
        ],
        vec![
            Arc::new(Int32Array::from(vec![1])),
            Arc::new(StringArray::from(vec!["x"])),
            Arc::new(StringArray::from(vec!["2020-01-01"])),
        ],
    );
    // 2026-11-22 is a Sunday, 2026-11-23 a Monday.
    write(
        dir.path(),
        "events/e.csv",
        "customer,at,points\n1,2026-11-22T23:59:59Z,1\n1,2026-11-23T00:00:00Z,1\n1,2026-11-23T10:00:00Z,1\n",
    );
    write(
        dir.path(),
        "formula.toml",
        &EVENTS_FORMULA.replace("GRAIN", "week"),
    );
    let rows = run(dir.path(), "2026-11-16", "2026-11-23").await.unwrap();
    approx(row(&rows, "2026-11-16", None).score, 100.0 * 1.001);
    approx(row(&rows, "2026-11-23", None).score, 100.0 * 2.002);
}

/// A column that is NULL in every row gives NULL measures (and, with no
/// default, excluded customers), not an error.
#[tokio::test]
async fn all_null_column() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "customers.csv", "customer_id\n1\n2\n");
    write(
        dir.path(),
        "ev.ndjson",
        "{\"customer_id\": 1, \"at\": \"2026-03-05T00:00:00Z\", \"csat\": null}\n",
    );
    write(
        dir.path(),
        "formula.toml",
        r#"
[formula]
name = "nulls"
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
[measures.csat]
source = "ev"
expr = "avg(csat)"
[measures.contacts]
source = "ev"
expr = "count(*)"
default = 0
[score.components.c]
weight = 1
expr = "if(csat > 3, 1, contacts)"
"#,
    );
    let rows = run(dir.path(), "2026-03-01", "2026-03-01").await.unwrap();
    // csat is NULL for both -> if takes the else branch: contacts = 1, 0
    let all = row(&rows, "2026-03-01", None);
    assert_eq!(all.included, 2);
    approx(all.score, 50.0);
}

/// Keys that cannot be compared are a user error naming both sources.
#[tokio::test]
async fn mismatched_key_types_name_both_sources() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "customers.csv", "customer_id\nA1\nB2\n");
    write(
        dir.path(),
        "ev.csv",
        "customer_id,at,v\n1,2026-03-05T00:00:00Z,1\n",
    );
    write(
        dir.path(),
        "formula.toml",
        r#"
[formula]
name = "keys"
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
[measures.v]
source = "ev"
expr = "sum(v)"
[score.components.c]
weight = 1
expr = "v"
"#,
    );
    let err = run(dir.path(), "2026-03-01", "2026-03-01")
        .await
        .unwrap_err();
    assert_eq!(err.class(), Class::User);
    let msg = err.to_string();
    assert!(
        msg.contains("customers.customer_id") && msg.contains("ev.customer_id"),
        "{msg}"
    );
}

/// A column missing from a source is reported at its place in the formula
/// file, with the nearest column suggested; a missing file names the source.
#[tokio::test]
async fn missing_column_and_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "customers.csv", "customer_id\n1\n");
    write(
        dir.path(),
        "ev.csv",
        "customer_id,at,amount\n1,2026-03-05T00:00:00Z,1\n",
    );
    let formula = r#"
[formula]
name = "cols"
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
[measures.v]
source = "ev"
expr = "sum(amont)"
[score.components.c]
weight = 1
expr = "v"
"#;
    write(dir.path(), "formula.toml", formula);
    match run(dir.path(), "2026-03-01", "2026-03-01")
        .await
        .unwrap_err()
    {
        Error::Formula { file, diagnostics } => {
            let d = &diagnostics[0];
            assert_eq!(d.message, "source `ev` has no column `amont`");
            assert_eq!(d.help.as_deref(), Some("did you mean `amount`?"));
            assert_eq!(file.line_col(d.span.start), (16, 13));
        }
        other => panic!("{other}"),
    }
    std::fs::remove_file(dir.path().join("ev.csv")).unwrap();
    let err = run(dir.path(), "2026-03-01", "2026-03-01")
        .await
        .unwrap_err();
    assert_eq!(err.class(), Class::User);
    assert!(err.to_string().contains("source `ev`"), "{err}");
}

/// A glob source, and a measure over the entity source itself (no time:
/// aggregated over the customer's entity rows), with date-typed activity.
///
/// Customers 1 (tier 2) and 2 (tier 4), both active from 2026-01-01 (a
/// date). Visits come from two CSV files picked by `visits-*.csv`; the
/// `ignored.csv` next to them is not read. Customer 1 has 2 visits in
/// March, customer 2 has 1 -> component = visits * tier = 4, 4 -> 100 * 4.
#[tokio::test]
async fn glob_source_and_entity_measure() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "customers.csv",
        "customer_id,tier,since\n1,2,2026-01-01\n2,4,2026-01-01\n",
    );
    write(
        dir.path(),
        "data/visits-1.csv",
        "customer_id,at\n1,2026-03-01T10:00:00Z\n1,2026-03-09T10:00:00Z\n",
    );
    write(
        dir.path(),
        "data/visits-2.csv",
        "customer_id,at\n2,2026-03-02T10:00:00Z\n",
    );
    write(
        dir.path(),
        "data/ignored.csv",
        "customer_id,at\n2,2026-03-03T10:00:00Z\n2,2026-03-04T10:00:00Z\n",
    );
    write(
        dir.path(),
        "formula.toml",
        r#"
[formula]
name = "glob"
version = "1"
grain = "quarter"
[sources.customers]
role = "entity"
uri = "customers.csv"
key = "customer_id"
active_from = "since"
[sources.visits]
uri = "data/visits-*.csv"
key = "customer_id"
time = "at"
[measures.tier]
source = "customers"
expr = "max(tier)"
[measures.visits]
source = "visits"
expr = "count(*)"
default = 0
[score.components.c]
weight = 1
expr = "visits * tier"
"#,
    );
    let rows = run(dir.path(), "2026-01-01", "2026-01-01").await.unwrap();
    let q1 = row(&rows, "2026-01-01", None);
    assert_eq!(q1.included, 2);
    approx(q1.score, 400.0);
}

/// The same inputs give bit-identical result rows on 1, 2, 3 and 8
/// threads (4, 8, 12 and 32 partitions; under a memory limit, 2 and 1)
/// (PRODUCT.md: the same numbers, bit for bit), although the rows
/// reach the aggregates in a different split and order on each: every
/// floating-point sum is exact (ARCHITECTURE.md, "Determinism").
#[tokio::test]
async fn results_are_the_same_bits_on_any_number_of_threads() {
    let dir = tempfile::tempdir().unwrap();
    let opts = engine::sample::SampleOptions {
        customers: 1500,
        months: 4,
        seed: 11,
    };
    engine::sample::write(dir.path(), &opts).unwrap();
    std::fs::rename(
        dir.path().join(engine::sample::FORMULA_FILE),
        dir.path().join("formula.toml"),
    )
    .unwrap();
    // A zscore over sums of amounts, so that the window statistics are
    // tested too.
    let formula = std::fs::read_to_string(dir.path().join("formula.toml")).unwrap();
    let formula = formula.replacen(
        "[derived]\n",
        "[derived]\nrevenue_z = \"zscore(revenue - refunds)\"\n",
        1,
    );
    assert!(formula.contains("revenue_z"));
    let formula = formula.replacen(
        "[score.components.",
        "[score.components.revenue_standing]\nexpr = \"clamp(0.5 + revenue_z / 6, 0, 1)\"\nweight = 0\n\n[score.components.",
        1,
    );
    std::fs::write(dir.path().join("formula.toml"), formula).unwrap();
    let bits = |rows: &[ResultRow]| -> Vec<Vec<u64>> {
        rows.iter()
            .map(|r| {
                let mut v = vec![
                    r.score.map_or(u64::MAX, f64::to_bits),
                    r.weight_total.to_bits(),
                    r.population,
                    r.included,
                ];
                for (_, c) in &r.components.0 {
                    v.push(c.rollup.map_or(u64::MAX, f64::to_bits));
                    v.push(c.contribution.map_or(u64::MAX, f64::to_bits));
                }
                v
            })
            .collect()
    };
    let mut seen = Vec::new();
    // The last two: under a memory limit (sort-merge joins, intermediate
    // tables written to scratch Parquet files), still the same bits.
    for (threads, memory_limit) in [
        (1, None),
        (2, None),
        (3, None),
        (8, None),
        (2, None),
        (2, Some(64 << 20)),
        (1, Some(32 << 20)),
    ] {
        let session = SessionOptions {
            threads: Some(threads),
            memory_limit,
            cluster: None,
            staging: None,
            input_bytes: None,
        };
        let rows = run_with(dir.path(), "2026-07-01", "2026-10-01", session)
            .await
            .unwrap();
        assert!(rows.len() > 20, "{rows:#?}");
        seen.push(((threads, memory_limit), bits(&rows)));
    }
    for (run, b) in &seen[1..] {
        assert!(
            *b == seen[0].1,
            "{run:?} (threads, memory limit) differs from 1 thread"
        );
    }
}

/// Text instants in CSV and NDJSON, in every shape the readers take: a
/// source registered by `connectors` parses them with `croo_instant` (the
/// plan says so), and the instants are exactly those of DataFusion's own
/// file readers told that the column is a UTC instant.
#[tokio::test]
async fn text_instants_are_the_readers_instants() {
    use datafusion::prelude::SessionContext;
    let shapes = [
        "2026-03-01T09:30:00Z",
        "2026-03-01t09:30:00z",
        "2026-03-01 09:30:00",
        "2026-03-01T09:30:00",
        "2026-03-01T09:30:00.5Z",
        "2026-03-01T09:30:00.123Z",
        "2026-03-01T09:30:00.123456Z",
        "2026-03-01T09:30:00.123456789Z",
        "2026-03-01T09:30:00.123456789123Z",
        "2024-02-29T23:59:59.999999Z",
        "1969-12-31T23:59:59.5Z",
        "2026-03-01T09:30:00+02:00",
        "2026-03-01 09:30:00.25-05:30",
        "2026-03-01T093000",
        "2016-12-31T23:59:60Z",
        "2026-03-01",
    ];
    let dir = tempfile::tempdir().unwrap();
    let csv: String = std::iter::once("k,at\n".to_string())
        .chain(shapes.iter().enumerate().map(|(i, s)| format!("{i},{s}\n")))
        .chain(std::iter::once(format!("{},\n", shapes.len())))
        .collect();
    let ndjson: String = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| format!("{{\"k\": {i}, \"at\": \"{s}\"}}\n"))
        .chain(std::iter::once(format!(
            "{{\"k\": {}, \"at\": null}}\n",
            shapes.len()
        )))
        .collect();
    write(dir.path(), "a.csv", &csv);
    write(dir.path(), "a.ndjson", &ndjson);
    for file in ["a.csv", "a.ndjson"] {
        let spec = connectors::SourceSpec {
            name: "a",
            uri: file,
            format: None,
            base_dir: dir.path(),
            instants: &["at"],
            columns: &[],
            delimiter: None,
            quote: None,
        };
        let mut micros = Vec::new();
        for with_croo in [true, false] {
            let ctx = SessionContext::new();
            if with_croo {
                let schema = connectors::register(&ctx, "t", &spec).await.unwrap();
                assert_eq!(
                    schema.field_with_name("at").unwrap().data_type(),
                    &kernels::instant::instant_type(),
                    "{file}"
                );
            } else {
                // DataFusion's own readers, told the column is a UTC instant.
                use datafusion::arrow::datatypes::{DataType, Field, Schema};
                let schema = Schema::new(vec![
                    Field::new("k", DataType::Int64, true),
                    Field::new("at", kernels::instant::instant_type(), true),
                ]);
                let path = dir.path().join(file);
                let path = path.to_str().unwrap();
                if file.ends_with(".csv") {
                    let o = datafusion::prelude::CsvReadOptions::new().schema(&schema);
                    ctx.register_csv("t", path, o).await.unwrap();
                } else {
                    let o = datafusion::prelude::JsonReadOptions::default()
                        .schema(&schema)
                        .file_extension(".ndjson");
                    ctx.register_json("t", path, o).await.unwrap();
                }
            }
            let df = ctx
                .sql("SELECT k, CAST(at AS BIGINT) AS us FROM t ORDER BY k")
                .await
                .unwrap();
            let explain = ctx
                .sql("EXPLAIN SELECT at FROM t")
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            let explain = datafusion::arrow::util::pretty::pretty_format_batches(&explain)
                .unwrap()
                .to_string();
            assert_eq!(
                explain.contains("croo_instant"),
                with_croo,
                "{file}: {explain}"
            );
            let batches = df.collect().await.unwrap();
            micros.push(
                datafusion::arrow::util::pretty::pretty_format_batches(&batches)
                    .unwrap()
                    .to_string(),
            );
        }
        assert_eq!(micros[0], micros[1], "{file}");
        // Spot check against hand-computed values: 2026-03-01T09:30:00Z and
        // the same instant two hours east.
        assert!(
            micros[0].contains("| 0  | 1772357400000000 |"),
            "{}",
            micros[0]
        );
        assert!(
            micros[0].contains("| 11 | 1772350200000000 |"),
            "{}",
            micros[0]
        );
    }
}
