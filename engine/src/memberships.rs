//! Dimensions as of each period: a dimension read from a history source
//! (rows valid in `[valid_from, valid_to)`, `valid_to` NULL for the
//! current row, the shape dbt snapshots write) takes, for each customer
//! and period, the value valid at the period's first instant
//! (`as_of = "period_start"`) or last instant (`"period_end"`, the
//! default); a customer with no valid row is in the group `(none)`.
//! [`attach`] is the entry point: it checks each history source
//! (`valid_to` before `valid_from`, two open rows for one key, overlapping
//! intervals: errors naming the source and the first keys) and joins the
//! values onto the population.

use std::collections::BTreeMap;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::logical_expr::{Expr, JoinType, col, ident, lit};
use datafusion::prelude::{DataFrame, SessionContext, cast, coalesce};
use formulas::{AsOf, Formula, Source};

use crate::columns::{KEY, dim_col, table_name};
use crate::error::{Error, Result};

/// The group of a customer with no valid row in a period.
pub const NONE: &str = "(none)";

/// The history source of each history dimension, by dimension index.
pub fn history_dimensions(f: &Formula) -> Vec<(usize, &formulas::Dimension, &Source)> {
    f.file
        .dimensions
        .iter()
        .enumerate()
        .filter_map(|(i, d)| {
            let s = f.file.source(&d.source.as_ref()?.value)?;
            Some((i, d, s))
        })
        .collect()
}

/// Checks the history sources and joins each history dimension's value
/// onto `pop` (which holds `KEY`, `pstart` and `pend`) as `dim_col(i)`,
/// `(none)` where no row is valid, in `dim_type`.
pub async fn attach(
    ctx: &SessionContext,
    f: &Formula,
    schemas: &BTreeMap<String, SchemaRef>,
    mut pop: DataFrame,
    key_ty: &DataType,
    (pstart, pend): (&str, &str),
    dim_type: &DataType,
) -> Result<DataFrame> {
    let mut checked: Vec<&str> = Vec::new();
    for (i, d, s) in history_dimensions(f) {
        let (from, to) = columns(s)?;
        if !checked.contains(&s.name.value.as_str()) {
            check(ctx, s, schemas).await?;
            checked.push(&s.name.value);
        }
        let schema = &schemas[&s.name.value];
        let instant = |c: &str| -> Result<Expr> {
            let ty = schema
                .field_with_name(c)
                .map(|f| f.data_type().clone())
                .unwrap_or(DataType::Null);
            crate::columns::as_instant(c, &ty).ok_or_else(|| {
                Error::User(format!(
                    "column `{c}` of source `{}` is {ty}, not a timestamp, date or ISO 8601 string",
                    s.name.value
                ))
            })
        };
        let (hk, hv, hf, ht) = (
            format!("__hk_{i}"),
            format!("__hv_{i}"),
            format!("__hf_{i}"),
            format!("__ht_{i}"),
        );
        let hist = ctx
            .table(table_name(&s.name.value))
            .await
            .map_err(Error::engine(format!("reading source `{}`", s.name.value)))?
            .select(vec![
                cast(ident(&s.key.value), key_ty.clone()).alias(&hk),
                cast(ident(&d.column.value), DataType::Utf8).alias(&hv),
                instant(from)?.alias(&hf),
                instant(to)?.alias(&ht),
            ])
            .map_err(Error::engine(format!("source `{}`", s.name.value)))?;
        // Valid at the instant: from <= t < to. The period's last instant
        // is just before its end: from < end <= to.
        let valid = match d.as_of {
            AsOf::PeriodStart => col(&hf)
                .lt_eq(col(pstart))
                .and(col(&ht).is_null().or(col(&ht).gt(col(pstart)))),
            AsOf::PeriodEnd => col(&hf)
                .lt(col(pend))
                .and(col(&ht).is_null().or(col(&ht).gt_eq(col(pend)))),
        };
        let names: Vec<String> = pop
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        pop = pop
            .join_on(hist, JoinType::Left, [col(KEY).eq(col(&hk)), valid])
            .map_err(Error::engine(format!(
                "planning dimension `{}`",
                d.name.value
            )))?;
        let mut keep: Vec<Expr> = names.iter().map(col).collect();
        keep.push(cast(coalesce(vec![col(&hv), lit(NONE)]), dim_type.clone()).alias(dim_col(i)));
        pop = pop.select(keep).map_err(Error::engine(format!(
            "planning dimension `{}`",
            d.name.value
        )))?;
    }
    Ok(pop)
}

fn columns(s: &Source) -> Result<(&str, &str)> {
    match (&s.valid_from, &s.valid_to) {
        (Some(f), Some(t)) => Ok((f.value.as_str(), t.value.as_str())),
        _ => Err(Error::User(format!(
            "history source `{}` needs `valid_from` and `valid_to`",
            s.name.value
        ))),
    }
}

/// The three rules of a history: `valid_to` after `valid_from`, at most
/// one open row per key, no two rows of one key valid at once (also what
/// `croo check` reports, at the source's `valid_from`).
pub(crate) async fn check(
    ctx: &SessionContext,
    s: &Source,
    schemas: &BTreeMap<String, SchemaRef>,
) -> Result<()> {
    let (from, to) = columns(s)?;
    let schema = &schemas[&s.name.value];
    let instant = |c: &str| {
        let ty = schema
            .field_with_name(c)
            .map(|f| f.data_type().clone())
            .unwrap_or(DataType::Null);
        crate::columns::as_instant(c, &ty)
    };
    let (Some(vf), Some(vt)) = (instant(from), instant(to)) else {
        return Err(Error::User(format!(
            "source `{}`: `{from}` and `{to}` must hold instants (timestamps, dates or ISO 8601 strings)",
            s.name.value
        )));
    };
    let what = format!("checking history source `{}`", s.name.value);
    let rows = ctx
        .table(table_name(&s.name.value))
        .await
        .map_err(Error::engine(what.clone()))?
        .select(vec![
            cast(ident(&s.key.value), DataType::Utf8).alias("k"),
            vf.alias("f"),
            vt.alias("t"),
        ])
        .map_err(Error::engine(what.clone()))?;
    let table = format!("__history_check_{}", s.name.value);
    ctx.register_table(table.as_str(), rows.into_view())
        .map_err(Error::engine(what.clone()))?;
    let name = &s.name.value;
    let key = &s.key.value;
    let checks = [
        (
            format!(
                "SELECT DISTINCT k FROM \"{table}\" WHERE t < f OR f IS NULL ORDER BY k LIMIT 5"
            ),
            format!("`{to}` before `{from}` (or no `{from}`) for {key}"),
        ),
        (
            format!(
                "SELECT k FROM \"{table}\" WHERE t IS NULL GROUP BY k HAVING count(*) > 1 ORDER BY k LIMIT 5"
            ),
            format!("more than one open row (`{to}` NULL) for {key}"),
        ),
        (
            format!(
                "SELECT DISTINCT k FROM (SELECT k, f, lag(t) OVER (PARTITION BY k ORDER BY f, t) AS pt, \
                 row_number() OVER (PARTITION BY k ORDER BY f, t) AS n FROM \"{table}\") \
                 WHERE n > 1 AND (pt IS NULL OR pt > f) ORDER BY k LIMIT 5"
            ),
            format!("overlapping validity intervals for {key}"),
        ),
    ];
    let mut result = Ok(());
    for (sql, what_fails) in checks {
        let keys = match ctx.sql(&sql).await {
            Ok(df) => df.collect().await,
            Err(e) => Err(e),
        };
        let batches = match keys {
            Ok(b) => b,
            Err(e) => {
                result = Err(Error::engine(what.clone())(e));
                break;
            }
        };
        let mut found = Vec::new();
        for b in &batches {
            let a = b.column(0).as_string::<i32>();
            for r in 0..a.len() {
                found.push(if a.is_null(r) {
                    "NULL".to_string()
                } else {
                    a.value(r).to_string()
                });
            }
        }
        if !found.is_empty() {
            result = Err(Error::User(format!(
                "source `{name}`: {what_fails} {} (a customer's rows must be valid in [`{from}`, `{to}`) one after the other, with at most the last one open)",
                found.join(", ")
            )));
            break;
        }
    }
    let _ = ctx.deregister_table(table.as_str());
    result
}
