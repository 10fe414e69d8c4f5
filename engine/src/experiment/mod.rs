//! Experiments judged by the formula's own per-customer score
//! (docs/experiments.md). [`evaluate`] reads an experiment's assignments
//! (unit key, experiment id, arm, first exposure), scores the customers
//! assigned before each period with population functions normalised
//! against the control arm (`columns::COHORT_TABLE`), and compares each
//! treatment arm with the control: overall, per period, per component and
//! per value of each dimension, with the statistics of [`stats`].

pub mod stats;
pub mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::arrow::array::{
    Array, AsArray, BooleanArray, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Schema, TimeUnit};
use datafusion::prelude::{SessionContext, col, lit};
use serde::Serialize;

use crate::columns::{ARM, INCLUDED, KEY, PERIOD, SCORE, WEIGHT, as_instant, dim_col};
use crate::error::{Error, Result};
use crate::load::Loaded;
use crate::score::{ScoreOptions, score};
use crate::session::SessionOptions;
use stats::{Bootstrap, Cuped, Lift, Srm, Unit};

/// Where the assignments are and which columns say what.
#[derive(Debug, Clone)]
pub struct Assignments {
    pub uri: String,
    /// Relative URIs resolve against it.
    pub base_dir: PathBuf,
    pub key: String,
    pub experiment: String,
    pub arm: String,
    /// The first exposure.
    pub time: String,
}

/// What population functions normalise against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reference {
    /// The control arm of each period (the default).
    #[default]
    Control,
    /// The whole cohort in the pre-period (one period): its statistics.
    Pre,
}

/// What to evaluate.
#[derive(Debug, Clone)]
pub struct Request {
    pub reference: Reference,
    pub experiment: String,
    pub assignments: Assignments,
    pub control: String,
    pub periods: Vec<NaiveDate>,
    /// The pre-period of CUPED (empty: none).
    pub pre_periods: Vec<NaiveDate>,
    /// Declared shares per arm (default: equal).
    pub shares: BTreeMap<String, f64>,
    /// `(group, margin)`: in that group (`None`: everyone) the treatment
    /// must not lower the score by more than `margin` points.
    pub guardrails: Vec<(Option<(String, String)>, f64)>,
    /// `(resamples, seed)`.
    pub bootstrap: Option<(u32, u64)>,
    pub session: SessionOptions,
}

/// A comparison of one treatment arm with the control in one population.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub control_customers: usize,
    pub treatment_customers: usize,
    pub lift: Lift,
}

#[derive(Debug, Clone, Serialize)]
pub struct PeriodComparison {
    pub period: NaiveDate,
    #[serde(flatten)]
    pub comparison: Comparison,
}

/// A component's rollup in each arm (unscaled, as result rows' `rollup`)
/// and, for a weighted sum, the lift of its contribution (`scale x weight
/// x rollup`): the components' contribution lifts add up to the score's.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentComparison {
    pub component: String,
    #[serde(flatten)]
    pub comparison: Comparison,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contribution: Option<Lift>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupComparison {
    pub dimension: String,
    pub value: String,
    #[serde(flatten)]
    pub comparison: Comparison,
    /// Holm-adjusted over every group of this arm.
    pub p_holm: f64,
    pub significant: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Guardrail {
    pub group: String,
    pub margin: f64,
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    /// `pass`, `fail` or `inconclusive` (no customers: inconclusive).
    pub result: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ArmReport {
    pub arm: String,
    pub overall: Comparison,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cuped: Option<Cuped>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<Bootstrap>,
    pub periods: Vec<PeriodComparison>,
    pub components: Vec<ComponentComparison>,
    pub groups: Vec<GroupComparison>,
    pub guardrails: Vec<Guardrail>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SrmCheck {
    pub arms: Vec<String>,
    pub observed: Vec<u64>,
    pub shares: Vec<f64>,
    #[serde(flatten)]
    pub test: Srm,
    /// False when p < 0.001: the assignment did not follow the declared
    /// split and the comparisons cannot be trusted.
    pub valid: bool,
}

/// An experiment report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub formula: String,
    pub experiment: String,
    pub control: String,
    /// What population functions normalise against: `control` or `pre`.
    pub reference: String,
    pub method: String,
    pub correction: String,
    pub periods: Vec<NaiveDate>,
    pub pre_periods: Vec<NaiveDate>,
    /// CUPED's covariate, when there is a pre-period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub covariate: Option<String>,
    /// Customers assigned to more than one arm, left out.
    pub excluded_multiple_arms: u64,
    pub srm: SrmCheck,
    pub arms: Vec<ArmReport>,
}

impl Report {
    /// Whether any guardrail failed.
    pub fn guardrail_failed(&self) -> bool {
        self.arms
            .iter()
            .flat_map(|a| &a.guardrails)
            .any(|g| g.result == "fail")
    }
}

/// key -> (arm, first exposure in µs); and how many keys had two arms.
async fn read_assignments(req: &Request) -> Result<(BTreeMap<String, (String, i64)>, u64)> {
    let a = &req.assignments;
    let ctx = SessionContext::new();
    let instants = [a.time.as_str()];
    let spec = connectors::SourceSpec {
        name: "assignments",
        uri: &a.uri,
        format: None,
        base_dir: &a.base_dir,
        instants: &instants,
        columns: &[],
        delimiter: None,
        quote: None,
    };
    let schema = connectors::register(&ctx, "croo_assignments", &spec).await?;
    for c in [&a.key, &a.experiment, &a.arm, &a.time] {
        if schema.field_with_name(c).is_err() {
            return Err(Error::User(format!(
                "the assignments ({}) have no column `{c}`; they have {}",
                a.uri,
                schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let ty = schema
        .field_with_name(&a.time)
        .map(|f| f.data_type().clone())
        .unwrap_or(DataType::Null);
    let at = as_instant(&a.time, &ty).ok_or_else(|| {
        Error::User(format!(
            "column `{}` of the assignments is {ty}, not a timestamp, date or ISO 8601 string",
            a.time
        ))
    })?;
    let df = ctx
        .table("croo_assignments")
        .await
        .map_err(Error::engine("reading the assignments"))?
        .filter(
            datafusion::prelude::cast(col(a.experiment.as_str()), DataType::Utf8)
                .eq(lit(req.experiment.clone())),
        )
        .and_then(|d| {
            d.select(vec![
                datafusion::prelude::cast(col(a.key.as_str()), DataType::Utf8).alias("k"),
                datafusion::prelude::cast(col(a.arm.as_str()), DataType::Utf8).alias("a"),
                datafusion::prelude::cast(at, DataType::Int64).alias("t"),
            ])
        })
        .map_err(Error::engine("reading the assignments"))?;
    let batches = df
        .collect()
        .await
        .map_err(Error::engine("reading the assignments"))?;
    let mut by_key: BTreeMap<String, (BTreeSet<String>, i64)> = BTreeMap::new();
    for b in &batches {
        let (k, a, t) = (
            b.column(0).as_string::<i32>(),
            b.column(1).as_string::<i32>(),
            b.column(2)
                .as_primitive::<datafusion::arrow::datatypes::Int64Type>(),
        );
        for i in 0..b.num_rows() {
            if k.is_null(i) || a.is_null(i) || t.is_null(i) {
                return Err(Error::User(format!(
                    "the assignments ({}) have a row of experiment `{}` with no key, arm or exposure time",
                    req.assignments.uri, req.experiment
                )));
            }
            let e = by_key
                .entry(k.value(i).to_string())
                .or_insert_with(|| (BTreeSet::new(), i64::MAX));
            e.0.insert(a.value(i).to_string());
            e.1 = e.1.min(t.value(i));
        }
    }
    if by_key.is_empty() {
        return Err(Error::User(format!(
            "no assignments of experiment `{}` in {}",
            req.experiment, req.assignments.uri
        )));
    }
    let mut out = BTreeMap::new();
    let mut multiple = 0;
    for (k, (arms, t)) in by_key {
        if arms.len() > 1 {
            multiple += 1;
            continue;
        }
        if let Some(a) = arms.into_iter().next() {
            out.insert(k, (a, t));
        }
    }
    Ok((out, multiple))
}

/// The cohort table: every assigned customer, exposed at `t` (or, for
/// the pre-period, long before); the reference is the control arm, or
/// `everyone`.
fn cohort(
    assigned: &BTreeMap<String, (String, i64)>,
    control: &str,
    (pre, everyone): (bool, bool),
) -> Result<RecordBatch> {
    let keys: StringArray = assigned.keys().map(|k| Some(k.as_str())).collect();
    let arms: StringArray = assigned.values().map(|(a, _)| Some(a.as_str())).collect();
    let times = TimestampMicrosecondArray::from(
        assigned
            .values()
            .map(|(_, t)| if pre { i64::MIN } else { *t })
            .collect::<Vec<_>>(),
    )
    .with_timezone("UTC");
    let reference: BooleanArray = assigned
        .values()
        .map(|(a, _)| Some(everyone || a == control))
        .collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("__ckey", DataType::Utf8, false),
        Field::new("__arm", DataType::Utf8, false),
        Field::new(
            "__exposed",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("__ref", DataType::Boolean, false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(keys),
            Arc::new(arms),
            Arc::new(times),
            Arc::new(reference),
        ],
    )
    .map_err(|e| Error::engine("building the cohort")(e.into()))
}

/// One customer-period of the scored cohort.
#[derive(Debug, Clone)]
struct Row {
    key: String,
    period: i32,
    arm: String,
    weight: f64,
    score: Option<f64>,
    included: bool,
    dims: Vec<Option<String>>,
    components: Vec<Option<f64>>,
}

fn rows_of(
    batches: &[RecordBatch],
    dims: usize,
    components: &[String],
    scale: f64,
) -> Result<Vec<Row>> {
    let mut out = Vec::new();
    let err = |e: datafusion::arrow::error::ArrowError| {
        Error::engine("reading the scored cohort")(e.into())
    };
    for b in batches {
        let column = |name: &str| {
            b.column_by_name(name)
                .cloned()
                .ok_or_else(|| Error::User(format!("the scored cohort has no column `{name}`")))
        };
        let text = |name: &str| -> Result<Vec<Option<String>>> {
            let a = cast(&column(name)?, &DataType::Utf8).map_err(err)?;
            Ok(a.as_string::<i32>()
                .iter()
                .map(|v| v.map(str::to_string))
                .collect())
        };
        let float = |name: &str| -> Result<Vec<Option<f64>>> {
            let a = cast(&column(name)?, &DataType::Float64).map_err(err)?;
            Ok(a.as_primitive::<Float64Type>().iter().collect())
        };
        let keys = text(KEY)?;
        let arms = text(ARM)?;
        let periods = cast(&column(PERIOD)?, &DataType::Int32).map_err(err)?;
        let periods = periods.as_primitive::<datafusion::arrow::datatypes::Int32Type>();
        let (score, weight) = (float(SCORE)?, float(WEIGHT)?);
        let included = column(INCLUDED)?;
        let included = included.as_boolean();
        let dims: Vec<Vec<Option<String>>> = (0..dims)
            .map(|i| text(&dim_col(i)))
            .collect::<Result<_>>()?;
        let comps: Vec<Vec<Option<f64>>> =
            components.iter().map(|c| float(c)).collect::<Result<_>>()?;
        for r in 0..b.num_rows() {
            out.push(Row {
                key: keys[r].clone().unwrap_or_default(),
                period: periods.value(r),
                arm: arms[r].clone().unwrap_or_default(),
                weight: weight[r].unwrap_or(0.0),
                score: score[r].map(|s| s * scale),
                included: included.value(r),
                dims: dims.iter().map(|d| d[r].clone()).collect(),
                components: comps.iter().map(|c| c[r]).collect(),
            });
        }
    }
    Ok(out)
}

/// Each customer of `arm` among `rows` as a unit: weight x value and
/// weight summed over its periods (`value` of a row; rows where it is
/// NULL, or that are not included, left out); its pre-period value from
/// `pre` (key -> value).
fn units(
    rows: &[&Row],
    arm: &str,
    value: &dyn Fn(&Row) -> Option<f64>,
    pre: &BTreeMap<String, f64>,
) -> Vec<Unit> {
    let mut by: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.arm == arm && r.included) {
        if let Some(v) = value(r) {
            let e = by.entry(r.key.as_str()).or_default();
            e.0 += r.weight * v;
            e.1 += r.weight;
        }
    }
    by.into_iter()
        .filter(|(_, (_, w))| *w > 0.0)
        .map(|(k, (s, w))| Unit {
            s,
            w,
            x: pre.get(k).copied(),
        })
        .collect()
}

fn compare(t: &[Unit], c: &[Unit]) -> Option<Comparison> {
    let (mt, mc) = (stats::ratio_mean(t)?, stats::ratio_mean(c)?);
    if mt.n < 2 || mc.n < 2 {
        return None;
    }
    Some(Comparison {
        control_customers: mc.n,
        treatment_customers: mt.n,
        lift: stats::lift(&mt, &mc),
    })
}

fn scale_lift(l: &Lift, k: f64) -> Lift {
    let (lo, hi) = if k >= 0.0 {
        (l.lower * k, l.upper * k)
    } else {
        (l.upper * k, l.lower * k)
    };
    Lift {
        control: l.control * k,
        treatment: l.treatment * k,
        absolute: l.absolute * k,
        se: l.se * k.abs(),
        lower: lo,
        upper: hi,
        ..l.clone()
    }
}

/// Evaluates an experiment (see the module's documentation).
pub async fn evaluate(loaded: &Loaded, req: &Request) -> Result<Report> {
    let f = &loaded.formula;
    let file = &f.file;
    let (assigned, multiple) = read_assignments(req).await?;
    let arms: BTreeSet<&str> = assigned.values().map(|(a, _)| a.as_str()).collect();
    if !arms.contains(req.control.as_str()) {
        return Err(Error::User(format!(
            "no customer of experiment `{}` is in the control arm `{}`; its arms are {}",
            req.experiment,
            req.control,
            arms.iter().copied().collect::<Vec<_>>().join(", ")
        )));
    }
    for a in req.shares.keys() {
        if !arms.contains(a.as_str()) {
            return Err(Error::User(format!(
                "--split names arm `{a}`, which experiment `{}` does not have ({})",
                req.experiment,
                arms.iter().copied().collect::<Vec<_>>().join(", ")
            )));
        }
    }
    // The sample-ratio check, over the customers assigned.
    let names: Vec<String> = arms.iter().map(|a| a.to_string()).collect();
    let observed: Vec<u64> = names
        .iter()
        .map(|n| assigned.values().filter(|(a, _)| a == n).count() as u64)
        .collect();
    let shares: Vec<f64> = names
        .iter()
        .map(|n| {
            if req.shares.is_empty() {
                1.0
            } else {
                req.shares.get(n).copied().unwrap_or(0.0)
            }
        })
        .collect();
    let test = stats::srm(&observed, &shares);
    let srm = SrmCheck {
        // A NaN p (no customers) is no evidence of a mismatch.
        valid: test.p >= 0.001 || test.p.is_nan(),
        arms: names.clone(),
        observed,
        shares,
        test,
    };

    let components: Vec<String> = file
        .components
        .iter()
        .map(|c| c.name.value.clone())
        .collect();
    let cohort_of = &assigned;
    let pre_reference = req.reference == Reference::Pre;
    if pre_reference && req.pre_periods.len() != 1 {
        return Err(Error::User(
            "--reference pre takes its statistics from one pre-period: give --pre-from and --pre-to naming the same period".into(),
        ));
    }
    let scored = |periods: Vec<NaiveDate>, pre: bool, fixed| async move {
        let options = ScoreOptions {
            session: req.session.clone(),
            detail: true,
            // In the pre-period with `--reference pre`, everyone is the
            // reference.
            cohort: Some(cohort(
                cohort_of,
                &req.control,
                (pre, pre && pre_reference),
            )?),
            fixed,
            ..ScoreOptions::default()
        };
        score(loaded, &periods, &options).await
    };
    let pre_scored = if req.pre_periods.is_empty() {
        None
    } else {
        Some(scored(req.pre_periods.clone(), true, None).await?)
    };
    // `--reference pre`: each population function by the pre-period's
    // statistics of its argument.
    let fixed = match (&pre_scored, pre_reference) {
        (Some(c), true) => {
            let mut m = BTreeMap::new();
            for s in c
                .population_stats
                .iter()
                .filter(|s| !s.function.starts_with("impute_"))
            {
                if s.function == "pct_rank" {
                    return Err(Error::User(format!(
                        "--reference pre: `{}` ranks against the reference's values, which another period cannot give; use --reference control",
                        s.expression
                    )));
                }
                let key = s
                    .expression
                    .split(" in ")
                    .next()
                    .unwrap_or_default()
                    .to_string();
                let (Some(min), Some(max), Some(mean), Some(sd)) = (s.min, s.max, s.mean, s.stddev)
                else {
                    return Err(Error::User(format!(
                        "--reference pre: `{}` has no values in the pre-period {}",
                        s.expression, s.period
                    )));
                };
                m.insert(key, formulas::compile::Fixed { min, max, mean, sd });
            }
            Some(m)
        }
        _ => None,
    };
    let computed = scored(req.periods.clone(), false, fixed).await?;
    let rows = rows_of(
        &computed.detail,
        file.dimensions.len(),
        &components,
        file.scale,
    )?;
    // CUPED's covariate: each customer's weighted mean score over the
    // pre-period.
    let mut pre: BTreeMap<String, f64> = BTreeMap::new();
    if let Some(c) = &pre_scored {
        let mut acc: BTreeMap<String, (f64, f64)> = BTreeMap::new();
        for r in rows_of(&c.detail, file.dimensions.len(), &components, file.scale)? {
            if let (true, Some(s)) = (r.included, r.score) {
                let e = acc.entry(r.key).or_default();
                e.0 += r.weight * s;
                e.1 += r.weight;
            }
        }
        pre = acc
            .into_iter()
            .filter(|(_, (_, w))| *w > 0.0)
            .map(|(k, (s, w))| (k, s / w))
            .collect();
    }

    let all: Vec<&Row> = rows.iter().collect();
    let score_of = |r: &Row| r.score;
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    let mut reports = Vec::new();
    for arm in names.iter().filter(|a| **a != req.control) {
        let (t, c) = (
            units(&all, arm, &score_of, &pre),
            units(&all, &req.control, &score_of, &pre),
        );
        let Some(overall) = compare(&t, &c) else {
            return Err(Error::User(format!(
                "arm `{arm}` or the control `{}` has fewer than 2 customers scored in these periods",
                req.control
            )));
        };
        let cuped = match (stats::ratio_mean(&t), stats::ratio_mean(&c)) {
            (Some(mt), Some(mc)) if !pre.is_empty() => stats::cuped(&t, &mt, &c, &mc),
            _ => None,
        };
        let bootstrap = req
            .bootstrap
            .and_then(|(n, seed)| stats::bootstrap(&t, &c, n, seed));
        let mut periods = Vec::new();
        for p in &req.periods {
            let day = (*p - epoch).num_days() as i32;
            let these: Vec<&Row> = rows.iter().filter(|r| r.period == day).collect();
            let none = BTreeMap::new();
            if let Some(cmp) = compare(
                &units(&these, arm, &score_of, &none),
                &units(&these, &req.control, &score_of, &none),
            ) {
                periods.push(PeriodComparison {
                    period: *p,
                    comparison: cmp,
                });
            }
        }
        let none = BTreeMap::new();
        let mut comps = Vec::new();
        for (i, name) in components.iter().enumerate() {
            let value = move |r: &Row| r.components[i];
            if let Some(cmp) = compare(
                &units(&all, arm, &value, &none),
                &units(&all, &req.control, &value, &none),
            ) {
                let contribution = (f.score.is_none()
                    && file.method == formulas::Method::Arithmetic)
                    .then(|| scale_lift(&cmp.lift, file.scale * file.components[i].weight));
                comps.push(ComponentComparison {
                    component: name.clone(),
                    comparison: cmp,
                    contribution,
                });
            }
        }
        let mut groups = Vec::new();
        for (i, d) in file.dimensions.iter().enumerate() {
            let values: BTreeSet<Option<String>> = rows.iter().map(|r| r.dims[i].clone()).collect();
            for v in values {
                let these: Vec<&Row> = rows.iter().filter(|r| r.dims[i] == v).collect();
                if let Some(cmp) = compare(
                    &units(&these, arm, &score_of, &none),
                    &units(&these, &req.control, &score_of, &none),
                ) {
                    groups.push(GroupComparison {
                        dimension: d.name.value.clone(),
                        value: v.unwrap_or_else(|| "(none)".into()),
                        comparison: cmp,
                        p_holm: f64::NAN,
                        significant: false,
                    });
                }
            }
        }
        let adjusted = stats::holm(
            &groups
                .iter()
                .map(|g| g.comparison.lift.p)
                .collect::<Vec<_>>(),
        );
        for (g, p) in groups.iter_mut().zip(adjusted) {
            g.p_holm = p;
            g.significant = p < 0.05;
        }
        let guardrails = req
            .guardrails
            .iter()
            .map(|(group, margin)| {
                let lift = match group {
                    None => Some(&overall.lift),
                    Some((d, v)) => groups
                        .iter()
                        .find(|g| &g.dimension == d && &g.value == v)
                        .map(|g| &g.comparison.lift),
                };
                Guardrail {
                    group: group
                        .as_ref()
                        .map_or_else(|| "all".into(), |(d, v)| format!("{d}={v}")),
                    margin: *margin,
                    lower: lift.map(|l| l.lower),
                    upper: lift.map(|l| l.upper),
                    result: lift
                        .map_or("inconclusive", |l| stats::guard(l, *margin))
                        .to_string(),
                }
            })
            .collect();
        reports.push(ArmReport {
            arm: arm.clone(),
            overall,
            cuped,
            bootstrap,
            periods,
            components: comps,
            groups,
            guardrails,
        });
    }
    Ok(Report {
        formula: f.name().to_string(),
        experiment: req.experiment.clone(),
        control: req.control.clone(),
        reference: match req.reference {
            Reference::Control => "control".into(),
            Reference::Pre => "pre".into(),
        },
        method: "delta method for rollup-weighted means, Welch degrees of freedom, 95% intervals"
            .into(),
        correction: "holm".into(),
        periods: req.periods.clone(),
        pre_periods: req.pre_periods.clone(),
        covariate: (!req.pre_periods.is_empty())
            .then(|| "each customer's rollup-weighted mean score over the pre-period".to_string()),
        excluded_multiple_arms: multiple,
        srm,
        arms: reports,
    })
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{BooleanArray, Float64Array, Int32Array};
    use datafusion::prelude::SessionContext;
    use formulas::expr::Func;

    use super::*;

    /// Population functions against a reference, by hand. One period;
    /// x = 1, 2, 2, 4 (reference) and 3, 6, 2, NULL (not).
    ///
    /// minmax by the reference's min 1 and max 4: (x - 1) / 3;
    /// zscore by its mean 2.25 and population sd sqrt(1.1875);
    /// pct_rank: references below x over n_ref - 1 = 3 for a reference
    /// (1: 0, 2: 1/3, 2: 1/3, 4: 1), over n_ref = 4 otherwise (3: 3/4,
    /// 6: 4/4, 2: 1/4); NULL stays NULL.
    #[tokio::test]
    async fn population_functions_against_a_reference() {
        let xs = [
            Some(1.0),
            Some(2.0),
            Some(2.0),
            Some(4.0),
            Some(3.0),
            Some(6.0),
            Some(2.0),
            None,
        ];
        let refs = [true, true, true, true, false, false, false, false];
        let schema = Arc::new(Schema::new(vec![
            Field::new("i", DataType::Int32, false),
            Field::new(PERIOD, DataType::Int32, false),
            Field::new("x", DataType::Float64, true),
            Field::new("r", DataType::Boolean, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int32Array::from((0..8).collect::<Vec<i32>>())),
                Arc::new(Int32Array::from(vec![0; 8])),
                Arc::new(Float64Array::from(xs.to_vec())),
                Arc::new(BooleanArray::from(refs.to_vec())),
            ],
        )
        .unwrap();
        let ctx = SessionContext::new();
        ctx.register_batch("t", batch).unwrap();
        let sd = 1.1875f64.sqrt();
        let cases: [(Func, [Option<f64>; 8]); 3] = [
            (
                Func::MinMax,
                [
                    0.0,
                    1.0 / 3.0,
                    1.0 / 3.0,
                    1.0,
                    2.0 / 3.0,
                    5.0 / 3.0,
                    1.0 / 3.0,
                ]
                .map(Some)
                .into_iter()
                .chain([None])
                .collect::<Vec<_>>()
                .try_into()
                .unwrap(),
            ),
            (
                Func::ZScore,
                [1.0, 2.0, 2.0, 4.0, 3.0, 6.0, 2.0]
                    .map(|x| Some((x - 2.25) / sd))
                    .into_iter()
                    .chain([None])
                    .collect::<Vec<_>>()
                    .try_into()
                    .unwrap(),
            ),
            (
                Func::PctRank,
                [0.0, 1.0 / 3.0, 1.0 / 3.0, 1.0, 0.75, 1.0, 0.25]
                    .map(Some)
                    .into_iter()
                    .chain([None])
                    .collect::<Vec<_>>()
                    .try_into()
                    .unwrap(),
            ),
        ];
        for (f, want) in cases {
            let e = formulas::compile::window_population_against(
                f,
                col("x"),
                vec![col(PERIOD)],
                Some(col("r")),
            )
            .unwrap();
            let got = ctx
                .table("t")
                .await
                .unwrap()
                .select(vec![
                    col("i"),
                    datafusion::prelude::cast(e, DataType::Float64).alias("v"),
                ])
                .unwrap()
                .sort(vec![col("i").sort(true, false)])
                .unwrap()
                .collect()
                .await
                .unwrap();
            let v: Vec<Option<f64>> = got
                .iter()
                .flat_map(|b| {
                    b.column(1)
                        .as_primitive::<Float64Type>()
                        .iter()
                        .collect::<Vec<_>>()
                })
                .collect();
            for (i, (g, w)) in v.iter().zip(want).enumerate() {
                match (g, w) {
                    (Some(g), Some(w)) => {
                        assert!((g - w).abs() < 1e-12, "{f:?} row {i}: {g} vs {w}")
                    }
                    (g, w) => assert_eq!(*g, w, "{f:?} row {i}"),
                }
            }
        }
    }
}
