#!/usr/bin/env bash
# The client's memory on a loopback Ballista cluster (one `croo scheduler`,
# two `croo executor`s) as the data grows: `croo run --cluster` on the
# sample at 1x, 4x and 16x BASE customers, each under /usr/bin/time -v,
# best of ROUNDS; peak RSS of the client, and of the scheduler and the
# executors over the whole series.
# usage: benches/cluster-memory.sh [BASE] [MONTHS] [ROUNDS] [BIN]
# (BASE 450000, MONTHS 1: 450k to 7.2M customers, 0.8M to 13M interactions.)
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:-450000}
months=${2:-1}
rounds=${3:-3}
bin=$(realpath "${4:-target/release/croo}")
work=$(realpath -m target/bench-data/cluster)
mkdir -p "$work"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
sched=$(port)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
/usr/bin/time -v -o "$work/scheduler.time" "$bin" scheduler --bind "127.0.0.1:$sched" 2>"$work/scheduler.log" &
pids+=($!)
sleep 2
for i in 0 1; do
  /usr/bin/time -v -o "$work/executor$i.time" "$bin" executor --scheduler "127.0.0.1:$sched" \
    --bind-host 127.0.0.1 --external-host 127.0.0.1 --port "$(port)" --grpc-port "$(port)" \
    --concurrent-tasks 2 --work-dir "$work/work$i" 2>"$work/executor$i.log" &
  pids+=($!)
done
sleep 4
printf '| customers | interactions | client peak RSS (MiB) | client wall (s) |\n| --- | --- | --- | --- |\n'
for scale in 1 4 16; do
  n=$((base * scale))
  data="$work/sample-$n-$months"
  [ -f "$data/summary.txt" ] || "$bin" sample --out "$data" --customers "$n" --months "$months" >"$data.summary"
  [ -f "$data/summary.txt" ] || mv "$data.summary" "$data/summary.txt"
  best_rss=""; best_wall=""
  for r in $(seq "$rounds"); do
    rm -rf "$work/out"
    /usr/bin/time -v -o "$work/client.time" "$bin" run "$data/retail-croo.toml" --out "$work/out" \
      --cluster "df://127.0.0.1:$sched" --format json >/dev/null
    rss=$(awk -F': ' '/Maximum resident/ {print $2}' "$work/client.time")
    wall=$(awk -F': ' '/Elapsed \(wall/ {print $2}' "$work/client.time")
    if [ -z "$best_rss" ] || [ "$rss" -lt "$best_rss" ]; then best_rss=$rss; best_wall=$wall; fi
  done
  printf '| %s | %s | %.1f | %s |\n' "$n" "$(grep -o '[0-9]* interactions' "$data/summary.txt" | cut -d' ' -f1)" "$(echo "$best_rss / 1024" | bc -l)" "$best_wall"
done
cleanup
sleep 1
for f in scheduler executor0 executor1; do
  printf '%s peak RSS over the series: %.1f MiB\n' "$f" "$(echo "$(awk -F': ' '/Maximum resident/ {print $2}' "$work/$f.time") / 1024" | bc -l)"
done
