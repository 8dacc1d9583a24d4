//! Per-client-IP limits, client addresses from trusted proxies and the PROXY protocol,
//! and Engine.IO sessions counted toward `--max-connections` from the handshake (issue
//! 20), against the real binary on loopback. README, "Hardening".

mod support;

use std::{net::SocketAddr, time::Duration};

use serde_json::json;
use support::{Gateway, Transport, client::connect_token, http_request, run_bounded};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::{Instant, sleep, timeout},
};

const LIMIT: Duration = Duration::from_secs(90);
const HANDSHAKE: &str = "/socket.io/?EIO=4&transport=polling";

/// The value of a metric sample line that starts with `series`, from a `/metrics` body.
fn sample(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn refusals(body: &str, limit: &str) -> f64 {
    sample(
        body,
        &format!("wsgate_network_refusals_total{{limit=\"{limit}\"}}"),
    )
}

async fn metrics(g: &Gateway) -> String {
    g.get("/metrics").await.expect("GET /metrics").1
}

/// A polling handshake, with `headers`: its status and, when it opened one, the sid.
async fn handshake(addr: SocketAddr, headers: &[(&str, &str)]) -> (u16, Option<String>) {
    let r = http_request(addr, "GET", HANDSHAKE, headers)
        .await
        .expect("handshake answered");
    let sid = r
        .body
        .split("\"sid\":\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .map(str::to_owned);
    (r.status, sid)
}

#[tokio::test]
async fn the_per_ip_limit_reads_a_trusted_x_forwarded_for() {
    run_bounded(LIMIT, async {
        let g = Gateway::start(&[
            "--trusted-proxies",
            "127.0.0.1",
            "--max-connections-per-ip",
            "2",
            "--connect-timeout",
            "1s",
        ])
        .await;
        let a = [("X-Forwarded-For", "6.6.6.6, 198.51.100.1")];
        let b = [("X-Forwarded-For", "198.51.100.2")];
        assert_eq!(handshake(g.addr, &a).await.0, 200);
        assert_eq!(handshake(g.addr, &a).await.0, 200);
        // The client cannot choose: the proxy appended its real address to what it sent.
        let (status, sid) = handshake(g.addr, &a).await;
        assert_eq!(
            (status, sid),
            (429, None),
            "a third session of 198.51.100.1"
        );
        assert_eq!(handshake(g.addr, &b).await.0, 200, "another client");
        // The proxy's own address (no header) is one more client, not the sum of them.
        assert_eq!(handshake(g.addr, &[]).await.0, 200);
        let m = metrics(&g).await;
        assert_eq!(refusals(&m, "sessions_per_ip"), 1.0);
        assert_eq!(sample(&m, "wsgate_engine_sessions"), 4.0);
        // The sessions never sent CONNECT: expired at --connect-timeout, they free their
        // places.
        sleep(Duration::from_millis(1800)).await;
        assert_eq!(sample(&metrics(&g).await, "wsgate_engine_sessions"), 0.0);
        assert_eq!(
            handshake(g.addr, &a).await.0,
            200,
            "free again after expiry"
        );

        // A stock client through the same "proxy" is served.
        let c = connect_token(&g.url(), Transport::Websocket, "valid-token-1").await;
        assert_eq!(
            c.emit_ack("message", vec![json!("x")]).await,
            vec![json!("Hello world!")]
        );
        c.disconnect().await;
    })
    .await;
}

#[tokio::test]
async fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
    run_bounded(LIMIT, async {
        let g = Gateway::start(&[
            "--trusted-proxies",
            "10.0.0.0/8",
            "--max-connections-per-ip",
            "2",
            "--max-handshakes-per-ip-per-s",
            "100",
        ])
        .await;
        let h1 = [("X-Forwarded-For", "198.51.100.1")];
        let h2 = [("X-Forwarded-For", "198.51.100.2")];
        let h3 = [("Forwarded", "for=198.51.100.3")];
        assert_eq!(handshake(g.addr, &h1).await.0, 200);
        assert_eq!(handshake(g.addr, &h2).await.0, 200);
        // All three are 127.0.0.1, whatever the headers say.
        assert_eq!(handshake(g.addr, &h3).await.0, 429);
        assert_eq!(refusals(&metrics(&g).await, "sessions_per_ip"), 1.0);
    })
    .await;
}

#[tokio::test]
async fn handshakes_per_ip_are_rate_limited() {
    run_bounded(LIMIT, async {
        let g = Gateway::start(&[
            "--trusted-proxies",
            "127.0.0.1",
            "--max-handshakes-per-ip-per-s",
            "3",
        ])
        .await;
        let a = [("X-Forwarded-For", "198.51.100.1")];
        let mut statuses = Vec::new();
        for _ in 0..6 {
            statuses.push(handshake(g.addr, &a).await.0);
        }
        let ok = statuses.iter().filter(|s| **s == 200).count();
        let limited = statuses.iter().filter(|s| **s == 429).count();
        // A bucket of 3, refilled at 3/s: the requests take a few ms each.
        assert!((3..=4).contains(&ok), "{statuses:?}");
        assert_eq!(ok + limited, 6, "{statuses:?}");
        assert_eq!(
            handshake(g.addr, &[("X-Forwarded-For", "198.51.100.9")])
                .await
                .0,
            200,
            "another client has its own bucket"
        );
        sleep(Duration::from_millis(1100)).await;
        assert_eq!(handshake(g.addr, &a).await.0, 200, "refilled");
        assert_eq!(
            refusals(&metrics(&g).await, "handshakes_per_ip"),
            limited as f64
        );
    })
    .await;
}

#[tokio::test]
async fn tcp_connections_per_ip_are_refused_at_accept() {
    run_bounded(LIMIT, async {
        let g = Gateway::start(&["--max-connections-per-ip", "3"]).await;
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(TcpStream::connect(g.addr).await.unwrap());
        }
        sleep(Duration::from_millis(200)).await;
        // The fourth reads the static 429 (or finds the connection closed) at once.
        let mut s = TcpStream::connect(g.addr).await.unwrap();
        let _ = s
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        let mut out = Vec::new();
        let read = timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        assert!(read.is_ok(), "the refused connection was closed");
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 429"),
            "{text:?}"
        );
        println!("a refused connection read {text:?}");
        drop(held.pop());
        sleep(Duration::from_millis(200)).await;
        held.pop();
        let (status, body) = g.get("/metrics").await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(refusals(&body, "connections_per_ip"), 1.0);
    })
    .await;
}

#[tokio::test]
async fn two_thousand_handshakes_open_at_most_max_connections_sessions() {
    run_bounded(LIMIT, async {
        // Long enough for the whole flood: no session expires during it.
        let g = Gateway::start(&["--max-connections", "100", "--connect-timeout", "15s"]).await;
        let addr = g.addr;
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..50 {
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                for _ in 0..40 {
                    out.push(handshake(addr, &[]).await);
                }
                out
            }));
        }
        let mut opened = Vec::new();
        let mut refused = 0;
        for t in tasks {
            for (status, sid) in t.await.unwrap() {
                match status {
                    200 => opened.push(sid.expect("a sid")),
                    503 => refused += 1,
                    s => panic!("unexpected status {s}"),
                }
            }
        }
        println!(
            "2000 handshakes against --max-connections 100 in {:?}: {} opened, {refused} refused (503)",
            start.elapsed(),
            opened.len()
        );
        assert_eq!(opened.len(), 100);
        assert_eq!(refused, 1900);
        let m = metrics(&g).await;
        assert_eq!(sample(&m, "wsgate_engine_sessions"), 100.0);
        assert_eq!(refusals(&m, "sessions"), 1900.0);

        // A stock client is refused while the replica is full (HTTP 503 on its handshake)...
        let full = support::client::try_connect(
            &g.url(),
            Transport::Websocket,
            support::Creds::token("valid-token-1"),
        )
        .await;
        assert!(
            !matches!(full, support::ConnectOutcome::Connected(_)),
            "connected to a full replica"
        );
        // ... and served once the abandoned sessions expired (--connect-timeout).
        support::poll_until(Duration::from_secs(30), Duration::from_millis(250), || async {
            (sample(&metrics(&g).await, "wsgate_engine_sessions") == 0.0).then_some(())
        })
        .await
        .expect("every session released at its connect timeout");
        let c = connect_token(&g.url(), Transport::Websocket, "valid-token-1").await;
        assert_eq!(
            sample(&metrics(&g).await, "wsgate_engine_sessions"),
            1.0,
            "a connected socket's session counts too"
        );
        c.disconnect().await;
    })
    .await;
}

/// A PROXY protocol v1 header for a TCP4 client.
fn proxy_v1(source: &str) -> String {
    format!("PROXY TCP4 {source} 127.0.0.1 40000 80\r\n")
}

/// A PROXY protocol v2 header (PROXY, TCP over IPv4) for `source`.
fn proxy_v2(source: [u8; 4]) -> Vec<u8> {
    let mut b = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    b.extend_from_slice(&[0x21, 0x11, 0, 12]);
    b.extend_from_slice(&source);
    b.extend_from_slice(&[127, 0, 0, 1, 0x9c, 0x40, 0, 80]);
    b
}

/// Send `prefix` and a request for `path` on a new connection; the answer's text (empty
/// when the connection was closed without one).
async fn proxied(addr: SocketAddr, prefix: &[u8], path: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = prefix.to_vec();
    req.extend_from_slice(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    let _ = s.write_all(&req).await;
    let mut buf = vec![0u8; 8192];
    let n = timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("an answer or a close")
        .unwrap_or(0);
    (s, String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[tokio::test]
async fn the_proxy_protocol_names_the_client() {
    run_bounded(LIMIT, async {
        let g = Gateway::start(&[
            "--trusted-proxies",
            "127.0.0.1",
            "--proxy-protocol",
            "--max-connections-per-ip",
            "1",
            "--header-read-timeout",
            "1s",
        ])
        .await;
        // One connection per client address: kept open (keep-alive) while the next come.
        let (_a, r) = proxied(g.addr, proxy_v1("198.51.100.1").as_bytes(), "/healthz").await;
        assert!(r.starts_with("HTTP/1.1 200"), "{r:?}");
        let (_a2, r) = proxied(g.addr, proxy_v1("198.51.100.1").as_bytes(), "/healthz").await;
        assert!(r.is_empty() || r.starts_with("HTTP/1.1 429"), "{r:?}");
        let (_b, r) = proxied(g.addr, &proxy_v2([198, 51, 100, 2]), "/healthz").await;
        assert!(r.starts_with("HTTP/1.1 200"), "v2: {r:?}");
        // A handshake is counted under the header's address too (its own connection is
        // the one place that address has).
        let (_c, r) = proxied(g.addr, proxy_v1("198.51.100.3").as_bytes(), HANDSHAKE).await;
        assert!(r.starts_with("HTTP/1.1 200"), "{r:?}");
        // Without a header a trusted peer's connection is closed.
        let (_d, r) = proxied(g.addr, b"", "/healthz").await;
        assert!(r.is_empty(), "{r:?}");
        // The load balancer's own checks (UNKNOWN / LOCAL) are the proxy's connection.
        let mut s = TcpStream::connect(g.addr).await.unwrap();
        s.write_all(b"PROXY UNKNOWN\r\nGET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        timeout(Duration::from_secs(5), s.read_to_end(&mut out))
            .await
            .expect("metrics in time")
            .unwrap();
        let body = String::from_utf8_lossy(&out);
        assert!(body.starts_with("HTTP/1.0 200"), "{body}");
        assert_eq!(refusals(&body, "connections_per_ip"), 1.0, "{body}");
        assert_eq!(refusals(&body, "proxy_header"), 1.0);
    })
    .await;
}

#[tokio::test]
async fn a_websocket_keeps_its_connection_counted_after_the_upgrade() {
    run_bounded(LIMIT, async {
        let g = Gateway::start(&["--max-connections-per-ip", "1"]).await;
        let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", g.addr);
        let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("ws");
        // The upgraded connection left hyper; its count did not.
        let (_s, r) = proxied(g.addr, b"", "/healthz").await;
        assert!(r.is_empty() || r.starts_with("HTTP/1.1 429"), "{r:?}");
        drop(ws);
        let ok = support::poll_until(
            Duration::from_secs(5),
            Duration::from_millis(100),
            || async { g.get("/healthz").await.ok().filter(|(s, _)| *s == 200) },
        )
        .await;
        assert!(ok.is_some(), "the count went with the websocket");
    })
    .await;
}
