//! Uncertainty and sensitivity of scores and ranks to the component
//! weights (OECD/JRC composite-indicator practice): the period is scored
//! once; each draw re-weights the components around their nominal values.
//!
//! With the default combination a group's score is linear in the weights:
//! `scale * sum_k w_k A_k / W`, where `A_k` is the weighted sum of component
//! `k` over the group's included customers and `W` their rollup weight, so
//! a draw costs O(groups x components), not a pass over the customers.

use chrono::NaiveDate;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Date32Type, Float64Type};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::columns::{INCLUDED, PERIOD, WEIGHT, dim_col};
use crate::error::{Error, Result};
use formulas::Formula;

#[derive(Debug, Clone, Serialize)]
pub struct GroupUncertainty {
    pub value: Option<String>,
    pub nominal: Option<f64>,
    pub median: Option<f64>,
    pub p05: Option<f64>,
    pub p95: Option<f64>,
    /// Rank 1 is the highest score.
    pub rank_nominal: Option<usize>,
    pub rank_median: Option<f64>,
    pub rank_p05: Option<f64>,
    pub rank_p95: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Sensitivity {
    pub component: String,
    /// Mean absolute change of the groups' ranks when only this weight moves.
    pub mean_rank_shift: f64,
    /// Mean absolute change of the groups' scores when only this weight moves.
    pub mean_score_shift: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Uncertainty {
    pub draws: usize,
    pub seed: u64,
    /// Each weight is drawn uniformly within +-spread of its nominal value,
    /// then all are rescaled to the nominal total.
    pub spread: f64,
    pub groups: Vec<GroupUncertainty>,
    pub sensitivity: Vec<Sensitivity>,
}

struct Group {
    value: Option<String>,
    /// Per component: sum of weight x component over included customers.
    a: Vec<f64>,
    w: f64,
}

fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64))
}

fn ranks(scores: &[Option<f64>]) -> Vec<Option<usize>> {
    scores
        .iter()
        .map(|s| s.map(|s| 1 + scores.iter().flatten().filter(|o| **o > s).count()))
        .collect()
}

/// Scores of every group for component weights `w`.
fn score(groups: &[Group], w: &[f64], scale: f64) -> Vec<Option<f64>> {
    groups
        .iter()
        .map(|g| {
            (g.w > 0.0).then(|| scale * g.a.iter().zip(w).map(|(a, w)| a * w).sum::<f64>() / g.w)
        })
        .collect()
}

/// Draws the weights: each within +-spread of nominal, rescaled to the
/// nominal total. `only` moves a single weight.
fn draw(rng: &mut ChaCha8Rng, nominal: &[f64], spread: f64, only: Option<usize>) -> Vec<f64> {
    let total: f64 = nominal.iter().sum();
    let mut w: Vec<f64> = nominal
        .iter()
        .enumerate()
        .map(|(k, n)| {
            if only.is_none_or(|o| o == k) {
                n * (1.0 + spread * (2.0 * rng.random::<f64>() - 1.0))
            } else {
                *n
            }
        })
        .collect();
    let sum: f64 = w.iter().sum();
    if sum != 0.0 {
        w.iter_mut().for_each(|x| *x *= total / sum);
    }
    w
}

/// Analyses one period of the per-customer rows (`detail`) by dimension
/// `by` (index into the formula's dimensions), or the whole population.
pub fn analyse(
    f: &Formula,
    detail: &[RecordBatch],
    period: NaiveDate,
    by: Option<usize>,
    draws: usize,
    seed: u64,
    spread: f64,
) -> Result<Uncertainty> {
    if f.score.is_some() {
        return Err(Error::User(
            "--uncertainty needs the default combination of components (the formula has a custom `score.expr`)".into(),
        ));
    }
    if f.file.method != formulas::Method::Arithmetic {
        return Err(Error::User(
            "--uncertainty re-weights the arithmetic mean of the components; this formula's [score] method is not arithmetic".into(),
        ));
    }
    let comps = &f.file.components;
    let mut groups: Vec<Group> = Vec::new();
    let missing = |c: &str| Error::User(format!("internal: per-customer column `{c}` missing"));
    for b in detail {
        let s = b.schema();
        let col = |name: &str| {
            s.index_of(name)
                .map(|i| b.column(i).clone())
                .map_err(|_| missing(name))
        };
        let periods = col(PERIOD)?;
        let periods = periods.as_primitive::<Date32Type>();
        let weights = col(WEIGHT)?;
        let weights = weights.as_primitive::<Float64Type>();
        let included = col(INCLUDED)?;
        let included = included.as_boolean();
        let dim = match by {
            Some(i) => Some(col(&dim_col(i))?),
            None => None,
        };
        let values: Vec<_> = comps
            .iter()
            .map(|c| col(&c.name.value))
            .collect::<Result<_>>()?;
        for r in 0..b.num_rows() {
            if periods.value_as_date(r) != Some(period) || included.is_null(r) || !included.value(r)
            {
                continue;
            }
            let v = dim.as_ref().and_then(|d| {
                let d = d.as_string::<i32>();
                (!d.is_null(r)).then(|| d.value(r).to_string())
            });
            let gi = match groups.iter().position(|g| g.value == v) {
                Some(i) => i,
                None => {
                    groups.push(Group {
                        value: v,
                        a: vec![0.0; comps.len()],
                        w: 0.0,
                    });
                    groups.len() - 1
                }
            };
            let w = weights.value(r);
            let g = &mut groups[gi];
            g.w += w;
            for (k, arr) in values.iter().enumerate() {
                g.a[k] += w * arr.as_primitive::<Float64Type>().value(r);
            }
        }
    }
    groups.sort_by(|a, b| a.value.cmp(&b.value));
    let nominal: Vec<f64> = comps.iter().map(|c| c.weight).collect();
    let scale = f.file.scale;
    let base = score(&groups, &nominal, scale);
    let base_ranks = ranks(&base);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); groups.len()];
    let mut rank_samples: Vec<Vec<f64>> = vec![Vec::new(); groups.len()];
    for _ in 0..draws {
        let w = draw(&mut rng, &nominal, spread, None);
        let s = score(&groups, &w, scale);
        for (i, (x, r)) in s.iter().zip(ranks(&s)).enumerate() {
            if let (Some(x), Some(r)) = (x, r) {
                samples[i].push(*x);
                rank_samples[i].push(r as f64);
            }
        }
    }
    let sorted = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v
    };
    let out_groups = groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let s = sorted(samples[i].clone());
            let r = sorted(rank_samples[i].clone());
            GroupUncertainty {
                value: g.value.clone(),
                nominal: base[i],
                median: quantile(&s, 0.5),
                p05: quantile(&s, 0.05),
                p95: quantile(&s, 0.95),
                rank_nominal: base_ranks[i],
                rank_median: quantile(&r, 0.5),
                rank_p05: quantile(&r, 0.05),
                rank_p95: quantile(&r, 0.95),
            }
        })
        .collect();
    let mut sensitivity = Vec::new();
    for (k, c) in comps.iter().enumerate() {
        let (mut rank_shift, mut score_shift, mut n) = (0.0, 0.0, 0usize);
        for _ in 0..draws {
            let w = draw(&mut rng, &nominal, spread, Some(k));
            let s = score(&groups, &w, scale);
            for ((x, r), (b, br)) in s.iter().zip(ranks(&s)).zip(base.iter().zip(&base_ranks)) {
                if let (Some(x), Some(r), Some(b), Some(br)) = (x, r, b, br) {
                    rank_shift += (r as f64 - *br as f64).abs();
                    score_shift += (x - b).abs();
                    n += 1;
                }
            }
        }
        let n = n.max(1) as f64;
        sensitivity.push(Sensitivity {
            component: c.name.value.clone(),
            mean_rank_shift: rank_shift / n,
            mean_score_shift: score_shift / n,
        });
    }
    sensitivity.sort_by(|a, b| {
        b.mean_rank_shift
            .total_cmp(&a.mean_rank_shift)
            .then(b.mean_score_shift.total_cmp(&a.mean_score_shift))
    });
    Ok(Uncertainty {
        draws,
        seed,
        spread,
        groups: out_groups,
        sensitivity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(value: &str, a: Vec<f64>, w: f64) -> Group {
        Group {
            value: Some(value.into()),
            a,
            w,
        }
    }

    /// Two groups, two components. smb: A = (1, 0), W = 1 -> score 100 * w1;
    /// ent: A = (0, 1), W = 1 -> 100 * w2. With nominal weights 0.6/0.4,
    /// smb (60) ranks 1st and ent (40) 2nd; a +-10% spread keeps the order
    /// (w1 stays within [0.54, 0.66] after rescaling, so > 0.5).
    #[test]
    fn scores_are_linear_in_the_weights() {
        let groups = vec![g("smb", vec![1.0, 0.0], 1.0), g("ent", vec![0.0, 1.0], 1.0)];
        assert_eq!(
            score(&groups, &[0.6, 0.4], 100.0),
            vec![Some(60.0), Some(40.0)]
        );
        assert_eq!(
            ranks(&[Some(60.0), Some(40.0), None]),
            vec![Some(1), Some(2), None]
        );
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..1000 {
            let w = draw(&mut rng, &[0.6, 0.4], 0.1, None);
            assert!((w[0] + w[1] - 1.0).abs() < 1e-12);
            assert!(w[0] > 0.5);
            let only = draw(&mut rng, &[0.6, 0.4], 0.1, Some(1));
            assert!((only[0] + only[1] - 1.0).abs() < 1e-12);
        }
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.5), Some(3.0));
        assert_eq!(quantile(&[1.0, 2.0], 0.25), Some(1.25));
    }
}
