//! Descriptive statistics of `croo inspect` and of COINr's outlier rule
//! (docs/methods.md, "Inspecting a formula"): quantiles, skewness and
//! kurtosis, Pearson and Spearman correlations. Pure functions over the
//! non-NULL values.

/// The `p` quantile of sorted `v` by linear interpolation between order
/// statistics: `h = (n - 1) p`, `v[floor h] + (h - floor h) (v[floor h + 1]
/// - v[floor h])` (Hyndman and Fan's type 7, numpy's and R's default).
pub fn quantile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let h = (sorted.len() - 1) as f64 * p;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    Some(sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo]))
}

fn moments(v: &[f64]) -> (f64, f64, f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let (mut m2, mut m3, mut m4) = (0.0, 0.0, 0.0);
    for x in v {
        let d = x - mean;
        m2 += d * d;
        m3 += d * d * d;
        m4 += d * d * d * d;
    }
    (mean, m2 / n, m3 / n, m4 / n)
}

/// The adjusted Fisher-Pearson sample skewness `G1 = g1 sqrt(n (n - 1)) /
/// (n - 2)`, `g1 = m3 / m2^1.5` (Excel's SKEW, `scipy.stats.skew(bias =
/// False)`); needs 3 values and some spread.
pub fn skewness(v: &[f64]) -> Option<f64> {
    let n = v.len() as f64;
    if v.len() < 3 {
        return None;
    }
    let (_, m2, m3, _) = moments(v);
    if m2 <= 0.0 {
        return None;
    }
    let g1 = m3 / m2.powf(1.5);
    Some(g1 * (n * (n - 1.0)).sqrt() / (n - 2.0))
}

/// The sample excess kurtosis `G2 = ((n + 1) g2 + 6) (n - 1) / ((n - 2)
/// (n - 3))`, `g2 = m4 / m2^2 - 3` (Excel's KURT,
/// `scipy.stats.kurtosis(bias = False)`): 0 for a normal distribution;
/// needs 4 values and some spread.
pub fn kurtosis(v: &[f64]) -> Option<f64> {
    let n = v.len() as f64;
    if v.len() < 4 {
        return None;
    }
    let (_, m2, _, m4) = moments(v);
    if m2 <= 0.0 {
        return None;
    }
    let g2 = m4 / (m2 * m2) - 3.0;
    Some(((n + 1.0) * g2 + 6.0) * (n - 1.0) / ((n - 2.0) * (n - 3.0)))
}

/// Pearson's correlation of paired values (`None` with fewer than 2 pairs
/// or without spread).
pub fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len().min(y.len());
    if n < 2 {
        return None;
    }
    let mx = x.iter().sum::<f64>() / n as f64;
    let my = y.iter().sum::<f64>() / n as f64;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (a, b) = (x[i] - mx, y[i] - my);
        sxy += a * b;
        sxx += a * a;
        syy += b * b;
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

/// Ranks from 1, ties at their average rank.
pub fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut out = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for k in i..=j {
            out[idx[k]] = avg;
        }
        i = j + 1;
    }
    out
}

/// Spearman's correlation: Pearson's of the average ranks.
pub fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    pearson(&ranks(x), &ranks(y))
}

/// The covariance of paired values (n - 1).
pub fn covariance(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len().min(y.len());
    if n < 2 {
        return None;
    }
    let mx = x.iter().sum::<f64>() / n as f64;
    let my = y.iter().sum::<f64>() / n as f64;
    Some((0..n).map(|i| (x[i] - mx) * (y[i] - my)).sum::<f64>() / (n as f64 - 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_numpy_and_scipy() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/inspect/reference.json"
        );
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let vec = |k: &str| -> Vec<f64> {
            r[k].as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        };
        let f = |k: &str| r[k].as_f64().unwrap();
        let close = |a: Option<f64>, b: f64, what: &str| {
            let a = a.unwrap();
            assert!(
                (a - b).abs() <= 1e-10 * b.abs().max(1.0),
                "{what}: {a} vs {b}"
            );
        };
        let (x, y) = (vec("x"), vec("y"));
        let mut s = x.clone();
        s.sort_by(f64::total_cmp);
        for (p, k) in [(0.05, "p5"), (0.5, "median"), (0.95, "p95"), (0.3, "p30")] {
            close(quantile(&s, p), f(k), k);
        }
        close(skewness(&x), f("skew"), "skew");
        close(kurtosis(&x), f("kurtosis"), "kurtosis");
        close(pearson(&x, &y), f("pearson"), "pearson");
        close(spearman(&x, &y), f("spearman"), "spearman");
        close(covariance(&x, &y), f("covariance"), "covariance");
    }

    /// By hand: 1, 2, 2, 3, 10 has median 2 and p30 = 2 (h = 1.2, between
    /// the two 2s); ranks 1, 2.5, 2.5, 4, 5.
    #[test]
    fn by_hand() {
        let v = [1.0, 2.0, 2.0, 3.0, 10.0];
        assert_eq!(quantile(&v, 0.5), Some(2.0));
        assert_eq!(quantile(&v, 0.3), Some(2.0));
        assert!((quantile(&v, 0.9).unwrap() - 7.2).abs() < 1e-12);
        assert_eq!(ranks(&[3.0, 1.0, 2.0, 2.0]), vec![4.0, 1.0, 2.5, 2.5]);
        assert_eq!(skewness(&[1.0, 1.0, 1.0]), None);
        assert!((pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]).unwrap() - 1.0).abs() < 1e-15);
    }
}
