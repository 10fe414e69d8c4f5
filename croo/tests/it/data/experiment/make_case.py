#!/usr/bin/env python3
"""An experiment case computed independently of croo (numpy, scipy).

Writes customers.csv, events.csv, assignments.csv, formula.toml and
expected.json. 600 customers (smb or ent), assigned to `control` or
`chatbot` with first exposures in December 2025 or during January 2026 (a
customer exposed in January counts from February); five customers appear
in both arms and are left out; five others are in another experiment.
Monthly spend: a customer's own level (60 to 140) +-25, the chatbot
planted at +15 in smb and -12 in ent; January is the pre-period.

The formula: value = spend / 100 (weight 0.5) and norm = minmax(spend)
(weight 0.5), scale 100, rollup weight 1. In each period minmax takes its
min and max over the control arm's customers of the period (croo's
reference for experiments), so a treated customer may fall outside [0, 1].

Expected: over February and March, per arm, each customer's unit is
(sum of weight x score, sum of weight) over the periods it is in; the arm's
mean is sum / sum, its variance by the delta method (var(L, ddof=1) / n,
L = (s - M w) / mean(w)); the lift's 95% interval with Welch degrees of
freedom (scipy.stats.t). The same per segment (as of each period: here
fixed) and for each component's rollup. CUPED with January's score as
covariate: theta from the pooled within-arm covariance. With
`--reference pre`, minmax takes January's min and max over the whole
cohort instead (`pre_reference`).

Run: python3 make_case.py (deterministic).
"""
import csv
import json
import random
from datetime import datetime, timedelta, timezone

import numpy as np
from scipy import stats

rng = random.Random(20261204)
UTC = timezone.utc
N = 600
months = [datetime(2026, m, 1, tzinfo=UTC) for m in (1, 2, 3, 4)]

customers = []
for c in range(1, N + 1):
    seg = "smb" if rng.random() < 0.6 else "ent"
    arm = "chatbot" if rng.random() < 0.5 else "control"
    if rng.random() < 0.8:
        exposed = datetime(2025, 12, 1, tzinfo=UTC) + timedelta(hours=rng.randrange(24 * 31))
    else:
        exposed = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=rng.randrange(24 * 31))
    customers.append((c, seg, arm, exposed))
both = {c for c, _, _, _ in customers[:5]}          # in both arms: left out
other = {c for c, _, _, _ in customers[5:10]}        # another experiment only

events = []
spend = {}  # (customer, month index) -> total
for c, seg, arm, _ in customers:
    base = rng.uniform(60, 140)  # a customer's own level: January predicts the rest
    for m in range(3):
        effect = 0.0
        if arm == "chatbot" and m >= 1:
            effect = 15.0 if seg == "smb" else -12.0
        total = 0
        for _ in range(rng.randint(1, 3)):
            a = round(max(0.0, (base + rng.uniform(-25, 25) + effect) / 2), 2)
            t = months[m] + timedelta(seconds=rng.randrange(int((months[m + 1] - months[m]).total_seconds())))
            events.append((c, t, a))
            total += a
        spend[(c, m)] = total

with open("customers.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["customer_id", "segment"])
    for c, seg, _, _ in customers:
        w.writerow([c, seg])
with open("events.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["customer_id", "at", "amount"])
    for c, t, a in sorted(events, key=lambda e: (e[1], e[0])):
        w.writerow([c, t.strftime("%Y-%m-%dT%H:%M:%SZ"), a])
with open("assignments.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["customer_id", "experiment", "arm", "first_exposure"])
    for c, _, arm, exposed in customers:
        e = "pricing" if c in other else "chatbot-q1"
        w.writerow([c, e, arm, exposed.strftime("%Y-%m-%dT%H:%M:%SZ")])
        if c in both:
            w.writerow([c, e, "control" if arm == "chatbot" else "chatbot", exposed.strftime("%Y-%m-%dT%H:%M:%SZ")])

open("formula.toml", "w").write('''[formula]
name = "chatbot"
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
default = 0

[score.components.value]
weight = 0.5
expr = "spend / 100"

[score.components.norm]
weight = 0.5
expr = "minmax(spend)"
''')

cohort = [(c, seg, arm, exp) for c, seg, arm, exp in customers if c not in both and c not in other]


def scored(m, pre, bounds=None):
    """{customer: (segment, arm, value, norm, score)} of month m; minmax by
    the control's spend, or by `bounds` (the pre-period reference)."""
    start = months[m]
    pop = [(c, seg, arm) for c, seg, arm, exp in cohort if pre or exp < start]
    ctrl = [spend[(c, m)] for c, _, arm in pop if arm == "control"]
    lo, hi = bounds or (min(ctrl), max(ctrl))
    out = {}
    for c, seg, arm in pop:
        x = spend[(c, m)]
        norm = 0.5 if hi == lo else (x - lo) / (hi - lo)
        value = x / 100
        out[c] = (seg, arm, value, norm, 100 * (0.5 * value + 0.5 * norm))
    return out


periods = [scored(1, False), scored(2, False)]
pre = scored(0, True)


def ratio(units):
    s = np.array([u[0] for u in units]); w = np.array([u[1] for u in units])
    m = s.sum() / w.sum()
    lin = (s - m * w) / w.mean()
    return m, lin.var(ddof=1) / len(s), lin, len(s)


def welch(t, c):
    (mt, vt, _, nt), (mc, vc, _, nc) = t, c
    d = mt - mc
    se = np.sqrt(vt + vc)
    df = (vt + vc) ** 2 / (vt ** 2 / (nt - 1) + vc ** 2 / (nc - 1))
    q = stats.t.ppf(0.975, df)
    return {"control": mc, "treatment": mt, "absolute": d, "lower": d - q * se, "upper": d + q * se,
            "p": 2 * stats.t.sf(abs(d) / se, df), "n_t": nt, "n_c": nc}


def units(arm, pick, seg=None):
    acc = {}
    for per in periods:
        for c, (s, a, value, norm, score) in per.items():
            if a != arm or (seg and s != seg):
                continue
            v = pick(value, norm, score)
            e = acc.setdefault(c, [0.0, 0.0])
            e[0] += v
            e[1] += 1.0
    return [(s, w, c) for c, (s, w) in sorted(acc.items())]


score = lambda v, n, s: s
expected = {"overall": welch(ratio(units("chatbot", score)), ratio(units("control", score)))}
for seg in ("smb", "ent"):
    expected[seg] = welch(ratio(units("chatbot", score, seg)), ratio(units("control", score, seg)))
expected["value"] = welch(ratio(units("chatbot", lambda v, n, s: v)), ratio(units("control", lambda v, n, s: v)))
expected["norm"] = welch(ratio(units("chatbot", lambda v, n, s: n)), ratio(units("control", lambda v, n, s: n)))

# CUPED: January's score as covariate (every cohort customer has one).
t_u, c_u = units("chatbot", score), units("control", score)
rt, rc = ratio(t_u), ratio(c_u)
xt = np.array([pre[c][4] for _, _, c in t_u]); xc = np.array([pre[c][4] for _, _, c in c_u])
lt, lc = rt[2], rc[2]
cov = ((lt - lt.mean()) * (xt - xt.mean())).sum() + ((lc - lc.mean()) * (xc - xc.mean())).sum()
var = ((xt - xt.mean()) ** 2).sum() + ((xc - xc.mean()) ** 2).sum()
theta = cov / var
allx = np.concatenate([xt, xc]).mean()
vt2 = (lt - theta * xt).var(ddof=1) / len(lt)
vc2 = (lc - theta * xc).var(ddof=1) / len(lc)
cuped = welch((rt[0] - theta * (xt.mean() - allx), vt2, None, rt[3]), (rc[0] - theta * (xc.mean() - allx), vc2, None, rc[3]))
cuped["theta"] = theta
cuped["variance_reduction"] = 1 - (vt2 + vc2) / (rt[1] + rc[1])
expected["cuped"] = cuped
# --reference pre: minmax by January's whole cohort (min and max of spend).
jan = [spend[(c, 0)] for c, _, _, _ in cohort]
periods = [scored(1, False, (min(jan), max(jan))), scored(2, False, (min(jan), max(jan)))]
expected["pre_reference"] = welch(ratio(units("chatbot", score)), ratio(units("control", score)))
expected["assigned"] = {"control": sum(1 for x in cohort if x[2] == "control"),
                        "chatbot": sum(1 for x in cohort if x[2] == "chatbot")}
expected["excluded_multiple_arms"] = len(both)
# `croo inspect formula.toml --period 2026-02` (every customer, no
# experiment): spend's distribution (numpy's linear quantiles, scipy's
# bias-corrected skewness and excess kurtosis) and the components' effective
# weights w cov(c, S) / var(S), S = 0.5 value + 0.5 norm (minmax over all).
feb = np.array([spend[(c, 1)] for c, _, _, _ in customers])
value = feb / 100
norm = (feb - feb.min()) / (feb.max() - feb.min())
S = 0.5 * value + 0.5 * norm
var = np.cov(S, S)[0, 1]
expected["inspect"] = {
    "n": len(feb),
    "p5": np.quantile(feb, 0.05), "median": np.quantile(feb, 0.5), "p95": np.quantile(feb, 0.95),
    "skewness": stats.skew(feb, bias=False), "kurtosis": stats.kurtosis(feb, bias=False),
    "effective_value": 0.5 * np.cov(value, S)[0, 1] / var,
    "effective_norm": 0.5 * np.cov(norm, S)[0, 1] / var,
}
json.dump(json.loads(json.dumps(expected, default=float)), open("expected.json", "w"), indent=1)
