//! The HTTP hooks (`--auth http`, `--authz http`) against a real HTTP backend started by
//! each test (axum on a free loopback port, counting its calls): accept / refuse, allow /
//! deny, the per-replica cache, single flight, a backend that is down, slow or back,
//! revocation on a 2-replica fleet, and no secret in the gateway's debug log.

mod support;

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{Json, Router, extract::State, http::HeaderMap, http::StatusCode, routing::post};
use serde_json::{Value, json};
use support::client::{connect, try_connect};
use support::redis::RedisServer;
use support::{ConnectOutcome, Creds, Gateway, Transport, run_bounded};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle, time::Instant};

const LIMIT: Duration = Duration::from_secs(90);
const WS: Transport = Transport::Websocket;

/// How the backend behaves.
const NORMAL: u8 = 0;
/// Every call sleeps 3 s (longer than the tests' `--hook-timeout`).
const SLOW: u8 = 1;
/// Every call answers 500.
const BROKEN: u8 = 2;

#[derive(Default)]
struct Backend {
    auth_calls: AtomicUsize,
    authz_calls: AtomicUsize,
    mode: AtomicU8,
    /// Extra time each permission call takes (to make concurrent joins overlap).
    authz_delay_ms: AtomicU64,
    /// Extra time each identity call takes (to revoke while one is in flight).
    auth_delay_ms: AtomicU64,
    /// token -> user.
    tokens: Mutex<HashMap<String, String>>,
    /// (user, project) pairs allowed.
    grants: Mutex<HashSet<(String, String)>>,
    /// Headers of the last call.
    headers: Mutex<Option<HeaderMap>>,
}

impl Backend {
    fn token(&self, token: &str, user: &str) {
        self.tokens
            .lock()
            .unwrap()
            .insert(token.into(), user.into());
    }

    fn grant(&self, user: &str, project: &str) {
        self.grants
            .lock()
            .unwrap()
            .insert((user.into(), project.into()));
    }

    fn revoke(&self, user: &str, project: &str) {
        self.grants
            .lock()
            .unwrap()
            .remove(&(user.to_owned(), project.to_owned()));
    }

    fn authz_calls(&self) -> usize {
        self.authz_calls.load(Ordering::SeqCst)
    }

    fn auth_calls(&self) -> usize {
        self.auth_calls.load(Ordering::SeqCst)
    }

    async fn behave(&self) -> Option<StatusCode> {
        match self.mode.load(Ordering::SeqCst) {
            SLOW => {
                tokio::time::sleep(Duration::from_secs(3)).await;
                None
            }
            BROKEN => Some(StatusCode::INTERNAL_SERVER_ERROR),
            _ => None,
        }
    }
}

async fn auth_hook(
    State(b): State<Arc<Backend>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    b.auth_calls.fetch_add(1, Ordering::SeqCst);
    *b.headers.lock().unwrap() = Some(headers);
    if let Some(status) = b.behave().await {
        return (status, Json(json!({})));
    }
    let delay = b.auth_delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let token = body["token"].as_str().unwrap_or_default();
    let user = b.tokens.lock().unwrap().get(token).cloned();
    match user {
        Some(user) if user == "expired" => (StatusCode::OK, Json(json!({"user": user, "exp": 1}))),
        Some(user) => {
            // The user's grants as the `projects` claim, for `--authz claim`.
            let projects: Vec<String> = (b.grants.lock().unwrap().iter())
                .filter(|(u, _)| *u == user)
                .map(|(_, p)| p.clone())
                .collect();
            (
                StatusCode::OK,
                Json(json!({"user": user, "projects": projects})),
            )
        }
        None => (StatusCode::UNAUTHORIZED, Json(json!({}))),
    }
}

async fn authz_hook(
    State(b): State<Arc<Backend>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    b.authz_calls.fetch_add(1, Ordering::SeqCst);
    *b.headers.lock().unwrap() = Some(headers);
    if let Some(status) = b.behave().await {
        return (status, Json(json!({})));
    }
    let delay = b.authz_delay_ms.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(delay)).await;
    let user = body["user"].as_str().unwrap_or_default().to_owned();
    let project = body["project"].as_str().unwrap_or_default().to_owned();
    if project == "forbidden" {
        return (StatusCode::FORBIDDEN, Json(json!({})));
    }
    let allow = b.grants.lock().unwrap().contains(&(user, project));
    (StatusCode::OK, Json(json!({ "allow": allow })))
}

/// The backend's HTTP server on a fixed loopback port, which can be stopped and started.
struct Server {
    state: Arc<Backend>,
    addr: SocketAddr,
    running: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

/// The backend's two hooks.
fn routes(state: Arc<Backend>) -> Router {
    Router::new()
        .route("/auth", post(auth_hook))
        .route("/authz", post(authz_hook))
        .with_state(state)
}

impl Server {
    async fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut s = Server {
            state: Arc::new(Backend::default()),
            addr,
            running: None,
        };
        s.serve(listener);
        s
    }

    fn serve(&mut self, listener: TcpListener) {
        let app = routes(self.state.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        self.running = Some((tx, task));
    }

    /// Stop listening and close every connection (keep-alive ones included).
    async fn stop(&mut self) {
        if let Some((tx, task)) = self.running.take() {
            let _ = tx.send(());
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }

    async fn restart(&mut self) {
        let listener = TcpListener::bind(self.addr)
            .await
            .expect("rebind the backend port");
        self.serve(listener);
    }

    /// A backend that knows `tok-alice` (user `alice`) and lets alice see `p1`.
    async fn with_alice() -> Server {
        let server = Server::start().await;
        server.state.token("tok-alice", "alice");
        server.state.grant("alice", "p1");
        server
    }

    /// The backend over TLS with `pki`'s server certificate (for `https://` hook URLs).
    async fn start_tls(pki: &support::tls::TestPki) -> Server {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
        let certs = CertificateDer::pem_file_iter(&pki.server_cert)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(&pki.server_key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Backend::default());
        let app = routes(state.clone());
        let (tx, mut rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    _ = &mut rx => return,
                    accepted = listener.accept() => match accepted {
                        Ok(a) => a,
                        Err(_) => continue,
                    },
                };
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Server {
            state,
            addr,
            running: Some((tx, task)),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// A gateway with both hooks on `server` (plus `extra` arguments).
async fn hook_gateway(server: &Server, extra: &[&str]) -> Gateway {
    let (auth, authz) = (server.url("/auth"), server.url("/authz"));
    let mut args = vec![
        "--auth",
        "http",
        "--auth-url",
        &auth,
        "--authz",
        "http",
        "--authz-url",
        &authz,
    ];
    args.extend_from_slice(extra);
    Gateway::start(&args).await
}

async fn expect_unauthorized(gw: &Gateway, token: &str, case: &str) {
    match try_connect(&gw.url(), WS, Creds::token(token)).await {
        ConnectOutcome::ConnectError(v) => assert_eq!(v["message"], "Unauthorized", "{case}: {v}"),
        other => panic!("{case}: expected Unauthorized, got {}", other.describe()),
    }
}

/// The ack of a `join_project`, as its first argument's message or the text.
async fn join_answer(c: &support::TestClient, project: &str) -> String {
    let ack = c
        .emit_ack("join_project", vec![json!({"projectId": project})])
        .await;
    ack[0]["message"]
        .as_str()
        .or(ack[0].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// The sum of the `/metrics` samples of `name` whose labels contain all `labels`.
async fn metric(gw: &Gateway, name: &str, labels: &[&str]) -> f64 {
    let (_, body) = gw.get("/metrics").await.expect("GET /metrics");
    body.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|lab| l.contains(lab)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn joined(project: &str) -> String {
    format!("You have joined {project}!")
}

#[tokio::test]
async fn accept_refuse_allow_deny_and_the_cache() {
    run_bounded(LIMIT, async {
        let server = Server::with_alice().await;
        let b = server.state.clone();
        b.token("tok-old", "expired");
        let gw = hook_gateway(
            &server,
            &["--perm-cache-ttl", "10m", "--auth-cache-ttl", "10m"],
        )
        .await;

        // Refused: unknown token (401), an answer whose exp is past, no token at all.
        expect_unauthorized(&gw, "tok-nobody", "401").await;
        expect_unauthorized(&gw, "tok-old", "exp in the past").await;
        assert!(matches!(
            try_connect(&gw.url(), WS, Creds::none()).await,
            ConnectOutcome::ConnectError(_)
        ));

        // Accepted; a second handshake with the same token asks nothing (cache).
        let c = connect(&gw.url(), WS, Creds::token("tok-alice")).await;
        let calls = b.auth_calls();
        let c2 = connect(&gw.url(), WS, Creds::token("tok-alice")).await;
        assert_eq!(b.auth_calls(), calls, "a cached token was asked again");

        // Allowed, denied by {"allow": false}, denied by 403; a second join asks nothing.
        assert_eq!(join_answer(&c, "p1").await, joined("p1"));
        assert_eq!(join_answer(&c, "p2").await, "Project not found");
        assert_eq!(join_answer(&c, "forbidden").await, "Project not found");
        let calls = b.authz_calls();
        assert_eq!(calls, 3);
        assert_eq!(join_answer(&c2, "p1").await, joined("p1"));
        assert_eq!(join_answer(&c2, "p2").await, "Project not found");
        assert_eq!(b.authz_calls(), calls, "a cached answer was asked again");

        assert_eq!(
            metric(
                &gw,
                "wsgate_hook_calls_total",
                &["hook=\"authz\"", "result=\"allow\""]
            )
            .await,
            1.0
        );
        assert_eq!(
            metric(
                &gw,
                "wsgate_hook_calls_total",
                &["hook=\"authz\"", "result=\"deny\""]
            )
            .await,
            2.0
        );
        assert_eq!(
            metric(&gw, "wsgate_hook_cache_hits_total", &["hook=\"authz\""]).await,
            2.0
        );
        assert!(metric(&gw, "wsgate_hook_cache_hits_total", &["hook=\"auth\""]).await >= 1.0);
        assert!(metric(&gw, "wsgate_hook_seconds_count", &["hook=\"authz\""]).await >= 3.0);
        c.disconnect().await;
        c2.disconnect().await;
    })
    .await;
}

/// `--auth http --authz claim`: the identity hook's `projects` are the permissions; the
/// permission hook is never asked.
#[tokio::test]
async fn identity_hook_projects_with_the_claim_source() {
    run_bounded(LIMIT, async {
        let server = Server::with_alice().await;
        let b = server.state.clone();
        let auth = server.url("/auth");
        let gw = Gateway::start(&["--auth", "http", "--auth-url", &auth, "--authz", "claim"]).await;
        let c = connect(&gw.url(), WS, Creds::token("tok-alice")).await;
        assert_eq!(join_answer(&c, "p1").await, joined("p1"));
        assert_eq!(join_answer(&c, "p2").await, "Project not found");
        assert_eq!(b.authz_calls(), 0, "the permission hook is not in play");
        c.disconnect().await;
    })
    .await;
}

/// `--hook-forward-header` reaches the permission hook whatever the identity source (here
/// the token table, which keeps no headers of its own).
#[tokio::test]
async fn forwarded_headers_reach_the_permission_hook_with_the_token_table() {
    run_bounded(LIMIT, async {
        let server = Server::start().await;
        let b = server.state.clone();
        b.grant("user_2", "p1");
        let authz = server.url("/authz");
        let gw = Gateway::start(&[
            "--authz",
            "http",
            "--authz-url",
            &authz,
            "--hook-forward-header",
            "Authorization",
        ])
        .await;
        let c = connect(&gw.url(), WS, Creds::header("Bearer valid-token-2")).await;
        assert_eq!(join_answer(&c, "p1").await, joined("p1"));
        let seen = b.headers.lock().unwrap().clone().expect("a call");
        assert_eq!(seen.get("authorization").unwrap(), "Bearer valid-token-2");
        c.disconnect().await;
    })
    .await;
}

/// `https://` hook URLs: a backend whose certificate a private CA signed is trusted with
/// `--hook-ca-file`, and refused (the handshake too) without it.
#[tokio::test]
async fn https_hooks_with_a_private_ca() {
    run_bounded(LIMIT, async {
        let pki = support::tls::TestPki::new();
        let server = Server::start_tls(&pki).await;
        let b = server.state.clone();
        b.token("tok-alice", "alice");
        b.grant("alice", "p1");
        let (auth, authz) = (
            format!("https://localhost:{}/auth", server.addr.port()),
            format!("https://localhost:{}/authz", server.addr.port()),
        );
        let args = |ca: Option<&std::path::Path>| {
            let mut a = vec![
                "--auth".to_owned(),
                "http".into(),
                "--auth-url".into(),
                auth.clone(),
                "--authz".into(),
                "http".into(),
                "--authz-url".into(),
                authz.clone(),
            ];
            if let Some(ca) = ca {
                a.extend(["--hook-ca-file".into(), ca.display().to_string()]);
            }
            a
        };
        let trusted = args(Some(&pki.ca));
        let gw = Gateway::start(&trusted.iter().map(String::as_str).collect::<Vec<_>>()).await;
        let c = connect(&gw.url(), WS, Creds::token("tok-alice")).await;
        assert_eq!(join_answer(&c, "p1").await, joined("p1"));
        assert_eq!((b.auth_calls(), b.authz_calls()), (1, 1));
        c.disconnect().await;

        let untrusted = args(None);
        let gw2 = Gateway::start(&untrusted.iter().map(String::as_str).collect::<Vec<_>>()).await;
        expect_unauthorized(
            &gw2,
            "tok-alice",
            "a certificate the built-in roots do not know",
        )
        .await;
        assert_eq!(b.auth_calls(), 1, "no TLS session, no call");
    })
    .await;
}

/// `auth_refresh` asks the identity hook about the new token (or its cache): another of
/// the same user's tokens is taken, an unknown one or another user's is refused.
#[tokio::test]
async fn auth_refresh_asks_the_identity_hook() {
    run_bounded(LIMIT, async {
        let server = Server::with_alice().await;
        let b = server.state.clone();
        b.token("tok-alice-2", "alice");
        b.token("tok-bob", "bob");
        let gw = hook_gateway(&server, &[]).await;
        let c = connect(&gw.url(), WS, Creds::token("tok-alice")).await;
        let calls = b.auth_calls();
        let refresh = |token: &'static str| {
            let c = &c;
            async move {
                c.emit_ack("auth_refresh", vec![json!({ "token": token })])
                    .await
            }
        };
        assert_eq!(refresh("tok-alice-2").await, vec![json!("Token refreshed")]);
        assert_eq!(
            b.auth_calls(),
            calls + 1,
            "the hook was asked about the new token"
        );
        assert_eq!(refresh("tok-nobody").await[0]["message"], "Unauthorized");
        assert_eq!(refresh("tok-bob").await[0]["message"], "Unauthorized");
        // Still alice, still allowed.
        assert_eq!(join_answer(&c, "p1").await, joined("p1"));
        c.disconnect().await;
    })
    .await;
}

#[tokio::test]
async fn a_hundred_concurrent_joins_make_one_call() {
    run_bounded(LIMIT, async {
        let server = Server::with_alice().await;
        let b = server.state.clone();
        b.authz_delay_ms.store(300, Ordering::SeqCst);
        let gw = hook_gateway(&server, &[]).await;
        // One join per client: rust_socketio draws ack ids from 0..999, so several acks in
        // flight on one client collide now and then (and one is never called).
        let url = gw.url();
        let clients = futures_util::future::join_all(
            (0..100).map(|_| connect(&url, WS, Creds::token("tok-alice"))),
        )
        .await;
        let joins = clients.iter().map(|c| join_answer(c, "p1"));
        let answers = futures_util::future::join_all(joins).await;
        assert_eq!(answers.len(), 100);
        assert!(answers.iter().all(|a| *a == joined("p1")), "{answers:?}");
        assert_eq!(b.authz_calls(), 1, "single flight");
        for c in clients {
            c.disconnect().await;
        }
    })
    .await;
}

#[tokio::test]
async fn backend_down_slow_then_back() {
    run_bounded(LIMIT, async {
        let mut server = Server::start().await;
        let b = server.state.clone();
        b.token("tok-alice", "alice");
        b.token("tok-bob", "bob");
        for p in ["p1", "p2", "p3"] {
            b.grant("alice", p);
        }
        let gw = hook_gateway(&server, &["--hook-timeout", "500ms"]).await;
        let c = connect(&gw.url(), WS, Creds::token("tok-alice")).await;

        // Down (connection refused): denied at once, and a new token is refused.
        server.stop().await;
        let start = Instant::now();
        assert_eq!(join_answer(&c, "p1").await, "Project not found");
        assert!(
            start.elapsed() < Duration::from_millis(400),
            "down: {:?}",
            start.elapsed()
        );
        expect_unauthorized(&gw, "tok-bob", "backend down").await;

        // Back: the failure was not cached.
        server.restart().await;
        assert_eq!(join_answer(&c, "p1").await, joined("p1"));

        // Slower than --hook-timeout: denied within the timeout (and a margin).
        b.mode.store(SLOW, Ordering::SeqCst);
        let start = Instant::now();
        assert_eq!(join_answer(&c, "p2").await, "Project not found");
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(450) && took < Duration::from_millis(1500),
            "slow: {took:?}"
        );

        // 500: denied, counted as an error.
        b.mode.store(BROKEN, Ordering::SeqCst);
        assert_eq!(join_answer(&c, "p3").await, "Project not found");

        // Back to normal: works again.
        b.mode.store(NORMAL, Ordering::SeqCst);
        assert_eq!(join_answer(&c, "p2").await, joined("p2"));
        assert_eq!(join_answer(&c, "p3").await, joined("p3"));
        let bob = connect(&gw.url(), WS, Creds::token("tok-bob")).await;

        assert!(
            metric(
                &gw,
                "wsgate_hook_calls_total",
                &["hook=\"authz\"", "result=\"timeout\""]
            )
            .await
                >= 1.0
        );
        assert!(
            metric(
                &gw,
                "wsgate_hook_calls_total",
                &["hook=\"authz\"", "result=\"error\""]
            )
            .await
                >= 2.0
        );
        assert!(
            metric(
                &gw,
                "wsgate_hook_calls_total",
                &["hook=\"auth\"", "result=\"error\""]
            )
            .await
                >= 1.0
        );
        assert!(
            metric(
                &gw,
                "wsgate_auth_refusals_total",
                &["reason=\"hook_failed\""]
            )
            .await
                >= 1.0
        );
        c.disconnect().await;
        bob.disconnect().await;
    })
    .await;
}

#[tokio::test]
async fn revocation_drops_cached_answers_on_every_replica() {
    run_bounded(Duration::from_secs(120), async {
        let server = Server::with_alice().await;
        let b = server.state.clone();
        let redis = RedisServer::start().await;
        let url = redis.url();
        let mut replicas = Vec::new();
        for _ in 0..2 {
            replicas.push(
                hook_gateway(&server, &["--redis-url", &url, "--perm-cache-ttl", "10m"]).await,
            );
        }
        for r in &replicas {
            r.wait_status("/readyz", 200, Duration::from_secs(15)).await;
        }
        redis
            .wait_numsub_at_least("wsgate-control#/#", 2, Duration::from_secs(10))
            .await;
        let mut clients = Vec::new();
        for r in &replicas {
            let mut c = connect(&r.url(), WS, Creds::token("tok-alice")).await;
            c.join("p1").await;
            // Cached: a second join on the replica asks nothing.
            let calls = b.authz_calls();
            assert_eq!(join_answer(&c, "p1").await, joined("p1"));
            assert_eq!(b.authz_calls(), calls);
            clients.push(c);
        }
        assert_eq!(b.authz_calls(), 2, "one call per replica");

        // The application withdraws p1, then revokes: every replica forgets its answer.
        b.revoke("alice", "p1");
        support::revoke_ok(&["--redis-url", &url, "--user", "alice"]).await;
        for c in clients.iter_mut() {
            let (args, _) = c
                .wait_for_event("exception", Duration::from_secs(10))
                .await
                .expect("revocation");
            assert_eq!(args[0]["message"], "Access revoked", "{args:?}");
        }
        for c in &clients {
            assert_eq!(
                join_answer(c, "p1").await,
                "Project not found",
                "stale cached answer"
            );
        }
        assert!(
            b.authz_calls() >= 4,
            "every replica asked again: {}",
            b.authz_calls()
        );

        // An identity answer asked for before a revocation and received after it is used
        // once, not kept: the next handshake with that token asks the backend again.
        b.token("tok-alice-2", "alice");
        b.auth_delay_ms.store(1500, Ordering::SeqCst);
        let url0 = replicas[0].url();
        let in_flight =
            tokio::spawn(async move { connect(&url0, WS, Creds::token("tok-alice-2")).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        support::revoke_ok(&["--redis-url", &url, "--user", "alice"]).await;
        let late = in_flight.await.expect("the handshake in flight");
        b.auth_delay_ms.store(0, Ordering::SeqCst);
        let calls = b.auth_calls();
        let again = connect(&replicas[0].url(), WS, Creds::token("tok-alice-2")).await;
        assert_eq!(
            b.auth_calls(),
            calls + 1,
            "an answer from before the revocation was kept"
        );
        late.disconnect().await;
        again.disconnect().await;
        for c in clients {
            c.disconnect().await;
        }
    })
    .await;
}

#[tokio::test]
async fn no_token_or_header_value_in_the_debug_log() {
    run_bounded(LIMIT, async {
        let mut server = Server::start().await;
        let b = server.state.clone();
        let token = "tok-SECRET-4711";
        let key = "key-SECRET-0815";
        b.token(token, "alice");
        b.grant("alice", "p1");
        let (auth, authz) = (server.url("/auth"), server.url("/authz"));
        let args = [
            "--auth",
            "http",
            "--auth-url",
            &auth,
            "--authz",
            "http",
            "--authz-url",
            &authz,
            "--hook-header",
            "X-Gateway-Key: ${HOOK_TEST_KEY}",
            "--hook-forward-header",
            "Authorization",
            "--hook-timeout",
            "500ms",
        ];
        let env = [("RUST_LOG", "debug"), ("HOOK_TEST_KEY", key)];
        let gw = Gateway::try_start_env("wsgate", &args, &env).await.unwrap();

        let c = connect(&gw.url(), WS, Creds::header(&format!("Bearer {token}"))).await;
        assert_eq!(join_answer(&c, "p1").await, joined("p1"));
        // The configured header is sent, and the chosen handshake header is forwarded.
        let seen = b.headers.lock().unwrap().clone().expect("a call");
        assert_eq!(seen.get("x-gateway-key").unwrap(), key);
        assert_eq!(
            seen.get("authorization").unwrap(),
            &format!("Bearer {token}")
        );
        // Failures are logged (once per kind per 10 s), still without secrets.
        b.mode.store(BROKEN, Ordering::SeqCst);
        assert_eq!(join_answer(&c, "p2").await, "Project not found");
        assert_eq!(join_answer(&c, "p3").await, "Project not found");
        server.stop().await;
        assert_eq!(join_answer(&c, "p4").await, "Project not found");
        expect_unauthorized(&gw, "tok-other-SECRET", "down").await;
        c.disconnect().await;
        tokio::time::sleep(Duration::from_millis(300)).await;

        let log = gw.stderr_tail();
        assert!(log.contains("DEBUG"), "not a debug log:\n{log}");
        let failures: Vec<_> = log
            .lines()
            .filter(|l| l.contains("HTTP hook call failed"))
            .collect();
        assert_eq!(failures.len(), 3, "one line per error kind:\n{log}");
        for secret in [token, key, "SECRET"] {
            assert!(!log.contains(secret), "{secret} in the log:\n{log}");
        }
        assert!(!format!("{:?}", gw.stdout_lines()).contains("SECRET"));
    })
    .await;
}

/// BENCHMARKS.md "Joins through the HTTP permission hook": joins per second with a cold
/// cache (every join a distinct (user, project): one call each) and a warm one (the same
/// joins again: no call). Run: `cargo test --test hooks -- --ignored --nocapture joins_per_second`.
#[tokio::test]
#[ignore = "a measurement, not a check"]
async fn joins_per_second_through_the_hook() {
    const CLIENTS: usize = 20;
    const PROJECTS: usize = 100;
    let server = Server::start().await;
    let b = server.state.clone();
    for u in 0..CLIENTS {
        b.tokens
            .lock()
            .unwrap()
            .insert(format!("tok-{u}"), format!("user-{u}"));
        for p in 0..PROJECTS {
            b.grant(&format!("user-{u}"), &format!("p{p}"));
        }
    }
    let gw = hook_gateway(&server, &["--perm-cache-ttl", "10m"]).await;
    let mut clients = Vec::new();
    for u in 0..CLIENTS {
        clients.push(connect(&gw.url(), WS, Creds::token(&format!("tok-{u}"))).await);
    }
    for round in ["cold", "warm"] {
        let calls = b.authz_calls();
        let start = Instant::now();
        let per_client = clients.iter().map(|c| async move {
            for p in 0..PROJECTS {
                assert_eq!(
                    join_answer(c, &format!("p{p}")).await,
                    joined(&format!("p{p}"))
                );
            }
        });
        futures_util::future::join_all(per_client).await;
        let took = start.elapsed();
        let joins = CLIENTS * PROJECTS;
        println!(
            "{round}: {joins} joins ({CLIENTS} sockets x {PROJECTS} projects, sequential per socket) \
             in {took:?}: {:.0} joins/s, {} hook calls",
            joins as f64 / took.as_secs_f64(),
            b.authz_calls() - calls
        );
    }
    for c in clients {
        c.disconnect().await;
    }
}
