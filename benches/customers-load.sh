#!/usr/bin/env bash
# Load benchmark of the customers routes of `croo serve` (not a test):
# p50/p90/p99 latency of a page of 50 customers on the 450k-customer
# sample, for each sort, a group, a scoped key and a second page, and of
# one customer over twelve months (benches/customers_load.py).
# usage: benches/customers-load.sh [CUSTOMERS=450000] [CONCURRENCY=4] [SECONDS=10] [BIN=target/release/croo]
set -euo pipefail
cd "$(dirname "$0")/.."
customers="${1:-450000}"; concurrency="${2:-4}"; seconds="${3:-10}"
bin="${4:-target/release/croo}"
[ -n "${CROO_SKIP_BUILD:-}" ] || [ "$#" -ge 4 ] || cargo build --release -p croo --bin croo
data=target/bench-data/sample-$customers-12
[ -f "$data/retail-croo.toml" ] || "$bin" sample --out "$data" --customers "$customers" --months 12 >/dev/null
work="$(mktemp -d)"
trap 'if [ -n "${server:-}" ]; then kill "$server" 2>/dev/null || true; fi; rm -rf "$work"' EXIT
/usr/bin/time -f "run --detail: %e s, peak RSS %M KiB" \
  "$bin" run "$data/retail-croo.toml" --from 2025-11-01 --to 2026-10-01 --detail --out "$work/results" --format json >/dev/null
exec_key="$("$bin" keys add --file "$work/keys.json" --name exec --role viewer --results "$work/results" 2>/dev/null)"
smb_key="$("$bin" keys add --file "$work/keys.json" --name smb --role viewer --scope segment=smb --results "$work/results" 2>/dev/null)"
"$bin" serve --results "$work/results" --formulas "$data" --keys "$work/keys.json" --bind 127.0.0.1:18081 2>/dev/null &
server=$!
sleep 1
python3 benches/customers_load.py "http://127.0.0.1:18081/v1/formulas/retail-croo" "$exec_key" "$smb_key" "$concurrency" "$seconds"
echo "server peak RSS: $(grep VmHWM /proc/$server/status | awk '{print $2, $3}')"
