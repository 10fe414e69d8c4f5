//! The statistics of an experiment report (docs/experiments.md, with the
//! formulas): rollup-weighted means as ratio estimators with delta-method
//! variances, Welch intervals of their difference, CUPED with a pre-period
//! covariate, the sample-ratio-mismatch chi-square, Holm's correction and a
//! seeded bootstrap. Pure functions over per-customer numbers; the
//! distributions come from `statrs`.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use statrs::distribution::{ChiSquared, ContinuousCDF, StudentsT};

/// One customer's numbers in an arm: `s` = sum of weight x value over its
/// periods, `w` = sum of weights; `x` its pre-period value (CUPED), if any.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Unit {
    pub s: f64,
    pub w: f64,
    pub x: Option<f64>,
}

/// An arm's ratio mean `M = sum s / sum w` and its delta-method variance:
/// with `L_i = (s_i - M w_i) / mean(w)`, `Var(M) = var(L) / n` (`var` the
/// sample variance, n - 1).
#[derive(Debug, Clone, PartialEq)]
pub struct RatioMean {
    pub n: usize,
    pub mean: f64,
    pub variance: f64,
    /// The linearised values `L_i`.
    linear: Vec<f64>,
}

fn sample_var(v: &[f64]) -> f64 {
    let n = v.len() as f64;
    if v.len() < 2 {
        return f64::NAN;
    }
    let m = v.iter().sum::<f64>() / n;
    v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0)
}

/// The ratio mean of `units` (`None` without units or weight).
pub fn ratio_mean(units: &[Unit]) -> Option<RatioMean> {
    let (ss, sw): (f64, f64) = units
        .iter()
        .fold((0.0, 0.0), |(a, b), u| (a + u.s, b + u.w));
    if units.is_empty() || sw <= 0.0 {
        return None;
    }
    let mean = ss / sw;
    let wbar = sw / units.len() as f64;
    let linear: Vec<f64> = units.iter().map(|u| (u.s - mean * u.w) / wbar).collect();
    let variance = sample_var(&linear) / units.len() as f64;
    Some(RatioMean {
        n: units.len(),
        mean,
        variance,
        linear,
    })
}

/// A difference of two means with its 95% interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lift {
    pub control: f64,
    pub treatment: f64,
    /// `treatment - control`.
    pub absolute: f64,
    pub se: f64,
    /// Welch-Satterthwaite degrees of freedom.
    pub df: f64,
    pub lower: f64,
    pub upper: f64,
    /// Two-sided, of `absolute = 0`.
    pub p: f64,
    /// `absolute / control`, its interval by the delta method.
    pub relative: f64,
    pub relative_lower: f64,
    pub relative_upper: f64,
}

/// The 97.5% quantile of Student's t with `df` degrees of freedom.
fn t975(df: f64) -> f64 {
    StudentsT::new(0.0, 1.0, df.max(1.0))
        .map(|t| t.inverse_cdf(0.975))
        .unwrap_or(f64::NAN)
}

fn two_sided_p(t: f64, df: f64) -> f64 {
    StudentsT::new(0.0, 1.0, df.max(1.0))
        .map(|d| 2.0 * (1.0 - d.cdf(t.abs())))
        .unwrap_or(f64::NAN)
}

/// Welch's difference of two means with variances `vt`, `vc` (of the
/// means) from `nt`, `nc` units.
pub fn welch(t: (f64, f64, usize), c: (f64, f64, usize)) -> Lift {
    let ((mt, vt, nt), (mc, vc, nc)) = (t, c);
    let absolute = mt - mc;
    let se = (vt + vc).sqrt();
    let df = (vt + vc).powi(2)
        / (vt * vt / (nt as f64 - 1.0).max(1.0) + vc * vc / (nc as f64 - 1.0).max(1.0));
    let q = t975(df);
    let relative = absolute / mc;
    // Var(mt / mc) ~ vt / mc^2 + mt^2 vc / mc^4.
    let rel_se = (vt / (mc * mc) + mt * mt * vc / mc.powi(4)).sqrt();
    Lift {
        control: mc,
        treatment: mt,
        absolute,
        se,
        df,
        lower: absolute - q * se,
        upper: absolute + q * se,
        p: two_sided_p(absolute / se, df),
        relative,
        relative_lower: relative - q * rel_se,
        relative_upper: relative + q * rel_se,
    }
}

/// The lift of treatment over control.
pub fn lift(t: &RatioMean, c: &RatioMean) -> Lift {
    welch((t.mean, t.variance, t.n), (c.mean, c.variance, c.n))
}

/// CUPED: the lift with each customer's pre-period value as covariate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cuped {
    /// `cov(L, x) / var(x)`, pooled within the two arms.
    pub theta: f64,
    /// Customers with a pre-period value (the others take the mean).
    pub with_covariate: usize,
    pub lift: Lift,
    /// `1 - se_adjusted^2 / se^2`: the share of the lift's variance removed.
    pub variance_reduction: f64,
}

/// CUPED on the linearised ratio means (Deng et al. 2013): `theta` from the
/// pooled within-arm covariance of `L` and the covariate `x` (a customer
/// without one takes the mean of those with one), each arm's mean adjusted
/// by `-theta (mean_arm(x) - mean_all(x))`, its variance `var(L - theta x) /
/// n`.
pub fn cuped(tu: &[Unit], t: &RatioMean, cu: &[Unit], c: &RatioMean) -> Option<Cuped> {
    let known: Vec<f64> = tu.iter().chain(cu).filter_map(|u| u.x).collect();
    if known.len() < 2 {
        return None;
    }
    let fill = known.iter().sum::<f64>() / known.len() as f64;
    let xs = |us: &[Unit]| -> Vec<f64> { us.iter().map(|u| u.x.unwrap_or(fill)).collect() };
    let (xt, xc) = (xs(tu), xs(cu));
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (mxt, mxc) = (mean(&xt), mean(&xc));
    let all = (xt.iter().sum::<f64>() + xc.iter().sum::<f64>()) / (xt.len() + xc.len()) as f64;
    let mut cov = 0.0;
    let mut var = 0.0;
    for (l, x, mx) in [(&t.linear, &xt, mxt), (&c.linear, &xc, mxc)] {
        let ml = mean(l);
        for (li, xi) in l.iter().zip(x.iter()) {
            cov += (li - ml) * (xi - mx);
            var += (xi - mx) * (xi - mx);
        }
    }
    if var <= 0.0 {
        return None;
    }
    let theta = cov / var;
    let adjusted = |l: &[f64], x: &[f64]| -> f64 {
        let v: Vec<f64> = l.iter().zip(x).map(|(li, xi)| li - theta * xi).collect();
        sample_var(&v) / v.len() as f64
    };
    let (vt, vc) = (adjusted(&t.linear, &xt), adjusted(&c.linear, &xc));
    let l = welch(
        (t.mean - theta * (mxt - all), vt, t.n),
        (c.mean - theta * (mxc - all), vc, c.n),
    );
    let before = t.variance + c.variance;
    Some(Cuped {
        theta,
        with_covariate: known.len(),
        variance_reduction: 1.0 - (vt + vc) / before,
        lift: l,
    })
}

/// Sample-ratio mismatch: Pearson's chi-square of the customers per arm
/// against the declared shares (normalised), `k - 1` degrees of freedom.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Srm {
    pub chi2: f64,
    pub df: usize,
    pub p: f64,
}

pub fn srm(observed: &[u64], shares: &[f64]) -> Srm {
    let n: f64 = observed.iter().map(|o| *o as f64).sum();
    let total: f64 = shares.iter().sum();
    let chi2: f64 = observed
        .iter()
        .zip(shares)
        .map(|(o, s)| {
            let e = n * s / total;
            (*o as f64 - e).powi(2) / e
        })
        .sum();
    let df = observed.len().saturating_sub(1).max(1);
    let p = ChiSquared::new(df as f64)
        .map(|d| 1.0 - d.cdf(chi2))
        .unwrap_or(f64::NAN);
    Srm { chi2, df, p }
}

/// Holm's step-down adjusted p-values, in the order given.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut out = vec![f64::NAN; m];
    let mut running: f64 = 0.0;
    for (rank, &i) in order.iter().enumerate() {
        let adj = ((m - rank) as f64 * p[i]).min(1.0);
        running = running.max(adj);
        out[i] = running;
    }
    out
}

/// A seeded bootstrap of the absolute lift: customers resampled with
/// replacement within each arm, `n` times; the 2.5% and 97.5% percentiles.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bootstrap {
    pub resamples: u32,
    pub seed: u64,
    pub lower: f64,
    pub upper: f64,
}

pub fn bootstrap(tu: &[Unit], cu: &[Unit], n: u32, seed: u64) -> Option<Bootstrap> {
    if tu.is_empty() || cu.is_empty() || n == 0 {
        return None;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut draw = |us: &[Unit]| -> f64 {
        let (mut s, mut w) = (0.0, 0.0);
        for _ in 0..us.len() {
            let u = &us[rng.random_range(0..us.len())];
            s += u.s;
            w += u.w;
        }
        s / w
    };
    let mut d: Vec<f64> = (0..n)
        .map(|_| draw(tu) - draw(cu))
        .filter(|v| v.is_finite())
        .collect();
    if d.is_empty() {
        return None;
    }
    d.sort_by(f64::total_cmp);
    let at = |q: f64| d[((q * (d.len() - 1) as f64).round() as usize).min(d.len() - 1)];
    Some(Bootstrap {
        resamples: n,
        seed,
        lower: at(0.025),
        upper: at(0.975),
    })
}

/// A guardrail's verdict: the treatment must not lower the score by more
/// than `margin`: `pass` when the interval's lower bound is above
/// `-margin`, `fail` when its upper bound is below it, `inconclusive`
/// otherwise.
pub fn guard(l: &Lift, margin: f64) -> &'static str {
    if l.lower > -margin {
        "pass"
    } else if l.upper < -margin {
        "fail"
    } else {
        "inconclusive"
    }
}

#[cfg(test)]
mod tests;
