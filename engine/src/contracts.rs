//! Data contracts at the source boundary: what a run checks of its inputs
//! before and after scoring, so that bad data stops the run (or is handled
//! as the formula declares, and counted) instead of becoming a number.
//!
//! Before scoring ([`enforce`]), each source's declared checks (`checks =
//! [...]`: `unique`, `not_null`, `accepted_values`, `finite`), and for the
//! entity source `unique` and `not_null` of its key (policy `error` unless
//! declared otherwise), over the source's rows (an event source's rows in
//! the run's time range). A failed check with policy `error` stops the run
//! naming the source and the first offending values; `warn` records it;
//! `drop` leaves the offending rows out (the source becomes a view that
//! filters them) and counts them.
//!
//! After scoring ([`after_scoring`]), from what the scoring already
//! computed: an event source with no rows in a period (`empty_periods`:
//! error, incomplete or allow; a `[[tests]]` source given inline rows
//! allows it), fewer rows than `min_rows_per_period`, rows
//! whose key matches no customer of their period (orphans: counted, a
//! warning above 10% of a source's rows), and NaN or infinite values
//! anywhere in the per-customer table (a measure reading NaN, a sum that
//! overflows, a formula that does): always an error, naming the column,
//! the source column it comes from when it is one, and a customer.

use std::collections::BTreeMap;
use std::ops::Not;

use chrono::NaiveDate;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Date32Type, Int64Type};
use datafusion::functions_aggregate::expr_fn::{count, sum};
use datafusion::logical_expr::{Expr, ExprFunctionExt, JoinType, col, ident, lit};
use datafusion::prelude::{DataFrame, SessionContext, cast};
use formulas::{CheckKind, EmptyPeriods, Policy, Source};
use serde::{Deserialize, Serialize};

use crate::columns::{KEY, PERIOD, table_name};
use crate::error::{Error, Result};
use crate::load::Loaded;
use crate::plan::rows_column;

/// How many offending values a message and the manifest show.
const EXAMPLES: usize = 5;

/// The share of a source's rows without a customer above which the run
/// warns.
pub const ORPHAN_WARNING_SHARE: f64 = 0.10;

/// The outcome of one check of one source, as the manifest records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub source: String,
    /// `unique(customer_id)`, `not_null(segment)`, ...
    pub check: String,
    /// `error`, `warn` or `drop`.
    pub policy: String,
    /// Whether it was declared in the formula (else implied: the entity
    /// key's checks).
    pub declared: bool,
    /// Offending rows (for `min_rows_per_period`: the periods below it).
    pub failing: u64,
    /// Up to five offending values (or periods), as text.
    pub examples: Vec<String>,
    /// `passed`, `warned` (failed, run went on) or `dropped` (the failing
    /// rows were left out).
    pub outcome: String,
}

/// The checks that apply to a source: the declared ones, and for the
/// entity source the implicit `unique` and `not_null` of its key.
fn checks_of(s: &Source) -> Vec<(CheckKind, Policy, bool)> {
    let mut out: Vec<(CheckKind, Policy, bool)> = s
        .checks
        .iter()
        .map(|c| (c.kind.clone(), c.policy, true))
        .collect();
    if s.entity {
        let declared = |pred: &dyn Fn(&CheckKind) -> bool| s.checks.iter().any(|c| pred(&c.kind));
        let key = &s.key;
        if !declared(&|k| matches!(k, CheckKind::Unique(c) if c.value == key.value)) {
            out.insert(0, (CheckKind::Unique(key.clone()), Policy::Error, false));
        }
        if !declared(&|k| matches!(k, CheckKind::NotNull(c) if c.value == key.value)) {
            out.insert(0, (CheckKind::NotNull(key.clone()), Policy::Error, false));
        }
    }
    out
}

/// A source's rows the run reads: an event source's in `[first period,
/// end of the last)`.
async fn rows_in_range(
    ctx: &SessionContext,
    s: &Source,
    periods: &[NaiveDate],
    file: &formulas::FormulaFile,
) -> Result<DataFrame> {
    let (cal, grain) = (crate::calendar::Calendar::of(file), file.grain);
    let name = &s.name.value;
    let df = ctx
        .table(table_name(name))
        .await
        .map_err(Error::engine(format!("reading source `{name}`")))?;
    let (Some(t), Some(first), Some(last)) = (&s.time, periods.first(), periods.last()) else {
        return Ok(df);
    };
    let ty = df
        .schema()
        .field_with_unqualified_name(&t.value)
        .map(|f| f.data_type().clone())
        .unwrap_or(DataType::Null);
    let Some(at) = crate::columns::as_instant(&t.value, &ty) else {
        return Ok(df);
    };
    df.filter(
        at.clone()
            .gt_eq(crate::plan::micros_lit(cal.micros(*first)))
            .and(at.lt(crate::plan::micros_lit(cal.micros(cal.next(grain, *last))))),
    )
    .map_err(Error::engine(format!("reading source `{name}`")))
}

/// The values of column `i` of `batches` as text (NULL as `NULL`).
fn texts(batches: &[RecordBatch], i: usize) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        let Ok(a) = datafusion::arrow::compute::cast(b.column(i), &DataType::Utf8) else {
            continue;
        };
        let a = a.as_string::<i32>();
        out.extend((0..a.len()).map(|r| {
            if a.is_null(r) {
                "NULL".to_string()
            } else {
                a.value(r).to_string()
            }
        }));
    }
    out
}

/// The first Int64 of `batches` (0 when none).
fn first_i64(batches: &[RecordBatch], i: usize) -> u64 {
    batches
        .iter()
        .filter(|b| b.num_rows() > 0)
        .filter_map(|b| {
            b.column(i)
                .as_primitive_opt::<Int64Type>()
                .map(|a| a.value(0))
        })
        .next()
        .unwrap_or(0)
        .max(0) as u64
}

async fn collect(df: DataFrame, what: &str) -> Result<Vec<RecordBatch>> {
    df.collect().await.map_err(Error::engine(what.to_string()))
}

/// How many rows of `rows` satisfy `cond`.
async fn count_where(rows: &DataFrame, cond: Expr, what: &str) -> Result<u64> {
    let n = count(lit(1))
        .filter(cond)
        .build()
        .map_err(Error::engine(what.to_string()))?
        .alias("n");
    let b = collect(
        rows.clone()
            .aggregate(vec![], vec![n])
            .map_err(Error::engine(what.to_string()))?,
        what,
    )
    .await?;
    Ok(first_i64(&b, 0))
}

/// Rows of `rows` that fail `kind`: (count, examples, predicate keeping the
/// rows that pass).
async fn evaluate(
    rows: DataFrame,
    s: &Source,
    kind: &CheckKind,
) -> Result<(u64, Vec<String>, Option<Expr>)> {
    let name = &s.name.value;
    let what = format!("checking source `{name}`");
    let e = |r: datafusion::error::Result<DataFrame>| r.map_err(Error::engine(what.clone()));
    Ok(match kind {
        CheckKind::Unique(c) => {
            let dups = e(rows
                .filter(ident(&c.value).is_not_null())
                .and_then(|d| d.aggregate(vec![ident(&c.value)], vec![count(lit(1)).alias("n")]))
                .and_then(|d| d.filter(col("n").gt(lit(1i64)))))?;
            let totals = collect(
                e(dups
                    .clone()
                    .aggregate(vec![], vec![count(lit(1)).alias("keys")]))?,
                &what,
            )
            .await?;
            let n = first_i64(&totals, 0);
            let examples = if n > 0 {
                let ex = e(dups
                    .sort(vec![ident(&c.value).sort(true, false)])
                    .and_then(|d| d.limit(0, Some(EXAMPLES))))?;
                let b = collect(ex, &what).await?;
                texts(&b, 0)
                    .into_iter()
                    .zip(texts(&b, 1))
                    .map(|(v, n)| format!("{v} ({n} rows)"))
                    .collect()
            } else {
                Vec::new()
            };
            (n, examples, None)
        }
        CheckKind::NotNull(c) => {
            let bad = ident(&c.value).is_null();
            let with_key = c.value != s.key.value;
            let n = count_where(&rows, bad.clone(), &what).await?;
            let examples = if n > 0 && with_key {
                let ex = e(rows
                    .filter(bad.clone())
                    .and_then(|d| d.select(vec![ident(&s.key.value)]))
                    .and_then(|d| d.limit(0, Some(EXAMPLES))))?;
                texts(&collect(ex, &what).await?, 0)
                    .into_iter()
                    .map(|k| format!("key {k}"))
                    .collect()
            } else {
                Vec::new()
            };
            (n, examples, Some(bad.not()))
        }
        CheckKind::AcceptedValues(c, values) => {
            let text = cast(ident(&c.value), DataType::Utf8);
            let accepted = text
                .clone()
                .in_list(values.iter().map(|v| lit(v.clone())).collect(), false);
            let bad = ident(&c.value).is_not_null().and(accepted.clone().not());
            let found = e(rows.filter(bad.clone()).and_then(|d| {
                d.aggregate(vec![text.alias("value")], vec![count(lit(1)).alias("n")])
            }))?;
            let b = collect(
                e(found
                    .clone()
                    .aggregate(vec![], vec![sum(col("n")).alias("rows")]))?,
                &what,
            )
            .await?;
            let n = first_i64(&b, 0);
            let examples = if n > 0 {
                let ex = e(found
                    .sort(vec![
                        col("n").sort(false, false),
                        col("value").sort(true, false),
                    ])
                    .and_then(|d| d.limit(0, Some(EXAMPLES))))?;
                let b = collect(ex, &what).await?;
                texts(&b, 0)
                    .into_iter()
                    .zip(texts(&b, 1))
                    .map(|(v, n)| format!("`{v}` ({n} rows)"))
                    .collect()
            } else {
                Vec::new()
            };
            (n, examples, Some(ident(&c.value).is_null().or(accepted)))
        }
        CheckKind::Finite(c) => {
            let x = cast(ident(&c.value), DataType::Float64);
            let finite =
                datafusion::functions::math::expr_fn::abs(x.clone()).lt(lit(f64::INFINITY));
            let bad = x.clone().is_not_null().and(finite.clone().not());
            let n = count_where(&rows, bad.clone(), &what).await?;
            let examples = if n > 0 {
                let ex = e(rows
                    .filter(bad.clone())
                    .and_then(|d| d.select(vec![ident(&s.key.value), ident(&c.value)]))
                    .and_then(|d| d.limit(0, Some(EXAMPLES))))?;
                let b = collect(ex, &what).await?;
                texts(&b, 1)
                    .into_iter()
                    .zip(texts(&b, 0))
                    .map(|(v, k)| format!("{v} (key {k})"))
                    .collect()
            } else {
                Vec::new()
            };
            (n, examples, Some(x.is_null().or(finite)))
        }
        CheckKind::MinRowsPerPeriod(_) => (0, Vec::new(), None),
    })
}

/// Replaces source `s`'s table by a view of the rows that pass: `keep`
/// (a predicate), or for `unique(c)` the rows whose `c` appears once.
async fn drop_rows(
    ctx: &SessionContext,
    s: &Source,
    kind: &CheckKind,
    keep: Option<Expr>,
) -> Result<()> {
    let name = &s.name.value;
    let table = table_name(name);
    let what = format!("leaving out rows of source `{name}`");
    let all = ctx
        .table(table.as_str())
        .await
        .map_err(Error::engine(what.clone()))?;
    let kept = match (kind, keep) {
        (CheckKind::Unique(c), _) => {
            let dups = all
                .clone()
                .filter(ident(&c.value).is_not_null())
                .and_then(|d| {
                    d.aggregate(
                        vec![ident(&c.value).alias("__dup")],
                        vec![count(lit(1)).alias("__n")],
                    )
                })
                .and_then(|d| d.filter(col("__n").gt(lit(1i64))))
                .and_then(|d| d.select(vec![col("__dup")]))
                .map_err(Error::engine(what.clone()))?;
            let columns: Vec<Expr> = all
                .schema()
                .columns()
                .into_iter()
                .map(Expr::Column)
                .collect();
            all.join(
                dups,
                JoinType::LeftAnti,
                &[c.value.as_str()],
                &["__dup"],
                None,
            )
            .and_then(|d| d.select(columns))
            .map_err(Error::engine(what.clone()))?
        }
        (_, Some(keep)) => all.filter(keep).map_err(Error::engine(what.clone()))?,
        (_, None) => return Ok(()),
    };
    let view = kept.into_view();
    ctx.deregister_table(table.as_str())
        .map_err(Error::engine(what.clone()))?;
    ctx.register_table(table.as_str(), view)
        .map_err(Error::engine(what))?;
    Ok(())
}

/// Runs every row check of every source (see the module documentation):
/// `Err` on the first failed check whose policy is `error`; otherwise the
/// outcomes, `drop`s applied to the registered tables.
pub async fn enforce(
    ctx: &SessionContext,
    loaded: &Loaded,
    periods: &[NaiveDate],
) -> Result<Vec<CheckResult>> {
    let f = &loaded.formula.file;
    let mut out = Vec::new();
    for s in &f.sources {
        for (kind, policy, declared) in checks_of(s) {
            if matches!(kind, CheckKind::MinRowsPerPeriod(_)) {
                continue;
            }
            let rows = rows_in_range(ctx, s, periods, f).await?;
            let (failing, examples, keep) = evaluate(rows, s, &kind).await?;
            let check = kind.describe();
            let outcome = match (failing, policy) {
                (0, _) => "passed",
                (_, Policy::Error) => {
                    return Err(Error::User(check_failed(
                        &s.name.value,
                        &kind,
                        policy,
                        failing,
                        &examples,
                    )));
                }
                (_, Policy::Warn) => {
                    tracing::info!(source = %s.name.value, %check, failing, examples = %examples.join(", "), "data check failed; the run goes on (policy warn)");
                    "warned"
                }
                (_, Policy::Drop) => {
                    drop_rows(ctx, s, &kind, keep).await?;
                    tracing::info!(source = %s.name.value, %check, rows = failing, "data check failed; its rows are left out (policy drop)");
                    "dropped"
                }
            };
            out.push(CheckResult {
                source: s.name.value.clone(),
                check,
                policy: policy.as_str().to_string(),
                declared,
                failing,
                examples,
                outcome: outcome.to_string(),
            });
        }
    }
    Ok(out)
}

/// A failed check found by [`check_all`], for `croo check --schemas`.
#[derive(Debug, Clone)]
pub struct Finding {
    pub policy: Policy,
    pub message: String,
    /// The check's place in the file (for an implicit one, the key's).
    pub span: std::ops::Range<usize>,
}

/// Every row check of every source over all its rows (no periods: `croo
/// check --schemas` has none), each failure as a finding. `sources`: the
/// sources registered in `ctx` (others are skipped).
pub async fn check_all(
    ctx: &SessionContext,
    loaded: &Loaded,
    sources: &[String],
) -> Result<Vec<Finding>> {
    let mut out = Vec::new();
    for s in &loaded.formula.file.sources {
        if !sources.contains(&s.name.value) {
            continue;
        }
        for (kind, policy, declared) in checks_of(s) {
            if matches!(kind, CheckKind::MinRowsPerPeriod(_)) {
                continue;
            }
            let rows = rows_in_range(ctx, s, &[], &loaded.formula.file).await?;
            let (failing, examples, _) = evaluate(rows, s, &kind).await?;
            if failing == 0 {
                continue;
            }
            let span = if declared {
                s.checks
                    .iter()
                    .find(|c| c.kind == kind)
                    .map_or(s.key.span.clone(), |c| c.span.clone())
            } else {
                s.key.span.clone()
            };
            let mut message = check_failed(&s.name.value, &kind, policy, failing, &examples);
            if policy != Policy::Error {
                message = format!(
                    "{message}; a run {}",
                    match policy {
                        Policy::Drop => "leaves these rows out",
                        _ => "goes on (policy warn)",
                    }
                );
            }
            out.push(Finding {
                policy,
                message,
                span,
            });
        }
    }
    Ok(out)
}

/// The message of a failed check: what, how many, which.
fn check_failed(
    source: &str,
    kind: &CheckKind,
    policy: Policy,
    failing: u64,
    examples: &[String],
) -> String {
    let what = match kind {
        CheckKind::Unique(c) => format!("{failing} values of `{}` appear more than once", c.value),
        CheckKind::NotNull(c) => format!("{failing} rows have NULL in `{}`", c.value),
        CheckKind::AcceptedValues(c, _) => {
            format!(
                "{failing} rows have a value of `{}` that is not accepted",
                c.value
            )
        }
        CheckKind::Finite(c) => format!("{failing} rows have NaN or an infinity in `{}`", c.value),
        CheckKind::MinRowsPerPeriod(n) => {
            format!("{failing} periods have fewer than {n} rows")
        }
    };
    let hint = match (kind, policy) {
        (CheckKind::MinRowsPerPeriod(_), _) | (_, Policy::Warn | Policy::Drop) => "",
        _ => " (declare the check with `policy = \"warn\"` or `\"drop\"` to go on)",
    };
    format!(
        "source `{source}`: check {} failed: {what}{}{hint}",
        kind.describe(),
        if examples.is_empty() {
            String::new()
        } else {
            format!(", e.g. {}", examples.join(", "))
        }
    )
}

/// Rows per source and period, as the scoring counted them (`None`: a
/// source without time).
pub type RowsPerPeriod = BTreeMap<String, BTreeMap<Option<NaiveDate>, u64>>;

/// What the checks after scoring found that goes on record.
#[derive(Debug, Clone, Default)]
pub struct AfterScoring {
    pub checks: Vec<CheckResult>,
    /// Rows of each source whose key matched no customer of their period
    /// (NULL keys included).
    pub orphans: BTreeMap<String, u64>,
    /// Periods published as incomplete, with the sources that had no rows.
    pub incomplete: BTreeMap<NaiveDate, Vec<String>>,
    pub warnings: Vec<String>,
}

/// The checks made once the per-customer table `df` exists (see the module
/// documentation).
pub async fn after_scoring(
    ctx: &SessionContext,
    loaded: &Loaded,
    df: &DataFrame,
    periods: &[NaiveDate],
    rows: &RowsPerPeriod,
    inline: &[String],
) -> Result<AfterScoring> {
    let f = &loaded.formula;
    let mut out = AfterScoring::default();
    // One pass over the per-customer table: each source's matched rows per
    // period, and each number column's NaN and infinities.
    let sources: Vec<&String> = rows.keys().collect();
    let numbers: Vec<String> = f
        .file
        .measures
        .iter()
        .map(|m| m.name.value.clone())
        .chain(
            f.derived
                .iter()
                .map(|(i, _)| f.file.derived[*i].name.value.clone()),
        )
        .chain(f.file.components.iter().map(|c| c.name.value.clone()))
        .chain([
            crate::columns::SCORE.to_string(),
            crate::columns::WEIGHT.to_string(),
        ])
        .collect();
    let mut aggs: Vec<Expr> = sources
        .iter()
        .map(|s| {
            sum(cast(col(rows_column(s)), DataType::Int64))
                .alias(format!("m{}", aggs_index(s, &sources)))
        })
        .collect();
    for (i, c) in numbers.iter().enumerate() {
        let x = ident(c);
        let bad = x.clone().is_not_null().and(
            datafusion::functions::math::expr_fn::abs(x)
                .lt(lit(f64::INFINITY))
                .not(),
        );
        aggs.push(
            count(lit(1))
                .filter(bad)
                .build()
                .map_err(Error::engine("checking the scores"))?
                .alias(format!("nf{i}")),
        );
    }
    let batches = collect(
        df.clone()
            .aggregate(vec![col(PERIOD)], aggs)
            .map_err(Error::engine("checking the scores"))?,
        "checking the scores",
    )
    .await?;
    let mut matched: BTreeMap<&str, BTreeMap<NaiveDate, u64>> = BTreeMap::new();
    let mut non_finite = vec![0u64; numbers.len()];
    for b in &batches {
        let p = b.column(0).as_primitive::<Date32Type>();
        for r in 0..b.num_rows() {
            let Some(day) = p.value_as_date(r) else {
                continue;
            };
            for (j, s) in sources.iter().enumerate() {
                let a = b.column(1 + j);
                let v = a
                    .as_primitive_opt::<Int64Type>()
                    .filter(|a| !a.is_null(r))
                    .map_or(0, |a| a.value(r).max(0) as u64);
                *matched
                    .entry(s.as_str())
                    .or_default()
                    .entry(day)
                    .or_default() += v;
            }
            for (j, n) in non_finite.iter_mut().enumerate() {
                let a = b.column(1 + sources.len() + j);
                if let Some(a) = a.as_primitive_opt::<Int64Type>()
                    && !a.is_null(r)
                {
                    *n += a.value(r).max(0) as u64;
                }
            }
        }
    }
    if let Some(j) = non_finite.iter().position(|n| *n > 0) {
        return Err(Error::User(
            non_finite_message(ctx, loaded, df, &numbers[j], non_finite[j], periods).await?,
        ));
    }
    // Orphans: rows read, less rows that found their customer.
    for (s, per) in rows {
        let read: u64 = per.values().sum();
        let took: u64 = matched.get(s.as_str()).map_or(0, |m| m.values().sum());
        let orphans = read.saturating_sub(took);
        out.orphans.insert(s.clone(), orphans);
        if read > 0 && orphans as f64 > ORPHAN_WARNING_SHARE * read as f64 {
            let w = format!(
                "source `{s}`: {orphans} of its {read} rows ({:.1}%) match no customer of their period",
                100.0 * orphans as f64 / read as f64
            );
            tracing::info!("{w}");
            out.warnings.push(w);
        }
    }
    // Empty periods and minimum rows, per event source with measures.
    for s in f.file.sources.iter().filter(|s| s.time.is_some()) {
        let Some(per) = rows.get(&s.name.value) else {
            continue;
        };
        let count_in = |p: &NaiveDate| per.get(&Some(*p)).copied().unwrap_or(0);
        let empty: Vec<NaiveDate> = periods
            .iter()
            .copied()
            .filter(|p| count_in(p) == 0)
            .collect();
        if !empty.is_empty() {
            let listed: Vec<String> = empty.iter().map(|p| p.to_string()).collect();
            // A test's inline rows are what the analyst wrote: an empty
            // period there is meant.
            let policy = if inline.contains(&s.name.value) {
                EmptyPeriods::Allow
            } else {
                s.empty_periods
            };
            match policy {
                EmptyPeriods::Error => {
                    let covered = covered_range(per);
                    return Err(Error::User(format!(
                        "source `{}` has no rows in period{} {}{covered}: its data has not arrived, or the periods are wrong (set `empty_periods = \"incomplete\"` on the source to publish such periods marked incomplete, or `\"allow\"` if no rows is normal for it)",
                        s.name.value,
                        if empty.len() == 1 { "" } else { "s" },
                        listed.join(", ")
                    )));
                }
                EmptyPeriods::Incomplete => {
                    for p in &empty {
                        out.incomplete
                            .entry(*p)
                            .or_default()
                            .push(s.name.value.clone());
                    }
                    let w = format!(
                        "source `{}` has no rows in {}: published as incomplete",
                        s.name.value,
                        listed.join(", ")
                    );
                    tracing::info!("{w}");
                    out.warnings.push(w);
                }
                EmptyPeriods::Allow => {}
            }
        }
        for c in &s.checks {
            let CheckKind::MinRowsPerPeriod(min) = c.kind else {
                continue;
            };
            let below: Vec<String> = periods
                .iter()
                .filter(|p| count_in(p) < min)
                .map(|p| format!("{p} ({} rows)", count_in(p)))
                .collect();
            let outcome = match (below.is_empty(), c.policy) {
                (true, _) => "passed",
                (false, Policy::Error) => {
                    return Err(Error::User(check_failed(
                        &s.name.value,
                        &c.kind,
                        c.policy,
                        below.len() as u64,
                        &below,
                    )));
                }
                (false, _) => {
                    tracing::info!(source = %s.name.value, check = %c.kind.describe(), periods = %below.join(", "), "data check failed; the run goes on (policy warn)");
                    "warned"
                }
            };
            out.checks.push(CheckResult {
                source: s.name.value.clone(),
                check: c.kind.describe(),
                policy: c.policy.as_str().to_string(),
                declared: true,
                failing: below.len() as u64,
                examples: below.into_iter().take(EXAMPLES).collect(),
                outcome: outcome.to_string(),
            });
        }
    }
    Ok(out)
}

/// The result rows' sums stay finite: a group whose weights (or weighted
/// scores) add up past the largest double has no score to publish.
pub fn check_rollups(rows: &[crate::rollup::ResultRow]) -> Result<()> {
    let bad = |v: Option<f64>| v.is_some_and(|x| !x.is_finite());
    for r in rows {
        let what = if bad(Some(r.weight_total)) {
            Some("its rollup weights add up")
        } else if bad(r.score)
            || r.components
                .0
                .iter()
                .any(|(_, c)| bad(c.rollup) || bad(c.contribution))
        {
            Some("its weighted scores add up")
        } else {
            None
        };
        if let Some(what) = what {
            let group = match (&r.dimension, &r.value) {
                (None, _) => "the whole population".to_string(),
                (Some(d), v) => format!("group {d}={}", v.as_deref().unwrap_or("(null)")),
            };
            return Err(Error::User(format!(
                "{group} in {}: {what} past the largest double (about 1.8e308), so it has no score; look for rollup weights or values that large",
                r.period
            )));
        }
    }
    Ok(())
}

fn aggs_index(s: &str, sources: &[&String]) -> usize {
    sources.iter().position(|x| x.as_str() == s).unwrap_or(0)
}

/// `" (its rows cover 2026-08-01 to 2026-10-01)"`, from the periods that
/// have rows.
fn covered_range(per: &BTreeMap<Option<NaiveDate>, u64>) -> String {
    let with: Vec<NaiveDate> = per
        .iter()
        .filter(|(_, n)| **n > 0)
        .filter_map(|(p, _)| *p)
        .collect();
    match (with.first(), with.last()) {
        (Some(a), Some(b)) => format!(" (in the run's range, its rows are in {a} to {b})"),
        _ => " (it has no rows in the run's range at all)".to_string(),
    }
}

/// What is NaN or infinite: the column, a customer, and for a measure the
/// source column that holds such values (or else: an overflow).
async fn non_finite_message(
    ctx: &SessionContext,
    loaded: &Loaded,
    df: &DataFrame,
    column: &str,
    n: u64,
    periods: &[NaiveDate],
) -> Result<String> {
    let f = &loaded.formula;
    let x = ident(column);
    let bad = x.clone().is_not_null().and(
        datafusion::functions::math::expr_fn::abs(x.clone())
            .lt(lit(f64::INFINITY))
            .not(),
    );
    let ex = collect(
        df.clone()
            .filter(bad)
            .and_then(|d| d.select(vec![col(KEY), col(PERIOD), x]))
            .and_then(|d| d.limit(0, Some(1)))
            .map_err(Error::engine("checking the scores"))?,
        "checking the scores",
    )
    .await?;
    let (key, period, value) = (
        texts(&ex, 0).into_iter().next().unwrap_or_default(),
        texts(&ex, 1).into_iter().next().unwrap_or_default(),
        texts(&ex, 2).into_iter().next().unwrap_or_default(),
    );
    let what = if column == crate::columns::SCORE {
        "the score".to_string()
    } else if column == crate::columns::WEIGHT {
        "the rollup weight".to_string()
    } else if let Some((i, m)) = f
        .file
        .measures
        .iter()
        .enumerate()
        .find(|(_, m)| m.name.value == column)
    {
        // A measure: which column of its source holds NaN or infinities?
        if let Some(s) = f.file.source(&m.source.value) {
            for (c, _) in &f.measure_columns[i] {
                let rows = rows_in_range(ctx, s, periods, &f.file).await?;
                let is_float = rows
                    .schema()
                    .field_with_unqualified_name(c)
                    .is_ok_and(|fl| {
                        matches!(
                            fl.data_type(),
                            DataType::Float16 | DataType::Float32 | DataType::Float64
                        )
                    });
                if !is_float {
                    continue;
                }
                let (count, examples, _) = evaluate(
                    rows,
                    s,
                    &CheckKind::Finite(formulas::Text {
                        value: c.clone(),
                        span: 0..0,
                        inner: 0,
                    }),
                )
                .await?;
                if count > 0 {
                    return Ok(format!(
                        "source `{}` column `{c}` holds NaN or an infinity in {count} rows (e.g. {}), so measure `{column}` is {value} for {n} customer-periods (e.g. customer {key} in {period}); fix the data, or leave such rows out with `checks = [{{ finite = \"{c}\", policy = \"drop\" }}]` on the source",
                        s.name.value,
                        examples.join(", ")
                    ));
                }
            }
        }
        return Ok(format!(
            "measure `{column}` is {value} for {n} customer-periods (e.g. customer {key} in {period}): its values overflow the range of a double (about 1.8e308); check the data for values that large"
        ));
    } else {
        format!("`{column}`")
    };
    Ok(format!(
        "{what} is {value} for {n} customer-periods (e.g. customer {key} in {period}): the formula computes a NaN or an infinity there (`exp` of a large number, or an operation on values already that large)"
    ))
}
