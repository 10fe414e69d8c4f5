//! The `/v1` routes. Each handler is annotated for the OpenAPI document
//! (utoipa), so `/openapi.json` is generated from this code.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use chrono::NaiveDate;
use engine::ResultRow;
use engine::calendar::Calendar;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::keys::Role;
use crate::view::{ScopedManifest, View};

/// Query parameters with rejections as JSON errors.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}

/// One component of a result row.
#[derive(Serialize, ToSchema)]
pub struct ComponentDoc {
    pub rollup: Option<f64>,
    pub contribution: Option<f64>,
}

/// A result row, exactly as `croo run --format json` prints it.
#[derive(Serialize, ToSchema)]
pub struct ScoreRow {
    #[schema(value_type = String, format = Date)]
    pub period: NaiveDate,
    /// The period's fiscal name (`FY2027-Q1`) when the formula declares a
    /// `[calendar]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period_label: Option<String>,
    /// NULL for the whole population.
    pub dimension: Option<String>,
    pub value: Option<String>,
    pub score: Option<f64>,
    pub population: u64,
    pub included: u64,
    pub excluded: u64,
    pub weight_total: f64,
    /// False for a period published as incomplete (an event source had no
    /// rows in it; see the run's manifest).
    pub complete: bool,
    /// Component name -> rollup and contribution, in declaration order.
    #[schema(value_type = std::collections::HashMap<String, ComponentDoc>)]
    pub components: engine::Components,
    /// The run the row comes from, and the formula version and hash
    /// (`sha256:` of the file) that produced it.
    pub run_id: String,
    pub version: String,
    pub formula_hash: String,
    /// The edition of the period these rows are (1, 2, ...; absent for
    /// results stored before editions existed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edition: Option<u32>,
    /// `open`, `provisional` or `final` (docs/operations.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub state: Option<engine::editions::State>,
    /// The group's status against its targets (`on_track`, `at_risk`, ...;
    /// docs/targets.md), when the formula has a targets file and a target
    /// applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// Period -> (run id, formula version, formula hash).
type Provenance = BTreeMap<String, (String, String, String)>;

/// Period -> (edition, state).
type Editions = BTreeMap<String, (Option<u32>, Option<engine::editions::State>)>;

impl ScoreRow {
    fn with_edition(
        r: ResultRow,
        provenance: &Provenance,
        editions: &Editions,
        (cal, grain): (&Calendar, formulas::Grain),
    ) -> Self {
        let p = r.period.to_string();
        let (run_id, version, formula_hash) = provenance.get(&p).cloned().unwrap_or_default();
        let (edition, state) = editions.get(&p).copied().unwrap_or_default();
        Self {
            status: None,
            run_id,
            version,
            formula_hash,
            edition,
            state,
            period: r.period,
            period_label: cal.label(grain, r.period),
            dimension: r.dimension,
            value: r.value,
            score: r.score,
            population: r.population,
            included: r.included,
            excluded: r.excluded,
            weight_total: r.weight_total,
            complete: r.complete,
            components: r.components,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct MeasureDoc {
    pub name: String,
    pub source: String,
    pub perspective: Option<String>,
    pub unit: Option<String>,
    pub description: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ComponentDef {
    pub name: String,
    pub weight: f64,
    pub description: Option<String>,
}

/// A formula of the formulas folder.
#[derive(Serialize, ToSchema)]
pub struct FormulaDoc {
    pub name: String,
    pub version: String,
    pub description: Option<String>,
    pub owner: Option<String>,
    pub grain: String,
    pub scale: f64,
    pub dimensions: Vec<String>,
    pub perspectives: Vec<String>,
    pub measures: Vec<MeasureDoc>,
    pub components: Vec<ComponentDef>,
    /// Periods with current results, oldest first.
    pub periods: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct FormulaList {
    pub formulas: Vec<FormulaDoc>,
}

#[derive(Serialize, ToSchema)]
pub struct ScoresDoc {
    pub formula: String,
    pub by: Option<String>,
    /// Period -> the run its rows come from.
    pub runs: BTreeMap<String, String>,
    pub results: Vec<ScoreRow>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SeriesQuery {
    /// First period (any date inside it), inclusive.
    pub from: Option<String>,
    /// Last period (any date inside it), inclusive.
    pub to: Option<String>,
    /// A dimension: one row per value of it instead of the whole population.
    pub by: Option<String>,
    /// One edition of each period instead of the current one.
    pub edition: Option<u32>,
    /// What was published at this instant (RFC 3339), e.g. what the board
    /// saw: `2026-11-05T09:00:00Z`.
    pub as_of: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ByQuery {
    /// A dimension: also one row per value of it.
    pub by: Option<String>,
    /// One edition of the period instead of the current one.
    pub edition: Option<u32>,
    /// What was published at this instant (RFC 3339).
    pub as_of: Option<String>,
}

/// Which published rows `edition` and `as_of` ask for.
pub(crate) fn which(
    edition: Option<u32>,
    as_of: Option<&str>,
) -> Result<crate::view::Which, ApiError> {
    use crate::view::Which;
    match (edition, as_of) {
        (Some(_), Some(_)) => Err(ApiError::bad_request("give `edition` or `as_of`, not both")),
        (Some(0), None) => Err(ApiError::bad_request("editions are numbered from 1")),
        (Some(n), None) => Ok(Which::Edition(n)),
        // An unencoded `+01:00` arrives as ` 01:00`: read it as meant.
        (None, Some(t)) => engine::editions::parse_time(t)
            .or_else(|| engine::editions::parse_time(&t.replace(' ', "+")))
            .map(Which::AsOf)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "`as_of` `{t}` is not an RFC 3339 instant (2026-11-05T09:00:00Z)"
                ))
            }),
        (None, None) => Ok(Which::Current),
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExplainQuery {
    /// The period to explain (any date inside it).
    pub period: String,
    /// The period to compare with (a date or label, or `last-year`: the
    /// same period of the year before); default: the one before `period`.
    pub compare: Option<String>,
    /// Split the change into within-group and mix effects over this dimension.
    pub by: Option<String>,
    /// Explain one group's score instead of the whole population's:
    /// `DIMENSION=VALUE`. A key scoped to one group gets that group.
    pub group: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    /// Only runs of this formula.
    pub formula: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// The last N events (default 1000, at most 100000).
    pub limit: Option<usize>,
}

/// What to compute; at most one of `period`, `from`/`to`,
/// `last_complete` (the default).
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RunBody {
    /// A date or a label (`2026-10`), or `current` (the open period).
    pub period: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub last_complete: Option<bool>,
    /// Also recompute this many periods before the chosen ones.
    pub lookback: Option<u32>,
    /// Compute even when the inputs are those of the current editions.
    pub force: Option<bool>,
    /// Why final periods may change: publishes new editions of them
    /// (without it, a run that would change a final period publishes
    /// nothing for it and fails).
    pub restate: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct RunAccepted {
    pub run_id: String,
    pub status: String,
    /// Where to follow it.
    pub href: String,
    /// Set when the formula file differs (another hash) from the one that
    /// produced the current results: the periods this run computes become
    /// current with the new version, the others stay as they are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct RunList {
    /// Runs in the store (newest first), then runs of this server not yet
    /// in the store.
    pub runs: Vec<RunSummary>,
}

#[derive(Serialize, ToSchema)]
pub struct RunSummary {
    pub run_id: String,
    pub formula: String,
    pub version: Option<String>,
    pub periods: Vec<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// `queued`, `running`, `succeeded`, `unchanged` (nothing computed:
    /// the inputs were those of the current editions) or `failed`.
    pub outcome: String,
    /// Who started it (a key's name, `schedule:<name>`), for runs this
    /// server started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_by: Option<String>,
    /// What it did to each period's editions, for runs this server
    /// started.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outcomes: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditDoc {
    pub events: Vec<crate::audit::AuditEvent>,
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: String,
}

/// The first and last day a date or a period label names (`2026-10-07`,
/// `2026-10`, `2026-Q4`, `2026-W45`, `2026`, or a fiscal name such as
/// `FY2027-Q1` in a formula with a `[calendar]`), as the command line
/// reads them.
fn parse_span(what: &str, s: &str, cal: &Calendar) -> Result<(NaiveDate, NaiveDate), ApiError> {
    cal.parse_span(s).ok_or_else(|| {
        let fiscal = if cal.is_default() { "" } else { ", FY2027-Q1" };
        ApiError::bad_request(format!(
            "{what} `{s}` is not a date or a period (2026-10-01, 2026-10, 2026-Q4, 2026-W45{fiscal}, 2026)"
        ))
    })
}

/// The period of `grain` a date or label names: for `from`, the one
/// holding its first day; for `to`, its last day; otherwise it must name
/// one period.
pub(crate) fn parse_period(
    what: &str,
    s: &str,
    (cal, grain): (&Calendar, formulas::Grain),
) -> Result<NaiveDate, ApiError> {
    let (first, last) = parse_span(what, s, cal)?;
    let (a, b) = (cal.floor(grain, first), cal.floor(grain, last));
    match what {
        "from" => Ok(a),
        "to" => Ok(b),
        _ if a == b => Ok(a),
        _ => Err(ApiError::bad_request(format!(
            "{what} `{s}` spans several {} periods ({a} to {b}); name one",
            grain.as_str()
        ))),
    }
}

pub(crate) fn check_formula(state: &AppState, name: &str) -> Result<(), ApiError> {
    if state.store.exists(name)? {
        Ok(())
    } else {
        Err(ApiError::not_found(format!("no formula `{name}`")))
    }
}

pub(crate) fn check_dimension(
    state: &AppState,
    formula: &str,
    by: Option<&str>,
) -> Result<(), ApiError> {
    let Some(d) = by else { return Ok(()) };
    let formulas = state.store.formulas();
    let known: Option<Vec<String>> = formulas.get(formula).map(|f| {
        f.loaded
            .formula
            .file
            .dimensions
            .iter()
            .map(|x| x.name.value.clone())
            .collect()
    });
    match known {
        Some(k) if !k.iter().any(|x| x == d) => Err(ApiError::bad_request(format!(
            "`{d}` is not a dimension of `{formula}` (dimensions: {})",
            k.join(", ")
        ))),
        _ => Ok(()),
    }
}

fn formula_doc(state: &AppState, f: &engine::Loaded) -> Result<FormulaDoc, ApiError> {
    let file = &f.formula.file;
    let current = state.store.current()?;
    let mut perspectives: Vec<String> = file
        .measures
        .iter()
        .filter_map(|m| m.perspective)
        .map(|p| p.as_str().to_string())
        .collect();
    perspectives.sort();
    perspectives.dedup();
    Ok(FormulaDoc {
        name: file.name.value.clone(),
        version: file.version.value.clone(),
        description: file.description.clone(),
        owner: file.owner.clone(),
        grain: file.grain.as_str().to_string(),
        scale: file.scale,
        dimensions: file
            .dimensions
            .iter()
            .map(|d| d.name.value.clone())
            .collect(),
        perspectives,
        measures: file
            .measures
            .iter()
            .map(|m| MeasureDoc {
                name: m.name.value.clone(),
                source: m.source.value.clone(),
                perspective: m.perspective.map(|p| p.as_str().to_string()),
                unit: m.unit.clone(),
                description: m.description.clone(),
            })
            .collect(),
        components: file
            .components
            .iter()
            .map(|c| ComponentDef {
                name: c.name.value.clone(),
                weight: c.weight,
                description: c.description.clone(),
            })
            .collect(),
        periods: current
            .formulas
            .get(&file.name.value)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default(),
    })
}

/// The formulas of the formulas folder.
#[utoipa::path(get, path = "/v1/formulas", tag = "formulas",
    responses((status = 200, body = FormulaList), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_formulas(view: View) -> Result<Json<FormulaList>, ApiError> {
    let state = view.state();
    let formulas = state.store.formulas();
    let docs = formulas
        .values()
        .map(|f| formula_doc(state, &f.loaded))
        .collect::<Result<_, _>>()?;
    Ok(Json(FormulaList { formulas: docs }))
}

/// One formula: version, measures, components, perspectives.
#[utoipa::path(get, path = "/v1/formulas/{name}", tag = "formulas",
    params(("name" = String, Path, description = "formula name")),
    responses((status = 200, body = FormulaDoc), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_formula(
    view: View,
    Path(name): Path<String>,
) -> Result<Json<FormulaDoc>, ApiError> {
    let state = view.state();
    let formulas = state.store.formulas();
    let f = formulas.get(&name).ok_or_else(|| {
        ApiError::not_found(format!("no formula `{name}` in the formulas folder"))
    })?;
    Ok(Json(formula_doc(state, &f.loaded)?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EditionsQuery {
    /// The period (any date inside it, or its label).
    pub period: String,
}

/// The editions of one period (docs/operations.md): who published each,
/// when, why, from which formula version and git commit; the period's
/// state. No numbers (the scores of an edition: `scores/{period}?edition=N`).
#[utoipa::path(get, path = "/v1/formulas/{name}/editions", tag = "scores",
    params(("name" = String, Path, description = "formula name"), EditionsQuery),
    responses((status = 200, description = "`{formula, period, state, final_at, editions: [...]}`", body = Object),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn editions(
    view: View,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<EditionsQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let state = view.state();
    check_formula(state, &name)?;
    let (cal, grain) = state.store.calendar(&name)?;
    let p = parse_period("period", &q.period, (&cal, grain))?;
    let current = state.store.current()?;
    let log = current.log(&name, &p.to_string()).ok_or_else(|| {
        ApiError::not_found(format!("`{name}` has no editions for the period {p}"))
    })?;
    Ok(Json(serde_json::json!({
        "formula": name,
        "period": p,
        "state": log.state(cal.end(grain, p), chrono::Utc::now()),
        "final_at": log.final_at,
        "editions": log.editions,
    })))
}

/// The score series: the whole population, or one row per value of `by`.
#[utoipa::path(get, path = "/v1/formulas/{name}/scores", tag = "scores",
    params(("name" = String, Path, description = "formula name"), SeriesQuery),
    responses((status = 200, body = ScoresDoc), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn scores(
    view: View,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<SeriesQuery>,
) -> Result<Json<ScoresDoc>, ApiError> {
    let (state, who) = (view.state(), view.who());
    check_formula(state, &name)?;
    check_dimension(state, &name, q.by.as_deref())?;
    who.check_by(q.by.as_deref())?;
    let (cal, grain) = state.store.calendar(&name)?;
    let from = q
        .from
        .as_deref()
        .map(|s| parse_period("from", s, (&cal, grain)))
        .transpose()?;
    let to =
        q.to.as_deref()
            .map(|s| parse_period("to", s, (&cal, grain)))
            .transpose()?;
    let sel = view.select(&name, from, to, which(q.edition, q.as_of.as_deref())?)?;
    let targets = state.store.targets(&name).ok().flatten();
    let (rows, runs) = (sel.rows, sel.runs);
    let provenance = view.provenance(&runs);
    let results = rows
        .into_iter()
        .filter(|r| r.dimension.as_deref() == q.by.as_deref())
        .map(|r| {
            let status = targets.as_ref().and_then(|t| t.group_status(&r).status);
            ScoreRow {
                status,
                ..ScoreRow::with_edition(r, &provenance, &sel.editions, (&cal, grain))
            }
        })
        .collect();
    Ok(Json(ScoresDoc {
        formula: name,
        by: q.by,
        runs,
        results,
    }))
}

/// One period: the whole population (and one row per value of `by`),
/// with components and contributions.
#[utoipa::path(get, path = "/v1/formulas/{name}/scores/{period}", tag = "scores",
    params(("name" = String, Path, description = "formula name"),
        ("period" = String, Path, description = "any date inside the period"), ByQuery),
    responses((status = 200, body = ScoresDoc), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn period_scores(
    view: View,
    Path((name, period)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<ByQuery>,
) -> Result<Json<ScoresDoc>, ApiError> {
    let (state, who) = (view.state(), view.who());
    check_formula(state, &name)?;
    check_dimension(state, &name, q.by.as_deref())?;
    who.check_by(q.by.as_deref())?;
    let (cal, grain) = state.store.calendar(&name)?;
    let p = parse_period("period", &period, (&cal, grain))?;
    let sel = view.select(
        &name,
        Some(p),
        Some(p),
        which(q.edition, q.as_of.as_deref())?,
    )?;
    let targets = state.store.targets(&name).ok().flatten();
    let (rows, runs) = (sel.rows, sel.runs);
    if runs.is_empty() {
        return Err(ApiError::not_found(match (q.edition, &q.as_of) {
            (Some(n), _) => format!("`{name}` has no edition {n} for the period {p}"),
            (_, Some(t)) => format!("nothing of `{name}` for the period {p} was published by {t}"),
            _ => format!("no results of `{name}` for the period {p}"),
        }));
    }
    let provenance = view.provenance(&runs);
    let results = rows
        .into_iter()
        .filter(|r| r.dimension.is_none() || r.dimension.as_deref() == q.by.as_deref())
        .map(|r| {
            let status = targets.as_ref().and_then(|t| t.group_status(&r).status);
            ScoreRow {
                status,
                ..ScoreRow::with_edition(r, &provenance, &sel.editions, (&cal, grain))
            }
        })
        .collect();
    Ok(Json(ScoresDoc {
        formula: name,
        by: q.by,
        runs,
        results,
    }))
}

/// What moved the score between two periods: each component's change and,
/// with `by`, within-group changes and the change in the mix of groups.
#[utoipa::path(get, path = "/v1/formulas/{name}/explain", tag = "scores",
    params(("name" = String, Path, description = "formula name"), ExplainQuery),
    responses((status = 200, description = "the explanation, as `croo explain --format json` prints it", body = Object),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn explain(
    view: View,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<ExplainQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (state, who) = (view.state(), view.who());
    check_formula(state, &name)?;
    check_dimension(state, &name, q.by.as_deref())?;
    let (cal, grain) = state.store.calendar(&name)?;
    let p = parse_period("period", &q.period, (&cal, grain))?;
    let c = match &q.compare {
        Some(c) if c.trim() == engine::period::LAST_YEAR => cal.last_year(grain, p)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "compare=last-year: {p} has no counterpart in the year before (a week 53, or 29 February): name the period to compare with"
                ))
            })?,
        Some(c) => parse_period("compare", c, (&cal, grain))?,
        None => cal.floor(grain, p.pred_opt().unwrap_or(p)),
    };
    let group = match (&q.group, who.single_group()) {
        (Some(g), _) => Some(
            g.split_once('=')
                .map(|(d, v)| (d.to_string(), v.to_string()))
                .ok_or_else(|| {
                    ApiError::bad_request(format!("group `{g}` is not DIMENSION=VALUE"))
                })?,
        ),
        (None, single) if who.is_scoped() => Some(single.ok_or_else(|| {
            ApiError::forbidden(
                "this key sees several groups: choose one with group=DIMENSION=VALUE",
            )
        })?),
        (None, _) => None,
    };
    if let Some((d, v)) = &group {
        check_dimension(state, &name, Some(d))?;
        who.check_group(d, v)?;
        if q.by.is_some() {
            return Err(if who.is_scoped() {
                ApiError::forbidden("a scoped key cannot split a score over groups it does not see")
            } else {
                ApiError::bad_request("`by` explains the whole population; leave out `group`")
            });
        }
    }
    let (from, to) = (p.min(c), p.max(c));
    let (rows, runs) = view.rows(&name, Some(from), Some(to))?;
    // Why customers were excluded in the period, from its run's manifest:
    // the whole population's, or the group's.
    let exclusions = match (&group, runs.get(&p.to_string())) {
        (None, Some(run)) => view
            .manifest(run)
            .ok()
            .and_then(|m| m.get("exclusions").map(|x| x[p.to_string()].clone()))
            .filter(|x| !x.is_null())
            .unwrap_or_else(|| serde_json::json!({})),
        (Some((d, v)), Some(run)) => serde_json::to_value(view.group_exclusions(run, p, d, v)?)
            .map_err(|e| ApiError::internal(e.to_string()))?,
        _ => serde_json::Value::Null,
    };
    let rows: Vec<ResultRow> = match &group {
        // A group's rows, relabelled as the population they explain.
        Some((d, v)) => rows
            .into_iter()
            .filter(|r| r.dimension.as_deref() == Some(d) && r.value.as_deref() == Some(v))
            .map(|mut r| {
                r.dimension = None;
                r.value = None;
                r
            })
            .collect(),
        None => rows,
    };
    if !rows.iter().any(|r| r.period == p) {
        return Err(ApiError::not_found(format!(
            "no results of `{name}` for the period {p}"
        )));
    }
    let e = engine::explain::explain(&rows, p, Some(c), q.by.as_deref());
    let mut v = serde_json::to_value(&e).map_err(|e| ApiError::internal(e.to_string()))?;
    if let Some(obj) = v.as_object_mut()
        && !exclusions.is_null()
    {
        obj.insert("exclusions".into(), exclusions);
    }
    if let (Some(obj), Some((d, val))) = (v.as_object_mut(), &group) {
        obj.insert(
            "group".into(),
            serde_json::json!({"dimension": d, "value": val}),
        );
    }
    Ok(Json(v))
}

fn summary(m: &ScopedManifest, status: Option<crate::runs::RunStatus>) -> RunSummary {
    let (started_by, outcomes) =
        status.map_or((None, Vec::new()), |s| (Some(s.started_by), s.outcomes));
    RunSummary {
        started_by,
        outcomes,
        run_id: m.run_id.clone(),
        formula: m.formula.clone(),
        version: Some(m.version.clone()),
        periods: m.periods.clone(),
        started_at: Some(m.started_at.clone()),
        finished_at: Some(m.finished_at.clone()),
        outcome: m.outcome.clone(),
    }
}

/// Runs: the manifests in the store and the runs this server started.
#[utoipa::path(get, path = "/v1/runs", tag = "runs", params(RunsQuery),
    responses((status = 200, body = RunList), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_runs(
    view: View,
    ApiQuery(q): ApiQuery<RunsQuery>,
) -> Result<Json<RunList>, ApiError> {
    let mut out = Vec::new();
    let manifests = view.run_manifests()?;
    for m in manifests.iter().rev() {
        if q.formula.as_ref().is_none_or(|f| *f == m.formula) {
            out.push(summary(m, view.state().runs.get(&m.run_id)));
        }
    }
    let ids: Vec<&str> = manifests.iter().map(|m| m.run_id.as_str()).collect();
    for s in view.state().runs.all() {
        if !ids.contains(&s.run_id.as_str()) && q.formula.as_ref().is_none_or(|f| *f == s.formula) {
            out.push(RunSummary {
                run_id: s.run_id,
                formula: s.formula,
                version: None,
                periods: s.periods,
                started_at: Some(s.requested_at),
                finished_at: s.finished_at,
                outcome: s.status,
                started_by: Some(s.started_by),
                outcomes: s.outcomes,
            });
        }
    }
    Ok(Json(RunList { runs: out }))
}

/// One run: its manifest once written, else its progress. Numbers in the
/// manifest (rows read, population statistics) are hidden from scoped keys.
#[utoipa::path(get, path = "/v1/runs/{id}", tag = "runs",
    params(("id" = String, Path, description = "run id")),
    responses((status = 200, description = "the manifest, or `{run_id, status, ...}` while it runs", body = Object),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_run(
    view: View,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let status = view.state().runs.get(&id);
    let manifest = match view.manifest(&id) {
        Ok(m) => Some(m),
        Err(e) if e.status == StatusCode::NOT_FOUND => None,
        Err(e) => return Err(e),
    };
    let mut v = match (manifest, &status) {
        (Some(m), _) => m,
        (None, Some(s)) => {
            serde_json::to_value(s).map_err(|e| ApiError::internal(e.to_string()))?
        }
        (None, None) => return Err(ApiError::not_found(format!("no run `{id}`"))),
    };
    if let Some(obj) = v.as_object_mut() {
        if let Some(s) = &status {
            obj.insert("status".into(), serde_json::json!(s.status));
            obj.insert("started_by".into(), serde_json::json!(s.started_by));
            // Why this server's run failed after its manifest was written
            // (final periods it may not change), unless the key is scoped:
            // the message holds every group's numbers.
            if let Some(e) = &s.error
                && obj.get("error").is_none_or(serde_json::Value::is_null)
            {
                obj.insert("error".into(), serde_json::json!(e));
            }
            if !s.outcomes.is_empty() {
                obj.insert("outcomes".into(), serde_json::json!(s.outcomes));
            }
            if view.who().is_scoped() {
                obj.remove("error");
            }
        } else if let Some(o) = obj.get("outcome").cloned() {
            obj.insert("status".into(), o);
        }
    }
    Ok(Json(v))
}

/// Starts a run of a formula in the background (operator role).
#[utoipa::path(post, path = "/v1/formulas/{name}/runs", tag = "runs",
    params(("name" = String, Path, description = "formula name")),
    request_body(content = RunBody, description = "periods to compute; empty: the last complete one"),
    responses((status = 202, body = RunAccepted), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn start_run(
    view: View,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let (state, who) = (view.state(), view.who());
    who.require(Role::Operator)?;
    let formulas = state.store.formulas();
    let f = formulas.get(&name).ok_or_else(|| {
        ApiError::not_found(format!("no formula `{name}` in the formulas folder"))
    })?;
    let body: RunBody = if body.iter().all(u8::is_ascii_whitespace) {
        RunBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("request body: {e}")))?
    };
    let grain = f.loaded.formula.file.grain;
    let cal = Calendar::of(&f.loaded.formula.file);
    let choice = match (&body.period, &body.from, &body.to, body.last_complete) {
        (Some(p), None, None, None | Some(false)) if p.trim() == "current" => {
            engine::PeriodChoice::Current
        }
        (Some(p), None, None, None | Some(false)) => {
            // A label may name several periods (`2026-Q3` of a monthly
            // formula), as on the command line.
            let (first, last) = parse_span("period", p, &cal)?;
            let (a, b) = (cal.floor(grain, first), cal.floor(grain, last));
            let n = cal.range(grain, a, b).len();
            if n > state.max_run_periods {
                return Err(ApiError::bad_request(format!(
                    "{n} periods asked; one request computes at most {}",
                    state.max_run_periods
                )));
            }
            if a == b {
                engine::PeriodChoice::One(a)
            } else {
                engine::PeriodChoice::Range(a, b)
            }
        }
        (None, Some(a), Some(b), None | Some(false)) => {
            let (a, b) = (
                parse_period("from", a, (&cal, grain))?,
                parse_period("to", b, (&cal, grain))?,
            );
            if a > b {
                return Err(ApiError::bad_request("`from` is after `to`"));
            }
            let n = cal.range(grain, a, b).len();
            if n > state.max_run_periods {
                return Err(ApiError::bad_request(format!(
                    "{n} periods asked; one request computes at most {}",
                    state.max_run_periods
                )));
            }
            engine::PeriodChoice::Range(a, b)
        }
        (None, None, None, _) => engine::PeriodChoice::LastComplete,
        _ => {
            return Err(ApiError::bad_request(
                "give `period`, or `from` and `to`, or `last_complete`",
            ));
        }
    };
    // Another version of the formula than the one behind the current
    // results: said in the answer and the audit log.
    let current = state.store.current()?;
    let note = current
        .formulas
        .get(&name)
        .and_then(|runs| runs.iter().next_back())
        .map(|(p, r)| BTreeMap::from([(p.clone(), r.clone())]))
        .and_then(|latest| view.provenance(&latest).into_values().next())
        .filter(|(_, _, hash)| *hash != f.loaded.hash)
        .map(|(run, version, hash)| {
            format!(
                "this run uses `{name}` version {} ({}); the current results come from version {version} ({hash}, run {run}): the periods this run computes become current with the new version, the others stay as they are",
                f.loaded.formula.file.version.value, f.loaded.hash
            )
        });
    if let Some(r) = &body.restate
        && r.trim().is_empty()
    {
        return Err(ApiError::bad_request("`restate` needs a reason"));
    }
    let publishing = engine::Publishing {
        publisher: engine::editions::Publisher {
            actor: who.name.clone(),
            restate: body.restate.clone(),
            git: None,
        },
        lookback: body.lookback.unwrap_or(0).min(state.max_run_periods as u32),
        force: body.force.unwrap_or(false),
    };
    let id = crate::runs::start(
        state,
        f.path.clone(),
        name,
        choice,
        publishing,
        note.clone(),
    );
    Ok((
        StatusCode::ACCEPTED,
        Json(RunAccepted {
            href: format!("/v1/runs/{id}"),
            run_id: id,
            status: "queued".into(),
            note,
        }),
    ))
}

/// The audit log (admin role).
#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = AuditDoc), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn audit(
    view: View,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<AuditDoc>, ApiError> {
    let (state, who) = (view.state(), view.who());
    who.require(Role::Admin)?;
    let limit = q.limit.unwrap_or(1000).min(100_000);
    let mut events = state.audit.read(limit).map_err(|e| {
        tracing::error!(error = %e, "cannot read the audit log");
        ApiError::internal("the audit log cannot be read; see the server log")
    })?;
    // Denials of the minute still running are counted in memory, not yet
    // written: shown too, marked as such.
    events.extend(state.guard.pending());
    Ok(Json(AuditDoc { events }))
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Readiness: the results store and the keys file can be read.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Health), (status = 503, body = ErrorBody)))]
pub async fn readyz(State(state): State<Arc<AppState>>) -> Result<Json<Health>, ApiError> {
    let unavailable = |m: String| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m);
    state
        .store
        .current()
        .map_err(|e| unavailable(format!("results store: {}", e.message)))?;
    state
        .keys
        .file()
        .map_err(|e| unavailable(format!("keys: {}", e.message)))?;
    Ok(Json(Health {
        status: "ready".into(),
    }))
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}
