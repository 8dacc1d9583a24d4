//! The Redis a production fleet gets (issue 17): TLS-only servers with a CA the test makes
//! (and mTLS), an ACL user with exactly the README's minimal ACL, a subscriber Redis drops
//! (`CLIENT KILL TYPE pubsub`, a tiny `client-output-buffer-limit pubsub`), a Sentinel
//! failover under 200 joined clients, and settings that cannot work (wrong CA, wrong
//! password, unreachable sentinel): one log line and a 503 `/readyz`, no crash loop.
//!
//! Every server is a private `redis-server` (Debian's, built with TLS) on a free loopback
//! port; timings are printed (run with `--nocapture`), never asserted.

mod support;

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};
use std::time::Duration;

use futures_util::{StreamExt, stream};
use serde_json::json;
use support::client::connect_token;
use support::cluster::RedisCluster;
use support::redis::{ALL_CHANNEL, RedisServer, Resp, emitter_message, room_channel};
use support::tls::TestPki;
use support::{
    Gateway, TestClient, Transport, free_port, poll_until, publish_ok, revoke_ok, run_bounded,
};
use tokio::time::{Instant, sleep};
use wsgate::{
    backplane::{Args, Broadcast},
    config::{RedisConnArgs, RedisModeArg},
    publish::Publisher,
};

const LIMIT: Duration = Duration::from_secs(120);
const READY: Duration = Duration::from_secs(20);
const DELIVERY: Duration = Duration::from_secs(10);
/// The line the subscriber logs once per outage.
const DOWN_LINE: &str = "redis backplane down";

/// The sum of the `/metrics` samples of `name` whose labels contain all `labels`.
async fn metric(gw: &Gateway, name: &str, labels: &[&str]) -> f64 {
    let (_, body) = gw.get("/metrics").await.expect("GET /metrics");
    body.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|lab| l.contains(lab)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn joined(gw: &Gateway, token: &str, room: &str) -> TestClient {
    let mut c = connect_token(&gw.url(), Transport::Websocket, token).await;
    c.join(room).await;
    c
}

async fn expect_chat(c: &mut TestClient, want: &str) {
    let (args, _) = c
        .wait_for_event("chat", DELIVERY)
        .await
        .unwrap_or_else(|| panic!("no chat {want:?} within {DELIVERY:?}"));
    assert_eq!(args, vec![json!(want)]);
}

/// The gateway stays up and not ready for `d`, and has logged the outage exactly once;
/// returns that line.
async fn stays_unready_with_one_line(gw: &mut Gateway, d: Duration) -> String {
    let until = Instant::now() + d;
    while Instant::now() < until {
        let (status, _) = gw.get("/readyz").await.expect("GET /readyz");
        assert_eq!(status, 503, "{}: /readyz", gw.name);
        gw.assert_running();
        sleep(Duration::from_millis(250)).await;
    }
    let tail = gw.stderr_tail();
    let lines: Vec<&str> = tail.lines().filter(|l| l.contains(DOWN_LINE)).collect();
    assert_eq!(
        lines.len(),
        1,
        "{}: one outage line expected:\n{tail}",
        gw.name
    );
    lines[0].to_owned()
}

#[tokio::test]
async fn tls_only_redis_serves_two_replicas_publish_and_revoke() {
    run_bounded(LIMIT, async {
        let pki = TestPki::new();
        let redis = RedisServer::start_tls(|p| pki.redis_args(p, false)).await;
        let url = format!("rediss://127.0.0.1:{}", redis.port);
        let ca = pki.ca.display().to_string();
        let tls = ["--redis-url", &url, "--redis-ca-file", &ca];
        let a = Gateway::start_named("tls-a", &tls).await;
        let b = Gateway::start_named("tls-b", &tls).await;
        for g in [&a, &b] {
            g.wait_status("/readyz", 200, READY).await;
        }
        let mut on_a = joined(&a, "valid-token-1", "project_one").await;
        let mut on_b = joined(&b, "valid-token-1", "project_one").await;
        let mut args = tls.to_vec();
        args.extend(["--room", "project_one", "--data", "\"over tls\""]);
        publish_ok(&args).await;
        expect_chat(&mut on_a, "over tls").await;
        expect_chat(&mut on_b, "over tls").await;

        let mut args = tls.to_vec();
        args.extend(["--user", "user_1", "--project", "project_one"]);
        let out = revoke_ok(&args).await;
        assert!(out.stdout.contains("replicas=2"), "{}", out.stdout);
    })
    .await;
}

#[tokio::test]
async fn mutual_tls_needs_the_client_certificate() {
    run_bounded(LIMIT, async {
        let pki = TestPki::new();
        let redis = RedisServer::start_tls(|p| pki.redis_args(p, true)).await;
        let url = format!("rediss://127.0.0.1:{}", redis.port);
        let (ca, cert, key) = (
            pki.ca.display().to_string(),
            pki.client_cert.display().to_string(),
            pki.client_key.display().to_string(),
        );
        let mtls = [
            "--redis-url",
            &url,
            "--redis-ca-file",
            &ca,
            "--redis-client-cert",
            &cert,
            "--redis-client-key",
            &key,
        ];
        let g = Gateway::start_named("mtls", &mtls).await;
        g.wait_status("/readyz", 200, READY).await;
        let mut c = joined(&g, "valid-token-1", "project_one").await;
        let mut args = mtls.to_vec();
        args.extend(["--room", "project_one", "--data", "\"mtls\""]);
        publish_ok(&args).await;
        expect_chat(&mut c, "mtls").await;

        let mut anonymous = Gateway::start_named(
            "no-client-cert",
            &["--redis-url", &url, "--redis-ca-file", &ca],
        )
        .await;
        let line = stays_unready_with_one_line(&mut anonymous, Duration::from_secs(4)).await;
        println!("no client certificate: {line}");
    })
    .await;
}

#[tokio::test]
async fn wrong_ca_wrong_password_and_no_sentinel_each_log_once_and_stay_unready() {
    run_bounded(LIMIT, async {
        let pki = TestPki::new();
        let tls_redis = RedisServer::start_tls(|p| pki.redis_args(p, false)).await;
        let tls_url = format!("rediss://127.0.0.1:{}", tls_redis.port);
        let other_ca = pki.other_ca.display().to_string();
        let locked = RedisServer::start_with(&["--requirepass", "right"]).await;
        let wrong_pw = format!("redis://:wrong@127.0.0.1:{}", locked.port);
        let nowhere = format!("127.0.0.1:{}", free_port());
        let mut cases = vec![
            (
                "wrong CA",
                Gateway::start_named(
                    "wrong-ca",
                    &["--redis-url", &tls_url, "--redis-ca-file", &other_ca],
                )
                .await,
            ),
            (
                "wrong password",
                Gateway::start_named("wrong-password", &["--redis-url", &wrong_pw]).await,
            ),
            (
                "unreachable sentinel",
                Gateway::start_named(
                    "no-sentinel",
                    &[
                        "--redis-sentinel",
                        &nowhere,
                        "--redis-sentinel-master",
                        "mymaster",
                    ],
                )
                .await,
            ),
        ];
        // Long enough for several reconnect attempts (the backoff reaches 1.6 s by then).
        for (case, g) in &mut cases {
            let line = stays_unready_with_one_line(g, Duration::from_secs(4)).await;
            println!("{case}: {line}");
        }
    })
    .await;
}

/// The minimal ACL of README ("Redis users and ACL"): a replica (with history and the Redis
/// permission source) and a publisher.
const REPLICA_ACL: &str = "on >replica-pw resetchannels resetkeys -@all \
    +subscribe +unsubscribe +psubscribe +publish +ping +unwatch +evalsha +script|load +smembers \
    +hget +hmget +hset +xadd +xtrim +xrange +pexpire +time \
    &socket.io#/#* &socket.io-request#/# &socket.io-response#/#* &wsgate-control#/# \
    &socket.io#/#????????????????# \
    ~wsgate:stream:* ~wsgate:meta:* ~wsgate:perm:*";
const PUBLISHER_ACL: &str = "on >publisher-pw resetchannels resetkeys -@all \
    +publish +ping +unwatch +evalsha +script|load \
    +hmget +hset +xadd +xtrim +pexpire +time \
    &socket.io#/#* &wsgate-control#/# ~wsgate:stream:* ~wsgate:meta:*";

#[tokio::test]
async fn acl_users_with_the_minimal_acl_serve_publish_recover_and_revoke() {
    run_bounded(LIMIT, async {
        let redis = RedisServer::start().await;
        for (user, acl) in [
            ("wsgate-replica", REPLICA_ACL),
            ("wsgate-publisher", PUBLISHER_ACL),
        ] {
            let mut args = vec!["ACL", "SETUSER", user];
            args.extend(acl.split_whitespace());
            assert_eq!(
                redis.command(&args).await,
                Resp::Simple("OK".into()),
                "{user}"
            );
        }
        redis
            .command(&["SADD", "wsgate:perm:user_1", "project_one"])
            .await;
        let replica_url = format!("redis://wsgate-replica:replica-pw@127.0.0.1:{}", redis.port);
        let publisher_url = format!(
            "redis://wsgate-publisher:publisher-pw@127.0.0.1:{}",
            redis.port
        );
        let g = Gateway::start_named(
            "acl",
            &[
                "--redis-url",
                &replica_url,
                "--authz",
                "redis",
                "--history-size",
                "100",
            ],
        )
        .await;
        g.wait_status("/readyz", 200, READY).await;
        let mut c = connect_token(&g.url(), Transport::Websocket, "valid-token-1").await;
        let ack = c
            .emit_ack(
                "join_project",
                vec![json!({"projectId": "project_one", "recover": true})],
            )
            .await;
        assert_eq!(ack[0]["status"], json!("ok"), "{ack:?}");
        assert!(ack[0]["position"].is_object(), "history read: {ack:?}");
        let _ = c.wait_for_event("join_project", DELIVERY).await;

        publish_ok(&[
            "--redis-url",
            &publisher_url,
            "--history-size",
            "100",
            "--room",
            "project_one",
            "--data",
            "\"acl\"",
        ])
        .await;
        let (args, _) = c.wait_for_event("chat", DELIVERY).await.expect("chat");
        assert_eq!(args[0], json!("acl"));
        revoke_ok(&["--redis-url", &publisher_url, "--user", "user_1"]).await;
        // Nothing was refused along the way.
        let log = redis.command(&["ACL", "LOG"]).await;
        assert_eq!(log, Resp::Array(Some(vec![])), "ACL LOG: {log:?}");
    })
    .await;
}

/// A replica whose ACL user predates socket-id rooms (no `+psubscribe`, no pattern) is
/// still ready and delivers room updates: the refused pattern subscription only loses
/// `to(socketId)`.
#[tokio::test]
async fn an_acl_without_the_socket_id_pattern_still_serves_rooms() {
    run_bounded(LIMIT, async {
        let redis = RedisServer::start().await;
        let old = REPLICA_ACL
            .replace("+psubscribe ", "")
            .replace("&socket.io#/#????????????????# ", "");
        let mut args = vec!["ACL", "SETUSER", "wsgate-replica"];
        args.extend(old.split_whitespace());
        assert_eq!(redis.command(&args).await, Resp::Simple("OK".into()));
        let url = format!("redis://wsgate-replica:replica-pw@127.0.0.1:{}", redis.port);
        let g = Gateway::start_named("old-acl", &["--redis-url", &url]).await;
        g.wait_status("/readyz", 200, READY).await;
        let mut c = joined(&g, "valid-token-1", "project_one").await;
        publish_ok(&[
            "--redis-url",
            &redis.url(),
            "--room",
            "project_one",
            "--data",
            "\"old-acl\"",
        ])
        .await;
        let (args, _) = c.wait_for_event("chat", DELIVERY).await.expect("chat");
        assert_eq!(args[0], json!("old-acl"));
    })
    .await;
}

#[tokio::test]
async fn a_subscriber_redis_drops_is_counted_and_subscribes_again() {
    run_bounded(LIMIT, async {
        let redis =
            RedisServer::start_with(&["--client-output-buffer-limit", "pubsub 32kb 0 0"]).await;
        let g = Gateway::start_named("dropped", &["--redis-url", &redis.url()]).await;
        g.wait_status("/readyz", 200, READY).await;
        let mut c = joined(&g, "valid-token-1", "project_one").await;
        let room = room_channel("project_one");
        let closed = ["reason=\"closed\""];

        // 1. CLIENT KILL TYPE pubsub.
        let killed_at = Instant::now();
        let n = redis.command(&["CLIENT", "KILL", "TYPE", "pubsub"]).await;
        assert_eq!(n, Resp::Int(1), "one subscriber killed");
        let back = poll_until(DELIVERY, Duration::from_millis(20), || async {
            (redis.numsub(&room).await >= 1
                && metric(&g, "wsgate_backplane_disconnects_total", &closed).await >= 1.0)
                .then_some(())
        })
        .await;
        assert!(back.is_some(), "not re-subscribed after CLIENT KILL");
        println!(
            "CLIENT KILL -> room subscribed again: {:?}",
            killed_at.elapsed()
        );
        let hello = emitter_message("chat", &[json!("after kill")], &["project_one"], &[]);
        redis.publish_raw(&room, &hello).await;
        expect_chat(&mut c, "after kill").await;

        // 2. A burst over the 32 KB pubsub output buffer limit.
        let big = emitter_message(
            "burst",
            &[json!("x".repeat(64 * 1024))],
            &["project_one"],
            &[],
        );
        let burst: Vec<_> = (0..40).map(|_| (room.clone(), big.clone())).collect();
        redis.publish_many(&burst).await;
        let dropped = poll_until(DELIVERY, Duration::from_millis(20), || async {
            (metric(&g, "wsgate_backplane_disconnects_total", &closed).await >= 2.0).then_some(())
        })
        .await;
        assert!(
            dropped.is_some(),
            "the buffer limit did not drop the subscriber"
        );
        // Subscribed again: a marker published until one arrives.
        let after = emitter_message("after", &[json!("after burst")], &["project_one"], &[]);
        let mut delivered = false;
        let until = Instant::now() + DELIVERY;
        while !delivered && Instant::now() < until {
            redis.publish_raw(&room, &after).await;
            delivered = c
                .wait_for_event("after", Duration::from_millis(500))
                .await
                .is_some();
        }
        assert!(delivered, "no delivery after the buffer-limit drop");
        g.wait_status("/readyz", 200, READY).await;
        redis
            .wait_numsub_at_least(ALL_CHANNEL, 1, Duration::from_secs(5))
            .await;
    })
    .await;
}

const SENTINEL_CLIENTS: usize = 200;

/// Replies of `SENTINEL <what> mymaster`, as a count of entries.
async fn sentinel_count(s: &RedisServer, what: &str) -> usize {
    match s.command(&["SENTINEL", what, "mymaster"]).await {
        Resp::Array(Some(items)) => items.len(),
        _ => 0,
    }
}

async fn primary_port(s: &RedisServer) -> Option<u16> {
    s.command(&["SENTINEL", "get-master-addr-by-name", "mymaster"])
        .await
        .as_strings()
        .get(1)?
        .parse()
        .ok()
}

/// When `c` got its first tick, counted from `since`.
async fn first_tick(c: &mut TestClient, since: Instant) -> Option<Duration> {
    c.wait_for_event("tick", Duration::from_secs(60))
        .await
        .map(|_| since.elapsed())
}

fn tick(n: u64) -> Broadcast {
    Broadcast {
        event: "tick".into(),
        args: Args(vec![rmpv::Value::from(n)]),
        rooms: vec!["project_one".into()],
        ..Default::default()
    }
}

#[tokio::test]
async fn sentinel_failover_under_200_clients_delivers_after_the_kill() {
    run_bounded(Duration::from_secs(240), async {
        let mut primary = RedisServer::start().await;
        let pport = primary.port.to_string();
        let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &pport]).await;
        let mut sentinels = Vec::new();
        for _ in 0..3 {
            sentinels
                .push(RedisServer::start_sentinel("mymaster", primary.port, 2, 1000, vec![]).await);
        }
        // Every sentinel knows the replica and the two other sentinels before the kill.
        let known = poll_until(
            Duration::from_secs(40),
            Duration::from_millis(200),
            || async {
                for s in &sentinels {
                    if sentinel_count(s, "replicas").await < 1
                        || sentinel_count(s, "sentinels").await < 2
                    {
                        return None;
                    }
                }
                Some(())
            },
        )
        .await;
        assert!(
            known.is_some(),
            "sentinels did not discover each other and the replica"
        );
        let list = sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect::<Vec<_>>()
            .join(",");
        let args = [
            "--redis-sentinel",
            &list,
            "--redis-sentinel-master",
            "mymaster",
        ];
        let gws = [
            Gateway::start_named("sentinel-a", &args).await,
            Gateway::start_named("sentinel-b", &args).await,
        ];
        for g in &gws {
            g.wait_status("/readyz", 200, READY).await;
        }
        let mut clients: Vec<TestClient> = stream::iter(0..SENTINEL_CLIENTS)
            .map(|i| joined(&gws[i % 2], "valid-token-1", "project_one"))
            .buffered(20)
            .collect()
            .await;
        let conn = RedisConnArgs {
            redis_sentinel: list.split(',').map(str::to_owned).collect(),
            redis_sentinel_master: Some("mymaster".into()),
            ..Default::default()
        };
        let publisher = Publisher::with_settings(
            wsgate::config::SENTINEL_DEFAULT_URL,
            RedisModeArg::default(),
            &conn,
        )
        .expect("publisher");
        publisher
            .publish(&tick(0))
            .await
            .expect("publish before the kill");
        for c in &mut clients {
            let (a, _) = c.wait_for_event("tick", DELIVERY).await.expect("tick 0");
            assert_eq!(a, vec![json!(0)]);
        }

        // Kill the primary; publish a tick every 100 ms until told to stop.
        let killed = Instant::now();
        primary.kill().await;
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let (publisher, stop) = (publisher.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 1;
                while !stop.load(Ordering::Relaxed) {
                    if publisher.publish(&tick(n)).await.is_ok() {
                        n += 1;
                    }
                    sleep(Duration::from_millis(100)).await;
                }
            })
        };
        let watch_switch = async {
            poll_until(
                Duration::from_secs(60),
                Duration::from_millis(50),
                || async {
                    (primary_port(&sentinels[0]).await == Some(replica.port))
                        .then(|| killed.elapsed())
                },
            )
            .await
        };
        let watch_ready = async {
            let first_503 = poll_until(
                Duration::from_secs(60),
                Duration::from_millis(50),
                || async {
                    matches!(gws[0].get("/readyz").await, Ok((503, _))).then(|| killed.elapsed())
                },
            )
            .await;
            let back = poll_until(
                Duration::from_secs(60),
                Duration::from_millis(50),
                || async {
                    matches!(gws[0].get("/readyz").await, Ok((200, _))).then(|| killed.elapsed())
                },
            )
            .await;
            (first_503, back)
        };
        let (first_a, rest) = clients.split_at_mut(1);
        let (switch, (unready, ready), on_a, on_b) = tokio::join!(
            watch_switch,
            watch_ready,
            first_tick(&mut first_a[0], killed),
            first_tick(&mut rest[0], killed)
        );
        println!(
            "sentinel failover: kill -> switch-master seen {switch:?}; replica-a /readyz 503 at \
             {unready:?}, 200 again at {ready:?}; first delivered tick: replica-a {on_a:?}, \
             replica-b {on_b:?}"
        );
        let switch = switch.expect("the sentinels never switched the primary");
        assert!(
            unready.is_some(),
            "/readyz never went 503 during the failover"
        );
        assert!(ready.is_some(), "/readyz never came back");
        let (Some(a), Some(b)) = (on_a, on_b) else {
            panic!("no delivery after the failover")
        };
        println!(
            "sentinel failover: switch -> first delivery {:?}",
            a.min(b).saturating_sub(switch)
        );
        stop.store(true, Ordering::Relaxed);
        let _ = ticker.await;

        // Every client receives an update published after the failover.
        for g in &gws {
            g.wait_status("/readyz", 200, READY).await;
        }
        let after = Broadcast {
            event: "after".into(),
            args: Args(vec![rmpv::Value::from("failover")]),
            rooms: vec!["project_one".into()],
            ..Default::default()
        };
        publisher
            .publish(&after)
            .await
            .expect("publish after the failover");
        for (i, c) in clients.iter_mut().enumerate() {
            let got = c.wait_for_event("after", DELIVERY).await;
            assert!(
                got.is_some(),
                "client {i} missed the update after the failover"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn sentinel_over_tls_names_a_tls_primary() {
    run_bounded(LIMIT, async {
        let pki = TestPki::new();
        let primary = RedisServer::start_tls(|p| pki.redis_args(p, false)).await;
        // The sentinel reaches the primary with TLS and serves wsgate on its TLS port.
        let tls_port = free_port();
        let mut sentinel_tls = pki.redis_args(tls_port, false);
        sentinel_tls.drain(..2); // keep the sentinel's plain port for the harness
        sentinel_tls.extend(["--tls-replication".into(), "yes".into()]);
        let sentinel =
            RedisServer::start_sentinel("mymaster", primary.port, 1, 1000, sentinel_tls).await;
        let known = poll_until(
            Duration::from_secs(20),
            Duration::from_millis(100),
            || async {
                matches!(
                    sentinel.command(&["SENTINEL", "master", "mymaster"]).await,
                    Resp::Array(Some(_))
                )
                .then_some(())
            },
        )
        .await;
        assert!(known.is_some(), "the sentinel does not know the primary");
        let ca = pki.ca.display().to_string();
        let at = format!("127.0.0.1:{tls_port}");
        let args = [
            "--redis-url",
            "rediss://",
            "--redis-ca-file",
            &ca,
            "--redis-sentinel",
            &at,
            "--redis-sentinel-master",
            "mymaster",
        ];
        let g = Gateway::start_named("sentinel-tls", &args).await;
        g.wait_status("/readyz", 200, READY).await;
        let mut c = joined(&g, "valid-token-1", "project_one").await;
        let mut publish = args.to_vec();
        publish.extend(["--room", "project_one", "--data", "\"sentinel tls\""]);
        publish_ok(&publish).await;
        expect_chat(&mut c, "sentinel tls").await;
    })
    .await;
}

#[tokio::test]
async fn a_tls_cluster_serves_the_cluster_engine_and_publish() {
    run_bounded(LIMIT, async {
        let pki = TestPki::new();
        let cluster = RedisCluster::start_tls(pki.cert_args(), pki.ca.clone()).await;
        let seeds = cluster.seeds();
        let ca = pki.ca.display().to_string();
        let args = [
            "--redis-mode",
            "cluster",
            "--redis-url",
            &seeds,
            "--redis-ca-file",
            &ca,
        ];
        let g = Gateway::start_named("cluster-tls", &args).await;
        g.wait_status("/readyz", 200, READY).await;
        let mut c = joined(&g, "valid-token-1", "project_one").await;
        let mut publish = args.to_vec();
        publish.extend(["--room", "project_one", "--data", "\"cluster tls\""]);
        publish_ok(&publish).await;
        expect_chat(&mut c, "cluster tls").await;
    })
    .await;
}
