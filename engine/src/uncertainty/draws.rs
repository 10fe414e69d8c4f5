//! One Monte Carlo draw of the methodological choices and its scores:
//! which winsorisation state, aggregation method and component variants
//! are used, and the weights; then every customer's score as the engine
//! computes it (`engine::aggregation`), and each group's rollup.

use formulas::Method;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::variants::Table;

/// The choices of one draw.
#[derive(Debug, Clone, PartialEq)]
pub struct Draw {
    /// Index of the winsorisation state (0: as declared; 1: without).
    pub state: usize,
    pub method: Method,
    /// Per component, the index of its variant.
    pub variant: Vec<usize>,
    /// Per component, the uniform number in [0, 1) its weight is drawn
    /// from: `nominal x (1 + spread (2u - 1))`, before rescaling.
    pub u: Vec<f64>,
    /// Per component, the weight, rescaled to the nominal total.
    pub weight: Vec<f64>,
}

/// What may vary, and around what.
#[derive(Debug, Clone)]
pub struct Space {
    pub states: usize,
    /// The nominal method first.
    pub methods: Vec<Method>,
    /// Per component, how many variants it has.
    pub variants: Vec<usize>,
    pub nominal: Vec<f64>,
    pub spread: f64,
    pub shift: f64,
    pub min_coverage: Option<f64>,
    pub scale: f64,
}

impl Space {
    /// The nominal choices.
    pub fn nominal(&self) -> Draw {
        Draw {
            state: 0,
            method: self.methods[0],
            variant: vec![0; self.variants.len()],
            u: vec![0.5; self.variants.len()],
            weight: self.nominal.clone(),
        }
    }

    /// `n` draws from one seeded stream, in order: per draw the state,
    /// the method, then per component its variant and its weight's
    /// uniform number (only the choices that vary consume numbers). Each
    /// choice is uniform over its options.
    pub fn draws(&self, n: usize, seed: u64) -> Vec<Draw> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let state = if self.states > 1 {
                    rng.random_range(0..self.states)
                } else {
                    0
                };
                let method = if self.methods.len() > 1 {
                    self.methods[rng.random_range(0..self.methods.len())]
                } else {
                    self.methods[0]
                };
                let mut variant = Vec::with_capacity(self.variants.len());
                let mut u = Vec::with_capacity(self.variants.len());
                for v in &self.variants {
                    variant.push(if *v > 1 { rng.random_range(0..*v) } else { 0 });
                    u.push(if self.spread > 0.0 {
                        rng.random::<f64>()
                    } else {
                        0.5
                    });
                }
                let weight = self.weights(&u);
                Draw {
                    state,
                    method,
                    variant,
                    u,
                    weight,
                }
            })
            .collect()
    }

    /// Weights from their uniform numbers, rescaled to the nominal total.
    fn weights(&self, u: &[f64]) -> Vec<f64> {
        let total: f64 = self.nominal.iter().sum();
        let mut w: Vec<f64> = self
            .nominal
            .iter()
            .zip(u)
            .map(|(n, u)| n * (1.0 + self.spread * (2.0 * u - 1.0)))
            .collect();
        let sum: f64 = w.iter().sum();
        if sum != 0.0 {
            w.iter_mut().for_each(|x| *x *= total / sum);
        }
        w
    }

    /// A customer's score (times `scale`) from its components `c` (NaN:
    /// missing) under `d`, as `engine::aggregation::score` computes it;
    /// `None` when it has none.
    pub fn customer(&self, d: &Draw, c: &[f64]) -> Option<f64> {
        let total: f64 = self.nominal.iter().sum();
        let present: f64 = c
            .iter()
            .zip(&d.weight)
            .filter(|(c, _)| !c.is_nan())
            .map(|(_, w)| w)
            .sum();
        let complete = c.iter().all(|c| !c.is_nan());
        let over = match self.min_coverage {
            None if !complete => return None,
            None => total,
            Some(min) => {
                if present < min * total || total <= 0.0 {
                    return None;
                }
                present
            }
        };
        let terms = c.iter().zip(&d.weight).filter(|(c, _)| !c.is_nan());
        let s = match d.method {
            Method::Arithmetic => {
                let s: f64 = terms.map(|(c, w)| w * c).sum();
                if self.min_coverage.is_some() {
                    total * s / over
                } else {
                    s
                }
            }
            Method::Geometric => {
                let s: f64 = terms.map(|(c, w)| w * (c + self.shift).ln()).sum();
                (s / over).exp() - self.shift
            }
            Method::Harmonic => {
                let s: f64 = terms.map(|(c, w)| w / (c + self.shift)).sum();
                over / s - self.shift
            }
        };
        Some(self.scale * s)
    }

    /// Every customer's score under `d` (`None`: not included).
    pub fn customers(&self, t: &Table, d: &Draw) -> Vec<Option<f64>> {
        let values = &t.values[d.state];
        let weight = &t.weight[d.state];
        let mut c = vec![0.0; values.len()];
        (0..t.keys.len())
            .map(|i| {
                if weight[i].is_nan() || weight[i] <= 0.0 {
                    return None;
                }
                for (k, vk) in values.iter().enumerate() {
                    c[k] = vk[d.variant[k]][i];
                }
                self.customer(d, &c)
            })
            .collect()
    }

    /// Each group's score: the rollup-weighted mean of its included
    /// customers' scores (`None`: none included).
    pub fn groups(&self, t: &Table, d: &Draw, customers: &[Option<f64>]) -> Vec<Option<f64>> {
        let weight = &t.weight[d.state];
        let mut sw = vec![0.0; t.groups.len()];
        let mut w = vec![0.0; t.groups.len()];
        for (i, s) in customers.iter().enumerate() {
            if let Some(s) = s {
                sw[t.group[i]] += weight[i] * s;
                w[t.group[i]] += weight[i];
            }
        }
        sw.iter()
            .zip(&w)
            .map(|(sw, w)| (*w > 0.0).then(|| sw / w))
            .collect()
    }
}

/// Ranks, 1 for the highest; ties share the best rank; `None` stays.
pub fn ranks(scores: &[Option<f64>]) -> Vec<Option<u32>> {
    let mut order: Vec<(f64, usize)> = scores
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.map(|s| (s, i)))
        .collect();
    order.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut out = vec![None; scores.len()];
    let mut rank = 0u32;
    for (p, (s, i)) in order.iter().enumerate() {
        if p == 0 || *s != order[p - 1].0 {
            rank = p as u32 + 1;
        }
        out[*i] = Some(rank);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space(method: Method, min_coverage: Option<f64>) -> Space {
        Space {
            states: 1,
            methods: vec![method],
            variants: vec![1, 1],
            nominal: vec![0.75, 0.25],
            spread: 0.0,
            shift: 0.0,
            min_coverage,
            scale: 100.0,
        }
    }

    /// Hand-computed: components (0.8, 0.2), weights 0.75 / 0.25.
    /// arithmetic 0.75 x 0.8 + 0.25 x 0.2 = 0.65; geometric
    /// 0.8^0.75 x 0.2^0.25 = exp(0.75 ln 0.8 + 0.25 ln 0.2) = 0.565685...;
    /// harmonic 1 / (0.75 / 0.8 + 0.25 / 0.2) = 1 / 2.1875 = 0.457142...;
    /// with min_coverage 0.5 and the second missing: 0.8 re-weighted; with
    /// 0.8 and the first missing: excluded (0.25 < 0.8).
    #[test]
    fn customer_scores_by_hand() {
        let c = [0.8, 0.2];
        let s = |m, cov, c: &[f64]| {
            let sp = space(m, cov);
            sp.customer(&sp.nominal(), c)
        };
        let close = |a: Option<f64>, b: f64| assert!((a.unwrap() - b).abs() < 1e-12, "{a:?} {b}");
        close(s(Method::Arithmetic, None, &c), 65.0);
        close(
            s(Method::Geometric, None, &c),
            100.0 * 0.8f64.powf(0.75) * 0.2f64.powf(0.25),
        );
        close(s(Method::Harmonic, None, &c), 100.0 / 2.1875);
        assert_eq!(s(Method::Arithmetic, None, &[0.8, f64::NAN]), None);
        close(s(Method::Arithmetic, Some(0.5), &[0.8, f64::NAN]), 80.0);
        close(s(Method::Geometric, Some(0.5), &[0.8, f64::NAN]), 80.0);
        assert_eq!(s(Method::Arithmetic, Some(0.8), &[f64::NAN, 0.2]), None);
    }

    #[test]
    fn ranks_share_ties_and_skip_missing() {
        assert_eq!(
            ranks(&[Some(2.0), None, Some(5.0), Some(2.0), Some(1.0)]),
            vec![Some(2), None, Some(1), Some(2), Some(4)]
        );
    }

    /// Weights stay within +-spread before rescaling and add up to the
    /// nominal total; choices that do not vary stay nominal.
    #[test]
    fn draws_respect_the_space() {
        let mut sp = space(Method::Arithmetic, None);
        sp.spread = 0.1;
        sp.variants = vec![3, 1];
        sp.methods = vec![Method::Arithmetic, Method::Geometric];
        let draws = sp.draws(2000, 3);
        assert_eq!(draws, sp.draws(2000, 3));
        let mut seen = [0usize; 3];
        for d in &draws {
            assert!((d.weight.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            assert!(d.u.iter().all(|u| (0.0..1.0).contains(u)));
            assert_eq!(d.variant[1], 0);
            assert_eq!(d.state, 0);
            seen[d.variant[0]] += 1;
        }
        // Each of 3 variants about a third of 2000 (sd about 21).
        assert!(seen.iter().all(|n| (560..=775).contains(n)), "{seen:?}");
    }
}
