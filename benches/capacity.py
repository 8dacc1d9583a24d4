#!/usr/bin/env python3
"""Capacity model for a wsgate fleet (stdlib only). The formulas are in docs/capacity.md.

  benches/capacity.py --bench target/bench/cluster-cluster.json \
      --redis-report target/bench/cluster-cluster.redis.txt \
      --connections 1000000 --deliveries 500000 --members-per-room 50

Per-delivery CPU comes from a `wsgate bench` fan-out report (`server_cpu_us_per_delivery`),
memory per connection from an idle report (`server_rss_bytes_per_connection`) or
--mem-per-conn-kb, Redis CPU per published message from the per-process deltas that
benches/cluster.sh writes (or --redis-us-per-publish). Prints replicas, shards, headroom and
where the first bottleneck appears as rooms, members per room and publish rate grow.
"""
import argparse
import json
import math
import os


def subscribers(replicas, members):
    """Expected number of replicas with at least one of `members` members of a room, when
    clients land on replicas uniformly at random (a load balancer without stickiness)."""
    return replicas * (1.0 - (1.0 - 1.0 / replicas) ** members)


def redis_us_from_report(path):
    """Redis CPU per published message over a benches/cluster.sh run: every Redis process's
    CPU (idle upkeep and subscription commands included, so an upper bound) over the
    PUBLISH + SPUBLISH calls they served."""
    tck = os.sysconf("SC_CLK_TCK")
    cpu, published = 0.0, 0
    for line in open(path):
        f = line.split()
        cpu += (int(f[2]) - int(f[1])) / tck
        kv = lambda s: {k: int(v) for k, _, v in (x.partition("=") for x in s.split(",") if x)}
        before, after = kv(f[3]), kv(f[4])
        for cmd in ("publish", "spublish"):
            published += after.get(cmd, 0) - before.get(cmd, 0)
    return cpu / max(published, 1) * 1e6


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bench", help="wsgate bench fan-out JSON report")
    p.add_argument("--idle", help="wsgate bench --mode idle JSON report (memory per connection)")
    p.add_argument("--redis-report", help="cluster-*.redis.txt from benches/cluster.sh")
    p.add_argument("--cpu-us-per-delivery", type=float, default=12.4, help="if no --bench (BENCHMARKS.md)")
    p.add_argument("--mem-per-conn-kb", type=float, default=27.0, help="if no --idle (BENCHMARKS.md)")
    p.add_argument("--redis-us-per-publish", type=float, help="Redis CPU per published message at the bench's fan-out")
    p.add_argument("--bench-subscribers", type=float, default=3.0,
                   help="replicas subscribed per room in the bench run (3 replicas, every room on each)")
    p.add_argument("--connections", type=float, default=1_000_000)
    p.add_argument("--deliveries", type=float, default=500_000, help="deliveries (messages to sockets) per second")
    p.add_argument("--members-per-room", type=float, default=50.0, help="mean members of a room a publish targets")
    p.add_argument("--cores-per-replica", type=float, default=2.0)
    p.add_argument("--mem-per-replica-gb", type=float, default=4.0)
    p.add_argument("--target-util", type=float, default=0.6, help="planned CPU/memory use of a replica (headroom)")
    p.add_argument("--redis-util", type=float, default=0.5, help="planned CPU use of a Redis shard (one core)")
    p.add_argument("--base-replica-mb", type=float, default=9.0, help="RSS of an empty replica (measured: ~9 MB)")
    a = p.parse_args()

    bench = json.load(open(a.bench)) if a.bench else None
    cpu_us = bench["server_cpu_us_per_delivery"] if bench else a.cpu_us_per_delivery
    mem_kb = a.mem_per_conn_kb
    if a.idle:
        mem_kb = json.load(open(a.idle))["server_rss_bytes_per_connection"] / 1000
    redis_us = a.redis_us_per_publish
    if redis_us is None and a.redis_report:
        redis_us = redis_us_from_report(a.redis_report)
    if redis_us is None:
        redis_us = 20.0
    # Redis cost of one publish: a fixed part (parse, lookup) plus one write per subscriber.
    # One measured point (k = bench_subscribers) and the assumption a = b split it.
    per_sub_us = redis_us / (1.0 + a.bench_subscribers)
    fixed_us = per_sub_us

    N, D, m = a.connections, a.deliveries, a.members_per_room
    cpu_cores = D * cpu_us / 1e6
    r_cpu = math.ceil(cpu_cores / (a.cores_per_replica * a.target_util))
    mem_gb = N * mem_kb * 1000 / 1e9
    r_mem = math.ceil(N * mem_kb * 1000 / ((a.mem_per_replica_gb * 1e9 - a.base_replica_mb * 1e6) * a.target_util))
    R = max(r_cpu, r_mem, 2)
    P = D / m
    k = subscribers(R, m)
    redis_cost_us = fixed_us + per_sub_us * k
    redis_cores = P * redis_cost_us / 1e6
    S = max(math.ceil(redis_cores / a.redis_util), 1)
    hot_room_max = 1e6 / redis_cost_us  # publishes/s one room (one slot, one shard) can take

    print("inputs")
    print(f"  wsgate CPU per delivery        c_d = {cpu_us:.2f} µs")
    print(f"  memory per connection          m_c = {mem_kb:.1f} KB")
    print(f"  Redis CPU per publish (bench)  r_p = {redis_us:.1f} µs at k={a.bench_subscribers:g} subscribers"
          f" -> a = b = {per_sub_us:.2f} µs")
    print(f"  target N = {N:,.0f} connections, D = {D:,.0f} deliveries/s, m = {m:g} members per room")
    print("replicas")
    print(f"  CPU:    D*c_d = {cpu_cores:.1f} cores -> {r_cpu} replicas of {a.cores_per_replica:g} cores at {a.target_util:.0%}")
    print(f"  memory: N*m_c = {mem_gb:.1f} GB -> {r_mem} replicas of {a.mem_per_replica_gb:g} GB at {a.target_util:.0%}")
    print(f"  R = {R} replicas ({N / R:,.0f} connections each, {D / R:,.0f} deliveries/s each)")
    print(f"  headroom: CPU {1 - cpu_cores / (R * a.cores_per_replica):.0%}, memory "
          f"{1 - (N / R * mem_kb * 1000 + a.base_replica_mb * 1e6) / (a.mem_per_replica_gb * 1e9):.0%}")
    print(f"  one replica lost: {N / R:,.0f} clients reconnect to {R - 1} replicas "
          f"(+{1 / (R - 1):.0%} load each)")
    print("redis")
    print(f"  publishes/s P = D/m = {P:,.0f}; subscribed replicas per room k = R(1-(1-1/R)^m) = {k:.1f}")
    print(f"  messages out of Redis P*k = {P * k:,.0f}/s; CPU P*(a+b*k) = {redis_cores:.2f} cores")
    print(f"  S = {S} shard(s) at {a.redis_util:.0%} of a core (a hot room is one slot: at most "
          f"{hot_room_max:,.0f} publishes/s to one room)")
    print("first bottleneck as one thing grows (others at the target)")
    for mm in [1, 5, 20, 50, 200, 1000]:
        PP = D / mm
        kk = subscribers(R, mm)
        rc = PP * (fixed_us + per_sub_us * kk) / 1e6
        print(f"  m={mm:>5}: P={PP:>9,.0f}/s, k={kk:5.1f}, Redis {rc:5.2f} cores "
              f"({math.ceil(rc / a.redis_util)} shards) vs replicas {cpu_cores:.1f} cores")


if __name__ == "__main__":
    main()
