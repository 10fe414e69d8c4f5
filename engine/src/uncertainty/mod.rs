//! Uncertainty and sensitivity analysis of a period's scores and ranks
//! (OECD/JRC composite-indicator practice; docs/methods.md, step 7): one
//! seeded Monte Carlo over the component weights and every declared
//! alternative of the method: each component's normalisation and
//! imputation (`alternatives` on a component), the aggregation method and
//! winsorisation on or off (`[score] alternatives`).
//!
//! The engine computes every component under each of its alternatives in
//! one run (two with winsorisation off as well; [`variants`]); each draw
//! then picks a variant per component, a method and the weights, and
//! scores every customer and group as the engine would ([`draws`]). The
//! summaries ([`statistics`]) are the median and 5-95% interval of each
//! group's (and, with `detail`, each customer's) score and rank, and the
//! first-order sensitivity index of each choice. Draws are generated in
//! order from one ChaCha8 stream and evaluated independently, so the
//! figures are the same bits for any thread count. [`analyse`] is the
//! entry point.

pub mod draws;
pub mod statistics;
pub mod variants;

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::load::Loaded;
use crate::score::ScoreOptions;
use crate::session::SessionOptions;
use draws::{Draw, Space, ranks};
use formulas::{Method, Normalise};
use statistics::{first_order, quantile};
use variants::{Table, Variant};

/// What to analyse and how.
#[derive(Debug, Clone)]
pub struct Options {
    pub period: NaiveDate,
    /// Groups by this dimension (index into the formula's dimensions);
    /// `None`: the whole population.
    pub by: Option<usize>,
    pub draws: usize,
    pub seed: u64,
    /// Each weight within +-spread of its nominal value.
    pub spread: f64,
    /// Also each customer's rank interval.
    pub detail: bool,
    /// Threads evaluating the draws (the figures do not depend on it).
    pub threads: usize,
    pub session: SessionOptions,
}

/// Most customer-draw ranks `detail` keeps (4 bytes each).
pub const DETAIL_LIMIT: usize = 100_000_000;

/// Bins of a weight's uniform number for its sensitivity index.
pub const WEIGHT_BINS: usize = 10;

#[derive(Debug, Clone, Serialize)]
pub struct GroupUncertainty {
    pub value: Option<String>,
    pub nominal: Option<f64>,
    pub median: Option<f64>,
    pub p05: Option<f64>,
    pub p95: Option<f64>,
    /// Rank 1 is the highest score; ties share the best rank.
    pub rank_nominal: Option<u32>,
    pub rank_median: Option<f64>,
    pub rank_p05: Option<f64>,
    pub rank_p95: Option<f64>,
    /// Draws in which the group had no included customer.
    pub empty_draws: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct CustomerUncertainty {
    pub key: String,
    pub group: Option<String>,
    pub nominal: Option<f64>,
    pub rank_nominal: Option<u32>,
    pub rank_median: Option<f64>,
    pub rank_p05: Option<f64>,
    pub rank_p95: Option<f64>,
    /// Draws in which the customer had no score.
    pub excluded_draws: usize,
}

/// One choice the draws vary.
#[derive(Debug, Clone, Serialize)]
pub struct Factor {
    /// `weight.C`, `normalise.C`, `impute.C`, `method` or `winsorise`.
    pub name: String,
    /// Its options (a weight's: its ten bins).
    pub levels: Vec<String>,
}

/// How much of the variance of the ranks (and scores) one factor explains
/// on its own.
#[derive(Debug, Clone, Serialize)]
pub struct Sensitivity {
    pub factor: String,
    /// Over every group: the sum over groups of `Var(E[rank | factor])`
    /// over the sum of `Var(rank)`; `None` when no rank varies.
    pub first_order: Option<f64>,
    /// The same for the groups' scores.
    pub score_first_order: Option<f64>,
    /// Per group (`all` for the whole population): its rank's index.
    pub by_group: BTreeMap<String, Option<f64>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Uncertainty {
    pub draws: usize,
    pub seed: u64,
    /// Each weight is drawn uniformly within +-spread of its nominal value,
    /// then all are rescaled to the nominal total.
    pub spread: f64,
    pub factors: Vec<Factor>,
    pub groups: Vec<GroupUncertainty>,
    /// Largest rank index first.
    pub sensitivity: Vec<Sensitivity>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub customers: Vec<CustomerUncertainty>,
    /// Every draw: its choices, and each group's score and rank.
    #[serde(skip)]
    pub record: Record,
}

/// The draws as drawn, for `--draws FILE`.
#[derive(Debug, Clone, Default)]
pub struct Record {
    pub components: Vec<String>,
    /// Per component, its variants' `(normalisation, imputation)` names.
    pub variants: Vec<Vec<(String, String)>>,
    pub groups: Vec<String>,
    pub draws: Vec<Draw>,
    pub scores: Vec<Vec<Option<f64>>>,
}

impl Record {
    /// One line per draw: `draw, winsorise, method`, per component its
    /// normalisation, imputation and weight, per group its score and rank.
    pub fn csv(&self) -> String {
        let mut out = String::from("draw,winsorise,method");
        for c in &self.components {
            out.push_str(&format!(",normalise.{c},impute.{c},weight.{c}"));
        }
        for g in &self.groups {
            out.push_str(&format!(",score.{g},rank.{g}"));
        }
        out.push('\n');
        let cell = |v: Option<f64>| v.map(|x| format!("{x:?}")).unwrap_or_default();
        for (i, (d, s)) in self.draws.iter().zip(&self.scores).enumerate() {
            out.push_str(&format!(
                "{},{},{}",
                i + 1,
                if d.state == 0 { "on" } else { "off" },
                variants::method_name(d.method)
            ));
            for (k, (j, w)) in d.variant.iter().zip(&d.weight).enumerate() {
                let (n, im) = &self.variants[k][*j];
                out.push_str(&format!(",{n},{im},{w:?}"));
            }
            for (x, r) in s.iter().zip(ranks(s)) {
                out.push_str(&format!(
                    ",{},{}",
                    cell(*x),
                    r.map(|r| r.to_string()).unwrap_or_default()
                ));
            }
            out.push('\n');
        }
        out
    }
}

/// Runs the analysis of `opts.period` of `loaded`'s formula.
pub async fn analyse(loaded: &Loaded, opts: &Options) -> Result<Uncertainty> {
    let f = &loaded.formula;
    if f.score.is_some() {
        return Err(Error::User(
            "--uncertainty needs the default combination of components (the formula has a custom `score.expr`)".into(),
        ));
    }
    let file = &f.file;
    // Each component's variants: normalisation major, its own first.
    let mut variants: Vec<Vec<Variant>> = Vec::new();
    let mut labels: Vec<Vec<(String, String)>> = Vec::new();
    let mut shapes: Vec<(usize, usize)> = Vec::new();
    for (c, ast) in file.components.iter().zip(&f.components) {
        let used = ast.population_functions();
        let own = match used.as_slice() {
            [one] => Normalise::of(*one),
            _ => None,
        };
        let (normalise, impute) = variants::of(c, own);
        shapes.push((normalise.len(), impute.len()));
        let mut vs = Vec::new();
        let mut ls = Vec::new();
        for (a, n) in normalise.iter().enumerate() {
            for i in &impute {
                vs.push(Variant {
                    normalise: if a == 0 { None } else { *n },
                    impute: i.clone(),
                });
                ls.push((
                    n.map_or_else(|| "none".to_string(), |n| n.name().to_string()),
                    variants::impute_name(i),
                ));
            }
        }
        variants.push(vs);
        labels.push(ls);
    }
    let states = if file.alternatives.unwinsorised { 2 } else { 1 };
    let mut table = Table::default();
    for state in 0..states {
        let mut l = loaded.clone();
        l.formula = variants::formula(f, &variants, state == 1);
        let options = ScoreOptions {
            session: opts.session.clone(),
            detail: true,
            ..ScoreOptions::default()
        };
        let computed = crate::score::score(&l, &[opts.period], &options).await?;
        table.add_state(&computed.detail, opts.period, opts.by, &variants)?;
    }
    let mut methods = vec![file.method];
    for m in &file.alternatives.method {
        if !methods.contains(m) {
            methods.push(*m);
        }
    }
    let space = Space {
        states,
        methods,
        variants: variants.iter().map(Vec::len).collect(),
        nominal: file.components.iter().map(|c| c.weight).collect(),
        spread: opts.spread,
        shift: file.shift,
        min_coverage: file.min_coverage,
        scale: file.scale,
    };
    positive(&space, &table, file, &labels)?;
    if opts.detail && table.keys.len().saturating_mul(opts.draws) > DETAIL_LIMIT {
        return Err(Error::User(format!(
            "--detail keeps each customer's rank in every draw: {} customers x {} draws is above {DETAIL_LIMIT}; draw fewer",
            table.keys.len(),
            opts.draws
        )));
    }
    let nominal = space.nominal();
    let nominal_customers = space.customers(&table, &nominal);
    let nominal_groups = space.groups(&table, &nominal, &nominal_customers);
    let nominal_ranks = ranks(&nominal_groups);
    let draws = space.draws(opts.draws, opts.seed);
    let evaluated = evaluate(&space, &table, &draws, opts.detail, opts.threads.max(1))?;
    let group_name = |g: &Option<String>| match (g, opts.by) {
        (Some(v), _) => v.clone(),
        (None, Some(_)) => "(null)".to_string(),
        (None, None) => "all".to_string(),
    };
    let groups: Vec<GroupUncertainty> = table
        .groups
        .iter()
        .enumerate()
        .map(|(g, value)| {
            let mut s: Vec<f64> = evaluated.iter().filter_map(|e| e.groups[g]).collect();
            let mut r: Vec<f64> = evaluated
                .iter()
                .filter_map(|e| e.ranks[g].map(f64::from))
                .collect();
            s.sort_by(f64::total_cmp);
            r.sort_by(f64::total_cmp);
            GroupUncertainty {
                value: value.clone(),
                nominal: nominal_groups[g],
                median: quantile(&s, 0.5),
                p05: quantile(&s, 0.05),
                p95: quantile(&s, 0.95),
                rank_nominal: nominal_ranks[g],
                rank_median: quantile(&r, 0.5),
                rank_p05: quantile(&r, 0.05),
                rank_p95: quantile(&r, 0.95),
                empty_draws: evaluated.len() - s.len(),
            }
        })
        .collect();
    let factors = factors(&space, &file.components, &shapes, &labels, file);
    let mut sensitivity: Vec<Sensitivity> = factors
        .iter()
        .map(|(factor, level)| {
            let levels: Vec<usize> = draws.iter().map(level).collect();
            let (mut between, mut var, mut sb, mut sv) = (0.0, 0.0, 0.0, 0.0);
            let mut by_group = BTreeMap::new();
            for (g, value) in table.groups.iter().enumerate() {
                let y: Vec<Option<f64>> = evaluated
                    .iter()
                    .map(|e| e.ranks[g].map(f64::from))
                    .collect();
                let (b, v) = first_order(&y, &levels);
                between += b;
                var += v;
                by_group.insert(group_name(value), (v > 0.0).then(|| b / v));
                let y: Vec<Option<f64>> = evaluated.iter().map(|e| e.groups[g]).collect();
                let (b, v) = first_order(&y, &levels);
                sb += b;
                sv += v;
            }
            Sensitivity {
                factor: factor.name.clone(),
                first_order: (var > 0.0).then(|| between / var),
                score_first_order: (sv > 0.0).then(|| sb / sv),
                by_group,
            }
        })
        .collect();
    sensitivity.sort_by(|a, b| {
        b.first_order
            .unwrap_or(-1.0)
            .total_cmp(&a.first_order.unwrap_or(-1.0))
            .then(
                b.score_first_order
                    .unwrap_or(-1.0)
                    .total_cmp(&a.score_first_order.unwrap_or(-1.0)),
            )
            .then(a.factor.cmp(&b.factor))
    });
    let customers = if opts.detail {
        let nominal_customer_ranks = ranks(&nominal_customers);
        (0..table.keys.len())
            .map(|i| {
                let mut r: Vec<f64> = evaluated
                    .iter()
                    .filter_map(|e| e.customers.get(i).copied())
                    .filter(|r| *r > 0)
                    .map(f64::from)
                    .collect();
                r.sort_by(f64::total_cmp);
                CustomerUncertainty {
                    key: table.keys[i].clone(),
                    group: opts.by.map(|_| group_name(&table.groups[table.group[i]])),
                    nominal: nominal_customers[i],
                    rank_nominal: nominal_customer_ranks[i],
                    rank_median: quantile(&r, 0.5),
                    rank_p05: quantile(&r, 0.05),
                    rank_p95: quantile(&r, 0.95),
                    excluded_draws: evaluated.len() - r.len(),
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    let record = Record {
        components: file
            .components
            .iter()
            .map(|c| c.name.value.clone())
            .collect(),
        variants: labels,
        groups: table.groups.iter().map(group_name).collect(),
        scores: evaluated.iter().map(|e| e.groups.clone()).collect(),
        draws,
    };
    Ok(Uncertainty {
        draws: opts.draws,
        seed: opts.seed,
        spread: opts.spread,
        factors: factors.into_iter().map(|(f, _)| f).collect(),
        groups,
        sensitivity,
        customers,
        record,
    })
}

/// A geometric or harmonic mean needs every component + shift > 0: each
/// such method drawn is refused, before any draw, where a variant of a
/// component has a customer at or below `-shift`.
fn positive(
    space: &Space,
    table: &Table,
    file: &formulas::FormulaFile,
    labels: &[Vec<(String, String)>],
) -> Result<()> {
    let Some(method) = space.methods.iter().find(|m| **m != Method::Arithmetic) else {
        return Ok(());
    };
    for (s, state) in table.values.iter().enumerate() {
        for (k, vk) in state.iter().enumerate() {
            for (j, v) in vk.iter().enumerate() {
                let n = v.iter().filter(|x| **x + space.shift <= 0.0).count();
                if n > 0 {
                    let (norm, imp) = &labels[k][j];
                    return Err(Error::User(format!(
                        "--uncertainty draws the {} mean, which needs every component + shift ({}) above 0: component `{}` normalised by {norm}, imputed by {imp}{} is at or below {} for {n} customers",
                        variants::method_name(*method),
                        space.shift,
                        file.components[k].name.value,
                        if s == 1 {
                            ", without winsorisation,"
                        } else {
                            ""
                        },
                        -space.shift,
                    )));
                }
            }
        }
    }
    Ok(())
}

type Level = Box<dyn Fn(&Draw) -> usize>;

/// The factors that vary, each with the level a draw takes.
fn factors(
    space: &Space,
    components: &[formulas::Component],
    shapes: &[(usize, usize)],
    labels: &[Vec<(String, String)>],
    file: &formulas::FormulaFile,
) -> Vec<(Factor, Level)> {
    let mut out: Vec<(Factor, Level)> = Vec::new();
    if space.states > 1 {
        out.push((
            Factor {
                name: "winsorise".into(),
                levels: vec!["on".into(), "off".into()],
            },
            Box::new(|d: &Draw| d.state),
        ));
    }
    if space.methods.len() > 1 {
        let methods = space.methods.clone();
        out.push((
            Factor {
                name: "method".into(),
                levels: methods
                    .iter()
                    .map(|m| variants::method_name(*m).to_string())
                    .collect(),
            },
            Box::new(move |d: &Draw| methods.iter().position(|m| *m == d.method).unwrap_or(0)),
        ));
    }
    for (k, c) in components.iter().enumerate() {
        let (n, i) = shapes[k];
        let name = &c.name.value;
        if n > 1 {
            out.push((
                Factor {
                    name: format!("normalise.{name}"),
                    levels: (0..n).map(|a| labels[k][a * i].0.clone()).collect(),
                },
                Box::new(move |d: &Draw| d.variant[k] / i),
            ));
        }
        if i > 1 {
            out.push((
                Factor {
                    name: format!("impute.{name}"),
                    levels: (0..i).map(|b| labels[k][b].1.clone()).collect(),
                },
                Box::new(move |d: &Draw| d.variant[k] % i),
            ));
        }
        if space.spread > 0.0 && file.components.len() > 1 {
            out.push((
                Factor {
                    name: format!("weight.{name}"),
                    levels: (0..WEIGHT_BINS)
                        .map(|b| {
                            let lo =
                                1.0 + space.spread * (2.0 * b as f64 / WEIGHT_BINS as f64 - 1.0);
                            let hi = 1.0
                                + space.spread * (2.0 * (b + 1) as f64 / WEIGHT_BINS as f64 - 1.0);
                            format!("x{lo:.3}..x{hi:.3}")
                        })
                        .collect(),
                },
                Box::new(move |d: &Draw| {
                    ((d.u[k] * WEIGHT_BINS as f64) as usize).min(WEIGHT_BINS - 1)
                }),
            ));
        }
    }
    out
}

/// One draw's figures: each group's score and rank, and with `detail`
/// each customer's rank (0: no score).
struct Evaluated {
    groups: Vec<Option<f64>>,
    ranks: Vec<Option<u32>>,
    customers: Vec<u32>,
}

/// Evaluates the draws on `threads` threads, each a contiguous run of
/// draws; every draw is computed alone, in customer order.
fn evaluate(
    space: &Space,
    table: &Table,
    draws: &[Draw],
    detail: bool,
    threads: usize,
) -> Result<Vec<Evaluated>> {
    let one = |d: &Draw| {
        let customers = space.customers(table, d);
        let groups = space.groups(table, d, &customers);
        Evaluated {
            ranks: ranks(&groups),
            groups,
            customers: if detail {
                ranks(&customers)
                    .into_iter()
                    .map(|r| r.unwrap_or(0))
                    .collect()
            } else {
                Vec::new()
            },
        }
    };
    let chunk = draws.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = draws
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(one).collect::<Vec<_>>()))
            .collect();
        let mut out = Vec::with_capacity(draws.len());
        for h in handles {
            out.extend(
                h.join().map_err(|_| {
                    Error::User("internal: a thread evaluating draws failed".into())
                })?,
            );
        }
        Ok(out)
    })
}
