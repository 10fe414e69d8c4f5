//! Experiment reports (docs/experiments.md): the ones `croo experiment`
//! stored, read through the scoped view.

use axum::Json;
use axum::extract::Path;

use crate::error::{ApiError, ErrorBody};
use crate::routes::check_formula;
use crate::view::View;

/// The experiments of a formula with a stored report: `{formula,
/// experiments: [{experiment, report_id}]}`.
#[utoipa::path(get, path = "/v1/formulas/{name}/experiments", tag = "experiments",
    params(("name" = String, Path, description = "formula name")),
    responses((status = 200, description = "the experiments with reports", body = Object),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn experiments(
    view: View,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    check_formula(view.state(), &name)?;
    let list: Vec<serde_json::Value> = view
        .experiments(&name)?
        .into_iter()
        .map(|(e, id)| serde_json::json!({ "experiment": e, "report_id": id }))
        .collect();
    Ok(Json(
        serde_json::json!({ "formula": name, "experiments": list }),
    ))
}

/// The latest report of one experiment, as `croo experiment --format
/// json` printed it (a scoped key: its groups only).
#[utoipa::path(get, path = "/v1/formulas/{name}/experiments/{id}", tag = "experiments",
    params(("name" = String, Path, description = "formula name"),
        ("id" = String, Path, description = "the experiment id")),
    responses((status = 200, description = "the report", body = Object),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn experiment(
    view: View,
    Path((name, id)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    check_formula(view.state(), &name)?;
    Ok(Json(view.experiment(&name, &id)?))
}
