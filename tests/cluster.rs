//! Cluster mode (docs/backplane.md, "Redis Cluster"): two `wsgate serve --redis-mode cluster`
//! replicas on a private 3-primary / 3-replica Redis Cluster started by the test on free
//! loopback ports. Rooms are picked so that one lands on each shard; every client is a
//! member of all of them. Then a primary is SIGKILLed (failover) and a slot is moved to
//! another primary (`MOVED`), and after each fault a publish to every room must again reach
//! the members on every replica.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::client::connect_token;
use support::cluster::RedisCluster;
use support::{Gateway, TestClient, Transport, publish_ok, run_bounded};
use tokio::time::{Instant, sleep};
use wsgate::backplane::{Args, Broadcast, wire};
use wsgate::publish::Publisher;

const TEST_TIMEOUT: Duration = Duration::from_secs(90);
/// How long deliveries may take to come back after a fault.
const RECOVERY: Duration = Duration::from_secs(25);

/// One room name per primary: the first `room_N` whose channel hashes to its slots.
async fn rooms_per_shard(cluster: &RedisCluster) -> Vec<String> {
    let primaries = cluster.primaries().await;
    assert_eq!(primaries.len(), 3, "3 primaries: {primaries:?}");
    let mut rooms = vec![String::new(); 3];
    for i in 0.. {
        let room = format!("room_{i}");
        let slot = cluster.keyslot(&format!("socket.io#/#{room}#")).await;
        let owner = cluster.owner(slot).await;
        let k = primaries.iter().position(|p| *p == owner).unwrap();
        if rooms[k].is_empty() {
            rooms[k] = room;
        }
        if rooms.iter().all(|r| !r.is_empty()) {
            return rooms;
        }
    }
    unreachable!()
}

fn update(room: &str, tag: &str) -> Broadcast {
    Broadcast {
        event: "upd".into(),
        args: Args(vec![wire::from_json(&json!({"room": room, "tag": tag}))]),
        rooms: vec![room.into()],
        except: vec![],
        volatile: false,
        sent_at: None,
        position: None,
        order: None,
    }
}

/// Which (client, room) pairs received `tag` within `within`.
async fn received(
    clients: &mut [TestClient],
    rooms: &[String],
    tag: &str,
    within: Duration,
) -> Vec<(usize, String)> {
    let mut missing = Vec::new();
    for (i, c) in clients.iter_mut().enumerate() {
        let got = c.collect("upd", rooms.len(), within).await;
        let tags: Vec<&Value> = got.iter().filter_map(|a| a.first()).collect();
        for r in rooms {
            if !tags.contains(&&json!({"room": r, "tag": tag})) {
                missing.push((i, r.clone()));
            }
        }
    }
    missing
}

/// Publishes a round (a new tag) to every room until one round reaches every member;
/// returns how long it took. Panics after [`RECOVERY`].
async fn until_delivered(
    cluster: &RedisCluster,
    publisher: &Publisher,
    clients: &mut [TestClient],
    rooms: &[String],
    what: &str,
) -> Duration {
    let start = Instant::now();
    for round in 0.. {
        let tag = format!("{what}-{round}");
        for r in rooms {
            // A publish may fail while the cluster is failing over: the next round retries.
            let _ = publisher.publish(&update(r, &tag)).await;
        }
        let missing = received(clients, rooms, &tag, Duration::from_millis(700)).await;
        if missing.is_empty() {
            return start.elapsed();
        }
        if start.elapsed() >= RECOVERY {
            let mut state = String::new();
            for p in cluster.live_ports() {
                let nodes = cluster.command_on(p, &["CLUSTER", "NODES"]).await;
                let chans = cluster.command_on(p, &["PUBSUB", "SHARDCHANNELS"]).await;
                let clients = cluster.command_on(p, &["CLIENT", "LIST"]).await;
                state.push_str(&format!(
                    "node {p}: shard channels {:?}\n{:?}\n{:?}\n",
                    chans.as_strings(),
                    nodes,
                    clients
                ));
            }
            panic!("{what}: after {RECOVERY:?} still missing (client, room): {missing:?}\n{state}");
        }
        for c in clients.iter_mut() {
            c.drain();
        }
        sleep(Duration::from_millis(100)).await;
    }
    unreachable!()
}

async fn metric(g: &Gateway, name: &str) -> f64 {
    let (_, body) = g.get("/metrics").await.expect("GET /metrics");
    body.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_rooms_survive_failover_and_slot_migration() {
    run_bounded(TEST_TIMEOUT, async {
        let t0 = Instant::now();
        let mut cluster = RedisCluster::start().await;
        eprintln!("cluster up in {:?}", t0.elapsed());
        let rooms = rooms_per_shard(&cluster).await;
        let perms =
            std::env::temp_dir().join(format!("wsgate-cluster-perms-{}.json", std::process::id()));
        std::fs::write(&perms, json!({ "user_2": rooms }).to_string()).unwrap();
        let seeds = cluster.seeds();
        let perms_arg = perms.to_string_lossy().into_owned();
        let args = [
            "--redis-mode",
            "cluster",
            "--redis-url",
            &seeds,
            "--permissions",
            &perms_arg,
        ];
        let mut replicas = Vec::new();
        for i in 0..2 {
            replicas.push(Gateway::start_named(&format!("replica-{i}"), &args).await);
        }
        for g in &replicas {
            g.wait_status("/readyz", 200, Duration::from_secs(15)).await;
        }
        let mut clients = Vec::new();
        for (i, g) in replicas.iter().enumerate() {
            let mut c = connect_token(&g.url(), Transport::Websocket, "valid-token-2").await;
            c.label = format!("replica-{i}");
            for r in &rooms {
                c.join(r).await;
            }
            clients.push(c);
        }

        // `wsgate publish` in cluster mode reaches every member on every replica at once.
        for r in &rooms {
            let data = json!({"room": r, "tag": "cli"}).to_string();
            publish_ok(&[
                "--redis-mode",
                "cluster",
                "--redis-url",
                &seeds,
                "--room",
                r,
                "--event",
                "upd",
                "--data",
                &data,
            ])
            .await;
        }
        let missing = received(&mut clients, &rooms, "cli", Duration::from_secs(5)).await;
        assert!(missing.is_empty(), "before any fault, missing {missing:?}");

        // Failover: SIGKILL the primary of the first room's shard.
        let publisher = Publisher::cluster(&seeds).unwrap();
        until_delivered(&cluster, &publisher, &mut clients, &rooms, "warm").await;
        let slot = cluster.keyslot(&format!("socket.io#/#{}#", rooms[0])).await;
        let victim = cluster.owner(slot).await;
        let killed_at = Instant::now();
        cluster.kill(victim).await;
        cluster.wait_ok(Duration::from_secs(20)).await;
        eprintln!("failover of {victim} done in {:?}", killed_at.elapsed());
        let took = until_delivered(&cluster, &publisher, &mut clients, &rooms, "failover").await;
        eprintln!(
            "deliveries on every shard back {:?} after the kill",
            killed_at.elapsed()
        );
        let _ = took;
        for g in &replicas {
            g.wait_status("/readyz", 200, Duration::from_secs(10)).await;
        }

        // Slot migration: move the second room's slot (no keys in it) to another primary.
        let slot = cluster.keyslot(&format!("socket.io#/#{}#", rooms[1])).await;
        let source = cluster.owner(slot).await;
        let target = *cluster
            .primaries()
            .await
            .iter()
            .find(|p| **p != source)
            .unwrap();
        let (sid, tid) = (cluster.node_id(source).await, cluster.node_id(target).await);
        let s = slot.to_string();
        cluster
            .command_on(target, &["CLUSTER", "SETSLOT", &s, "IMPORTING", &sid])
            .await;
        cluster
            .command_on(source, &["CLUSTER", "SETSLOT", &s, "MIGRATING", &tid])
            .await;
        cluster
            .command_on(target, &["CLUSTER", "SETSLOT", &s, "NODE", &tid])
            .await;
        cluster
            .command_on(source, &["CLUSTER", "SETSLOT", &s, "NODE", &tid])
            .await;
        let moved_at = Instant::now();
        until_delivered(&cluster, &publisher, &mut clients, &rooms, "migrated").await;
        eprintln!(
            "deliveries back {:?} after the slot moved",
            moved_at.elapsed()
        );
        for g in &replicas {
            assert!(
                metric(g, "wsgate_backplane_resubscribes_total").await >= 1.0,
                "{}: the moved slot's channel was not counted as re-subscribed",
                g.name
            );
        }

        // And one clean round: every publish of it arrives, none twice.
        for r in &rooms {
            publisher.publish(&update(r, "final")).await.unwrap();
        }
        let missing = received(&mut clients, &rooms, "final", Duration::from_secs(5)).await;
        assert!(missing.is_empty(), "final round missing {missing:?}");
        for c in &mut clients {
            let extra = c.events_during(Duration::from_millis(300)).await;
            assert!(
                extra.iter().all(|(e, _)| e != "upd"),
                "{}: duplicates {extra:?}",
                c.label
            );
        }
        // Revocation travels by classic PUBLISH, which the cluster forwards to every node:
        // every replica takes the user's sockets out of the room and tells them.
        support::revoke_ok(&[
            "--redis-mode",
            "cluster",
            "--redis-url",
            &seeds,
            "--user",
            "user_2",
            "--project",
            &rooms[2],
        ])
        .await;
        for c in &mut clients {
            let (ev, _) = c
                .wait_for_event("exception", Duration::from_secs(5))
                .await
                .unwrap_or_else(|| panic!("{}: no revocation notice", c.label));
            assert!(ev[0].to_string().contains(&rooms[2]), "{}: {ev:?}", c.label);
        }
        for g in &mut replicas {
            g.assert_running();
        }
        let _ = std::fs::remove_file(&perms);
        eprintln!("cluster test total {:?}", t0.elapsed());
    })
    .await;
}
