#!/usr/bin/env bash
# Load benchmark of `croo serve` (not a test): requests per second and
# p50/p99 latency of the scores route on loopback.
# usage: benches/serve-load.sh [CUSTOMERS=2000] [CONCURRENCY=16] [SECONDS=10] [BAD_CLIENTS=0]
# With BAD_CLIENTS, the by-segment route three times alone and three times
# with that many wrong-key clients hammering the server, interleaved.
# CROO_SERVE_FLAGS adds flags to `croo serve` (e.g. --denied-rate 1000000).
set -euo pipefail
cd "$(dirname "$0")/.."
customers="${1:-2000}"; concurrency="${2:-16}"; seconds="${3:-10}"; bad="${4:-0}"
# CROO_SKIP_BUILD=1 uses what target/release holds.
[ -n "${CROO_SKIP_BUILD:-}" ] || cargo build --release --workspace --bins --benches
bin=target/release
work="$(mktemp -d)"
trap 'if [ -n "${server:-}" ]; then kill "$server" 2>/dev/null || true; fi; rm -rf "$work"' EXIT
"$bin/croo" sample --out "$work/sample" --customers "$customers" --months 12 >/dev/null
"$bin/croo" run "$work/sample/retail-croo.toml" --from 2025-11-01 --to 2026-10-01 --out "$work/results" --format json >/dev/null
key="$("$bin/croo" keys add --file "$work/keys.json" --name bench --role viewer --results "$work/results" 2>/dev/null)"
"$bin/croo" serve --results "$work/results" --formulas "$work/sample" --keys "$work/keys.json" \
  --bind 127.0.0.1:18080 ${CROO_SERVE_FLAGS:-} 2>/dev/null &
server=$!
sleep 1
base="http://127.0.0.1:18080/v1/formulas/retail-croo"
if [ "$bad" -gt 0 ]; then
  for _ in 1 2 3; do
    "$bin/serve_load" "$base/scores?by=segment" "$key" "$concurrency" "$seconds" 0
    "$bin/serve_load" "$base/scores?by=segment" "$key" "$concurrency" "$seconds" "$bad"
  done
  exit 0
fi
"$bin/serve_load" "$base/scores" "$key" "$concurrency" "$seconds"
"$bin/serve_load" "$base/scores?by=segment" "$key" "$concurrency" "$seconds"
"$bin/serve_load" "$base/scores/2026-10-01?by=region" "$key" "$concurrency" "$seconds"
