//! Where a file source's data files are: a file, a glob, or a directory,
//! on the local disk or in an object store; the table URL, format,
//! extension and hive partition columns DataFusion's listing table needs.

use crate::{FileFormat, Result, SourceSpec, source_err};

/// What a listing table is registered with.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    /// The URL or path given to the listing table (a directory ends in `/`).
    pub table_path: String,
    pub format: FileFormat,
    /// `.ext` of the data files, or empty.
    pub extension: String,
    /// Hive-style `key=value` folder names, outermost first.
    pub partitions: Vec<String>,
}

/// The format of a source's files: as declared, else from the extension
/// of `file` (the path or URL named in the error).
pub(crate) fn format_of(spec: &SourceSpec<'_>, file: &str) -> Result<FileFormat> {
    spec.format
        .or_else(|| {
            extension_of(file)
                .filter(|e| !has_glob(e))
                .and_then(|e| FileFormat::from_extension(&e))
        })
        .ok_or_else(|| {
            source_err(
                spec,
                format!(
                    "cannot tell the format of `{file}`: add `format = \"parquet\"` (or csv, ndjson)"
                ),
            )
        })
}

/// `.ext` of `file` (globs excluded), or empty.
pub(crate) fn dot_extension(file: &str) -> String {
    extension_of(file)
        .filter(|e| !has_glob(e))
        .map(|e| format!(".{e}"))
        .unwrap_or_default()
}

pub(crate) fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// The extension of the last path segment, if any.
pub(crate) fn extension_of(path: &str) -> Option<String> {
    let last = path.rsplit('/').next().unwrap_or(path);
    let (stem, ext) = last.rsplit_once('.')?;
    (!stem.is_empty() && !ext.is_empty()).then(|| ext.to_string())
}

/// Whether a data file of extension `ext` belongs to the source.
pub(crate) fn wanted(ext: Option<&str>, declared: Option<FileFormat>) -> bool {
    let found = ext.and_then(FileFormat::from_extension);
    match declared {
        Some(fmt) => found == Some(fmt),
        None => found.is_some(),
    }
}

/// Hive-style partition column names from a data file's path relative to
/// the source's directory (`month=2026-10/part-0.parquet` → `month`); none
/// when any folder is not `key=value`.
pub(crate) fn partition_columns(relative: &str) -> Vec<String> {
    let parts: Vec<&str> = relative.split('/').filter(|p| !p.is_empty()).collect();
    let mut cols = Vec::new();
    for folder in parts.iter().take(parts.len().saturating_sub(1)) {
        match folder.split_once('=') {
            Some((k, _)) if !k.is_empty() => cols.push(k.to_string()),
            _ => return Vec::new(),
        }
    }
    cols
}

/// Whether a listed file is hidden (a path segment starting with `.` or
/// `_`, as Spark and Hive write `_SUCCESS` and `.crc` files).
pub(crate) fn hidden(relative: &str) -> bool {
    relative
        .split('/')
        .any(|p| p.starts_with('.') || p.starts_with('_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_columns_come_from_key_value_folders() {
        assert_eq!(
            partition_columns("year=2026/month=10/part-0.parquet"),
            vec!["year", "month"]
        );
        assert!(partition_columns("2026/10/part-0.parquet").is_empty());
        assert!(partition_columns("part-0.parquet").is_empty());
    }

    #[test]
    fn extensions_and_hidden_files() {
        assert_eq!(extension_of("a/b/c.parquet").as_deref(), Some("parquet"));
        assert_eq!(extension_of("a/b.d/c"), None);
        assert_eq!(extension_of(".hidden"), None);
        assert!(hidden("month=1/_SUCCESS"));
        assert!(hidden(".tmp/x.parquet"));
        assert!(!hidden("month=1/x.parquet"));
        assert!(wanted(Some("jsonl"), None));
        assert!(!wanted(Some("csv"), Some(FileFormat::Parquet)));
        assert!(!wanted(None, None));
    }
}
