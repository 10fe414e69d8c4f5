//! Scoring: the per-customer table of a formula over some periods, its
//! rollups, the population functions' reference statistics and the rows
//! read per source; nothing is written. [`score`] is the one entry point
//! that sets up the session, registers the sources and computes.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Date32Type, Float64Type, Int64Type, SchemaRef};
use datafusion::functions_aggregate::expr_fn::{count, max, min};
use datafusion::logical_expr::col;
use datafusion::prelude::{SessionContext, cast};
use formulas::Formula;
use formulas::compile::{Scope, compile};
use formulas::expr::Ast;
use kernels::sum::{exact_sum, exact_var_pop};

use crate::columns::{KEY, PERIOD};
use crate::contracts::{self, CheckResult, RowsPerPeriod};
use crate::error::{Error, Result};
use crate::load::Loaded;
use crate::plan;
use crate::rollup::{self, ResultRow};
use crate::session::{SessionOptions, is_distributed, session_for};
use crate::sources::register_sources;
use crate::store::PopulationStats;

/// What a computation produced, before anything is written.
pub struct Computed {
    pub rows: Vec<ResultRow>,
    pub rows_read: BTreeMap<String, u64>,
    /// Rows read per source and period (`None`: a source without time).
    pub rows_per_period: RowsPerPeriod,
    pub population_stats: Vec<PopulationStats>,
    /// Per-customer rows, when asked for.
    pub detail: Vec<RecordBatch>,
    /// With `detail_written` on a cluster: the Parquet file the executors
    /// wrote the per-customer rows to (instead of `detail`).
    pub detail_file: Option<crate::materialise::StagedFile>,
    /// The data checks and their outcomes (`contracts`).
    pub checks: Vec<CheckResult>,
    /// Rows of each source that matched no customer of their period.
    pub orphans: BTreeMap<String, u64>,
    /// Periods published as incomplete, with the sources that had no rows.
    pub incomplete: BTreeMap<NaiveDate, Vec<String>>,
    /// What the run should say (a warned check, many orphans, ...).
    pub warnings: Vec<String>,
    /// Per period, the excluded customers counted per cause
    /// (`exclusions`).
    pub exclusions: crate::exclusions::Exclusions,
    /// The same per group (`segment=smb`).
    pub group_exclusions: crate::exclusions::GroupExclusions,
}

/// How to score: the session, whether to keep the per-customer rows, and
/// tables that stand in for sources (a test's inline rows).
#[derive(Debug, Clone, Default)]
pub struct ScoreOptions {
    pub session: SessionOptions,
    /// Keep the per-customer rows ([`Computed::detail`]).
    pub detail: bool,
    /// On a cluster, have the executors write the per-customer rows (under
    /// the names of `columns::detail_names`) into one Parquet file in the
    /// staging folder ([`Computed::detail_file`]) rather than bring them
    /// to this process.
    pub detail_written: bool,
    /// `(source name, rows)`: registered in place of those sources.
    pub inline: Vec<(String, RecordBatch)>,
    /// An experiment's cohort (`columns::COHORT_TABLE`): the population is
    /// its customers, population functions normalise against its reference
    /// arm (`engine::experiment`).
    pub cohort: Option<RecordBatch>,
    /// Statistics population functions take instead of their period's
    /// (`population_key` of the call -> statistics): an experiment's
    /// pre-period reference.
    pub fixed: Option<BTreeMap<String, formulas::compile::Fixed>>,
}

/// Scores `loaded` over `periods`: sets up the session (local or on a
/// cluster), registers the sources (checking every column the formula
/// names) and computes the results. Nothing is written.
pub async fn score(
    loaded: &Loaded,
    periods: &[NaiveDate],
    options: &ScoreOptions,
) -> Result<Computed> {
    let clock = std::time::Instant::now();
    let lap =
        |what: &str| tracing::info!(elapsed_ms = clock.elapsed().as_millis() as u64, "{what}");
    // Sources whose rows are given inline (a formula test's).
    let inline: Vec<String> = options.inline.iter().map(|(n, _)| n.clone()).collect();
    let mut session = options.session.clone();
    if session.input_bytes.is_none() {
        session.input_bytes = crate::sources::local_input_bytes(loaded, &inline).await;
    }
    let ctx = session_for(&session).await?;
    lap("session started");
    for (name, batch) in &options.inline {
        connectors::register_batches(
            &ctx,
            &crate::columns::table_name(name),
            batch.schema(),
            vec![batch.clone()],
        )?;
    }
    if let Some(c) = &options.cohort {
        connectors::register_batches(
            &ctx,
            crate::columns::COHORT_TABLE,
            c.schema(),
            vec![c.clone()],
        )?;
    }
    let schemas = register_sources(&ctx, loaded, &inline).await?;
    lap("sources registered");
    let result = async {
        let checks = contracts::enforce(&ctx, loaded, periods).await?;
        lap("declared checks enforced");
        let mut c = compute(&ctx, loaded, &schemas, periods, options, &inline).await?;
        let mut all = checks;
        all.append(&mut c.checks);
        for w in all.iter().filter(|c| c.outcome != "passed") {
            c.warnings.push(format!(
                "source `{}`: check {} failed for {} rows ({}): {}",
                w.source,
                w.check,
                w.failing,
                w.policy,
                if w.outcome == "dropped" {
                    "they were left out"
                } else {
                    "the run went on"
                }
            ));
        }
        c.checks = all;
        Ok(c)
    }
    .await;
    match result {
        // A failure while reading: which file and line, if it is the data's.
        Err(e @ Error::Engine { .. }) => {
            if let Some(d) = crate::sources::diagnose(loaded, &schemas, &inline) {
                return Err(d);
            }
            // A value a column's reading cannot parse (a date not in its
            // `format`): which source and column.
            for s in &loaded.formula.file.sources {
                if inline.contains(&s.name.value) {
                    continue;
                }
                if let Some(bad) = crate::sources::unreadable_column(&ctx, s, None).await {
                    return Err(Error::User(bad.message));
                }
            }
            Err(e)
        }
        other => other,
    }
}

/// A geometric or harmonic score needs every `component + shift` above 0:
/// the first component that is not, for how many customers, in which
/// period, is an error (a number built on a log of 0 is no number).
async fn not_positive(f: &Formula, df: &datafusion::prelude::DataFrame) -> Result<()> {
    use datafusion::functions_aggregate::expr_fn::count;
    let checks = crate::aggregation::not_positive(&f.file);
    if checks.is_empty() {
        return Ok(());
    }
    let aggs: Vec<datafusion::logical_expr::Expr> = checks
        .iter()
        .enumerate()
        .map(|(i, (_, cond))| {
            let mut c = count(datafusion::prelude::lit(1));
            if let datafusion::logical_expr::Expr::AggregateFunction(af) = &mut c {
                af.params.filter = Some(Box::new(cond.clone()));
            }
            c.alias(format!("n{i}"))
        })
        .collect();
    let batches = df
        .clone()
        .aggregate(vec![col(PERIOD)], aggs)
        .and_then(|d| d.sort(vec![col(PERIOD).sort(true, false)]))
        .map_err(Error::engine("checking the components"))?
        .collect()
        .await
        .map_err(Error::engine("checking the components"))?;
    for b in &batches {
        let periods = b.column(0).as_primitive::<Date32Type>();
        for (i, (name, _)) in checks.iter().enumerate() {
            let n = b.column(i + 1).as_primitive::<Int64Type>();
            for r in 0..b.num_rows() {
                if n.value(r) > 0 {
                    return Err(Error::User(format!(
                        "component `{name}` + shift ({}) is 0 or less for {} customers in {}: the {} mean of [score] method needs every one above 0 (declare a larger `shift`, or make the component positive)",
                        f.file.shift,
                        n.value(r),
                        periods
                            .value_as_date(r)
                            .map(|d| d.to_string())
                            .unwrap_or_default(),
                        match f.file.method {
                            formulas::Method::Geometric => "geometric",
                            _ => "harmonic",
                        }
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Computes the results of a formula whose sources are registered in `ctx`.
async fn compute(
    ctx: &SessionContext,
    loaded: &Loaded,
    schemas: &BTreeMap<String, SchemaRef>,
    periods: &[NaiveDate],
    options: &ScoreOptions,
    inline: &[String],
) -> Result<Computed> {
    let (detail, fixed) = (options.detail, options.fixed.as_ref());
    let f = &loaded.formula;
    let clock = std::time::Instant::now();
    let lap =
        |what: &str| tracing::info!(elapsed_ms = clock.elapsed().as_millis() as u64, "{what}");
    let scored = plan::plan(ctx, f, schemas, periods, fixed).await?;
    lap("measures aggregated per source");
    // Materialise the per-customer table once; every rollup reads it. On a
    // cluster the executors write it to the shared staging folder and every
    // query below runs on the cluster over it: only results come back here.
    let df = crate::materialise::materialise(ctx, scored.df, "scoring customers").await?;
    lap("customers scored");
    not_positive(f, &df).await?;
    // Rows read per source and period (from the materialised aggregates).
    let mut rows_per_period: RowsPerPeriod = BTreeMap::new();
    let counted = futures::future::try_join_all(scored.rows_read.into_iter().map(
        |(name, frame)| async move {
            let batches = frame
                .collect()
                .await
                .map_err(Error::engine(format!("counting rows of `{name}`")))?;
            Ok::<_, Error>((name, batches))
        },
    ))
    .await?;
    for (name, batches) in counted {
        let per = rows_per_period.entry(name).or_default();
        for b in &batches {
            let p = b.column(0).as_primitive::<Date32Type>();
            let n = b.column(1).as_primitive::<Int64Type>();
            for r in 0..b.num_rows() {
                let day = (!p.is_null(r)).then(|| p.value_as_date(r)).flatten();
                let v = if n.is_null(r) {
                    0
                } else {
                    n.value(r).max(0) as u64
                };
                *per.entry(day).or_default() += v;
            }
        }
    }
    // What the data looks like, now that it is aggregated: empty periods,
    // orphans, NaN and infinities (an error before any rollup).
    let after =
        contracts::after_scoring(ctx, loaded, &df, periods, &rows_per_period, inline).await?;
    lap("rows read and data checked");
    // The rollups and the exclusions' causes read one summary of the
    // table; the population statistics are computed at the same time.
    let mut asked = crate::summary::Asked::default();
    let (for_rollups, for_causes) = (
        rollup::ask(f, &mut asked),
        crate::exclusions::ask(f, &mut asked),
    );
    let (summary, population_stats) = futures::future::try_join(
        // On a cluster, one aggregation per grouping: only O(periods x
        // groups) rows come back here.
        crate::summary::summarise(&df, f.file.dimensions.len(), &asked, !is_distributed(ctx)),
        population_stats(f, &df),
    )
    .await?;
    let mut rows = rollup::rollups(f, &summary, &for_rollups, periods);
    let (exclusions, group_exclusions) = crate::exclusions::causes(f, &summary, &for_causes);
    contracts::check_rollups(&rows)?;
    for r in &mut rows {
        r.complete = !after.incomplete.contains_key(&r.period);
    }
    let mut warnings = after.warnings;
    // A period whose score is NULL because nobody counts says so.
    for r in rows.iter().filter(|r| r.dimension.is_none()) {
        if r.population == 0 {
            warnings.push(format!(
                "{}: no customer is active in this period (score NULL)",
                r.period
            ));
        } else if r.included == 0 {
            let why = exclusions
                .get(&r.period)
                .map(|c| crate::exclusions::describe(r.period, c))
                .unwrap_or_default();
            warnings.push(format!(
                "{}: every one of the {} active customers is excluded (score NULL); why: {}",
                r.period,
                r.population,
                why.split_once(": ").map_or("", |(_, w)| w)
            ));
        }
    }
    lap("rollups and population statistics computed");
    let rows_read = rows_per_period
        .iter()
        .map(|(s, per)| (s.clone(), per.values().sum()))
        .collect();
    let sorted = || {
        df.clone()
            .sort(vec![
                col(PERIOD).sort(true, false),
                col(KEY).sort(true, false),
            ])
            .map_err(Error::engine("sorting per-customer rows"))
    };
    let (detail, detail_file) = match () {
        _ if detail && options.detail_written && is_distributed(ctx) => {
            let sorted = sorted()?;
            let (names, public) = crate::columns::detail_names_of(f, sorted.schema().as_arrow());
            let renamed = sorted
                .select(
                    names
                        .iter()
                        .zip(&public)
                        .map(|(n, p)| datafusion::logical_expr::ident(n).alias(p))
                        .collect::<Vec<_>>(),
                )
                .map_err(Error::engine("naming per-customer rows"))?;
            let file = crate::materialise::write_file(ctx, renamed, "detail.parquet").await?;
            (Vec::new(), Some(file))
        }
        _ if detail => (
            sorted()?
                .collect()
                .await
                .map_err(Error::engine("collecting per-customer rows"))?,
            None,
        ),
        _ => (Vec::new(), None),
    };
    Ok(Computed {
        rows,
        rows_read,
        rows_per_period,
        population_stats,
        detail,
        detail_file,
        checks: after.checks,
        orphans: after.orphans,
        incomplete: after.incomplete,
        warnings,
        exclusions,
        group_exclusions,
    })
}

struct Columns;

impl Scope for Columns {
    fn ident(&self, name: &str) -> Option<datafusion::logical_expr::Expr> {
        Some(datafusion::logical_expr::ident(name))
    }

    fn partition(&self) -> Vec<datafusion::logical_expr::Expr> {
        vec![col(PERIOD)]
    }
}

/// COINr's rule per period: `winsorise_coinr` (the points set to the next
/// value, `changed`, and the bounds `min`, `max`) or `log_coinr` (every
/// value log-transformed, `value` 1 for a positive skew, -1 for a negative).
async fn coinr_stats(
    m: &formulas::Measure,
    max_points: u32,
    df: &datafusion::prelude::DataFrame,
) -> Result<Vec<PopulationStats>> {
    use crate::winsor::Treatment;
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    let mut out = Vec::new();
    for (p, t, n) in crate::winsor::coinr_treatments(df, m, max_points).await? {
        let period = (epoch + chrono::Duration::days(i64::from(p))).to_string();
        let expression = format!(
            "winsorise({}, coinr {max_points}) in measures.{}",
            m.name.value, m.name.value
        );
        let (function, min, max, value, changed) = match t {
            Treatment::Keep => ("winsorise_coinr", None, None, None, 0),
            Treatment::Clamp { lo, hi, low, high } => {
                ("winsorise_coinr", Some(lo), Some(hi), None, low + high)
            }
            Treatment::Log { positive, min, max } => (
                "log_coinr",
                Some(min),
                Some(max),
                Some(if positive { 1.0 } else { -1.0 }),
                n,
            ),
        };
        out.push(PopulationStats {
            expression,
            function: function.into(),
            period,
            n: n as u64,
            min,
            max,
            mean: None,
            stddev: None,
            value,
            changed: Some(changed as u64),
        });
    }
    Ok(out)
}

/// One row per period of `aggs` over the per-customer table, in period
/// order: each row's period, its `n` (the first aggregate, a count) and a
/// reader of its other (Float64) aggregates by position (1 = the second).
async fn per_period(
    df: &datafusion::prelude::DataFrame,
    aggs: Vec<datafusion::logical_expr::Expr>,
    what: &str,
) -> Result<Vec<(String, u64, Vec<Option<f64>>)>> {
    let batches = df
        .clone()
        .aggregate(vec![col(PERIOD)], aggs)
        .and_then(|d| d.sort(vec![col(PERIOD).sort(true, false)]))
        .map_err(Error::engine(what.to_string()))?
        .collect()
        .await
        .map_err(Error::engine(what.to_string()))?;
    let mut out = Vec::new();
    for b in batches {
        let p = b.column(0).as_primitive::<Date32Type>();
        let n = b.column(1).as_primitive::<Int64Type>();
        for r in 0..b.num_rows() {
            let rest = (2..b.num_columns())
                .map(|i| {
                    let a = cast_f64(b.column(i));
                    (!a.is_null(r)).then(|| a.value(r))
                })
                .collect();
            out.push((
                p.value_as_date(r)
                    .map(|d| d.to_string())
                    .unwrap_or_default(),
                n.value(r) as u64,
                rest,
            ));
        }
    }
    Ok(out)
}

fn cast_f64(a: &datafusion::arrow::array::ArrayRef) -> datafusion::arrow::array::Float64Array {
    datafusion::arrow::compute::cast(a, &DataType::Float64)
        .map(|a| a.as_primitive::<Float64Type>().clone())
        .unwrap_or_else(|_| datafusion::arrow::array::Float64Array::from(vec![None; a.len()]))
}

/// Reference statistics (n, min, max, mean, population standard deviation)
/// of every population function's argument in every period.
async fn population_stats(
    f: &Formula,
    df: &datafusion::prelude::DataFrame,
) -> Result<Vec<PopulationStats>> {
    let mut calls: Vec<(String, String, Ast)> = Vec::new();
    let mut collect = |place: String, a: &Ast| {
        a.walk(&mut |n| {
            if let Ast::Call(func, args, _) = n
                && func.is_population()
            {
                calls.push((place.clone(), func.name().to_string(), args[0].clone()));
            }
        });
    };
    for (i, a) in &f.derived {
        collect(format!("derived.{}", f.file.derived[*i].name.value), a);
    }
    for (c, a) in f.file.components.iter().zip(&f.components) {
        collect(format!("score.components.{}", c.name.value), a);
    }
    if let Some(a) = &f.score {
        collect("score.expr".into(), a);
    }
    // Every call's statistics in one aggregation per period.
    let mut aggs = vec![count(datafusion::prelude::lit(1)).alias("rows")];
    for (i, (_, _, arg)) in calls.iter().enumerate() {
        let x = compile(arg, &Columns).map_err(Error::engine("population statistics"))?;
        let x = cast(x, DataType::Float64);
        aggs.extend([
            cast(count(x.clone()), DataType::Float64).alias(format!("n{i}")),
            min(x.clone()).alias(format!("min{i}")),
            max(x.clone()).alias(format!("max{i}")),
            // Exact sums, as in the population functions themselves.
            (exact_sum(x.clone()) / cast(count(x.clone()), DataType::Float64))
                .alias(format!("mean{i}")),
            datafusion::functions::math::expr_fn::sqrt(exact_var_pop(x)).alias(format!("sd{i}")),
        ]);
    }
    let mut out = Vec::new();
    if !calls.is_empty() {
        let periods = per_period(df, aggs, "population statistics").await?;
        for (i, (place, func, arg)) in calls.iter().enumerate() {
            for (period, _, v) in &periods {
                let v = &v[5 * i..5 * i + 5];
                out.push(PopulationStats {
                    expression: format!("{} in {place}", crate::columns::population_key(func, arg)),
                    function: func.clone(),
                    period: period.clone(),
                    n: v[0].map_or(0, |n| n as u64),
                    min: v[1],
                    max: v[2],
                    mean: v[3],
                    stddev: v[4],
                    value: None,
                    changed: None,
                });
            }
        }
    }
    out.extend(imputation_stats(f, df).await?);
    out.extend(winsor_stats(f, df).await?);
    Ok(out)
}

/// Per winsorised measure and period: its quantiles (`min`, `max`), the
/// customers with a value (`n`) and those it changed (`changed`).
async fn winsor_stats(
    f: &Formula,
    df: &datafusion::prelude::DataFrame,
) -> Result<Vec<PopulationStats>> {
    use datafusion::functions_aggregate::expr_fn::percentile_cont;
    use datafusion::prelude::lit;
    let mut out = Vec::new();
    for m in &f.file.measures {
        let (lower, upper) = match m.winsorise {
            Some(formulas::Winsorise::Quantiles(lower, upper)) => (lower, upper),
            Some(formulas::Winsorise::Coinr(n)) => {
                out.extend(coinr_stats(m, n, df).await?);
                continue;
            }
            None => continue,
        };
        let x = cast(
            datafusion::logical_expr::ident(crate::winsor::raw_col(&m.name.value)),
            DataType::Float64,
        );
        let mut changed = count(lit(1));
        if let datafusion::logical_expr::Expr::AggregateFunction(af) = &mut changed {
            af.params.filter = Some(Box::new(datafusion::logical_expr::ident(
                crate::winsor::changed_col(&m.name.value),
            )));
        }
        let rows = per_period(
            df,
            vec![
                count(x.clone()).alias("n"),
                percentile_cont(x.clone().sort(true, false), lit(lower)).alias("lo"),
                percentile_cont(x.sort(true, false), lit(upper)).alias("hi"),
                changed.alias("changed"),
            ],
            "winsorisation statistics",
        )
        .await?;
        for (period, n, v) in rows {
            out.push(PopulationStats {
                expression: format!(
                    "winsorise({}, {lower}, {upper}) in measures.{}",
                    m.name.value, m.name.value
                ),
                function: "winsorise".into(),
                period,
                n,
                min: v[0],
                max: v[1],
                mean: None,
                stddev: None,
                value: None,
                changed: v[2].map(|c| c as u64),
            });
        }
    }
    Ok(out)
}

/// The reference statistics of each imputed component, per period: over
/// the customers with a value (the raw column), with the value the others
/// got (`impute_group_median`: one per group, not recorded).
async fn imputation_stats(
    f: &Formula,
    df: &datafusion::prelude::DataFrame,
) -> Result<Vec<PopulationStats>> {
    use datafusion::functions_aggregate::expr_fn::median;
    use formulas::Impute;
    let mut out = Vec::new();
    for c in &f.file.components {
        let Some(how) = &c.impute else { continue };
        let func = match how {
            Impute::Zero => "impute_zero",
            Impute::Mean => "impute_mean",
            Impute::Median => "impute_median",
            Impute::GroupMedian(_) => "impute_group_median",
        };
        let x = cast(
            datafusion::logical_expr::ident(crate::imputation::raw_col(&c.name.value)),
            DataType::Float64,
        );
        let rows = per_period(
            df,
            vec![
                count(x.clone()).alias("n"),
                min(x.clone()).alias("min"),
                max(x.clone()).alias("max"),
                (exact_sum(x.clone()) / cast(count(x.clone()), DataType::Float64)).alias("mean"),
                datafusion::functions::math::expr_fn::sqrt(exact_var_pop(x.clone())).alias("sd"),
                median(x).alias("median"),
            ],
            "imputation statistics",
        )
        .await?;
        for (period, n, v) in rows {
            out.push(PopulationStats {
                expression: format!(
                    "{func}({}) in score.components.{}",
                    c.name.value, c.name.value
                ),
                function: func.to_string(),
                period,
                n,
                min: v[0],
                max: v[1],
                mean: v[2],
                stddev: v[3],
                value: match how {
                    Impute::Zero => Some(0.0),
                    Impute::Mean => v[2],
                    Impute::Median => v[4],
                    Impute::GroupMedian(_) => None,
                },
                changed: None,
            });
        }
    }
    Ok(out)
}
