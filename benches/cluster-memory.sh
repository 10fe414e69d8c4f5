#!/usr/bin/env bash
# `croo run --cluster` on a loopback Ballista cluster (one `croo scheduler`,
# E `croo executor`s of 2 concurrent tasks each) as the data grows: the
# sample at each of SCALES times BASE customers, each run under
# /usr/bin/time -v, best of ROUNDS (by client RSS). Reported per executor
# count and scale: the client's peak RSS and wall time, the executors'
# CPU time (user + system, from /proc) and the bytes they wrote to their
# work folders (shuffle files) during that run (each job's folder at its
# largest, polled every 5 s); then the peak RSS of the
# scheduler and of the executors over each series.
# usage: benches/cluster-memory.sh [BASE] [MONTHS] [ROUNDS] [BIN]
# environment: EXECUTORS (default "2"), SCALES (default "1 4 16"),
#   PARTITIONS (the client's --threads, i.e. the plan's partitions; default
#   Ballista's: the client's cores), PARTITIONS_PER_SCALE (instead: that
#   many partitions per unit of scale, so that a partition's share of the
#   data stays the same as it grows), DATA (where the samples go; default
#   target/bench-data/cluster).
# (BASE 450000, MONTHS 1: 450k to 7.2M customers, 0.8M to 13M interactions.)
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:-450000}
months=${2:-1}
rounds=${3:-3}
bin=$(realpath "${4:-target/release/croo}")
executors=${EXECUTORS:-2}
scales=${SCALES:-1 4 16}
work=$(realpath -m "${DATA:-target/bench-data/cluster}")
mkdir -p "$work"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
# Stops the processes /usr/bin/time runs (so that it writes their figures).
cleanup() {
  for p in "${pids[@]}"; do pkill -P "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
}
trap cleanup EXIT
tick=$(getconf CLK_TCK)
# The sample's months end with 2026-10 (engine::sample::last_month).
from=$(python3 -c "m = 2026 * 12 + 9 - ($months - 1); print(f'{m // 12}-{m % 12 + 1:02d}-01')")
summary=""
printf '| executors | partitions | customers | interactions | client peak RSS (MiB) | client wall (s) | executors CPU (s) | shuffle written (MiB) |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n'
for e in $executors; do
  sched=$(port)
  /usr/bin/time -v -o "$work/scheduler.time" "$bin" scheduler --bind "127.0.0.1:$sched" 2>"$work/scheduler.log" &
  pids+=($!)
  sleep 2
  for i in $(seq 0 $((e - 1))); do
    rm -rf "$work/work$i"
    mkdir -p "$work/work$i"
    /usr/bin/time -v -o "$work/executor$i.time" "$bin" executor --scheduler "127.0.0.1:$sched" \
      --bind-host 127.0.0.1 --external-host 127.0.0.1 --port "$(port)" --grpc-port "$(port)" \
      --concurrent-tasks 2 --work-dir "$work/work$i" 2>"$work/executor$i.log" &
    pids+=($!)
  done
  sleep 4
  # The executors' own processes (children of /usr/bin/time).
  execs=$(for p in "${pids[@]:1}"; do pgrep -P "$p"; done)
  cpu() { local t=0; for p in $execs; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
  # Shuffle bytes: each job folder's largest size, polled during the run
  # (the scheduler removes a job's shuffle files 300 s after it ends, so
  # the folders at the end of a long run miss the early jobs).
  watch_jobs() { while :; do for d in "$work"/work*/*/; do du -sb "$d" 2>/dev/null || true; done; sleep 5; done >"$work/jobs.du"; }
  written() {
    for d in "$work"/work*/*/; do du -sb "$d" 2>/dev/null || true; done >>"$work/jobs.du"
    awk '{if ($1 > m[$2]) m[$2] = $1} END {for (d in m) s += m[d]; printf "%.0f\n", s}' "$work/jobs.du"
  }
  for scale in $scales; do
    n=$((base * scale))
    data="$work/sample-$n-$months"
    [ -f "$data/summary.txt" ] || "$bin" sample --out "$data" --customers "$n" --months "$months" >"$data.summary"
    [ -f "$data/summary.txt" ] || mv "$data.summary" "$data/summary.txt"
    threads=()
    [ -n "${PARTITIONS:-}" ] && threads=(--threads "$PARTITIONS")
    [ -n "${PARTITIONS_PER_SCALE:-}" ] && threads=(--threads "$((scale * PARTITIONS_PER_SCALE))")
    best_rss=""; best_wall=""
    for r in $(seq "$rounds"); do
      rm -rf "$work/out"
      # Shuffle files of earlier runs go first: the bytes are this run's.
      for i in $(seq 0 $((e - 1))); do find "$work/work$i" -mindepth 1 -delete; done
      c0=$(cpu)
      watch_jobs &
      watcher=$!
      /usr/bin/time -v -o "$work/client.time" "$bin" run "$data/retail-croo.toml" --out "$work/out" \
        --from "$from" --to 2026-10-01 --cluster "df://127.0.0.1:$sched" "${threads[@]}" \
        --cluster-staging "$work" --format json >/dev/null
      rss=$(awk -F': ' '/Maximum resident/ {print $2}' "$work/client.time")
      wall=$(awk -F': ' '/Elapsed \(wall/ {print $2}' "$work/client.time")
      c1=$(cpu)
      kill "$watcher" 2>/dev/null || true; wait "$watcher" 2>/dev/null || true
      w=$(written)
      if [ -z "$best_rss" ] || [ "$rss" -lt "$best_rss" ]; then
        best_rss=$rss; best_wall=$wall
        best_cpu=$(echo "($c1 - $c0) / $tick" | bc -l); best_w=$(echo "$w / 1048576" | bc -l)
      fi
    done
    printf '| %s | %s | %s | %s | %.1f | %s | %.1f | %.1f |\n' "$e" "${threads[1]:-default}" "$n" "$(grep -o '[0-9]* interactions' "$data/summary.txt" | cut -d' ' -f1)" \
      "$(echo "$best_rss / 1024" | bc -l)" "$best_wall" "$best_cpu" "$best_w"
  done
  cleanup
  peaks="scheduler $(echo "$(awk -F': ' '/Maximum resident/ {print $2}' "$work/scheduler.time") / 1024" | bc -l | xargs printf '%.1f')"
  for i in $(seq 0 $((e - 1))); do
    peaks="$peaks, executor$i $(echo "$(awk -F': ' '/Maximum resident/ {print $2}' "$work/executor$i.time") / 1024" | bc -l | xargs printf '%.1f')"
  done
  summary="$summary$e executor(s), peak RSS over the series (MiB): $peaks
"
done
trap - EXIT
printf '\n%s' "$summary"
