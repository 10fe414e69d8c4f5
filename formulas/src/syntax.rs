//! Reads a formula file's TOML into a [`FormulaFile`], keeping the span of
//! every value and collecting every problem instead of stopping at the first.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::diagnostic::{Diagnostic, SourceFile, nearest};
use crate::model::*;

type Table<'i> = DeTable<'i>;

/// Parses `file` into a formula. Returns `None` when the file is too broken
/// to describe a formula; every problem found is in the diagnostics.
pub fn parse(file: &SourceFile) -> (Option<FormulaFile>, Vec<Diagnostic>) {
    let mut p = Parser {
        text: &file.text,
        diags: Vec::new(),
        broken: Vec::new(),
    };
    let (root, errors) = DeTable::parse_recoverable(&file.text);
    for e in &errors {
        let span = e.span().unwrap_or(0..0);
        p.diags.push(
            Diagnostic::error(
                "croo::toml",
                span,
                format!("invalid TOML: {}", e.message().trim()),
            )
            .with_label("here"),
        );
    }
    if !errors.is_empty() {
        return (None, p.diags);
    }
    let formula = p.formula(root.get_ref(), root.span());
    (formula, p.diags)
}

struct Parser<'t> {
    text: &'t str,
    diags: Vec<Diagnostic>,
    /// Names declared in the file whose definition has an error.
    broken: Vec<String>,
}

/// Keys of one TOML table, with the ones already read marked.
struct Keys<'a, 'i> {
    table: &'a Table<'i>,
    span: Range<usize>,
    what: &'static str,
    allowed: &'static [&'static str],
}

impl<'a, 'i> Keys<'a, 'i> {
    fn get(&self, key: &str) -> Option<&'a Spanned<DeValue<'i>>> {
        self.table.get(key)
    }
}

/// The keys each table accepts (the JSON Schema is checked against them).
pub mod keys {
    pub const FORMULA: &[&str] = &["name", "version", "description", "owner", "grain", "scale"];
    pub const SOURCE: &[&str] = &[
        "role",
        "uri",
        "format",
        "key",
        "time",
        "active_from",
        "active_to",
        "checks",
        "empty_periods",
        "columns",
        "delimiter",
        "quote",
        "freshness",
        "loaded_at",
        "valid_from",
        "valid_to",
    ];
    /// `[dimensions.NAME]` of a history dimension.
    pub const DIMENSION: &[&str] = &["source", "column", "as_of"];
    /// A source's `freshness = { ... }`.
    pub const FRESHNESS: &[&str] = &["warn_after", "error_after"];
    /// `[operations]`.
    pub const OPERATIONS: &[&str] = &["settle"];
    /// `[calendar]`.
    pub const CALENDAR: &[&str] = &[
        "type",
        "fiscal_year_start",
        "year_label",
        "pattern",
        "year_end_month",
        "year_end_weekday",
        "year_end",
        "time_zone",
    ];
    /// `[sources.NAME.columns.COLUMN]`.
    pub const COLUMN: &[&str] = &["type", "format", "unit"];
    /// A `checks` entry: one kind, and a policy.
    pub const CHECK: &[&str] = &[
        "unique",
        "not_null",
        "accepted_values",
        "values",
        "finite",
        "min_rows_per_period",
        "policy",
    ];
    pub const MEASURE: &[&str] = &[
        "source",
        "perspective",
        "expr",
        "filter",
        "default",
        "unit",
        "description",
        "winsorise",
    ];
    pub const COMPONENT: &[&str] = &["weight", "expr", "description", "impute", "alternatives"];
    /// A component's `alternatives`.
    pub const COMPONENT_ALTERNATIVES: &[&str] = &["normalise", "impute"];
    pub const SCORE: &[&str] = &[
        "components",
        "expr",
        "method",
        "shift",
        "min_coverage",
        "alternatives",
    ];
    /// `[score] alternatives`.
    pub const SCORE_ALTERNATIVES: &[&str] = &["method", "winsorise"];
    pub const ROLLUP: &[&str] = &["weight"];
    pub const TEST: &[&str] = &["name", "periods", "data", "expect"];
    pub const TOP: &[&str] = &[
        "formula",
        "sources",
        "dimensions",
        "measures",
        "derived",
        "score",
        "rollup",
        "operations",
        "calendar",
        "tests",
    ];
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// Reads a TOML number (integer or float) as f64.
pub(crate) fn number(v: &DeValue<'_>) -> Option<f64> {
    match v {
        DeValue::Integer(i) => {
            let digits = i.as_str().replace('_', "");
            let (neg, digits) = match digits.strip_prefix('-') {
                Some(d) => (true, d.to_string()),
                None => (false, digits.trim_start_matches('+').to_string()),
            };
            let digits = if i.radix() == 10 {
                digits
            } else {
                digits.get(2..).unwrap_or("").to_string()
            };
            let n = i64::from_str_radix(&digits, i.radix()).ok()? as f64;
            Some(if neg { -n } else { n })
        }
        DeValue::Float(f) => {
            let s = f.as_str().replace('_', "");
            match s.trim_start_matches('+') {
                "inf" => Some(f64::INFINITY),
                "-inf" => Some(f64::NEG_INFINITY),
                "nan" | "-nan" => Some(f64::NAN),
                other => other.parse().ok(),
            }
        }
        _ => None,
    }
}

impl Parser<'_> {
    fn err(&mut self, code: &'static str, span: Range<usize>, msg: impl Into<String>) {
        self.diags.push(Diagnostic::error(code, span, msg));
    }

    /// Checks that every key of `keys.table` is allowed, suggesting the
    /// nearest allowed key otherwise.
    fn unknown_keys(&mut self, keys: &Keys<'_, '_>) {
        for (k, _) in keys.table.iter() {
            if !keys.allowed.contains(&k.get_ref().as_ref()) {
                let mut d = Diagnostic::error(
                    "croo::unknown-key",
                    k.span(),
                    format!("unknown key `{}` in {}", k.get_ref(), keys.what),
                )
                .with_label("not a known key");
                d = match nearest(k.get_ref(), keys.allowed.iter().copied()) {
                    Some(n) => d.with_help(format!("did you mean `{n}`?")),
                    None => d.with_help(format!("known keys: {}", keys.allowed.join(", "))),
                };
                self.diags.push(d);
            }
        }
    }

    fn text_of(&self, s: &str, span: Range<usize>) -> Text {
        let raw = &self.text[span.clone()];
        let mut inner = span.start;
        if raw.starts_with("\"\"\"") || raw.starts_with("'''") {
            inner += 3;
            if self.text[inner..].starts_with('\n') {
                inner += 1;
            } else if self.text[inner..].starts_with("\r\n") {
                inner += 2;
            }
        } else if raw.starts_with('"') || raw.starts_with('\'') {
            inner += 1;
        }
        Text {
            value: s.to_string(),
            span,
            inner,
        }
    }

    fn string(&mut self, keys: &Keys<'_, '_>, key: &str, required: bool) -> Option<Text> {
        match keys.get(key) {
            Some(v) => match v.get_ref() {
                DeValue::String(s) => Some(self.text_of(s, v.span())),
                other => {
                    self.err(
                        "croo::wrong-type",
                        v.span(),
                        format!(
                            "`{key}` in {} must be a string, found {}",
                            keys.what,
                            type_name(other)
                        ),
                    );
                    None
                }
            },
            None => {
                if required {
                    self.missing(keys, key);
                }
                None
            }
        }
    }

    /// A formula-syntax expression: a string, or a bare number
    /// (`weight = 1` means `weight = "1"`).
    fn expression(&mut self, keys: &Keys<'_, '_>, key: &str, required: bool) -> Option<Text> {
        if let Some(v) = keys.get(key)
            && let Some(t) = self.number_as_expression(v.get_ref(), v.span())
        {
            return Some(t);
        }
        self.string(keys, key, required)
    }

    /// A finite TOML number as the text of an expression, spanning the
    /// number in the file.
    fn number_as_expression(&self, v: &DeValue<'_>, span: Range<usize>) -> Option<Text> {
        if !matches!(v, DeValue::Integer(_) | DeValue::Float(_)) {
            return None;
        }
        let n = number(v).filter(|n| n.is_finite())?;
        let value = if n.fract() == 0.0 && n.abs() < 1e15 {
            format!("{}", n as i64)
        } else {
            format!("{n:?}")
        };
        Some(Text {
            value,
            inner: span.start,
            span,
        })
    }

    /// A span of time (`"5d"`, `"6h"`), see [`Seconds::parse`].
    fn duration(&mut self, keys: &Keys<'_, '_>, key: &str) -> Option<Seconds> {
        let t = self.string(keys, key, false)?;
        let parsed = Seconds::parse(&t.value);
        if parsed.is_none() {
            self.diags.push(
                Diagnostic::error(
                    "croo::invalid-value",
                    t.span.clone(),
                    format!("`{}` is not a span of time", t.value),
                )
                .with_label("expected a number and a unit: \"30m\", \"6h\", \"5d\", \"1w\", or a sum such as \"1d12h\""),
            );
        }
        parsed
    }

    /// A source's `freshness = { warn_after = "6h", error_after = "2d" }`.
    fn freshness(&mut self, source: &Keys<'_, '_>) -> Option<Freshness> {
        let keys = self.subtable(source.table, "freshness", "`freshness`", keys::FRESHNESS)?;
        let f = Freshness {
            warn_after: self.duration(&keys, "warn_after"),
            error_after: self.duration(&keys, "error_after"),
        };
        if let (Some(w), Some(e)) = (f.warn_after, f.error_after)
            && w > e
            && let Some(v) = keys.get("warn_after")
        {
            self.err(
                "croo::invalid-value",
                v.span(),
                format!("`warn_after` ({w}) is longer than `error_after` ({e}): a warning would never come first"),
            );
        }
        Some(f)
    }

    /// `[operations]`: `settle`.
    fn operations(&mut self, root: &Table<'_>) -> Operations {
        let Some(keys) = self.subtable(root, "operations", "[operations]", keys::OPERATIONS) else {
            return Operations::default();
        };
        Operations {
            settle: self.duration(&keys, "settle").unwrap_or_default(),
        }
    }

    /// `[calendar]`: `type = "gregorian"` (fiscal quarters and years from
    /// `fiscal_year_start`) or `"retail"` (52/53 weeks), `year_label`,
    /// `time_zone`.
    fn calendar(&mut self, root: &Table<'_>) -> Option<CalendarSpec> {
        let keys = self.subtable(root, "calendar", "[calendar]", keys::CALENDAR)?;
        #[derive(Clone, Copy, PartialEq)]
        enum Type {
            Gregorian,
            Retail,
        }
        let ty = self
            .choice(
                &keys,
                "type",
                false,
                &[("gregorian", Type::Gregorian), ("retail", Type::Retail)],
            )
            .unwrap_or(Type::Gregorian);
        let month = |p: &mut Self, key: &str| -> Option<u32> {
            let (n, span) = p.num(&keys, key)?;
            if n.fract() == 0.0 && (1.0..=12.0).contains(&n) {
                Some(n as u32)
            } else {
                p.err(
                    "croo::invalid-value",
                    span,
                    format!("`{key}` must be a month number from 1 (January) to 12 (December)"),
                );
                None
            }
        };
        // Keys of the other type are mistakes, not silently ignored.
        let only = |p: &mut Self, key: &str, of: &str| {
            if let Some(v) = keys.get(key) {
                p.err(
                    "croo::invalid-value",
                    v.span(),
                    format!("`{key}` applies to `type = \"{of}\"` calendars only"),
                );
            }
        };
        let kind = match ty {
            Type::Gregorian => {
                for k in ["pattern", "year_end_month", "year_end_weekday", "year_end"] {
                    only(self, k, "retail");
                }
                CalendarKind::Gregorian {
                    fiscal_year_start: month(self, "fiscal_year_start").unwrap_or(1),
                }
            }
            Type::Retail => {
                only(self, "fiscal_year_start", "gregorian");
                let pattern = self
                    .choice(
                        &keys,
                        "pattern",
                        false,
                        &[
                            ("4-5-4", [4, 5, 4]),
                            ("4-4-5", [4, 4, 5]),
                            ("5-4-4", [5, 4, 4]),
                        ],
                    )
                    .unwrap_or([4, 5, 4]);
                let weekday = self
                    .choice(
                        &keys,
                        "year_end_weekday",
                        false,
                        &[
                            ("monday", 0),
                            ("tuesday", 1),
                            ("wednesday", 2),
                            ("thursday", 3),
                            ("friday", 4),
                            ("saturday", 5),
                            ("sunday", 6),
                        ],
                    )
                    .unwrap_or(5);
                let year_end = self
                    .choice(
                        &keys,
                        "year_end",
                        false,
                        &[("nearest", YearEnd::Nearest), ("last", YearEnd::Last)],
                    )
                    .unwrap_or(YearEnd::Nearest);
                CalendarKind::Retail {
                    pattern,
                    year_end_month: month(self, "year_end_month").unwrap_or(1),
                    year_end_weekday: weekday,
                    year_end,
                }
            }
        };
        // NRF names a retail year after the year it starts in; a fiscal
        // year is commonly named after the year it ends in.
        let default_label = match ty {
            Type::Gregorian => YearLabel::End,
            Type::Retail => YearLabel::Start,
        };
        let year_label = self
            .choice(
                &keys,
                "year_label",
                false,
                &[("end", YearLabel::End), ("start", YearLabel::Start)],
            )
            .unwrap_or(default_label);
        let time_zone = self.string(&keys, "time_zone", false).and_then(|t| {
            if t.value.parse::<chrono_tz::Tz>().is_ok() {
                Some(t.value)
            } else {
                let mut d = Diagnostic::error(
                    "croo::invalid-value",
                    t.span.clone(),
                    format!("`{}` is not an IANA time zone", t.value),
                )
                .with_label("expected a name such as \"Europe/Berlin\" or \"UTC\"");
                if let Some(n) = nearest(&t.value, chrono_tz::TZ_VARIANTS.iter().map(|z| z.name()))
                {
                    d = d.with_help(format!("did you mean `{n}`?"));
                }
                self.diags.push(d);
                None
            }
        });
        Some(CalendarSpec {
            kind,
            year_label,
            time_zone,
        })
    }

    /// A one-character ASCII string (`delimiter = ";"`).
    fn one_char(&mut self, keys: &Keys<'_, '_>, key: &str) -> Option<(u8, Range<usize>)> {
        let t = self.string(keys, key, false)?;
        match t.value.as_bytes() {
            [b] if b.is_ascii() && *b != b'\n' && *b != b'\r' => Some((*b, t.span)),
            _ => {
                self.err(
                    "croo::invalid-value",
                    t.span,
                    format!("`{key}` must be one ASCII character, such as \";\" or \"\\t\""),
                );
                None
            }
        }
    }

    /// `[sources.NAME.columns.COLUMN]`: how to read particular columns.
    /// `format` and `unit` apply to the source's time columns (`times`).
    fn column_reads(&mut self, keys: &Keys<'_, '_>, times: &[&str]) -> Vec<ColumnRead> {
        let mut out = Vec::new();
        let Some(all) = self.subtable(keys.table, "columns", "[sources.*.columns]", &[]) else {
            return out;
        };
        for (k, v) in all.table.iter() {
            let column = Name {
                value: k.get_ref().to_string(),
                span: k.span(),
            };
            let Some(c) = self.as_table(v, "a [sources.*.columns.*] table", keys::COLUMN) else {
                continue;
            };
            let ty = self.choice(&c, "type", false, &ColumnType::ALL);
            let format = self.string(&c, "format", false);
            let unit = self.choice(&c, "unit", false, &EpochUnit::ALL);
            let is_time = times.contains(&column.value.as_str());
            if (format.is_some() || unit.is_some()) && !is_time {
                self.err(
                    "croo::invalid-key",
                    column.span.clone(),
                    format!(
                        "`format` and `unit` read a time column, and `{}` is not one of this source's (`time`, `active_from`, `active_to`, `loaded_at`, `valid_from`, `valid_to`)",
                        column.value
                    ),
                );
            }
            if format.is_some() && unit.is_some() {
                self.err(
                    "croo::invalid-key",
                    column.span.clone(),
                    "a time column is text read with a `format` or numbers with a `unit`, not both",
                );
            }
            if ty.is_some() && (format.is_some() || unit.is_some()) {
                self.err(
                    "croo::invalid-key",
                    column.span.clone(),
                    "`type` is for columns that are not times; a time column takes `format` or `unit`",
                );
            }
            if let Some(f) = &format
                && f.value.trim().is_empty()
            {
                self.err(
                    "croo::invalid-value",
                    f.span.clone(),
                    "the `format` is empty",
                );
            }
            out.push(ColumnRead {
                column,
                ty,
                format,
                unit,
            });
        }
        out
    }

    fn missing(&mut self, keys: &Keys<'_, '_>, key: &str) {
        let start = keys.span.start;
        let end = self.text[start..]
            .find('\n')
            .map(|i| start + i)
            .unwrap_or(keys.span.end)
            .min(keys.span.end.max(start));
        self.diags.push(
            Diagnostic::error(
                "croo::missing-key",
                start..end,
                format!("missing required key `{key}` in {}", keys.what),
            )
            .with_label(format!("`{key}` is required here")),
        );
    }

    fn num(&mut self, keys: &Keys<'_, '_>, key: &str) -> Option<(f64, Range<usize>)> {
        let v = keys.get(key)?;
        match number(v.get_ref()) {
            Some(n) => Some((n, v.span())),
            None => {
                self.err(
                    "croo::wrong-type",
                    v.span(),
                    format!(
                        "`{key}` in {} must be a number, found {}",
                        keys.what,
                        type_name(v.get_ref())
                    ),
                );
                None
            }
        }
    }

    fn choice<T: Copy>(
        &mut self,
        keys: &Keys<'_, '_>,
        key: &str,
        required: bool,
        options: &[(&'static str, T)],
    ) -> Option<T> {
        let t = self.string(keys, key, required)?;
        match options.iter().find(|(s, _)| *s == t.value) {
            Some((_, v)) => Some(*v),
            None => {
                let names: Vec<&str> = options.iter().map(|(s, _)| *s).collect();
                let mut d = Diagnostic::error(
                    "croo::invalid-value",
                    t.span.clone(),
                    format!("`{}` is not a valid `{key}`", t.value),
                )
                .with_label(format!("expected one of {}", names.join(", ")));
                if let Some(n) = nearest(&t.value, names.iter().copied()) {
                    d = d.with_help(format!("did you mean `{n}`?"));
                }
                self.diags.push(d);
                None
            }
        }
    }

    fn subtable<'a, 'i>(
        &mut self,
        parent: &'a Table<'i>,
        key: &str,
        what: &'static str,
        allowed: &'static [&'static str],
    ) -> Option<Keys<'a, 'i>> {
        let v = parent.get(key)?;
        self.as_table(v, what, allowed)
    }

    fn as_table<'a, 'i>(
        &mut self,
        v: &'a Spanned<DeValue<'i>>,
        what: &'static str,
        allowed: &'static [&'static str],
    ) -> Option<Keys<'a, 'i>> {
        match v.get_ref() {
            DeValue::Table(t) => {
                let keys = Keys {
                    table: t,
                    span: v.span(),
                    what,
                    allowed,
                };
                if !allowed.is_empty() {
                    self.unknown_keys(&keys);
                }
                Some(keys)
            }
            other => {
                self.err(
                    "croo::wrong-type",
                    v.span(),
                    format!("{what} must be a table, found {}", type_name(other)),
                );
                None
            }
        }
    }

    fn name(&mut self, k: &Spanned<toml::de::DeString<'_>>, what: &str) -> Name {
        let name = Name {
            value: k.get_ref().to_string(),
            span: k.span(),
        };
        if !is_identifier(&name.value) {
            self.diags.push(
                Diagnostic::error(
                    "croo::invalid-name",
                    name.span.clone(),
                    format!("{what} name `{}` is not an identifier", name.value),
                )
                .with_label("use letters, digits and `_`, not starting with a digit"),
            );
        }
        name
    }

    fn formula(&mut self, root: &Table<'_>, span: Range<usize>) -> Option<FormulaFile> {
        let top = Keys {
            table: root,
            span: span.clone(),
            what: "the formula file",
            allowed: keys::TOP,
        };
        self.unknown_keys(&top);
        let Some(head) = self.subtable(root, "formula", "[formula]", keys::FORMULA) else {
            if root.get("formula").is_none() {
                self.err(
                    "croo::missing-key",
                    0..0,
                    "missing required table `[formula]` (with `name`, `version` and `grain`)",
                );
            }
            return None;
        };
        let name = self.string(&head, "name", true);
        if let Some(n) = &name {
            let ok = (1..=64).contains(&n.value.len())
                && n.value
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
            if !ok {
                self.diags.push(
                    Diagnostic::error(
                        "croo::invalid-value",
                        n.span.clone(),
                        format!("formula name `{}` must match [a-z0-9_-]{{1,64}}", n.value),
                    )
                    .with_label("it names the results"),
                );
            }
        }
        let version = self.string(&head, "version", true);
        let description = self.string(&head, "description", false).map(|t| t.value);
        let owner = self.string(&head, "owner", false).map(|t| t.value);
        let grain = self.choice(&head, "grain", true, &Grain::ALL);
        let scale = match self.num(&head, "scale") {
            Some((s, span)) if !s.is_finite() => {
                self.err(
                    "croo::invalid-value",
                    span,
                    "`scale` must be a finite number",
                );
                100.0
            }
            Some((s, _)) => s,
            None => 100.0,
        };

        let sources = self.sources(root, &span);
        let dimensions = self.dimensions(root);
        let measures = self.measures(root);
        let derived = self.derived(root);
        let (components, score_expr) = self.score(root, &span);
        let (method, shift) = self.method(root, score_expr.is_some());
        let min_coverage = self.min_coverage(root, score_expr.is_some());
        let alternatives = self.score_alternatives(root);
        let rollup_weight = self
            .subtable(root, "rollup", "[rollup]", keys::ROLLUP)
            .and_then(|k| self.expression(&k, "weight", false));
        let operations = self.operations(root);
        let calendar = self.calendar(root);
        let tests = self.tests(root);

        // A missing or invalid `name`, `version` or `grain` has been
        // reported; the rest of the file is still checked (every error in
        // one run), under a placeholder that no formula can be run with:
        // the diagnostics hold an error.
        let placeholder = || Text {
            value: String::new(),
            span: 0..0,
            inner: 0,
        };
        Some(FormulaFile {
            name: name.unwrap_or_else(placeholder),
            version: version.unwrap_or_else(placeholder),
            description,
            owner,
            grain: grain.unwrap_or(Grain::Month),
            scale,
            sources,
            dimensions,
            measures,
            derived,
            components,
            score_expr,
            method,
            shift,
            min_coverage,
            alternatives,
            rollup_weight,
            operations,
            calendar,
            tests,
            broken: std::mem::take(&mut self.broken),
        })
    }

    fn sources(&mut self, root: &Table<'_>, span: &Range<usize>) -> Vec<Source> {
        let mut out = Vec::new();
        let Some(all) = self.subtable(root, "sources", "[sources]", &[]) else {
            self.err(
                "croo::missing-key",
                span.start..span.start,
                "missing `[sources]`: at least the entity source is required",
            );
            return out;
        };
        for (k, v) in all.table.iter() {
            let name = self.name(k, "source");
            let what = "a [sources.*] table";
            let Some(keys) = self.as_table(v, what, keys::SOURCE) else {
                continue;
            };
            let role = self.string(&keys, "role", false);
            let (entity, history) = match &role {
                Some(r) if r.value == "entity" => (true, false),
                Some(r) if r.value == "event" => (false, false),
                Some(r) if r.value == "history" => (false, true),
                Some(r) => {
                    self.diags.push(
                        Diagnostic::error(
                            "croo::invalid-value",
                            r.span.clone(),
                            format!("`{}` is not a valid `role`", r.value),
                        )
                        .with_label("expected `entity`, `history` (or leave `role` out for an event source)"),
                    );
                    (false, false)
                }
                None => (false, false),
            };
            let valid_from = self.string(&keys, "valid_from", history);
            let valid_to = self.string(&keys, "valid_to", history);
            if history {
                for key in [
                    "time",
                    "active_from",
                    "active_to",
                    "empty_periods",
                    "freshness",
                    "loaded_at",
                ] {
                    if let Some(v) = keys.get(key) {
                        self.err(
                            "croo::invalid-key",
                            v.span(),
                            format!("a history source takes no `{key}`: its rows are valid from `valid_from` to `valid_to`"),
                        );
                    }
                }
            } else {
                for key in ["valid_from", "valid_to"] {
                    if let Some(v) = keys.get(key) {
                        self.err(
                            "croo::invalid-key",
                            v.span(),
                            format!("`{key}` belongs to history sources (`role = \"history\"`)"),
                        );
                    }
                }
            }
            let uri = self.string(&keys, "uri", true);
            let format = self.choice(&keys, "format", false, &Format::ALL);
            let key = self.string(&keys, "key", true);
            let time = self.string(&keys, "time", false);
            let active_from = self.string(&keys, "active_from", false);
            let active_to = self.string(&keys, "active_to", false);
            let checks = self.checks(&keys);
            for c in &checks {
                if entity && matches!(c.kind, CheckKind::MinRowsPerPeriod(_)) {
                    self.err(
                        "croo::invalid-check",
                        c.span.clone(),
                        "`min_rows_per_period` belongs to event sources (the entity source has no periods)",
                    );
                }
            }
            let empty_periods = self
                .choice(&keys, "empty_periods", false, &EmptyPeriods::ALL)
                .unwrap_or_default();
            if entity && let Some(v) = keys.get("empty_periods") {
                self.err(
                    "croo::invalid-key",
                    v.span(),
                    "`empty_periods` belongs to event sources (the entity source has no periods)",
                );
            }
            if !entity && !history && time.is_none() {
                self.missing(&keys, "time");
            }
            if entity && let Some(t) = &time {
                self.diags.push(
                    Diagnostic::error(
                        "croo::invalid-key",
                        t.span.clone(),
                        "the entity source takes no `time`",
                    )
                    .with_label("use `active_from` / `active_to` for the entity"),
                );
            }
            if !entity && !history {
                for t in [&active_from, &active_to].into_iter().flatten() {
                    self.diags.push(
                        Diagnostic::error(
                            "croo::invalid-key",
                            t.span.clone(),
                            "`active_from` / `active_to` belong to the entity source",
                        )
                        .with_label("only allowed with role = \"entity\""),
                    );
                }
            }
            let loaded_at = self.string(&keys, "loaded_at", false);
            let times: Vec<&str> = [
                &time,
                &active_from,
                &active_to,
                &loaded_at,
                &valid_from,
                &valid_to,
            ]
            .into_iter()
            .flatten()
            .map(|t| t.value.as_str())
            .collect();
            let columns = self.column_reads(&keys, &times);
            let delimiter = self.one_char(&keys, "delimiter");
            let quote = self.one_char(&keys, "quote");
            let freshness = self.freshness(&keys);
            if entity {
                for key in ["freshness", "loaded_at"] {
                    if let Some(v) = keys.get(key) {
                        self.err(
                            "croo::invalid-key",
                            v.span(),
                            format!("`{key}` belongs to event sources (the entity source has no event times)"),
                        );
                    }
                }
            }
            if uri.is_none() || key.is_none() {
                self.broken.push(name.value.clone());
            }
            if let (Some(uri), Some(key)) = (uri, key) {
                out.push(Source {
                    history,
                    valid_from,
                    valid_to,
                    freshness,
                    loaded_at,
                    columns,
                    delimiter,
                    quote,
                    name,
                    entity,
                    uri,
                    format,
                    key,
                    time,
                    active_from,
                    active_to,
                    checks,
                    empty_periods,
                });
            }
        }
        let entities: Vec<&Source> = out.iter().filter(|s| s.entity).collect();
        if entities.is_empty() {
            let at = root.get("sources").map(|v| v.span()).unwrap_or(0..0);
            let at = at.start..at.start;
            self.diags.push(
                Diagnostic::error("croo::no-entity", at, "no source has role = \"entity\"")
                    .with_help(
                        "exactly one source defines the population: add `role = \"entity\"` to it",
                    ),
            );
        }
        for extra in entities.iter().skip(1) {
            self.diags.push(
                Diagnostic::error(
                    "croo::two-entities",
                    extra.name.span.clone(),
                    format!("a second entity source `{}`", extra.name.value),
                )
                .with_label("only one source may have role = \"entity\""),
            );
        }
        out
    }

    /// A source's `checks = [ { unique = "col" }, { not_null = "col",
    /// policy = "warn" }, ... ]`.
    fn checks(&mut self, source: &Keys<'_, '_>) -> Vec<SourceCheck> {
        let mut out = Vec::new();
        let Some(v) = source.get("checks") else {
            return out;
        };
        let DeValue::Array(items) = v.get_ref() else {
            self.err(
                "croo::wrong-type",
                v.span(),
                format!(
                    "`checks` must be an array of tables, found {}",
                    type_name(v.get_ref())
                ),
            );
            return out;
        };
        const KINDS: [&str; 5] = [
            "unique",
            "not_null",
            "accepted_values",
            "finite",
            "min_rows_per_period",
        ];
        for item in items.iter() {
            let Some(keys) = self.as_table(item, "a `checks` entry", keys::CHECK) else {
                continue;
            };
            let given: Vec<&str> = KINDS
                .iter()
                .copied()
                .filter(|k| keys.get(k).is_some())
                .collect();
            let kind = match given.as_slice() {
                [one] => *one,
                _ => {
                    self.err(
                        "croo::invalid-check",
                        item.span(),
                        format!(
                            "a check names exactly one of {}; this one names {}",
                            KINDS.join(", "),
                            if given.is_empty() {
                                "none".to_string()
                            } else {
                                given.join(" and ")
                            }
                        ),
                    );
                    continue;
                }
            };
            let policy = self
                .choice(&keys, "policy", false, &Policy::ALL)
                .unwrap_or(Policy::Error);
            let kind = match kind {
                "unique" => self.string(&keys, "unique", true).map(CheckKind::Unique),
                "not_null" => self.string(&keys, "not_null", true).map(CheckKind::NotNull),
                "finite" => self.string(&keys, "finite", true).map(CheckKind::Finite),
                "accepted_values" => {
                    let column = self.string(&keys, "accepted_values", true);
                    let values = match keys.get("values").map(|v| (v.get_ref(), v.span())) {
                        Some((DeValue::Array(a), _)) => {
                            let mut values = Vec::new();
                            for e in a.iter() {
                                match e.get_ref() {
                                    DeValue::String(s) => values.push(s.to_string()),
                                    DeValue::Integer(_) | DeValue::Float(_) | DeValue::Boolean(_) => {
                                        values.push(self.text[e.span()].to_string())
                                    }
                                    other => self.err(
                                        "croo::wrong-type",
                                        e.span(),
                                        format!("an accepted value must be a string or a number, found {}", type_name(other)),
                                    ),
                                }
                            }
                            Some(values)
                        }
                        Some((other, span)) => {
                            self.err(
                                "croo::wrong-type",
                                span,
                                format!("`values` must be an array, found {}", type_name(other)),
                            );
                            None
                        }
                        None => {
                            self.missing(&keys, "values");
                            None
                        }
                    };
                    column
                        .zip(values)
                        .map(|(c, v)| CheckKind::AcceptedValues(c, v))
                }
                _ => match self.num(&keys, "min_rows_per_period") {
                    Some((n, span)) if !(n >= 0.0 && n.fract() == 0.0 && n < 1e15) => {
                        self.err(
                            "croo::invalid-value",
                            span,
                            "`min_rows_per_period` must be a whole number of rows",
                        );
                        None
                    }
                    Some((n, _)) => Some(CheckKind::MinRowsPerPeriod(n as u64)),
                    None => None,
                },
            };
            let Some(kind) = kind else { continue };
            if let (CheckKind::MinRowsPerPeriod(_), Policy::Drop) = (&kind, policy) {
                self.err(
                    "croo::invalid-check",
                    keys.get("policy").map_or(item.span(), |p| p.span()),
                    "`min_rows_per_period` cannot drop rows: its policy is `error` or `warn`",
                );
                continue;
            }
            if keys.get("values").is_some() && !matches!(kind, CheckKind::AcceptedValues(..)) {
                self.err(
                    "croo::invalid-check",
                    item.span(),
                    "`values` goes with `accepted_values`",
                );
            }
            out.push(SourceCheck {
                kind,
                policy,
                span: item.span(),
            });
        }
        out
    }

    fn dimensions(&mut self, root: &Table<'_>) -> Vec<Dimension> {
        let mut out = Vec::new();
        let Some(all) = self.subtable(root, "dimensions", "[dimensions]", &[]) else {
            return out;
        };
        for (k, v) in all.table.iter() {
            let name = self.name(k, "dimension");
            match v.get_ref() {
                DeValue::String(s) => out.push(Dimension {
                    name,
                    column: self.text_of(s, v.span()),
                    source: None,
                    as_of: AsOf::default(),
                }),
                DeValue::Table(_) => {
                    let Some(keys) = self.as_table(v, "a [dimensions.*] table", keys::DIMENSION)
                    else {
                        continue;
                    };
                    let source = self.string(&keys, "source", true);
                    let column = self.string(&keys, "column", true);
                    let as_of = self
                        .choice(&keys, "as_of", false, &AsOf::ALL)
                        .unwrap_or_default();
                    match (source, column) {
                        (Some(source), Some(column)) => out.push(Dimension {
                            name,
                            column,
                            source: Some(source),
                            as_of,
                        }),
                        _ => self.broken.push(name.value),
                    }
                }
                other => {
                    self.err(
                        "croo::wrong-type",
                        v.span(),
                        format!(
                            "dimension `{}` must name a column (a string) or a history source (a table), found {}",
                            name.value,
                            type_name(other)
                        ),
                    );
                    self.broken.push(name.value);
                }
            }
        }
        out
    }

    fn measures(&mut self, root: &Table<'_>) -> Vec<Measure> {
        let mut out = Vec::new();
        let Some(all) = self.subtable(root, "measures", "[measures]", &[]) else {
            return out;
        };
        for (k, v) in all.table.iter() {
            let name = self.name(k, "measure");
            let Some(keys) = self.as_table(v, "a [measures.*] table", keys::MEASURE) else {
                self.broken.push(name.value);
                continue;
            };
            let source = self.string(&keys, "source", true);
            let perspective = self.choice(&keys, "perspective", false, &Perspective::ALL);
            let expr = self.string(&keys, "expr", true);
            let filter = self.string(&keys, "filter", false);
            let default_at = self.num(&keys, "default");
            let default = default_at.as_ref().map(|(n, _)| *n);
            let default_span = default_at.map(|(_, span)| span);
            let unit = self.string(&keys, "unit", false).map(|t| t.value);
            let description = self.string(&keys, "description", false).map(|t| t.value);
            let winsorise = self.winsorise(&keys);
            if source.is_none() || expr.is_none() {
                self.broken.push(name.value.clone());
            }
            if let (Some(source), Some(expr)) = (source, expr) {
                out.push(Measure {
                    winsorise,
                    name,
                    source,
                    perspective,
                    expr,
                    filter,
                    default,
                    default_span,
                    unit,
                    description,
                });
            }
        }
        out
    }

    fn derived(&mut self, root: &Table<'_>) -> Vec<Derived> {
        let mut out = Vec::new();
        let Some(all) = self.subtable(root, "derived", "[derived]", &[]) else {
            return out;
        };
        for (k, v) in all.table.iter() {
            let name = self.name(k, "derived value");
            if let Some(expr) = self.number_as_expression(v.get_ref(), v.span()) {
                out.push(Derived { name, expr });
                continue;
            }
            match v.get_ref() {
                DeValue::String(s) => out.push(Derived {
                    name,
                    expr: self.text_of(s, v.span()),
                }),
                other => {
                    self.err(
                        "croo::wrong-type",
                        v.span(),
                        format!(
                            "derived value `{}` must be a formula string, found {}",
                            name.value,
                            type_name(other)
                        ),
                    );
                    self.broken.push(name.value);
                }
            }
        }
        out
    }

    fn score(&mut self, root: &Table<'_>, span: &Range<usize>) -> (Vec<Component>, Option<Text>) {
        let mut out = Vec::new();
        let Some(score) = self.subtable(root, "score", "[score]", keys::SCORE) else {
            self.diags.push(
                Diagnostic::error(
                    "croo::no-components",
                    span.start..span.start,
                    "the formula has no `[score.components.*]`",
                )
                .with_help("add at least one component, e.g. [score.components.value] with `weight` and `expr`"),
            );
            return (out, None);
        };
        let expr = self.expression(&score, "expr", false);
        let comps = self.subtable(score.table, "components", "[score.components]", &[]);
        if let Some(all) = &comps {
            for (k, v) in all.table.iter() {
                let name = self.name(k, "component");
                let Some(keys) = self.as_table(v, "a [score.components.*] table", keys::COMPONENT)
                else {
                    self.broken.push(name.value);
                    continue;
                };
                let weight = match keys.get("weight") {
                    Some(w) => match number(w.get_ref()) {
                        Some(n) if n.is_finite() => Some((n, w.span())),
                        Some(_) => {
                            self.err(
                                "croo::invalid-weight",
                                w.span(),
                                format!(
                                    "the weight of component `{}` is not a finite number",
                                    name.value
                                ),
                            );
                            None
                        }
                        None => {
                            self.err(
                                "croo::invalid-weight",
                                w.span(),
                                format!(
                                    "the weight of component `{}` must be a number, found {}",
                                    name.value,
                                    type_name(w.get_ref())
                                ),
                            );
                            None
                        }
                    },
                    None => {
                        self.missing(&keys, "weight");
                        None
                    }
                };
                let expr = self.expression(&keys, "expr", true);
                let description = self.string(&keys, "description", false).map(|t| t.value);
                let impute = self.impute(&keys);
                let alternatives = self.component_alternatives(&keys);
                if weight.is_none() || expr.is_none() {
                    self.broken.push(name.value.clone());
                }
                if let (Some((weight, weight_span)), Some(expr)) = (weight, expr) {
                    out.push(Component {
                        name,
                        weight,
                        weight_span,
                        expr,
                        description,
                        impute,
                        alternatives,
                    });
                }
            }
        }
        if comps.as_ref().is_none_or(|c| c.table.is_empty()) {
            self.diags.push(
                Diagnostic::error(
                    "croo::no-components",
                    score.span.start..score.span.start,
                    "the formula has no `[score.components.*]`",
                )
                .with_help("add at least one component with `weight` and `expr`"),
            );
        }
        (out, expr)
    }

    /// A measure's `winsorise = { lower = 0.01, upper = 0.99 }`: two
    /// quantiles, `0 <= lower < upper <= 1`.
    fn winsorise(&mut self, keys: &Keys<'_, '_>) -> Option<Winsorise> {
        let t = self.subtable(
            keys.table,
            "winsorise",
            "`winsorise`",
            &["lower", "upper", "coinr"],
        )?;
        let span = keys.get("winsorise").map(|v| v.span()).unwrap_or(0..0);
        if let Some((n, nspan)) = self.num(&t, "coinr") {
            if t.get("lower").is_some() || t.get("upper").is_some() {
                self.err(
                    "croo::invalid-value",
                    span,
                    "`winsorise`: `coinr` or quantiles (`lower`, `upper`), not both",
                );
                return None;
            }
            if n.fract() != 0.0 || !(1.0..=1000.0).contains(&n) {
                self.err(
                    "croo::invalid-value",
                    nspan,
                    "`coinr` is the most points to winsorise: a whole number from 1 to 1000",
                );
                return None;
            }
            return Some(Winsorise::Coinr(n as u32));
        }
        let lower = self.num(&t, "lower").map(|x| x.0).unwrap_or(0.0);
        let upper = self.num(&t, "upper").map(|x| x.0).unwrap_or(1.0);
        if !(0.0..=1.0).contains(&lower) || !(0.0..=1.0).contains(&upper) || lower >= upper {
            self.err(
                "croo::invalid-value",
                span,
                format!("`winsorise`: lower ({lower}) and upper ({upper}) are quantiles with 0 <= lower < upper <= 1"),
            );
            return None;
        }
        Some(Winsorise::Quantiles(lower, upper))
    }

    /// A component's `impute`: `"zero"`, `"mean"`, `"median"` or
    /// `{ group_median = "DIMENSION" }`.
    fn impute(&mut self, keys: &Keys<'_, '_>) -> Option<Impute> {
        self.impute_value(keys.get("impute")?, "impute").flatten()
    }

    /// One imputation: `Some(None)` for `"none"`, `None` (reported) when
    /// it is not one.
    fn impute_value(&mut self, v: &Spanned<DeValue<'_>>, what: &str) -> Option<Option<Impute>> {
        match v.get_ref() {
            DeValue::String(s) => match s.as_ref() {
                "zero" => Some(Some(Impute::Zero)),
                "mean" => Some(Some(Impute::Mean)),
                "median" => Some(Some(Impute::Median)),
                "none" => Some(None),
                other => {
                    self.err(
                        "croo::invalid-value",
                        v.span(),
                        format!("`{what} = \"{other}\"`: expected \"none\", \"zero\", \"mean\", \"median\" or {{ group_median = \"DIMENSION\" }}"),
                    );
                    None
                }
            },
            DeValue::Table(_) => {
                let t = self.as_table(v, "`impute`", &["group_median"])?;
                let d = self.string(&t, "group_median", true)?;
                Some(Some(Impute::GroupMedian(d)))
            }
            other => {
                self.err(
                    "croo::wrong-type",
                    v.span(),
                    format!(
                        "`{what}` must be a string or a table, found {}",
                        type_name(other)
                    ),
                );
                None
            }
        }
    }

    /// The items of the array `keys[key]`, each read by `item` (reported
    /// and left out when it reads nothing); repeats are left out.
    fn alternatives_list<T: PartialEq>(
        &mut self,
        keys: &Keys<'_, '_>,
        key: &str,
        mut item: impl FnMut(&mut Self, &Spanned<DeValue<'_>>) -> Option<T>,
    ) -> Vec<T> {
        let mut out = Vec::new();
        let Some(v) = keys.get(key) else {
            return out;
        };
        let DeValue::Array(items) = v.get_ref() else {
            self.err(
                "croo::wrong-type",
                v.span(),
                format!(
                    "`alternatives.{key}` must be an array, found {}",
                    type_name(v.get_ref())
                ),
            );
            return out;
        };
        for e in items.iter() {
            if let Some(x) = item(self, e)
                && !out.contains(&x)
            {
                out.push(x);
            }
        }
        out
    }

    /// One string of `options` at `v`.
    fn option_value<T: Copy>(
        &mut self,
        v: &Spanned<DeValue<'_>>,
        what: &str,
        options: &[(&'static str, T)],
    ) -> Option<T> {
        let names: Vec<&str> = options.iter().map(|(s, _)| *s).collect();
        let DeValue::String(s) = v.get_ref() else {
            self.err(
                "croo::wrong-type",
                v.span(),
                format!(
                    "{what} must be one of {}, found {}",
                    names.join(", "),
                    type_name(v.get_ref())
                ),
            );
            return None;
        };
        match options.iter().find(|(n, _)| *n == s.as_ref()) {
            Some((_, x)) => Some(*x),
            None => {
                let mut d = Diagnostic::error(
                    "croo::invalid-value",
                    v.span(),
                    format!("`{}` is not a valid {what}", s.as_ref()),
                )
                .with_label(format!("expected one of {}", names.join(", ")));
                if let Some(n) = nearest(s.as_ref(), names.iter().copied()) {
                    d = d.with_help(format!("did you mean `{n}`?"));
                }
                self.diags.push(d);
                None
            }
        }
    }

    /// A component's `alternatives = { normalise = [..], impute = [..] }`.
    fn component_alternatives(&mut self, keys: &Keys<'_, '_>) -> ComponentAlternatives {
        let span = keys.get("alternatives").map(|v| v.span());
        let Some(t) = self.subtable(
            keys.table,
            "alternatives",
            "a component's `alternatives`",
            keys::COMPONENT_ALTERNATIVES,
        ) else {
            return ComponentAlternatives::default();
        };
        let normalise = self.alternatives_list(&t, "normalise", |p, v| {
            p.option_value(v, "normalisation", &Normalise::ALL)
        });
        let impute = self.alternatives_list(&t, "impute", |p, v| {
            p.impute_value(v, "alternatives.impute")
        });
        ComponentAlternatives {
            normalise,
            impute,
            span,
        }
    }

    /// `[score] alternatives = { method = [..], winsorise = [false] }`.
    fn score_alternatives(&mut self, root: &Table<'_>) -> ScoreAlternatives {
        let Some(DeValue::Table(score)) = root.get("score").map(|v| v.get_ref()) else {
            return ScoreAlternatives::default();
        };
        let span = score.get("alternatives").map(|v| v.span());
        let Some(t) = self.subtable(
            score,
            "alternatives",
            "`[score] alternatives`",
            keys::SCORE_ALTERNATIVES,
        ) else {
            return ScoreAlternatives::default();
        };
        let method = self.alternatives_list(&t, "method", |p, v| {
            p.option_value(v, "method", &Method::ALL)
        });
        let states = self.alternatives_list(&t, "winsorise", |p, v| match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            other => {
                p.err(
                    "croo::wrong-type",
                    v.span(),
                    format!(
                        "`alternatives.winsorise` lists booleans (`[false]`: also without the measures' `winsorise`), found {}",
                        type_name(other)
                    ),
                );
                None
            }
        });
        ScoreAlternatives {
            method,
            unwinsorised: states.contains(&false),
            span,
        }
    }

    /// `[score] min_coverage`: a share in (0, 1], not with `expr`.
    fn min_coverage(&mut self, root: &Table<'_>, has_expr: bool) -> Option<f64> {
        let Some(DeValue::Table(t)) = root.get("score").map(|v| v.get_ref()) else {
            return None;
        };
        let keys = Keys {
            table: t,
            span: 0..0,
            what: "[score]",
            allowed: &[],
        };
        let (n, span) = self.num(&keys, "min_coverage")?;
        if !(n > 0.0 && n <= 1.0) {
            self.err(
                "croo::invalid-value",
                span,
                "`min_coverage` is a share of the components' weight: above 0, at most 1",
            );
            return None;
        }
        if has_expr {
            self.err("croo::invalid-key", span, "`min_coverage` re-weights the components by their weights; `[score] expr` is a combination of its own");
            return None;
        }
        Some(n)
    }

    /// `[score] method` and `shift` (a combination of the weights, not
    /// with `expr`, which is its own).
    fn method(&mut self, root: &Table<'_>, has_expr: bool) -> (Method, f64) {
        let Some(DeValue::Table(t)) = root.get("score").map(|v| v.get_ref()) else {
            return (Method::Arithmetic, 0.0);
        };
        let keys = Keys {
            table: t,
            span: 0..0,
            what: "[score]",
            allowed: &[],
        };
        let method = self
            .choice(&keys, "method", false, &Method::ALL)
            .unwrap_or_default();
        if has_expr
            && method != Method::Arithmetic
            && let Some(v) = keys.get("method")
        {
            self.err(
                "croo::invalid-key",
                v.span(),
                "`method` combines the components by their weights; `[score] expr` is a combination of its own: keep one",
            );
        }
        let shift = match self.num(&keys, "shift") {
            Some((n, _)) if n.is_finite() => n,
            Some((_, span)) => {
                self.err(
                    "croo::invalid-value",
                    span,
                    "`shift` must be a finite number",
                );
                0.0
            }
            None => 0.0,
        };
        if method == Method::Arithmetic
            && let Some(v) = keys.get("shift")
        {
            self.err(
                "croo::invalid-key",
                v.span(),
                "`shift` belongs to `method = \"geometric\"` or `\"harmonic\"`",
            );
        }
        (method, shift)
    }

    fn tests(&mut self, root: &Table<'_>) -> Vec<TestCase> {
        let mut out = Vec::new();
        let Some(v) = root.get("tests") else {
            return out;
        };
        let DeValue::Array(items) = v.get_ref() else {
            self.err(
                "croo::wrong-type",
                v.span(),
                "`tests` must be an array of tables ([[tests]])",
            );
            return out;
        };
        for item in items.iter() {
            let Some(keys) = self.as_table(item, "a [[tests]] table", keys::TEST) else {
                continue;
            };
            let name = self
                .string(&keys, "name", true)
                .map(|t| t.value)
                .unwrap_or_default();
            let mut periods = Vec::new();
            match keys.get("periods") {
                Some(p) => match p.get_ref() {
                    DeValue::Array(a) => {
                        for e in a.iter() {
                            match e.get_ref() {
                                DeValue::String(s) => periods.push(self.text_of(s, e.span())),
                                DeValue::Datetime(d) => periods.push(Text {
                                    value: d.to_string(),
                                    span: e.span(),
                                    inner: e.span().start,
                                }),
                                other => self.err(
                                    "croo::wrong-type",
                                    e.span(),
                                    format!(
                                        "a test period must be a date, found {}",
                                        type_name(other)
                                    ),
                                ),
                            }
                        }
                    }
                    other => self.err(
                        "croo::wrong-type",
                        p.span(),
                        format!(
                            "`periods` must be an array of dates, found {}",
                            type_name(other)
                        ),
                    ),
                },
                None => self.missing(&keys, "periods"),
            }
            let mut data = Vec::new();
            if let Some(d) = self.subtable(keys.table, "data", "[tests.data]", &[]) {
                for (k, v) in d.table.iter() {
                    let source = Name {
                        value: k.get_ref().to_string(),
                        span: k.span(),
                    };
                    let Some(t) = self.as_table(v, "a [tests.data.*] table", &["rows"]) else {
                        continue;
                    };
                    let rows = self.rows(&t);
                    data.push(TestData { source, rows });
                }
            }
            let mut expect = Vec::new();
            let mut tolerance = None;
            match self.subtable(keys.table, "expect", "[tests.expect]", &[]) {
                Some(e) => {
                    for (k, v) in e.table.iter() {
                        let n = match v.get_ref() {
                            DeValue::String(t)
                                if t.eq_ignore_ascii_case("null") && k.get_ref() != "tolerance" =>
                            {
                                None
                            }
                            other => match number(other) {
                                Some(n) => Some(n),
                                None => {
                                    self.err(
                                        "croo::wrong-type",
                                        v.span(),
                                        format!(
                                            "expected value `{}` must be a number or \"null\", found {}",
                                            k.get_ref(),
                                            type_name(other)
                                        ),
                                    );
                                    continue;
                                }
                            },
                        };
                        if k.get_ref() == "tolerance" {
                            tolerance = n;
                        } else {
                            expect.push(TestExpect {
                                key: Name {
                                    value: k.get_ref().to_string(),
                                    span: k.span(),
                                },
                                value: n,
                            });
                        }
                    }
                }
                None => self.missing(&keys, "expect"),
            }
            out.push(TestCase {
                name,
                span: item.span(),
                periods,
                data,
                expect,
                tolerance,
            });
        }
        out
    }

    fn rows(&mut self, t: &Keys<'_, '_>) -> Vec<Vec<(String, TestValue)>> {
        let mut rows = Vec::new();
        let Some(v) = t.get("rows") else {
            self.missing(t, "rows");
            return rows;
        };
        let DeValue::Array(items) = v.get_ref() else {
            self.err(
                "croo::wrong-type",
                v.span(),
                "`rows` must be an array of inline tables",
            );
            return rows;
        };
        for item in items.iter() {
            let DeValue::Table(row) = item.get_ref() else {
                self.err(
                    "croo::wrong-type",
                    item.span(),
                    "a test row must be an inline table",
                );
                continue;
            };
            let mut out = Vec::new();
            for (k, v) in row.iter() {
                let value = match v.get_ref() {
                    DeValue::String(s) => TestValue::Str(s.to_string()),
                    DeValue::Integer(_) => match number(v.get_ref()) {
                        Some(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => TestValue::Int(n as i64),
                        Some(n) => TestValue::Float(n),
                        None => continue,
                    },
                    DeValue::Float(_) => TestValue::Float(number(v.get_ref()).unwrap_or(f64::NAN)),
                    DeValue::Boolean(b) => TestValue::Bool(*b),
                    DeValue::Datetime(d) => TestValue::Datetime(d.to_string()),
                    other => {
                        self.err(
                            "croo::wrong-type",
                            v.span(),
                            format!("a test cell must be a scalar, found {}", type_name(other)),
                        );
                        continue;
                    }
                };
                out.push((k.get_ref().to_string(), value));
            }
            rows.push(out);
        }
        rows
    }
}
