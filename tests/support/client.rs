//! A `rust_socketio` async client wrapped for tests.
//!
//! Facts about `rust_socketio` 0.6 (async) this relies on, read from its source:
//! * `ClientBuilder::connect()` returns once the Socket.IO CONNECT packet is *sent*; the
//!   server's answer arrives later: CONNECT fires the `Event::Connect` callback, CONNECT_ERROR
//!   fires the `Event::Error` callback with the string
//!   `Received an ConnectError frame: <json data>`. So a refused connection is normally an
//!   `Ok` from `connect()` followed by that error; a failure of the HTTP/WS handshake itself
//!   is an `Err` from `connect()`.
//! * an ack callback gets `Payload::Text(vec![Array(args)])` (the whole ack array parsed
//!   as one value); events get `Payload::Text(args)`.
//! * `Event::from("connect")` is a *custom* event; the lifecycle events are the enum
//!   variants, used directly here.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Event, Payload, TransportType};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, timeout};

use super::EVENT_TIMEOUT;

/// How long a connection attempt may take until CONNECT or CONNECT_ERROR.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The Engine.IO transport a client uses (both are tested).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Websocket,
    Polling,
}

impl Transport {
    pub const BOTH: [Transport; 2] = [Transport::Websocket, Transport::Polling];

    fn kind(self) -> TransportType {
        match self {
            Transport::Websocket => TransportType::Websocket,
            Transport::Polling => TransportType::Polling,
        }
    }
}

/// What the client presents at connect time.
#[derive(Clone, Debug, Default)]
pub struct Creds {
    /// Value of the `Authorization` handshake header.
    pub header: Option<String>,
    /// The Socket.IO `auth` object (any JSON value).
    pub auth: Option<Value>,
}

impl Creds {
    pub fn none() -> Creds {
        Creds::default()
    }
    /// `auth: {token}`
    pub fn token(t: &str) -> Creds {
        Creds {
            header: None,
            auth: Some(json!({ "token": t })),
        }
    }
    pub fn auth(v: Value) -> Creds {
        Creds {
            header: None,
            auth: Some(v),
        }
    }
    pub fn header(h: &str) -> Creds {
        Creds {
            header: Some(h.to_string()),
            auth: None,
        }
    }
}

#[derive(Debug)]
enum Life {
    Connected,
    Error(String),
    Closed,
}

/// How a connection attempt ended.
pub enum ConnectOutcome {
    Connected(TestClient),
    /// CONNECT_ERROR from the server, with its data (`{"message": ...}`) parsed.
    ConnectError(Value),
    /// Anything else (handshake failed, timeout, garbage), described.
    Failed(String),
}

impl ConnectOutcome {
    pub fn describe(&self) -> String {
        match self {
            ConnectOutcome::Connected(_) => "connected".into(),
            ConnectOutcome::ConnectError(v) => format!("connect_error {v}"),
            ConnectOutcome::Failed(s) => format!("failed: {s}"),
        }
    }
}

/// A connected client whose received events are queued for the test.
pub struct TestClient {
    pub client: Client,
    pub transport: Transport,
    pub label: String,
    events: mpsc::UnboundedReceiver<(String, Vec<Value>)>,
    life: mpsc::UnboundedReceiver<Life>,
}

fn payload_args(p: Payload) -> Vec<Value> {
    match p {
        Payload::Text(v) => v,
        Payload::Binary(b) => vec![json!({ "<binary bytes>": b.len() })],
        #[allow(deprecated)]
        Payload::String(s) => vec![serde_json::from_str(&s).unwrap_or(Value::String(s))],
    }
}

/// Parses the data of rust_socketio's "Received an ConnectError frame: <data>" error string.
fn connect_error_data(s: &str) -> Option<Value> {
    let rest = s.strip_prefix("Received an ConnectError frame: ")?;
    Some(serde_json::from_str(rest).unwrap_or(Value::String(rest.to_string())))
}

/// Connects and waits for the server's CONNECT or CONNECT_ERROR.
pub async fn try_connect(url: &str, transport: Transport, creds: Creds) -> ConnectOutcome {
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let (life_tx, mut life_rx) = mpsc::unbounded_channel();

    let mut b = ClientBuilder::new(url)
        .transport_type(transport.kind())
        .reconnect(false)
        .reconnect_on_disconnect(false);
    if let Some(h) = &creds.header {
        b = b.opening_header("Authorization", h.as_str());
    }
    if let Some(a) = &creds.auth {
        b = b.auth(a.clone());
    }
    let tx = life_tx.clone();
    b = b.on(Event::Connect, move |_, _| {
        let _ = tx.send(Life::Connected);
        async {}.boxed()
    });
    let tx = life_tx.clone();
    b = b.on(Event::Error, move |p, _| {
        let text = match payload_args(p).into_iter().next() {
            Some(Value::String(s)) => s,
            Some(v) => v.to_string(),
            None => String::new(),
        };
        let _ = tx.send(Life::Error(text));
        async {}.boxed()
    });
    let tx = life_tx;
    b = b.on(Event::Close, move |_, _| {
        let _ = tx.send(Life::Closed);
        async {}.boxed()
    });
    b = b.on_any(move |ev, p, _| {
        let name = match ev {
            Event::Message => "message".to_string(),
            Event::Custom(s) => s,
            other => other.as_str().to_string(),
        };
        let _ = ev_tx.send((name, payload_args(p)));
        async {}.boxed()
    });

    let client = match timeout(CONNECT_TIMEOUT, b.connect()).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return ConnectOutcome::Failed(format!("connect() returned Err: {e}")),
        Err(_) => return ConnectOutcome::Failed("connect() hung".into()),
    };
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    let mut errors = Vec::new();
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match timeout(remaining, life_rx.recv()).await {
            Ok(Some(Life::Connected)) => {
                return ConnectOutcome::Connected(TestClient {
                    client,
                    transport,
                    label: format!("{transport:?} {creds:?}"),
                    events: ev_rx,
                    life: life_rx,
                });
            }
            Ok(Some(Life::Error(s))) => {
                if let Some(v) = connect_error_data(&s) {
                    let _ = client.disconnect().await;
                    return ConnectOutcome::ConnectError(v);
                }
                // A transport error (e.g. the server closed the connection): keep it and
                // wait; a CONNECT_ERROR may still be in flight.
                errors.push(s);
            }
            Ok(Some(Life::Closed)) => errors.push("server sent DISCONNECT".into()),
            Ok(None) | Err(_) => {
                let _ = client.disconnect().await;
                return ConnectOutcome::Failed(format!(
                    "neither CONNECT nor CONNECT_ERROR within {CONNECT_TIMEOUT:?}; errors: {errors:?}"
                ));
            }
        }
    }
}

/// Connects or panics.
pub async fn connect(url: &str, transport: Transport, creds: Creds) -> TestClient {
    let label = format!("{transport:?} {creds:?}");
    match try_connect(url, transport, creds).await {
        ConnectOutcome::Connected(c) => c,
        other => panic!("{label}: expected to connect, got {}", other.describe()),
    }
}

/// Connects with `auth: {token}` or panics.
pub async fn connect_token(url: &str, transport: Transport, token: &str) -> TestClient {
    let mut c = connect(url, transport, Creds::token(token)).await;
    c.label = format!("{transport:?} {token}");
    c
}

/// Ack args (the ack callback gets the whole args array as one value).
fn ack_args(p: Payload) -> Vec<Value> {
    let v = payload_args(p);
    match v.as_slice() {
        [Value::Array(args)] => args.clone(),
        _ => v,
    }
}

impl TestClient {
    /// Emits `event` with `args` (an empty vec sends the event with no argument).
    pub async fn emit(&self, event: &str, args: Vec<Value>) {
        self.client
            .emit(event, Payload::Text(args))
            .await
            .unwrap_or_else(|e| panic!("{}: emit {event}: {e}", self.label));
    }

    /// Emits `event` with `args` asking for an ack; returns the ack's arguments.
    pub async fn emit_ack(&self, event: &str, args: Vec<Value>) -> Vec<Value> {
        self.try_emit_ack(event, args, EVENT_TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", self.label))
    }

    pub async fn try_emit_ack(
        &self,
        event: &str,
        args: Vec<Value>,
        within: Duration,
    ) -> Result<Vec<Value>, String> {
        let (tx, rx) = oneshot::channel();
        let tx = Arc::new(Mutex::new(Some(tx)));
        let sent = self
            .client
            .emit_with_ack(
                event,
                Payload::Text(args.clone()),
                within + Duration::from_secs(1),
                move |p, _| {
                    if let Some(tx) = tx.lock().unwrap().take() {
                        let _ = tx.send(ack_args(p));
                    }
                    async {}.boxed()
                },
            )
            .await;
        if let Err(e) = sent {
            return Err(format!("emit_with_ack {event} {args:?}: {e}"));
        }
        match timeout(within, rx).await {
            Ok(Ok(a)) => Ok(a),
            _ => Err(format!("no ack for {event} {args:?} within {within:?}")),
        }
    }

    /// The next received event, if one arrives within `within`.
    pub async fn next_event_within(&mut self, within: Duration) -> Option<(String, Vec<Value>)> {
        timeout(within, self.events.recv()).await.ok().flatten()
    }

    /// The next received event must be `event`; returns its arguments.
    pub async fn expect_event(&mut self, event: &str) -> Vec<Value> {
        match self.next_event_within(EVENT_TIMEOUT).await {
            Some((name, args)) if name == event => args,
            Some((name, args)) => panic!(
                "{}: expected event {event:?}, got {name:?} {args:?}",
                self.label
            ),
            None => panic!(
                "{}: expected event {event:?}, nothing within {EVENT_TIMEOUT:?}",
                self.label
            ),
        }
    }

    /// Waits for the next `event`, skipping (and returning) other events met on the way.
    pub async fn wait_for_event(
        &mut self,
        event: &str,
        within: Duration,
    ) -> Option<(Vec<Value>, Vec<(String, Vec<Value>)>)> {
        let deadline = Instant::now() + within;
        let mut skipped = Vec::new();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.next_event_within(remaining).await {
                Some((name, args)) if name == event => return Some((args, skipped)),
                Some(other) => skipped.push(other),
                None => return None,
            }
        }
    }

    /// All events received during `d`.
    pub async fn events_during(&mut self, d: Duration) -> Vec<(String, Vec<Value>)> {
        let deadline = Instant::now() + d;
        let mut out = Vec::new();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return out;
            }
            match self.next_event_within(remaining).await {
                Some(e) => out.push(e),
                None => return out,
            }
        }
    }

    /// Collects `event` events until `n` have arrived or `within` has passed (other events
    /// are dropped).
    pub async fn collect(&mut self, event: &str, n: usize, within: Duration) -> Vec<Vec<Value>> {
        let deadline = Instant::now() + within;
        let mut out = Vec::new();
        while out.len() < n {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.next_event_within(remaining).await {
                Some((name, args)) if name == event => out.push(args),
                Some(_) => {}
                None => break,
            }
        }
        out
    }

    /// Drops whatever events are queued right now.
    pub fn drain(&mut self) -> Vec<(String, Vec<Value>)> {
        let mut out = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            out.push(e);
        }
        out
    }

    /// Asserts that no event arrives during `d`.
    pub async fn assert_no_event(&mut self, d: Duration) {
        let got = self.events_during(d).await;
        assert!(
            got.is_empty(),
            "{}: expected no event during {d:?}, got {got:?}",
            self.label
        );
    }

    /// Lifecycle problems seen so far (server DISCONNECT, transport errors).
    pub fn lifecycle_problems(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(l) = self.life.try_recv() {
            match l {
                Life::Connected => {}
                Life::Error(e) => out.push(format!("error: {e}")),
                Life::Closed => out.push("closed by server".into()),
            }
        }
        out
    }

    /// `join_project` with an ack; panics unless the ack is `You have joined <id>!`.
    /// The `join_project` event is consumed too.
    pub async fn join(&mut self, project: &str) {
        let want = json!(format!("You have joined {project}!"));
        let ack = self
            .emit_ack("join_project", vec![json!({ "projectId": project })])
            .await;
        assert_eq!(ack, vec![want.clone()], "{}: join ack", self.label);
        let (ev, skipped) = self
            .wait_for_event("join_project", EVENT_TIMEOUT)
            .await
            .unwrap_or_else(|| panic!("{}: no join_project event", self.label));
        assert_eq!(
            ev,
            vec![want],
            "{}: join event (skipped {skipped:?})",
            self.label
        );
    }

    /// `leave_project` with an ack; the `leave_project` event is consumed too.
    pub async fn leave(&mut self, project: &str) {
        let want = json!(format!("You have left {project}!"));
        let ack = self
            .emit_ack("leave_project", vec![json!({ "projectId": project })])
            .await;
        assert_eq!(ack, vec![want.clone()], "{}: leave ack", self.label);
        let (ev, _) = self
            .wait_for_event("leave_project", EVENT_TIMEOUT)
            .await
            .unwrap_or_else(|| panic!("{}: no leave_project event", self.label));
        assert_eq!(ev, vec![want], "{}: leave event", self.label);
    }

    pub async fn disconnect(&self) {
        let _ = timeout(Duration::from_secs(5), self.client.disconnect()).await;
    }
}
