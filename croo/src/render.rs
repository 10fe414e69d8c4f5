//! Rendering of diagnostics (miette) and of result tables.

use std::fmt;

use formulas::{Diagnostic, Severity, SourceFile};
use miette::{
    GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteError, MietteSpanContents,
    SourceCode, SourceSpan, SpanContents,
};

struct Report<'a> {
    d: &'a Diagnostic,
    src: Window<'a>,
}

/// The lines of a file around one diagnostic, as miette reads them: each
/// diagnostic renders in time proportional to its own lines, not to the
/// whole file (a file with thousands of warnings renders in linear time).
struct Window<'a> {
    name: &'a str,
    /// The lines shown, from the start of the first.
    text: &'a str,
    /// Byte offset of `text` in the file.
    base: usize,
    /// Zero-based line number of `text`'s first line in the file.
    first_line: usize,
}

impl<'a> Window<'a> {
    /// `CONTEXT` lines on either side of `span` (miette shows one).
    fn around(file: &'a SourceFile, span: &std::ops::Range<usize>) -> Self {
        const CONTEXT: usize = 3;
        let (start_line, _) = file.line_col(span.start);
        let (end_line, _) = file.line_col(span.end);
        let first_line = start_line.saturating_sub(1 + CONTEXT);
        let base = file.line_start(first_line);
        let end = file.line_start(end_line + CONTEXT);
        Window {
            name: &file.path,
            text: &file.text[base..end.max(base)],
            base,
            first_line,
        }
    }
}

impl SourceCode for Window<'_> {
    fn read_span<'b>(
        &'b self,
        span: &SourceSpan,
        before: usize,
        after: usize,
    ) -> Result<Box<dyn SpanContents<'b> + 'b>, MietteError> {
        let offset = span.offset().saturating_sub(self.base).min(self.text.len());
        let len = span.len().min(self.text.len() - offset);
        let inner = self
            .text
            .read_span(&SourceSpan::new(offset.into(), len), before, after)?;
        Ok(Box::new(MietteSpanContents::new_named(
            self.name.to_string(),
            inner.data(),
            SourceSpan::new(
                (inner.span().offset() + self.base).into(),
                inner.span().len(),
            ),
            inner.line() + self.first_line,
            inner.column(),
            inner.line_count(),
        )))
    }
}

impl fmt::Debug for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.d.message)
    }
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.d.message)
    }
}

impl std::error::Error for Report<'_> {}

impl miette::Diagnostic for Report<'_> {
    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.d.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.d
            .help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.src)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let len = self.d.span.end.saturating_sub(self.d.span.start);
        let label = (!self.d.label.is_empty()).then(|| self.d.label.clone());
        Some(Box::new(std::iter::once(LabeledSpan::new(
            label,
            self.d.span.start,
            len,
        ))))
    }
}

/// Renders one diagnostic as text: a `path:line:col` header, the source
/// line and a caret under the offending text.
pub fn diagnostic(file: &SourceFile, d: &Diagnostic, color: bool) -> String {
    let (line, col) = file.line_col(d.span.start);
    let kind = match d.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let mut out = format!(
        "{kind}[{}]: {}\n  --> {}:{line}:{col}\n",
        d.code, d.message, file.path
    );
    let theme = if color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme).with_width(100);
    let report = Report {
        d,
        src: Window::around(file, &d.span),
    };
    let mut s = String::new();
    if handler.render_report(&mut s, &report).is_ok() {
        out.push_str(&s);
    }
    out
}

/// A diagnostic as a JSON record.
pub fn diagnostic_json(file: &SourceFile, d: &Diagnostic) -> serde_json::Value {
    let (line, column) = file.line_col(d.span.start);
    let (end_line, end_column) = file.line_col(d.span.end);
    serde_json::json!({
        "file": file.path,
        "line": line,
        "column": column,
        "end_line": end_line,
        "end_column": end_column,
        "severity": d.severity,
        "code": d.code,
        "message": d.message,
        "label": d.label,
        "help": d.help,
    })
}

/// Column headers of a table.
pub fn headers(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// A result row's group: `all` for the whole population, else
/// `dimension=value` (`(null)` for a NULL value).
pub fn group(dimension: Option<&str>, value: Option<&str>) -> String {
    match (dimension, value) {
        (None, _) => "all".to_string(),
        (Some(d), v) => format!("{d}={}", v.unwrap_or("(null)")),
    }
}

/// A number with `decimals` places, or `-` for NULL.
pub fn number(v: Option<f64>, decimals: usize) -> String {
    v.map(|x| format!("{x:.decimals$}"))
        .unwrap_or_else(|| "-".into())
}

/// A plain text table with right-aligned numbers.
pub fn table(headers: &[String], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: &[String]| -> String {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let pad = widths[i] - c.chars().count();
                if i < 2 {
                    format!("{c}{}", " ".repeat(pad))
                } else {
                    format!("{}{c}", " ".repeat(pad))
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(headers);
    out.push('\n');
    out.push_str(
        &widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("  "),
    );
    out.push('\n');
    for r in rows {
        out.push_str(&line(r));
        out.push('\n');
    }
    out
}
