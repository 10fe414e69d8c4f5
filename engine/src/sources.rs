//! A formula's sources registered as tables of a session, and every column
//! the formula names checked against their schemas (diagnostics at the
//! formula's line).

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::logical_expr::ExprSchemable as _;
use datafusion::prelude::{SessionContext, cast};
use formulas::{Diagnostic, Format, Formula, Source, SourceFile, Text};

use crate::columns::table_name;
use crate::error::{Error, Result};
use crate::load::Loaded;
use crate::session::is_distributed;

fn connector_format(f: Format) -> Option<connectors::FileFormat> {
    match f {
        Format::Parquet => Some(connectors::FileFormat::Parquet),
        Format::Csv => Some(connectors::FileFormat::Csv),
        Format::Ndjson => Some(connectors::FileFormat::Ndjson),
        Format::Postgres => None,
    }
}

/// The connector's description of a source of the formula.
fn spec<'a>(
    s: &'a Source,
    base: &'a std::path::Path,
    instants: &'a [&'a str],
    columns: &'a [connectors::ColumnRead<'a>],
) -> connectors::SourceSpec<'a> {
    connectors::SourceSpec {
        name: &s.name.value,
        uri: &s.uri.value,
        format: s.format.and_then(connector_format),
        base_dir: base,
        instants,
        columns,
        delimiter: s.delimiter.as_ref().map(|d| d.0),
        quote: s.quote.as_ref().map(|q| q.0),
    }
}

/// The columns of a source that hold ISO 8601 instants (those read with a
/// `format` or a `unit` aside).
fn instants(s: &Source) -> Vec<&str> {
    s.time_columns()
        .map(|t| t.value.as_str())
        .filter(|c| {
            !s.columns
                .iter()
                .any(|r| r.column.value == *c && (r.format.is_some() || r.unit.is_some()))
        })
        .collect()
}

/// The source's `[sources.NAME.columns.*]`, as the connectors read them.
fn column_reads(s: &Source) -> Vec<connectors::ColumnRead<'_>> {
    use datafusion::arrow::datatypes::TimeUnit;
    use formulas::{ColumnType, EpochUnit};
    s.columns
        .iter()
        .map(|c| connectors::ColumnRead {
            name: &c.column.value,
            read_as: c.ty.map(|t| match t {
                ColumnType::Text => DataType::Utf8,
                ColumnType::Integer => DataType::Int64,
                ColumnType::Float => DataType::Float64,
                ColumnType::Boolean => DataType::Boolean,
            }),
            time: match (&c.format, c.unit) {
                (Some(f), _) => Some(connectors::TimeRead::Format(&f.value)),
                (None, Some(u)) => Some(connectors::TimeRead::Epoch(match u {
                    EpochUnit::Seconds => TimeUnit::Second,
                    EpochUnit::Millis => TimeUnit::Millisecond,
                    EpochUnit::Micros => TimeUnit::Microsecond,
                    EpochUnit::Nanos => TimeUnit::Nanosecond,
                })),
                (None, None) => None,
            },
        })
        .collect()
}

/// Registers one source of the formula as its table in `ctx`.
async fn register_one(ctx: &SessionContext, loaded: &Loaded, s: &Source) -> Result<SchemaRef> {
    let table = table_name(&s.name.value);
    if is_distributed(ctx) && connectors::is_postgres_uri(&s.uri.value) {
        return Err(Error::User(format!(
            "source `{}` is a PostgreSQL table, which Ballista executors cannot read: stage it to Parquet on a shared folder or an object store first, or run without --cluster",
            s.name.value
        )));
    }
    let base = loaded.base_dir();
    let instants = instants(s);
    let columns = column_reads(s);
    let mut schema =
        connectors::register(ctx, &table, &spec(s, &base, &instants, &columns)).await?;
    if schema
        .fields()
        .iter()
        .any(|f| f.data_type() == &DataType::Null)
    {
        schema = retype_null_columns(ctx, &table, &instants).await?;
    }
    Ok(schema)
}

/// Registers every source of the formula in `ctx`, except those in `skip`
/// (already registered, for instance by a test's inline rows), and checks
/// that every column the formula names exists.
pub(crate) async fn register_sources(
    ctx: &SessionContext,
    loaded: &Loaded,
    skip: &[String],
) -> Result<BTreeMap<String, SchemaRef>> {
    let mut schemas = BTreeMap::new();
    for s in &loaded.formula.file.sources {
        let schema = if skip.contains(&s.name.value) {
            ctx.table_provider(table_name(&s.name.value).as_str())
                .await
                .map_err(Error::engine(format!("source `{}`", s.name.value)))?
                .schema()
        } else {
            register_one(ctx, loaded, s).await?
        };
        schemas.insert(s.name.value.clone(), schema);
    }
    let diagnostics = check_columns_with_data(ctx, loaded, &schemas).await;
    if !diagnostics.is_empty() {
        return Err(Error::Formula {
            file: Box::new(loaded.file.clone()),
            diagnostics,
        });
    }
    Ok(schemas)
}

/// The total size of the formula's sources when every one is a local file
/// or folder that exists; `None` otherwise.
pub async fn input_bytes(loaded: &Loaded) -> Option<u64> {
    local_input_bytes(loaded, &[]).await
}

/// The total size of the formula's sources (except those in `skip`, whose
/// rows are in memory) when every one is a local file or folder that
/// exists; `None` otherwise (a database, a bucket, a missing path).
pub(crate) async fn local_input_bytes(loaded: &Loaded, skip: &[String]) -> Option<u64> {
    let base = loaded.base_dir();
    let mut total = 0u64;
    for s in &loaded.formula.file.sources {
        if skip.contains(&s.name.value) {
            continue;
        }
        if !connectors::is_local_and_present(&s.uri.value, &base) {
            return None;
        }
        let files = connectors::fingerprint(&spec(s, &base, &[], &[])).await;
        total = total.saturating_add(files.iter().map(|f| f.size).sum::<u64>());
    }
    Some(total)
}

/// The first bad file of the formula's local file sources (except those in
/// `skip`), read again one by one (`connectors::diagnose`): after a run
/// failed while reading, this names the file and line.
pub(crate) fn diagnose(
    loaded: &Loaded,
    schemas: &BTreeMap<String, SchemaRef>,
    skip: &[String],
) -> Option<Error> {
    let base = loaded.base_dir();
    loaded.formula.file.sources.iter().find_map(|s| {
        if skip.contains(&s.name.value) || !connectors::is_local_and_present(&s.uri.value, &base) {
            return None;
        }
        let instants = instants(s);
        let columns = column_reads(s);
        let schema = schemas.get(&s.name.value).map(|s| s.as_ref());
        connectors::diagnose(&spec(s, &base, &instants, &columns), schema).map(Error::Connector)
    })
}

/// Which sources [`check_sources`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Local files and folders that exist (what `croo check` reads by
    /// default: cheap, and nothing leaves the machine).
    Local,
    /// Every source, PostgreSQL and object stores included (`--schemas`);
    /// a source that cannot be read is an error.
    All,
}

/// Reads the schemas of the formula's sources that `reach` names and checks
/// every column the formula names against them. Every problem is a
/// diagnostic at the formula's line: a missing column at the column's
/// place, a source that cannot be read at its `uri`.
pub async fn check_sources(loaded: &Loaded, reach: Reach) -> Result<Vec<Diagnostic>> {
    let ctx = crate::session::session(&crate::session::SessionOptions::default())?;
    let base = loaded.base_dir();
    let mut schemas = BTreeMap::new();
    let mut out = Vec::new();
    for s in &loaded.formula.file.sources {
        if reach == Reach::Local && !connectors::is_local_and_present(&s.uri.value, &base) {
            continue;
        }
        match register_one(&ctx, loaded, s).await {
            Ok(schema) => {
                schemas.insert(s.name.value.clone(), schema);
            }
            Err(e) if e.class() == crate::error::Class::User => out.push(
                Diagnostic::error(
                    "croo::source",
                    s.uri.span.clone(),
                    format!("cannot read source `{}`: {e}", s.name.value),
                )
                .with_label("this source"),
            ),
            Err(e) => return Err(e),
        }
    }
    let columns = check_columns_with_data(&ctx, loaded, &schemas).await;
    let columns_ok = columns.is_empty();
    out.extend(columns);
    // Every value of the columns read another way than the file says
    // (time columns, columns with a `type`), read as the run reads them.
    if columns_ok {
        for s in &loaded.formula.file.sources {
            if !schemas.contains_key(&s.name.value) {
                continue;
            }
            let local = connectors::is_local_and_present(&s.uri.value, &base);
            let limit = (!local).then_some(REMOTE_SAMPLE_ROWS);
            if let Some(bad) = unreadable_column(&ctx, s, limit).await {
                out.push(
                    Diagnostic::error("croo::unreadable-value", bad.span, bad.message)
                        .with_label("this column's values cannot all be read"),
                );
            }
        }
    }
    // Histories that contradict themselves, at the history source's
    // `valid_from`.
    if columns_ok {
        for s in loaded.formula.file.sources.iter().filter(|s| s.history) {
            if !schemas.contains_key(&s.name.value) {
                continue;
            }
            if let Err(e) = crate::memberships::check(&ctx, s, &schemas).await {
                if e.class() != crate::error::Class::User {
                    return Err(e);
                }
                let span = s
                    .valid_from
                    .as_ref()
                    .map_or(s.name.span.clone(), |t| t.span.clone());
                out.push(
                    Diagnostic::error("croo::history", span, e.to_string())
                        .with_label("this history's rows contradict each other"),
                );
            }
        }
    }
    // With every source read and every column there, the data checks too
    // (over all rows).
    if reach == Reach::All && columns_ok && out.is_empty() {
        let read: Vec<String> = schemas.keys().cloned().collect();
        for f in crate::contracts::check_all(&ctx, loaded, &read).await? {
            let d = if f.policy == formulas::Policy::Error {
                Diagnostic::error("croo::data-check", f.span, f.message)
            } else {
                Diagnostic::warning("croo::data-check", f.span, f.message)
            };
            out.push(d.with_label("this check fails on the data"));
        }
    }
    Ok(out)
}

/// Rows of a remote source that `croo check` reads to find values that
/// cannot be read (local files are read whole).
const REMOTE_SAMPLE_ROWS: usize = 100_000;

/// A column of a source whose values cannot all be read.
pub(crate) struct Unreadable {
    /// Where the column is named in the formula file.
    pub span: std::ops::Range<usize>,
    pub message: String,
}

/// Reads each column of `s` that croo parses (time columns, columns with
/// `[sources.NAME.columns.*]`) through its registered table, one column at
/// a time (the first `limit` rows when given): the first that fails, with
/// the source's name in the formula, the column and the reader's message
/// (which quotes the value).
pub(crate) async fn unreadable_column(
    ctx: &SessionContext,
    s: &Source,
    limit: Option<usize>,
) -> Option<Unreadable> {
    let mut columns: Vec<(&str, std::ops::Range<usize>)> = s
        .columns
        .iter()
        .map(|c| (c.column.value.as_str(), c.column.span.clone()))
        .collect();
    for t in s.time_columns() {
        if !columns.iter().any(|(c, _)| *c == t.value) {
            columns.push((t.value.as_str(), t.span.clone()));
        }
    }
    let table = table_name(&s.name.value);
    for (column, span) in columns {
        let Ok(df) = ctx.table(table.as_str()).await else {
            return None;
        };
        if df.schema().field_with_unqualified_name(column).is_err() {
            continue;
        }
        let read = df
            .select(vec![datafusion::logical_expr::ident(column)])
            .and_then(|d| d.limit(0, limit));
        let result = match read {
            Ok(d) => d.collect().await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            let m = e.to_string();
            let m = m
                .trim_start_matches("Execution error: ")
                .trim_start_matches("Arrow error: ")
                .trim_start_matches("Parser error: ");
            return Some(Unreadable {
                span,
                message: format!(
                    "source `{}`: column `{column}` has a value that cannot be read: {m}",
                    s.name.value
                ),
            });
        }
    }
    None
}

/// A column whose type could not be inferred because every value is NULL
/// (NDJSON, CSV) is read as Float64, so that aggregates over it give NULL
/// instead of failing.
async fn retype_null_columns(
    ctx: &SessionContext,
    table: &str,
    times: &[&str],
) -> Result<SchemaRef> {
    let df = ctx
        .table(table)
        .await
        .map_err(Error::engine(format!("reading `{table}`")))?;
    let exprs: Vec<_> = df
        .schema()
        .fields()
        .iter()
        .map(|f| {
            let c = datafusion::logical_expr::ident(f.name());
            if f.data_type() == &DataType::Null && times.contains(&f.name().as_str()) {
                // A time column with no value at all (every `valid_to`
                // open): instants, none of them set.
                cast(c, kernels::instant::instant_type()).alias(f.name())
            } else if f.data_type() == &DataType::Null {
                cast(c, DataType::Float64).alias(f.name())
            } else {
                c
            }
        })
        .collect();
    let view = df
        .select(exprs)
        .map_err(Error::engine(format!("reading `{table}`")))?;
    let schema: SchemaRef = Arc::new(view.schema().as_arrow().clone());
    ctx.deregister_table(table)
        .map_err(Error::engine(format!("reading `{table}`")))?;
    ctx.register_table(table, view.into_view())
        .map_err(Error::engine(format!("reading `{table}`")))?;
    Ok(schema)
}

/// Checks that every column a formula names exists in its source's schema,
/// reporting each missing one at its place in the file.
/// (source, column) -> a value of that text column that is not a number.
type TextExamples = BTreeMap<(String, String), String>;

/// [`check_columns`]; when a measure cannot aggregate a column read as
/// text, the data is read for the first value of that column that is not
/// a number, so the message says why the column is text (a CSV column
/// with one `12.5.3` among numbers is inferred as text).
async fn check_columns_with_data(
    ctx: &SessionContext,
    loaded: &Loaded,
    schemas: &BTreeMap<String, SchemaRef>,
) -> Vec<Diagnostic> {
    let none = TextExamples::new();
    let out = check_columns(&loaded.formula, &loaded.file, schemas, &none);
    if !out
        .iter()
        .any(|d| matches!(d.code, "croo::type-not-aggregable" | "croo::measure-type"))
    {
        return out;
    }
    let mut examples = TextExamples::new();
    let f = &loaded.formula;
    for (m, cols) in f.file.measures.iter().zip(&f.measure_columns) {
        let Some(schema) = schemas.get(&m.source.value) else {
            continue;
        };
        for (c, _) in cols {
            let key = (m.source.value.clone(), c.clone());
            let is_text = schema.field_with_name(c).is_ok_and(|f| {
                matches!(
                    f.data_type(),
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                )
            });
            if !is_text || examples.contains_key(&key) {
                continue;
            }
            if let Some(v) = first_non_number(ctx, &m.source.value, c).await {
                examples.insert(key, v);
            }
        }
    }
    check_columns(&loaded.formula, &loaded.file, schemas, &examples)
}

/// The first value of text column `column` of source `source` that is not
/// NULL and does not read as a number.
async fn first_non_number(ctx: &SessionContext, source: &str, column: &str) -> Option<String> {
    use datafusion::arrow::array::AsArray as _;
    use datafusion::logical_expr::{Expr, ident};
    let c = ident(column);
    let not_a_number = c.clone().is_not_null().and(
        Expr::TryCast(datafusion::logical_expr::TryCast::new(
            Box::new(c.clone()),
            DataType::Float64,
        ))
        .is_null(),
    );
    let batches = ctx
        .table(table_name(source).as_str())
        .await
        .ok()?
        .filter(not_a_number)
        .ok()?
        .select(vec![cast(c, DataType::Utf8).alias("v")])
        .ok()?
        .limit(0, Some(1))
        .ok()?
        .collect()
        .await
        .ok()?;
    let b = batches.iter().find(|b| b.num_rows() > 0)?;
    let v = b.column(0).as_string_opt::<i32>()?;
    Some(v.value(0).to_string())
}

fn check_columns(
    f: &Formula,
    file: &SourceFile,
    schemas: &BTreeMap<String, SchemaRef>,
    examples: &TextExamples,
) -> Vec<Diagnostic> {
    // One parser for every measure (a session registers every function).
    let parser = SessionContext::new();
    let mut out = Vec::new();
    let need = |source: &Source, t: &Text, what: &str, out: &mut Vec<Diagnostic>| {
        let Some(schema) = schemas.get(&source.name.value) else {
            return;
        };
        if schema.field_with_name(&t.value).is_err() {
            out.push(missing_column(
                schema,
                &source.name.value,
                &t.value,
                t.span.clone(),
                what,
            ));
        }
    };
    for s in &f.file.sources {
        need(s, &s.key, "key", &mut out);
        for t in s.time_columns() {
            need(s, t, "time", &mut out);
        }
    }
    if let Some(e) = f.file.entity() {
        for d in &f.file.dimensions {
            // A history dimension's column is its history source's.
            let of = d
                .source
                .as_ref()
                .and_then(|s| f.file.source(&s.value))
                .unwrap_or(e);
            need(of, &d.column, "dimension", &mut out);
        }
    }
    for (m, cols) in f.file.measures.iter().zip(&f.measure_columns) {
        let Some(schema) = schemas.get(&m.source.value) else {
            continue;
        };
        let before = out.len();
        for (c, span) in cols {
            if schema.field_with_name(c).is_err() {
                out.push(missing_column(
                    schema,
                    &m.source.value,
                    c,
                    span.clone(),
                    "measure",
                ));
            }
        }
        if out.len() == before {
            out.extend(aggregate_types(&parser, m, schema, examples));
        }
    }
    let _ = file;
    out
}

/// Reports each aggregate of a measure that cannot be computed over its
/// source's column types (`sum` of a string, say), at the aggregate's place
/// in the file.
fn aggregate_types(
    parser: &SessionContext,
    m: &formulas::Measure,
    schema: &SchemaRef,
    examples: &TextExamples,
) -> Vec<Diagnostic> {
    let Ok(sql) = formulas::measure::check_measure_expr(&m.expr.value) else {
        return Vec::new();
    };
    let Ok(df_schema) = datafusion::common::DFSchema::try_from(schema.as_ref().clone()) else {
        return Vec::new();
    };
    let ctx = parser;
    let mut out = Vec::new();
    for (name, range) in &sql.aggregates {
        let text = &m.expr.value[range.clone()];
        let result = ctx
            .parse_sql_expr(text, &df_schema)
            .and_then(|e| e.get_type(&df_schema).map(|_| ()));
        if result.is_ok() {
            continue;
        }
        let inside: Vec<String> = sql
            .columns
            .iter()
            .filter(|(_, r)| range.start <= r.start && r.end <= range.end)
            .filter_map(|(c, _)| {
                schema.field_with_name(c).ok().map(|f| {
                    match examples.get(&(m.source.value.clone(), c.clone())) {
                        Some(v) => format!(
                            "`{c}` is {} (read as text: it holds `{v}`, which is not a number)",
                            f.data_type()
                        ),
                        None => format!("`{c}` is {}", f.data_type()),
                    }
                })
            })
            .collect();
        let mut d = Diagnostic::error(
            "croo::type-not-aggregable",
            m.expr.sub_span(range.clone()),
            format!(
                "`{name}` cannot aggregate these columns of source `{}`",
                m.source.value
            ),
        )
        .with_label(if inside.is_empty() {
            "wrong argument types".to_string()
        } else {
            inside.join(", ")
        });
        if matches!(name.as_str(), "sum" | "avg" | "mean") {
            d = d.with_help(format!(
                "`{name}` needs numbers: count the rows (`count(...)`), or map values to numbers with `CASE WHEN ... THEN 1 ELSE 0 END`"
            ));
        }
        out.push(d);
    }
    if !out.is_empty() {
        return out;
    }
    // The whole measure is one number per customer and period (a boolean
    // counts as 0/1), and DataFusion can plan it and its filter.
    let planned = |text: &str| {
        ctx.parse_sql_expr(text, &df_schema)
            .and_then(|e| e.get_type(&df_schema))
    };
    let cannot_plan = |t: &formulas::Text, e: datafusion::error::DataFusionError| {
        let message = e.to_string();
        let message = message
            .strip_prefix("This feature is not implemented: ")
            .unwrap_or(&message);
        Diagnostic::error(
            "croo::measure-sql",
            t.sub_span(0..t.value.len()),
            format!(
                "measure `{}`: DataFusion cannot run this SQL: {message}",
                m.name.value
            ),
        )
        .with_label("not supported")
    };
    if let Some(f) = &m.filter {
        match planned(&f.value) {
            Err(e) => out.push(cannot_plan(f, e)),
            Ok(ty) if ty != DataType::Boolean && ty != DataType::Null => out.push(
                Diagnostic::error(
                    "croo::measure-filter",
                    f.sub_span(0..f.value.len()),
                    format!(
                        "the filter of measure `{}` is {ty}, not a condition",
                        m.name.value
                    ),
                )
                .with_label("not true or false"),
            ),
            Ok(_) => {}
        }
    }
    match planned(&m.expr.value) {
        Err(e) => out.push(cannot_plan(&m.expr, e)),
        Ok(ty) if !(ty.is_numeric() || ty == DataType::Boolean || ty == DataType::Null) => out.push(
            Diagnostic::error(
                "croo::measure-type",
                m.expr.sub_span(0..m.expr.value.len()),
                format!("measure `{}` is {ty}, not a number", m.name.value),
            )
            .with_label("not a number")
            .with_help(
                "a measure is one number per customer and period: count, sum or average the values, or map them to numbers with `CASE WHEN ... THEN 1 ELSE 0 END`",
            ),
        ),
        Ok(_) => {}
    }
    out
}

fn missing_column(
    schema: &Schema,
    source: &str,
    column: &str,
    span: std::ops::Range<usize>,
    what: &str,
) -> Diagnostic {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let mut d = Diagnostic::error(
        "croo::unknown-column",
        span,
        format!("source `{source}` has no column `{column}`"),
    )
    .with_label(format!("{what} column not in the source"));
    d = match formulas::diagnostic::nearest(column, names.iter().copied()) {
        Some(n) => d.with_help(format!("did you mean `{n}`?")),
        None => d.with_help(format!("its columns are: {}", names.join(", "))),
    };
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORMULA: &str = r#"
[formula]
name = "sizes"
version = "1"
grain = "month"
[sources.customers]
role = "entity"
uri = "customers.csv"
key = "customer_id"
[sources.ev]
uri = "EVENTS"
key = "customer_id"
time = "at"
[measures.n]
source = "ev"
expr = "count(*)"
default = 0
[score.components.c]
weight = 1
expr = "n"
"#;

    fn loaded(dir: &std::path::Path, events: &str) -> Loaded {
        let path = dir.join("formula.toml");
        std::fs::write(&path, FORMULA.replace("EVENTS", events)).unwrap();
        crate::load::load(&path).unwrap()
    }

    #[tokio::test]
    async fn local_inputs_are_the_sum_of_their_files_and_nothing_else_is_known() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("customers.csv"), "customer_id\n1\n2\n").unwrap();
        std::fs::create_dir_all(dir.path().join("ev/month=1")).unwrap();
        std::fs::write(dir.path().join("ev/month=1/a.ndjson"), "x".repeat(1000)).unwrap();
        std::fs::write(dir.path().join("ev/b.ndjson"), "y".repeat(24)).unwrap();
        // customers.csv is 16 bytes (12 + 2 + 2), the folder's two files 1024.
        let l = loaded(dir.path(), "ev/");
        assert_eq!(local_input_bytes(&l, &[]).await, Some(16 + 1024));
        // Rows given inline are not read from files.
        assert_eq!(local_input_bytes(&l, &["ev".into()]).await, Some(16));
        // A database, a bucket or a missing path: unknown.
        for uri in [
            "postgres://u@localhost/db?table=ev",
            "s3://bucket/ev/",
            "missing.ndjson",
        ] {
            let l = loaded(dir.path(), uri);
            assert_eq!(local_input_bytes(&l, &[]).await, None, "{uri}");
        }
    }
}
