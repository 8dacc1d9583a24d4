//! The backplane: how an update reaches the right sockets on every replica.
//!
//! The gateway never speaks Redis and this module never sees a socket. Between them:
//! - [`Backplane`]: publish a [`Broadcast`] to the fleet, and subscribe / unsubscribe a room
//!   as its first local member arrives and its last one leaves;
//! - an [`Inbound`] channel: what the fleet asks this replica to do locally (deliver a
//!   broadcast, act on a request). Everything a replica delivers, its own publishes
//!   included, arrives through it, so there is one delivery path whatever the engine.
//!
//! Engines: [`memory`] (one replica, no Redis), [`redis`] (the socket.io Redis adapter's
//! wire format, [`wire`] and [`request`]) and [`cluster`] (Redis Cluster sharded pub/sub in
//! the sharded adapter's format, [`sharded_wire`]).

pub mod cluster;
pub mod connect;
pub mod control;
mod inbound;
pub mod memory;
pub mod pool;
pub mod position;
pub mod redis;
pub mod request;
pub mod sharded_wire;
pub mod store;
pub mod stream;
mod subscriptions;
pub mod wire;

use futures_util::future::BoxFuture;
use tokio::sync::mpsc;

pub use control::{CONTROL_CHANNEL, Control};
pub use request::{Request, RequestKind};
pub use wire::Args;

/// The namespace's channel prefix of the socket.io Redis adapter (`socket.io` + `#/#`).
pub const BROADCAST_CHANNEL: &str = "socket.io#/#";
/// The room channels of wsgate socket ids (16 characters), subscribed once per replica
/// with `PSUBSCRIBE`: an emitter's `to(socketId)` publishes on the room's own channel, and
/// a subscription per socket would cost a Redis command per connect. Names of other rooms
/// of that length match too: the engine delivers those from their own subscription, and
/// without local members they reach nobody.
pub const SOCKET_ID_PATTERN: &str = "socket.io#/#????????????????#";

/// Whether `room` has the shape of a wsgate socket id (socketioxide's: 16 url-safe base64
/// characters): such a room is a socket-id room, the room of exactly that socket.
pub fn is_socket_id(room: &str) -> bool {
    room.len() == 16
        && room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The room prefix of a user's sockets (`user:<userId>`) unless `--user-room-prefix`
/// says otherwise; replicas and publishers must agree on it.
pub const DEFAULT_USER_ROOM_PREFIX: &str = "user:";

/// Requests between servers (socketsJoin, fetchSockets, ...), JSON or msgpack.
pub const REQUEST_CHANNEL: &str = "socket.io-request#/#";
/// Answers to requests.
pub const RESPONSE_CHANNEL: &str = "socket.io-response#/#";

/// Messages the inbound channel holds before the engine waits for the gateway. Redis
/// pub/sub cannot be slowed down, so this is where a burst is absorbed.
pub const INBOUND_CAPACITY: usize = 65_536;

/// The channel of one room: `socket.io#/#<room>#`.
pub fn room_channel(room: &str) -> String {
    format!("{BROADCAST_CHANNEL}{room}#")
}

/// The channel a broadcast is published on: the room's own channel when it targets exactly
/// one room (only replicas with members receive it), else the namespace channel.
pub fn channel_for(b: &Broadcast) -> String {
    match b.rooms.as_slice() {
        [room] => room_channel(room),
        _ => BROADCAST_CHANNEL.to_owned(),
    }
}

/// An update for the sockets of some rooms (or of all), decoded once per replica.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Broadcast {
    /// Event name the clients receive.
    pub event: String,
    /// Arguments after the event name.
    pub args: Args,
    /// Target rooms; empty means every socket.
    pub rooms: Vec<String>,
    /// Sockets in any of these rooms are skipped.
    pub except: Vec<String>,
    /// May be skipped for a socket that cannot take it right now.
    pub volatile: bool,
    /// When the publisher sent it (ms since the Unix epoch), from `opts.flags.wsgateSentAt`:
    /// feeds the publish-to-socket latency histogram. Node receivers ignore the field.
    pub sent_at: Option<f64>,
    /// Where it sits in its room's history (`opts.flags.wsgateEpoch` / `wsgateOffset`),
    /// when it was published with history (see [`stream`]).
    pub position: Option<position::Position>,
    /// Its place in the fleet order (`opts.flags.wsgateOrder`, and `wsgateShard` on a
    /// cluster), when published with history: what stock clients' offsets are made of
    /// (connection-state recovery).
    pub order: Option<position::Order>,
}

/// What the fleet asks this replica to do with its local sockets.
#[derive(Debug)]
pub enum Inbound {
    /// Deliver to the matching local sockets.
    Broadcast(Broadcast),
    /// Act on, and maybe answer, a request of another server or an emitter.
    Request(Request),
    /// A wsgate fleet control message (revocation).
    Control(Control),
}

/// The sending half of the inbound channel, as engines hold it.
pub type InboundTx = mpsc::Sender<Inbound>;
/// The receiving half, consumed by the gateway's delivery task.
pub type InboundRx = mpsc::Receiver<Inbound>;

/// A backplane failure, as seen by callers.
#[derive(Debug, thiserror::Error)]
pub enum BackplaneError {
    /// Redis refused or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// The Redis settings (URL, TLS files, sentinels) are not usable.
    #[error(transparent)]
    Connect(#[from] connect::ConnectError),
    /// No connection could be taken from the publish pool.
    #[error("redis pool: {0}")]
    Pool(#[from] pool::PoolError),
    /// The history publish script answered something unexpected.
    #[error("history publish: unexpected reply: {0}")]
    Reply(&'static str),
    /// The engine's task has stopped (shutdown).
    #[error("backplane stopped")]
    Stopped,
}

/// An engine's subscriber task, returned by its `start` for the caller to run and
/// supervise: the engine receives nothing until it runs, and a replica whose task ended
/// must stop being ready.
pub type EngineTask = BoxFuture<'static, ()>;

/// One engine of the backplane.
pub trait Backplane: Send + Sync + 'static {
    /// Send `b` to every replica, this one included.
    fn publish(&self, b: Broadcast) -> BoxFuture<'static, Result<(), BackplaneError>>;

    /// Start receiving the broadcasts of `room`. The request is ordered with other
    /// subscribe / unsubscribe calls at call time; the future completes once the room's
    /// messages will arrive (or at once while the engine is disconnected: it subscribes
    /// again on reconnect).
    fn subscribe(&self, room: &str) -> BoxFuture<'static, Result<(), BackplaneError>>;

    /// Stop receiving the broadcasts of `room`.
    fn unsubscribe(&self, room: &str);

    /// Answer a request (fetchSockets, allRooms, ...) on the response channel.
    fn respond(
        &self,
        response: request::Response,
    ) -> BoxFuture<'static, Result<(), BackplaneError>>;

    /// Whether the engine can currently receive the fleet's messages.
    fn is_ready(&self) -> bool;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_follow_the_adapter() {
        let mut b = Broadcast {
            event: "e".into(),
            args: Args::default(),
            rooms: vec!["project_one".into()],
            except: vec![],
            volatile: false,
            sent_at: None,
            position: None,
            order: None,
        };
        assert_eq!(channel_for(&b), "socket.io#/#project_one#");
        b.rooms.push("b".into());
        assert_eq!(channel_for(&b), "socket.io#/#");
        b.rooms.clear();
        assert_eq!(channel_for(&b), "socket.io#/#");
    }

    #[test]
    fn the_pattern_matches_a_socket_id_room_channel() {
        let sid = socketioxide::socket::Sid::new().to_string();
        assert!(is_socket_id(&sid));
        assert_eq!(SOCKET_ID_PATTERN.matches('?').count(), sid.len());
        assert_eq!(
            SOCKET_ID_PATTERN.replace("????????????????", &sid),
            room_channel(&sid)
        );
        assert!(
            !is_socket_id("abcdefghijklmnopqrst"),
            "Node's ids are 20 long"
        );
        assert!(!is_socket_id("abcdefghijklmno!"));
    }
}
