#!/usr/bin/env bash
# The client's memory on a loopback Ballista cluster (one `croo scheduler`,
# two `croo executor`s) as the data grows: `croo run --cluster` on the
# sample at 1x, 4x and 16x BASE customers, each under /usr/bin/time -v,
# best of ROUNDS; peak RSS of the client, the executors' CPU time and the
# bytes they wrote to their work folders (shuffle files) in that round,
# and the peak RSS of the scheduler and the executors over the series.
# usage: benches/cluster-memory.sh [BASE] [MONTHS] [ROUNDS] [BIN]
# (BASE 450000, MONTHS 1: 450k to 7.2M customers, 0.8M to 13M interactions.)
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:-450000}
months=${2:-1}
rounds=${3:-3}
bin=$(realpath "${4:-target/release/croo}")
work=$(realpath -m target/bench-data/cluster)
mkdir -p "$work/work0" "$work/work1"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
sched=$(port)
pids=()
# Stops the processes /usr/bin/time runs (so that it writes their figures).
cleanup() {
  for p in "${pids[@]}"; do pkill -P "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
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
# The executors' own processes (children of /usr/bin/time).
execs=$(for p in "${pids[@]:1}"; do pgrep -P "$p"; done)
cpu() { local t=0; for p in $execs; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
tick=$(getconf CLK_TCK)
# The sample's months end with 2026-10 (engine::sample::last_month).
from=$(python3 -c "m = 2026 * 12 + 9 - ($months - 1); print(f'{m // 12}-{m % 12 + 1:02d}-01')")
printf '| customers | interactions | client peak RSS (MiB) | client wall (s) | executors CPU (s) | shuffle written (MiB) |\n| --- | --- | --- | --- | --- | --- |\n'
for scale in 1 4 16; do
  n=$((base * scale))
  data="$work/sample-$n-$months"
  [ -f "$data/summary.txt" ] || "$bin" sample --out "$data" --customers "$n" --months "$months" >"$data.summary"
  [ -f "$data/summary.txt" ] || mv "$data.summary" "$data/summary.txt"
  best_rss=""; best_wall=""
  for r in $(seq "$rounds"); do
    rm -rf "$work/out"
    c0=$(cpu)
    w0=$(du -sb "$work"/work0 "$work"/work1 | awk '{s += $1} END {print s + 0}')
    /usr/bin/time -v -o "$work/client.time" "$bin" run "$data/retail-croo.toml" --out "$work/out" \
      --from "$from" --to 2026-10-01 --cluster "df://127.0.0.1:$sched" --format json >/dev/null
    rss=$(awk -F': ' '/Maximum resident/ {print $2}' "$work/client.time")
    wall=$(awk -F': ' '/Elapsed \(wall/ {print $2}' "$work/client.time")
    c1=$(cpu)
    w1=$(du -sb "$work"/work0 "$work"/work1 | awk '{s += $1} END {print s + 0}')
    if [ -z "$best_rss" ] || [ "$rss" -lt "$best_rss" ]; then
      best_rss=$rss; best_wall=$wall
      best_cpu=$(echo "($c1 - $c0) / $tick" | bc -l); best_w=$(echo "($w1 - $w0) / 1048576" | bc -l)
    fi
  done
  printf '| %s | %s | %.1f | %s | %.1f | %.1f |\n' "$n" "$(grep -o '[0-9]* interactions' "$data/summary.txt" | cut -d' ' -f1)" \
    "$(echo "$best_rss / 1024" | bc -l)" "$best_wall" "$best_cpu" "$best_w"
done
cleanup
trap - EXIT
for f in scheduler executor0 executor1; do
  printf '%s peak RSS over the series: %.1f MiB\n' "$f" "$(echo "$(awk -F': ' '/Maximum resident/ {print $2}' "$work/$f.time") / 1024" | bc -l)"
done
