//! Overload (docs/client-contract.md, "Slow clients"): a socket that stops reading is disconnected with a reason and
//! counted, never left to miss updates in silence, and the members that keep reading get
//! every update in order.
//!
//! The slow client is a raw Engine.IO websocket client with a tiny receive buffer, so that
//! it can simply stop reading; the healthy one is the usual `rust_socketio` client.
//!
//! Run: `cargo test --test overload` (needs `redis-server` on PATH).

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value as Json, json};
use support::redis::{RedisServer, emitter_channel, emitter_message};
use support::{Gateway, run_bounded};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, client_async,
    tungstenite::{Message, client::IntoClientRequest},
};

/// Updates published back to back: far more than the slow client's TCP buffers and its
/// queue of `MAX_BUFFER` packets hold, so its queue must overflow.
const UPDATES: usize = 12_000;
/// Enough slack that a member that reads, starved of CPU for a while on a busy test
/// machine, is not taken for a slow consumer (600 ms of updates at the pace below: 200 ms
/// was not enough at a load average of 10 on 2 cores).
const MAX_BUFFER: &str = "3072";
const PAD: usize = 1_000;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The two tests each saturate a 2-core machine (a replica, Redis and thousands of 1 KB
/// updates a second); run side by side, the reading member of one is starved into a slow
/// consumer by the other. They take turns.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A raw Engine.IO v4 websocket client, connected to `/` and joined to `project`; with
/// `small_buffer`, its receive buffer is 4 KB, so that once it stops reading the server's
/// writes stall quickly.
async fn raw_member(
    addr: std::net::SocketAddr,
    token: &str,
    project: &str,
    small_buffer: bool,
) -> Ws {
    let socket = TcpSocket::new_v4().expect("socket");
    if small_buffer {
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    }
    let stream = socket.connect(addr).await.expect("connect");
    let mut req = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket")
        .into_client_request()
        .expect("request");
    req.headers_mut()
        .insert("authorization", token.parse().expect("header"));
    let (mut ws, _) = client_async(req, MaybeTlsStream::Plain(stream))
        .await
        .expect("websocket handshake");
    expect_text(&mut ws, |t| t.starts_with('0')).await;
    ws.send(Message::text("40")).await.expect("send connect");
    expect_text(&mut ws, |t| t.starts_with("40")).await;
    let join = json!(["join_project", {"projectId": project}]);
    ws.send(Message::text(format!("421{join}")))
        .await
        .expect("send join");
    expect_text(&mut ws, |t| t.starts_with("431")).await;
    ws
}

/// Read until a text frame satisfies `want`, answering pings; panics after 5 s.
async fn expect_text(ws: &mut Ws, want: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("expected frame in time")
            .expect("stream open")
            .expect("frame");
        if let Message::Text(t) = frame {
            if t.as_str() == "2" {
                ws.send(Message::text("3")).await.expect("pong");
                continue;
            }
            if want(t.as_str()) {
                return t.to_string();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_is_told_and_disconnected_others_get_everything() {
    let _turn = ONE_AT_A_TIME.lock().await;
    run_bounded(Duration::from_secs(120), async {
        let redis = RedisServer::start().await;
        let url = redis.url();
        let gw = Gateway::start(&[
            "--redis-url",
            &url,
            "--max-buffer",
            MAX_BUFFER,
            // No heartbeat during the test: the eviction, not a ping timeout, must end it.
            "--ping-interval",
            "120s",
        ])
        .await;
        let mut slow = raw_member(gw.addr, "valid-token-1", "project_one", true).await;
        let healthy = raw_member(gw.addr, "valid-token-1", "project_one", false).await;
        let healthy = tokio::spawn(read_updates(healthy, UPDATES));

        let all: Vec<usize> = (0..UPDATES).collect();
        for chunk in all.chunks(100) {
            let msgs = updates(chunk.iter().copied());
            redis.publish_many(&msgs).await;
            // Paced (5,000 updates/s) so that a member that reads keeps up.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // Every reading member gets every update, in order.
        let seqs = timeout(Duration::from_secs(60), healthy)
            .await
            .expect("the reading member got every update in time")
            .expect("reader task");
        assert_eq!(
            describe(&seqs),
            format!("0..{UPDATES}"),
            "{}",
            gw.stderr_tail()
        );

        // The slow consumer was counted and logged.
        let metrics = support::poll_until(
            Duration::from_secs(10),
            Duration::from_millis(100),
            || async {
                let (_, body) = gw.get("/metrics").await.ok()?;
                body.lines()
                    .find(|l| l.starts_with("wsgate_slow_consumer_disconnects_total "))
                    .filter(|l| !l.ends_with(" 0"))
                    .map(str::to_owned)
            },
        )
        .await;
        assert_eq!(
            metrics.as_deref(),
            Some("wsgate_slow_consumer_disconnects_total 1"),
            "{}",
            gw.stderr_tail()
        );
        assert!(
            gw.stderr_tail().contains("slow consumer"),
            "{}",
            gw.stderr_tail()
        );

        // When it reads again: a gap-free prefix of the updates, then the reason, then its
        // transport closes (no Socket.IO DISCONNECT: the stock client reconnects by itself).

        let mut seen = Vec::new();
        let mut reason = None;
        loop {
            let frame = timeout(Duration::from_secs(10), slow.next()).await;
            let text = match frame {
                Ok(Some(Ok(Message::Text(t)))) => t.to_string(),
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => break,
                Ok(Some(Ok(_))) => continue,
                Err(_) => panic!(
                    "slow client: no disconnect within 10 s after {} updates",
                    seen.len()
                ),
            };
            assert_ne!(
                text, "41",
                "a Socket.IO DISCONNECT: the stock client would not come back"
            );
            let Some(body) = text.strip_prefix("42") else {
                continue;
            };
            let v: Json = serde_json::from_str(body).expect("event JSON");
            assert!(reason.is_none(), "an event after the reason: {v}");
            match v[0].as_str() {
                Some("update") => seen.push(v[1]["seq"].as_u64().expect("seq")),
                Some("exception") => reason = Some(v[1].clone()),
                other => panic!("unexpected event {other:?}"),
            }
        }
        assert_eq!(
            reason,
            Some(
                json!({"status": "error", "message": "Too slow: disconnected",
                "cause": {"pattern": "delivery", "data": {"maxBuffer": 3072}}})
            ),
            "after {} updates",
            seen.len()
        );
        assert!(
            !seen.is_empty() && seen.len() < UPDATES,
            "{} updates",
            seen.len()
        );
        assert_eq!(
            seen,
            (0..seen.len() as u64).collect::<Vec<_>>(),
            "a gap-free prefix"
        );
    })
    .await;
}

/// The emitter's message for `update {seq, pad}` to project_one, for each `seq`: 1 KB each.
fn updates(seqs: impl Iterator<Item = usize>) -> Vec<(String, Vec<u8>)> {
    let pad = "x".repeat(PAD);
    let channel = emitter_channel(&["project_one"]);
    seqs.map(|i| {
        let args = [json!({"seq": i, "pad": pad})];
        let msg = emitter_message("update", &args, &["project_one"], &[]);
        (channel.clone(), msg)
    })
    .collect()
}

/// `0..n` when `seqs` is exactly 0, 1, ..., n-1; otherwise where it first goes wrong.
fn describe(seqs: &[u64]) -> String {
    match seqs.iter().enumerate().find(|(i, s)| **s != *i as u64) {
        None => format!("0..{}", seqs.len()),
        Some((i, s)) => format!("{} updates, position {i} holds {s}", seqs.len()),
    }
}

/// Read `n` `update` events from a raw client, answering pings; their `seq` values in order.
async fn read_updates(mut ws: Ws, n: usize) -> Vec<u64> {
    let mut seqs = Vec::with_capacity(n);
    while seqs.len() < n {
        let Some(Ok(frame)) = ws.next().await else {
            break;
        };
        let Message::Text(t) = frame else { continue };
        if t.as_str() == "2" {
            let _ = ws.send(Message::text("3")).await;
            continue;
        }
        let Some(body) = t.as_str().strip_prefix("42") else {
            continue;
        };
        let v: Json = serde_json::from_str(body).expect("event JSON");
        if v[0] == "update" {
            seqs.push(v[1]["seq"].as_u64().expect("seq"));
        } else {
            // Anything else (an `exception`) ends the reading: the test reports it.
            break;
        }
    }
    seqs
}

/// A burst: 1 KB updates published back to back to a room whose members keep reading:
/// every member gets every update in order, none is taken for a slow consumer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_reaches_every_reading_member_in_order() {
    let _turn = ONE_AT_A_TIME.lock().await;
    const MEMBERS: usize = 20;
    const BURST: usize = 20_000;
    run_bounded(Duration::from_secs(180), async {
        let redis = RedisServer::start().await;
        let gw = Gateway::start(&["--redis-url", &redis.url()]).await;
        let mut readers = Vec::new();
        for _ in 0..MEMBERS {
            let ws = raw_member(gw.addr, "valid-token-1", "project_one", false).await;
            readers.push(tokio::spawn(read_updates(ws, BURST)));
        }
        let msgs = updates(0..BURST);
        redis.publish_many(&msgs).await;
        for r in readers {
            let seqs = timeout(Duration::from_secs(150), r)
                .await
                .expect("members read the burst in time")
                .expect("reader task");
            assert_eq!(
                describe(&seqs),
                format!("0..{BURST}"),
                "{}",
                gw.stderr_tail()
            );
        }
        let (_, metrics) = gw.get("/metrics").await.expect("metrics");
        assert!(
            metrics.contains("wsgate_slow_consumer_disconnects_total 0"),
            "{metrics}"
        );
    })
    .await;
}
