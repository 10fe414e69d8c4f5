//! The same formula over the same rows read from local files, from
//! PostgreSQL, from an S3-compatible object store and through a Ballista
//! cluster gives the same result rows, bit for bit; PostgreSQL receives the
//! period's time range and the measures' filters; errors name the source.
//!
//! Needs `scripts/services start` (see `services.rs`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use datafusion::arrow::datatypes::DataType;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::prelude::SessionContext;
use object_store::ObjectStoreExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};

use crate::services::{self, Services};

/// A formula file with its data, and the period arguments to run it with.
struct Case {
    dir: PathBuf,
    formula: String,
    periods: Vec<String>,
}

/// A source of a case's formula.
struct Src {
    name: String,
    uri: String,
    /// Columns read as instants (`time`, `active_from`, `active_to`).
    time_cols: Vec<String>,
}

pub fn croo(dir: &Path, args: &[&str], env: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_croo"));
    cmd.args(args).current_dir(dir).env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// The row of `group` (`all`: the whole population, else a value of the
/// dimension) among a `croo run --format json` document's results.
pub fn group_row<'a>(doc: &'a serde_json::Value, group: &str) -> &'a serde_json::Value {
    doc["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| {
            if group == "all" {
                r["dimension"].is_null()
            } else {
                r["value"] == group
            }
        })
        .unwrap_or_else(|| panic!("no row of {group}"))
}

/// The manifest of the one run in the results store `out`.
pub fn only_manifest(out: &Path) -> serde_json::Value {
    let run = std::fs::read_dir(out.join("runs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    serde_json::from_str(&std::fs::read_to_string(run.join("manifest.json")).unwrap()).unwrap()
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A small sample (`croo sample`) in `dir/s`.
fn sample_case(dir: &Path) -> Case {
    let o = croo(
        dir,
        &[
            "sample",
            "--out",
            "s",
            "--customers",
            "300",
            "--months",
            "4",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let mut months: Vec<String> = std::fs::read_dir(dir.join("s/interactions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy()[6..].to_string())
        .collect();
    months.sort();
    Case {
        dir: dir.join("s"),
        formula: "retail-croo.toml".into(),
        periods: vec![
            "--from".into(),
            format!("{}-01", months[0]),
            "--to".into(),
            format!("{}-01", months[months.len() - 1]),
        ],
    }
}

/// A copy of the case folder `tests/it/data/NAME` in a temporary folder
/// (tests write their stores and files beside the case's).
pub fn data_case(name: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/it/data")
            .join(name),
        tmp.path(),
    );
    tmp
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

/// The conformance cases of `../shared/conformance`, copied under `dir`.
fn conformance_cases(dir: &Path) -> Option<Vec<Case>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance");
    let entries = std::fs::read_dir(&root).ok()?;
    let mut cases = Vec::new();
    for e in entries {
        let p = e.unwrap().path();
        let Ok(args) = std::fs::read_to_string(p.join("ARGS")) else {
            continue;
        };
        let dest = dir.join(p.file_name().unwrap());
        copy_dir(&p, &dest);
        let mut words = args.split_whitespace().map(String::from);
        let formula = words.next().unwrap();
        cases.push(Case {
            dir: dest,
            formula,
            periods: words.collect(),
        });
    }
    cases.sort_by(|a, b| a.dir.cmp(&b.dir));
    Some(cases)
}

fn sources(case: &Case) -> Vec<Src> {
    let text = std::fs::read_to_string(case.dir.join(&case.formula)).unwrap();
    let doc: toml::Table = text.parse().unwrap();
    doc["sources"]
        .as_table()
        .unwrap()
        .iter()
        .map(|(name, s)| {
            let s = s.as_table().unwrap();
            let time_cols = ["time", "active_from", "active_to"]
                .iter()
                .filter_map(|k| s.get(*k).and_then(|v| v.as_str()).map(String::from))
                .collect();
            Src {
                name: name.clone(),
                uri: s["uri"].as_str().unwrap().to_string(),
                time_cols,
            }
        })
        .collect()
}

/// `croo run --format json` rows without the run id: equal text means
/// equal bits (floats are printed shortest round-trip).
fn run_rows(case: &Case, formula: &str, extra: &[&str], env: &[(&str, String)]) -> String {
    let mut args = vec!["run", formula];
    args.extend(case.periods.iter().map(String::as_str));
    args.extend(["--format", "json", "--threads", "2", "--force"]);
    args.extend(extra);
    let o = croo(&case.dir, &args, env);
    assert!(o.status.success(), "croo {args:?}: {}", text(&o));
    let rows: String = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.contains("\"run_id\"") && !l.contains("\"formula_hash\""))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(rows.contains("\"score\""), "{rows}");
    rows
}

/// Writes a copy of the case's formula whose sources are at `uri(source)`.
fn rewrite(case: &Case, to: &str, uri: impl Fn(&Src) -> String) {
    let text = std::fs::read_to_string(case.dir.join(&case.formula)).unwrap();
    let mut doc: toml::Table = text.parse().unwrap();
    let srcs = sources(case);
    let table = doc["sources"].as_table_mut().unwrap();
    for src in &srcs {
        let s = table[&src.name].as_table_mut().unwrap();
        s.insert("uri".into(), toml::Value::String(uri(src)));
        s.remove("format");
    }
    std::fs::write(case.dir.join(to), toml::to_string(&doc).unwrap()).unwrap();
}

/// Asserts two `croo run --format json` outputs are the same text, showing
/// the first line that differs.
pub fn assert_same(expected: &str, actual: &str, what: &str) {
    if expected == actual {
        return;
    }
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let i = e
        .iter()
        .zip(&a)
        .position(|(x, y)| x != y)
        .unwrap_or(e.len().min(a.len()));
    let from = i.saturating_sub(12);
    panic!(
        "{what}: first difference at line {}\n--- expected\n{}\n--- actual\n{}",
        i + 1,
        e[from..(i + 3).min(e.len())].join("\n"),
        a[from..(i + 3).min(a.len())].join("\n"),
    );
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}{}_{nanos}", std::process::id())
}

fn pg_type(ty: &DataType, is_time: bool) -> &'static str {
    match ty {
        DataType::Int8 | DataType::Int16 | DataType::Int32 => "integer",
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => "bigint",
        DataType::Float32 | DataType::Float64 => "double precision",
        DataType::Boolean => "boolean",
        DataType::Date32 | DataType::Date64 => "date",
        DataType::Timestamp(_, Some(_)) => "timestamptz",
        DataType::Timestamp(_, None) => "timestamp",
        _ if is_time => "timestamptz",
        _ => "text",
    }
}

fn psql(s: &Services, sql: &str) {
    let o = Command::new("psql")
        .arg(format!("{}?sslmode=disable", s.var("CROO_TEST_PG_URI")))
        .args(["-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql])
        .env("PGPASSWORD", s.var("CROO_TEST_PG_PASSWORD"))
        .output()
        .expect("psql");
    assert!(o.status.success(), "psql {sql}: {}", text(&o));
}

/// Copies every source of the case into tables of a new schema.
async fn load_into_postgres(s: &Services, case: &Case, schema: &str) {
    psql(s, &format!("CREATE SCHEMA {schema}"));
    let ctx = SessionContext::new();
    for src in sources(case) {
        let spec = connectors::SourceSpec {
            name: &src.name,
            uri: &src.uri,
            format: None,
            base_dir: &case.dir,
            instants: &[],
            columns: &[],
            delimiter: None,
            quote: None,
        };
        let table_schema = connectors::register(&ctx, &src.name, &spec).await.unwrap();
        let cols: Vec<String> = table_schema
            .fields()
            .iter()
            .map(|f| {
                let is_time = src.time_cols.contains(f.name());
                format!("\"{}\" {}", f.name(), pg_type(f.data_type(), is_time))
            })
            .collect();
        psql(
            s,
            &format!("CREATE TABLE {schema}.{} ({})", src.name, cols.join(", ")),
        );
        let csv = case.dir.join(format!("{}.load.csv", src.name));
        ctx.table(src.name.as_str())
            .await
            .unwrap()
            .write_csv(
                csv.to_str().unwrap(),
                DataFrameWriteOptions::new().with_single_file_output(true),
                None,
            )
            .await
            .unwrap();
        psql(
            s,
            &format!(
                "\\copy {schema}.{} FROM '{}' WITH (FORMAT csv, HEADER true)",
                src.name,
                csv.display()
            ),
        );
    }
}

fn s3_env(s: &Services) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ENDPOINT_URL", s.var("CROO_TEST_S3_ENDPOINT")),
    ]
}

fn s3_store(s: &Services) -> AmazonS3 {
    AmazonS3Builder::new()
        .with_bucket_name(s.var("CROO_TEST_S3_BUCKET"))
        .with_endpoint(s.var("CROO_TEST_S3_ENDPOINT"))
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .build()
        .unwrap()
}

fn files_below(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_below(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Uploads the case's folder under `prefix/` in the test bucket.
async fn upload(store: &AmazonS3, case: &Case, prefix: &str) {
    let mut files = Vec::new();
    files_below(&case.dir, &mut files);
    for f in files {
        let rel = f
            .strip_prefix(&case.dir)
            .unwrap()
            .to_string_lossy()
            .to_string();
        let dest = object_store::path::Path::from(format!("{prefix}/{rel}"));
        store
            .put(&dest, std::fs::read(&f).unwrap().into())
            .await
            .unwrap();
    }
}

fn s3_uri(s: &Services, prefix: &str, src: &Src) -> String {
    format!(
        "s3://{}/{prefix}/{}",
        s.var("CROO_TEST_S3_BUCKET"),
        src.uri.trim_start_matches("./")
    )
}

async fn get(store: &AmazonS3, path: String) -> Vec<u8> {
    store
        .get(&object_store::path::Path::from(path.clone()))
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .bytes()
        .await
        .unwrap()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sources_give_the_same_rows_and_receive_the_filters() {
    let Some(s) = services::get(
        "PostgreSQL",
        &[
            "CROO_TEST_PG_URI",
            "CROO_TEST_PG_PASSWORD",
            "CROO_TEST_PG_LOG",
        ],
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let case = sample_case(tmp.path());
    let local = run_rows(&case, &case.formula, &["--out", "out-local"], &[]);

    let schema = unique("croo_");
    load_into_postgres(&s, &case, &schema).await;
    let base = s.var("CROO_TEST_PG_URI");
    rewrite(&case, "pg.toml", |src| {
        format!("{base}?table={schema}.{}&sslmode=disable", src.name)
    });
    let log = ServerLog(PathBuf::from(s.var("CROO_TEST_PG_LOG")));
    let before = log.len();
    let env = [("PGPASSWORD", s.var("CROO_TEST_PG_PASSWORD"))];
    let from_pg = run_rows(&case, "pg.toml", &["--out", "out-pg"], &env);
    assert_same(
        &local,
        &from_pg,
        "rows from PostgreSQL differ from local files",
    );

    // What PostgreSQL was asked: the scan of each source names only the
    // columns it needs and carries the period range and the filters.
    let pg_log = log.since(before);
    let scans_of = |table: &str| -> Vec<String> {
        pg_log
            .lines()
            .filter(|l| l.contains(&schema) && l.contains(&format!("{table}\"")))
            .filter(|l| l.to_ascii_uppercase().contains("SELECT"))
            .filter(|l| !l.contains("information_schema") && !l.contains("pg_catalog"))
            .map(String::from)
            .collect()
    };
    let from_month = &case.periods[1][..7];
    for (table, time) in [
        ("interactions", "started_at"),
        ("transactions", "ts"),
        ("product_events", "at"),
    ] {
        let scans = scans_of(table);
        assert!(!scans.is_empty(), "no statement read {table}:\n{pg_log}");
        for q in &scans {
            assert!(!q.contains('*'), "{table} read with SELECT *: {q}");
            assert!(
                q.contains("WHERE") && q.contains(&format!("\"{time}\"")),
                "{table} read without the period range: {q}"
            );
            assert!(
                q.contains(from_month),
                "{table}: the period range is not in {q}"
            );
        }
    }
    for q in scans_of("transactions") {
        assert!(
            q.contains("'purchase'") && q.contains("'refund'"),
            "measure filters not pushed: {q}"
        );
    }
    for q in scans_of("product_events") {
        assert!(q.contains("'adopted'"), "measure filter not pushed: {q}");
    }

    // The same sources as `query=` sources: the rows of a query, with the
    // projection and filters applied around it.
    rewrite(&case, "pg-query.toml", |src| {
        let query = format!("SELECT * FROM {schema}.{} WHERE true", src.name);
        format!("{base}?query={}&sslmode=disable", url_encode(&query))
    });
    let before = log.len();
    let from_query = run_rows(&case, "pg-query.toml", &["--out", "out-pg-query"], &env);
    assert_same(
        &local,
        &from_query,
        "rows from PostgreSQL queries differ from local files",
    );
    let pg_log = log.since(before);
    for (table, time, filter) in [
        ("interactions", "started_at", None),
        ("transactions", "ts", Some("'refund'")),
        ("product_events", "at", Some("'adopted'")),
    ] {
        let cte = format!("WITH croo_query AS (SELECT * FROM {schema}.{table} WHERE true) ");
        let scans: Vec<&str> = pg_log
            .lines()
            .filter_map(|l| l.split_once(&cte).map(|(_, outer)| outer))
            .filter(|outer| outer.starts_with("SELECT"))
            .collect();
        assert!(!scans.is_empty(), "no query scan of {table}:\n{pg_log}");
        for outer in scans {
            assert!(!outer.contains('*'), "{table} read with SELECT *: {outer}");
            assert!(
                outer.contains("FROM \"croo_query\" WHERE")
                    && outer.contains(&format!("\"{time}\"")),
                "{table} read without the period range: {outer}"
            );
            assert!(outer.contains(from_month), "{table}: no range in {outer}");
            if let Some(f) = filter {
                assert!(outer.contains(f), "{table}: filter not pushed: {outer}");
            }
        }
    }
}

/// The PostgreSQL server's statement log.
struct ServerLog(PathBuf);

impl ServerLog {
    /// Its length now: where the next statements will start.
    fn len(&self) -> usize {
        std::fs::metadata(&self.0).map(|m| m.len()).unwrap_or(0) as usize
    }

    /// What it logged after `offset`.
    fn since(&self, offset: usize) -> String {
        let bytes = std::fs::read(&self.0).unwrap();
        String::from_utf8_lossy(&bytes[offset.min(bytes.len())..]).to_string()
    }
}

/// Percent-encodes everything but ASCII letters and digits.
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_errors_name_the_source() {
    let tmp = tempfile::tempdir().unwrap();
    let case = sample_case(tmp.path());
    let check = |uri: String, env: &[(&str, String)], wanted: &[&str]| {
        rewrite(&case, "bad.toml", |src| {
            if src.name == "transactions" {
                uri.clone()
            } else {
                src.uri.clone()
            }
        });
        let mut args = vec!["run", "bad.toml", "--out", "bad-out"];
        args.extend(case.periods.iter().map(String::as_str));
        let o = croo(&case.dir, &args, env);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{uri}: {t}");
        assert!(
            t.contains("source `transactions`"),
            "{uri}: the source is not named: {t}"
        );
        for w in wanted {
            assert!(t.contains(w), "{uri}: `{w}` not in {t}");
        }
        assert!(!case.dir.join("bad-out/current.json").exists());
    };
    check(
        "postgres://croo:hunter2@127.0.0.1:1/croo?table=public.t".into(),
        &[],
        &["PGPASSWORD"],
    );
    check(
        "postgres://croo@127.0.0.1:1/croo?table=public.t&sslmode=disable".into(),
        &[],
        &["cannot connect", "127.0.0.1:1/croo"],
    );
    let Some(s) = services::get("PostgreSQL", &["CROO_TEST_PG_URI", "CROO_TEST_PG_PASSWORD"])
    else {
        return;
    };
    let uri = s.var("CROO_TEST_PG_URI");
    let env = [("PGPASSWORD", s.var("CROO_TEST_PG_PASSWORD"))];
    check(
        format!("{uri}?table=public.no_such_table&sslmode=disable"),
        &env,
        &["no_such_table"],
    );
    // sslmode is honoured: the test server has no TLS, so `require` fails.
    check(
        format!("{uri}?table=public.t&sslmode=require"),
        &env,
        &["cannot connect"],
    );
    // A wrong password is refused by the server, and not echoed.
    check(
        format!("{uri}?table=public.t&sslmode=disable"),
        &[("PGPASSWORD", "wrong-password".into())],
        &["cannot connect"],
    );
    // A column of a type croo cannot use: named with its type, from a table
    // (when a measure uses it) and from a query (when the query returns it).
    let schema = unique("croo_types_");
    psql(
        &s,
        &format!(
            "CREATE SCHEMA {schema}; CREATE TABLE {schema}.transactions (customer_id text, ts timestamptz, amount point, kind text)"
        ),
    );
    check(
        format!("{uri}?table={schema}.transactions&sslmode=disable"),
        &env,
        &["type-not-aggregable", "`amount` is FixedSizeList"],
    );
    let query = format!("SELECT customer_id, ts, amount, kind FROM {schema}.transactions");
    check(
        format!("{uri}?query={}&sslmode=disable", url_encode(&query)),
        &env,
        &["column `amount`", "type `point`", "cast it in the query"],
    );
    // A query PostgreSQL cannot prepare: its message is passed on.
    check(
        format!("{uri}?query={}&sslmode=disable", url_encode("SELEC 1")),
        &env,
        &[
            "cannot prepare the query",
            "syntax error at or near \"SELEC\"",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_sources_and_results_store_give_the_same_rows() {
    let Some(s) = services::get(
        "The S3-compatible store",
        &["CROO_TEST_S3_ENDPOINT", "CROO_TEST_S3_BUCKET"],
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let case = sample_case(tmp.path());
    let local = run_rows(&case, &case.formula, &["--out", "out-local"], &[]);

    let bucket = s.var("CROO_TEST_S3_BUCKET");
    let prefix = unique("t");
    let store = s3_store(&s);
    upload(&store, &case, &prefix).await;
    rewrite(&case, "s3.toml", |src| s3_uri(&s, &prefix, src));
    let out = format!("s3://{bucket}/{prefix}/results");
    let from_s3 = run_rows(&case, "s3.toml", &["--out", &out], &s3_env(&s));
    assert_same(&local, &from_s3, "rows from S3 differ from local files");

    // The results store in the bucket: current.json names the run, whose
    // manifest (with the objects read) and results are there.
    let current: serde_json::Value =
        serde_json::from_slice(&get(&store, format!("{prefix}/results/current.json")).await)
            .unwrap();
    let runs = current["formulas"]["retail-croo"].as_object().unwrap();
    assert_eq!(runs.len(), 4, "{current}");
    let run_id = runs.values().next().unwrap().as_str().unwrap().to_string();
    let manifest: serde_json::Value = serde_json::from_slice(
        &get(
            &store,
            format!("{prefix}/results/runs/{run_id}/manifest.json"),
        )
        .await,
    )
    .unwrap();
    assert_eq!(manifest["outcome"], "succeeded");
    let files = manifest["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "interactions")
        .unwrap()["files"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(files.len(), 4, "{manifest}");
    assert!(
        files[0]["path"]
            .as_str()
            .unwrap()
            .starts_with(&format!("s3://{bucket}/{prefix}/interactions/month=")),
        "{manifest}"
    );
    let results = get(
        &store,
        format!("{prefix}/results/runs/{run_id}/results.parquet"),
    )
    .await;
    assert_eq!(&results[..4], b"PAR1");

    // A second run of one period keeps the other periods' entries.
    let o = croo(
        &case.dir,
        &[
            "run",
            "s3.toml",
            "--period",
            &case.periods[1],
            "--out",
            &out,
        ],
        &s3_env(&s),
    );
    assert!(o.status.success(), "{}", text(&o));
    let after: serde_json::Value =
        serde_json::from_slice(&get(&store, format!("{prefix}/results/current.json")).await)
            .unwrap();
    let runs_after = after["formulas"]["retail-croo"].as_object().unwrap();
    assert_eq!(runs_after.len(), 4, "{after}");
    // The same inputs: nothing computed, the period stays at edition 1 of
    // the first run.
    assert!(text(&o).contains("unchanged: edition 1"), "{}", text(&o));
    assert_eq!(runs_after[&case.periods[1]], runs[&case.periods[1]]);
    assert_eq!(runs_after[&case.periods[3]], runs[&case.periods[3]]);
    let p1 = &after["editions"]["retail-croo"][&case.periods[1]];
    assert_eq!(p1["editions"].as_array().unwrap().len(), 1, "{after}");

    // Another version of the formula would change a final period: refused,
    // with the numbers that would change read back from the bucket.
    let text_v1 = std::fs::read_to_string(case.dir.join("s3.toml")).unwrap();
    let text_v2 = text_v1.replacen("weight = 0.4", "weight = 0.45", 1);
    assert_ne!(
        text_v1, text_v2,
        "the formula has a weight of 0.4 to change"
    );
    std::fs::write(case.dir.join("s3-v2.toml"), text_v2).unwrap();
    let o = croo(
        &case.dir,
        &[
            "run",
            "s3-v2.toml",
            "--period",
            &case.periods[1],
            "--out",
            &out,
        ],
        &s3_env(&s),
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("is final at edition 1") && text(&o).contains("whole population: score"),
        "{}",
        text(&o)
    );

    // Writers at once: each replaces current.json only if nobody did since
    // it read it (a conditional write), so no writer's periods are lost.
    let text_of = std::fs::read_to_string(case.dir.join("s3.toml")).unwrap();
    let names: Vec<String> = (0..5).map(|i| format!("concurrent-{i}")).collect();
    for n in &names {
        std::fs::write(
            case.dir.join(format!("{n}.toml")),
            text_of.replace("name = \"retail-croo\"", &format!("name = \"{n}\"")),
        )
        .unwrap();
    }
    let handles: Vec<_> = names
        .iter()
        .map(|n| {
            let (dir, out, period, env) = (
                case.dir.clone(),
                out.clone(),
                case.periods[1].clone(),
                s3_env(&s),
            );
            let n = n.clone();
            std::thread::spawn(move || {
                let f = format!("{n}.toml");
                croo(&dir, &["run", &f, "--period", &period, "--out", &out], &env)
            })
        })
        .collect();
    for h in handles {
        let o = h.join().unwrap();
        assert!(o.status.success(), "{}", text(&o));
    }
    let all: serde_json::Value =
        serde_json::from_slice(&get(&store, format!("{prefix}/results/current.json")).await)
            .unwrap();
    for n in &names {
        let e = &all["editions"][n][&case.periods[1]]["editions"];
        assert_eq!(e.as_array().map(Vec::len), Some(1), "{n}: {all}");
        assert!(
            all["formulas"][n][&case.periods[1]].is_string(),
            "{n}: {all}"
        );
    }

    // A missing object is an error naming the source.
    rewrite(&case, "s3-missing.toml", |src| {
        format!("s3://{bucket}/{prefix}/nothing-{}.csv", src.name)
    });
    let mut args = vec!["run", "s3-missing.toml", "--out", "o"];
    args.extend(case.periods.iter().map(String::as_str));
    let o = croo(&case.dir, &args, &s3_env(&s));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("source `customers`"), "{}", text(&o));
}

/// The conformance cases (`../shared/conformance`) from Parquet on disk,
/// from PostgreSQL, from the S3-compatible store and through a loopback
/// Ballista cluster: the same rows, bit for bit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_cases_agree_from_every_source_and_on_a_cluster() {
    let Some(s) = services::get(
        "PostgreSQL and the S3-compatible store",
        &[
            "CROO_TEST_PG_URI",
            "CROO_TEST_PG_PASSWORD",
            "CROO_TEST_S3_ENDPOINT",
            "CROO_TEST_S3_BUCKET",
        ],
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let Some(cases) = conformance_cases(tmp.path()) else {
        if std::env::var("CROO_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
            panic!("../shared/conformance is missing");
        }
        eprintln!("SKIPPED: ../shared/conformance is not there");
        return;
    };
    assert!(!cases.is_empty());
    let (_cluster, cluster_url, _logs) = crate::cluster::start_cluster(tmp.path(), &s3_env(&s));
    let store = s3_store(&s);
    for case in &cases {
        let local = run_rows(case, &case.formula, &["--out", "out-local"], &[]);

        let schema = unique("conf_");
        load_into_postgres(&s, case, &schema).await;
        let base = s.var("CROO_TEST_PG_URI");
        rewrite(case, "pg.toml", |src| {
            format!("{base}?table={schema}.{}&sslmode=disable", src.name)
        });
        let env = [("PGPASSWORD", s.var("CROO_TEST_PG_PASSWORD"))];
        let pg = run_rows(case, "pg.toml", &["--out", "out-pg"], &env);
        assert_same(
            &local,
            &pg,
            &format!("{}: PostgreSQL differs", case.dir.display()),
        );

        let prefix = unique("conf");
        upload(&store, case, &prefix).await;
        rewrite(case, "s3.toml", |src| s3_uri(&s, &prefix, src));
        let s3 = run_rows(case, "s3.toml", &["--out", "out-s3"], &s3_env(&s));
        assert_same(&local, &s3, &format!("{}: S3 differs", case.dir.display()));

        let on_cluster = run_rows(
            case,
            &case.formula,
            &["--out", "out-cluster", "--cluster", &cluster_url],
            &[],
        );
        assert_same(
            &local,
            &on_cluster,
            &format!("{}: the cluster differs", case.dir.display()),
        );

        // Executors read the bucket themselves.
        let on_cluster_s3 = run_rows(
            case,
            "s3.toml",
            &["--out", "out-cluster-s3", "--cluster", &cluster_url],
            &s3_env(&s),
        );
        assert_same(
            &local,
            &on_cluster_s3,
            &format!("{}: the cluster over S3 differs", case.dir.display()),
        );

        // PostgreSQL sources are refused on a cluster, naming the source.
        let o = croo(
            &case.dir,
            &[
                &["run", "pg.toml"][..],
                &case.periods.iter().map(String::as_str).collect::<Vec<_>>(),
                &["--out", "out-cluster-pg", "--cluster", &cluster_url],
            ]
            .concat(),
            &env,
        );
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(text(&o).contains("PostgreSQL table"), "{}", text(&o));
    }
}
