#!/usr/bin/env python3
"""The uncertainty analysis of `formula.toml` computed independently of
croo (numpy), by enumerating every combination of its declared
alternatives.

Thirty customers in four segments, January 2026. Measures: `spend` (sum of
purchases; NULL without one; winsorised at the 10% and 90% quantiles,
numpy's linear = type 7), `contacts` (default 0), `age` (months from the
entity). Components, combined by the weighted geometric mean of component
+ 0.1 (shift), less 0.1, times 100:
- value (0.5) = minmax(spend), impute median; alternatives: normalise
  pct_rank, impute mean or none (none: the customer has no score);
- ease (0.3) = pct_rank(ease_raw), ease_raw = 1 / (1 + contacts);
  alternative normalise minmax;
- tenure (0.2) = clamp(age / 24, 0, 1), age the months from the entity.
`[score] alternatives`: method arithmetic (sum of w c), winsorise off.
minmax: (x - min) / (max - min) over the customers with a value (0.5 when
max = min); pct_rank: (number below) / (n - 1); mean/median imputation
over the component's values of the customers that have one. A group's
score is the mean of its included customers' scores; rank 1 is the
highest, ties share the best rank.

With the weights fixed (--spread 0) the draws are uniform over the 2 x 2 x
(2 x 3) x 2 = 48 configurations, so each choice's first-order index
Var(E[rank | choice]) / Var(rank) (summed over the four groups) is
computed exactly over them.

Writes customers.csv, events.csv, expected.json. Run: python3 make_case.py
(deterministic).
"""
import csv
import itertools
import json
import random

import numpy as np

rng = random.Random(20261202)
segments = ["north", "south", "east", "west"]
customers = []
for c in range(1, 31):
    customers.append((c, segments[c % 4], rng.randint(0, 40)))
spend = {}
contacts = {}
for c, s, _ in customers:
    bias = {"north": 1.6, "south": 1.0, "east": 0.8, "west": 1.2}[s]
    spend[c] = None if rng.random() < 0.2 else round(rng.uniform(10, 300) * bias, 2)
    contacts[c] = rng.randint(0, 6)
# Two outliers the winsorisation clips.
spend[7] = 5000.0
spend[12] = 1.5
with open("customers.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["customer_id", "segment", "months"])
    w.writerows(customers)
with open("events.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["customer_id", "at", "amount", "contact"])
    for c, _, _ in customers:
        if spend[c] is not None:
            w.writerow([c, "2026-01-05T10:00:00Z", spend[c], 0])
        for i in range(contacts[c]):
            w.writerow([c, f"2026-01-{10 + i:02d}T10:00:00Z", "", 1])

keys = [c for c, _, _ in customers]
seg = {c: s for c, s, _ in customers}
months = {c: m for c, _, m in customers}


def minmax(v):
    known = [x for x in v.values() if x is not None]
    lo, hi = min(known), max(known)
    return {c: None if x is None else (0.5 if hi == lo else (x - lo) / (hi - lo)) for c, x in v.items()}


def pct_rank(v):
    known = [x for x in v.values() if x is not None]
    n = len(known)
    return {c: None if x is None else (0.0 if n == 1 else sum(1 for y in known if y < x) / (n - 1)) for c, x in v.items()}


def impute(v, how):
    known = [x for x in v.values() if x is not None]
    fill = {"median": float(np.median(known)) if known else None, "mean": float(np.mean(known)) if known else None, "none": None}[how]
    return {c: (fill if x is None else x) for c, x in v.items()}


def winsorise(v):
    known = np.array([x for x in v.values() if x is not None])
    lo, hi = np.quantile(known, 0.1), np.quantile(known, 0.9)
    return {c: None if x is None else float(min(max(x, lo), hi)) for c, x in v.items()}


def ranks(scores):
    """scores: {name: value or None} -> {name: rank}; 1 is the highest."""
    known = [s for s in scores.values() if s is not None]
    return {g: None if s is None else 1 + sum(1 for o in known if o > s) for g, s in scores.items()}


ease_raw = {c: 1 / (1 + contacts[c]) for c in keys}
tenure = {c: min(max(months[c] / 24, 0.0), 1.0) for c in keys}
weights = {"value": 0.5, "ease": 0.3, "tenure": 0.2}
shift = 0.1
configs = []
customer_ranks = {}
for wins, method, v_norm, v_imp, e_norm in itertools.product(
    ["on", "off"], ["geometric", "arithmetic"], ["minmax", "pct_rank"], ["median", "mean", "none"], ["pct_rank", "minmax"]
):
    s = winsorise(spend) if wins == "on" else dict(spend)
    value = impute({"minmax": minmax, "pct_rank": pct_rank}[v_norm](s), v_imp)
    ease = {"minmax": minmax, "pct_rank": pct_rank}[e_norm](ease_raw)
    comps = {"value": value, "ease": ease, "tenure": tenure}
    score = {}
    for c in keys:
        vals = {k: comps[k][c] for k in comps}
        if any(x is None for x in vals.values()):
            score[c] = None
        elif method == "arithmetic":
            score[c] = 100 * sum(weights[k] * vals[k] for k in vals)
        else:
            score[c] = 100 * (np.exp(sum(weights[k] * np.log(vals[k] + shift) for k in vals) / sum(weights.values())) - shift)
    groups = {}
    for g in segments:
        inc = [score[c] for c in keys if seg[c] == g and score[c] is not None]
        groups[g] = float(np.mean(inc)) if inc else None
    key = {"winsorise": wins, "method": method, "normalise.value": v_norm, "impute.value": v_imp, "normalise.ease": e_norm}
    configs.append({**key, "scores": groups, "ranks": ranks(groups)})
    for c, r in ranks({c: score[c] for c in keys}).items():
        customer_ranks.setdefault(str(c), []).append(r)

factors = ["winsorise", "method", "normalise.value", "impute.value", "normalise.ease"]
first_order = {}
for f in factors:
    between = total = 0.0
    for g in segments:
        y = np.array([cfg["ranks"][g] for cfg in configs], dtype=float)
        levels = sorted(set(cfg[f] for cfg in configs))
        means = {l: y[[cfg[f] == l for cfg in configs]].mean() for l in levels}
        between += np.mean([(means[cfg[f]] - y.mean()) ** 2 for cfg in configs])
        total += y.var()
    first_order[f] = between / total
nominal = configs[0]
expected = {
    "configurations": configs,
    "first_order": first_order,
    "nominal": nominal["scores"],
    "nominal_ranks": nominal["ranks"],
    # Each group's rank over the 48 equally likely configurations.
    "rank_distribution": {g: sorted(cfg["ranks"][g] for cfg in configs) for g in segments},
    "customer_nominal_ranks": {c: r[0] for c, r in customer_ranks.items()},
    "customer_ranks": customer_ranks,
}
json.dump(expected, open("expected.json", "w"), indent=1, default=float)
