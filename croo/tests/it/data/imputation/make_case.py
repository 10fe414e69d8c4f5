#!/usr/bin/env python3
"""Imputation and coverage computed independently of croo (numpy).

Writes customers.csv, events.csv, one formula per variant and
expected.json. Fourteen customers in two segments; in January some have
no purchase, so `spend` (no `default`) and the component `value = spend /
100` are NULL for them; `ease = 1 / (1 + contacts)` always has a value.
Weights 0.6 and 0.4, scale 100, rollup weight 1.

- impute = "zero" / "mean" / "median" / { group_median = "segment" } on
  `value`: the NULLs get 0, the mean, the median (numpy, linear between
  the middle two) of the customers with a value, or the median of their
  segment's; score = 0.6 value + 0.4 ease.
- no imputation, min_coverage = 0.4: a customer without `value` has
  coverage 0.4 (kept), its score is re-weighted: W x 0.4 ease / 0.4 = ease;
  contributions are the shares of the present weighted components.
- min_coverage = 0.5: those customers are excluded.

Run: python3 make_case.py (deterministic).
"""
import csv
import json
import random

import numpy as np

rng = random.Random(20261206)
customers = [(c, "smb" if c % 3 else "ent") for c in range(1, 15)]
spend = {c: (round(rng.uniform(20, 400), 2) if rng.random() < 0.6 else None) for c, _ in customers}
contacts = {c: rng.randint(0, 5) for c, _ in customers}
with open("customers.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["customer_id", "segment"])
    w.writerows(customers)
with open("events.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["customer_id", "at", "amount", "contact"])
    for c, _ in customers:
        if spend[c] is not None:
            w.writerow([c, "2026-01-05T10:00:00Z", spend[c], 0])
        for i in range(contacts[c]):
            w.writerow([c, f"2026-01-{10 + i:02d}T10:00:00Z", "", 1])

HEAD = '''[formula]
name = "{name}"
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
filter = "amount IS NOT NULL"

[measures.contacts]
source = "events"
expr = "sum(contact)"
default = 0
{score}
[score.components.value]
weight = 0.6
expr = "spend / 100"
{impute}
[score.components.ease]
weight = 0.4
expr = "1 / (1 + contacts)"
'''
value = {c: (None if spend[c] is None else spend[c] / 100) for c, _ in customers}
ease = {c: 1 / (1 + contacts[c]) for c, _ in customers}
seg = dict(customers)
known = [v for v in value.values() if v is not None]
expected = {}


def groups(rows):
    """rows: {c: (score or None, {comp: (value, contribution)}, imputed flag)}"""
    out = {}
    for g in ("all", "smb", "ent"):
        sel = {c: r for c, r in rows.items() if (g == "all" or seg[c] == g)}
        inc = {c: r for c, r in sel.items() if r[0] is not None}
        out[g] = {
            "population": len(sel),
            "included": len(inc),
            "score": 100 * np.mean([r[0] for r in inc.values()]) if inc else None,
            "value_contribution": 100 * np.mean([r[1] for r in inc.values()]) if inc else None,
            "imputed": sum(1 for c, r in inc.items() if r[2]),
        }
    return out


for variant, fill in [
    ("zero", lambda c: 0.0),
    ("mean", lambda c: float(np.mean(known))),
    ("median", lambda c: float(np.median(known))),
    ("group", lambda c: float(np.median([value[k] for k, s in customers if s == seg[c] and value[k] is not None]))),
]:
    impute = {"zero": '"zero"', "mean": '"mean"', "median": '"median"', "group": '{ group_median = "segment" }'}[variant]
    open(f"{variant}.toml", "w").write(HEAD.format(name=variant, score="", impute=f"impute = {impute}"))
    rows = {}
    for c, _ in customers:
        v = value[c] if value[c] is not None else fill(c)
        s = 0.6 * v + 0.4 * ease[c]
        rows[c] = (s, 0.6 * v, value[c] is None)
    expected[variant] = groups(rows)

for variant, m in [("coverage", 0.4), ("strict", 0.5)]:
    open(f"{variant}.toml", "w").write(HEAD.format(name=variant, score=f"\n[score]\nmin_coverage = {m}\n", impute=""))
    rows = {}
    for c, _ in customers:
        wp = (0.6 if value[c] is not None else 0) + 0.4
        if wp / 1.0 < m:
            rows[c] = (None, None, False)
            continue
        num = (0.6 * value[c] if value[c] is not None else 0) + 0.4 * ease[c]
        s = 1.0 * num / wp
        contrib_value = s * (0.6 * value[c] if value[c] is not None else 0) / num
        rows[c] = (s, contrib_value, False)
    expected[variant] = groups(rows)
json.dump(json.loads(json.dumps(expected, default=float)), open("expected.json", "w"), indent=1)
