//! `GET /v1/formulas/{name}/status?period=`: each group's status against
//! the targets file beside the formula (docs/targets.md), over the rows
//! the key may read (the same scoped view as every data route).

use axum::Json;
use axum::extract::Path;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::{ApiError, ErrorBody};
use crate::routes::{ApiQuery, check_formula, parse_period, which};
use crate::view::View;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatusQuery {
    /// The period (any date inside it, its label or fiscal name).
    pub period: String,
    /// An edition of the period instead of the current one.
    pub edition: Option<u32>,
    /// What was current at this instant (RFC 3339).
    pub as_of: Option<String>,
}

/// Each group's status in one period: the rolled-up status and, per item
/// with a target (the score, a component's rollup), the actual number,
/// the target and baseline in force, the achievement and its status.
#[utoipa::path(get, path = "/v1/formulas/{name}/status", tag = "scores",
    params(("name" = String, Path, description = "formula name"), StatusQuery),
    responses((status = 200, description = "`{formula, period, period_label, targets_version, targets_digest, groups: [{dimension, value, status, items: [...]}]}`", body = Object),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn status(
    view: View,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<StatusQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let state = view.state();
    check_formula(state, &name)?;
    let Some(targets) = state.store.targets(&name)? else {
        return Err(ApiError::not_found(format!(
            "`{name}` has no targets file (NAME.targets.toml beside the formula)"
        )));
    };
    let (cal, grain) = state.store.calendar(&name)?;
    let p = parse_period("period", &q.period, (&cal, grain))?;
    let sel = view.select(
        &name,
        Some(p),
        Some(p),
        which(q.edition, q.as_of.as_deref())?,
    )?;
    if sel.runs.is_empty() {
        return Err(ApiError::not_found(format!(
            "no results of `{name}` for the period {p}"
        )));
    }
    Ok(Json(serde_json::json!({
        "formula": name,
        "period": p,
        "period_label": cal.label(grain, p),
        "targets_version": targets.version,
        "targets_digest": targets.digest,
        "groups": targets.evaluate(&sel.rows),
    })))
}
