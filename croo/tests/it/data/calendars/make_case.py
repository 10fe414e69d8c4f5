#!/usr/bin/env python3
"""Calendar cases computed independently of croo: writes the data
(customers, spend events with some exactly on and just before period
boundaries, a segment history with moves) and the expected rows
(expected.csv) of two formulas:

- nrf.toml: months of the NRF 4-5-4 retail calendar (years end on the
  Saturday nearest 31 January, named after the year they start in, the
  53rd week in the last month) in UTC, FY2022-M11 to FY2024-M01, across
  the 53-week fiscal 2023;
- july.toml: quarters of a fiscal year starting in July, named after the
  year it ends in, in Europe/Berlin local time (periods begin at local
  midnight, daylight saving included), FY2026-Q3 to FY2027-Q2.

A customer's score is spend / 100 (0 without events), the rollup weight 1,
so a group's score is 100 * the mean of spend / 100 over its customers.
A customer's segment in a period is the history row valid at the period's
last instant ([valid_from, valid_to) holds end - epsilon: from < end <=
to), `(none)` when no row is.

Run: python3 make_case.py  (deterministic: the same files every time)
"""
import csv
import random
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

rng = random.Random(20261203)
UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")


def iso(t):
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- NRF 4-5-4 months, from the rule --------------------------------------
def nrf_year_end(y):
    jan31 = date(y, 1, 31)
    return next(jan31 + timedelta(days=k) for k in range(-3, 4)
                if (jan31 + timedelta(days=k)).weekday() == 5)


def nrf_months(fy):
    """(first day, label) of the 12 months of fiscal year fy, and its end."""
    first = nrf_year_end(fy) + timedelta(days=1)
    last = nrf_year_end(fy + 1)
    weeks = ((last - first).days + 1) // 7
    out, w = [], 0
    for i in range(12):
        out.append((first + timedelta(weeks=w), f"FY{fy}-M{i + 1:02d}"))
        w += [4, 5, 4][i % 3] + (1 if i == 11 and weeks == 53 else 0)
    return out, last + timedelta(days=1)


nrf = []  # (first day, next first day, label)
for fy in (2022, 2023, 2024):
    months, end = nrf_months(fy)
    for i, (d, label) in enumerate(months):
        nxt = months[i + 1][0] if i + 1 < len(months) else end
        nrf.append((d, nxt, label))
lo = next(i for i, m in enumerate(nrf) if m[2] == "FY2022-M11")
hi = next(i for i, m in enumerate(nrf) if m[2] == "FY2024-M01")
nrf = nrf[lo:hi + 1]
nrf_periods = [(datetime(a.year, a.month, a.day, tzinfo=UTC),
                datetime(b.year, b.month, b.day, tzinfo=UTC), a, label) for a, b, label in nrf]


# --- July fiscal quarters in Berlin ---------------------------------------
def berlin_midnight(d):
    return datetime(d.year, d.month, d.day, tzinfo=BERLIN).astimezone(UTC)


quarters = [(date(2026, 1, 1), "FY2026-Q3"), (date(2026, 4, 1), "FY2026-Q4"),
            (date(2026, 7, 1), "FY2027-Q1"), (date(2026, 10, 1), "FY2027-Q2"),
            (date(2027, 1, 1), None)]
july_periods = [(berlin_midnight(a), berlin_midnight(b), a, label)
                for (a, label), (b, _) in zip(quarters, quarters[1:])]

customers = list(range(1, 51))
segments = ["smb", "mid", "ent"]


def events_for(periods):
    out = []
    start, end = periods[0][0], periods[-1][1]
    span = int((end - start).total_seconds())
    for c in customers:
        for _ in range(rng.randint(0, 10)):
            out.append((c, start + timedelta(seconds=rng.randrange(span)), rng.randint(1, 500)))
    # On and just before every boundary, and outside the range.
    for s, e, _, _ in periods:
        out.append((rng.choice(customers), s, rng.randint(1, 500)))
        out.append((rng.choice(customers), e - timedelta(seconds=1), rng.randint(1, 500)))
    out.append((1, start - timedelta(seconds=1), 999))
    out.append((2, end, 999))
    return out


def history_for(periods):
    hist = []
    for c in customers:
        if c % 10 == 0:
            continue  # no history: (none)
        t = periods[0][0] - timedelta(days=400)
        seg = rng.choice(segments)
        points = set()
        for _ in range(rng.randint(0, 3)):
            s, e, _, _ = rng.choice(periods)
            points.add(rng.choice([s, e, s + (e - s) * rng.random()]).replace(microsecond=0))
        for p in sorted(points):
            hist.append((c, seg, t, p))
            t = p
            seg = rng.choice([s for s in segments if s != seg])
        hist.append((c, seg, t, None))
    return hist


def segment_at(hist, c, end):
    for k, s, a, b in hist:
        if k == c and a < end and (b is None or b >= end):
            return s
    return "(none)"


def expected(name, periods, events, hist):
    rows = []
    for start, end, first, label in periods:
        spend = {c: 0 for c in customers}
        for c, t, a in events:
            if start <= t < end:
                spend[c] += a
        groups = {}
        for c in customers:
            groups.setdefault(segment_at(hist, c, end), []).append(spend[c] / 100)
        for g, v in sorted(groups.items()):
            rows.append([name, first.isoformat(), label, g, len(v), repr(100 * sum(v) / len(v))])
        allv = [spend[c] / 100 for c in customers]
        rows.append([name, first.isoformat(), label, "", len(allv), repr(100 * sum(allv) / len(allv))])
    return rows


def write(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


write("customers.csv", ["customer_id", "name"], [[c, f"c{c}"] for c in customers])
rows = []
for name, periods in (("nrf", nrf_periods), ("july", july_periods)):
    ev = events_for(periods)
    hist = history_for(periods)
    write(f"{name}-events.csv", ["customer_id", "at", "amount"],
          [[c, iso(t), a] for c, t, a in sorted(ev, key=lambda e: (e[1], e[0]))])
    write(f"{name}-history.csv", ["customer_id", "segment", "valid_from", "valid_to"],
          [[c, s, iso(a), iso(b) if b else ""] for c, s, a, b in hist])
    rows += expected(name, periods, ev, hist)
write("expected.csv", ["formula", "period", "label", "segment", "population", "score"], rows)
