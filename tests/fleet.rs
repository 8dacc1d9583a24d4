//! Fleet tests (docs/backplane.md): several `wsgate serve --redis-url` replicas sharing a private
//! `redis-server` (started by the harness on a free port; the Redis on 6379 is never used),
//! Socket.IO clients on every replica, and updates published with `wsgate publish` or
//! directly in the `@socket.io/redis-emitter` wire format.

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use support::client::connect_token;
use support::redis::{
    ALL_CHANNEL, RedisServer, emitter_channel, emitter_message, room_channel, rooms_of,
};
use support::{Gateway, TestClient, Transport, publish_ok, run_bounded, run_publish};
use tokio::time::{Instant, sleep};
use wsgate::backplane::{Args, Broadcast, wire};

const FLEET_TIMEOUT: Duration = Duration::from_secs(120);
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// After the expected messages arrived, how long to keep listening for extra ones.
const SETTLE: Duration = Duration::from_millis(500);

struct Fleet {
    redis: RedisServer,
    replicas: Vec<Gateway>,
}

impl Fleet {
    async fn start(n: usize) -> Fleet {
        let redis = RedisServer::start().await;
        let url = redis.url();
        let mut replicas = Vec::new();
        for i in 0..n {
            replicas
                .push(Gateway::start_named(&format!("replica-{i}"), &["--redis-url", &url]).await);
        }
        for r in &replicas {
            r.wait_status("/readyz", 200, Duration::from_secs(15)).await;
        }
        // Every replica listens on the broadcast channel.
        redis
            .wait_numsub_at_least(ALL_CHANNEL, n as i64, Duration::from_secs(10))
            .await;
        Fleet { redis, replicas }
    }

    fn assert_all_running(&mut self) {
        for r in &mut self.replicas {
            r.assert_running();
        }
    }
}

struct Member {
    client: TestClient,
    replica: usize,
    rooms: Vec<&'static str>,
    name: String,
}

impl Member {
    fn in_any(&self, rooms: &[&str]) -> bool {
        self.rooms.iter().any(|r| rooms.contains(r))
    }
}

/// Connects `token` on replica `replica` and joins `rooms`.
async fn member(
    fleet: &Fleet,
    replica: usize,
    t: Transport,
    token: &str,
    rooms: &[&'static str],
) -> Member {
    let mut client = connect_token(&fleet.replicas[replica].url(), t, token).await;
    for r in rooms {
        client.join(r).await;
    }
    let name = format!("replica-{replica}/{t:?}/{token}/{rooms:?}");
    client.label = name.clone();
    Member {
        client,
        replica,
        rooms: rooms.to_vec(),
        name,
    }
}

/// On every replica: user_1 [project_one] (websocket), user_2 [project_two, project_three]
/// (polling), user_3 [project_three] (websocket), user_2 [project_one, project_two]
/// (polling), user_2 in no room (websocket).
async fn populate(fleet: &Fleet) -> Vec<Member> {
    let mut out = Vec::new();
    for i in 0..fleet.replicas.len() {
        out.push(
            member(
                fleet,
                i,
                Transport::Websocket,
                "valid-token-1",
                &["project_one"],
            )
            .await,
        );
        out.push(
            member(
                fleet,
                i,
                Transport::Polling,
                "valid-token-2",
                &["project_two", "project_three"],
            )
            .await,
        );
        out.push(
            member(
                fleet,
                i,
                Transport::Websocket,
                "valid-token-3",
                &["project_three"],
            )
            .await,
        );
        out.push(
            member(
                fleet,
                i,
                Transport::Polling,
                "valid-token-2",
                &["project_one", "project_two"],
            )
            .await,
        );
        out.push(member(fleet, i, Transport::Websocket, "valid-token-2", &[]).await);
    }
    // Wait until every replica with a member in a room listens on that room's channel.
    let n = fleet.replicas.len() as i64;
    for room in ["project_one", "project_two", "project_three"] {
        fleet
            .redis
            .wait_numsub_at_least(&room_channel(room), n, Duration::from_secs(10))
            .await;
    }
    out
}

/// Checks that exactly the members selected by `expected` get `chat(data)` exactly once,
/// and that nobody gets anything else.
async fn expect_delivery(members: &mut [Member], data: &Value, expected: impl Fn(&Member) -> bool) {
    expect_event(members, "chat", data, expected).await
}

/// Checks that exactly the members selected by `expected` get `event(data)` exactly once,
/// and that nobody gets anything else.
async fn expect_event(
    members: &mut [Member],
    event: &str,
    data: &Value,
    expected: impl Fn(&Member) -> bool,
) {
    for m in members.iter_mut() {
        if expected(m) {
            let got = m.client.collect(event, 1, DELIVERY_TIMEOUT).await;
            assert_eq!(
                got,
                vec![vec![data.clone()]],
                "{}: expected {event} {data} once",
                m.name
            );
        }
    }
    sleep(SETTLE).await;
    for m in members.iter_mut() {
        let extra = m.client.drain();
        assert!(
            extra.is_empty(),
            "{} (expected: {}): unexpected events after {event} {data}: {extra:?}",
            m.name,
            expected(m)
        );
    }
}

// ---------------------------------------------------------------------------------------

/// `emitter.to("project_one").emit("update", {x: 1})` as `@socket.io/redis-emitter` writes it
/// (the example of docs/backplane.md).
const EMITTER_EXAMPLE_HEX: &str = "93a7656d697474657283a47479706502a46461746192a675706461746581a17801a36e7370a12f83a5726f6f6d7391ab70726f6a6563745f6f6e65a5666c61677380a665786365707490";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_sends_the_emitter_bytes_of_the_example_and_replicas_deliver_them() {
    run_bounded(FLEET_TIMEOUT, async {
        let mut fleet = Fleet::start(2).await;
        let mut members = Vec::new();
        for i in 0..fleet.replicas.len() {
            let t = Transport::Websocket;
            members.push(member(&fleet, i, t, "valid-token-1", &["project_one"]).await);
            members.push(member(&fleet, i, t, "valid-token-3", &["project_three"]).await);
        }
        fleet
            .redis
            .wait_numsub_at_least(&room_channel("project_one"), 2, Duration::from_secs(10))
            .await;
        // Every channel the publish could use, so a wrong one is seen rather than missed.
        let redis_client = redis::Client::open(fleet.redis.url()).unwrap();
        let mut pubsub = redis_client.get_async_pubsub().await.unwrap();
        pubsub.psubscribe("socket.io*").await.unwrap();

        let publisher = wsgate::publish::Publisher::new(&fleet.redis.url()).unwrap();
        let update = Broadcast {
            event: "update".into(),
            args: Args(vec![wire::from_json(&json!({"x": 1}))]),
            rooms: vec!["project_one".into()],
            ..Broadcast::default()
        };
        publisher.publish(&update).await.unwrap();

        let msg = tokio::time::timeout(DELIVERY_TIMEOUT, pubsub.on_message().next())
            .await
            .expect("the publish reached Redis")
            .expect("pub/sub stream open");
        assert_eq!(msg.get_channel_name(), room_channel("project_one"));
        let hex: String = msg
            .get_payload_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, EMITTER_EXAMPLE_HEX);

        expect_event(&mut members, "update", &json!({"x": 1}), |m| {
            m.in_any(&["project_one"])
        })
        .await;
        fleet.assert_all_running();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_room_reaches_exactly_members_on_every_replica_once_in_order() {
    run_bounded(FLEET_TIMEOUT, async {
        let mut fleet = Fleet::start(3).await;
        let mut members = populate(&fleet).await;
        let url = fleet.redis.url();
        let in_one = |m: &Member| m.in_any(&["project_one"]);

        // One publish with the CLI.
        let data = json!({"n": "single"});
        publish_ok(&[
            "--redis-url",
            &url,
            "--room",
            "project_one",
            "--event",
            "chat",
            "--data",
            &data.to_string(),
        ])
        .await;
        expect_delivery(&mut members, &data, in_one).await;

        // 200 numbered messages back to back (pipelined on one Redis connection), in the
        // emitter wire format: every member gets all of them, once, in order.
        let msgs: Vec<(String, Vec<u8>)> = (0..200)
            .map(|i| {
                (
                    emitter_channel(&["project_one"]),
                    emitter_message("chat", &[json!({ "seq": i })], &["project_one"], &[]),
                )
            })
            .collect();
        fleet.redis.publish_many(&msgs).await;
        for m in members.iter_mut().filter(|m| in_one(m)) {
            let got = m.client.collect("chat", 200, Duration::from_secs(20)).await;
            let seqs: Vec<i64> = got
                .iter()
                .map(|a| match a.as_slice() {
                    [v] => v["seq"].as_i64().unwrap_or(-1),
                    _ => -1,
                })
                .collect();
            let want: Vec<i64> = (0..200).collect();
            assert_eq!(
                seqs,
                want,
                "{}: the 200 numbered messages (got {} of them)",
                m.name,
                seqs.len()
            );
        }
        sleep(SETTLE).await;
        for m in members.iter_mut() {
            let extra = m.client.drain();
            assert!(extra.is_empty(), "{}: unexpected events {extra:?}", m.name);
        }

        // 200 publishes by one CLI process.
        let burst = json!({"burst": true});
        publish_ok(&[
            "--redis-url",
            &url,
            "--room",
            "project_one",
            "--event",
            "chat",
            "--data",
            &burst.to_string(),
            "--every",
            "0ms",
            "--count",
            "200",
        ])
        .await;
        for m in members.iter_mut().filter(|m| in_one(m)) {
            let got = m.client.collect("chat", 200, Duration::from_secs(20)).await;
            assert_eq!(
                got.len(),
                200,
                "{}: --count 200 delivered {}",
                m.name,
                got.len()
            );
            assert!(
                got.iter().all(|a| a == &vec![burst.clone()]),
                "{}: burst payloads differ",
                m.name
            );
        }
        sleep(SETTLE).await;
        for m in members.iter_mut() {
            let extra = m.client.drain();
            assert!(extra.is_empty(), "{}: unexpected events {extra:?}", m.name);
        }

        let per_replica: Vec<usize> = (0..3)
            .map(|r| {
                members
                    .iter()
                    .filter(|m| m.replica == r && in_one(m))
                    .count()
            })
            .collect();
        assert_eq!(per_replica, vec![2, 2, 2]);
        fleet.assert_all_running();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_broadcast_reaches_every_client_on_every_replica() {
    run_bounded(FLEET_TIMEOUT, async {
        let mut fleet = Fleet::start(3).await;
        let mut members = populate(&fleet).await;
        let url = fleet.redis.url();

        // No --room: everyone, including clients in no room.
        let data = json!({"to": "all"});
        publish_ok(&[
            "--redis-url",
            &url,
            "--event",
            "chat",
            "--data",
            &data.to_string(),
        ])
        .await;
        expect_delivery(&mut members, &data, |_| true).await;

        // Broadcast except one room.
        let data = json!({"to": "all but project_three"});
        publish_ok(&[
            "--redis-url",
            &url,
            "--except",
            "project_three",
            "--event",
            "chat",
            "--data",
            &data.to_string(),
        ])
        .await;
        expect_delivery(&mut members, &data, |m| !m.in_any(&["project_three"])).await;
        fleet.assert_all_running();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_several_rooms_reaches_each_member_once() {
    run_bounded(FLEET_TIMEOUT, async {
        let mut fleet = Fleet::start(3).await;
        let mut members = populate(&fleet).await;
        let url = fleet.redis.url();

        let data = json!({"to": ["project_two", "project_three"]});
        publish_ok(&[
            "--redis-url",
            &url,
            "--room",
            "project_two",
            "--room",
            "project_three",
            "--event",
            "chat",
            "--data",
            &data.to_string(),
        ])
        .await;
        // user_2 [project_two, project_three] is in both rooms: once, not twice.
        expect_delivery(&mut members, &data, |m| {
            m.in_any(&["project_two", "project_three"])
        })
        .await;

        // The same through the emitter wire format directly.
        let data = json!({"to": "one and three"});
        let rooms = ["project_one", "project_three"];
        fleet
            .redis
            .publish_raw(
                &emitter_channel(&rooms),
                &emitter_message("chat", std::slice::from_ref(&data), &rooms, &[]),
            )
            .await;
        expect_delivery(&mut members, &data, |m| m.in_any(&rooms)).await;
        fleet.assert_all_running();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_except_excludes_members_of_except_rooms() {
    run_bounded(FLEET_TIMEOUT, async {
        let mut fleet = Fleet::start(3).await;
        let mut members = populate(&fleet).await;
        let url = fleet.redis.url();

        let data = json!({"case": "one except two"});
        publish_ok(&[
            "--redis-url",
            &url,
            "--room",
            "project_one",
            "--except",
            "project_two",
            "--event",
            "chat",
            "--data",
            &data.to_string(),
        ])
        .await;
        expect_delivery(&mut members, &data, |m| {
            m.in_any(&["project_one"]) && !m.in_any(&["project_two"])
        })
        .await;

        let data = json!({"case": "two+three except three"});
        publish_ok(&[
            "--redis-url",
            &url,
            "--room",
            "project_two",
            "--room",
            "project_three",
            "--except",
            "project_three",
            "--event",
            "chat",
            "--data",
            &data.to_string(),
        ])
        .await;
        expect_delivery(&mut members, &data, |m| {
            m.in_any(&["project_two", "project_three"]) && !m.in_any(&["project_three"])
        })
        .await;
        fleet.assert_all_running();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_fails_when_redis_unreachable() {
    run_bounded(FLEET_TIMEOUT, async {
        let port = support::free_port();
        let url = format!("redis://127.0.0.1:{port}");
        let out = run_publish(&["--redis-url", &url, "--room", "project_one", "--data", "{}"])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!out.success(), "publish to a dead Redis exited 0: {out:?}");
        assert!(
            !out.stderr.trim().is_empty(),
            "no error message on stderr: {out:?}"
        );
    })
    .await;
}

/// Waits until `c` gets `chat(data)`, skipping other chats (probes); panics after `within`.
async fn wait_chat(c: &mut TestClient, data: &Value, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match c.next_event_within(remaining).await {
            Some((e, args)) if e == "chat" && args == vec![data.clone()] => return,
            Some(_) => {}
            None => panic!("{}: no chat {data} within {within:?}", c.label),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_keeps_clients_and_recovers() {
    run_bounded(FLEET_TIMEOUT, async {
        let mut fleet = Fleet::start(3).await;
        let url = fleet.redis.url();
        let mut members = Vec::new();
        for i in 0..3 {
            let t = if i % 2 == 0 {
                Transport::Websocket
            } else {
                Transport::Polling
            };
            members.push(member(&fleet, i, t, "valid-token-1", &["project_one"]).await);
        }
        fleet
            .redis
            .wait_numsub_at_least(&room_channel("project_one"), 3, Duration::from_secs(10))
            .await;
        let data = json!({"phase": "before"});
        publish_ok(&[
            "--redis-url",
            &url,
            "--room",
            "project_one",
            "--data",
            &data.to_string(),
        ])
        .await;
        expect_delivery(&mut members, &data, |_| true).await;

        // Redis goes away.
        fleet.redis.kill().await;
        for r in &fleet.replicas {
            r.wait_status("/readyz", 503, Duration::from_secs(10)).await;
            let (s, _) = r
                .get("/healthz")
                .await
                .expect("GET /healthz while Redis is down");
            assert_eq!(s, 200, "{}: /healthz while Redis is down", r.name);
        }
        fleet.assert_all_running();
        // Publishing now fails loudly.
        let out = run_publish(&["--redis-url", &url, "--room", "project_one", "--data", "{}"])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!out.success(), "publish with Redis down exited 0: {out:?}");
        // Clients stay connected and served.
        for m in &mut members {
            let ack = m
                .client
                .emit_ack("message", vec![json!("still there?")])
                .await;
            assert_eq!(ack, vec![json!("Hello world!")], "{}", m.name);
            let problems = m.client.lifecycle_problems();
            assert!(problems.is_empty(), "{}: {problems:?}", m.name);
        }

        // Redis comes back on the same port.
        fleet.redis.restart().await;
        let restarted = Instant::now();

        // (a) Delivery resumes on every replica within 5 s of the restart: publish a fresh
        // probe every 200 ms until every member got one.
        let mut got_probe = vec![false; members.len()];
        let mut k = 0;
        while got_probe.iter().any(|g| !g) {
            assert!(
                restarted.elapsed() < Duration::from_secs(5),
                "after the Redis restart, members {:?} got no update within 5 s; \
                 subscribers of {}: {}; channels: {:?}",
                members
                    .iter()
                    .zip(&got_probe)
                    .filter(|(_, g)| !**g)
                    .map(|(m, _)| m.name.clone())
                    .collect::<Vec<_>>(),
                room_channel("project_one"),
                fleet.redis.numsub(&room_channel("project_one")).await,
                fleet.redis.pubsub_channels().await
            );
            fleet
                .redis
                .publish_raw(
                    &room_channel("project_one"),
                    &emitter_message("chat", &[json!({ "probe": k })], &["project_one"], &[]),
                )
                .await;
            k += 1;
            sleep(Duration::from_millis(200)).await;
            for (m, g) in members.iter_mut().zip(got_probe.iter_mut()) {
                if m.client.drain().iter().any(|(e, _)| e == "chat") {
                    *g = true;
                }
            }
        }

        // (b) Once every replica reports ready again, one `wsgate publish` reaches every
        // member (ready means the subscriptions are back).
        for r in &fleet.replicas {
            r.wait_status("/readyz", 200, Duration::from_secs(10)).await;
        }
        let data = json!({"phase": "after restart"});
        publish_ok(&[
            "--redis-url",
            &url,
            "--room",
            "project_one",
            "--data",
            &data.to_string(),
        ])
        .await;
        for m in &mut members {
            wait_chat(&mut m.client, &data, Duration::from_secs(5)).await;
        }
        for m in &mut members {
            let problems = m.client.lifecycle_problems();
            assert!(problems.is_empty(), "{}: {problems:?}", m.name);
        }
        fleet.assert_all_running();
    })
    .await;
}

/// `n` join/leave cycles of `project_one`, each step acknowledged.
async fn cycles(c: &TestClient, n: usize) {
    let joined = vec![json!("You have joined project_one!")];
    let left = vec![json!("You have left project_one!")];
    let p = vec![json!({"projectId": "project_one"})];
    for i in 0..n {
        assert_eq!(
            c.emit_ack("join_project", p.clone()).await,
            joined,
            "{} cycle {i}",
            c.label
        );
        assert_eq!(
            c.emit_ack("leave_project", p.clone()).await,
            left,
            "{} cycle {i}",
            c.label
        );
    }
}

async fn wait_room_channel(redis: &RedisServer, room: &str, present: bool, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let channels = redis.pubsub_channels().await;
        if rooms_of(&channels).iter().any(|r| r == room) == present {
            return;
        }
        if Instant::now() >= deadline {
            panic!(
                "room channel {} should be {} after {within:?}; PUBSUB CHANNELS = {channels:?}",
                room_channel(room),
                if present { "present" } else { "absent" }
            );
        }
        sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_leave_cycles_leave_no_stale_subscription() {
    run_bounded(Duration::from_secs(240), async {
        let mut fleet = Fleet::start(2).await;
        let url0 = fleet.replicas[0].url();
        let url1 = fleet.replicas[1].url();
        let mut a1 = connect_token(&url0, Transport::Websocket, "valid-token-1").await;
        let mut a2 = connect_token(&url0, Transport::Polling, "valid-token-2").await;
        let mut b = connect_token(&url1, Transport::Polling, "valid-token-1").await;
        let mut keeper = connect_token(&url1, Transport::Websocket, "valid-token-2").await;
        keeper.join("project_two").await;
        wait_room_channel(&fleet.redis, "project_two", true, Duration::from_secs(5)).await;

        // Two sockets racing on one replica, one on the other.
        tokio::join!(cycles(&a1, 1000), cycles(&a2, 1000), cycles(&b, 1000));

        // Nobody is in project_one any more: its channel is gone; project_two's stays.
        wait_room_channel(&fleet.redis, "project_one", false, Duration::from_secs(3)).await;
        let channels = fleet.redis.pubsub_channels().await;
        let rooms = rooms_of(&channels);
        assert!(
            rooms.iter().any(|r| r == "project_two"),
            "project_two still has a member; PUBSUB CHANNELS = {channels:?}"
        );
        assert!(
            !rooms
                .iter()
                .any(|r| r == "project_one" || r == "project_three"),
            "stale room channel; PUBSUB CHANNELS = {channels:?}"
        );
        for c in [&mut a1, &mut a2, &mut b] {
            c.drain();
        }

        // The subscription bookkeeping still works: two members on replica 0, one leaves
        // (channel kept, the other still gets updates), then the other (channel gone).
        a1.join("project_one").await;
        a2.join("project_one").await;
        wait_room_channel(&fleet.redis, "project_one", true, Duration::from_secs(3)).await;
        a1.leave("project_one").await;
        sleep(Duration::from_millis(300)).await;
        wait_room_channel(&fleet.redis, "project_one", true, Duration::from_secs(1)).await;
        let data = json!({"after": "cycles"});
        fleet
            .redis
            .publish_raw(
                &room_channel("project_one"),
                &emitter_message("chat", std::slice::from_ref(&data), &["project_one"], &[]),
            )
            .await;
        assert_eq!(
            a2.collect("chat", 1, DELIVERY_TIMEOUT).await,
            vec![vec![data.clone()]],
            "remaining member on replica 0"
        );
        a1.assert_no_event(SETTLE).await;
        a2.leave("project_one").await;
        wait_room_channel(&fleet.redis, "project_one", false, Duration::from_secs(3)).await;

        // Disconnecting also releases the subscription.
        a1.join("project_one").await;
        b.join("project_one").await;
        fleet
            .redis
            .wait_numsub_at_least(&room_channel("project_one"), 2, Duration::from_secs(3))
            .await;
        a1.disconnect().await;
        b.disconnect().await;
        wait_room_channel(&fleet.redis, "project_one", false, Duration::from_secs(3)).await;
        keeper.disconnect().await;
        wait_room_channel(&fleet.redis, "project_two", false, Duration::from_secs(3)).await;
        a2.disconnect().await;
        fleet.assert_all_running();
    })
    .await;
}
