#!/usr/bin/env bash
# A local fleet on loopback: one redis-server, three wsgate replicas and haproxy in front
# (round robin, health-checked on /readyz, cookie affinity for long-polling).
# Ctrl-C (or SIGTERM) stops everything this script started.
#
#   deploy/local-fleet.sh                      # builds the release binary; LB on :3000
#   WSGATE_BIN=target/debug/wsgate LB_PORT=0 deploy/local-fleet.sh   # as the tests run it
#
# Settings (environment): WSGATE_BIN (skip the build), REDIS_PORT (6390), PORTS
# ("3001 3002 3003"), LB_PORT (3000; 0 = no load balancer), WSGATE_ARGS (extra flags).
# Prints `FLEET_READY lb=URL redis=URL replicas=URL,URL,URL` once every part answers.
set -euo pipefail
cd "$(dirname "$0")/.."
REDIS_PORT=${REDIS_PORT:-6390}
PORTS=${PORTS:-"3001 3002 3003"}
LB_PORT=${LB_PORT:-3000}
if [ -z "${WSGATE_BIN:-}" ]; then
  cargo build --release --quiet
  WSGATE_BIN=target/release/wsgate
fi
work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 0' INT TERM

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
  --loglevel warning >"$work/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

replicas=()
for p in $PORTS; do
  # shellcheck disable=SC2086 # WSGATE_ARGS is a list of flags
  "$WSGATE_BIN" serve --listen "127.0.0.1:$p" --redis-url "redis://127.0.0.1:$REDIS_PORT" \
    ${WSGATE_ARGS:-} >/dev/null &
  pids+=($!)
  replicas+=("http://127.0.0.1:$p")
done
for r in "${replicas[@]}"; do
  for _ in $(seq 100); do curl -fsS "$r/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fsS "$r/readyz" >/dev/null || { echo "replica $r not ready" >&2; exit 1; }
done

lb=""
if [ "$LB_PORT" != 0 ]; then
  {
    cat <<CFG
global
  # Each proxied connection takes two descriptors; stay inside common ulimits.
  maxconn 4096
defaults
  mode http
  timeout connect 2s
  timeout client 70s
  timeout server 70s
  # Websockets stay open for hours; long-polling requests last up to the ping interval.
  timeout tunnel 1h
frontend wsgate
  bind 127.0.0.1:$LB_PORT
  default_backend wsgate
backend wsgate
  balance roundrobin
  # Long-polling: every request of a session must reach the replica holding it.
  cookie WSGATE insert indirect nocache
  # A draining or Redis-less replica gets no new clients.
  option httpchk GET /readyz
  http-check expect status 200
  default-server inter 500ms fall 1 rise 2
CFG
    i=0
    for p in $PORTS; do
      i=$((i + 1))
      echo "  server r$i 127.0.0.1:$p check cookie r$i"
    done
  } >"$work/haproxy.cfg"
  haproxy -f "$work/haproxy.cfg" -db >"$work/haproxy.log" 2>&1 &
  pids+=($!)
  lb="http://127.0.0.1:$LB_PORT"
  for _ in $(seq 50); do curl -fsS "$lb/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fsS "$lb/healthz" >/dev/null || { echo "haproxy not answering:" >&2; cat "$work/haproxy.log" >&2; exit 1; }
fi

echo "FLEET_READY lb=${lb:-none} redis=redis://127.0.0.1:$REDIS_PORT replicas=$(IFS=,; echo "${replicas[*]}")"
wait
