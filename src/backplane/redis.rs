//! The Redis engine: pub/sub in the socket.io Redis adapter's format.
//!
//! One task owns the subscriber connection. It takes subscribe / unsubscribe commands in
//! the order they were made, reads messages, decodes each once and hands it to the
//! gateway through the inbound channel. When Redis goes away it marks the engine not
//! ready, logs once, reconnects with capped exponential backoff and jitter, and subscribes
//! again to every room that still has members. Socket-id rooms (`to(socketId)`) take no
//! subscription each: one pattern, [`super::SOCKET_ID_PATTERN`], brings every room channel
//! whose name has a wsgate socket id's length. A subscriber Redis closes (`CLIENT KILL`,
//! its `client-output-buffer-limit pubsub` passed, a Sentinel failover) is noticed when its
//! stream ends and counted in `wsgate_backplane_disconnects_total{reason}`. Each connection
//! is made by a [`Connector`] (TLS, ACL user, the primary Sentinel names now). Publishing
//! uses a separate pool ([`super::pool`]), so a slow subscriber never delays a publish.

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use ::redis::AsyncCommands;
use futures_util::{FutureExt, StreamExt, future::BoxFuture};
use rand::Rng;
use tokio::sync::mpsc;

use super::connect::Connector;
use super::pool::{self, Pool};
use super::subscriptions::{Command, Commands, Subscriptions};
use super::{
    BROADCAST_CHANNEL, Backplane, BackplaneError, Broadcast, CONTROL_CHANNEL, EngineTask, Inbound,
    InboundRx, InboundTx, REQUEST_CHANNEL,
    inbound::{Receiver, deliver_locally, new_uid},
    position::Position,
    request,
    stream::{self, HistoryConfig},
    wire,
};
use crate::telemetry::{BackplaneDrop, DecodeErrorKind};

/// How often the subscriber checks that Redis still answers, and how long it waits.
const PING_EVERY: Duration = Duration::from_secs(5);
const PING_TIMEOUT: Duration = Duration::from_secs(3);
/// Reconnect delays: doubling from the first to the cap, each with jitter.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(5);

/// Publishes broadcasts in the emitter's wire format. Shared by the engine and by the
/// `publish` library, so both send identical bytes.
#[derive(Debug, Clone)]
pub struct RedisPublisher {
    pool: Pool,
    uid: Arc<str>,
    /// With history, one-room broadcasts go through the history script.
    history: Option<HistoryConfig>,
}

impl RedisPublisher {
    /// A publisher to the Redis `connector` reaches, stamping its messages with `uid`.
    pub fn new(connector: &Connector, uid: &str) -> Result<Self, BackplaneError> {
        let pool = pool::pool(connector.clone(), 8, Duration::from_secs(5)).map_err(|e| {
            BackplaneError::Redis(::redis::RedisError::from((
                ::redis::ErrorKind::InvalidClientConfig,
                "bad pool config",
                e,
            )))
        })?;
        Ok(Self {
            pool,
            uid: uid.into(),
            history: None,
        })
    }

    /// The same publisher, keeping each room's updates in its history as configured
    /// (`None`: no history, the bytes are the emitter's exactly).
    pub fn with_history(mut self, history: Option<HistoryConfig>) -> Self {
        self.history = history;
        self
    }

    /// The connection pool (shared with the history reader).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Publish `b`; returns how many subscribers received it.
    pub async fn publish(&self, b: &Broadcast) -> Result<u64, BackplaneError> {
        self.publish_positioned(b).await.map(|(n, _)| n)
    }

    /// Publish `b`; returns how many subscribers received it and, when it went into its
    /// room's history (history on, exactly one room, not volatile), its position.
    /// Broadcasts to several rooms or to all have no single history, a volatile one
    /// may be skipped anyway, and a socket-id room ends with its connection: those are
    /// published plain.
    pub async fn publish_positioned(
        &self,
        b: &Broadcast,
    ) -> Result<(u64, Option<Position>), BackplaneError> {
        let channel = super::channel_for(b);
        match (&self.history, b.rooms.as_slice()) {
            // A socket-id room keeps no history: it lives as long as one connection.
            (Some(cfg), [room]) if !b.volatile && !super::is_socket_id(room) => {
                let prefix = wire::encode_open(&self.uid, b);
                let mut conn = self.pool.get().await?;
                let (n, at) = stream::publish(&mut conn, cfg, &channel, &prefix, false).await?;
                Ok((n, Some(at)))
            }
            _ => {
                let bytes = wire::encode(&self.uid, b);
                Ok((self.publish_raw(&channel, bytes).await?, None))
            }
        }
    }

    /// Publish already-encoded bytes on `channel`.
    pub async fn publish_raw(&self, channel: &str, bytes: Vec<u8>) -> Result<u64, BackplaneError> {
        let mut conn = self.pool.get().await?;
        Ok(conn.publish(channel, bytes).await?)
    }
}

/// The Redis engine's handle, cheap to share.
pub struct RedisBackplane {
    commands: Subscriptions,
    publisher: RedisPublisher,
    inbound: InboundTx,
    ready: Arc<AtomicBool>,
}

impl RedisBackplane {
    /// Start the subscriber task and return the engine and the inbound channel; with
    /// `history`, this replica's own one-room publishes go into their room's stream. The
    /// task keeps retrying in the background; check [`Backplane::is_ready`].
    pub fn start(
        connector: &Connector,
        history: Option<HistoryConfig>,
    ) -> Result<(Self, InboundRx, EngineTask), BackplaneError> {
        let uid = new_uid();
        let publisher = RedisPublisher::new(connector, &uid)?.with_history(history);
        let (tx, rx) = mpsc::channel(super::INBOUND_CAPACITY);
        let (ctx, crx) = Subscriptions::channel();
        let ready = Arc::new(AtomicBool::new(false));
        let sub = Subscriber {
            connector: connector.clone(),
            receiver: Receiver::new(uid.clone(), tx.clone()),
            ready: ready.clone(),
            rooms: HashSet::new(),
        };
        tracing::info!(uid = %uid, redis = %connector.describe(), "redis backplane starting");
        Ok((
            Self {
                commands: ctx,
                publisher,
                inbound: tx,
                ready,
            },
            rx,
            sub.run(crx).boxed(),
        ))
    }
}

impl RedisBackplane {
    /// The publish pool, shared with readers of the fleet's Redis (room history).
    pub fn pool(&self) -> &Pool {
        self.publisher.pool()
    }
}

impl Backplane for RedisBackplane {
    fn publish(&self, b: Broadcast) -> BoxFuture<'static, Result<(), BackplaneError>> {
        let publisher = self.publisher.clone();
        let inbound = self.inbound.clone();
        async move {
            // A copy with a history position is delivered from Redis like every other
            // (not locally), so local members see the room's updates in offset order.
            let (_, position) = publisher.publish_positioned(&b).await?;
            if position.is_some() {
                return Ok(());
            }
            deliver_locally(&inbound, b).await
        }
        .boxed()
    }

    fn subscribe(&self, room: &str) -> BoxFuture<'static, Result<(), BackplaneError>> {
        self.commands.subscribe(room)
    }

    fn unsubscribe(&self, room: &str) {
        self.commands.unsubscribe(room)
    }

    fn respond(&self, r: request::Response) -> BoxFuture<'static, Result<(), BackplaneError>> {
        let publisher = self.publisher.clone();
        async move { publisher.publish_raw(&r.channel, r.payload).await.map(drop) }.boxed()
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

struct Subscriber {
    connector: Connector,
    receiver: Receiver,
    ready: Arc<AtomicBool>,
    /// Room channels with local members: what to subscribe to again after a reconnect.
    rooms: HashSet<String>,
}

/// Why a connected session ended.
enum End {
    /// The gateway dropped the engine: stop.
    Shutdown,
    /// The connection failed: reconnect.
    Lost(String),
    /// A connected session ended: count why, then reconnect.
    Dropped(BackplaneDrop, String),
}

impl Subscriber {
    async fn run(mut self, mut commands: Commands) {
        let mut delay = BACKOFF_FIRST;
        let mut down_since_logged = false;
        loop {
            let why = match self.session(&mut commands).await {
                End::Shutdown => return,
                End::Lost(why) => why,
                End::Dropped(reason, why) => {
                    reason.count();
                    why
                }
            };
            if self.ready.swap(false, Ordering::Relaxed) {
                // It was up: a new outage, logged once more.
                delay = BACKOFF_FIRST;
                down_since_logged = false;
                metrics::gauge!("wsgate_backplane_connected").set(0.0);
            }
            if !down_since_logged {
                tracing::warn!(error = %why, redis = %self.connector.describe(), "redis backplane down; serving local clients, reconnecting");
                down_since_logged = true;
            } else {
                tracing::debug!(error = %why, "redis reconnect attempt failed");
            }
            // While waiting, keep taking commands so joins and leaves never block.
            let jitter = rand::rng().random_range(0.5..1.0);
            let sleep = tokio::time::sleep(delay.mul_f64(jitter));
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    cmd = commands.recv() => match cmd {
                        None => return,
                        Some(Command::Subscribe(ch, done)) => { self.rooms.insert(ch); let _ = done.send(()); }
                        Some(Command::Unsubscribe(ch)) => { self.rooms.remove(&ch); }
                    }
                }
            }
            delay = (delay * 2).min(self.connector.backoff_cap(BACKOFF_CAP));
            metrics::counter!("wsgate_backplane_reconnects_total").increment(1);
        }
    }

    /// One connection's life: connect, subscribe, then serve messages and commands.
    async fn session(&mut self, commands: &mut Commands) -> End {
        let connect = async { self.connector.client().await?.get_async_pubsub().await };
        let pubsub = match tokio::time::timeout(PING_TIMEOUT, connect).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => return End::Lost(e.to_string()),
            Err(_) => return End::Lost("connect timed out".into()),
        };
        let (mut sink, mut stream) = pubsub.split();
        let mut initial: Vec<String> = vec![
            BROADCAST_CHANNEL.into(),
            REQUEST_CHANNEL.into(),
            CONTROL_CHANNEL.into(),
        ];
        initial.extend(self.rooms.iter().cloned());
        if let Err(e) = sink.subscribe(&initial).await {
            return End::Lost(e.to_string());
        }
        if let Err(e) = sink.psubscribe(super::SOCKET_ID_PATTERN).await {
            if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                return End::Lost(e.to_string());
            }
            // Redis refused it (an ACL user without `+psubscribe` and the pattern, README
            // "ACL users"): the replica serves everything else; a one-socket broadcast
            // reaches it only on `socket.io#/#` (several rooms) or through requests.
            tracing::warn!(error = %e, pattern = super::SOCKET_ID_PATTERN, "socket-id rooms: pattern subscription refused; to(socketId) alone will not reach this replica's sockets");
        }
        self.ready.store(true, Ordering::Relaxed);
        metrics::gauge!("wsgate_backplane_connected").set(1.0);
        metrics::gauge!("wsgate_backplane_subscriptions").set(self.rooms.len() as f64);
        tracing::info!(
            rooms = self.rooms.len(),
            "redis backplane connected and subscribed"
        );

        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(msg) => self.on_message(&msg).await,
                    None => return End::Dropped(BackplaneDrop::Closed, "redis closed the subscriber connection".into()),
                },
                cmd = commands.recv() => {
                    let result = match cmd {
                        None => return End::Shutdown,
                        Some(Command::Subscribe(ch, done)) => {
                            let r = if self.rooms.insert(ch.clone()) { sink.subscribe(&ch).await } else { Ok(()) };
                            let _ = done.send(());
                            r
                        }
                        Some(Command::Unsubscribe(ch)) => {
                            if self.rooms.remove(&ch) { sink.unsubscribe(&ch).await } else { Ok(()) }
                        }
                    };
                    metrics::gauge!("wsgate_backplane_subscriptions").set(self.rooms.len() as f64);
                    if let Err(e) = result {
                        return End::Dropped(BackplaneDrop::Error, e.to_string());
                    }
                }
                _ = ping.tick() => {
                    match tokio::time::timeout(PING_TIMEOUT, sink.ping::<::redis::Value>()).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return End::Dropped(BackplaneDrop::Error, e.to_string()),
                        Err(_) => return End::Dropped(BackplaneDrop::PingTimeout, "ping timed out".into()),
                    }
                }
            }
        }
    }

    async fn on_message(&self, msg: &::redis::Msg) {
        // A room channel with a socket id's length: a socket-id room (Node's `to(id)`).
        // A room of that length this replica is subscribed to arrives as a plain message
        // too: that copy is the one delivered.
        if msg.from_pattern() && self.rooms.contains(msg.get_channel_name()) {
            return;
        }
        let payload = msg.get_payload_bytes();
        let rx = &self.receiver;
        let inbound = if msg.get_channel_name() == CONTROL_CHANNEL {
            match rx.control(payload) {
                Some(c) => c,
                None => return,
            }
        } else if msg.get_channel_name() == REQUEST_CHANNEL {
            match request::decode(payload) {
                Ok(r) if rx.is_own(r.uid.as_deref()) => return,
                Ok(r) => Inbound::Request(r),
                Err(e) => return rx.bad_message(DecodeErrorKind::BadRequest, &e.to_string()),
            }
        } else {
            match wire::decode(payload) {
                // Our own positioned publishes are delivered from here (see `publish`).
                Ok(env)
                    if (rx.is_own(Some(&env.uid)) && env.broadcast.position.is_none())
                        || env.nsp != "/" =>
                {
                    return;
                }
                Ok(env) => Inbound::Broadcast(env.broadcast),
                Err(e) => return rx.bad_message(e.kind(), &e.to_string()),
            }
        };
        rx.forward(inbound).await;
    }
}
