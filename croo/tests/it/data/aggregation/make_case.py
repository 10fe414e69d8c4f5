#!/usr/bin/env python3
"""Geometric and harmonic scores computed independently of croo (numpy).

Writes customers.csv, events.csv, geometric.toml, harmonic.toml and
expected.json. Twelve customers in two segments; in January each has a
spend (a component `value = spend / 100`) and some contacts (`ease = 1 /
(1 + contacts)`), both above 0. Weights 0.6 and 0.4, scale 100.

Per customer: t_k = c_k (shift 0);
  geometric s = exp(sum w_k ln t_k / W), contributions s w_k ln t_k / sum w_j ln t_j;
  harmonic  s = W / sum(w_k / t_k),      contributions s (w_k / t_k) / sum(w_j / t_j).
A group's score is 100 x the mean of s (rollup weight 1); a component's
contribution 100 x the mean of the customers' contributions; its rollup the
mean of the component.

Run: python3 make_case.py (deterministic).
"""
import csv
import json
import random

import numpy as np

rng = random.Random(20261205)
customers = [(c, "smb" if c % 3 else "ent") for c in range(1, 13)]
spend = {c: round(rng.uniform(20, 400), 2) for c, _ in customers}
contacts = {c: rng.randint(0, 6) for c, _ in customers}
with open("customers.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["customer_id", "segment"])
    w.writerows(customers)
with open("events.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["customer_id", "at", "amount", "contact"])
    for c, _ in customers:
        w.writerow([c, "2026-01-05T10:00:00Z", spend[c], 0])
        for i in range(contacts[c]):
            w.writerow([c, f"2026-01-{10 + i:02d}T10:00:00Z", 0, 1])

FORMULA = '''[formula]
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
default = 0

[measures.contacts]
source = "events"
expr = "sum(contact)"
default = 0

[score]
method = "{name}"

[score.components.value]
weight = 0.6
expr = "spend / 100"

[score.components.ease]
weight = 0.4
expr = "1 / (1 + contacts)"
'''
W = np.array([0.6, 0.4])
expected = {}
for method in ("geometric", "harmonic"):
    open(f"{method}.toml", "w").write(FORMULA.format(name=method))
    rows = {}
    for c, seg in customers:
        t = np.array([spend[c] / 100, 1 / (1 + contacts[c])])
        if method == "geometric":
            parts = W * np.log(t)
            s = np.exp(parts.sum() / W.sum())
        else:
            parts = W / t
            s = W.sum() / parts.sum()
        contrib = s * parts / parts.sum()
        rows[c] = (seg, t, s, contrib)
    out = {}
    for group in ("all", "smb", "ent"):
        sel = [r for r in rows.values() if group == "all" or r[0] == group]
        out[group] = {
            "score": 100 * np.mean([r[2] for r in sel]),
            "value": {"rollup": np.mean([r[1][0] for r in sel]), "contribution": 100 * np.mean([r[3][0] for r in sel])},
            "ease": {"rollup": np.mean([r[1][1] for r in sel]), "contribution": 100 * np.mean([r[3][1] for r in sel])},
        }
    expected[method] = out
json.dump(json.loads(json.dumps(expected, default=float)), open("expected.json", "w"), indent=1)
