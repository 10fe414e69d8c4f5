"""Expected numbers of engine/src/experiment/stats.rs, computed with numpy and
scipy, independently of croo. Writes reference.json beside this script.

Run: python3 reference.py  (needs numpy and scipy)

- ratio means: M = sum(s) / sum(w); L_i = (s_i - M w_i) / mean(w);
  Var(M) = var(L, ddof=1) / n (the delta method);
- Welch: se = sqrt(vt + vc), df = (vt + vc)^2 / (vt^2/(nt-1) + vc^2/(nc-1)),
  95% interval absolute +- t.ppf(0.975, df) se, p = 2 t.sf(|d| / se, df);
  relative = d / mc, se_rel = sqrt(vt / mc^2 + mt^2 vc / mc^4);
- CUPED: theta = pooled within-arm cov(L, x) / var(x); adjusted means
  M - theta (mean_arm(x) - mean_all(x)); variances var(L - theta x, ddof=1) / n;
- SRM: scipy.stats.chisquare against the declared shares;
- Holm: statsmodels' definition, written out (step-down, cumulative max).
"""
import json
import numpy as np
from scipy import stats

t_s = np.array([12.0, 7.5, 9.0, 15.0, 3.0, 11.0, 8.0, 14.5])
t_w = np.array([1.0, 1.0, 2.0, 1.5, 0.5, 1.0, 1.0, 2.0])
t_x = np.array([10.0, 7.0, 4.0, 9.0, 5.0, 10.0, 8.0, 6.5])
c_s = np.array([8.0, 6.0, 10.0, 4.0, 9.5, 7.0, 5.0])
c_w = np.array([1.0, 1.0, 2.0, 0.5, 1.5, 1.0, 1.0])
c_x = np.array([8.5, 6.5, 5.0, 7.0, 6.0, 7.5, 5.5])


def ratio(s, w):
    m = s.sum() / w.sum()
    lin = (s - m * w) / w.mean()
    return m, lin.var(ddof=1) / len(s), lin


def welch(mt, vt, nt, mc, vc, nc):
    d = mt - mc
    se = np.sqrt(vt + vc)
    df = (vt + vc) ** 2 / (vt ** 2 / (nt - 1) + vc ** 2 / (nc - 1))
    q = stats.t.ppf(0.975, df)
    rel = d / mc
    rse = np.sqrt(vt / mc ** 2 + mt ** 2 * vc / mc ** 4)
    return {"absolute": d, "se": se, "df": df, "lower": d - q * se, "upper": d + q * se,
            "p": 2 * stats.t.sf(abs(d) / se, df), "relative": rel,
            "relative_lower": rel - q * rse, "relative_upper": rel + q * rse,
            "control": mc, "treatment": mt}


mt, vt, lt = ratio(t_s, t_w)
mc, vc, lc = ratio(c_s, c_w)
lift = welch(mt, vt, len(t_s), mc, vc, len(c_s))

cov = ((lt - lt.mean()) * (t_x - t_x.mean())).sum() + ((lc - lc.mean()) * (c_x - c_x.mean())).sum()
var = ((t_x - t_x.mean()) ** 2).sum() + ((c_x - c_x.mean()) ** 2).sum()
theta = cov / var
allx = np.concatenate([t_x, c_x]).mean()
vt2 = (lt - theta * t_x).var(ddof=1) / len(t_s)
vc2 = (lc - theta * c_x).var(ddof=1) / len(c_s)
cl = welch(mt - theta * (t_x.mean() - allx), vt2, len(t_s), mc - theta * (c_x.mean() - allx), vc2, len(c_s))

obs = np.array([5100, 4900])
srm = stats.chisquare(obs, f_exp=obs.sum() * np.array([0.5, 0.5]))
obs3 = np.array([980, 1050, 2020])
shares3 = np.array([1.0, 1.0, 2.0])
srm3 = stats.chisquare(obs3, f_exp=obs3.sum() * shares3 / shares3.sum())

ps = np.array([0.01, 0.04, 0.03, 0.2])
order = np.argsort(ps)
adj = np.empty(4)
running = 0.0
for rank, i in enumerate(order):
    running = max(running, min(1.0, (4 - rank) * ps[i]))
    adj[i] = running

out = {
    "treatment": {"s": t_s.tolist(), "w": t_w.tolist(), "x": t_x.tolist(), "mean": mt, "variance": vt},
    "control": {"s": c_s.tolist(), "w": c_w.tolist(), "x": c_x.tolist(), "mean": mc, "variance": vc},
    "lift": lift,
    "cuped": {"theta": theta, "lift": cl, "variance_reduction": 1 - (vt2 + vc2) / (vt + vc)},
    "srm": {"observed": obs.tolist(), "chi2": srm.statistic, "p": srm.pvalue},
    "srm3": {"observed": obs3.tolist(), "shares": shares3.tolist(), "chi2": srm3.statistic, "p": srm3.pvalue},
    "holm": {"p": ps.tolist(), "adjusted": adj.tolist()},
}
json.dump(json.loads(json.dumps(out, default=float)), open(__file__.replace("reference.py", "reference.json"), "w"), indent=1)
