//! The formula file as data: what `syntax` reads and `check` validates.

use std::ops::Range;

/// Text taken from the formula file, with the byte range of its literal.
#[derive(Debug, Clone, PartialEq)]
pub struct Text {
    pub value: String,
    /// Span of the whole TOML value (quotes included).
    pub span: Range<usize>,
    /// Offset of the first character of `value` inside the file.
    pub inner: usize,
}

impl Text {
    /// File span of `range`, a byte range inside `value`.
    pub fn sub_span(&self, range: Range<usize>) -> Range<usize> {
        let end = (self.inner + range.end).min(self.span.end);
        let start = (self.inner + range.start).min(end);
        start..end
    }
}

/// A name declared in a table key (`[measures.NAME]`, `NAME = "..."`).
#[derive(Debug, Clone, PartialEq)]
pub struct Name {
    pub value: String,
    pub span: Range<usize>,
}

pub use kernels::period::Grain;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Parquet,
    Csv,
    Ndjson,
    Postgres,
}

impl Format {
    pub const ALL: [(&'static str, Format); 4] = [
        ("parquet", Format::Parquet),
        ("csv", Format::Csv),
        ("ndjson", Format::Ndjson),
        ("postgres", Format::Postgres),
    ];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Perspective {
    Internal,
    Financial,
    Innovation,
    Customer,
}

impl Perspective {
    pub const ALL: [(&'static str, Perspective); 4] = [
        ("internal", Perspective::Internal),
        ("financial", Perspective::Financial),
        ("innovation", Perspective::Innovation),
        ("customer", Perspective::Customer),
    ];

    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, p)| *p == self)
            .map(|(s, _)| *s)
            .unwrap_or("internal")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub name: Name,
    pub entity: bool,
    /// `role = "history"`: rows valid in `[valid_from, valid_to)` that
    /// history dimensions read (the shape dbt snapshots write).
    pub history: bool,
    pub valid_from: Option<Text>,
    pub valid_to: Option<Text>,
    pub uri: Text,
    pub format: Option<Format>,
    pub key: Text,
    pub time: Option<Text>,
    pub active_from: Option<Text>,
    pub active_to: Option<Text>,
    /// Declared data checks (`checks = [...]`), in file order.
    pub checks: Vec<SourceCheck>,
    /// What a period in which this (event) source has no rows gets.
    pub empty_periods: EmptyPeriods,
    /// How to read particular columns (`[sources.NAME.columns.COLUMN]`).
    pub columns: Vec<ColumnRead>,
    /// CSV field delimiter and quote (one ASCII character each).
    pub delimiter: Option<(u8, Range<usize>)>,
    pub quote: Option<(u8, Range<usize>)>,
    /// How late an event source's data may be (`freshness = { warn_after
    /// = "6h", error_after = "2d" }`).
    pub freshness: Option<Freshness>,
    /// A column holding when each row was loaded (`loaded_at`): freshness
    /// is measured by it rather than by the event time.
    pub loaded_at: Option<Text>,
}

/// How long after a period's end an event source may still lack data up
/// to that end: past `warn_after` a run warns, past `error_after` the
/// period is not complete (`--last-complete` passes it over).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Freshness {
    pub warn_after: Option<Seconds>,
    pub error_after: Option<Seconds>,
}

/// A span of time in whole seconds, written `"5d"`, `"6h"`, `"90m"`,
/// `"30s"`, `"1w"` or a sum of those (`"1d12h"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Seconds(pub i64);

impl Seconds {
    /// Parses `"5d"`, `"1d12h"`, `"0"`; `None` for anything else.
    pub fn parse(s: &str) -> Option<Seconds> {
        let s = s.trim();
        if s == "0" {
            return Some(Seconds(0));
        }
        let mut total: i64 = 0;
        let mut digits = String::new();
        let mut any = false;
        for c in s.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let unit: i64 = match c {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                'w' => 7 * 86_400,
                _ => return None,
            };
            let n: i64 = digits.parse().ok()?;
            digits.clear();
            total = total.checked_add(n.checked_mul(unit)?)?;
            any = true;
        }
        // At most 100 years: a larger span is a typo, not a setting.
        (any && digits.is_empty() && total <= 100 * 366 * 86_400).then_some(Seconds(total))
    }
}

impl std::fmt::Display for Seconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut rest = self.0;
        if rest == 0 {
            return write!(f, "0s");
        }
        for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
            if rest >= size {
                write!(f, "{}{unit}", rest / size)?;
                rest %= size;
            }
        }
        Ok(())
    }
}

/// `[operations]`: how a formula's periods are published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Operations {
    /// How long after its end a period stays provisional (`settle =
    /// "5d"`); a run after that publishes it final.
    pub settle: Seconds,
}

/// `[calendar]`: the business's own calendar (docs/formula-reference.md,
/// "Calendars"). Absent: calendar months, quarters and years, ISO weeks,
/// in UTC.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CalendarSpec {
    pub kind: CalendarKind,
    /// How a fiscal year is named: after the calendar year it ends in, or
    /// the one it starts in.
    pub year_label: YearLabel,
    /// An IANA time zone: periods begin at local midnight there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
}

/// The kind of a `[calendar]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum CalendarKind {
    /// Calendar months; quarters and years start in `fiscal_year_start`
    /// (1 = January).
    Gregorian { fiscal_year_start: u32 },
    /// A 52/53-week retail calendar: the year ends on the `weekday`
    /// (0 = Monday .. 6 = Sunday) nearest the end of, or last in,
    /// `year_end_month`; quarters of 13 weeks split into months of
    /// `pattern` weeks, the 53rd week added to the year's last month.
    Retail {
        pattern: [u8; 3],
        year_end_month: u32,
        year_end_weekday: u32,
        year_end: YearEnd,
    },
}

/// How the components combine into a customer's score (`[score] method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// `sum(w c) / sum(w)`: components compensate each other.
    #[default]
    Arithmetic,
    /// `exp(sum(w ln(c + shift)) / sum(w)) - shift`: a low component is
    /// compensated less.
    Geometric,
    /// `sum(w) / sum(w / (c + shift)) - shift`: less still.
    Harmonic,
}

impl Method {
    pub const ALL: [(&'static str, Method); 3] = [
        ("arithmetic", Method::Arithmetic),
        ("geometric", Method::Geometric),
        ("harmonic", Method::Harmonic),
    ];
}

/// `year_label`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum YearLabel {
    End,
    Start,
}

/// `year_end` of a retail calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum YearEnd {
    /// The weekday nearest the last day of the month (up to three days
    /// into the next month).
    Nearest,
    /// The last such weekday in the month.
    Last,
}

/// How to read one column of a source.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnRead {
    pub column: Name,
    /// `type = "text"`: the type to read the column as, whatever the file
    /// or inference says.
    pub ty: Option<ColumnType>,
    /// `format = "%d/%m/%Y"`: a time column's text, read with this chrono
    /// format (a date-only format is midnight UTC).
    pub format: Option<Text>,
    /// `unit = "s"`: a time column of numbers since the Unix epoch.
    pub unit: Option<EpochUnit>,
}

/// A type a column can be read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Text,
    Integer,
    Float,
    Boolean,
}

impl ColumnType {
    pub const ALL: [(&'static str, ColumnType); 4] = [
        ("text", ColumnType::Text),
        ("integer", ColumnType::Integer),
        ("float", ColumnType::Float),
        ("boolean", ColumnType::Boolean),
    ];
}

/// The unit of epoch numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochUnit {
    Seconds,
    Millis,
    Micros,
    Nanos,
}

impl EpochUnit {
    pub const ALL: [(&'static str, EpochUnit); 4] = [
        ("s", EpochUnit::Seconds),
        ("ms", EpochUnit::Millis),
        ("us", EpochUnit::Micros),
        ("ns", EpochUnit::Nanos),
    ];
}

/// What a declared check of a source's rows tests.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckKind {
    /// No two rows share the column's value (NULLs aside).
    Unique(Text),
    /// No row has NULL in the column.
    NotNull(Text),
    /// Every non-NULL value of the column is one of these.
    AcceptedValues(Text, Vec<String>),
    /// Every non-NULL value of the (numeric) column is finite: no NaN, no
    /// infinity.
    Finite(Text),
    /// At least this many rows in every period of the run (event sources).
    MinRowsPerPeriod(u64),
}

impl CheckKind {
    /// `unique(customer_id)`, as reports name the check.
    pub fn describe(&self) -> String {
        match self {
            CheckKind::Unique(c) => format!("unique({})", c.value),
            CheckKind::NotNull(c) => format!("not_null({})", c.value),
            CheckKind::AcceptedValues(c, v) => {
                format!("accepted_values({}: {})", c.value, v.join(", "))
            }
            CheckKind::Finite(c) => format!("finite({})", c.value),
            CheckKind::MinRowsPerPeriod(n) => format!("min_rows_per_period({n})"),
        }
    }

    /// The column the check reads, if one.
    pub fn column(&self) -> Option<&Text> {
        match self {
            CheckKind::Unique(c)
            | CheckKind::NotNull(c)
            | CheckKind::AcceptedValues(c, _)
            | CheckKind::Finite(c) => Some(c),
            CheckKind::MinRowsPerPeriod(_) => None,
        }
    }
}

/// What a failed check does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// The run stops (exit code 1), naming the first offending values.
    Error,
    /// The run goes on; the manifest and the log say what failed.
    Warn,
    /// The offending rows are left out; the manifest and the log count them.
    Drop,
}

impl Policy {
    pub const ALL: [(&'static str, Policy); 3] = [
        ("error", Policy::Error),
        ("warn", Policy::Warn),
        ("drop", Policy::Drop),
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Error => "error",
            Policy::Warn => "warn",
            Policy::Drop => "drop",
        }
    }
}

/// One declared check of a source.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceCheck {
    pub kind: CheckKind,
    pub policy: Policy,
    /// The check's table in the file.
    pub span: Range<usize>,
}

/// What a period in which an event source has no rows at all gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EmptyPeriods {
    /// The run stops (exit code 1): most likely the data has not arrived.
    #[default]
    Error,
    /// The period is published, marked incomplete (`complete: false`).
    Incomplete,
    /// No rows is normal for this source (a rare kind of event).
    Allow,
}

impl EmptyPeriods {
    pub const ALL: [(&'static str, EmptyPeriods); 3] = [
        ("error", EmptyPeriods::Error),
        ("incomplete", EmptyPeriods::Incomplete),
        ("allow", EmptyPeriods::Allow),
    ];
}

#[derive(Debug, Clone, PartialEq)]
pub struct Dimension {
    pub name: Name,
    pub column: Text,
    /// A history source the value comes from, as of each period
    /// (`[dimensions.NAME] source = "..."`); `None`: the entity's column.
    pub source: Option<Text>,
    /// Which instant of a period a history dimension takes its value at.
    pub as_of: AsOf,
}

/// The instant of a period at which a history dimension is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AsOf {
    /// The period's first instant.
    PeriodStart,
    /// The period's last instant: the membership a period-end report shows.
    #[default]
    PeriodEnd,
}

impl AsOf {
    pub const ALL: [(&'static str, AsOf); 2] = [
        ("period_start", AsOf::PeriodStart),
        ("period_end", AsOf::PeriodEnd),
    ];
}

#[derive(Debug, Clone, PartialEq)]
pub struct Measure {
    pub name: Name,
    pub source: Text,
    pub perspective: Option<Perspective>,
    pub expr: Text,
    pub filter: Option<Text>,
    pub default: Option<f64>,
    /// Where `default` is written (for diagnostics).
    pub default_span: Option<std::ops::Range<usize>>,
    pub unit: Option<String>,
    pub description: Option<String>,
    /// `winsorise`: how the measure's outliers are treated, each period.
    pub winsorise: Option<Winsorise>,
}

/// A measure's `winsorise`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Winsorise {
    /// `{ lower, upper }`: clamped to these quantiles of the period's
    /// population.
    Quantiles(f64, f64),
    /// `{ coinr = N }`: COINr's rule: while |skewness| > 2 and kurtosis >
    /// 3.5, the most extreme point is set to the next one, up to N points;
    /// still outlying after N: a log transform instead.
    Coinr(u32),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Derived {
    pub name: Name,
    pub expr: Text,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Component {
    pub name: Name,
    pub weight: f64,
    pub weight_span: Range<usize>,
    pub expr: Text,
    pub description: Option<String>,
    /// `impute`: what a customer without a value gets.
    pub impute: Option<Impute>,
    /// `alternatives`: what `croo explain --uncertainty` may draw instead.
    pub alternatives: ComponentAlternatives,
}

/// A component's `alternatives = { normalise = [..], impute = [..] }`: the
/// choices an uncertainty analysis draws besides the component's own.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ComponentAlternatives {
    /// Population functions that may replace the one the expression calls.
    pub normalise: Vec<Normalise>,
    /// Imputations that may replace `impute` (`None`: "none").
    pub impute: Vec<Option<Impute>>,
    /// Where `alternatives` is written.
    pub span: Option<Range<usize>>,
}

/// The population functions that normalise: what a component's
/// `alternatives.normalise` may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Normalise {
    MinMax,
    ZScore,
    PctRank,
}

impl Normalise {
    pub const ALL: [(&'static str, Normalise); 3] = [
        ("minmax", Normalise::MinMax),
        ("zscore", Normalise::ZScore),
        ("pct_rank", Normalise::PctRank),
    ];

    pub fn name(self) -> &'static str {
        match self {
            Normalise::MinMax => "minmax",
            Normalise::ZScore => "zscore",
            Normalise::PctRank => "pct_rank",
        }
    }

    pub fn func(self) -> crate::expr::Func {
        match self {
            Normalise::MinMax => crate::expr::Func::MinMax,
            Normalise::ZScore => crate::expr::Func::ZScore,
            Normalise::PctRank => crate::expr::Func::PctRank,
        }
    }

    pub fn of(f: crate::expr::Func) -> Option<Normalise> {
        Normalise::ALL
            .iter()
            .map(|(_, n)| *n)
            .find(|n| n.func() == f)
    }
}

/// `[score] alternatives = { method = [..], winsorise = [false] }`: the
/// aggregation methods and winsorisation states an uncertainty analysis
/// draws besides the formula's own.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScoreAlternatives {
    pub method: Vec<Method>,
    /// `winsorise = [false]`: also scored without any measure's
    /// `winsorise`.
    pub unwinsorised: bool,
    /// Where `alternatives` is written.
    pub span: Option<Range<usize>>,
}

/// How a missing component is imputed, from the period's population.
#[derive(Debug, Clone, PartialEq)]
pub enum Impute {
    Zero,
    Mean,
    Median,
    /// The median of the customer's group of this dimension.
    GroupMedian(Text),
}

/// A value of an inline test row.
#[derive(Debug, Clone, PartialEq)]
pub enum TestValue {
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    /// A TOML datetime, kept as its RFC 3339 text.
    Datetime(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct TestData {
    pub source: Name,
    pub rows: Vec<Vec<(String, TestValue)>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TestExpect {
    /// `[dimension=value] [what]` (see [`ExpectKey::parse`]).
    pub key: Name,
    /// The expected number; `None` expects NULL (`"null"` in the file).
    pub value: Option<f64>,
}

/// What an expectation of a test compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectWhat {
    Score,
    Population,
    Included,
    Excluded,
    /// A component's rollup (`value.rollup`).
    Rollup(String),
    /// A component's contribution (`value.contribution`).
    Contribution(String),
}

/// An expectation's key: an optional group, then what to compare
/// (`score` when left out): `score`, `"segment=smb"`,
/// `"value.rollup"`, `"segment=smb value.contribution"`, `excluded`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectKey {
    /// `(dimension, value)`; `None` is the whole population.
    pub group: Option<(String, String)>,
    pub what: ExpectWhat,
}

impl ExpectKey {
    /// Reads a key; the error says what is wrong in words.
    pub fn parse(key: &str) -> Result<ExpectKey, String> {
        let key = key.trim();
        let (group, what) = match key.split_once('=') {
            Some((d, rest)) => {
                let rest = rest.trim();
                let (v, what) = match rest.rsplit_once(char::is_whitespace) {
                    Some((v, w)) if !w.contains('=') => (v.trim(), w.trim()),
                    _ => (rest, "score"),
                };
                (Some((d.trim().to_string(), v.to_string())), what)
            }
            None => (None, key),
        };
        let what = match what {
            "score" => ExpectWhat::Score,
            "population" => ExpectWhat::Population,
            "included" => ExpectWhat::Included,
            "excluded" => ExpectWhat::Excluded,
            w => match w.rsplit_once('.') {
                Some((c, "rollup")) if !c.is_empty() => ExpectWhat::Rollup(c.to_string()),
                Some((c, "contribution")) if !c.is_empty() => {
                    ExpectWhat::Contribution(c.to_string())
                }
                _ => {
                    return Err(format!(
                        "`{w}` is not something a test can expect: use `score`, `population`, `included`, `excluded`, `<component>.rollup` or `<component>.contribution`, after an optional `dimension=value` group"
                    ));
                }
            },
        };
        Ok(ExpectKey { group, what })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TestCase {
    pub name: String,
    pub span: Range<usize>,
    pub periods: Vec<Text>,
    pub data: Vec<TestData>,
    pub expect: Vec<TestExpect>,
    pub tolerance: Option<f64>,
}

/// A formula file as written, before its expressions are checked.
#[derive(Debug, Clone, PartialEq)]
pub struct FormulaFile {
    pub name: Text,
    pub version: Text,
    pub description: Option<String>,
    pub owner: Option<String>,
    pub grain: Grain,
    pub scale: f64,
    pub sources: Vec<Source>,
    pub dimensions: Vec<Dimension>,
    pub measures: Vec<Measure>,
    pub derived: Vec<Derived>,
    pub components: Vec<Component>,
    pub score_expr: Option<Text>,
    /// `[score] method` and `shift`.
    pub method: Method,
    pub shift: f64,
    /// `[score] min_coverage`: the share of the components' weight a
    /// customer must have values for; the others are re-weighted.
    pub min_coverage: Option<f64>,
    /// `[score] alternatives`.
    pub alternatives: ScoreAlternatives,
    pub rollup_weight: Option<Text>,
    pub operations: Operations,
    /// `[calendar]`, when the file declares one.
    pub calendar: Option<CalendarSpec>,
    pub tests: Vec<TestCase>,
    /// Names declared in the file (measures, derived values, components,
    /// dimensions) whose definition has an error, already reported: other
    /// parts may name them without a knock-on "unknown" error.
    pub broken: Vec<String>,
}

impl Source {
    /// The columns of the source that hold instants: `time`,
    /// `active_from`, `active_to`, `loaded_at`, `valid_from`, `valid_to`.
    pub fn time_columns(&self) -> impl Iterator<Item = &Text> {
        [
            &self.time,
            &self.active_from,
            &self.active_to,
            &self.loaded_at,
            &self.valid_from,
            &self.valid_to,
        ]
        .into_iter()
        .flatten()
    }
}

impl FormulaFile {
    pub fn entity(&self) -> Option<&Source> {
        self.sources.iter().find(|s| s.entity)
    }

    pub fn source(&self, name: &str) -> Option<&Source> {
        self.sources.iter().find(|s| s.name.value == name)
    }
}
