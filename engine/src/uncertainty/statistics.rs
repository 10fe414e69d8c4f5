//! Summaries of the draws: type-7 quantiles (linear interpolation between
//! order statistics, R's default and numpy's `linear`) and first-order
//! sensitivity indices.
//!
//! The first-order index of a factor `X` for an output `Y` is
//! `Var(E[Y | X]) / Var(Y)`, estimated from the draws themselves (the
//! "given data" estimator): the draws are split by the factor's level (a
//! discrete choice), or by its bin (a weight: ten equal-probability bins
//! of its uniform number), and `Var(E[Y | X])` is the variance of the
//! levels' means, each weighted by its share of the draws; both variances
//! are population variances over the draws.

/// The `q` quantile of `sorted` (ascending), type 7.
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64))
}

/// `(variance of the conditional means, variance)` of `y` split by
/// `level` (pairs with `y: None` left out); summed over outputs, these
/// give an index over several outputs at once.
pub fn first_order(y: &[Option<f64>], level: &[usize]) -> (f64, f64) {
    let pairs: Vec<(f64, usize)> = y
        .iter()
        .zip(level)
        .filter_map(|(y, l)| y.map(|y| (y, *l)))
        .collect();
    if pairs.is_empty() {
        return (0.0, 0.0);
    }
    let n = pairs.len() as f64;
    let mean = pairs.iter().map(|p| p.0).sum::<f64>() / n;
    let var = pairs.iter().map(|p| (p.0 - mean).powi(2)).sum::<f64>() / n;
    let levels = pairs.iter().map(|p| p.1).max().unwrap_or(0) + 1;
    let mut sum = vec![0.0; levels];
    let mut count = vec![0usize; levels];
    for (y, l) in &pairs {
        sum[*l] += y;
        count[*l] += 1;
    }
    let between = sum
        .iter()
        .zip(&count)
        .filter(|(_, c)| **c > 0)
        .map(|(s, c)| *c as f64 * (s / *c as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    (between, var)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate() {
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.5), Some(3.0));
        assert_eq!(quantile(&[1.0, 2.0], 0.25), Some(1.25));
        assert_eq!(quantile(&[], 0.5), None);
    }

    /// y = level exactly: the index is 1. y independent of the level
    /// (each level has the same mean): 0. By hand: y = (1, 3, 2, 6) with
    /// levels (0, 0, 1, 1): mean 3, Var = (4 + 0 + 1 + 9) / 4 = 3.5;
    /// level means 2 and 4, Var(E) = (2 x 1 + 2 x 1) / 4 = 1.
    #[test]
    fn first_order_by_hand() {
        let y = |v: &[f64]| v.iter().map(|x| Some(*x)).collect::<Vec<_>>();
        assert_eq!(
            first_order(&y(&[0.0, 1.0, 0.0, 1.0]), &[0, 1, 0, 1]),
            (0.25, 0.25)
        );
        assert_eq!(first_order(&y(&[1.0, 2.0, 1.0, 2.0]), &[0, 0, 1, 1]).0, 0.0);
        assert_eq!(
            first_order(&y(&[1.0, 3.0, 2.0, 6.0]), &[0, 0, 1, 1]),
            (1.0, 3.5)
        );
        assert_eq!(
            first_order(&[None, Some(1.0), Some(3.0)], &[5, 0, 1]),
            (1.0, 1.0)
        );
    }
}
