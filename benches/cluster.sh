#!/usr/bin/env bash
# One run, one machine: 3 wsgate replicas on a single Redis, then the same 3 replicas
# (`--redis-mode cluster`) on a 3-shard Redis Cluster (3 primaries, no replicas), measured
# by the same generator (`wsgate bench`) with the same parameters. Besides the bench
# figures it records, per Redis process, CPU time from /proc/<pid>/stat and INFO
# stats / commandstats deltas over each run, to show how publish load spreads over shards.
# Two scenarios by default (NAME:CLIENTS:ROOMS:PUBLISHES_PER_S):
#   fanout:2000:12:300    large rooms (~167 members): the replicas' delivery work dominates;
#   publish:600:60:4000   small rooms (10 members): many publishes, Redis's work per message.
# Writes docs/cluster-bench.md and target/bench/cluster-<scenario>-{single,cluster}.*.
#   benches/cluster.sh
#   SCENARIOS="fanout:3000:24:400" DURATION=15s benches/cluster.sh
# Only processes this script started are stopped. Loopback only; never port 6379.
set -euo pipefail
cd "$(dirname "$0")/.."
SCENARIOS=${SCENARIOS:-fanout:2000:12:300 publish:600:60:4000}
DURATION=${DURATION:-10s}
OUT=${OUT:-docs/cluster-bench.md}
WORK=target/bench
mkdir -p "$WORK" docs
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

cargo build --release --quiet
BIN=target/release/wsgate

max_rooms=0
for s in $SCENARIOS; do IFS=: read -r _ _ r _ <<<"$s"; [ "$r" -gt "$max_rooms" ] && max_rooms=$r; done
all_rooms=(); for i in $(seq 0 $((max_rooms - 1))); do all_rooms+=("room_$i"); done
PERMS=$WORK/cluster-perms.json
python3 -c 'import json,sys; print(json.dumps({"user_2": sys.argv[1:]}))' "${all_rooms[@]}" >"$PERMS"

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK/cluster-nodes"; }
trap cleanup EXIT

cpu_ticks() { # pid -> utime+stime in clock ticks
  awk '{print $14 + $15}' "/proc/$1/stat"
}
redis_stats() { # port -> "spublish=N publish=N commands=N net_in=N net_out=N" (one token, no spaces)
  {
    redis-cli -p "$1" INFO commandstats | tr -d '\r' |
      sed -n 's/^cmdstat_\(spublish\|publish\):calls=\([0-9]*\).*/\1=\2/p'
    redis-cli -p "$1" INFO stats | tr -d '\r' |
      sed -n 's/^total_commands_processed:\([0-9]*\)/commands=\1/p; s/^total_net_input_bytes:\([0-9]*\)/net_in=\1/p; s/^total_net_output_bytes:\([0-9]*\)/net_out=\1/p'
  } | paste -sd, -
}

start_gateways() { # label base_port redis_url [extra...] -> sets gw_pids urls
  local label=$1 base=$2 url=$3; shift 3
  local i
  gw_pids=(); urls=()
  for i in 0 1 2; do
    local port=$((base + i))
    "$BIN" serve --listen "127.0.0.1:$port" --redis-url "$url" --permissions "$PERMS" "$@" \
      >/dev/null 2>"$WORK/cluster-$label-$port.log" &
    pids+=($!); gw_pids+=($!); urls+=("http://127.0.0.1:$port")
  done
  for i in 0 1 2; do
    for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$((base + i))/readyz" >/dev/null && break; sleep 0.1; done
  done
}

run_bench() { # label redis_url redis_ports(csv) redis_pids(csv) [extra bench args...]
  local label=$1 url=$2 ports=$3 rpids=$4; shift 4
  local args=() before=() after=() cpu0=() cpu1=() i
  for u in "${urls[@]}"; do args+=(--url "$u"); done
  for p in "${gw_pids[@]}"; do args+=(--pid "$p"); done
  for r in "${rooms[@]}"; do args+=(--room "$r"); done
  IFS=, read -ra ps <<<"$ports"; IFS=, read -ra rp <<<"$rpids"
  for i in "${!ps[@]}"; do before+=("$(redis_stats "${ps[$i]}")"); cpu0+=("$(cpu_ticks "${rp[$i]}")"); done
  echo "== $label: $CLIENTS clients over $ROOMS rooms, $RATE publishes/s for $DURATION" >&2
  "$BIN" bench "${args[@]}" --redis-url "$url" "$@" --token valid-token-2 --clients "$CLIENTS" \
    --rate "$RATE" --duration "$DURATION" --deadline 300s >"$WORK/cluster-$label.json"
  for i in "${!ps[@]}"; do after+=("$(redis_stats "${ps[$i]}")"); cpu1+=("$(cpu_ticks "${rp[$i]}")"); done
  {
    for i in "${!ps[@]}"; do
      echo "${ps[$i]} ${cpu0[$i]} ${cpu1[$i]} ${before[$i]} ${after[$i]}"
    done
  } >"$WORK/cluster-$label.redis.txt"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# --- one Redis and a 3-shard Redis Cluster, 3 replicas on each ---------------------
SINGLE=$(free_port)
redis-server --port "$SINGLE" --bind 127.0.0.1 --save "" --appendonly no >/dev/null &
single_pid=$!; pids+=($single_pid)
for _ in $(seq 1 50); do redis-cli -p "$SINGLE" ping >/dev/null 2>&1 && break; sleep 0.1; done
start_gateways single 3691 "redis://127.0.0.1:$SINGLE"
single_gw=("${gw_pids[@]}"); single_urls=("${urls[@]}")

mkdir -p "$WORK/cluster-nodes"
cports=(); cpids=()
while [ ${#cports[@]} -lt 3 ]; do
  p=$(free_port)
  if [ "$p" -lt 55000 ] && [ "$p" != 6379 ]; then cports+=("$p"); fi
done
for p in "${cports[@]}"; do
  redis-server --port "$p" --bind 127.0.0.1 --save "" --appendonly no --cluster-enabled yes \
    --cluster-config-file "$PWD/$WORK/cluster-nodes/nodes-$p.conf" --dir "$PWD/$WORK/cluster-nodes" >/dev/null &
  pids+=($!); cpids+=($!)
done
for p in "${cports[@]}"; do
  for _ in $(seq 1 50); do redis-cli -p "$p" ping >/dev/null 2>&1 && break; sleep 0.1; done
done
redis-cli --cluster create $(printf '127.0.0.1:%s ' "${cports[@]}") --cluster-yes >/dev/null
for p in "${cports[@]}"; do
  for _ in $(seq 1 100); do redis-cli -p "$p" cluster info | grep -q cluster_state:ok && break; sleep 0.1; done
done
SEEDS=$(printf 'redis://127.0.0.1:%s,' "${cports[@]}"); SEEDS=${SEEDS%,}
start_gateways cluster 3695 "$SEEDS" --redis-mode cluster
cluster_gw=("${gw_pids[@]}"); cluster_urls=("${urls[@]}")
for p in "${cports[@]}"; do
  echo "$p $(redis-cli -p "$p" cluster nodes | awk '/myself/{for (i = 9; i <= NF; i++) printf "%s ", $i}')"
done >"$WORK/cluster-slots.txt"
for r in "${all_rooms[@]}"; do echo "$r $(redis-cli -p "${cports[0]}" cluster keyslot "socket.io#/#$r#")"; done >"$WORK/cluster-room-slots.txt"

for s in $SCENARIOS; do
  IFS=: read -r name CLIENTS ROOMS RATE <<<"$s"
  rooms=("${all_rooms[@]:0:$ROOMS}")
  gw_pids=("${single_gw[@]}"); urls=("${single_urls[@]}")
  run_bench "$name-single" "redis://127.0.0.1:$SINGLE" "$SINGLE" "$single_pid"
  sleep 2
  gw_pids=("${cluster_gw[@]}"); urls=("${cluster_urls[@]}")
  run_bench "$name-cluster" "$SEEDS" "$(IFS=,; echo "${cports[*]}")" "$(IFS=,; echo "${cpids[*]}")" --redis-mode cluster
  sleep 2
done
cleanup
trap - EXIT

python3 benches/cluster_report.py "$WORK" "$OUT" "$DURATION" $SCENARIOS
