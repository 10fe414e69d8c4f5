#!/usr/bin/env python3
"""Winsorisation computed independently of croo (numpy).

Writes customers.csv, events.csv, formula.toml and expected.json. Twenty-
three customers in two segments, January spend with two far outliers and
one customer without purchases (NULL spend, no default). The measure
`spend` is winsorised at its 10% and 90% quantiles (numpy.quantile,
method "linear": Hyndman and Fan type 7) over the customers with a value;
the component `norm = minmax(spend)` (weight 1, scale 100) normalises the
winsorised values, so the outliers no longer squeeze everyone else.

Expected: the quantiles, how many values changed, and each group's score
(100 x the mean of norm over its customers with a value).
Run: python3 make_case.py (deterministic).
"""
import csv
import json
import random

import numpy as np

rng = random.Random(20261207)
customers = [(c, "smb" if c % 3 else "ent") for c in range(1, 24)]
spend = {c: round(rng.uniform(50, 150), 2) for c, _ in customers}
spend[4] = 5000.0
spend[9] = 1.5
spend[17] = None
with open("customers.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["customer_id", "segment"])
    w.writerows(customers)
with open("events.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["customer_id", "at", "amount"])
    for c, _ in customers:
        if spend[c] is not None:
            w.writerow([c, "2026-01-05T10:00:00Z", spend[c]])
open("formula.toml", "w").write('''[formula]
name = "outliers"
version = "1"
grain = "month"

[sources.customers]
role = "entity"
uri = "customers.csv"
key = "customer_id"

[sources.events]
uri = "events.csv"
key = "customer_id"
time = "at"

[dimensions]
segment = "segment"

[measures.spend]
source = "events"
expr = "sum(amount)"
winsorise = { lower = 0.1, upper = 0.9 }

[score.components.norm]
weight = 1
expr = "minmax(spend)"
''')
vals = np.array([v for v in spend.values() if v is not None])
lo, hi = np.quantile(vals, [0.1, 0.9])
clamped = {c: (None if v is None else min(max(v, lo), hi)) for c, v in spend.items()}
changed = sum(1 for c, v in spend.items() if v is not None and v != clamped[c])
cv = np.array([v for v in clamped.values() if v is not None])
norm = {c: (None if v is None else (v - cv.min()) / (cv.max() - cv.min())) for c, v in clamped.items()}
seg = dict(customers)
out = {"lower": lo, "upper": hi, "changed": changed, "n": len(vals)}
for g in ("all", "smb", "ent"):
    sel = [norm[c] for c in norm if norm[c] is not None and (g == "all" or seg[c] == g)]
    out[g] = 100 * np.mean(sel)

# COINr's rule (winsorise = { coinr = N }): while |G1| > 2 and G2 > 3.5
# (scipy skew and excess kurtosis, bias=False), set the most extreme value
# on the skew's side to the next one, up to N; still outlying: no
# winsorising, ln(x - min + 1) (positive skew) instead. `coinr.toml`: N = 5
# on the same spend; `coinr_log.toml`: N = 1 on a spend with two far
# outliers (events2.csv).
from scipy import stats


def outlying(v):
    s, k = stats.skew(v, bias=False), stats.kurtosis(v, bias=False)
    return (s > 0) if (abs(s) > 2 and k > 3.5) else None


def coinr(values, n_max):
    v = np.sort(np.array(values))
    side = outlying(v)
    if side is None:
        return ("keep", v, 0)
    low = high = 0
    first = side
    for _ in range(n_max):
        if side:
            high += 1
        else:
            low += 1
        lo, hi = v[low], v[len(v) - 1 - high]
        cur = np.clip(v, lo, hi)
        s2 = outlying(cur)
        if s2 is None:
            return ("clamp", (lo, hi), low + high)
        side = s2
    return ("log", (v.min(), v.max(), first), len(v))


def treated_scores(spend_of, n_max):
    vals = [v for v in spend_of.values() if v is not None]
    kind, how, changed = coinr(vals, n_max)
    def t(x):
        if kind == "clamp":
            return min(max(x, how[0]), how[1])
        if kind == "log":
            return np.log(x - how[0] + 1) if how[2] else -np.log(how[1] - x + 1)
        return x
    tv = {c: (None if v is None else t(v)) for c, v in spend_of.items()}
    arr = np.array([v for v in tv.values() if v is not None])
    nm = {c: (None if v is None else (v - arr.min()) / (arr.max() - arr.min())) for c, v in tv.items()}
    res = {"kind": kind, "changed": changed}
    for g in ("all", "smb", "ent"):
        sel = [nm[c] for c in nm if nm[c] is not None and (g == "all" or seg[c] == g)]
        res[g] = 100 * np.mean(sel)
    return res


open("coinr.toml", "w").write(open("formula.toml").read().replace("lower = 0.1, upper = 0.9", "coinr = 5").replace('name = "outliers"', 'name = "coinr"'))
out["coinr"] = treated_scores(spend, 5)
spend2 = dict(spend)
spend2[11] = 4000.0
with open("events2.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["customer_id", "at", "amount"])
    for c, _ in customers:
        if spend2[c] is not None:
            w.writerow([c, "2026-01-05T10:00:00Z", spend2[c]])
open("coinr_log.toml", "w").write(open("formula.toml").read().replace("lower = 0.1, upper = 0.9", "coinr = 1").replace('name = "outliers"', 'name = "coinr-log"').replace('uri = "events.csv"', 'uri = "events2.csv"'))
out["coinr_log"] = treated_scores(spend2, 1)
json.dump(json.loads(json.dumps(out, default=float)), open("expected.json", "w"), indent=1)
