#!/usr/bin/env python3
"""Whole-run benchmark: `croo run` against one hand-written DuckDB query.

Generates the sample (`croo sample`) at a given scale, then, interleaved and
best of N: runs `croo run` of the sample formula over a range of months, and
runs one DuckDB SQL query written by hand that computes the same result rows
(whole population and every dimension value, every period: score,
population, included, weight total, component rollups). Checks that the two
agree to 1e-9 (relative) and prints both wall times (best and median of
the N), both peak memories (RSS of the process, from wait4) and their
ratios.

usage: whole_run.py CROO_BINARY [--customers N] [--months M] [--from P --to P]
       [--repeat 3] [--threads T] [--work DIR]
Run through benches/whole-run.sh, which makes the virtual environment.
"""

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

QUERY = r"""
WITH periods AS (
  SELECT p::DATE AS period, p::TIMESTAMPTZ AS pstart, (p + INTERVAL 1 MONTH)::TIMESTAMPTZ AS pend
  FROM range(DATE '{first}', DATE '{last}' + INTERVAL 1 DAY, INTERVAL 1 MONTH) t(p)
),
pop AS (
  SELECT c.customer_id AS k, p.period, c.segment, c.region, c.plan
  FROM read_parquet('{data}/customers.parquet') c
  JOIN periods p ON c.joined_at < p.pend AND (c.left_at IS NULL OR c.left_at >= p.pstart)
),
tx AS (
  SELECT customer_id AS k, date_trunc('month', ts AT TIME ZONE 'UTC')::DATE AS period,
    sum(amount) FILTER (WHERE kind = 'purchase') AS revenue,
    count(*) FILTER (WHERE kind = 'purchase') AS n_purchase,
    sum(amount) FILTER (WHERE kind = 'refund') AS refunds,
    count(*) FILTER (WHERE kind = 'refund') AS n_refund
  FROM read_csv('{data}/transactions.csv', columns = {{'customer_id': 'BIGINT', 'ts': 'TIMESTAMPTZ', 'amount': 'DOUBLE', 'kind': 'VARCHAR', 'product_id': 'BIGINT'}}, header = true)
  WHERE ts >= TIMESTAMPTZ '{first} 00:00:00+00' AND ts < TIMESTAMPTZ '{end} 00:00:00+00'
  GROUP BY ALL
),
ix AS (
  SELECT customer_id AS k, date_trunc('month', started_at AT TIME ZONE 'UTC')::DATE AS period,
    sum(cost_eur) AS cost_to_serve, count(*) AS contacts,
    avg(CASE WHEN resolved_first_contact THEN 1.0 ELSE 0.0 END) AS fcr,
    avg(CASE WHEN channel IN ('web', 'chatbot') THEN 1.0 ELSE 0.0 END) AS digital_share,
    avg(csat) AS csat
  FROM read_parquet('{data}/interactions/*/*.parquet', hive_partitioning = false)
  WHERE started_at >= TIMESTAMPTZ '{first} 00:00:00+00' AND started_at < TIMESTAMPTZ '{end} 00:00:00+00'
  GROUP BY ALL
),
ev AS (
  SELECT customer_id AS k, date_trunc('month', "at" AT TIME ZONE 'UTC')::DATE AS period,
    count(DISTINCT feature) FILTER (WHERE event = 'adopted') AS adoptions,
    count(*) FILTER (WHERE event = 'adopted') AS n_adopted
  FROM read_json('{data}/product_events.ndjson', format = 'newline_delimited', columns = {{'customer_id': 'BIGINT', 'at': 'TIMESTAMPTZ', 'feature': 'VARCHAR', 'event': 'VARCHAR', 'experiment': 'VARCHAR', 'variant': 'VARCHAR'}})
  WHERE "at" >= TIMESTAMPTZ '{first} 00:00:00+00' AND "at" < TIMESTAMPTZ '{end} 00:00:00+00'
  GROUP BY ALL
),
m AS (
  SELECT pop.*,
    CASE WHEN coalesce(tx.n_purchase, 0) > 0 THEN tx.revenue ELSE 0 END AS revenue,
    CASE WHEN coalesce(tx.n_refund, 0) > 0 THEN tx.refunds ELSE 0 END AS refunds,
    CASE WHEN coalesce(ix.contacts, 0) > 0 THEN ix.cost_to_serve ELSE 0 END AS cost_to_serve,
    coalesce(ix.contacts, 0)::DOUBLE AS contacts,
    ix.fcr, ix.digital_share, ix.csat,
    CASE WHEN coalesce(ev.n_adopted, 0) > 0 THEN ev.adoptions ELSE 0 END::DOUBLE AS adoptions
  FROM pop
  LEFT JOIN tx USING (k, period) LEFT JOIN ix USING (k, period) LEFT JOIN ev USING (k, period)
),
d AS (
  SELECT *, revenue - refunds AS net_revenue, revenue - refunds - cost_to_serve AS margin,
    CASE WHEN csat > 0 THEN (csat - 1) / 4 ELSE 0.5 END AS satisfaction
  FROM m
),
d2 AS (
  SELECT *, CASE WHEN contacts > 0 THEN 0.5 * fcr + 0.3 * digital_share + 0.2 * satisfaction ELSE 1 END AS service
  FROM d
),
c AS (
  SELECT *,
    CASE WHEN margin IS NULL THEN NULL
         WHEN max(margin) OVER w = min(margin) OVER w THEN 0.5
         ELSE (margin - min(margin) OVER w) / (max(margin) OVER w - min(margin) OVER w) END AS value,
    CASE WHEN adoptions IS NULL THEN NULL
         ELSE percent_rank() OVER (PARTITION BY period, adoptions IS NULL ORDER BY adoptions) END AS innovation,
    CASE WHEN net_revenue IS NULL THEN NULL ELSE greatest(net_revenue, 0) + 1 END AS weight
  FROM d2
  WINDOW w AS (PARTITION BY period)
),
s AS (
  SELECT *, 0.4 * value + 0.35 * service + 0.25 * innovation AS score
  FROM c
),
f AS (
  SELECT *, (score IS NOT NULL AND weight IS NOT NULL AND weight > 0) AS inc FROM s
),
g AS (
  SELECT period, CASE WHEN GROUPING(segment) = 0 THEN 'segment' WHEN GROUPING(region) = 0 THEN 'region'
                      WHEN GROUPING(plan) = 0 THEN 'plan' END AS dimension,
    coalesce(segment, region, plan) AS value,
    count(*) AS population, count(*) FILTER (WHERE inc) AS included,
    sum(weight) FILTER (WHERE inc) AS weight_total,
    sum(weight * score) FILTER (WHERE inc) AS ws,
    sum(weight * value) FILTER (WHERE inc AND value IS NOT NULL) / sum(weight) FILTER (WHERE inc AND value IS NOT NULL) AS value_rollup,
    sum(weight * service) FILTER (WHERE inc AND service IS NOT NULL) / sum(weight) FILTER (WHERE inc AND service IS NOT NULL) AS service_rollup,
    sum(weight * innovation) FILTER (WHERE inc AND innovation IS NOT NULL) / sum(weight) FILTER (WHERE inc AND innovation IS NOT NULL) AS innovation_rollup
  FROM f
  GROUP BY GROUPING SETS ((period), (period, segment), (period, region), (period, plan))
)
SELECT period::VARCHAR AS period, dimension, value, 100 * ws / weight_total AS score,
  population, included, coalesce(weight_total, 0) AS weight_total, value_rollup, service_rollup, innovation_rollup
FROM g ORDER BY period, dimension NULLS FIRST, value
"""


def run_measured(cmd, **kw):
    """Runs a command; returns (wall seconds, peak RSS bytes, stdout)."""
    start = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
    out = p.stdout.read()
    err = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{cmd[0]} failed: {err.decode(errors='replace')[-2000:]}")
    return wall, usage.ru_maxrss * 1024, out


def croo_rows(doc):
    rows = {}
    for r in doc["results"]:
        comps = r["components"]
        rows[(r["period"], r["dimension"], r["value"])] = [
            r["score"], r["population"], r["included"], r["weight_total"],
            comps["value"]["rollup"], comps["service"]["rollup"], comps["innovation"]["rollup"]]
    return rows


def duck_rows(text):
    rows = {}
    for r in json.loads(text):
        rows[(r["period"], r["dimension"], r["value"])] = [
            r["score"], r["population"], r["included"], r["weight_total"],
            r["value_rollup"], r["service_rollup"], r["innovation_rollup"]]
    return rows


def agree(a, b):
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


DUCK_RUNNER = r"""
import duckdb, json, sys
con = duckdb.connect()
con.execute("SET threads = " + sys.argv[2])
con.execute("SET TimeZone = 'UTC'")
sql = open(sys.argv[1]).read()
cur = con.execute(sql)
cols = [d[0] for d in cur.description]
print(json.dumps([dict(zip(cols, r)) for r in cur.fetchall()], default=float))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("croo")
    ap.add_argument("--customers", type=int, default=450000)
    ap.add_argument("--months", type=int, default=12)
    ap.add_argument("--from", dest="first", default="2026-01-01")
    ap.add_argument("--to", dest="last", default="2026-10-01")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--work", default=None)
    a = ap.parse_args()
    work = a.work or tempfile.mkdtemp(prefix="croo-bench-")
    data = os.path.join(work, f"sample-{a.customers}-{a.months}")
    if not os.path.exists(os.path.join(data, "retail-croo.toml")):
        subprocess.run([a.croo, "sample", "--out", data, "--customers", str(a.customers),
                        "--months", str(a.months)], check=True, stdout=subprocess.DEVNULL)
    end_year, end_month = map(int, a.last[:7].split("-"))
    end = f"{end_year + end_month // 12}-{end_month % 12 + 1:02d}-01"
    sql_path = os.path.join(work, "query.sql")
    with open(sql_path, "w") as f:
        f.write(QUERY.format(data=data, first=a.first, last=a.last, end=end))
    runner = os.path.join(work, "duck_runner.py")
    with open(runner, "w") as f:
        f.write(DUCK_RUNNER)
    croo_cmd = [a.croo, "run", os.path.join(data, "retail-croo.toml"), "--from", a.first,
                "--to", a.last, "--out", os.path.join(work, "results"), "--format", "json",
                "--threads", str(a.threads)]
    duck_cmd = [sys.executable, runner, sql_path, str(a.threads)]
    croo_t, duck_t = [], []
    for i in range(a.repeat):
        # A fresh results store each time: over the same store, croo would
        # find the run unchanged and skip computing it.
        shutil.rmtree(os.path.join(work, "results"), ignore_errors=True)
        w, rss, out = run_measured(croo_cmd)
        croo_t.append((w, rss))
        if i == 0:
            cr = croo_rows(json.loads(out))
        w, rss, out = run_measured(duck_cmd)
        duck_t.append((w, rss))
        if i == 0:
            dr = duck_rows(out)
    # Agreement, row by row.
    problems = []
    if set(cr) != set(dr):
        problems.append(f"row sets differ: croo only {sorted(set(cr) - set(dr))[:5]}, duckdb only {sorted(set(dr) - set(cr))[:5]}")
    for k in sorted(set(cr) & set(dr), key=str):
        for name, x, y in zip(["score", "population", "included", "weight_total", "value", "service", "innovation"], cr[k], dr[k]):
            if not agree(x, y):
                problems.append(f"{k} {name}: croo {x} duckdb {y}")
    cw, cm = min(t for t, _ in croo_t), max(m for _, m in croo_t)
    dw, dm = min(t for t, _ in duck_t), max(m for _, m in duck_t)
    print(f"data: {data} ({a.customers} customers, {a.months} months; periods {a.first}..{a.last}; {a.threads} threads)")
    print(f"rows compared: {len(set(cr) & set(dr))}, disagreements: {len(problems)}")
    for p in problems[:10]:
        print("  " + p)
    print(f"croo   best of {a.repeat}: {cw:7.2f} s   peak RSS {cm / 2**20:8.0f} MiB   runs {[round(t, 2) for t, _ in croo_t]}")
    print(f"duckdb best of {a.repeat}: {dw:7.2f} s   peak RSS {dm / 2**20:8.0f} MiB   runs {[round(t, 2) for t, _ in duck_t]}")
    print(f"ratio croo/duckdb: wall {cw / dw:.2f}, memory {cm / dm:.2f}")
    # On a noisy machine the medians of the interleaved runs say more
    # than the best ones.
    cmed = statistics.median(t for t, _ in croo_t)
    dmed = statistics.median(t for t, _ in duck_t)
    print(f"median wall: croo {cmed:.2f} s, duckdb {dmed:.2f} s, ratio {cmed / dmed:.2f}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
