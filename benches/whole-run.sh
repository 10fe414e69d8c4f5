#!/usr/bin/env bash
# Whole-run benchmark: `croo run` (release build) against one hand-written
# DuckDB query on the same sample data, interleaved, best of 3.
# usage: benches/whole-run.sh [--customers N] [--months M] [--from P --to P] [--threads T]
# (450000 customers x 12 months is about 10 million interactions.)
set -euo pipefail
cd "$(dirname "$0")/.."
# CROO_SKIP_BUILD=1 uses what target/release holds.
[ -n "${CROO_SKIP_BUILD:-}" ] || cargo build --release --workspace --bins --benches
venv=target/bench-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q duckdb==2.0.0
exec "$venv/bin/python" benches/whole_run.py target/release/croo --work target/bench-data "$@"
