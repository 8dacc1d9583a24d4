//! Identity and access: JWT authentication for every algorithm family and every
//! refusal, JWKS rotation (file change and SIGHUP), token expiry on live connections and
//! `auth_refresh`, Redis-sourced permissions with the per-replica cache on a 3-replica
//! fleet, fleet-wide revocation (with the measured revoke-to-effect time printed), and the
//! per-identity limits. JWTs are minted here with `jsonwebtoken`, with the fixed test keys
//! of `tests/fixtures/jwt/` (made once with openssl).

mod support;

use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use support::client::{connect, try_connect};
use support::redis::{RedisServer, Resp, emitter_channel, emitter_message};
use support::{ConnectOutcome, Creds, Gateway, TestClient, Transport, poll_until, run_bounded};
use tokio::time::{Instant, sleep};

const SECRET: &str = "wsgate-test-secret";
const LIMIT: Duration = Duration::from_secs(90);
const WS: Transport = Transport::Websocket;

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/jwt")
        .join(name)
}

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).expect("test key fixture")
}

fn secret_key(s: &str) -> EncodingKey {
    EncodingKey::from_secret(s.as_bytes())
}

fn mint_with(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_owned);
    encode(&h, claims, key).expect("sign test token")
}

fn hs256(claims: &Value) -> String {
    mint_with(Algorithm::HS256, &secret_key(SECRET), None, claims)
}

fn claims(user: &str, ttl: u64) -> Value {
    json!({"sub": user, "exp": now() + ttl})
}

async fn expect_refused(gw: &Gateway, token: &str, case: &str) {
    match try_connect(&gw.url(), WS, Creds::token(token)).await {
        ConnectOutcome::ConnectError(v) => {
            assert_eq!(v["message"], "Unauthorized", "{case}: {v}");
        }
        other => panic!("{case}: expected Unauthorized, got {}", other.describe()),
    }
}

async fn expect_connects(gw: &Gateway, token: &str, case: &str) -> TestClient {
    match try_connect(&gw.url(), WS, Creds::token(token)).await {
        ConnectOutcome::Connected(mut c) => {
            c.label = case.to_owned();
            c
        }
        other => panic!("{case}: expected to connect, got {}", other.describe()),
    }
}

/// The sum of the `/metrics` samples of `name` whose labels contain all `labels` (every
/// series exists from start-up, so a partial label set matches several, in no set order).
async fn metric(gw: &Gateway, name: &str, labels: &[&str]) -> f64 {
    let (_, body) = gw.get("/metrics").await.expect("GET /metrics");
    body.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|lab| l.contains(lab)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn jwt_gateway(extra: &[&str]) -> Gateway {
    let mut args = vec!["--auth", "jwt"];
    args.extend_from_slice(extra);
    Gateway::start(&args).await
}

#[tokio::test]
async fn jwt_every_algorithm_family_connects() {
    run_bounded(LIMIT, async {
        let exp = claims("alice", 600);
        // HS256/384/512 with a shared secret, and the claim permission source.
        let hs = jwt_gateway(&["--jwt-secret", SECRET, "--authz", "claim"]).await;
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let t = mint_with(alg, &secret_key(SECRET), None, &exp);
            expect_connects(&hs, &t, &format!("{alg:?}"))
                .await
                .disconnect()
                .await;
        }
        // `wsgate token` mints a token the gateway accepts, with its projects claim.
        let out = support::run_wsgate(
            "token",
            &["--secret", SECRET, "--user", "alice", "--projects", "p1,p2"],
            Duration::from_secs(20),
        )
        .await
        .expect("wsgate token");
        assert!(out.success(), "wsgate token: {}", out.stderr);
        let mut c = expect_connects(&hs, out.stdout.trim(), "wsgate token").await;
        c.join("p1").await;
        let ack = c
            .emit_ack("join_project", vec![json!({"projectId": "p3"})])
            .await;
        assert_eq!(ack[0]["message"], "Project not found", "claim without p3");
        c.disconnect().await;

        let pk = |f: &str| fixture(f).display().to_string();
        let families: [(&str, &str, &[Algorithm]); 4] = [
            ("rsa.pub", "rsa.key", &[Algorithm::RS256, Algorithm::PS256]),
            ("ec256.pub", "ec256.key", &[Algorithm::ES256]),
            ("ec384.pub", "ec384.key", &[Algorithm::ES384]),
            ("ed25519.pub", "ed25519.key", &[Algorithm::EdDSA]),
        ];
        for (public, private, algs) in families {
            let gw = jwt_gateway(&["--jwt-public-key", &pk(public)]).await;
            let der = pem(private);
            let key = match algs[0] {
                Algorithm::RS256 => EncodingKey::from_rsa_pem(&der),
                Algorithm::EdDSA => EncodingKey::from_ed_pem(&der),
                _ => EncodingKey::from_ec_pem(&der),
            }
            .expect("private test key");
            for alg in algs {
                let t = mint_with(*alg, &key, None, &exp);
                expect_connects(&gw, &t, &format!("{alg:?}"))
                    .await
                    .disconnect()
                    .await;
            }
            // A token signed by another key of the same family is refused.
            let forged = mint_with(Algorithm::HS256, &secret_key(SECRET), None, &exp);
            expect_refused(&gw, &forged, "HS256 on a public-key gateway").await;
        }
    })
    .await;
}

#[tokio::test]
async fn jwt_refusals_are_unauthorized_and_counted_by_reason() {
    run_bounded(LIMIT, async {
        let gw = jwt_gateway(&[
            "--jwt-secret",
            SECRET,
            "--jwt-algorithms",
            "HS256",
            "--jwt-issuer",
            "wsgate-tests",
            "--jwt-audience",
            "wsgate",
            "--jwt-leeway",
            "0s",
        ])
        .await;
        let good = |extra: Value| {
            let mut c =
                json!({"sub": "alice", "exp": now() + 600, "iss": "wsgate-tests", "aud": "wsgate"});
            if let (Some(c), Value::Object(e)) = (c.as_object_mut(), extra) {
                c.extend(e);
            }
            c
        };
        expect_connects(&gw, &hs256(&good(json!({}))), "valid")
            .await
            .disconnect()
            .await;

        use base64::Engine as _;
        let b64 = |v: &Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
        };
        let unsigned = format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "typ": "JWT"})),
            b64(&good(json!({})))
        );
        let cases: Vec<(&str, String)> = vec![
            ("alg_none", unsigned),
            (
                "alg_not_allowed",
                mint_with(
                    Algorithm::HS384,
                    &secret_key(SECRET),
                    None,
                    &good(json!({})),
                ),
            ),
            (
                "bad_signature",
                mint_with(
                    Algorithm::HS256,
                    &secret_key("another"),
                    None,
                    &good(json!({})),
                ),
            ),
            ("expired", hs256(&good(json!({"exp": now() - 10})))),
            ("not_yet_valid", hs256(&good(json!({"nbf": now() + 3600})))),
            ("wrong_issuer", hs256(&good(json!({"iss": "someone-else"})))),
            (
                "wrong_audience",
                hs256(&good(json!({"aud": "another-app"}))),
            ),
            ("malformed", "not-a-jwt".to_owned()),
            ("too_long", hs256(&good(json!({"pad": "x".repeat(9000)})))),
        ];
        for (reason, token) in &cases {
            expect_refused(&gw, token, reason).await;
        }
        for (reason, _) in &cases {
            let label = format!("reason=\"{reason}\"");
            let n = metric(
                &gw,
                "wsgate_auth_refusals_total",
                &[&label, "stage=\"handshake\""],
            )
            .await;
            assert!(n >= 1.0, "no refusal counted for {reason}");
        }
    })
    .await;
}

/// RFC 7519's `sub` is a string: a number there is refused (and counted) unless
/// `--jwt-numeric-sub` lets it through as its JSON text.
#[tokio::test]
async fn a_numeric_sub_is_refused_unless_allowed() {
    run_bounded(LIMIT, async {
        let numeric = hs256(&json!({"sub": 42, "exp": now() + 600}));
        let strict = jwt_gateway(&["--jwt-secret", SECRET]).await;
        expect_refused(&strict, &numeric, "numeric sub").await;
        let n = metric(
            &strict,
            "wsgate_auth_refusals_total",
            &["reason=\"numeric_sub\"", "stage=\"handshake\""],
        )
        .await;
        assert_eq!(n, 1.0, "numeric_sub refusal not counted");
        expect_connects(&strict, &hs256(&claims("42", 600)), "string sub")
            .await
            .disconnect()
            .await;
        drop(strict);
        let lenient = jwt_gateway(&["--jwt-secret", SECRET, "--jwt-numeric-sub"]).await;
        expect_connects(&lenient, &numeric, "numeric sub allowed")
            .await
            .disconnect()
            .await;
    })
    .await;
}

fn jwks(kids: &[&str]) -> String {
    use base64::Engine as _;
    let keys: Vec<Value> = kids
        .iter()
        .map(|kid| {
            let k = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(format!("{SECRET}-{kid}").as_bytes());
            json!({"kty": "oct", "kid": kid, "alg": "HS256", "k": k})
        })
        .collect();
    json!({ "keys": keys }).to_string()
}

fn kid_token(kid: &str) -> String {
    let key = secret_key(&format!("{SECRET}-{kid}"));
    mint_with(Algorithm::HS256, &key, Some(kid), &claims("alice", 600))
}

async fn wait_accepts(gw: &Gateway, token: &str, what: &str) {
    let ok = poll_until(
        Duration::from_secs(15),
        Duration::from_millis(100),
        || async {
            match try_connect(&gw.url(), WS, Creds::token(token)).await {
                ConnectOutcome::Connected(c) => {
                    c.disconnect().await;
                    Some(())
                }
                _ => None,
            }
        },
    )
    .await;
    assert!(
        ok.is_some(),
        "{what}: the new key was never accepted\n{}",
        gw.stderr_tail()
    );
}

#[tokio::test]
async fn jwks_keys_rotate_on_file_change_and_on_sighup() {
    run_bounded(LIMIT, async {
        let dir = std::env::temp_dir().join(format!("wsgate-jwks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("jwks.json");
        std::fs::write(&file, jwks(&["k1"])).unwrap();
        let path = file.display().to_string();

        let gw = jwt_gateway(&["--jwt-jwks", &path, "--jwt-jwks-poll", "200ms"]).await;
        expect_connects(&gw, &kid_token("k1"), "k1")
            .await
            .disconnect()
            .await;
        expect_refused(&gw, &kid_token("k2"), "k2 before rotation").await;
        std::fs::write(&file, jwks(&["k2"])).unwrap();
        wait_accepts(&gw, &kid_token("k2"), "file change").await;
        expect_refused(&gw, &kid_token("k1"), "k1 after rotation").await;
        assert!(
            gw.stderr_tail().contains("JWKS reloaded"),
            "no reload log line"
        );
        assert!(
            metric(
                &gw,
                "wsgate_auth_refusals_total",
                &["reason=\"unknown_key\""]
            )
            .await
                >= 1.0
        );

        // The file watch idles for an hour here: only SIGHUP can load the new key.
        let file2 = dir.join("jwks2.json");
        std::fs::write(&file2, jwks(&["k3"])).unwrap();
        let path2 = file2.display().to_string();
        let hup = jwt_gateway(&["--jwt-jwks", &path2, "--jwt-jwks-poll", "1h"]).await;
        std::fs::write(&file2, jwks(&["k4"])).unwrap();
        expect_refused(&hup, &kid_token("k4"), "k4 before SIGHUP").await;
        let pid = hup.pid().expect("gateway pid").to_string();
        let status = std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("kill -HUP");
        assert!(status.success());
        wait_accepts(&hup, &kid_token("k4"), "SIGHUP").await;
        assert!(
            hup.stderr_tail().contains("SIGHUP"),
            "no SIGHUP reload log line"
        );
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

/// Waits until the server closes `c`'s connection.
async fn wait_closed(c: &mut TestClient, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if c.lifecycle_problems().iter().any(|p| p.contains("closed")) {
            return true;
        }
        sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Waits for `token_expired` and checks it came at `exp` (whole seconds): not before, and
/// not long after.
async fn expect_expiry_at(c: &mut TestClient, exp: u64) {
    let (args, _) = c
        .wait_for_event("token_expired", Duration::from_secs(8))
        .await
        .unwrap_or_else(|| panic!("{}: no token_expired", c.label));
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert_eq!(args[0]["message"], "Token expired");
    assert!(
        at >= exp as f64 - 0.05,
        "{}: expired early: at {at}, exp {exp}",
        c.label
    );
    assert!(
        at < exp as f64 + 3.0,
        "{}: expired late: at {at}, exp {exp}",
        c.label
    );
}

#[tokio::test]
async fn expiry_disconnects_at_exp_and_refresh_extends_it() {
    run_bounded(LIMIT, async {
        let gw = jwt_gateway(&["--jwt-secret", SECRET, "--jwt-leeway", "0s"]).await;
        let exp = now() + 3;
        let token = hs256(&json!({"sub": "alice", "exp": exp}));
        let mut a = expect_connects(&gw, &token, "a").await;
        let mut b = expect_connects(&gw, &token, "b").await;

        // A refresh for another user is refused and changes nothing.
        let bob = hs256(&claims("bob", 600));
        let ack = b
            .emit_ack("auth_refresh", vec![json!({"token": bob})])
            .await;
        assert_eq!(ack[0]["message"], "Unauthorized", "{ack:?}");
        let ack = b
            .emit_ack("auth_refresh", vec![json!({"token": "garbage"})])
            .await;
        assert_eq!(ack[0]["message"], "Unauthorized", "{ack:?}");
        let later = now() + 6;
        let fresh = hs256(&json!({"sub": "alice", "exp": later}));
        let ack = b
            .emit_ack("auth_refresh", vec![json!({"token": fresh})])
            .await;
        assert_eq!(ack, vec![json!("Token refreshed")]);

        expect_expiry_at(&mut a, exp).await;
        assert!(
            wait_closed(&mut a, Duration::from_secs(5)).await,
            "a not disconnected"
        );

        // b was refreshed: still connected past the first exp, then expires at the new one.
        let seen = b.events_during(Duration::from_millis(500)).await;
        assert!(
            !seen.iter().any(|(e, _)| e == "token_expired"),
            "b expired despite the refresh: {seen:?}"
        );
        expect_expiry_at(&mut b, later).await;
        assert!(
            wait_closed(&mut b, Duration::from_secs(5)).await,
            "b not disconnected"
        );
        assert!(
            metric(
                &gw,
                "wsgate_auth_refusals_total",
                &["reason=\"other_user\"", "stage=\"refresh\""]
            )
            .await
                >= 1.0
        );
    })
    .await;
}

async fn smembers_calls(redis: &RedisServer) -> u64 {
    let info = match redis.command(&["INFO", "commandstats"]).await {
        Resp::Bulk(Some(b)) => String::from_utf8_lossy(&b).into_owned(),
        other => panic!("INFO answered {other:?}"),
    };
    info.lines()
        .find(|l| l.starts_with("cmdstat_smembers:"))
        .and_then(|l| l.split("calls=").nth(1))
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Waits for the `Access revoked` exception of `project` on every client; returns the
/// time from `start` at which each arrived.
async fn revoked_everywhere(
    clients: &mut [TestClient],
    project: &str,
    start: Instant,
) -> Vec<Duration> {
    let mut took = Vec::new();
    for c in clients.iter_mut() {
        let (args, _) = c
            .wait_for_event("exception", Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("{}: no revocation", c.label));
        took.push(start.elapsed());
        assert_eq!(
            args[0],
            json!({"status": "error", "message": "Access revoked",
                   "cause": {"pattern": "revoke", "data": {"projectId": project}}}),
            "{}",
            c.label
        );
    }
    took
}

/// The `latency_ms` of the replica's last `revocation applied` log line (`?` if none).
fn applied_latency_ms(r: &Gateway) -> String {
    let log = r.stderr_tail();
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("revocation applied"))
        .unwrap_or("");
    // Text logs to a pipe are plain (colours only on a terminal).
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escape in a piped log:\n{log}"
    );
    line.split("latency_ms=")
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .unwrap_or("?")
        .to_owned()
}

/// Publish a `chat` update to `room` as `@socket.io/redis-emitter` does.
async fn publish(redis: &RedisServer, room: &str) {
    let msg = emitter_message("chat", &[json!(room)], &[room], &[]);
    redis.publish_raw(&emitter_channel(&[room]), &msg).await;
}

#[tokio::test]
async fn redis_permissions_cache_and_revocation_on_a_three_replica_fleet() {
    run_bounded(Duration::from_secs(120), async {
        let redis = RedisServer::start().await;
        let url = redis.url();
        let mut replicas = Vec::new();
        for i in 0..3 {
            let args = [
                "--redis-url", &url, "--auth", "jwt", "--jwt-secret", SECRET,
                "--authz", "redis", "--perm-cache-ttl", "10m",
            ];
            replicas.push(Gateway::start_named(&format!("replica-{i}"), &args).await);
        }
        for r in &replicas {
            r.wait_status("/readyz", 200, Duration::from_secs(15)).await;
        }
        redis
            .wait_numsub_at_least("wsgate-control#/#", 3, Duration::from_secs(10))
            .await;
        redis.command(&["SADD", "wsgate:perm:alice", "project_a", "project_b"]).await;
        let token = hs256(&claims("alice", 600));

        let mut clients = Vec::new();
        for (i, r) in replicas.iter().enumerate() {
            let mut c = connect(&r.url(), WS, Creds::token(&token)).await;
            c.label = format!("alice@replica-{i}");
            c.join("project_a").await;
            c.join("project_b").await;
            let ack = c.emit_ack("join_project", vec![json!({"projectId": "project_c"})]).await;
            assert_eq!(ack[0]["message"], "Project not found");
            c.wait_for_event("exception", Duration::from_secs(5)).await.expect("denial event");
            clients.push(c);
        }
        // Warm cache: another socket of alice joining on a replica asks Redis nothing.
        let before = smembers_calls(&redis).await;
        let mut extra = connect(&replicas[0].url(), WS, Creds::token(&token)).await;
        extra.label = "alice#2@replica-0".into();
        extra.join("project_a").await;
        extra.join("project_b").await;
        assert_eq!(smembers_calls(&redis).await, before, "a warm join went to Redis");
        clients.push(extra);

        // Remove the member in Redis, then revoke (library call): every replica acts.
        redis.command(&["SREM", "wsgate:perm:alice", "project_a"]).await;
        let publisher = wsgate::publish::Publisher::new(&url).unwrap();
        let start = Instant::now();
        let receivers = publisher.revoke("alice", Some("project_a")).await.unwrap();
        assert!(receivers >= 3, "control message reached {receivers} subscribers");
        let took = revoked_everywhere(&mut clients, "project_a", start).await;
        let max = took.iter().max().copied().unwrap_or_default();
        println!("revoke-to-effect (library call, loopback, 3 replicas): per client {took:?}, last {max:?}");
        for r in &replicas {
            println!("  {} acted {} ms after the publish (its own log)", r.name, applied_latency_ms(r));
        }

        // No more project_a updates; project_b still flows; no stale cache re-admits.
        publish(&redis, "project_a").await;
        publish(&redis, "project_b").await;
        for c in clients.iter_mut() {
            let got = c.collect("chat", 1, Duration::from_secs(5)).await;
            assert_eq!(got, vec![vec![json!("project_b")]], "{}", c.label);
            let more = c.events_during(Duration::from_millis(300)).await;
            assert!(more.is_empty(), "{}: unexpected {more:?}", c.label);
            let ack = c.emit_ack("join_project", vec![json!({"projectId": "project_a"})]).await;
            assert_eq!(ack[0]["message"], "Project not found", "{}: stale admit", c.label);
            c.wait_for_event("exception", Duration::from_secs(5)).await.expect("denial event");
        }

        // Revoke without a project, with the command: only what Redis no longer grants goes.
        redis.command(&["SREM", "wsgate:perm:alice", "project_b"]).await;
        let start = Instant::now();
        support::revoke_ok(&["--redis-url", &url, "--user", "alice"]).await;
        let took = revoked_everywhere(&mut clients, "project_b", start).await;
        println!(
            "revoke-to-effect (`wsgate revoke` process, loopback, 3 replicas): last {:?}",
            took.iter().max().copied().unwrap_or_default()
        );
        publish(&redis, "project_b").await;
        for c in clients.iter_mut() {
            c.assert_no_event(Duration::from_millis(300)).await;
        }
        for r in &replicas {
            assert!(metric(r, "wsgate_revocations_total", &[]).await >= 2.0);
        }
    })
    .await;
}

#[tokio::test]
async fn per_identity_limits_refuse_clearly_and_are_counted() {
    run_bounded(LIMIT, async {
        let gw = Gateway::start(&[
            "--max-connections-per-user",
            "2",
            "--max-rooms-per-socket",
            "1",
        ])
        .await;
        let a = connect(&gw.url(), WS, Creds::token("valid-token-2")).await;
        let mut b = connect(&gw.url(), WS, Creds::token("valid-token-2")).await;
        match try_connect(&gw.url(), WS, Creds::token("valid-token-2")).await {
            ConnectOutcome::ConnectError(v) => assert_eq!(v["message"], "Too many connections"),
            other => panic!("third connection: {}", other.describe()),
        }
        // Another user is not affected; a freed slot can be used again.
        connect(&gw.url(), WS, Creds::token("valid-token-1"))
            .await
            .disconnect()
            .await;
        a.disconnect().await;
        let again = poll_until(
            Duration::from_secs(5),
            Duration::from_millis(100),
            || async {
                match try_connect(&gw.url(), WS, Creds::token("valid-token-2")).await {
                    ConnectOutcome::Connected(c) => Some(c),
                    _ => None,
                }
            },
        )
        .await;
        assert!(again.is_some(), "slot not freed after disconnect");

        b.join("project_one").await;
        let ack = b
            .emit_ack("join_project", vec![json!({"projectId": "project_two"})])
            .await;
        assert_eq!(
            ack[0],
            json!({"status": "error", "message": "Too many rooms",
                   "cause": {"pattern": "join_project", "data": {"projectId": "project_two"}}})
        );
        b.join("project_one").await; // already in it: not a new room
        assert!(
            metric(
                &gw,
                "wsgate_limit_refusals_total",
                &["connections_per_user"]
            )
            .await
                >= 1.0
        );
        assert!(metric(&gw, "wsgate_limit_refusals_total", &["rooms_per_socket"]).await >= 1.0);
    })
    .await;
}
