#!/usr/bin/env bash
# What stock connection-state recovery (--connection-state-recovery) costs per connect:
# a private redis-server and one replica on loopback, history on in both runs, recovery off
# vs on; `wsgate bench --mode idle` connects, authenticates and joins CLIENTS clients (one
# room each). Prints connects/s, replica and Redis CPU per connect (from /proc), and Redis
# memory per stored session (MEMORY USAGE over a sample of session keys).
#
#   benches/recovery-cost.sh                     # release build, CLIENTS=5000, 2 rounds
#   BIN=target/debug/wsgate CLIENTS=2000 benches/recovery-cost.sh
#   MODE=cluster benches/recovery-cost.sh        # a one-node Redis Cluster holding every slot
#
# A benchmark, not a test: figures depend on the machine and on what else runs on it; the
# off/on ratio within one run is the figure to keep. The cost per publish is
# benches/history-cost.sh (recovery adds nothing per publish beyond history).
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${CLIENTS:-5000}
ROUNDS=${ROUNDS:-2}
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet
  BIN=target/release/wsgate
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
# Below 55536: a cluster node also listens on its port + 10000.
free_port() { python3 -c '
import socket
while True:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]
    if p < 55000: print(p); break'; }
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
MODE=${MODE:-standalone}
rport=$(free_port)
work=$(mktemp -d)
cluster=(); mode_args=()
if [ "$MODE" = cluster ]; then
  cluster=(--cluster-enabled yes --cluster-config-file "$work/nodes.conf" --dir "$work")
  mode_args=(--redis-mode cluster)
fi
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --loglevel warning "${cluster[@]}" >/dev/null &
rpid=$!
gpid=
trap 'kill $rpid $gpid 2>/dev/null || true' EXIT
sleep 0.3
if [ "$MODE" = cluster ]; then
  redis-cli -p "$rport" cluster addslotsrange 0 16383 >/dev/null
  until redis-cli -p "$rport" cluster info | grep -q cluster_state:ok; do sleep 0.1; done
fi
echo '{"bench-token": "bench-user"}' >"$work/tokens.json"
rooms=(r0 r1 r2 r3 r4 r5 r6 r7 r8 r9)
python3 -c 'import json,sys; print(json.dumps({"bench-user": sys.argv[1:]}))' "${rooms[@]}" >"$work/perms.json"
echo "| round | recovery | connects+joins/s | replica CPU µs/connect | Redis CPU µs/connect | Redis bytes/session |"
echo "|---|---|---|---|---|---|"
for round in $(seq 1 "$ROUNDS"); do
  for mode in off on; do
    redis-cli -p "$rport" flushall >/dev/null
    gport=$(free_port)
    extra=()
    [ "$mode" = on ] && extra=(--connection-state-recovery 2m)
    "$BIN" serve --listen "127.0.0.1:$gport" --redis-url "redis://127.0.0.1:$rport" "${mode_args[@]}" \
      --tokens "$work/tokens.json" --permissions "$work/perms.json" \
      --history-size 1000 --max-connections 0 "${extra[@]}" >/dev/null 2>"$work/serve.log" &
    gpid=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$gport/readyz" >/dev/null && break; sleep 0.1; done
    sleep 1 # the session task learns Redis's clock
    g0=$(cpu $gpid); r0=$(cpu $rpid)
    out=$("$BIN" bench --url "http://127.0.0.1:$gport" --mode idle --clients "$CLIENTS" \
      --token bench-token --room r3 --duration 1s --pid $gpid 2>&1 | grep -E '^bench: .* joined in') || true
    g1=$(cpu $gpid); r1=$(cpu $rpid)
    mem=-
    if [ "$mode" = on ]; then
      keys=$(redis-cli -p "$rport" --scan --pattern 'wsgate:session:*' | sed -n 1,200p)
      mem=$(for k in $keys; do redis-cli -p "$rport" memory usage "$k"; done |
        awk '{s+=$1;n++} END {if (n) printf "%.0f (%d keys)", s/n, n; else print "none"}')
    fi
    kill $gpid; wait $gpid 2>/dev/null || true; gpid=
    python3 - "$round" "$mode" "$CLIENTS" "$g0" "$g1" "$r0" "$r1" "$out" "$mem" <<'PY'
import re, sys
rnd, mode, n, g0, g1, r0, r1, out, mem = sys.argv[1:]
n = int(n)
tick = 1e6 / 100  # clock ticks of /proc/<pid>/stat, 100 per second
m = re.search(r"\((\d+)/s\)", out)
rate = m.group(1) if m else "?"
m = re.search(r"bench: (\d+) clients joined", out)
joined = int(m.group(1)) if m else n
print(f"| {rnd} | {mode} | {rate} | {(int(g1)-int(g0))*tick/max(joined,1):.0f} | {(int(r1)-int(r0))*tick/max(joined,1):.1f} | {mem} |")
PY
  done
done
rm -rf "$work"
