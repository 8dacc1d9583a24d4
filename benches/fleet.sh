#!/usr/bin/env bash
# Side-by-side benchmark, one run on one machine: the NestJS fleet of ../shared/peer
# (2 replicas + its own Redis) and a wsgate fleet (2 replicas + its own Redis), measured by
# the same generator (`wsgate bench`) with the same parameters. Writes BENCHMARKS.md.
#   benches/fleet.sh                 # defaults: 2,000 clients over 3 rooms, 100 publishes/s, 10 s
#   CLIENTS=2000 RATE=200 DURATION=10s benches/fleet.sh
# Only processes this script started are stopped. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${CLIENTS:-2000}
RATE=${RATE:-100}
DURATION=${DURATION:-10s}
OUT=${OUT:-BENCHMARKS.md}
WORK=target/bench
mkdir -p "$WORK"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

cargo build --release --quiet
BIN=target/release/wsgate

bench() { # label urls redis pids...
  local label=$1 urls=$2 redis=$3; shift 3
  local args=()
  IFS=, read -ra us <<<"$urls"; for u in "${us[@]}"; do args+=(--url "$u"); done
  for p in "$@"; do args+=(--pid "$p"); done
  echo "== $label: $CLIENTS clients, $RATE publishes/s for $DURATION" >&2
  "$BIN" bench "${args[@]}" --redis-url "$redis" --clients "$CLIENTS" --rate "$RATE" \
    --duration "$DURATION" --deadline 300s >"$WORK/$label.json"
}

# --- NestJS fleet -------------------------------------------------------------------
PEER=/tmp/wsgate-bench-peer
if [ ! -d "$PEER/node_modules" ]; then
  rm -rf "$PEER" && cp -r ../shared/peer "$PEER"
  (cd "$PEER" && npm ci --no-audit --no-fund --loglevel=error)
fi
peer_env=$(cd "$PEER" && REPLICAS=2 BASE_PORT=3570 REDIS_PORT=6579 CHAT_INTERVAL_MS=0 LOG_LEVEL=quiet ./fleet.sh start)
eval "$peer_env"
trap '(cd "$PEER" && BASE_PORT=3570 ./fleet.sh stop) || true' EXIT
sleep 1
bench nestjs "$GATEWAYS" "$REDIS_URL" ${SERVER_PIDS//,/ }
(cd "$PEER" && BASE_PORT=3570 ./fleet.sh stop)
trap - EXIT

# --- wsgate fleet -------------------------------------------------------------------
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT
redis-server --port 6580 --bind 127.0.0.1 --save "" --appendonly no >/dev/null &
pids+=($!)
sleep 0.3
gw_pids=(); urls=()
for port in 3581 3582; do
  "$BIN" serve --listen "127.0.0.1:$port" --redis-url redis://127.0.0.1:6580 >/dev/null 2>"$WORK/wsgate-$port.log" &
  pids+=($!); gw_pids+=($!); urls+=("http://127.0.0.1:$port")
done
for port in 3581 3582; do
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
done
bench wsgate "$(IFS=,; echo "${urls[*]}")" redis://127.0.0.1:6580 "${gw_pids[@]}"
cleanup
trap - EXIT

python3 - "$WORK/nestjs.json" "$WORK/wsgate.json" "$OUT" "$CLIENTS" "$RATE" "$DURATION" <<'PY'
import json, sys, platform, subprocess, datetime
n, w = (json.load(open(p)) for p in sys.argv[1:3])
out, clients, rate, duration = sys.argv[3:7]
def ver(cmd):
    try: return subprocess.run(cmd, capture_output=True, text=True).stdout.strip().splitlines()[0]
    except Exception: return "?"
rows = [
  ("deliveries received / expected", lambda r: f"{r['deliveries_received']} / {r['deliveries_expected']}", None),
  ("not received 2 s after the last publish", lambda r: r["lost"], None),
  ("deliveries/s", lambda r: f"{r['deliveries_per_second']:.0f}", "deliveries_per_second"),
  ("server CPU per delivery (µs)", lambda r: f"{r['server_cpu_us_per_delivery']:.2f}", "server_cpu_us_per_delivery"),
  ("latency p50 (ms)", lambda r: f"{r['latency_ms']['p50']:.2f}", ("latency_ms", "p50")),
  ("latency p99 (ms)", lambda r: f"{r['latency_ms']['p99']:.2f}", ("latency_ms", "p99")),
  ("latency max (ms)", lambda r: f"{r['latency_ms']['max']:.2f}", ("latency_ms", "max")),
  ("generator CPU per delivery (µs, `wsgate bench` itself)", lambda r: f"{r.get('generator_cpu_us_per_delivery', 0):.2f}", None),
  ("connect+auth+join per second", lambda r: f"{r['connects_per_second']:.0f}", "connects_per_second"),
  ("server RSS after run (MB, both replicas)", lambda r: f"{r['server_rss_bytes']/1e6:.1f}", "server_rss_bytes"),
]
def get(r, k):
    return r[k[0]][k[1]] if isinstance(k, tuple) else r[k]
lines = [
  "## Side by side with the NestJS fleet", "",
  f"Side-by-side run of `benches/fleet.sh` (CLIENTS={clients} RATE={rate} DURATION={duration}) on "
  f"{datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC; {platform.machine()}, {subprocess.run(['nproc'],capture_output=True,text=True).stdout.strip()} cores; "
  f"{ver(['rustc','--version'])}; node {ver(['node','--version'])}; {ver(['redis-server','--version'])}.", "",
  "Each fleet: 2 replicas + 1 redis-server on loopback; clients spread over 3 rooms (≈ clients/3 per room); "
  "the generator is `wsgate bench` (raw WebSocket clients, publisher through Redis in the emitter format). "
  "Server CPU is the replicas' user+system time from /proc over the publish phase (+2 s drain).", "",
  "| figure | NestJS fleet | wsgate fleet | wsgate / NestJS |", "|---|---|---|---|",
]
for name, fmt, key in rows:
    ratio = ""
    if key is not None:
        a, b = get(n, key), get(w, key)
        ratio = f"{b/a:.2f}" if a else ""
    lines.append(f"| {name} | {fmt(n)} | {fmt(w)} | {ratio} |")
lines += ["", "Raw reports: `target/bench/nestjs.json`, `target/bench/wsgate.json`."]
# Only the section between the markers is rewritten; the rest of the file is kept.
begin, end = "<!-- fleet.sh:begin -->", "<!-- fleet.sh:end -->"
section = "\n".join([begin] + lines + [end])
try:
    old = open(out).read()
except FileNotFoundError:
    old = ""
if begin in old and end in old:
    text = old[:old.index(begin)] + section + old[old.index(end) + len(end):]
else:
    text = section + "\n" + old
open(out, "w").write(text)
print("\n".join(lines))
PY
