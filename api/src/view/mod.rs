//! What one request may read: the results store seen through its key's
//! scope. Every data route takes a [`View`] (an extractor), and the only
//! way to the numbers of the store (result rows, manifests) is through it:
//! the store's reading functions are private to this module. So a scoped
//! key's request cannot be served unfiltered, whatever a handler forgets.
//!
//! - result rows: a scoped key sees only the rows of its groups, never the
//!   whole population's ([`View::rows`]);
//! - manifests: a scoped key gets [`ScopedManifest`], built field by field
//!   from an allow-list ([`MANIFEST_FOR_SCOPED`]); a field added to the
//!   manifest later is hidden until it is put on that list (a test fails
//!   until each field is classified as shown or hidden).

pub mod store;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use chrono::NaiveDate;
use engine::ResultRow;
use engine::store::Manifest;
use serde::Serialize;

use crate::AppState;
use crate::auth::Principal;
use crate::error::ApiError;

/// The store as one request's key may see it.
pub struct View {
    state: Arc<AppState>,
    who: Principal,
}

impl FromRequestParts<Arc<AppState>> for View {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        // `auth::require_key` puts the principal there on every data route;
        // a route without it is refused rather than served as anyone.
        let who = parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| {
                ApiError::unauthorized("this route needs a key: Authorization: Bearer <key>")
            })?;
        Ok(View {
            state: Arc::clone(state),
            who,
        })
    }
}

/// A run's manifest as a scoped key sees it: who ran what and when, never
/// numbers (rows read, file sizes, population statistics) nor text that
/// may quote data (warnings, errors).
#[derive(Debug, Serialize)]
pub struct ScopedManifest {
    pub run_id: String,
    pub formula: String,
    pub version: String,
    pub formula_hash: String,
    pub engine_version: String,
    pub grain: String,
    /// The formula's `[calendar]`, when it declares one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calendar: Option<formulas::CalendarSpec>,
    pub periods: Vec<String>,
    pub started_at: String,
    pub finished_at: String,
    /// Source names only.
    pub sources: Vec<String>,
    /// Periods published as incomplete, with the sources that had no rows.
    pub incomplete_periods: BTreeMap<String, Vec<String>>,
    pub outcome: String,
}

/// The manifest fields a scoped key sees (those of [`ScopedManifest`]).
pub const MANIFEST_FOR_SCOPED: &[&str] = &[
    "run_id",
    "formula",
    "version",
    "formula_hash",
    "engine_version",
    "grain",
    "calendar",
    "periods",
    "started_at",
    "finished_at",
    "sources",
    "incomplete_periods",
    "outcome",
];

/// The manifest fields a scoped key never sees.
pub const MANIFEST_HIDDEN: &[&str] = &[
    "formula_path",
    "parameters",
    "population_stats",
    "warnings",
    "error",
    "checks",
    "exclusions",
    // The numbers a refused restatement would have changed, per group.
    "publications",
    // Every group's exclusions (a scoped key reads its own group's through
    // `View::group_exclusions`).
    "group_exclusions",
];

impl From<&Manifest> for ScopedManifest {
    fn from(m: &Manifest) -> Self {
        ScopedManifest {
            run_id: m.run_id.clone(),
            formula: m.formula.clone(),
            version: m.version.clone(),
            formula_hash: m.formula_hash.clone(),
            engine_version: m.engine_version.clone(),
            grain: m.grain.clone(),
            calendar: m.calendar.clone(),
            periods: m.periods.clone(),
            started_at: m.started_at.clone(),
            finished_at: m.finished_at.clone(),
            sources: m.sources.iter().map(|s| s.name.clone()).collect(),
            incomplete_periods: m.incomplete_periods.clone(),
            outcome: m.outcome.clone(),
        }
    }
}

/// The result rows of a run for the server's own work (evaluating
/// alerts), never for a request: requests read through a [`View`].
pub(crate) fn server_rows(state: &AppState, run_id: &str) -> Result<Arc<Vec<ResultRow>>, ApiError> {
    state.store.rows(run_id)
}

/// Which published rows a read wants.
#[derive(Debug, Clone, Copy)]
pub enum Which {
    /// Each period's current edition.
    Current,
    /// Edition `n` of each period (periods without one are left out).
    Edition(u32),
    /// What was current at an instant (what the board saw then).
    AsOf(chrono::DateTime<chrono::Utc>),
}

/// Rows selected by a [`Which`], with each period's run, edition and
/// state (`None` for results stored before editions existed).
#[derive(Debug, Default)]
pub struct Selected {
    pub rows: Vec<ResultRow>,
    pub runs: BTreeMap<String, String>,
    pub editions: BTreeMap<String, (Option<u32>, Option<engine::editions::State>)>,
}

impl View {
    /// Who is asking.
    pub fn who(&self) -> &Principal {
        &self.who
    }

    /// The server's state (formulas, runs, audit log). Its store gives no
    /// numbers outside this module.
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// The current result rows of `formula` for the periods in `[from, to]`
    /// that this key may see, with the run each period comes from.
    pub fn rows(
        &self,
        formula: &str,
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
    ) -> Result<(Vec<ResultRow>, BTreeMap<String, String>), ApiError> {
        let s = self.select(formula, from, to, Which::Current)?;
        Ok((s.rows, s.runs))
    }

    /// The result rows `which` selects (current, one edition, or what was
    /// published at an instant) that this key may see, with each period's
    /// run, edition and state.
    pub fn select(
        &self,
        formula: &str,
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
        which: Which,
    ) -> Result<Selected, ApiError> {
        let mut s = self.state.store.selected_rows(formula, from, to, which)?;
        s.rows.retain(|r| self.who.sees(r));
        Ok(s)
    }

    /// The experiments with stored reports of `formula`: `(experiment,
    /// latest report id)`. No numbers.
    pub fn experiments(&self, formula: &str) -> Result<Vec<(String, String)>, ApiError> {
        engine::experiment::store::list(&self.state.store.results, formula)
            .map_err(ApiError::from_engine)
    }

    /// The latest report of an experiment: whole for an unscoped key; for
    /// a scoped one, only the groups of its scope (and their guardrails),
    /// without the whole-population comparisons, components, periods and
    /// sample-ratio counts.
    pub fn experiment(&self, formula: &str, id: &str) -> Result<serde_json::Value, ApiError> {
        let Some(mut v) = engine::experiment::store::latest(&self.state.store.results, formula, id)
            .map_err(ApiError::from_engine)?
        else {
            return Err(ApiError::not_found(format!(
                "no report of experiment `{id}` of `{formula}` (croo experiment ... --out)"
            )));
        };
        if self.who.is_scoped()
            && let Some(o) = v.as_object_mut()
        {
            o.remove("srm");
            o.remove("excluded_multiple_arms");
            let sees = |d: &str, v: &str| self.who.check_group(d, v).is_ok();
            for arm in o
                .get_mut("arms")
                .and_then(|a| a.as_array_mut())
                .into_iter()
                .flatten()
            {
                let Some(a) = arm.as_object_mut() else {
                    continue;
                };
                for k in ["overall", "cuped", "bootstrap", "periods", "components"] {
                    a.remove(k);
                }
                if let Some(g) = a.get_mut("groups").and_then(|g| g.as_array_mut()) {
                    g.retain(|g| {
                        sees(
                            g["dimension"].as_str().unwrap_or_default(),
                            g["value"].as_str().unwrap_or_default(),
                        )
                    });
                }
                if let Some(g) = a.get_mut("guardrails").and_then(|g| g.as_array_mut()) {
                    g.retain(|g| {
                        g["group"]
                            .as_str()
                            .and_then(|x| x.split_once('='))
                            .is_some_and(|(d, v)| sees(d, v))
                    });
                }
            }
        }
        Ok(v)
    }

    /// A page of the customers of one period that this key may see (those
    /// in a group of its scope as of the period), in `group` when given,
    /// sorted by `sort`; `previous` names the period `change` is measured
    /// from. Returns the period's run with the page.
    #[allow(clippy::too_many_arguments)]
    pub async fn customers(
        &self,
        formula: &str,
        period: NaiveDate,
        previous: Option<NaiveDate>,
        group: Option<(&str, &str)>,
        sort: &engine::customers::Sort,
        offset: usize,
        limit: usize,
    ) -> Result<(String, engine::customers::Page), ApiError> {
        if let Some((d, v)) = group {
            self.who.check_group(d, v)?;
        }
        let store = &self.state.store;
        let Some(run) = store.detail_runs(formula, period, period)?.remove(&period) else {
            return Err(ApiError::not_found(format!(
                "no results of `{formula}` for the period {period}"
            )));
        };
        let table = store.period_table(&run, period).await?;
        let before = match (sort, previous) {
            (engine::customers::Sort::Change { .. }, Some(p)) => {
                match store.detail_runs(formula, p, p)?.remove(&p) {
                    Some(r) => Some((r.clone(), store.period_table(&r, p).await?)),
                    None => None,
                }
            }
            _ => None,
        };
        let order = store.order(
            (
                run.clone(),
                period,
                sort.clone(),
                before.as_ref().map(|b| b.0.clone()),
            ),
            &table,
            before.as_ref().map(|b| b.1.as_ref()),
        )?;
        let page = table.page(&order, group, self.who.customer_scope(), offset, limit);
        Ok((run, page))
    }

    /// One customer's rows in the periods of `[from, to]` in which this
    /// key may see it, with the population statistics of those periods
    /// for an unscoped key (they describe customers outside any scope).
    /// A customer this key cannot see is not found, like one that does
    /// not exist.
    pub async fn customer(
        &self,
        formula: &str,
        key: &str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<
        (
            Vec<engine::customers::CustomerPeriod>,
            Vec<engine::store::PopulationStats>,
        ),
        ApiError,
    > {
        let mut by_run: BTreeMap<String, Vec<NaiveDate>> = BTreeMap::new();
        for (p, run) in self.state.store.detail_runs(formula, from, to)? {
            by_run.entry(run).or_default().push(p);
        }
        let mut rows = Vec::new();
        let mut stats = Vec::new();
        for (run, periods) in by_run {
            let found =
                engine::customers::read_customer(&self.state.store.results, &run, key, &periods)
                    .await
                    .map_err(ApiError::from_engine)?;
            let mut seen = Vec::new();
            for c in found {
                let value_of = |d: &str| c.dimensions.get(d).cloned().flatten();
                if self.who.sees_customer(&value_of) {
                    seen.push(c.period.to_string());
                    rows.push(c);
                }
            }
            if !self.who.is_scoped() && !seen.is_empty() {
                let m = self.state.store.manifest(&run)?;
                stats.extend(
                    m.population_stats
                        .into_iter()
                        .filter(|s| seen.contains(&s.period)),
                );
            }
        }
        if rows.is_empty() {
            return Err(ApiError::not_found(format!(
                "no customer `{key}` of `{formula}` from {from} to {to}"
            )));
        }
        rows.sort_by_key(|c| c.period);
        Ok((rows, stats))
    }

    /// For each period of `runs` (period -> run id): the run id, and the
    /// formula version and hash that produced its rows.
    pub fn provenance(
        &self,
        runs: &BTreeMap<String, String>,
    ) -> BTreeMap<String, (String, String, String)> {
        runs.iter()
            .filter_map(|(period, run)| {
                let (version, hash) = self.state.store.provenance(run)?;
                Some((period.clone(), (run.clone(), version, hash)))
            })
            .collect()
    }

    /// A run's manifest (as JSON): whole for an unscoped key, the
    /// allow-listed fields for a scoped one.
    pub fn manifest(&self, run_id: &str) -> Result<serde_json::Value, ApiError> {
        let m = self.state.store.manifest(run_id)?;
        let v = if self.who.is_scoped() {
            serde_json::to_value(ScopedManifest::from(&m))
        } else {
            serde_json::to_value(&m)
        };
        v.map_err(|e| ApiError::internal(e.to_string()))
    }

    /// Why customers of one group were excluded in a period, from the
    /// run's manifest: only for a group this key may see.
    pub fn group_exclusions(
        &self,
        run_id: &str,
        period: NaiveDate,
        dimension: &str,
        value: &str,
    ) -> Result<BTreeMap<String, u64>, ApiError> {
        self.who.check_group(dimension, value)?;
        let m = self.state.store.manifest(run_id)?;
        Ok(m.group_exclusions
            .get(&period.to_string())
            .and_then(|g| g.get(&engine::exclusions::group_name(dimension, Some(value))))
            .cloned()
            .unwrap_or_default())
    }

    /// Who ran what, when: the run ids of the store (oldest first) with the
    /// manifests that could be read. No numbers.
    pub fn run_manifests(&self) -> Result<Vec<ScopedManifest>, ApiError> {
        let ids = self.state.store.run_ids()?;
        Ok(ids
            .iter()
            .filter_map(|id| self.state.store.manifest(id).ok())
            .map(|m| ScopedManifest::from(&m))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field of the manifest is either shown to scoped keys or
    /// hidden from them, and the scoped view has exactly the shown ones:
    /// a new manifest field fails here until someone decides.
    #[test]
    fn every_manifest_field_is_classified() {
        let m = Manifest {
            run_id: "r".into(),
            formula: "f".into(),
            version: "1".into(),
            formula_hash: "sha256:0".into(),
            formula_path: "/f.toml".into(),
            engine_version: "0".into(),
            grain: "month".into(),
            calendar: Some(formulas::CalendarSpec {
                kind: formulas::CalendarKind::Gregorian {
                    fiscal_year_start: 7,
                },
                year_label: formulas::YearLabel::End,
                time_zone: None,
            }),
            periods: vec!["2026-01-01".into()],
            parameters: BTreeMap::new(),
            started_at: "t0".into(),
            finished_at: "t1".into(),
            sources: vec![engine::store::SourceRecord {
                name: "s".into(),
                uri: "s.parquet".into(),
                rows_read: 7,
                orphan_rows: 1,
                files: Vec::new(),
                latest: None,
            }],
            population_stats: Vec::new(),
            checks: Vec::new(),
            incomplete_periods: BTreeMap::new(),
            exclusions: BTreeMap::new(),
            group_exclusions: BTreeMap::new(),
            publications: Vec::new(),
            warnings: vec!["w".into()],
            outcome: "succeeded".into(),
            error: Some("e".into()),
        };
        let full = serde_json::to_value(&m).unwrap();
        let mut fields: Vec<&str> = full
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        fields.sort();
        let mut classified: Vec<&str> = MANIFEST_FOR_SCOPED
            .iter()
            .chain(MANIFEST_HIDDEN)
            .copied()
            .collect();
        classified.sort();
        assert_eq!(
            fields, classified,
            "classify every manifest field in MANIFEST_FOR_SCOPED or MANIFEST_HIDDEN"
        );
        let scoped = serde_json::to_value(ScopedManifest::from(&m)).unwrap();
        let mut shown: Vec<&str> = scoped
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        shown.sort();
        let mut allowed = MANIFEST_FOR_SCOPED.to_vec();
        allowed.sort();
        assert_eq!(shown, allowed);
        assert_eq!(scoped["sources"], serde_json::json!(["s"]));
    }

    /// Every route that needs a key (`security(("bearer" ...))` in its
    /// OpenAPI annotation) takes the view and nothing that bypasses it.
    #[test]
    fn every_data_route_takes_the_view() {
        let src = [
            include_str!("../routes.rs"),
            include_str!("../targets.rs"),
            include_str!("../customers.rs"),
            include_str!("../experiments.rs"),
        ]
        .concat();
        let mut data_routes = 0;
        for chunk in src.split("#[utoipa::path(").skip(1) {
            let at = chunk
                .find("pub async fn")
                .expect("a handler after each annotation");
            let body = chunk[at..].find('{').expect("a body") + at;
            let signature = &chunk[at..body];
            if chunk[..at].contains("security((\"bearer\"") {
                data_routes += 1;
                assert!(
                    signature.contains("view: View"),
                    "a data route must take the scoped view: {signature}"
                );
                assert!(
                    !signature.contains("State(") && !signature.contains("Extension("),
                    "a data route must reach the store only through the view: {signature}"
                );
            }
        }
        assert!(data_routes >= 14, "found {data_routes} data routes");
    }
}
