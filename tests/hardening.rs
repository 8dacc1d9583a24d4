//! Hostile clients against the real binary on loopback (issue 20): silent and slow
//! connections are closed within their timeouts while other clients are served, a session
//! that never sends CONNECT is closed, an event flood loses its transport within seconds,
//! and `wsgate publish` refuses an oversized message. README, "Hardening".

mod support;

use std::{net::SocketAddr, time::Duration};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use support::{Gateway, Transport, client::connect_token, http_request, run_bounded, run_publish};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::{Instant, sleep, timeout},
};
use tokio_tungstenite::tungstenite::Message;

const LIMIT: Duration = Duration::from_secs(60);

/// The value of a metric sample line that starts with `series` (name and labels).
async fn sample(g: &Gateway, series: &str) -> f64 {
    let (_, body) = g.get("/metrics").await.expect("GET /metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// How long until the server closes `s` (EOF or reset), reading whatever it sends; `None`
/// when still open after `within`.
async fn closed_after(
    s: &mut (impl AsyncRead + Unpin),
    since: Instant,
    within: Duration,
) -> Option<Duration> {
    let mut buf = [0u8; 1024];
    let read_to_end = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return since.elapsed(),
                Ok(_) => {}
            }
        }
    };
    timeout(within, read_to_end).await.ok()
}

/// `n` connections that send nothing.
async fn silent(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(TcpStream::connect(addr).await.expect("connect"));
    }
    out
}

#[tokio::test]
async fn silent_and_slow_connections_are_closed_while_others_are_served() {
    run_bounded(LIMIT, async {
        let g = Gateway::start(&["--idle-timeout", "1s", "--header-read-timeout", "2s"]).await;
        let start = Instant::now();
        let mut quiet = silent(g.addr, 50).await;
        // A slowloris: the head a byte at a time, never finished.
        let (mut slow, mut w) = TcpStream::connect(g.addr).await.unwrap().into_split();
        let trickle = tokio::spawn({
            let head = b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nX-Slow: ";
            async move {
                for b in head.iter().chain(b"a".repeat(100).iter()) {
                    if w.write_all(&[*b]).await.is_err() {
                        return;
                    }
                    sleep(Duration::from_millis(100)).await;
                }
            }
        });
        // Meanwhile a stock client connects and is answered.
        let client = connect_token(&g.url(), Transport::Websocket, "valid-token-1").await;
        let answer = client.emit_ack("message", vec![json!("x")]).await;
        assert_eq!(answer, vec![json!("Hello world!")]);

        for s in &mut quiet {
            let t = closed_after(s, start, Duration::from_secs(5))
                .await
                .expect("a silent connection still open after 5 s");
            assert!(t >= Duration::from_millis(900), "closed too early: {t:?}");
        }
        let t = closed_after(&mut slow, start, Duration::from_secs(6))
            .await
            .expect("a slow head still open after 6 s");
        assert!(
            (Duration::from_millis(1900)..Duration::from_secs(4)).contains(&t),
            "slow head closed after {t:?}, expected about 2 s"
        );
        trickle.abort();
        println!(
            "50 silent connections closed within {:?}; slow head after {t:?}",
            start.elapsed()
        );

        // The stock client was never bothered (its websocket left hyper at the upgrade).
        let answer = client.emit_ack("message", vec![json!("x")]).await;
        assert_eq!(answer, vec![json!("Hello world!")]);
        assert_eq!(
            sample(&g, "wsgate_timeouts_total{kind=\"idle\"}").await,
            50.0
        );
        assert_eq!(
            sample(&g, "wsgate_timeouts_total{kind=\"header_read\"}").await,
            1.0
        );
        client.disconnect().await;
    })
    .await;
}

#[tokio::test]
async fn a_session_without_connect_is_closed_at_the_connect_timeout() {
    run_bounded(LIMIT, async {
        let g = Gateway::start(&["--connect-timeout", "1s"]).await;
        let open = http_request(g.addr, "GET", "/socket.io/?EIO=4&transport=polling", &[])
            .await
            .unwrap();
        assert_eq!(open.status, 200, "{open:?}");
        let sid = open
            .body
            .split("\"sid\":\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .expect("sid")
            .to_owned();
        sleep(Duration::from_millis(1500)).await;
        let poll = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
        let r = http_request(g.addr, "GET", &poll, &[]).await.unwrap();
        // Closed: the pending close packet, or the session is gone.
        assert!(r.status == 400 || r.body.starts_with('1'), "{r:?}");
        assert_eq!(
            sample(&g, "wsgate_timeouts_total{kind=\"connect\"}").await,
            1.0
        );
    })
    .await;
}

/// A raw websocket client: Engine.IO open, Socket.IO CONNECT with the token.
async fn raw_socket(
    addr: SocketAddr,
    token: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>> {
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("ws");
    let open = ws.next().await.unwrap().unwrap();
    assert!(open.to_text().unwrap().starts_with('0'), "{open:?}");
    let connect = format!("40{}", json!({ "token": token }));
    ws.send(Message::text(connect)).await.unwrap();
    // engineioxide pings at once; the CONNECT answer follows.
    loop {
        let m = ws.next().await.unwrap().unwrap();
        match m.to_text().unwrap() {
            "2" => ws.send(Message::text("3")).await.unwrap(),
            t => {
                assert!(t.starts_with("40"), "{t:?}");
                return ws;
            }
        }
    }
}

#[tokio::test]
async fn an_event_flood_loses_its_transport_within_seconds() {
    run_bounded(LIMIT, async {
        let g = Gateway::start(&["--max-event-rate", "50", "--event-burst", "10"]).await;
        let mut calm = connect_token(&g.url(), Transport::Websocket, "valid-token-2").await;
        let ws = raw_socket(g.addr, "valid-token-1").await;
        let (mut tx, mut rx) = ws.split();
        let start = Instant::now();
        let flood = tokio::spawn(async move {
            let mut sent = 0u64;
            while start.elapsed() < Duration::from_secs(10) {
                for _ in 0..100 {
                    if tx.send(Message::text(r#"42["message","x"]"#)).await.is_err() {
                        return sent;
                    }
                    sent += 1;
                }
                sleep(Duration::from_millis(10)).await;
            }
            sent
        });
        let (mut told, mut answered) = (0, 0);
        let closed = loop {
            match timeout(Duration::from_secs(10), rx.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    if t.as_str().contains("Rate limited") {
                        told += 1;
                    } else if t.as_str().contains("Hello world!") {
                        answered += 1;
                    }
                }
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => {
                    break start.elapsed();
                }
                Ok(Some(Ok(_))) => {}
                Err(_) => panic!("still connected after 10 s of flood"),
            }
        };
        let sent = flood.await.unwrap();
        println!(
            "flood: {sent} events sent, {answered} answered, {told} `Rate limited` exceptions, transport closed after {closed:?}"
        );
        assert!(closed < Duration::from_secs(4), "closed after {closed:?}");
        assert!(told <= 3, "told {told} times: at most once a second");
        assert_eq!(
            sample(&g, "wsgate_event_flood_disconnects_total").await,
            1.0
        );
        // The other client did not notice.
        assert_eq!(
            calm.emit_ack("message", vec![json!("x")]).await,
            vec![json!("Hello world!")]
        );
        assert!(calm.lifecycle_problems().is_empty());
        calm.disconnect().await;
    })
    .await;
}

#[tokio::test]
async fn an_oversized_publish_is_refused_before_redis() {
    run_bounded(LIMIT, async {
        let dir = std::env::temp_dir().join(format!("wsgate-hardening-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let big = dir.join("big.json");
        std::fs::write(&big, json!("x".repeat(2 << 20)).to_string()).unwrap();
        let data = format!("@{}", big.display());
        // Nothing listens there: the refusal must come before any connection.
        let url = format!("redis://127.0.0.1:{}", support::free_port());
        let out = run_publish(&["--redis-url", &url, "--room", "r", "--data", &data])
            .await
            .unwrap();
        assert!(!out.success(), "{}", out.stderr);
        assert!(out.stderr.contains("message too large"), "{}", out.stderr);
        assert!(out.stderr.contains("--max-message-size"), "{}", out.stderr);
        let small = run_publish(&[
            "--redis-url",
            &url,
            "--data",
            "\"hi\"",
            "--max-message-size",
            "16",
        ])
        .await
        .unwrap();
        assert!(
            small.stderr.contains("message too large"),
            "{}",
            small.stderr
        );
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}
