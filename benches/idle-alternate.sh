#!/usr/bin/env bash
# Connect rate of two builds, alternated on one machine so that both see the same load:
# one replica and a private redis-server on loopback, `wsgate bench --mode idle` with
# CLIENTS clients (demo token, one room), ROUNDS times each build. Prints the bench's
# "joined in" line (rate, failed, retried) per run.
#
#   BASE=/tmp/wsgate-main BIN=target/release/wsgate ROUNDS=4 benches/idle-alternate.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${BASE:?BASE=<first wsgate binary>}
BIN=${BIN:-target/release/wsgate}
CLIENTS=${CLIENTS:-10000}
ROUNDS=${ROUNDS:-4}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --loglevel warning >/dev/null &
rpid=$!
gpid=
trap 'kill $rpid $gpid 2>/dev/null || true' EXIT
sleep 0.3
for _ in $(seq "$ROUNDS"); do
  for b in "$BASE" "$BIN"; do
    gport=$(free_port)
    "$b" serve --listen "127.0.0.1:$gport" --redis-url "redis://127.0.0.1:$rport" --max-connections 0 >/dev/null 2>&1 &
    gpid=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$gport/readyz" >/dev/null && break; sleep 0.1; done
    line=$("$BIN" bench --url "http://127.0.0.1:$gport" --mode idle --clients "$CLIENTS" --duration 1s \
      --pid "$gpid" 2>&1 >/dev/null | grep 'joined in') || true
    echo "$b: $line"
    kill "$gpid"; wait "$gpid" 2>/dev/null || true; gpid=
  done
done
