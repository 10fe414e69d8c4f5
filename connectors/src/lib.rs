//! Connectors: turn a source URI of a formula file into a table registered
//! in a DataFusion [`SessionContext`], and report its schema.
//!
//! Files (Parquet, CSV, NDJSON) are read through DataFusion listing tables:
//! a single file, a glob, or a directory (hive-style `key=value/` folders
//! become Utf8 columns), on the local disk or in an object store
//! ([`remote`]: `s3://`, `gs://`, `az://`). PostgreSQL tables are read
//! through `datafusion-table-providers` (`postgres` module, cargo feature
//! `postgres`, on by default), with filters and projections pushed down.
//! This crate knows nothing of formulas.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::Column;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::json::JsonFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::ListingOptions;
use datafusion::prelude::{Expr, SessionContext, lit};

mod diagnose;
mod layout;

pub use diagnose::diagnose;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod remote;

use layout::{Layout, dot_extension, extension_of, format_of, has_glob, partition_columns, wanted};

/// File formats a source can be read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Parquet,
    Csv,
    Ndjson,
}

impl FileFormat {
    pub(crate) fn from_extension(ext: &str) -> Option<FileFormat> {
        match ext.to_ascii_lowercase().as_str() {
            "parquet" | "pq" => Some(FileFormat::Parquet),
            "csv" | "tsv" => Some(FileFormat::Csv),
            "json" | "ndjson" | "jsonl" => Some(FileFormat::Ndjson),
            _ => None,
        }
    }
}

/// Errors of the connectors, each naming the source.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The source is not there, or its URI cannot be used (a user error).
    #[error("source `{source_name}`: {message}")]
    Source {
        source_name: String,
        message: String,
    },
    /// Reading failed (I/O, a corrupt file).
    #[error("source `{source_name}`: {error}")]
    Read {
        source_name: String,
        #[source]
        error: datafusion::error::DataFusionError,
    },
    /// A file of the source holds bad data: its whole path, the line when
    /// it has lines, and what is wrong (a user error).
    #[error("source `{source_name}`: {file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Data {
        source_name: String,
        file: String,
        line: Option<u64>,
        message: String,
    },
}

impl Error {
    /// Whether the error is the user's to fix (exit code 1) rather than a
    /// failure of the system (exit code 2).
    pub fn is_user_error(&self) -> bool {
        matches!(self, Error::Source { .. } | Error::Data { .. })
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where a source's data is, as written in the formula file.
#[derive(Debug, Clone)]
pub struct SourceSpec<'a> {
    /// The source's name in the formula (used in errors).
    pub name: &'a str,
    pub uri: &'a str,
    /// The declared format, when the URI does not tell.
    pub format: Option<FileFormat>,
    /// Directory that relative paths are resolved against.
    pub base_dir: &'a Path,
    /// Columns that hold instants. In text formats (CSV, NDJSON) where
    /// schema inference leaves such a column as text, it is read as
    /// `Timestamp(µs, UTC)` by the file reader (each value parsed once, as
    /// it is read, instead of wherever the plan uses it).
    pub instants: &'a [&'a str],
    /// Columns read another way than the file or inference says.
    pub columns: &'a [ColumnRead<'a>],
    /// CSV field delimiter and quote (default `,` and `"`).
    pub delimiter: Option<u8>,
    pub quote: Option<u8>,
}

/// How to read one column of a source (the table is a view over the file
/// that applies it; Ballista runs it, built-in functions only).
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnRead<'a> {
    pub name: &'a str,
    /// Read as this type: in text files the reader parses the column as
    /// this type (`Utf8` keeps `07700900000` as text); in Parquet, a cast.
    pub read_as: Option<DataType>,
    /// A time column read another way than as an ISO 8601 instant.
    pub time: Option<TimeRead<'a>>,
}

/// How a time column's values are read.
#[derive(Debug, Clone, PartialEq)]
pub enum TimeRead<'a> {
    /// Text in this chrono format (`%d/%m/%Y`); a date alone is midnight UTC.
    Format(&'a str),
    /// Numbers since the Unix epoch in this unit.
    Epoch(datafusion::arrow::datatypes::TimeUnit),
}

impl TimeRead<'_> {
    /// The expression reading `c` as a `Timestamp(µs, UTC)`.
    fn read(&self, c: Expr) -> Expr {
        use datafusion::arrow::datatypes::TimeUnit;
        use datafusion::prelude::cast;
        let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let micros = match self {
            TimeRead::Format(f) => {
                let t = datafusion::functions::datetime::expr_fn::to_timestamp_micros(vec![
                    cast(c, DataType::Utf8),
                    lit(*f),
                ]);
                cast(t, DataType::Int64)
            }
            TimeRead::Epoch(TimeUnit::Nanosecond) => cast(c, DataType::Int64) / lit(1000i64),
            TimeRead::Epoch(unit) => {
                let per = match unit {
                    TimeUnit::Second => 1e6,
                    TimeUnit::Millisecond => 1e3,
                    _ => 1.0,
                };
                cast(
                    datafusion::functions::math::expr_fn::round(vec![
                        cast(c, DataType::Float64) * lit(per),
                    ]),
                    DataType::Int64,
                )
            }
        };
        cast(micros, utc)
    }
}

pub(crate) fn source_err(spec: &SourceSpec<'_>, message: impl Into<String>) -> Error {
    Error::Source {
        source_name: spec.name.to_string(),
        message: message.into(),
    }
}

/// Resolves a local file URI (a path, or `file://`) against the base
/// directory; `None` for any other scheme.
pub fn resolve_path(uri: &str, base_dir: &Path) -> Option<PathBuf> {
    let path = if let Some(p) = uri.strip_prefix("file://") {
        PathBuf::from(p)
    } else if uri.contains("://") {
        return None;
    } else {
        let p = PathBuf::from(uri);
        if p.is_absolute() { p } else { base_dir.join(p) }
    };
    Some(path)
}

/// Whether `uri` names local data that is there: a file or folder that
/// exists, or a glob whose folder (the part before the first wildcard)
/// exists. `false` for PostgreSQL and object store URIs.
pub fn is_local_and_present(uri: &str, base_dir: &Path) -> bool {
    let Some(path) = resolve_path(uri, base_dir) else {
        return false;
    };
    let text = path.to_string_lossy();
    if has_glob(&text) {
        let fixed = text.split(['*', '?', '[']).next().unwrap_or("");
        let dir = match fixed.rfind('/') {
            Some(i) => &fixed[..i.max(1)],
            None => ".",
        };
        return Path::new(dir).is_dir();
    }
    path.exists()
}

/// Files below `dir` (recursively), sorted, skipping hidden ones.
pub(crate) fn files_below(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        let p = e.path();
        if p.is_dir() {
            files_below(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

/// Finds what a local source path names: a file, a glob or a directory.
fn local_layout(spec: &SourceSpec<'_>, path: &Path) -> Result<Layout> {
    let path_str = path.to_string_lossy().to_string();
    if has_glob(&path_str) || path.is_file() {
        return Ok(Layout {
            format: format_of(spec, &path_str)?,
            extension: dot_extension(&path_str),
            table_path: path_str,
            partitions: Vec::new(),
        });
    }
    if path.is_dir() {
        let mut files = Vec::new();
        files_below(path, &mut files)
            .map_err(|e| source_err(spec, format!("cannot list `{}`: {e}", path.display())))?;
        let first = files
            .iter()
            .map(|f| f.to_string_lossy().to_string())
            .find(|f| wanted(extension_of(f).as_deref(), spec.format))
            .ok_or_else(|| {
                source_err(
                    spec,
                    format!("no data files in directory `{}`", path.display()),
                )
            })?;
        let relative = first
            .strip_prefix(path_str.as_str())
            .unwrap_or(&first)
            .trim_start_matches('/')
            .to_string();
        let mut dir = path_str;
        if !dir.ends_with('/') {
            dir.push('/');
        }
        return Ok(Layout {
            table_path: dir,
            format: format_of(spec, &first)?,
            extension: dot_extension(&first),
            partitions: partition_columns(&relative),
        });
    }
    Err(source_err(
        spec,
        format!("no file or directory at `{}`", path.display()),
    ))
}

/// Registers the source as table `table` in `ctx` and returns its schema.
///
/// Local paths (relative to the formula's folder) and `file://` URLs,
/// object store URLs (`s3://`, `gs://`, `az://`) and, with the `postgres`
/// feature, `postgres://` URIs.
pub async fn register(
    ctx: &SessionContext,
    table: &str,
    spec: &SourceSpec<'_>,
) -> Result<SchemaRef> {
    if is_postgres_uri(spec.uri) {
        #[cfg(feature = "postgres")]
        return postgres::register(ctx, table, spec).await;
        #[cfg(not(feature = "postgres"))]
        return Err(source_err(
            spec,
            "this build of croo has no PostgreSQL support (build with the `postgres` feature)",
        ));
    }
    let layout = if remote::is_object_store_uri(spec.uri) {
        let (url, store) = remote::register_store(ctx, spec)?;
        remote::layout(spec, store.as_ref(), &url).await?
    } else {
        let Some(path) = resolve_path(spec.uri, spec.base_dir) else {
            return Err(source_err(
                spec,
                format!(
                    "unsupported URI `{}` (expected a path, file://, s3://, gs://, az:// or postgres://)",
                    spec.uri
                ),
            ));
        };
        let layout = local_layout(spec, &path)?;
        // DataFusion skips empty files without a word.
        if let Some(e) = diagnose::empty_file(spec) {
            return Err(e);
        }
        layout
    };
    let local = !remote::is_object_store_uri(spec.uri);
    match register_listing(ctx, table, spec, layout).await {
        // Which file, and where: DataFusion's errors name neither.
        Err(e) if local => Err(diagnose(spec, None).unwrap_or(e)),
        other => other,
    }
}

/// Whether `uri` names a PostgreSQL source.
pub fn is_postgres_uri(uri: &str) -> bool {
    uri.starts_with("postgres://") || uri.starts_with("postgresql://")
}

async fn register_listing(
    ctx: &SessionContext,
    table: &str,
    spec: &SourceSpec<'_>,
    layout: Layout,
) -> Result<SchemaRef> {
    // Text formats' column types come from the first rows, as DuckDB's
    // `read_csv`/`read_json` do (20 480 rows): measured, inferring from
    // 100 000 rows was 0.35 s of a 5 s run, before anything else could start.
    const INFER_ROWS: usize = 20_480;
    let options = match layout.format {
        FileFormat::Parquet => ListingOptions::new(Arc::new(ParquetFormat::default())),
        FileFormat::Csv => {
            let mut csv = CsvFormat::default()
                .with_has_header(true)
                .with_schema_infer_max_rec(INFER_ROWS);
            if let Some(d) = spec.delimiter {
                csv = csv.with_delimiter(d);
            }
            if let Some(q) = spec.quote {
                csv = csv.with_quote(q);
            }
            ListingOptions::new(Arc::new(csv))
        }
        FileFormat::Ndjson => ListingOptions::new(Arc::new(
            JsonFormat::default().with_schema_infer_max_rec(INFER_ROWS),
        )),
    }
    .with_file_extension(layout.extension)
    .with_table_partition_cols(
        layout
            .partitions
            .into_iter()
            .map(|c| (c, DataType::Utf8))
            .collect(),
    );

    let read_err = |error| Error::Read {
        source_name: spec.name.to_string(),
        error,
    };
    let text_format = matches!(layout.format, FileFormat::Csv | FileFormat::Ndjson);
    let partitions: Vec<String> = options
        .table_partition_cols
        .iter()
        .map(|(c, _)| c.clone())
        .collect();
    ctx.register_listing_table(table, &layout.table_path, options.clone(), None, None)
        .await
        .map_err(read_err)?;
    let provider = ctx.table_provider(table).await.map_err(read_err)?;
    let schema = provider.schema();
    // Instants in a text file: text, or the timestamps that CSV schema
    // inference finds (naive, in nanoseconds: converting them to UTC
    // microseconds afterwards looks up a time zone offset per value).
    let is_text_instant = |f: &Field| {
        spec.instants.contains(&f.name().as_str())
            && !partitions.contains(f.name())
            && matches!(
                f.data_type(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Timestamp(..)
            )
    };
    let custom = |f: &Field| {
        spec.columns
            .iter()
            .find(|c| c.name == f.name() && !partitions.contains(f.name()))
    };
    let any_custom = schema.fields().iter().any(|f| custom(f).is_some());
    if !any_custom && (!text_format || !schema.fields().iter().any(|f| is_text_instant(f))) {
        return Ok(schema);
    }
    // The file is read with its instants as text, and the table is a view
    // that parses them with croo's `croo_instant` kernel (the common ISO
    // 8601 shapes in integer arithmetic, the rest by arrow's parser: the
    // same values as arrow's readers, faster). Each value is parsed once,
    // as it is read, and is a UTC instant.
    let instant = kernels::instant::udf();
    let read_as = DataType::Utf8;
    let file_fields: Vec<Field> = schema
        .fields()
        .iter()
        .filter(|f| !partitions.contains(f.name()))
        .map(|f| match custom(f) {
            Some(ColumnRead {
                read_as: Some(t), ..
            }) => Field::new(f.name(), t.clone(), true),
            Some(ColumnRead {
                time: Some(TimeRead::Format(_)),
                ..
            }) => Field::new(f.name(), DataType::Utf8, true),
            Some(_) => f.as_ref().clone(),
            None if is_text_instant(f) => Field::new(f.name(), read_as.clone(), true),
            None => f.as_ref().clone(),
        })
        .collect();
    // Text files are read again with these types (a type given to the
    // reader, which reports a value it cannot parse); Parquet keeps its
    // own, and the view casts.
    let provider = if text_format {
        ctx.deregister_table(table).map_err(read_err)?;
        ctx.register_listing_table(
            table,
            &layout.table_path,
            options,
            Some(Arc::new(Schema::new(file_fields))),
            None,
        )
        .await
        .map_err(read_err)?;
        ctx.table_provider(table).await.map_err(read_err)?
    } else {
        provider
    };
    let exprs: Vec<Expr> = provider
        .schema()
        .fields()
        .iter()
        .map(|f| {
            let c = Expr::Column(Column::from_name(f.name()));
            if let Some(r) = custom(f) {
                return match (&r.time, &r.read_as) {
                    (Some(t), _) => t.read(c).alias(f.name()),
                    (None, Some(ty)) if !text_format && f.data_type() != ty => {
                        datafusion::prelude::cast(c, ty.clone()).alias(f.name())
                    }
                    _ => c,
                };
            }
            if text_format && is_text_instant(f) {
                instant
                    .call(vec![c, lit(f.name().as_str())])
                    .alias(f.name())
            } else {
                c
            }
        })
        .collect();
    ctx.deregister_table(table).map_err(read_err)?;
    let view = ctx
        .read_table(provider)
        .and_then(|df| df.select(exprs))
        .map_err(read_err)?;
    let schema: SchemaRef = Arc::new(view.schema().as_arrow().clone());
    ctx.register_table(table, view.into_view())
        .map_err(read_err)?;
    Ok(schema)
}

/// Registers in-memory rows (for instance the inline rows of a formula
/// test) as table `table`.
pub fn register_batches(
    ctx: &SessionContext,
    table: &str,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
) -> Result<SchemaRef> {
    let mem = MemTable::try_new(schema.clone(), vec![batches]).map_err(|error| Error::Read {
        source_name: table.to_string(),
        error,
    })?;
    ctx.register_table(table, Arc::new(mem))
        .map_err(|error| Error::Read {
            source_name: table.to_string(),
            error,
        })?;
    Ok(schema)
}

/// One input file's identity, recorded in run manifests.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileFingerprint {
    pub path: String,
    pub size: u64,
    /// Modification time, seconds since the Unix epoch.
    pub modified: i64,
    /// What tells two versions of the file apart beyond size and whole
    /// seconds: the modification time in nanoseconds for a local file,
    /// the ETag for an object. Empty when unknown.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
}

/// Fingerprints the files behind a file or object store source (size and
/// modification time), in path order. Empty for database sources.
pub async fn fingerprint(spec: &SourceSpec<'_>) -> Vec<FileFingerprint> {
    if remote::is_object_store_uri(spec.uri) {
        return remote::fingerprint(spec).await;
    }
    let Some(path) = resolve_path(spec.uri, spec.base_dir) else {
        return Vec::new();
    };
    let mut files = Vec::new();
    let s = path.to_string_lossy().to_string();
    if has_glob(&s) {
        if let Ok(paths) = glob::glob(&s) {
            files.extend(paths.flatten());
        }
    } else if path.is_dir() {
        let _ = files_below(&path, &mut files);
    } else {
        files.push(path);
    }
    files.sort();
    files
        .into_iter()
        .filter_map(|p| {
            let meta = std::fs::metadata(&p).ok()?;
            let since = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
            Some(FileFingerprint {
                path: p.to_string_lossy().to_string(),
                size: meta.len(),
                modified: since.map_or(0, |d| d.as_secs() as i64),
                version: since.map_or_else(String::new, |d| format!("mtime_ns:{}", d.as_nanos())),
            })
        })
        .collect()
}
