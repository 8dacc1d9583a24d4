#!/usr/bin/env python3
"""Writes the report of benches/cluster.sh (stdlib only).

Usage: cluster_report.py WORKDIR OUT DURATION NAME:CLIENTS:ROOMS:RATE...
Reads, per scenario, WORKDIR/cluster-NAME-{single,cluster}.json (wsgate bench reports) and
WORKDIR/cluster-NAME-{single,cluster}.redis.txt (per Redis process: port, CPU ticks
before/after, INFO deltas as k=v lists), and WORKDIR/cluster-slots.txt, cluster-room-slots.txt.
"""
import datetime
import json
import os
import platform
import subprocess
import sys

work, out, duration = sys.argv[1:4]
scenarios = [x.split(":") for x in sys.argv[4:]]
TCK = os.sysconf("SC_CLK_TCK")


def load(label):
    report = json.load(open(f"{work}/cluster-{label}.json"))
    redis = []
    for line in open(f"{work}/cluster-{label}.redis.txt"):
        f = line.split()
        port, c0, c1 = f[0], int(f[1]), int(f[2])
        kv = lambda s: {k: int(v) for k, _, v in (x.partition("=") for x in s.split(",") if x)}
        b, a = kv(f[3]), kv(f[4])
        d = lambda k: a.get(k, 0) - b.get(k, 0)
        redis.append({
            "port": port,
            "cpu_s": (c1 - c0) / TCK,
            "spublish": d("spublish"),
            "publish": d("publish"),
            "commands": d("commands"),
            "net_in_mb": d("net_in") / 1e6,
            "net_out_mb": d("net_out") / 1e6,
        })
    return report, redis


def ver(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.strip().splitlines()[0]
    except Exception:
        return "?"


slots = {
    port: ranges.strip()
    for port, ranges in (line.split(maxsplit=1) for line in open(f"{work}/cluster-slots.txt") if line.strip())
}
room_slots = [line.split() for line in open(f"{work}/cluster-room-slots.txt") if line.strip()]


def owner(slot):
    for port, ranges in slots.items():
        for r in ranges.split():
            lo, _, hi = r.partition("-")
            if int(lo) <= slot <= int(hi or lo):
                return port
    return "?"


rows = [
    ("deliveries received / expected", lambda r: f"{r['deliveries_received']} / {r['deliveries_expected']}"),
    ("lost / duplicates / out of order", lambda r: f"{r['lost']} / {r['duplicates']} / {r['out_of_order']}"),
    ("publishes (failed)", lambda r: f"{r['published']} ({r['publish_failed']})"),
    ("deliveries/s", lambda r: f"{r['deliveries_per_second']:.0f}"),
    ("wsgate CPU per delivery (µs, 3 replicas)", lambda r: f"{r['server_cpu_us_per_delivery']:.2f}"),
    ("latency p50 (ms)", lambda r: f"{r['latency_ms']['p50']:.2f}"),
    ("latency p99 (ms)", lambda r: f"{r['latency_ms']['p99']:.2f}"),
    ("latency max (ms)", lambda r: f"{r['latency_ms']['max']:.2f}"),
    ("wsgate RSS after run (MB, 3 replicas)", lambda r: f"{r['server_rss_bytes'] / 1e6:.1f}"),
]


def redis_total(rs):
    return sum(x["cpu_s"] for x in rs)


def per_publish_us(rs, report):
    n = report["published"] or 1
    return redis_total(rs) / n * 1e6


loadavg = open("/proc/loadavg").read().split()[:3]
lines = [
    "# Redis Cluster vs one Redis: measured fleet",
    "",
    f"`benches/cluster.sh` (DURATION={duration}, scenarios {' '.join(sys.argv[4:])}) on "
    f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; {platform.machine()}, "
    f"{os.cpu_count()} cores shared with other work (load average at the end: {' '.join(loadavg)}); "
    f"{ver(['redis-server', '--version'])}.",
    "",
    "Both fleets: 3 wsgate replicas (release build) on loopback, the same generator (`wsgate bench`: "
    "raw WebSocket clients spread round-robin over the replicas, each joining one of the rooms; a paced "
    "publisher round-robin over the rooms). Single: one redis-server, classic pub/sub, emitter format. "
    "Cluster: 3 primaries (no replicas), `--redis-mode cluster`, SPUBLISH/SSUBSCRIBE in the sharded "
    "adapter's format. Everything (generator, 3 replicas, Redis) shares the 2 cores, so latency "
    "includes scheduling delay; compare CPU per delivery and per publish.",
    "",
    "Figures of a run on a loaded, shared 2-core machine: CPU per delivery / per publish are "
    "the comparable figures, latencies are not.",
]
for name_, clients, rooms, rate in scenarios:
    single, single_redis = load(f"{name_}-single")
    cluster, cluster_redis = load(f"{name_}-cluster")
    rooms_on = {}
    for room, slot in room_slots[: int(rooms)]:
        rooms_on.setdefault(owner(int(slot)), []).append(room)
    lines += [
      "",
      f"## {name_}: {clients} clients over {rooms} rooms (~{int(clients) / int(rooms):.0f} members each), "
      f"{rate} publishes/s",
      "",
      "| figure | single Redis | 3-shard cluster |",
      "|---|---|---|",
    ]
    for name, fmt in rows:
        lines.append(f"| {name} | {fmt(single)} | {fmt(cluster)} |")
    lines.append(
        f"| Redis CPU, all processes (s) | {redis_total(single_redis):.2f} | {redis_total(cluster_redis):.2f} |"
    )
    lines.append(
        f"| Redis CPU per published message (µs) | {per_publish_us(single_redis, single):.1f} | "
        f"{per_publish_us(cluster_redis, cluster):.1f} |"
    )
    lines += [
        "",
        "Publish load per shard (deltas over the run, from `INFO commandstats`, `INFO stats` and /proc):",
        "",
        "| shard (port) | slots | rooms on it | SPUBLISH calls | commands | net out (MB) | CPU (s) | CPU per SPUBLISH (µs) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in cluster_redis:
        on = rooms_on.get(r["port"], [])
        per = r["cpu_s"] / r["spublish"] * 1e6 if r["spublish"] else 0
        lines.append(
            f"| {r['port']} | {slots.get(r['port'], '?')} | {len(on)}{' (' + ', '.join(on) + ')' if len(on) <= 6 else ''} | {r['spublish']} | "
            f"{r['commands']} | {r['net_out_mb']:.1f} | {r['cpu_s']:.2f} | {per:.1f} |"
        )
    for r in single_redis:
        per = r["cpu_s"] / r["publish"] * 1e6 if r["publish"] else 0
        lines.append(
            f"| single ({r['port']}) | all | {rooms} | PUBLISH {r['publish']} | {r['commands']} | "
            f"{r['net_out_mb']:.1f} | {r['cpu_s']:.2f} | {per:.1f} |"
        )
    lines += [
        "",
        f"Raw reports: `target/bench/cluster-{name_}-single.json`, `target/bench/cluster-{name_}-cluster.json` "
        f"(feed to `benches/capacity.py` with `--redis-report target/bench/cluster-{name_}-cluster.redis.txt`).",
        "",
    ]
open(out, "w").write("\n".join(lines))
print("\n".join(lines))
