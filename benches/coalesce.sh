#!/usr/bin/env bash
# The write-coalescing window (--coalesce-window) and slow-consumer mode, measured in one run:
# for each setting, a fresh wsgate fleet (2 replicas + 1 redis-server on loopback) is driven by
# `wsgate bench` at each publish rate; prints one Markdown table (server CPU per delivery,
# deliveries/s, latency, loss) and keeps the raw JSON reports under target/bench/coalesce/.
#
#   benches/coalesce.sh                                   # defaults below
#   RATES="100 300" SETTINGS="0s 5ms" DURATION=10s benches/coalesce.sh
#
# A benchmark, not a test: figures depend on the machine and on what else runs on it.
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${CLIENTS:-2000}
RATES=${RATES:-"100 300"}
DURATION=${DURATION:-8s}
# Each setting: a coalescing window, optionally `+drop` for --slow-consumer drop.
SETTINGS=${SETTINGS:-"0s 2ms 10ms 0s+drop"}
WORK=target/bench/coalesce
mkdir -p "$WORK"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cargo build --release --quiet
BIN=target/release/wsgate
# REPORT_ONLY=1: print the table from the reports of the last run, without measuring.
if [ "${REPORT_ONLY:-}" != 1 ]; then

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; pids=(); }
trap cleanup EXIT

for setting in $SETTINGS; do
  window=${setting%%+*}
  mode=disconnect
  [[ $setting == *+drop ]] && mode=drop
  for rate in $RATES; do
    redis-server --port 6590 --bind 127.0.0.1 --save "" --appendonly no >/dev/null &
    pids+=($!)
    sleep 0.3
    gw_pids=(); urls=()
    for port in 3591 3592; do
      "$BIN" serve --listen "127.0.0.1:$port" --redis-url redis://127.0.0.1:6590 \
        --coalesce-window "$window" --slow-consumer "$mode" >/dev/null 2>"$WORK/wsgate-$port.log" &
      pids+=($!); gw_pids+=($!); urls+=(--url "http://127.0.0.1:$port")
    done
    for port in 3591 3592; do
      for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
    done
    args=(); for p in "${gw_pids[@]}"; do args+=(--pid "$p"); done
    echo "== window $window, slow consumers: $mode, rate $rate" >&2
    "$BIN" bench "${urls[@]}" "${args[@]}" --redis-url redis://127.0.0.1:6590 --clients "$CLIENTS" \
      --rate "$rate" --duration "$DURATION" --deadline 120s >"$WORK/$setting-$rate.json"
    cleanup
  done
done
fi

python3 - "$WORK" "$CLIENTS" "$DURATION" $SETTINGS -- $RATES <<'PY'
import json, sys
work, clients, duration = sys.argv[1:4]
rest = sys.argv[4:]
settings, rates = rest[:rest.index("--")], rest[rest.index("--") + 1:]
print(f"CLIENTS={clients} DURATION={duration}, 2 replicas + 1 redis-server, clients over 3 rooms\n")
print("| window | slow consumers | publishes/s | deliveries/s | server CPU µs/delivery | generator CPU µs/delivery | p50 ms | p99 ms | max ms | lost |")
print("|---|---|---|---|---|---|---|---|---|---|")
for s in settings:
    for r in rates:
        d = json.load(open(f"{work}/{s}-{r}.json"))
        w, _, mode = s.partition("+")
        l = d["latency_ms"]
        print(f"| {w} | {mode or 'disconnect'} | {r} | {d['deliveries_per_second']:.0f} | "
              f"{d['server_cpu_us_per_delivery']:.2f} | {d.get('generator_cpu_us_per_delivery', 0):.2f} | {l['p50']:.2f} | {l['p99']:.2f} | {l['max']:.2f} | {d['lost']} |")
PY
