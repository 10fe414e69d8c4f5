//! The customers behind a number (docs/api.md, "Customers"): a page of one
//! period's customers of a group, sorted by score, a component's
//! contribution or change since the previous period, and one customer's
//! rows over time. Both go through the scoped view: a key sees the
//! customers of its scope as of each period, and any other customer is
//! not found.

use axum::Json;
use axum::extract::Path;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::{ApiError, ErrorBody};
use crate::routes::{ApiQuery, check_formula, parse_period};
use crate::view::View;

/// The most customers one page holds.
pub const MAX_LIMIT: usize = 500;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CustomersQuery {
    /// The period (any date inside it, its label or fiscal name).
    pub period: String,
    /// One group, `DIMENSION=VALUE` (default: every customer the key sees).
    pub group: Option<String>,
    /// `score` (default), `change` (since the previous period: the
    /// movers), `contribution.COMPONENT`; lowest first, `-` in front for
    /// highest first.
    pub sort: Option<String>,
    /// Customers per page (default 50, at most 500).
    pub limit: Option<usize>,
    /// The `next` of the previous page.
    pub cursor: Option<String>,
}

/// A cursor: the run the page was read from and the offset of the next
/// page. A period republished since is a new run: the cursor is refused.
fn cursor(run: &str, offset: usize) -> String {
    format!("{run}.{offset}")
}

fn parse_cursor(c: &str) -> Option<(String, usize)> {
    let (run, offset) = c.rsplit_once('.')?;
    Some((run.to_string(), offset.parse().ok()?))
}

/// One period's customers: `{formula, period, period_label, run_id, group,
/// sort, total, customers: [{key, score, included, change,
/// previous_score, dimensions, components: {NAME: {value,
/// contribution}}}], next}`.
#[utoipa::path(get, path = "/v1/formulas/{name}/customers", tag = "customers",
    params(("name" = String, Path, description = "formula name"), CustomersQuery),
    responses((status = 200, description = "a page of customers", body = Object),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn customers(
    view: View,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<CustomersQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let state = view.state();
    check_formula(state, &name)?;
    let (cal, grain) = state.store.calendar(&name)?;
    let p = parse_period("period", &q.period, (&cal, grain))?;
    let sort_text = q.sort.clone().unwrap_or_else(|| "score".into());
    let sort = engine::customers::Sort::parse(&sort_text).ok_or_else(|| {
        ApiError::bad_request(format!(
            "sort `{sort_text}`: expected score, change or contribution.COMPONENT, with - for highest first"
        ))
    })?;
    let limit = q.limit.unwrap_or(50);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::bad_request(format!(
            "limit {limit}: from 1 to {MAX_LIMIT}"
        )));
    }
    let group = match &q.group {
        Some(g) => Some(g.split_once('=').ok_or_else(|| {
            ApiError::bad_request(format!("group `{g}`: expected DIMENSION=VALUE"))
        })?),
        None => None,
    };
    let (expect_run, offset) = match &q.cursor {
        Some(c) => {
            let (run, offset) = parse_cursor(c).ok_or_else(|| {
                ApiError::bad_request(format!("cursor `{c}` is not one this server gave"))
            })?;
            (Some(run), offset)
        }
        None => (None, 0),
    };
    let previous = cal.floor(grain, p.pred_opt().unwrap_or(p));
    let (run, page) = view
        .customers(
            &name,
            p,
            (previous != p).then_some(previous),
            group,
            &sort,
            offset,
            limit,
        )
        .await?;
    if expect_run.is_some_and(|r| r != run) {
        return Err(ApiError::bad_request(format!(
            "the period {p} was published again since this cursor: start from the first page"
        )));
    }
    Ok(Json(serde_json::json!({
        "formula": name,
        "period": p,
        "period_label": cal.label(grain, p),
        "run_id": run,
        "group": q.group,
        "sort": sort_text,
        "total": page.total,
        "customers": page.customers,
        "next": page.next.map(|o| cursor(&run, o)),
    })))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CustomerQuery {
    /// First period (default: the first published).
    pub from: Option<String>,
    /// Last period (default: the last published).
    pub to: Option<String>,
}

/// One customer over time: per period its dimensions, measures, derived
/// values, components (value and contribution), score, rollup weight and
/// whether it was included, and (for an unscoped key) the population
/// statistics that normalised them.
#[utoipa::path(get, path = "/v1/formulas/{name}/customers/{key}", tag = "customers",
    params(("name" = String, Path, description = "formula name"),
        ("key" = String, Path, description = "the customer's key"), CustomerQuery),
    responses((status = 200, description = "`{formula, key, periods: [...], population_stats: [...]}`", body = Object),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn customer(
    view: View,
    Path((name, key)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<CustomerQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let state = view.state();
    check_formula(state, &name)?;
    let (cal, grain) = state.store.calendar(&name)?;
    let bound = |s: &Option<String>, what: &str, default: chrono::NaiveDate| match s {
        Some(s) => parse_period(what, s, (&cal, grain)),
        None => Ok(default),
    };
    let from = bound(&q.from, "from", chrono::NaiveDate::MIN)?;
    let to = bound(&q.to, "to", chrono::NaiveDate::MAX)?;
    let (periods, stats) = view.customer(&name, &key, from, to).await?;
    let periods: Vec<serde_json::Value> = periods
        .iter()
        .map(|c| {
            let mut v = serde_json::to_value(c).unwrap_or_default();
            if let Some(o) = v.as_object_mut()
                && let Some(l) = cal.label(grain, c.period)
            {
                o.insert("period_label".into(), l.into());
            }
            v
        })
        .collect();
    Ok(Json(serde_json::json!({
        "formula": name,
        "key": key,
        "periods": periods,
        "population_stats": stats,
    })))
}
