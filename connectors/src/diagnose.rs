//! Which file of a source is bad, and where: read after a failure (or a
//! suspicious listing), one file at a time, from its start, so that the
//! error names the file by its whole path and the line counted from its
//! first byte. DataFusion reads a source's files in parallel byte ranges
//! and its errors name neither (a bad CSV row at line 30 001 comes back as
//! "line 403", a broken NDJSON line as "line 1").
//!
//! Checks, in file order, stopping at the first problem: a file of zero
//! bytes; a Parquet file whose footer cannot be read; a column whose type
//! differs from the same column in the first file; text that is not
//! UTF-8; duplicate CSV header names; a CSV row with the wrong number of
//! fields; an NDJSON line that is not a JSON object; a value that does not
//! parse as its column's type; an instant that does not parse.
//!
//! Slow on purpose (every byte is read again, on one thread): it runs only
//! when something already failed, or to name a file already known to be
//! wrong.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::layout::{extension_of, format_of, wanted};
use crate::{Error, FileFormat, SourceSpec, resolve_path};

/// A problem at a file (and line) of a source.
fn data_error(spec: &SourceSpec<'_>, file: &Path, line: Option<u64>, message: String) -> Error {
    Error::Data {
        source_name: spec.name.to_string(),
        file: std::path::absolute(file)
            .unwrap_or_else(|_| file.to_path_buf())
            .display()
            .to_string(),
        line,
        message,
    }
}

/// The data files of a local source, sorted, with their sizes.
pub(crate) fn local_files(spec: &SourceSpec<'_>) -> Vec<(PathBuf, u64)> {
    let Some(path) = resolve_path(spec.uri, spec.base_dir) else {
        return Vec::new();
    };
    let s = path.to_string_lossy().to_string();
    let mut files = Vec::new();
    if crate::layout::has_glob(&s) {
        if let Ok(paths) = glob::glob(&s) {
            files.extend(paths.flatten().filter(|p| p.is_file()));
        }
    } else if path.is_dir() {
        let _ = crate::files_below(&path, &mut files);
        files.retain(|f| wanted(extension_of(&f.to_string_lossy()).as_deref(), spec.format));
    } else if path.is_file() {
        files.push(path);
    }
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let size = std::fs::metadata(&f).map_or(0, |m| m.len());
            (f, size)
        })
        .collect()
}

/// The first empty (zero-byte) data file of a local source, as an error:
/// DataFusion skips such files without a word, so a month whose file was
/// truncated to nothing would silently read no rows.
pub(crate) fn empty_file(spec: &SourceSpec<'_>) -> Option<Error> {
    local_files(spec)
        .into_iter()
        .find(|(_, size)| *size == 0)
        .map(|(f, _)| {
            data_error(
                spec,
                &f,
                None,
                "is empty (0 bytes): remove it, or write the data again".into(),
            )
        })
}

/// Looks for the first bad file of a local source (see the module
/// documentation). `schema` is the table's file schema when the source was
/// registered (its columns' types, instants as text); without it the
/// files are compared with each other.
pub fn diagnose(spec: &SourceSpec<'_>, schema: Option<&Schema>) -> Option<Error> {
    // Time columns read with a format or a unit are read here as they are
    // in the file (text, numbers): their parsing is the table's, which
    // names the value it cannot read.
    let as_read: Option<Schema> = schema.map(|s| {
        Schema::new(
            s.fields()
                .iter()
                .map(|f| {
                    let time = spec
                        .columns
                        .iter()
                        .find(|c| c.name == f.name())
                        .and_then(|c| c.time.as_ref());
                    match time {
                        Some(crate::TimeRead::Format(_)) => {
                            Field::new(f.name(), DataType::Utf8, true)
                        }
                        Some(crate::TimeRead::Epoch(_)) => {
                            Field::new(f.name(), DataType::Float64, true)
                        }
                        None => f.as_ref().clone(),
                    }
                })
                .collect::<Vec<_>>(),
        )
    });
    let schema = as_read.as_ref();
    let files = local_files(spec);
    let mut first: Option<(PathBuf, SchemaRef)> = None;
    for (file, size) in &files {
        if *size == 0 {
            return empty_file(spec);
        }
        let format = format_of(spec, &file.to_string_lossy()).ok()?;
        let found = match format {
            FileFormat::Parquet => parquet_file(file, schema, &mut first),
            FileFormat::Csv => csv_file(
                file,
                schema,
                spec.instants,
                (spec.delimiter.unwrap_or(b','), spec.quote.unwrap_or(b'"')),
                &mut first,
            ),
            FileFormat::Ndjson => ndjson_file(file, schema, spec.instants, &mut first),
        };
        if let Some((line, message)) = found {
            return Some(data_error(spec, file, line, message));
        }
    }
    None
}

/// A column typed differently here than in the first file.
fn differs(
    file_schema: &SchemaRef,
    first: &mut Option<(PathBuf, SchemaRef)>,
    file: &Path,
) -> Option<String> {
    match first {
        None => {
            *first = Some((file.to_path_buf(), Arc::clone(file_schema)));
            None
        }
        Some((first_file, first_schema)) => file_schema.fields().iter().find_map(|f| {
            let other = first_schema.field_with_name(f.name()).ok()?;
            (other.data_type() != f.data_type()).then(|| {
                format!(
                    "column `{}` is {} here but {} in {}",
                    f.name(),
                    f.data_type(),
                    other.data_type(),
                    first_file.display()
                )
            })
        }),
    }
}

fn parquet_file(
    file: &Path,
    schema: Option<&Schema>,
    first: &mut Option<(PathBuf, SchemaRef)>,
) -> Option<(Option<u64>, String)> {
    let reader = match std::fs::File::open(file) {
        Ok(r) => r,
        Err(e) => return Some((None, format!("cannot be read: {e}"))),
    };
    let builder = match ParquetRecordBatchReaderBuilder::try_new(reader) {
        Ok(b) => b,
        Err(e) => {
            let reason = e.to_string();
            let reason = reason.trim_start_matches("Parquet error: ");
            return Some((None, format!("is not a readable Parquet file: {reason}")));
        }
    };
    let file_schema = Arc::clone(builder.schema());
    if let Some(d) = differs(&file_schema, first, file) {
        return Some((None, d));
    }
    if schema.is_some() {
        let reader = match builder.build() {
            Ok(r) => r,
            Err(e) => return Some((None, format!("cannot be read: {e}"))),
        };
        for batch in reader {
            if let Err(e) = batch {
                return Some((None, format!("cannot be read: {e}")));
            }
        }
    }
    None
}

/// The first line (1-based) of `bytes` that is not UTF-8, with the byte.
fn not_utf8(bytes: &[u8]) -> Option<(u64, String)> {
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if let Err(e) = std::str::from_utf8(line) {
            let at = e.valid_up_to();
            return Some((
                i as u64 + 1,
                format!(
                    "is not UTF-8 text: byte 0x{:02x} at column {}",
                    line[at],
                    at + 1
                ),
            ));
        }
    }
    None
}

/// Start offsets of the physical lines of `text`.
fn line_starts(text: &[u8]) -> Vec<usize> {
    std::iter::once(0)
        .chain(
            text.iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i + 1),
        )
        .collect()
}

/// The fields of one CSV record starting at `at`, and where the next record
/// starts (RFC 4180: a quoted field may hold commas, quotes doubled, and
/// line breaks).
fn csv_record(text: &[u8], mut at: usize, (delimiter, quote): (u8, u8)) -> (usize, usize) {
    let mut fields = 1;
    let mut quoted = false;
    while at < text.len() {
        match text[at] {
            b if b == quote => quoted = !quoted,
            b if b == delimiter && !quoted => fields += 1,
            b'\n' if !quoted => return (fields, at + 1),
            _ => {}
        }
        at += 1;
    }
    (fields, at)
}

/// Parses every value of the `instants` columns of `batch` the way the run
/// does; the first that fails, as (row in the batch, message).
fn bad_instant(
    batch: &datafusion::arrow::array::RecordBatch,
    instants: &[&str],
) -> Option<(usize, String)> {
    for name in instants {
        let Ok(i) = batch.schema().index_of(name) else {
            continue;
        };
        let Some(values) = batch.column(i).as_string_opt::<i32>() else {
            continue;
        };
        for (row, v) in values.iter().enumerate() {
            if let Some(v) = v
                && let Err(e) = kernels::instant::parse_micros(v, name)
            {
                let m = e.to_string();
                let m = m
                    .trim_start_matches("Arrow error: ")
                    .trim_start_matches("Parser error: ");
                return Some((row, m.to_string()));
            }
        }
    }
    None
}

/// The schema to read a text file with: the table's (instants as text),
/// or every column as text when there is none.
fn text_schema(schema: Option<&Schema>, names: &[String], instants: &[&str]) -> SchemaRef {
    let fields: Vec<Field> = names
        .iter()
        .map(|n| {
            let ty = match schema.and_then(|s| s.field_with_name(n).ok()) {
                Some(f) if !instants.contains(&n.as_str()) => f.data_type().clone(),
                _ => DataType::Utf8,
            };
            Field::new(n, ty, true)
        })
        .collect();
    Arc::new(Schema::new(fields))
}

fn csv_file(
    file: &Path,
    schema: Option<&Schema>,
    instants: &[&str],
    dialect: (u8, u8),
    first: &mut Option<(PathBuf, SchemaRef)>,
) -> Option<(Option<u64>, String)> {
    let (delimiter, quote) = dialect;
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => return Some((None, format!("cannot be read: {e}"))),
    };
    if let Some((line, m)) = not_utf8(&bytes) {
        return Some((Some(line), m));
    }
    let starts = line_starts(&bytes);
    let line_of = |offset: usize| starts.partition_point(|s| *s <= offset) as u64;
    // The header: names, each once.
    let (_, body) = csv_record(&bytes, 0, dialect);
    let header = String::from_utf8_lossy(&bytes[..body]);
    let names: Vec<String> = header
        .trim_end_matches(['\r', '\n'])
        .split(delimiter as char)
        .map(|s| s.trim_matches(quote as char).to_string())
        .collect();
    for (i, n) in names.iter().enumerate() {
        if names[..i].contains(n) {
            return Some((Some(1), format!("the header names column `{n}` twice")));
        }
    }
    // Each record has as many fields as the header.
    let mut at = body;
    let mut records = Vec::new();
    while at < bytes.len() {
        let (fields, next) = csv_record(&bytes, at, dialect);
        let blank = bytes[at..next].iter().all(|b| b.is_ascii_whitespace());
        if !blank && fields != names.len() {
            return Some((
                Some(line_of(at)),
                format!("the row has {fields} fields, the header {}", names.len()),
            ));
        }
        if !blank {
            records.push(at);
        }
        at = next;
    }
    // Types: each value parsed as its column's type, in batches; a batch
    // that fails is read again one row at a time.
    let read_schema = text_schema(schema, &names, instants);
    if schema.is_none() {
        let inferred = datafusion::arrow::csv::reader::Format::default()
            .with_header(true)
            .with_delimiter(delimiter)
            .with_quote(quote)
            .infer_schema(std::io::Cursor::new(&bytes), Some(20_480))
            .ok()
            .map(|(s, _)| Arc::new(s));
        if let Some(s) = inferred
            && let Some(d) = differs(&s, first, file)
        {
            return Some((None, d));
        }
    }
    let read = |from: usize, to: usize, batch: usize| {
        datafusion::arrow::csv::ReaderBuilder::new(Arc::clone(&read_schema))
            .with_header(true)
            .with_delimiter(delimiter)
            .with_quote(quote)
            .with_bounds(from, to)
            .with_batch_size(batch)
            .build(std::io::Cursor::new(&bytes))
    };
    const BATCH: usize = 4096;
    let mut start = 0;
    while start < records.len() {
        let end = (start + BATCH).min(records.len());
        let ok = read(start, end, BATCH).ok().and_then(|mut r| {
            let b = r.next()?.ok()?;
            Some(b)
        });
        let batch = match ok {
            Some(b) => b,
            None => {
                for (row, at) in records.iter().enumerate().take(end).skip(start) {
                    let one = read(row, row + 1, 1).ok().and_then(|mut r| r.next());
                    if let Some(Err(e)) = one {
                        let m = e.to_string();
                        let m = m.trim_start_matches("Parser error: ");
                        let m = m.split(" at line").next().unwrap_or(m);
                        return Some((Some(line_of(*at)), m.to_string()));
                    }
                }
                return None;
            }
        };
        if let Some((row, m)) = bad_instant(&batch, instants) {
            return Some((Some(line_of(records[start + row])), m));
        }
        start = end;
    }
    None
}

fn ndjson_file(
    file: &Path,
    schema: Option<&Schema>,
    instants: &[&str],
    first: &mut Option<(PathBuf, SchemaRef)>,
) -> Option<(Option<u64>, String)> {
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => return Some((None, format!("cannot be read: {e}"))),
    };
    if let Some((line, m)) = not_utf8(&bytes) {
        return Some((Some(line), m));
    }
    let mut lines = Vec::new();
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<serde_json::Value>(line) {
            Ok(serde_json::Value::Object(_)) => lines.push((i as u64 + 1, line)),
            Ok(_) => return Some((Some(i as u64 + 1), "the line is not a JSON object".into())),
            Err(e) => {
                // serde's own "line 1" would be the line of this one line.
                let m = e.to_string();
                let m = m.split(" at line ").next().unwrap_or(&m).to_string();
                return Some((
                    Some(i as u64 + 1),
                    format!("the line is not valid JSON: {m} at column {}", e.column()),
                ));
            }
        }
    }
    let file_schema = match schema {
        Some(s) => text_schema(
            Some(s),
            &s.fields()
                .iter()
                .map(|f| f.name().clone())
                .collect::<Vec<_>>(),
            instants,
        ),
        None => {
            let inferred = datafusion::arrow::json::reader::infer_json_schema_from_seekable(
                std::io::Cursor::new(&bytes),
                Some(20_480),
            )
            .ok()
            .map(|(s, _)| Arc::new(s));
            match inferred {
                Some(s) => {
                    if let Some(d) = differs(&s, first, file) {
                        return Some((None, d));
                    }
                    return None;
                }
                None => return None,
            }
        }
    };
    let decode = |part: &[(u64, &[u8])]| {
        let mut text = Vec::new();
        for (_, l) in part {
            text.extend_from_slice(l);
            text.push(b'\n');
        }
        datafusion::arrow::json::ReaderBuilder::new(Arc::clone(&file_schema))
            .with_batch_size(part.len().max(1))
            .build(std::io::Cursor::new(text))
            .ok()
            .and_then(|mut r| r.next())
    };
    for part in lines.chunks(4096) {
        match decode(part) {
            Some(Ok(batch)) => {
                if let Some((row, m)) = bad_instant(&batch, instants) {
                    return Some((Some(part[row].0), m));
                }
            }
            Some(Err(_)) => {
                for one in part.chunks(1) {
                    if let Some(Err(e)) = decode(one) {
                        let m = e.to_string();
                        let m = m.trim_start_matches("Json error: ");
                        return Some((Some(one[0].0), m.to_string()));
                    }
                }
            }
            None => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec<'a>(dir: &'a Path, uri: &'a str, instants: &'a [&'a str]) -> SourceSpec<'a> {
        SourceSpec {
            name: "s",
            uri,
            format: None,
            base_dir: dir,
            instants,
            columns: &[],
            delimiter: None,
            quote: None,
        }
    }

    fn message(e: Option<Error>) -> String {
        e.map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn csv_rows_are_found_at_their_line_from_the_start_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::from("k,at,amount\n");
        for i in 0..30_000 {
            text.push_str(&format!("{i},2026-03-01T00:00:00Z,{i}.5\n"));
        }
        let good = text.clone();
        // Line 30 001 of the file (the header is line 1).
        text.push_str("7,2026-03-01T00:00:00Z,abc\n");
        std::fs::write(dir.path().join("t.csv"), &text).unwrap();
        let schema = Schema::new(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("at", DataType::Utf8, true),
            Field::new("amount", DataType::Float64, true),
        ]);
        let m = message(diagnose(&spec(dir.path(), "t.csv", &["at"]), Some(&schema)));
        let path = dir.path().join("t.csv");
        assert!(m.contains(&format!("{}:30002:", path.display())), "{m}");
        assert!(m.contains("abc"), "{m}");

        // A row with a field too few, a bad instant, non-UTF-8, a header
        // twice: each at its line.
        let cases = [
            ("7,2026-03-01T00:00:00Z\n", "30002:", "2 fields"),
            ("7,99999-01-01T00:00:00Z,1\n", "30002:", "99999"),
            ("7,2026-03-01T00:00:00Z,\u{FFFD}\n", "", ""),
        ];
        for (row, line, needle) in cases.iter().take(2) {
            std::fs::write(dir.path().join("t.csv"), format!("{good}{row}")).unwrap();
            let m = message(diagnose(&spec(dir.path(), "t.csv", &["at"]), Some(&schema)));
            assert!(m.contains(line) && m.contains(needle), "{row}: {m}");
        }
        let mut bytes = good.into_bytes();
        bytes.extend_from_slice(b"7,2026-03-01T00:00:00Z,1\xff\n");
        std::fs::write(dir.path().join("t.csv"), &bytes).unwrap();
        let m = message(diagnose(&spec(dir.path(), "t.csv", &["at"]), Some(&schema)));
        assert!(m.contains(":30002:") && m.contains("not UTF-8"), "{m}");
        std::fs::write(dir.path().join("t.csv"), "k,at,k\n1,2,3\n").unwrap();
        let m = message(diagnose(&spec(dir.path(), "t.csv", &["at"]), None));
        assert!(m.contains(":1:") && m.contains("`k` twice"), "{m}");
    }

    #[test]
    fn ndjson_lines_empty_files_and_sibling_types() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::new();
        for i in 0..6_000 {
            text.push_str(&format!("{{\"k\": {i}, \"at\": \"2026-03-01\"}}\n"));
        }
        text.push_str("{\"k\": 1, \"at\": \n");
        std::fs::create_dir(dir.path().join("ev")).unwrap();
        std::fs::write(dir.path().join("ev/a.ndjson"), &text).unwrap();
        let m = message(diagnose(&spec(dir.path(), "ev/", &["at"]), None));
        assert!(
            m.contains("a.ndjson:6001:") && m.contains("not valid JSON"),
            "{m}"
        );

        std::fs::write(dir.path().join("ev/a.ndjson"), "{\"k\": 1}\n").unwrap();
        std::fs::write(dir.path().join("ev/b.ndjson"), "").unwrap();
        let m = message(empty_file(&spec(dir.path(), "ev/", &[])));
        assert!(
            m.contains("b.ndjson") && m.contains("empty (0 bytes)"),
            "{m}"
        );

        std::fs::write(dir.path().join("ev/b.ndjson"), "{\"k\": \"x\"}\n").unwrap();
        let m = message(diagnose(&spec(dir.path(), "ev/", &[]), None));
        assert!(
            m.contains("b.ndjson") && m.contains("column `k` is Utf8 here but Int64"),
            "{m}"
        );
    }

    #[test]
    fn parquet_files_that_are_not_parquet() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t.parquet"), b"hello").unwrap();
        let m = message(diagnose(&spec(dir.path(), "t.parquet", &[]), None));
        assert!(
            m.contains("t.parquet") && m.contains("not a readable Parquet file"),
            "{m}"
        );
    }
}
