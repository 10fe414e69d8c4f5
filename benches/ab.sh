#!/usr/bin/env bash
# Interleaved A/B of two croo binaries on the same sample data: the whole
# run of benches/whole-run.sh (10 monthly periods), N rounds, each round
# running OLD then NEW; prints each binary's wall times, user CPU times and
# peak RSS sorted, and whether their result rows are identical.
# usage: benches/ab.sh OLD NEW [ROUNDS=8] [CUSTOMERS=450000] [THREADS=2]
set -euo pipefail
old=$(realpath "$1"); new=$(realpath "$2")
rounds=${3:-8}; customers=${4:-450000}; threads=${5:-2}
cd "$(dirname "$0")/.."
data=target/bench-data/sample-$customers-12
[ -f "$data/retail-croo.toml" ] || "$old" sample --out "$data" --customers "$customers" --months 12 >/dev/null
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
for _ in $(seq 1 "$rounds"); do
  for side in old new; do
    bin=$old; [ "$side" = new ] && bin=$new
    rm -rf "$work/out"
    /usr/bin/time -f "$side %e %U %M" "$bin" run "$data/retail-croo.toml" --from 2026-01-01 --to 2026-10-01 \
      --out "$work/out" --format json --threads "$threads" >"$work/$side.json" 2>>"$work/times"
  done
done
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
# The rows less the run id, which every run draws afresh.
rows = {s: [{k: v for k, v in r.items() if k != "run_id"}
            for r in json.load(open(f"{work}/{s}.json"))["results"]]
        for s in ("old", "new")}
times = {}
for line in open(f"{work}/times"):
    parts = line.split()
    if len(parts) == 4 and parts[0] in ("old", "new"):
        times.setdefault(parts[0], []).append((float(parts[1]), float(parts[2]), int(parts[3])))
for s in ("old", "new"):
    t = sorted(times[s])
    print(f"{s}: wall {[w for w, _, _ in t]} s, median {t[len(t) // 2][0]}; "
          f"user {sorted(u for _, u, _ in t)} s; peak RSS {max(m for _, _, m in t) // 1024} MiB")
print("result rows identical" if rows["old"] == rows["new"] else "RESULT ROWS DIFFER")
PY
