//! Client contract (docs/client-contract.md), one test per row, each run over both Engine.IO
//! transports (`websocket::<row>` and `polling::<row>`), against the real `wsgate` binary
//! with its embedded demo identities:
//! tokens valid-token-1 -> user_1 [project_one], valid-token-2 -> user_2
//! [project_one, project_two, project_three], valid-token-3 -> user_3 [project_three].

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::client::{connect, connect_token, try_connect};
use support::{ConnectOutcome, Creds, Gateway, TestClient, Transport, run_bounded};

const TEST_TIMEOUT: Duration = Duration::from_secs(60);

macro_rules! for_both_transports {
    ($($name:ident),* $(,)?) => {
        mod websocket {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crate::support::run_bounded(
                        crate::TEST_TIMEOUT,
                        super::$name(crate::support::Transport::Websocket),
                    )
                    .await;
                }
            )*
        }
        mod polling {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crate::support::run_bounded(
                        crate::TEST_TIMEOUT,
                        super::$name(crate::support::Transport::Polling),
                    )
                    .await;
                }
            )*
        }
    };
}

for_both_transports!(
    connect_with_authorization_header_raw,
    connect_with_authorization_header_bearer,
    connect_with_auth_token,
    connect_unauthorized_missing_token,
    connect_unauthorized_empty_token,
    connect_unauthorized_non_string_token,
    connect_unauthorized_auth_not_an_object,
    connect_unauthorized_unknown_token,
    message_replies_hello_world_event,
    message_replies_hello_world_ack,
    join_project_event_and_ack,
    leave_project_event_and_ack,
    invalid_payload_missing,
    invalid_payload_not_an_object,
    invalid_payload_project_id_missing,
    invalid_payload_project_id_wrong_type,
    invalid_payload_project_id_empty,
    invalid_payload_project_id_too_long,
    invalid_payload_project_id_control_characters,
    not_permitted_project_not_found_forbidden_and_unknown_identical,
    not_permitted_project_not_found_echoes_sent_object,
    room_update_reaches_members_only,
);

// ---------------------------------------------------------------------------------------
// helpers

/// Key order is part of the contract; it is only observable when serde_json keeps the
/// order of object keys (feature `preserve_order`, enabled by the crate's dependencies).
fn assert_key_order_observable() {
    let v: Value = serde_json::from_str(r#"{"b":1,"a":2}"#).unwrap();
    assert_eq!(
        v.to_string(),
        r#"{"b":1,"a":2}"#,
        "serde_json must be built with preserve_order for the key-order checks"
    );
}

/// Exact equality: same JSON value, and same serialization (so the same key order).
#[track_caller]
fn assert_json_exact(got: &[Value], want: &Value, what: &str) {
    assert_key_order_observable();
    assert_eq!(
        got.len(),
        1,
        "{what}: expected exactly one argument, got {got:?}"
    );
    assert_eq!(&got[0], want, "{what}: value differs");
    assert_eq!(
        got[0].to_string(),
        want.to_string(),
        "{what}: same value but different key order"
    );
}

fn validation_event(issue: &Value) -> Value {
    json!({"message": "Validation failed", "errors": [issue]})
}

fn validation_ack(issue: &Value) -> Value {
    json!({"status": "error", "message": "Validation failed", "errors": [issue]})
}

fn not_found(payload: &Value) -> Value {
    json!({
        "status": "error",
        "message": "Project not found",
        "cause": {"pattern": "join_project", "data": payload}
    })
}

/// Sends `event(args)` once without and once with an ack, and checks the exception event
/// (both times) and the ack against `issue`.
async fn check_invalid(c: &mut TestClient, event: &str, args: Vec<Value>, issue: &Value) {
    let what = format!("{:?} {event} {args:?}", c.transport);
    c.emit(event, args.clone()).await;
    let ev = c.expect_event("exception").await;
    assert_json_exact(
        &ev,
        &validation_event(issue),
        &format!("{what}: exception event"),
    );

    let ack = c.emit_ack(event, args.clone()).await;
    assert_json_exact(&ack, &validation_ack(issue), &format!("{what}: ack"));
    let ev = c.expect_event("exception").await;
    assert_json_exact(
        &ev,
        &validation_event(issue),
        &format!("{what}: exception event (with ack)"),
    );
}

/// `join_project(payload)` must be refused with `Project not found` (event and ack).
async fn check_not_found(c: &mut TestClient, payload: Value) -> (Vec<Value>, Vec<Value>) {
    let what = format!("{:?} join_project {payload}", c.transport);
    let want = not_found(&payload);
    c.emit("join_project", vec![payload.clone()]).await;
    let ev = c.expect_event("exception").await;
    assert_json_exact(&ev, &want, &format!("{what}: exception event"));

    let ack = c.emit_ack("join_project", vec![payload.clone()]).await;
    assert_json_exact(&ack, &want, &format!("{what}: ack"));
    let ev2 = c.expect_event("exception").await;
    assert_json_exact(&ev2, &want, &format!("{what}: exception event (with ack)"));
    (ev, ack)
}

/// Joining `project` works (event and ack).
async fn check_joins(c: &mut TestClient, project: &str) {
    c.join(project).await;
}

async fn expect_unauthorized(gw: &Gateway, t: Transport, creds: Creds) {
    let what = format!("{t:?} {creds:?}");
    match try_connect(&gw.url(), t, creds).await {
        ConnectOutcome::ConnectError(data) => {
            assert_eq!(
                data.get("message"),
                Some(&json!("Unauthorized")),
                "{what}: connect_error data {data}"
            );
        }
        ConnectOutcome::Connected(c) => {
            c.disconnect().await;
            panic!("{what}: expected connect_error Unauthorized, but the connection was accepted");
        }
        ConnectOutcome::Failed(e) => {
            panic!("{what}: expected connect_error Unauthorized, got a failed connection: {e}")
        }
    }
}

// ---------------------------------------------------------------------------------------
// connect

async fn connect_with_authorization_header_raw(t: Transport) {
    let gw = Gateway::start(&[]).await;
    // valid-token-3 -> user_3, allowed project_three only.
    let mut c = connect(&gw.url(), t, Creds::header("valid-token-3")).await;
    check_joins(&mut c, "project_three").await;
    check_not_found(&mut c, json!({"projectId": "project_one"})).await;
    c.disconnect().await;
}

async fn connect_with_authorization_header_bearer(t: Transport) {
    let gw = Gateway::start(&[]).await;
    // valid-token-2 -> user_2, allowed all three projects.
    let mut c = connect(&gw.url(), t, Creds::header("Bearer valid-token-2")).await;
    check_joins(&mut c, "project_two").await;
    check_joins(&mut c, "project_three").await;
    c.disconnect().await;

    // valid-token-1 -> user_1, allowed project_one only.
    let mut c = connect(&gw.url(), t, Creds::header("Bearer valid-token-1")).await;
    check_joins(&mut c, "project_one").await;
    check_not_found(&mut c, json!({"projectId": "project_two"})).await;
    c.disconnect().await;
}

async fn connect_with_auth_token(t: Transport) {
    let gw = Gateway::start(&[]).await;
    let mut c = connect_token(&gw.url(), t, "valid-token-1").await;
    check_joins(&mut c, "project_one").await;
    check_not_found(&mut c, json!({"projectId": "project_three"})).await;
    c.disconnect().await;

    let mut c = connect_token(&gw.url(), t, "valid-token-3").await;
    check_joins(&mut c, "project_three").await;
    c.disconnect().await;
}

async fn connect_unauthorized_missing_token(t: Transport) {
    let gw = Gateway::start(&[]).await;
    // No header, no auth at all.
    expect_unauthorized(&gw, t, Creds::none()).await;
    // auth object without a token.
    expect_unauthorized(&gw, t, Creds::auth(json!({}))).await;
    expect_unauthorized(&gw, t, Creds::auth(json!({"tok": "valid-token-1"}))).await;
}

async fn connect_unauthorized_empty_token(t: Transport) {
    let gw = Gateway::start(&[]).await;
    expect_unauthorized(&gw, t, Creds::token("")).await;
    expect_unauthorized(&gw, t, Creds::header("")).await;
    expect_unauthorized(&gw, t, Creds::header("Bearer ")).await;
}

async fn connect_unauthorized_non_string_token(t: Transport) {
    let gw = Gateway::start(&[]).await;
    for token in [
        json!(123),
        json!(true),
        json!(null),
        json!(["valid-token-1"]),
        json!({"token": "valid-token-1"}),
    ] {
        expect_unauthorized(&gw, t, Creds::auth(json!({ "token": token }))).await;
    }
}

async fn connect_unauthorized_auth_not_an_object(t: Transport) {
    let gw = Gateway::start(&[]).await;
    for auth in [json!("valid-token-1"), json!(["valid-token-1"]), json!(42)] {
        expect_unauthorized(&gw, t, Creds::auth(auth)).await;
    }
}

async fn connect_unauthorized_unknown_token(t: Transport) {
    let gw = Gateway::start(&[]).await;
    expect_unauthorized(&gw, t, Creds::token("nope")).await;
    expect_unauthorized(&gw, t, Creds::token("valid-token-1 ")).await;
    expect_unauthorized(&gw, t, Creds::token("VALID-TOKEN-1")).await;
    expect_unauthorized(&gw, t, Creds::header("nope")).await;
    expect_unauthorized(&gw, t, Creds::header("Bearer nope")).await;
    // A known token still connects afterwards.
    let c = connect_token(&gw.url(), t, "valid-token-1").await;
    c.disconnect().await;
}

// ---------------------------------------------------------------------------------------
// message

fn message_payloads() -> Vec<Vec<Value>> {
    vec![
        vec![json!("hi")],
        vec![json!({"a": 1})],
        vec![json!(5)],
        vec![json!(null)],
        vec![json!([1, 2, 3])],
        vec![],
        vec![json!("two"), json!("args")],
    ]
}

async fn message_replies_hello_world_event(t: Transport) {
    let gw = Gateway::start(&[]).await;
    let mut c = connect_token(&gw.url(), t, "valid-token-1").await;
    for p in message_payloads() {
        c.emit("message", p.clone()).await;
        let ev = c.expect_event("message").await;
        assert_eq!(ev, vec![json!("Hello world!")], "message {p:?}");
    }
    c.assert_no_event(Duration::from_millis(300)).await;
    c.disconnect().await;
}

async fn message_replies_hello_world_ack(t: Transport) {
    let gw = Gateway::start(&[]).await;
    let mut c = connect_token(&gw.url(), t, "valid-token-2").await;
    for p in message_payloads() {
        let ack = c.emit_ack("message", p.clone()).await;
        assert_eq!(ack, vec![json!("Hello world!")], "ack of message {p:?}");
        let ev = c.expect_event("message").await;
        assert_eq!(ev, vec![json!("Hello world!")], "event after message {p:?}");
    }
    c.assert_no_event(Duration::from_millis(300)).await;
    c.disconnect().await;
}

// ---------------------------------------------------------------------------------------
// join / leave

async fn join_project_event_and_ack(t: Transport) {
    let gw = Gateway::start(&[]).await;
    let mut c = connect_token(&gw.url(), t, "valid-token-2").await;
    // Without ack: the event only.
    c.emit("join_project", vec![json!({"projectId": "project_one"})])
        .await;
    let ev = c.expect_event("join_project").await;
    assert_json_exact(&ev, &json!("You have joined project_one!"), "join event");
    // With ack: the ack and the event.
    for p in ["project_two", "project_three", "project_one"] {
        let want = json!(format!("You have joined {p}!"));
        let ack = c
            .emit_ack("join_project", vec![json!({"projectId": p})])
            .await;
        assert_json_exact(&ack, &want, "join ack");
        let ev = c.expect_event("join_project").await;
        assert_json_exact(&ev, &want, "join event (with ack)");
    }
    c.assert_no_event(Duration::from_millis(300)).await;
    c.disconnect().await;
}

async fn leave_project_event_and_ack(t: Transport) {
    let gw = Gateway::start(&[]).await;
    let mut c = connect_token(&gw.url(), t, "valid-token-2").await;
    c.join("project_one").await;
    c.join("project_two").await;
    c.emit("leave_project", vec![json!({"projectId": "project_one"})])
        .await;
    let ev = c.expect_event("leave_project").await;
    assert_json_exact(&ev, &json!("You have left project_one!"), "leave event");

    let want = json!("You have left project_two!");
    let ack = c
        .emit_ack("leave_project", vec![json!({"projectId": "project_two"})])
        .await;
    assert_json_exact(&ack, &want, "leave ack");
    let ev = c.expect_event("leave_project").await;
    assert_json_exact(&ev, &want, "leave event (with ack)");
    c.assert_no_event(Duration::from_millis(300)).await;
    c.disconnect().await;
}

// ---------------------------------------------------------------------------------------
// invalid payloads (zod v3 issue shapes, exact key order)

const VALIDATED_EVENTS: [&str; 2] = ["join_project", "leave_project"];

async fn invalid_payload_missing(t: Transport) {
    let gw = Gateway::start(&[]).await;
    let mut c = connect_token(&gw.url(), t, "valid-token-2").await;
    let issue = json!({"code":"invalid_type","expected":"object","received":"undefined","path":[],"message":"Required"});
    for ev in VALIDATED_EVENTS {
        check_invalid(&mut c, ev, vec![], &issue).await;
    }
    c.assert_no_event(Duration::from_millis(300)).await;
    c.disconnect().await;
}

async fn invalid_payload_not_an_object(t: Transport) {
    let gw = Gateway::start(&[]).await;
    let mut c = connect_token(&gw.url(), t, "valid-token-2").await;
    let cases = [
        (json!("project_one"), "string"),
        (json!(""), "string"),
        (json!(5), "number"),
        (json!(1.5), "number"),
        (json!(true), "boolean"),
        (json!(false), "boolean"),
        (json!(null), "null"),
        (json!([]), "array"),
        (json!([{"projectId": "project_one"}]), "array"),
    ];
    for ev in VALIDATED_EVENTS {
        for (payload, received) in &cases {
            let issue = json!({
                "code": "invalid_type",
                "expected": "object",
                "received": received,
                "path": [],
                "message": format!("Expected object, received {received}")
            });
            check_invalid(&mut c, ev, vec![payload.clone()], &issue).await;
        }
    }
    c.assert_no_event(Duration::from_millis(300)).await;
    c.disconnect().await;
}

async fn invalid_payload_project_id_missing(t: Transport) {
    let gw = Gateway::start(&[]).await;
    let mut c = connect_token(&gw.url(), t, "valid-token-2").await;
    let issue = json!({"code":"invalid_type","expected":"string","received":"undefined","path":["projectId"],"message":"Required"});
    for ev in VALIDATED_EVENTS {
        for payload in [
            json!({}),
            json!({"projectid": "project_one"}),
            json!({"project_id": "project_one"}),
        ] {
            check_invalid(&mut c, ev, vec![payload], &issue).await;
        }
    }
    c.assert_no_event(Duration::from_millis(300)).await;
    c.disconnect().await;
}

async fn invalid_payload_project_id_wrong_type(t: Transport) {
    let gw = Gateway::start(&[]).await;
    let mut c = connect_token(&gw.url(), t, "valid-token-2").await;
    let cases = [
        (json!(5), "number"),
        (json!(0), "number"),
        (json!(null), "null"),
        (json!(true), "boolean"),
        (json!({}), "object"),
        (json!({"id": "project_one"}), "object"),
        (json!([]), "array"),
        (json!(["project_one"]), "array"),
    ];
    for ev in VALIDATED_EVENTS {
        for (id, received) in &cases {
            let issue = json!({
                "code": "invalid_type",
                "expected": "string",
                "received": received,
                "path": ["projectId"],
                "message": format!("Expected string, received {received}")
            });
            check_invalid(&mut c, ev, vec![json!({ "projectId": id })], &issue).await;
        }
    }
    c.assert_no_event(Duration::from_millis(300)).await;
    c.disconnect().await;
}

async fn invalid_payload_project_id_empty(t: Transport) {
    let gw = Gateway::start(&[]).await;
    let mut c = connect_token(&gw.url(), t, "valid-token-2").await;
    let issue = json!({"code":"too_small","minimum":1,"type":"string","inclusive":true,"exact":false,"message":"String must contain at least 1 character(s)","path":["projectId"]});
    for ev in VALIDATED_EVENTS {
        check_invalid(&mut c, ev, vec![json!({"projectId": ""})], &issue).await;
    }
    c.assert_no_event(Duration::from_millis(300)).await;
    c.disconnect().await;
}

async fn invalid_payload_project_id_too_long(t: Transport) {
    let gw = Gateway::start(&[]).await;
    let mut c = connect_token(&gw.url(), t, "valid-token-1").await;
    let issue = json!({"code":"too_big","maximum":256,"type":"string","inclusive":true,"exact":false,"message":"String must contain at most 256 character(s)","path":["projectId"]});
    let too_long = [
        "a".repeat(257),
        "a".repeat(5000),
        // 129 chars but 258 UTF-16 code units.
        "\u{1F600}".repeat(129),
    ];
    for ev in VALIDATED_EVENTS {
        for id in &too_long {
            check_invalid(&mut c, ev, vec![json!({ "projectId": id })], &issue).await;
        }
    }
    // At the limit: valid, so the answer is the authorization one (user_1 may not see them).
    for id in [
        "a".repeat(256),
        "\u{1F600}".repeat(128), // 256 UTF-16 code units, 512 bytes
        "\u{e9}".repeat(256),    // 256 UTF-16 code units, 512 bytes
    ] {
        check_not_found(&mut c, json!({ "projectId": id })).await;
    }
    c.assert_no_event(Duration::from_millis(300)).await;
    c.disconnect().await;
}

async fn invalid_payload_project_id_control_characters(t: Transport) {
    let gw = Gateway::start(&[]).await;
    let mut c = connect_token(&gw.url(), t, "valid-token-1").await;
    let issue = json!({"validation":"regex","code":"invalid_string","message":"Must not contain control characters","path":["projectId"]});
    let bad = [
        "project\u{0}one",
        "\u{1}",
        "\u{1f}",
        "project_one\n",
        "\tproject_one",
        "a\u{7f}",
        "\u{80}b",
        "a\u{9f}b",
    ];
    for ev in VALIDATED_EVENTS {
        for id in bad {
            check_invalid(&mut c, ev, vec![json!({ "projectId": id })], &issue).await;
        }
    }
    // Just outside the control ranges: valid, so the authorization answer.
    for id in ["a\u{a0}b", "a b", "~", "\u{20}"] {
        check_not_found(&mut c, json!({ "projectId": id })).await;
    }
    c.assert_no_event(Duration::from_millis(300)).await;
    c.disconnect().await;
}

// ---------------------------------------------------------------------------------------
// not permitted

async fn not_permitted_project_not_found_forbidden_and_unknown_identical(t: Transport) {
    let gw = Gateway::start(&[]).await;
    let mut c1 = connect_token(&gw.url(), t, "valid-token-1").await;
    // Forbidden (exists) and unknown must give the same answer, up to the echoed payload.
    let (forbidden_ev, forbidden_ack) =
        check_not_found(&mut c1, json!({"projectId": "project_two"})).await;
    let (unknown_ev, unknown_ack) =
        check_not_found(&mut c1, json!({"projectId": "project_two_"})).await;
    let strip = |v: &[Value]| {
        let mut v = v[0].clone();
        v["cause"]["data"] = json!(null);
        v.to_string()
    };
    assert_eq!(strip(&forbidden_ev), strip(&unknown_ev));
    assert_eq!(strip(&forbidden_ack), strip(&unknown_ack));
    check_not_found(&mut c1, json!({"projectId": "project_three"})).await;
    check_not_found(&mut c1, json!({"projectId": "no_such_project"})).await;
    // The refusals did not break the socket: a permitted join still works.
    c1.join("project_one").await;

    let mut c3 = connect_token(&gw.url(), t, "valid-token-3").await;
    check_not_found(&mut c3, json!({"projectId": "project_one"})).await;
    check_not_found(&mut c3, json!({"projectId": "project_two"})).await;
    check_not_found(&mut c3, json!({"projectId": "PROJECT_THREE"})).await;
    c3.join("project_three").await;

    c1.assert_no_event(Duration::from_millis(200)).await;
    c3.assert_no_event(Duration::from_millis(200)).await;
    c1.disconnect().await;
    c3.disconnect().await;
}

async fn not_permitted_project_not_found_echoes_sent_object(t: Transport) {
    let gw = Gateway::start(&[]).await;
    let mut c = connect_token(&gw.url(), t, "valid-token-1").await;
    // PAYLOAD is the object the client sent, as sent (extra keys and their order included).
    check_not_found(
        &mut c,
        json!({"zeta": 1, "projectId": "project_two", "alpha": {"b": [1, 2], "a": null}}),
    )
    .await;
    c.disconnect().await;
}

// ---------------------------------------------------------------------------------------
// room updates (demo publisher through the in-process backplane)

fn assert_demo_chat(args: &[Value], project: &str) {
    let prefix = format!("Hello, {project}! Time is -- ");
    let s = match args {
        [Value::String(s)] => s,
        other => panic!("chat for {project}: expected one string argument, got {other:?}"),
    };
    let time = s
        .strip_prefix(&prefix)
        .and_then(|r| r.strip_suffix(" --"))
        .unwrap_or_else(|| panic!("chat {s:?} is not `{prefix}<ISO time> --`"));
    let b = time.as_bytes();
    let iso = b.len() >= 19
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':';
    assert!(iso, "chat {s:?}: {time:?} is not an ISO time");
}

async fn room_update_reaches_members_only(t: Transport) {
    let gw = Gateway::start(&["--demo-push", "200ms"]).await;
    let url = gw.url();
    // Refusals first: once in a room, a demo update may arrive before the `exception`.
    let mut member = connect_token(&url, t, "valid-token-1").await;
    // user_1 is refused project_two: it must not get project_two's updates.
    check_not_found(&mut member, json!({"projectId": "project_two"})).await;
    member.join("project_one").await;
    let mut three = connect_token(&url, t, "valid-token-3").await;
    check_not_found(&mut three, json!({"projectId": "project_one"})).await;
    three.join("project_three").await;
    // user_2 may see everything but joined nothing.
    let mut outsider = connect_token(&url, t, "valid-token-2").await;

    let window = Duration::from_millis(1500);
    let (m, th, o) = tokio::join!(
        member.events_during(window),
        three.events_during(window),
        outsider.events_during(window)
    );
    let m_chats: Vec<_> = m.iter().filter(|(e, _)| e == "chat").collect();
    assert!(
        m_chats.len() >= 3,
        "member of project_one got {} chat events in {window:?} with --demo-push 200ms: {m:?}",
        m_chats.len()
    );
    assert_eq!(m_chats.len(), m.len(), "member got non-chat events: {m:?}");
    for (_, args) in &m {
        assert_demo_chat(args, "project_one");
    }
    let th_chats = th.iter().filter(|(e, _)| e == "chat").count();
    assert!(th_chats >= 3, "member of project_three got {th:?}");
    for (e, args) in &th {
        assert_eq!(e, "chat");
        assert_demo_chat(args, "project_three");
    }
    assert!(o.is_empty(), "a client in no room got {o:?}");

    // After leaving, no more updates from that room.
    member.leave("project_one").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    member.drain();
    member.assert_no_event(Duration::from_millis(1000)).await;
    // ...while the other member still gets its own.
    let th = three.collect("chat", 2, Duration::from_secs(3)).await;
    assert_eq!(th.len(), 2, "project_three member stopped getting updates");

    member.disconnect().await;
    three.disconnect().await;
    outsider.disconnect().await;
}

// ---------------------------------------------------------------------------------------
// HTTP probes (transport independent)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_readyz_answer_200() {
    run_bounded(TEST_TIMEOUT, async {
        let gw = Gateway::start(&[]).await;
        let (status, _) = gw.get("/healthz").await.expect("GET /healthz");
        assert_eq!(status, 200, "GET /healthz");
        gw.wait_status("/readyz", 200, Duration::from_secs(5)).await;
        let (status, _) = gw.get("/readyz").await.expect("GET /readyz");
        assert_eq!(status, 200, "GET /readyz");
        // The listening line is the only stdout output (logs go to stderr).
        assert_eq!(
            gw.stdout_lines(),
            vec![format!("WSGATE_LISTENING={}", gw.addr)],
            "stdout of wsgate serve"
        );
        // Still answering while a client is connected.
        let c = connect_token(&gw.url(), Transport::Websocket, "valid-token-1").await;
        let (status, _) = gw.get("/healthz").await.expect("GET /healthz");
        assert_eq!(status, 200);
        c.disconnect().await;
    })
    .await;
}
