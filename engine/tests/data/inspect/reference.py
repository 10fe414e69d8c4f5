"""Expected numbers of engine/src/inspect/stats.rs, from numpy and scipy,
independently of croo. Writes reference.json beside this script.

- quantiles: numpy.quantile(method="linear") (Hyndman and Fan type 7);
- skewness: scipy.stats.skew(bias=False) (adjusted Fisher-Pearson, G1);
- kurtosis: scipy.stats.kurtosis(fisher=True, bias=False) (excess, G2);
- Pearson: numpy.corrcoef; Spearman: scipy.stats.spearmanr (average ranks
  at ties); covariance: numpy.cov (n - 1).
The data has ties on purpose.
Run: python3 reference.py
"""
import json
import numpy as np
from scipy import stats

x = np.array([3.0, 1.5, 7.25, 3.0, 12.0, 0.5, 3.0, 8.0, 2.25, 30.0, 4.5, 4.5])
y = np.array([2.0, 1.0, 5.5, 2.5, 9.0, 1.0, 2.0, 6.0, 3.0, 11.0, 4.0, 3.5])
out = {
    "x": x.tolist(), "y": y.tolist(),
    "p5": float(np.quantile(x, 0.05)), "median": float(np.quantile(x, 0.5)),
    "p95": float(np.quantile(x, 0.95)), "p30": float(np.quantile(x, 0.3)),
    "skew": float(stats.skew(x, bias=False)),
    "kurtosis": float(stats.kurtosis(x, fisher=True, bias=False)),
    "pearson": float(np.corrcoef(x, y)[0, 1]),
    "spearman": float(stats.spearmanr(x, y).statistic),
    "covariance": float(np.cov(x, y)[0, 1]),
}
json.dump(out, open(__file__.replace("reference.py", "reference.json"), "w"), indent=1)
