#!/usr/bin/env bash
# What finance's scheduled runs cost, interleaved, best of N: a full run of
# the 12-month sample (12 monthly periods, computed), the same run again
# with nothing changed (fingerprints equal: nothing computed, "unchanged"),
# the same pair as a schedule runs it (`--last-complete --lookback 11`),
# `--period current` (the open month) and `--period <that month>` with
# --force, and one month with data (2026-10) with --force.
# usage: benches/rerun.sh [CUSTOMERS=450000] [ROUNDS=3] [THREADS=2]
set -euo pipefail
customers=${1:-450000}; rounds=${2:-3}; threads=${3:-2}
cd "$(dirname "$0")/.."
bin=${CROO_BIN:-target/release/croo}
data=target/bench-data/sample-$customers-12
[ -f "$data/retail-croo.toml" ] || "$bin" sample --out "$data" --customers "$customers" --months 12 >/dev/null
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
cp -r "$data" "$work/s"
# The open month has no data in the sample: let it be empty.
python3 - "$work/s/retail-croo.toml" <<'PY'
import sys
p = sys.argv[1]
out = []
for line in open(p):
    out.append(line)
    if line.strip() in ('time = "started_at"', 'time = "ts"', 'time = "at"'):
        out.append('empty_periods = "allow"\n')
open(p, "w").write("".join(out))
PY
f="$work/s/retail-croo.toml"
open_month=$(date -u +%Y-%m)
run() { # name, args...
  local name=$1; shift
  local t0=$EPOCHREALTIME
  "$bin" run "$f" --out "$work/out" --threads "$threads" "$@" >"$work/last.txt" 2>&1 \
    || { cat "$work/last.txt"; exit 1; }
  echo "$name $(python3 -c "print(round($EPOCHREALTIME - $t0, 3))")" >>"$work/times"
}
for _ in $(seq 1 "$rounds"); do
  run full --from 2025-11 --to 2026-10 --force
  run unchanged --from 2025-11 --to 2026-10
  grep -q "unchanged: edition" "$work/last.txt" || { echo "the rerun was not unchanged"; cat "$work/last.txt"; exit 1; }
  # The scheduled path: the latest complete period and the 11 before it;
  # unchanged, it reuses the sources' latest times recorded by the first.
  run lc-full --last-complete --lookback 11 --force
  run lc-unchanged --last-complete --lookback 11
  grep -q "unchanged: edition" "$work/last.txt" || { echo "the scheduled rerun was not unchanged"; cat "$work/last.txt"; exit 1; }
  run current --period current --force
  run open-month --period "$open_month" --force
  run october --period 2026-10 --force
done
python3 - "$work/times" <<'PY'
import sys
t = {}
for line in open(sys.argv[1]):
    name, s = line.split()
    t.setdefault(name, []).append(float(s))
best = {k: min(v) for k, v in t.items()}
for k, v in t.items():
    print(f"{k:10} best {best[k]:.3f} s  all {sorted(v)}")
print(f"unchanged / full: {best['unchanged'] / best['full']:.3f}")
print(f"scheduled unchanged / full: {best['lc-unchanged'] / best['lc-full']:.3f}")
print(f"current / open month --period: {best['current'] / best['open-month']:.3f}")
PY
