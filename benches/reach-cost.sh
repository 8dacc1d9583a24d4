#!/usr/bin/env bash
# What the rooms that reach one user or one socket (issue 16) cost per connect: a private
# redis-server and one replica on loopback; `wsgate bench --mode idle` connects,
# authenticates and joins CLIENTS clients (one project room each). Compares a build without
# them (BASE, e.g. main's) with this build in three settings:
#   base      BASE binary (no socket-id room, no user room)
#   sid-only  --user-room-prefix '' (socket-id room only)
#   one-user  every client the same user (one user room for all: the socket-id room plus a
#             membership)
#   per-user  one user per client (`--token 't{i}'`): a user room, and its Redis
#             subscription, per connection
# Prints connects/s, RSS per connection and replica CPU per connect (from /proc), the
# replica's Redis subscriptions and Redis's memory per user room (INFO used_memory). Both
# Redis figures are read once the bench has closed its clients, while the replica is still
# unsubscribing: the channel count is a lower bound and the bytes an approximation.
#
#   BASE=/tmp/wsgate-main benches/reach-cost.sh     # release build of this tree, CLIENTS=5000
#   BIN=target/release/wsgate BASE=... CLIENTS=10000 ROUNDS=2 benches/reach-cost.sh
#
# A benchmark, not a test: the ratios within one round are the figures to keep.
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${CLIENTS:-5000}
ROUNDS=${ROUNDS:-1}
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet
  BIN=target/release/wsgate
fi
BASE=${BASE:?BASE=<wsgate binary without user/socket-id rooms>}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
free_port() { python3 -c '
import socket
while True:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]
    if p < 55000: print(p); break'; }
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
rport=$(free_port)
work=$(mktemp -d)
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --loglevel warning >/dev/null &
rpid=$!
gpid=
trap 'kill $rpid $gpid 2>/dev/null || true; rm -rf "$work"' EXIT
sleep 0.3
python3 - "$CLIENTS" "$work" <<'PY'
import json, sys
n, work = int(sys.argv[1]), sys.argv[2]
tokens = {"bench-token": "bench-user"}
tokens.update({f"t{i}": f"u{i}" for i in range(n)})
perms = {u: ["r3"] for u in tokens.values()}
json.dump(tokens, open(f"{work}/tokens.json", "w"))
json.dump(perms, open(f"{work}/perms.json", "w"))
PY
used() { redis-cli -p "$rport" info memory | awk -F: '/^used_memory:/ {print $2+0}'; }
echo "| round | setting | connects+joins/s (retried) | RSS bytes/connection | replica CPU µs/connect | Redis patterns/channels | Redis bytes per user room |"
echo "|---|---|---|---|---|---|---|"
for round in $(seq 1 "$ROUNDS"); do
  for setting in base sid-only one-user per-user; do
    redis-cli -p "$rport" flushall >/dev/null
    gport=$(free_port)
    bin=$BIN; extra=(); token=bench-token
    case $setting in
      base) bin=$BASE ;;
      sid-only) extra=(--user-room-prefix '') ;;
      per-user) token='t{i}' ;;
    esac
    "$bin" serve --listen "127.0.0.1:$gport" --redis-url "redis://127.0.0.1:$rport" \
      --tokens "$work/tokens.json" --permissions "$work/perms.json" \
      --max-connections 0 "${extra[@]}" >/dev/null 2>"$work/serve.log" &
    gpid=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$gport/readyz" >/dev/null && break; sleep 0.1; done
    m0=$(used); g0=$(cpu $gpid)
    report=$("$BIN" bench --url "http://127.0.0.1:$gport" --mode idle --clients "$CLIENTS" \
      --token "$token" --room r3 --duration 3s --pid $gpid 2>/dev/null) || true
    g1=$(cpu $gpid); m1=$(used)
    subs=$(redis-cli -p "$rport" pubsub numpat)/$(redis-cli -p "$rport" pubsub channels 'socket.io#/#*' | wc -l)
    kill $gpid; wait $gpid 2>/dev/null || true; gpid=
    python3 - "$round" "$setting" "$g0" "$g1" "$m0" "$m1" "$subs" "$report" <<'PY'
import json, sys
rnd, setting, g0, g1, m0, m1, subs, report = sys.argv[1:]
try:
    r = json.loads(report)
except ValueError:
    print(f"| {rnd} | {setting} | bench failed | | | | |"); sys.exit()
joined = max(r["connected"], 1)
tick = 1e6 / 100  # clock ticks of /proc/<pid>/stat
per_room = (int(m1) - int(m0)) / joined if setting == "per-user" else None
print(f"| {rnd} | {setting} | {r['connects_per_second']:.0f} ({r['connect_retried']}) | "
      f"{r['server_rss_bytes_per_connection']:.0f} | "
      f"{(int(g1) - int(g0)) * tick / joined:.0f} | {subs} | "
      f"{'%.0f' % per_room if per_room is not None else '-'} |")
PY
  done
done
