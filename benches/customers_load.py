"""Latency of the customers routes (benches/customers-load.sh).

For each request below: one warm-up (the server reads the period's
detail and sorts it the first time), then CONCURRENCY threads with
keep-alive connections request it for SECONDS; prints requests per second
and p50/p90/p99 in milliseconds. Standard library only.

usage: customers_load.py BASE EXEC_KEY SMB_KEY [CONCURRENCY=4] [SECONDS=10]
"""
import http.client
import json
import sys
import threading
import time
import urllib.parse

base, exec_key, smb_key = sys.argv[1:4]
concurrency = int(sys.argv[4]) if len(sys.argv) > 4 else 4
seconds = float(sys.argv[5]) if len(sys.argv) > 5 else 10
u = urllib.parse.urlsplit(base)


def get(conn, path, key):
    conn.request("GET", u.path + path, headers={"Authorization": f"Bearer {key}"})
    r = conn.getresponse()
    body = r.read()
    if r.status != 200:
        raise SystemExit(f"{path}: {r.status} {body[:300]!r}")
    return body


def load(path, key):
    conn = http.client.HTTPConnection(u.hostname, u.port)
    t0 = time.perf_counter()
    first = get(conn, path, key)
    warm = time.perf_counter() - t0
    lat, stop = [], time.perf_counter() + seconds
    lock = threading.Lock()

    def worker():
        c = http.client.HTTPConnection(u.hostname, u.port)
        mine = []
        while time.perf_counter() < stop:
            t = time.perf_counter()
            get(c, path, key)
            mine.append(time.perf_counter() - t)
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lat.sort()
    q = lambda p: 1000 * lat[min(len(lat) - 1, int(p * len(lat)))]
    print(f"{path:70s} first {1000 * warm:7.1f} ms  {len(lat) / seconds:7.1f} req/s  "
          f"p50 {q(0.5):6.2f}  p90 {q(0.9):6.2f}  p99 {q(0.99):6.2f} ms  ({len(first)} bytes)")
    return json.loads(first)


period = "2026-10-01"
load(f"/customers?period={period}&limit=50", exec_key)
load(f"/customers?period={period}&limit=50&sort=-score", exec_key)
page = load(f"/customers?period={period}&limit=50&sort=change", exec_key)
load(f"/customers?period={period}&limit=50&sort=-contribution.value", exec_key)
load(f"/customers?period={period}&limit=50&group=region=north", exec_key)
load(f"/customers?period={period}&limit=50&sort=change", smb_key)
load(f"/customers?period={period}&limit=50&sort=change&cursor={page['next']}", exec_key)
key = page["customers"][0]["key"]
load(f"/customers/{key}", exec_key)
