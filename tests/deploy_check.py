"""Checks that deploy/ and k8s/ match what the wsgate binary really serves.

Run by tests/deploy.sh with the venv's Python (PyYAML comes with kubernetes-validate):
  deploy_check.py WSGATE_BIN RENDERED_K8S_YAML

- the Deployment's container port, the Service's target port, the ServiceMonitor's port
  and path, the Dockerfile's EXPOSE and HEALTHCHECK all name the one HTTP port of
  WSGATE_LISTEN in the ConfigMap;
- a wsgate started with the ConfigMap's environment (Redis and token file swapped for
  local stand-ins, port 0) accepts every value and answers 200 on the probe paths,
  the ServiceMonitor path and `wsgate healthcheck`;
- terminationGracePeriodSeconds covers the preStop sleep plus WSGATE_DRAIN_DEADLINE, and
  the readiness probe notices a drain well inside the drain window;
- every metric the Grafana dashboard and the alert rules query is one wsgate exports,
  and every dashboard query parses (promtool check rules on a generated rule file).
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def seconds(text):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", text.strip())
    if not m:
        raise ValueError(f"unsupported duration {text!r}")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[m.group(2)]


def main(binary, rendered):
    docs = [d for d in yaml.safe_load_all(open(rendered)) if d]
    by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    cm = by[("ConfigMap", "wsgate-config")]["data"]
    dep = by[("Deployment", "wsgate")]["spec"]["template"]["spec"]
    svc = by[("Service", "wsgate")]["spec"]
    mon = by[("ServiceMonitor", "wsgate")]["spec"]["endpoints"][0]
    c = dep["containers"][0]

    port = int(cm["WSGATE_LISTEN"].rsplit(":", 1)[1])
    named = {p["name"]: p["containerPort"] for p in c["ports"]}
    check(named.get("http") == port, f"containerPort http == WSGATE_LISTEN port {port}")
    for probe in ("livenessProbe", "readinessProbe"):
        p = c[probe]["httpGet"]["port"]
        check(named.get(p, p) == port, f"{probe} port {p} is {port}")
    svc_ports = {p["name"]: p for p in svc["ports"]}
    check(named.get(svc_ports["http"]["targetPort"]) == port, "Service targetPort is the http port")
    check(mon["port"] in svc_ports, "ServiceMonitor port names a Service port")

    docker = open(os.path.join(ROOT, "deploy", "Dockerfile")).read()
    check(f"EXPOSE {port}" in docker, f"Dockerfile EXPOSE {port}")
    check(f"WSGATE_LISTEN=0.0.0.0:{port}" in docker, "Dockerfile WSGATE_LISTEN")
    hc = re.search(r'"--url", "http://127\.0\.0\.1:(\d+)(/[a-z]+)"', docker)
    check(hc is not None and int(hc.group(1)) == port, "Dockerfile HEALTHCHECK port")

    # Drain times.
    window = seconds(cm["WSGATE_DRAIN_WINDOW"])
    deadline = seconds(cm["WSGATE_DRAIN_DEADLINE"])
    pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    grace = dep["terminationGracePeriodSeconds"]
    check(grace >= pre_stop + deadline,
          f"terminationGracePeriodSeconds {grace} >= preStop {pre_stop} + drain deadline {deadline}")
    rp = c["readinessProbe"]
    check(rp["periodSeconds"] * rp.get("failureThreshold", 3) < window,
          "readiness probe notices a drain within the drain window")

    # Start the binary with the ConfigMap's environment.
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSGATE_")}
    env.update(cm)
    env["WSGATE_LISTEN"] = "127.0.0.1:0"
    env.pop("WSGATE_REDIS_URL")  # in-process backplane: ready without a Redis
    tmp = tempfile.mkdtemp()
    tokens = os.path.join(tmp, "tokens.json")
    open(tokens, "w").write(by[("Secret", "wsgate-tokens")]["stringData"]["tokens.json"])
    env["WSGATE_TOKENS"] = tokens
    proc = subprocess.Popen([binary, "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        m = re.match(r"WSGATE_LISTENING=(\S+)", line)
        check(m is not None, "wsgate starts with the ConfigMap's settings")
        if not m:
            return
        base = f"http://{m.group(1)}"
        paths = [c["livenessProbe"]["httpGet"]["path"], c["readinessProbe"]["httpGet"]["path"], mon["path"]]
        if hc:
            paths.append(hc.group(2))
        for path in paths:
            try:
                status = urllib.request.urlopen(base + path, timeout=5).status
            except Exception as e:  # noqa: BLE001 - report any failure
                status = e
            check(status == 200, f"GET {path} answers 200 (got {status})")
        r = subprocess.run([binary, "healthcheck", "--url", base + "/healthz"], timeout=10)
        check(r.returncode == 0, "wsgate healthcheck succeeds against a live replica")
        r = subprocess.run([binary, "healthcheck", "--url", base + "/nope"], timeout=10,
                           stderr=subprocess.DEVNULL)
        check(r.returncode != 0, "wsgate healthcheck fails on a non-200")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=deadline + 5)
        except subprocess.TimeoutExpired:
            proc.kill()
    check(proc.returncode == 0, f"wsgate exits 0 on SIGTERM (got {proc.returncode})")

    # Metric names: dashboard and rules use only exported metrics.
    telemetry = open(os.path.join(ROOT, "src", "telemetry.rs")).read()
    exported = set(re.findall(r'describe_\w+!\(\s*"(wsgate_\w+)"', telemetry, re.S))
    dash = json.load(open(os.path.join(ROOT, "deploy", "grafana-dashboard.json")))
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    rules = yaml.safe_load(open(os.path.join(ROOT, "deploy", "prometheus-rules.yml")))
    exprs_rules = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    used = set()
    for e in exprs + exprs_rules:
        for name in re.findall(r"\b(wsgate_[a-z_]+)", e):
            used.add(re.sub(r"_(bucket|sum|count)$", "", name))
    check(used <= exported, f"queried metrics are exported (unknown: {sorted(used - exported)})")
    check(len(exprs) >= 10, f"dashboard has its panels ({len(exprs)} queries)")
    subst = [(e.replace("$__rate_interval", "5m").replace("$job", ".*").replace("$instance", ".*")) for e in exprs]
    gen = os.path.join(tmp, "dashboard-queries.yml")
    yaml.safe_dump({"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query{i}", "expr": e} for i, e in enumerate(subst)]}]}, open(gen, "w"))
    r = subprocess.run(["promtool", "check", "rules", gen], capture_output=True, text=True)
    check(r.returncode == 0, "every dashboard query parses (promtool check rules)" + ("" if r.returncode == 0 else "\n" + r.stdout + r.stderr))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
    if failures:
        print(f"{len(failures)} deploy check(s) failed", file=sys.stderr)
        sys.exit(1)
