//! Plans one formula over a set of periods as DataFusion DataFrames:
//! population x periods, one grouped aggregation per source for all of its
//! measures, derived values, components, score and rollup weight, then the
//! rollups per group.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::arrow::array::{ArrayRef, Date32Array, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::logical_expr::ExprSchemable as _;
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::utils::disjunction;
use datafusion::logical_expr::{Expr, JoinType, col, ident, lit, when};
use datafusion::prelude::{DataFrame, SessionContext, cast};
use datafusion::scalar::ScalarValue;
use formulas::compile::{Scope, compile};
use formulas::{Formula, Grain, Source};
use kernels::sum::exact_sum;

use crate::calendar::Calendar;
use crate::columns::{
    ARM, COHORT_TABLE, INCLUDED, KEY, PERIOD, REFERENCE, SCORE, WEIGHT, as_instant, dim_col,
    table_name,
};
use crate::error::{Error, Result};
use kernels::instant::instant_type;

/// `(KEY, PERIOD)` as one column (`croo_period_key`), for integer keys.
const PERIOD_KEY: &str = "__kp";
const PSTART: &str = "__pstart";
const PEND: &str = "__pend";

/// The type of the dimension columns until the per-customer table is
/// final (the end of [`plan`]).
fn dim_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

/// Column of the per-customer table holding the customer's rows of
/// `source` in the period (NULL: none).
pub(crate) fn rows_column(source: &str) -> String {
    format!("__rows_{source}")
}

/// An instant (microseconds since the epoch) as a UTC timestamp literal.
pub(crate) fn micros_lit(t: i64) -> Expr {
    lit(ScalarValue::TimestampMicrosecond(
        Some(t),
        Some("UTC".into()),
    ))
}

/// The common type two sources' keys are compared in.
fn key_type(a: &DataType, b: &DataType) -> Option<DataType> {
    if a.is_integer() && b.is_integer() {
        return Some(DataType::Int64);
    }
    let stringy =
        |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    if stringy(a) && stringy(b) {
        return Some(DataType::Utf8);
    }
    (a == b).then(|| a.clone())
}

/// The per-customer, per-period table of a formula: key, period,
/// dimensions, measures, derived values, components, score, weight and
/// whether the customer is included in rollups.
pub struct Scored {
    pub df: DataFrame,
    /// Rows read per source within the requested periods: one row, one
    /// Int64 column `n` (NULL when none).
    pub rows_read: Vec<(String, DataFrame)>,
}

/// Plans the scoring of `f` over `periods` with the sources registered in
/// `ctx` (see [`table_name`]).
pub async fn plan(
    ctx: &SessionContext,
    f: &Formula,
    schemas: &BTreeMap<String, SchemaRef>,
    periods: &[NaiveDate],
    fixed: Option<&BTreeMap<String, formulas::compile::Fixed>>,
) -> Result<Scored> {
    let file = &f.file;
    let grain = file.grain;
    let cal = Calendar::of(file);
    let entity = file
        .entity()
        .ok_or_else(|| Error::User("the formula has no entity source".into()))?;
    let eschema = &schemas[&entity.name.value];
    let ekey_ty = eschema
        .field_with_name(&entity.key.value)
        .map(|f| f.data_type().clone())
        .map_err(|_| {
            Error::User(format!(
                "source `{}` has no key column `{}`",
                entity.name.value, entity.key.value
            ))
        })?;

    // Key types: one common type for every source joined to the entity.
    let mut key_ty = match &ekey_ty {
        t if t.is_integer() => DataType::Int64,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => DataType::Utf8,
        t => t.clone(),
    };
    for s in &file.sources {
        let schema = &schemas[&s.name.value];
        let ty = schema
            .field_with_name(&s.key.value)
            .map(|f| f.data_type().clone())
            .map_err(|_| {
                Error::User(format!(
                    "source `{}` has no key column `{}`",
                    s.name.value, s.key.value
                ))
            })?;
        match key_type(&ekey_ty, &ty) {
            Some(t) => {
                if s.entity {
                    key_ty = t;
                }
            }
            None => {
                return Err(Error::User(format!(
                    "key types do not match: `{}.{}` is {ekey_ty} but `{}.{}` is {ty}; keys must both be integers or both strings",
                    entity.name.value, entity.key.value, s.name.value, s.key.value
                )));
            }
        }
    }

    // Periods as a small table.
    let periods_df = periods_table(ctx, &cal, grain, periods)?;

    // Population: entity rows active in each period.
    let mut sel = vec![cast(ident(&entity.key.value), key_ty.clone()).alias(KEY)];
    for (i, d) in file.dimensions.iter().enumerate() {
        // Dictionary-encoded while the population goes through the measure
        // joins and the population windows (each copies its rows: an
        // integer per row instead of the text), plain text again at the end.
        // A history dimension is joined on below (`memberships`).
        if d.source.is_none() {
            sel.push(cast(ident(&d.column.value), dim_type()).alias(dim_col(i)));
        }
    }
    let mut active = Vec::new();
    for (t, name) in [(&entity.active_from, "__from"), (&entity.active_to, "__to")] {
        if let Some(t) = t {
            let ty = eschema
                .field_with_name(&t.value)
                .map(|f| f.data_type().clone())
                .unwrap_or(DataType::Null);
            let e = as_instant(&t.value, &ty).ok_or_else(|| {
                Error::User(format!(
                    "column `{}` of source `{}` is {ty}, not a timestamp, date or ISO 8601 string",
                    t.value, entity.name.value
                ))
            })?;
            sel.push(e.alias(name));
            active.push(name);
        }
    }
    let ent = ctx
        .table(table_name(&entity.name.value))
        .await
        .map_err(Error::engine("reading the entity source"))?
        .select(sel)
        .map_err(Error::engine(format!("source `{}`", entity.name.value)))?;
    let mut cond = lit(true);
    if entity.active_from.is_some() {
        cond = cond.and(col("__from").lt(col(PEND)));
    }
    if entity.active_to.is_some() {
        cond = cond.and(col("__to").is_null().or(col("__to").gt_eq(col(PSTART))));
    }
    let mut pop = ent
        .join_on(periods_df, JoinType::Inner, [cond])
        .map_err(Error::engine("planning the population"))?;
    pop = crate::memberships::attach(ctx, f, schemas, pop, &key_ty, (PSTART, PEND), &dim_type())
        .await?;
    let cohort = ctx
        .table_exist(COHORT_TABLE)
        .map_err(Error::engine("planning the population"))?;
    if cohort {
        // An experiment: the customers exposed before the period starts,
        // with their arm.
        let c = ctx
            .table(COHORT_TABLE)
            .await
            .map_err(Error::engine("reading the experiment's cohort"))?;
        let c = c
            .select(vec![
                cast(col("__ckey"), key_ty.clone()).alias("__ckey"),
                col("__arm").alias(ARM),
                col("__exposed"),
                col("__ref").alias(REFERENCE),
            ])
            .map_err(Error::engine("reading the experiment's cohort"))?;
        pop = pop
            .join_on(
                c,
                JoinType::Inner,
                [col(KEY)
                    .eq(col("__ckey"))
                    .and(col("__exposed").lt(col(PSTART)))],
            )
            .map_err(Error::engine("planning the population"))?;
    }
    let mut keep: Vec<Expr> = vec![col(KEY), col(PERIOD)];
    keep.extend((0..file.dimensions.len()).map(|i| col(dim_col(i))));
    if cohort {
        keep.extend([col(ARM), col(REFERENCE)]);
    }
    pop = pop
        .select(keep.clone())
        .map_err(Error::engine("planning the population"))?;

    // Measures: one grouped aggregation per source.
    if periods.is_empty() {
        return Err(Error::User("no period to compute".into()));
    }
    // With integer keys, the sources that have a time column are grouped
    // and joined by (key, period) packed into one column: DataFusion's
    // single-column hash tables (one hash, one comparison per row).
    let packed = |s: &Source| key_ty == DataType::Int64 && !s.entity && s.time.is_some();
    if file
        .sources
        .iter()
        .any(|s| packed(s) && file.measures.iter().any(|m| m.source.value == s.name.value))
    {
        let mut sel = keep.clone();
        sel.push(kernels::period::period_key_expr(col(KEY), col(PERIOD)).alias(PERIOD_KEY));
        pop = pop
            .select(sel)
            .map_err(Error::engine("planning the population"))?;
    }
    let mut rows_read = Vec::new();
    let mut measure_cols: Vec<(String, Expr)> = Vec::new();
    let mut row_cols: Vec<String> = Vec::new();
    let aggregations = file.sources.iter().filter_map(|s| {
        let idx: Vec<usize> = file
            .measures
            .iter()
            .enumerate()
            .filter(|(_, m)| m.source.value == s.name.value)
            .map(|(i, _)| i)
            .collect();
        (!idx.is_empty()).then(|| {
            let schema = &schemas[&s.name.value];
            let (key_ty, packed, cal) = (&key_ty, packed(s), &cal);
            async move {
                let table = measure_table(
                    ctx,
                    f,
                    s,
                    schema,
                    &idx,
                    key_ty,
                    (cal, grain, periods),
                    packed,
                )
                .await?;
                Ok::<_, Error>((s, table))
            }
        })
    });
    // The sources are aggregated at the same time (one source's scan
    // fills the cores while another's aggregation finishes), one after
    // the other under a memory limit (their hash tables would share it).
    let tables = if crate::materialise::is_limited(ctx) {
        let mut tables = Vec::new();
        for a in aggregations {
            tables.push(a.await?);
        }
        tables
    } else {
        futures::future::try_join_all(aggregations).await?
    };
    // The columns each source's aggregate joins on, and the population's.
    let on = |s: &Source| -> (Vec<&str>, Vec<String>) {
        if s.entity {
            (vec![KEY], vec![format!("__k_{}", s.name.value)])
        } else if packed(s) {
            (vec![PERIOD_KEY], vec![format!("__kp_{}", s.name.value)])
        } else {
            (
                vec![KEY, PERIOD],
                vec![
                    format!("__k_{}", s.name.value),
                    format!("__p_{}", s.name.value),
                ],
            )
        }
    };
    // On a cluster, sources joined on the same columns become one table
    // joined once (`engine::combine`); elsewhere one join per source.
    let first_on = tables.first().map(|(s, _)| on(s).0).unwrap_or_default();
    let combined = crate::cluster::is_distributed(ctx)
        && tables.len() > 1
        && tables.iter().all(|(s, _)| on(s).0 == first_on);
    let mut together = Vec::new();
    for (s, (agg, finals, rows)) in tables {
        rows_read.push((s.name.value.clone(), rows));
        measure_cols.extend(finals);
        row_cols.push(rows_column(&s.name.value));
        let (lcols, rcols) = on(s);
        if combined {
            together.push(crate::combine::Aggregate {
                df: agg,
                keys: rcols,
            });
            continue;
        }
        let rcols: Vec<&str> = rcols.iter().map(String::as_str).collect();
        // `agg RIGHT JOIN pop` rather than `pop LEFT JOIN agg`: the same
        // rows, but the hash table is built on the aggregate (at most one
        // row per customer and period that has rows) instead of the whole
        // population, which grows with every join.
        pop = agg
            .join(pop, JoinType::Right, &rcols, &lcols, None)
            .map_err(Error::engine(format!(
                "joining the measures of source `{}`",
                s.name.value
            )))?;
    }
    if combined {
        pop = crate::combine::measures(pop, together, &first_on)?;
    }
    // Final measure values (defaults applied), in declaration order, and
    // each source's rows.
    let mut keep = keep;
    keep.extend(row_cols.iter().map(|c| col(c.as_str())));
    let mut sel = keep.clone();
    let winsorised: Vec<&formulas::Measure> = file
        .measures
        .iter()
        .filter(|m| m.winsorise.is_some())
        .collect();
    for (name, e) in &measure_cols {
        // A winsorised measure under its raw name first (`engine::winsor`).
        let alias = if winsorised.iter().any(|m| &m.name.value == name) {
            crate::winsor::raw_col(name)
        } else {
            name.clone()
        };
        sel.push(e.clone().alias(alias));
    }
    let mut df = pop
        .select(sel)
        .map_err(Error::engine("planning the measures"))?;
    let mut cols: Vec<Expr> = keep;
    cols.extend(measure_cols.iter().map(|(n, _)| {
        if winsorised.iter().any(|m| &m.name.value == n) {
            ident(crate::winsor::raw_col(n))
        } else {
            ident(n)
        }
    }));
    for m in &winsorised {
        let (clamped, changed) = match m.winsorise {
            Some(formulas::Winsorise::Coinr(n)) => {
                // COINr's rule decides per period from the values: one
                // query over the plan so far.
                let t = crate::winsor::coinr_treatments(&df, m, n).await?;
                crate::winsor::coinr_exprs(m, &t)?
            }
            _ => match crate::winsor::clamp(m) {
                Some(c) => c,
                None => continue,
            },
        };
        let what = format!("winsorising measure `{}`", m.name.value);
        let mut sel = cols.clone();
        sel.push(cast(clamped, DataType::Float64).alias(&m.name.value));
        sel.push(changed.alias(crate::winsor::changed_col(&m.name.value)));
        cols.push(ident(&m.name.value));
        cols.push(ident(crate::winsor::changed_col(&m.name.value)));
        df = df.select(sel).map_err(Error::engine(what))?;
    }

    // Derived values, in dependency order, then components, score, weight.
    let scope = ColumnScope {
        reference: cohort,
        fixed,
    };
    let mut windows = 0usize;
    let stage = |df: DataFrame,
                 cols: &mut Vec<Expr>,
                 name: &str,
                 e: Expr,
                 what: &str|
     -> Result<DataFrame> {
        // One vectorised kernel per expression (`croo_fused`) instead of
        // one arrow kernel per operator: the same bits, less memory traffic.
        let e = kernels::fused::fuse(e, df.schema()).map_err(Error::engine(what.to_string()))?;
        let mut sel = cols.clone();
        sel.push(cast(e, DataType::Float64).alias(name));
        cols.push(ident(name));
        df.select(sel).map_err(Error::engine(what.to_string()))
    };
    for (i, ast) in &f.derived {
        let name = &file.derived[*i].name.value;
        let what = format!("derived value `{name}`");
        let e = compile(ast, &scope).map_err(Error::engine(what.clone()))?;
        let (d, e) = crate::population::without_windows(ctx, df, e, &mut windows, &what).await?;
        df = stage(d, &mut cols, name, e, &what)?;
    }
    for (c, ast) in file.components.iter().zip(&f.components) {
        let what = format!("component `{}`", c.name.value);
        let e = compile(ast, &scope).map_err(Error::engine(what.clone()))?;
        let (d, e) = crate::population::without_windows(ctx, df, e, &mut windows, &what).await?;
        match crate::imputation::fill(file, c) {
            None => df = stage(d, &mut cols, &c.name.value, e, &what)?,
            Some((filled, flag)) => {
                // The component as computed, then imputed where NULL, and
                // who was (`engine::imputation`).
                df = stage(
                    d,
                    &mut cols,
                    &crate::imputation::raw_col(&c.name.value),
                    e,
                    &what,
                )?;
                let mut sel = cols.clone();
                sel.push(flag.alias(crate::imputation::imputed_col(&c.name.value)));
                cols.push(ident(crate::imputation::imputed_col(&c.name.value)));
                df = df.select(sel).map_err(Error::engine(what.clone()))?;
                df = stage(df, &mut cols, &c.name.value, filled, &what)?;
            }
        }
    }
    let score = match &f.score {
        Some(ast) => {
            let e = compile(ast, &scope).map_err(Error::engine("`score.expr`"))?;
            let (d, e) =
                crate::population::without_windows(ctx, df, e, &mut windows, "`score.expr`")
                    .await?;
            df = d;
            e
        }
        None if file.components.is_empty() => lit(ScalarValue::Float64(None)),
        None => crate::aggregation::score(file),
    };
    df = stage(df, &mut cols, SCORE, score, "the score")?;
    for (name, e) in crate::aggregation::contributions(file)? {
        df = stage(df, &mut cols, &name, e, "a contribution")?;
    }
    let weight = match &f.weight {
        Some(ast) => {
            let e = compile(ast, &scope).map_err(Error::engine("`rollup.weight`"))?;
            let (d, e) =
                crate::population::without_windows(ctx, df, e, &mut windows, "`rollup.weight`")
                    .await?;
            df = d;
            e
        }
        None => lit(1.0),
    };
    df = stage(df, &mut cols, WEIGHT, weight, "the rollup weight")?;
    let included = col(SCORE)
        .is_not_null()
        .and(col(WEIGHT).is_not_null())
        .and(col(WEIGHT).gt(lit(0.0)));
    let dims: Vec<String> = (0..file.dimensions.len()).map(dim_col).collect();
    let mut sel: Vec<Expr> = cols
        .iter()
        .map(|c| match c {
            Expr::Column(c) if dims.contains(&c.name) => {
                cast(col(c.name.as_str()), DataType::Utf8).alias(c.name.as_str())
            }
            other => other.clone(),
        })
        .collect();
    sel.push(
        when(included, lit(true))
            .otherwise(lit(false))
            .map_err(Error::engine("inclusion"))?
            .alias(INCLUDED),
    );
    df = df.select(sel).map_err(Error::engine("inclusion"))?;
    Ok(Scored { df, rows_read })
}

struct ColumnScope<'a> {
    /// Population functions normalise against the cohort's reference arm.
    reference: bool,
    /// ... or by these statistics (`score::population_key` -> statistics).
    fixed: Option<&'a BTreeMap<String, formulas::compile::Fixed>>,
}

impl Scope for ColumnScope<'_> {
    fn fixed(
        &self,
        f: formulas::expr::Func,
        arg: &formulas::expr::Ast,
    ) -> Option<formulas::compile::Fixed> {
        self.fixed?
            .get(&crate::columns::population_key(f.name(), arg))
            .copied()
    }

    fn ident(&self, name: &str) -> Option<Expr> {
        Some(ident(name))
    }

    fn reference(&self) -> Option<Expr> {
        self.reference.then(|| col(REFERENCE))
    }

    fn partition(&self) -> Vec<Expr> {
        vec![col(PERIOD)]
    }
}

fn periods_table(
    ctx: &SessionContext,
    cal: &Calendar,
    grain: Grain,
    periods: &[NaiveDate],
) -> Result<DataFrame> {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    let days: Vec<i32> = periods
        .iter()
        .map(|p| (*p - epoch).num_days() as i32)
        .collect();
    let starts: Vec<i64> = periods.iter().map(|p| cal.micros(*p)).collect();
    let ends: Vec<i64> = periods
        .iter()
        .map(|p| cal.micros(cal.next(grain, *p)))
        .collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new(PERIOD, DataType::Date32, false),
        Field::new(PSTART, instant_type(), false),
        Field::new(PEND, instant_type(), false),
    ]));
    let arrays: Vec<ArrayRef> = vec![
        Arc::new(Date32Array::from(days.clone())),
        Arc::new(TimestampMicrosecondArray::from(starts.clone()).with_timezone("UTC")),
        Arc::new(TimestampMicrosecondArray::from(ends.clone()).with_timezone("UTC")),
    ];
    if periods.is_empty() {
        let batch =
            RecordBatch::try_new(schema, arrays).map_err(|e| Error::engine("periods")(e.into()))?;
        return ctx.read_batch(batch).map_err(Error::engine("periods"));
    }
    // A VALUES plan rather than an in-memory table: it serialises, so the
    // same plan runs on a Ballista cluster.
    let tz: Option<Arc<str>> = Some("UTC".into());
    let rows: Vec<Vec<Expr>> = days
        .iter()
        .zip(starts.iter().zip(&ends))
        .map(|(d, (s, e))| {
            vec![
                lit(ScalarValue::Date32(Some(*d))),
                lit(ScalarValue::TimestampMicrosecond(Some(*s), tz.clone())),
                lit(ScalarValue::TimestampMicrosecond(Some(*e), tz.clone())),
            ]
        })
        .collect();
    let plan = datafusion::logical_expr::LogicalPlanBuilder::values(rows)
        .and_then(|b| {
            b.project(vec![
                col("column1").alias(PERIOD),
                col("column2").alias(PSTART),
                col("column3").alias(PEND),
            ])
        })
        .and_then(|b| b.build())
        .map_err(Error::engine("periods"))?;
    Ok(DataFrame::new(ctx.state(), plan))
}

/// Plans the aggregation of every measure of source `s`, grouped by key and
/// period. Returns the aggregated table, the final expression (default
/// applied) of each measure, and a frame counting the rows read.
#[allow(clippy::too_many_arguments)]
async fn measure_table(
    ctx: &SessionContext,
    f: &Formula,
    s: &Source,
    schema: &SchemaRef,
    idx: &[usize],
    key_ty: &DataType,
    (cal, grain, periods): (&Calendar, Grain, &[NaiveDate]),
    packed: bool,
) -> Result<(DataFrame, Vec<(String, Expr)>, DataFrame)> {
    let name = &s.name.value;
    let raw = ctx
        .table(table_name(name))
        .await
        .map_err(Error::engine(format!("reading source `{name}`")))?;
    let rk = format!("__k_{name}");
    let rp = format!("__p_{name}");
    // Rows with a NULL key are kept: they match no customer, and are
    // counted with the orphans (rows read, less rows matched).
    let mut rows = raw.clone();
    let mut group = vec![cast(ident(&s.key.value), key_ty.clone()).alias(&rk)];
    if let Some(t) = &s.time {
        let ty = schema
            .field_with_name(&t.value)
            .map(|f| f.data_type().clone())
            .unwrap_or(DataType::Null);
        let instant = as_instant(&t.value, &ty).ok_or_else(|| {
            Error::User(format!(
                "time column `{}` of source `{name}` is {ty}, not a timestamp, date or ISO 8601 string",
                t.value
            ))
        })?;
        let start = periods.first().map_or(i64::MAX, |p| cal.micros(*p));
        let end = periods
            .last()
            .map_or(i64::MIN, |p| cal.micros(cal.next(grain, *p)));
        rows = rows
            .filter(
                instant
                    .clone()
                    .gt_eq(micros_lit(start))
                    .and(instant.clone().lt(micros_lit(end))),
            )
            .map_err(Error::engine(format!("source `{name}`")))?;
        // The period's first day from the UTC micros (`Calendar::assign`:
        // integer arithmetic for the default calendar, else a search over
        // the periods' boundaries).
        let micros = cast(instant, DataType::Int64);
        let period = cal.assign(micros, grain, periods);
        if packed {
            let key = cast(ident(&s.key.value), key_ty.clone());
            group =
                vec![kernels::period::period_key_expr(key, period).alias(format!("__kp_{name}"))];
        } else {
            group.push(period.alias(&rp));
        }
    }

    let mut aggs: Vec<Expr> = Vec::new();
    let mut distinct: Vec<(AggregateFunction, String)> = Vec::new();
    let mut counts: BTreeMap<String, String> = BTreeMap::new();
    let mut finals = Vec::new();
    let mut outer: Vec<(usize, Expr, String)> = Vec::new();
    // The measures' filters, OR-ed into one filter on the rows when every
    // measure has one: a row no measure uses changes no measure, and the
    // filter reaches sources that take pushdown (PostgreSQL, Parquet row
    // groups) so those rows are never read.
    let mut any_measure: Option<Vec<Expr>> = Some(Vec::new());
    for &i in idx {
        let m = &f.file.measures[i];
        let ctx_msg = format!("measure `{}` of source `{name}`", m.name.value);
        let expr = raw
            .parse_sql_expr(&m.expr.value)
            .map_err(Error::engine(ctx_msg.clone()))?;
        let filter = match &m.filter {
            Some(t) => Some(
                raw.parse_sql_expr(&t.value)
                    .map_err(Error::engine(format!("filter of {ctx_msg}")))?,
            ),
            None => None,
        };
        match (&filter, &mut any_measure) {
            (Some(fl), Some(all)) if !all.contains(fl) => all.push(fl.clone()),
            (Some(_), Some(_)) => {}
            _ => any_measure = None,
        }
        // Rows that count for the measure: one count per distinct filter.
        let fkey = m
            .filter
            .as_ref()
            .map(|t| t.value.clone())
            .unwrap_or_default();
        let count_col = match counts.get(&fkey) {
            Some(c) => c.clone(),
            None => {
                let c_name = format!("__n{}", counts.len());
                let mut c = count(lit(1));
                if let (Some(fl), Expr::AggregateFunction(af)) = (&filter, &mut c) {
                    af.params.filter = Some(Box::new(fl.clone()));
                }
                aggs.push(c.alias(&c_name));
                counts.insert(fkey, c_name.clone());
                c_name
            }
        };
        // Pull each aggregate out of the expression, applying the filter.
        let mut j = 0usize;
        let rewritten = expr
            .transform_up(|e| match e {
                Expr::AggregateFunction(mut af) => {
                    let alias = format!("__a{i}_{j}");
                    j += 1;
                    apply_filter(&mut af, filter.as_ref());
                    if af.params.distinct && af.params.args.len() == 1 {
                        // Computed apart, over distinct (key, period, value)
                        // rows: DataFusion's per-group DISTINCT sets are slow
                        // and large with many groups.
                        distinct.push((af, alias.clone()));
                        return Ok(Transformed::yes(col(alias)));
                    }
                    let (parts, value) = deterministic(af, raw.schema(), &alias)?;
                    aggs.extend(parts);
                    Ok(Transformed::yes(value))
                }
                other => Ok(Transformed::no(other)),
            })
            .map_err(Error::engine(ctx_msg.clone()))?
            .data;
        if j == 0 {
            return Err(Error::User(format!(
                "{ctx_msg}: `expr` has no aggregate function"
            )));
        }
        outer.push((i, rewritten, count_col));
    }
    if let Some(wanted) = any_measure.and_then(disjunction) {
        rows = rows
            .filter(wanted)
            .map_err(Error::engine(format!("source `{name}`")))?;
    }
    aggs.push(count(lit(1)).alias("__n_all"));
    let group_cols: Vec<String> = group.iter().map(|g| g.schema_name().to_string()).collect();
    // Plain counts (the measures' row counts, `count(...)` measures) can be
    // counted per (key, period, value) and summed.
    let is_count = |e: &Expr| match e {
        Expr::Alias(a) => matches!(
            a.expr.as_ref(),
            Expr::AggregateFunction(af)
                if af.func.name().eq_ignore_ascii_case("count") && !af.params.distinct
        ),
        _ => false,
    };
    let only_counts = aggs.iter().all(is_count);
    let mut agg = if distinct.len() == 1 && only_counts {
        // One DISTINCT aggregate and otherwise only row counts (a measure
        // like `count(DISTINCT feature)`): one pass over the source. The
        // rows are grouped by (key, period, value) with their counts, then
        // by (key, period): the counts are summed, the aggregate reads the
        // distinct values. No second scan, no join.
        let (mut af, alias) = distinct.pop().expect("one DISTINCT aggregate");
        let mut by_value = group.clone();
        by_value.push(af.params.args[0].clone().alias("__d"));
        let count_cols: Vec<String> = aggs.iter().map(|e| e.schema_name().to_string()).collect();
        let values = rows
            .clone()
            .aggregate(by_value, aggs)
            .map_err(Error::engine(format!("aggregating source `{name}`")))?;
        af.params.distinct = false;
        af.params.args = vec![col("__d")];
        af.params.filter = None;
        let (parts, value) = deterministic(af, values.schema(), "__dv")
            .map_err(Error::engine(format!("aggregating source `{name}`")))?;
        let mut summed: Vec<Expr> = count_cols
            .iter()
            .map(|c| datafusion::functions_aggregate::expr_fn::sum(col(c)).alias(c))
            .collect();
        summed.extend(parts);
        let mut out: Vec<Expr> = group_cols.iter().map(col).collect();
        out.extend(count_cols.iter().map(col));
        out.push(value.alias(&alias));
        values
            .aggregate(group_cols.iter().map(col).collect(), summed)
            .and_then(|d| d.select(out))
            .map_err(Error::engine(format!("aggregating source `{name}`")))?
    } else {
        // Each distinct aggregate once (measures often share a row count,
        // and `avg` brings a `count` of a value that is never NULL):
        // fewer accumulators per row, where a source with millions of
        // (key, period) groups spends most of its time.
        let (kept, same) = distinct_aggregates(aggs, rows.schema())
            .map_err(Error::engine(format!("aggregating source `{name}`")))?;
        let mut agg = rows
            .clone()
            .aggregate(group.clone(), kept)
            .map_err(Error::engine(format!("aggregating source `{name}`")))?;
        if !same.is_empty() {
            let mut sel: Vec<Expr> = agg
                .schema()
                .fields()
                .iter()
                .map(|f| ident(f.name()))
                .collect();
            sel.extend(same.iter().map(|(dup, first)| ident(first).alias(dup)));
            agg = agg
                .select(sel)
                .map_err(Error::engine(format!("aggregating source `{name}`")))?;
        }
        agg
    };
    // Other DISTINCT aggregates: the distinct (key, period, value) rows
    // first, then the plain aggregate of the value per (key, period),
    // joined back.
    for (k, (mut af, alias)) in distinct.into_iter().enumerate() {
        let mut sel = group.clone();
        sel.push(af.params.args[0].clone().alias("__d"));
        af.params.distinct = false;
        af.params.args = vec![col("__d")];
        af.params.filter = None;
        let values = rows
            .clone()
            .select(sel)
            .and_then(|d| d.distinct())
            .map_err(Error::engine(format!("aggregating source `{name}`")))?;
        let (parts, value) = deterministic(af, values.schema(), "__dv")
            .map_err(Error::engine(format!("aggregating source `{name}`")))?;
        let keys: Vec<String> = group_cols.iter().map(|c| format!("{c}__d{k}")).collect();
        let mut out: Vec<Expr> = group_cols
            .iter()
            .zip(&keys)
            .map(|(c, kc)| col(c).alias(kc))
            .collect();
        out.push(value.alias(&alias));
        let sub = values
            .aggregate(group_cols.iter().map(col).collect(), parts)
            .and_then(|d| d.select(out))
            .map_err(Error::engine(format!("aggregating source `{name}`")))?;
        let left: Vec<&str> = group_cols.iter().map(String::as_str).collect();
        let right: Vec<&str> = keys.iter().map(String::as_str).collect();
        agg = agg
            .join(sub, JoinType::Left, &left, &right, None)
            .map_err(Error::engine(format!("aggregating source `{name}`")))?;
    }
    // Materialised once: the join reads it, and so does the count of rows
    // read (which would otherwise scan and parse the source again).
    let agg = crate::materialise::spool(ctx, agg, &format!("aggregating source `{name}`")).await?;
    // Rows read per period (one row, period NULL, for a source without
    // time): empty periods and orphans are told from it.
    let period_of = if packed {
        kernels::period::key_period_expr(col(format!("__kp_{name}")))
    } else if s.time.is_some() {
        col(&rp)
    } else {
        lit(ScalarValue::Date32(None))
    };
    let rows_df = agg
        .clone()
        .aggregate(
            vec![period_of.alias("period")],
            vec![datafusion::functions_aggregate::expr_fn::sum(col("__n_all")).alias("n")],
        )
        .map_err(Error::engine(format!("counting rows of source `{name}`")))?;
    // Raw measure values, then the final expressions used after the join;
    // the customer's rows of the source go along (orphans are the rows no
    // customer took).
    let mut sel: Vec<Expr> = group_cols.iter().map(col).collect();
    // 32 bits: the column rides through every join and the materialised
    // per-customer table, and no customer has 2^31 rows in a period.
    sel.push(cast(col("__n_all"), DataType::Int32).alias(rows_column(name)));
    let mut seen_counts = Vec::new();
    for (i, e, n) in &outer {
        let m = &f.file.measures[*i];
        let raw_name = format!("__m_{}", m.name.value);
        sel.push(cast(e.clone(), DataType::Float64).alias(&raw_name));
        let count_name = format!("__n_{name}_{n}");
        if !seen_counts.contains(&count_name) {
            sel.push(col(n).alias(&count_name));
            seen_counts.push(count_name.clone());
        }
        let default = lit(ScalarValue::Float64(m.default));
        let fin = when(col(&count_name).gt(lit(0i64)), col(&raw_name))
            .otherwise(default)
            .map_err(Error::engine(format!("measure `{}`", m.name.value)))?;
        finals.push((m.name.value.clone(), fin));
    }
    let agg = agg
        .select(sel)
        .map_err(Error::engine(format!("measures of source `{name}`")))?;
    Ok((agg, finals, rows_df))
}

/// Whether every value of `x` is an integer of magnitude below 2^31 (or
/// NULL): a column of a 32-bit or smaller integer type, or a literal or
/// `CASE` whose every result is such a literal. Their `Int64` sum cannot
/// overflow before 2^32 rows, and is exact.
fn small_integers(
    x: &Expr,
    schema: &datafusion::common::DFSchema,
) -> datafusion::common::Result<bool> {
    fn literal(e: &Expr) -> bool {
        let e = match e {
            Expr::Cast(c) => c.expr.as_ref(),
            Expr::TryCast(c) => c.expr.as_ref(),
            e => e,
        };
        let Expr::Literal(v, _) = e else {
            return false;
        };
        if v.is_null() {
            return true;
        }
        let bound = 2f64.powi(31);
        match v {
            ScalarValue::Float64(Some(f)) => f.fract() == 0.0 && f.abs() < bound,
            ScalarValue::Float32(Some(f)) => f.fract() == 0.0 && f64::from(f.abs()) < bound,
            ScalarValue::Int8(_)
            | ScalarValue::Int16(_)
            | ScalarValue::Int32(_)
            | ScalarValue::UInt8(_)
            | ScalarValue::UInt16(_) => true,
            ScalarValue::Int64(Some(i)) => i.unsigned_abs() < 1 << 31,
            ScalarValue::UInt32(Some(i)) => *i < 1 << 31,
            ScalarValue::UInt64(Some(i)) => *i < 1 << 31,
            _ => false,
        }
    }
    Ok(match x {
        Expr::Case(c) => {
            c.when_then_expr.iter().all(|(_, then)| literal(then))
                && c.else_expr.as_deref().is_none_or(literal)
        }
        e if literal(e) => true,
        e => matches!(
            e.get_type(schema)?,
            DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::UInt8 | DataType::UInt16
        ),
    })
}

/// Makes an aggregate give the same bits on any number of threads: `sum`
/// over floating-point values becomes the exact `croo_sum`, `avg` becomes
/// `croo_sum / count`. Integer and decimal sums are exact already; `min`,
/// `max` and counts do not depend on order. Returns the aggregates to
/// compute (aliased from `alias`) and the expression that reads them.
/// Pairs of (alias dropped, alias of the equal aggregate kept).
type Renames = Vec<(String, String)>;

/// `aggs` (aliased aggregate expressions) without repeats: `count(x)` of
/// an `x` that is never NULL becomes `count(1)`, and an aggregate equal to
/// an earlier one is dropped. Returns the aggregates kept and, for each
/// one dropped, its alias and the alias of the equal one kept.
fn distinct_aggregates(
    aggs: Vec<Expr>,
    schema: &datafusion::common::DFSchema,
) -> datafusion::common::Result<(Vec<Expr>, Renames)> {
    let mut kept: Vec<(Expr, String)> = Vec::new();
    let mut same = Vec::new();
    for e in aggs {
        let Expr::Alias(a) = e else {
            kept.push((e.clone(), String::new()));
            continue;
        };
        let mut inner = *a.expr;
        if let Expr::AggregateFunction(af) = &mut inner
            && af.func.name().eq_ignore_ascii_case("count")
            && !af.params.distinct
            && let [x] = af.params.args.as_slice()
            && !matches!(x, Expr::Literal(..))
            && !x.nullable(schema)?
        {
            af.params.args = vec![lit(1)];
        }
        match kept
            .iter()
            .find(|(k, name)| !name.is_empty() && *k == inner)
        {
            Some((_, first)) => same.push((a.name, first.clone())),
            None => kept.push((inner, a.name)),
        }
    }
    let kept = kept
        .into_iter()
        .map(|(e, name)| if name.is_empty() { e } else { e.alias(name) })
        .collect();
    Ok((kept, same))
}

fn deterministic(
    af: AggregateFunction,
    schema: &datafusion::common::DFSchema,
    alias: &str,
) -> datafusion::common::Result<(Vec<Expr>, Expr)> {
    let name = af.func.name().to_ascii_lowercase();
    let arg = af.params.args.first().cloned();
    let float_arg = match &arg {
        Some(a) => a.get_type(schema)?.is_floating(),
        None => false,
    };
    let filter = af.params.filter.clone();
    let exact = |x: Expr| -> Expr {
        let mut e = exact_sum(x);
        if let Expr::AggregateFunction(s) = &mut e {
            s.params.filter = filter.clone();
        }
        e
    };
    let small_ints = match &arg {
        Some(a) => small_integers(a, schema)?,
        None => false,
    };
    // Values that are small integers (a `CASE ... THEN 1.0 ELSE 0.0 END`,
    // an `Int32` column) are summed as `Int64`: exact in any order, and
    // DataFusion's native sum. Rounded once to Float64 at the end, which is
    // what `croo_sum` gives for the same exact sum, so the bits are the same.
    let int_sum = |x: Expr| -> Expr {
        let mut e = datafusion::functions_aggregate::expr_fn::sum(cast(x, DataType::Int64));
        if let Expr::AggregateFunction(s) = &mut e {
            s.params.filter = filter.clone();
        }
        e
    };
    match (name.as_str(), arg) {
        ("sum", Some(x)) if float_arg && small_ints && !af.params.distinct => Ok((
            vec![int_sum(x).alias(alias)],
            cast(col(alias), DataType::Float64),
        )),
        ("sum", Some(x)) if float_arg && !af.params.distinct => {
            Ok((vec![exact(x).alias(alias)], col(alias)))
        }
        ("avg" | "mean", Some(x)) if !af.params.distinct => {
            let (s, n) = (format!("{alias}_s"), format!("{alias}_n"));
            let mut c = count(x.clone());
            if let Expr::AggregateFunction(cf) = &mut c {
                cf.params.filter = filter.clone();
            }
            let sum = if small_ints {
                int_sum(x).alias(&s)
            } else {
                exact(x).alias(&s)
            };
            Ok((
                vec![sum, c.alias(&n)],
                cast(col(s), DataType::Float64) / cast(col(n), DataType::Float64),
            ))
        }
        _ => Ok((vec![Expr::AggregateFunction(af).alias(alias)], col(alias))),
    }
}

/// Restricts an aggregate to the rows passing a measure's filter. A
/// DISTINCT aggregate gets `CASE WHEN filter THEN arg END` instead, which
/// DataFusion runs much faster than `FILTER` with DISTINCT.
fn apply_filter(af: &mut AggregateFunction, filter: Option<&Expr>) {
    let Some(fl) = filter else {
        return;
    };
    if af.params.distinct && !af.params.args.is_empty() {
        af.params.args = af
            .params
            .args
            .iter()
            .map(|a| {
                when(fl.clone(), a.clone())
                    .end()
                    .unwrap_or_else(|_| a.clone())
            })
            .collect();
        return;
    }
    af.params.filter = Some(Box::new(match af.params.filter.take() {
        Some(existing) => existing.and(fl.clone()),
        None => fl.clone(),
    }));
}
