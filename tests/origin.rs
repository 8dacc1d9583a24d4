//! Browser-facing HTTP against the real binary: the `Origin` policy on both
//! Engine.IO transports, CORS on long-polling, the start-up checks of the origin settings,
//! and when the demo page is served. The same policy in a real browser:
//! `tests/browser/demo.test.mjs`.

mod support;

use std::time::Duration;

use support::{Gateway, HttpAnswer, http_request, run_bounded};

const TEST_TIMEOUT: Duration = Duration::from_secs(30);
const POLLING: &str = "/socket.io/?EIO=4&transport=polling";
const WEBSOCKET: &str = "/socket.io/?EIO=4&transport=websocket";

/// An Engine.IO polling handshake, with `Origin: origin` when given.
async fn polling(g: &Gateway, origin: Option<&str>) -> HttpAnswer {
    let headers: Vec<(&str, &str)> = origin.map(|o| ("Origin", o)).into_iter().collect();
    http_request(g.addr, "GET", POLLING, &headers)
        .await
        .expect("polling handshake")
}

/// A WebSocket upgrade request straight to the websocket transport.
async fn upgrade(g: &Gateway, origin: &str) -> HttpAnswer {
    let headers = [
        ("Origin", origin),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    ];
    http_request(g.addr, "GET", WEBSOCKET, &headers)
        .await
        .expect("websocket upgrade")
}

fn refused_count(metrics: &str, transport: &str) -> u64 {
    let prefix = format!("wsgate_origin_refused_total{{transport=\"{transport}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// A token file in a fresh temporary directory (removed with the returned guard).
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> TempFile {
        let dir = std::env::temp_dir().join(format!("wsgate-origin-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[tokio::test]
async fn requests_without_origin_are_let_through() {
    run_bounded(TEST_TIMEOUT, async {
        let g = Gateway::start(&["--allowed-origins", "https://app.example"]).await;
        let r = polling(&g, None).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert!(
            r.body.starts_with("0{"),
            "not an Engine.IO open packet: {r:?}"
        );
        assert_eq!(r.header("access-control-allow-origin"), None);
    })
    .await;
}

#[tokio::test]
async fn default_policy_allows_own_origin_and_localhost_with_cors() {
    run_bounded(TEST_TIMEOUT, async {
        let g = Gateway::start(&[]).await;
        let own = format!("http://{}", g.addr);
        for origin in [own.as_str(), "http://localhost:5173", "http://[::1]:8080"] {
            let r = polling(&g, Some(origin)).await;
            assert_eq!(r.status, 200, "{origin}: {r:?}");
            assert_eq!(r.header("access-control-allow-origin"), Some(origin));
            assert_eq!(r.header("access-control-allow-credentials"), None);
            assert_eq!(upgrade(&g, origin).await.status, 101, "{origin}");
        }
    })
    .await;
}

#[tokio::test]
async fn other_origins_are_refused_with_403_and_counted() {
    run_bounded(TEST_TIMEOUT, async {
        let g = Gateway::start(&[]).await;
        for origin in ["http://evil.example", "http://127.0.0.2:3000", "null"] {
            let r = polling(&g, Some(origin)).await;
            assert_eq!(r.status, 403, "{origin}: {r:?}");
            assert_eq!(r.header("access-control-allow-origin"), None);
            assert_eq!(upgrade(&g, origin).await.status, 403, "{origin}");
        }
        // Engine.IO also answers without the trailing slash: so does the check.
        let r = http_request(
            g.addr,
            "GET",
            "/socket.io?EIO=4&transport=polling",
            &[("Origin", "http://evil.example")],
        )
        .await
        .unwrap();
        assert_eq!(r.status, 403, "{r:?}");
        let (_, metrics) = g.get("/metrics").await.unwrap();
        assert_eq!(refused_count(&metrics, "polling"), 4, "{metrics}");
        assert_eq!(refused_count(&metrics, "websocket"), 3, "{metrics}");
        // Only the Socket.IO endpoint is guarded.
        let r = http_request(
            g.addr,
            "GET",
            "/healthz",
            &[("Origin", "http://evil.example")],
        )
        .await
        .unwrap();
        assert_eq!(r.status, 200);
    })
    .await;
}

/// `http://localhost:*` names a port, not any text: the forms that once passed it (and
/// got CORS headers for their page) are refused on both transports.
#[tokio::test]
async fn a_port_wildcard_does_not_match_a_longer_host() {
    run_bounded(TEST_TIMEOUT, async {
        let g = Gateway::start(&[]).await;
        for origin in [
            "http://localhost:9999.evil.example",
            "http://127.0.0.1:80.evil.example",
            "http://[::1]:8080.evil.example",
            "http://localhost:99999",
        ] {
            let r = polling(&g, Some(origin)).await;
            assert_eq!(r.status, 403, "{origin}: {r:?}");
            assert_eq!(r.header("access-control-allow-origin"), None, "{origin}");
            assert_eq!(upgrade(&g, origin).await.status, 403, "{origin}");
        }
        assert_eq!(polling(&g, Some("http://localhost:9999")).await.status, 200);
        let (_, metrics) = g.get("/metrics").await.unwrap();
        assert_eq!(refused_count(&metrics, "polling"), 4, "{metrics}");
    })
    .await;
}

#[tokio::test]
async fn listed_origins_replace_the_default_and_get_credentials_on_preflight() {
    run_bounded(TEST_TIMEOUT, async {
        let g = Gateway::start(&[
            "--allowed-origins",
            "https://app.example,http://localhost:*",
            "--cors-credentials",
        ])
        .await;
        let preflight = [
            ("Origin", "https://app.example"),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type"),
        ];
        let r = http_request(g.addr, "OPTIONS", POLLING, &preflight)
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(
            r.header("access-control-allow-origin"),
            Some("https://app.example")
        );
        assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
        assert!(
            r.header("access-control-allow-methods")
                .is_some_and(|m| m.contains("POST")),
            "{r:?}"
        );

        let r = polling(&g, Some("http://localhost:1234")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
        // `self` is not listed any more: the gateway's own origin is refused.
        let own = format!("http://{}", g.addr);
        assert_eq!(polling(&g, Some(&own)).await.status, 403);
    })
    .await;
}

#[tokio::test]
async fn star_allows_every_origin_when_set() {
    run_bounded(TEST_TIMEOUT, async {
        let g = Gateway::start(&["--allowed-origins", "*"]).await;
        let r = polling(&g, Some("http://evil.example")).await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("access-control-allow-origin"),
            Some("http://evil.example")
        );
        assert_eq!(upgrade(&g, "null").await.status, 101);
    })
    .await;
}

#[tokio::test]
async fn unusable_origin_settings_stop_startup_naming_the_setting() {
    run_bounded(TEST_TIMEOUT, async {
        for (args, named) in [
            (
                &["--allowed-origins", "*", "--cors-credentials"][..],
                "--cors-credentials",
            ),
            (
                &["--allowed-origins", "app.example"][..],
                "--allowed-origins",
            ),
            (
                &["--allowed-origins", "https://app.example/path"][..],
                "--allowed-origins",
            ),
            (&["--demo-page=maybe"][..], "--demo-page"),
        ] {
            let err = match Gateway::try_start("bad", args).await {
                Ok(_) => panic!("started with {args:?}"),
                Err(e) => e,
            };
            assert!(err.contains(named), "{args:?}: {err}");
        }
    })
    .await;
}

#[tokio::test]
async fn demo_page_is_served_in_the_embedded_default_only() {
    run_bounded(TEST_TIMEOUT, async {
        let g = Gateway::start(&[]).await;
        let (status, body) = g.get("/").await.unwrap();
        assert_eq!(status, 200);
        assert!(body.contains("<title>wsgate demo</title>"), "{body}");
        let (status, body) = g.get("/demo/socket.io.min.js").await.unwrap();
        assert_eq!(status, 200);
        assert!(
            body.contains("Socket.IO v4."),
            "not the socket.io-client bundle"
        );
        assert_eq!(g.get("/demo/app.js").await.unwrap().0, 200);
        drop(g);

        let tokens = TempFile::new("tokens.json", r#"{"prod-token": "user_9"}"#);
        let g = Gateway::start(&["--tokens", tokens.path()]).await;
        assert_eq!(g.get("/").await.unwrap().0, 404);
        assert_eq!(g.get("/healthz").await.unwrap().0, 200);
        drop(g);

        let g = Gateway::start(&["--tokens", tokens.path(), "--demo-page"]).await;
        assert_eq!(g.get("/").await.unwrap().0, 200);
        drop(g);

        let g = Gateway::start(&["--demo-page=false"]).await;
        assert_eq!(g.get("/").await.unwrap().0, 404);
    })
    .await;
}
