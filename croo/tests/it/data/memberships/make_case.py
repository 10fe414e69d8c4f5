#!/usr/bin/env python3
"""A membership case computed independently of croo: writes the data
(customers, spend events, a segment history with moves on and between
period boundaries) and the expected rows of `formula-end.toml` and
`formula-start.toml` (expected.csv), from plain Python.

Each customer's score is spend / 100 (spend 0 without events), the rollup
weight is 1, so a group's score is 100 * the mean of spend / 100 over its
customers. A customer's segment in a month is the history row valid at the
month's last instant (`period_end`: from < end <= to) or first instant
(`period_start`: from <= start < to); `(none)` when no row is.

Run: python3 make_case.py  (deterministic: the same files every time)
"""
import csv
import random
from datetime import datetime, timedelta, timezone

rng = random.Random(20261202)
UTC = timezone.utc
months = [datetime(2026, m, 1, tzinfo=UTC) for m in range(1, 8)]  # Jan..Jul
ends = months[1:]
months = months[:-1]  # Jan..Jun, ends Feb..Jul
segments = ["smb", "mid", "ent"]

def iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")

customers = list(range(1, 41))
history = []  # (key, segment, from, to or None)
for c in customers:
    if c % 10 == 0:
        continue  # no history at all: (none)
    t = datetime(2025, 6, 1, tzinfo=UTC)
    seg = rng.choice(segments)
    moves = rng.randint(0, 3)
    points = sorted(rng.choice([
        months[rng.randrange(1, 6)],                     # exactly on a boundary
        months[rng.randrange(0, 6)] + timedelta(days=rng.randint(1, 27), hours=rng.randint(0, 23)),
    ]) for _ in range(moves))
    points = sorted(set(points))
    for p in points:
        history.append((c, seg, t, p))
        t = p
        seg = rng.choice([s for s in segments if s != seg])
    if c % 7 == 0:
        history.append((c, seg, t, t + timedelta(days=20)))  # left the history: (none) after
    else:
        history.append((c, seg, t, None))

events = []
for c in customers:
    for _ in range(rng.randint(0, 8)):
        m = rng.randrange(0, 6)
        t = months[m] + timedelta(seconds=rng.randrange(int((ends[m] - months[m]).total_seconds())))
        events.append((c, t, rng.randint(1, 500)))

with open("customers.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["customer_id", "name"])
    for c in customers:
        w.writerow([c, f"c{c}"])
with open("events.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["customer_id", "at", "amount"])
    for c, t, a in sorted(events, key=lambda e: (e[1], e[0])):
        w.writerow([c, iso(t), a])
with open("history.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["customer_id", "segment", "valid_from", "valid_to"])
    for c, s, a, b in history:
        w.writerow([c, s, iso(a), iso(b) if b else ""])

def segment_at(c, start, end, as_of):
    for k, s, a, b in history:
        if k != c:
            continue
        if as_of == "period_end" and a < end and (b is None or b >= end):
            return s
        if as_of == "period_start" and a <= start and (b is None or b > start):
            return s
    return "(none)"

rows = []
for as_of in ["period_end", "period_start"]:
    for start, end in zip(months, ends):
        spend = {c: 0 for c in customers}
        for c, t, a in events:
            if start <= t < end:
                spend[c] += a
        groups = {}
        for c in customers:
            groups.setdefault(segment_at(c, start, end, as_of), []).append(spend[c] / 100)
        for g, v in sorted(groups.items()):
            rows.append([as_of, start.date().isoformat(), g, len(v), repr(100 * sum(v) / len(v))])
        everyone = [spend[c] / 100 for c in customers]
        rows.append([as_of, start.date().isoformat(), "", len(everyone), repr(100 * sum(everyone) / len(everyone))])
with open("expected.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["as_of", "period", "segment", "population", "score"])
    w.writerows(rows)
