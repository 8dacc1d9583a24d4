#!/usr/bin/env bash
# Usage: benches/history-cost.sh  (N=20000 publishes per run, WSGATE_BIN=path, MODE=cluster
# for a one-node Redis Cluster holding every slot: the sharded format, SPUBLISH and the
# script's node id); a private redis-server on a free loopback port, one subscriber on the
# room channel.
# Added cost per publish of room history: Redis CPU (/proc/<pid>/stat) and publish latency
# (sequential `wsgate publish`, one round trip each), history off vs on, one subscriber.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${WSGATE_BIN:-target/debug/wsgate}
MODE=${MODE:-standalone}
# Below 55536: a cluster node also listens on its port + 10000.
port=$(python3 -c '
import socket
while True:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]
    if p < 55000: print(p); break')
work=$(mktemp -d)
cluster=(); subscribe=subscribe; mode_args=()
if [ "$MODE" = cluster ]; then
  cluster=(--cluster-enabled yes --cluster-config-file "$work/nodes.conf" --dir "$work")
  subscribe=ssubscribe; mode_args=(--redis-mode cluster)
fi
redis-server --port $port --bind 127.0.0.1 --save "" --appendonly no --loglevel warning "${cluster[@]}" >/dev/null &
rpid=$!
trap 'kill $rpid $spid 2>/dev/null; rm -rf "$work"' EXIT
sleep 0.3
if [ "$MODE" = cluster ]; then
  redis-cli -p $port cluster addslotsrange 0 16383 >/dev/null
  until redis-cli -p $port cluster info | grep -q cluster_state:ok; do sleep 0.1; done
fi
redis-cli -p $port $subscribe 'socket.io#/#r#' >/dev/null &
spid=$!
N=${N:-20000}
data='{"text":"an update of about a hundred bytes, like a typical project change notification","n":12345}'
cpu() { awk '{print $14+$15}' /proc/$rpid/stat; }
for round in 1 2; do
for mode in off on; do
  extra=(); [ $mode = on ] && extra=(--history-size 1000 --history-ttl 10m)
  redis-cli -p $port config resetstat >/dev/null
  c0=$(cpu); s0=$(date +%s.%N)
  "$BIN" publish --redis-url redis://127.0.0.1:$port "${mode_args[@]}" --room r --event update --data "$data" --count $N --every 1us "${extra[@]}"
  s1=$(date +%s.%N); c1=$(cpu)
  stats=$(redis-cli -p $port info commandstats | grep -E "cmdstat_(s?publish|evalsha|eval|xadd|xtrim|hincrby):" | sed 's/\r//' | tr '\n' ' ')
  python3 - "$mode" "$N" "$s0" "$s1" "$c0" "$c1" "$stats" <<'PY'
import sys
mode,n,s0,s1,c0,c1,stats=sys.argv[1],int(sys.argv[2]),float(sys.argv[3]),float(sys.argv[4]),int(sys.argv[5]),int(sys.argv[6]),sys.argv[7]
wall=s1-s0
print(f"history {mode:3}: {n} publishes in {wall:.2f}s = {wall/n*1e6:.0f} us/publish (sequential round trips); redis CPU {(c1-c0)*10/n*1000:.1f} us/publish (/proc ticks)")
print("   ", stats)
PY
done
done
echo "stream length: $(redis-cli -p $port xlen 'wsgate:stream:{socket.io#/#r#}')  memory: $(redis-cli -p $port memory usage 'wsgate:stream:{socket.io#/#r#}') bytes"
