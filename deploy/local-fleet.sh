#!/usr/bin/env bash
# A local fleet for trying wsgate by hand: one redis-server and three replicas.
# Ctrl-C stops everything this script started.
set -euo pipefail
cd "$(dirname "$0")/.."
REDIS_PORT=${REDIS_PORT:-6390}
PORTS=${PORTS:-"3001 3002 3003"}
cargo build --release --quiet
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT INT TERM
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >/dev/null &
pids+=($!)
sleep 0.3
for p in $PORTS; do
  ./target/release/wsgate serve --listen "127.0.0.1:$p" --redis-url "redis://127.0.0.1:$REDIS_PORT" &
  pids+=($!)
done
echo "fleet: redis://127.0.0.1:$REDIS_PORT, replicas on $PORTS (Ctrl-C stops)"
wait
