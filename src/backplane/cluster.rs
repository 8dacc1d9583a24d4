//! The Redis Cluster engine: sharded pub/sub (`SSUBSCRIBE` / `SPUBLISH`) in the message
//! format of the Node sharded adapter ([`sharded_wire`](super::sharded_wire)).
//!
//! The `redis` crate's cluster connection does the slot map, the routing, `MOVED`, and
//! re-subscribes the shard channels it tracks when it refreshes its slot map or reconnects
//! a node (redis 1.8 `cluster_handling/async_connection/mod.rs`, `resubscribe_all` /
//! `resubscribe_node`). What it cannot know, this engine adds:
//! - when a node's connection drops, the crate keeps reconnecting to that address until a
//!   request fails and makes it refresh the slot map; after a primary dies nothing else
//!   sends such a request. So on a disconnection the engine marks itself not ready and
//!   re-issues `SSUBSCRIBE` for every wanted channel until all are confirmed: the first
//!   ones to fail drive the crate to the new slot owners.
//! - when a slot moves away, the server drops its shard channels with a `sunsubscribe`
//!   push and the crate forgets them; the engine subscribes again to those it still wants
//!   (routed to the new owner through `MOVED`), counted in
//!   `wsgate_backplane_resubscribes_total`.
//! - the crate can lose a subscription while the topology changes: two requests redirected
//!   to a node it has no connection to yet each open one, and the second replaces the first
//!   in its connection map (redis 1.8.1 `cluster_handling/async_connection/mod.rs`,
//!   `get_redirected_connection` and `connect_check_and_add`, which `insert`s
//!   unconditionally); the dropped connection takes its subscriptions with it and no push
//!   says so. So the engine re-subscribes one channel at a time, and does the whole set once
//!   more a second after each full re-subscription (`SSUBSCRIBE` of a channel a connection
//!   already has is a no-op). Seen in `tests/cluster.rs` before this: about one run in
//!   three lost a room after a failover.
//!
//! A room left while the engine cannot reach its shard is unsubscribed once it can (the
//! crate would otherwise keep re-subscribing it).
//!
//! Like the single-Redis engine, one task owns the subscriptions and takes subscribe /
//! unsubscribe commands in order; publishes go through a separate cluster connection.
//! Revocation stays on classic pub/sub (`wsgate-control#/#`), which a cluster forwards to
//! every node, so `wsgate revoke` works against any one node.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures_util::{FutureExt, future::BoxFuture};
use redis::{
    PushInfo, PushKind, Value,
    cluster::{ClusterClient, ClusterClientBuilder},
    cluster_async::ClusterConnection,
};
use tokio::sync::{OnceCell, mpsc};

use super::subscriptions::{Command, Commands, Subscriptions};
use super::{
    BROADCAST_CHANNEL, Backplane, BackplaneError, Broadcast, CONTROL_CHANNEL, EngineTask, Inbound,
    InboundRx, InboundTx,
    inbound::{Receiver, deliver_locally, new_uid},
    position::Position,
    request, sharded_wire,
    stream::{self, HistoryConfig},
};

/// How long one cluster command may take before the engine treats the cluster as unwell.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(3);
/// How often a not-ready engine retries its subscriptions.
const REPAIR_EVERY: Duration = Duration::from_millis(250);
/// How often a ready engine checks that the cluster still answers.
const PING_EVERY: Duration = Duration::from_secs(5);
/// After a full re-subscription, everything is subscribed once more this much later.
const RECHECK_AFTER: Duration = Duration::from_secs(1);
/// Requests whose requester is remembered, to route the answer to its channel.
const REQUESTERS_KEPT: usize = 1024;

/// The seed nodes in a `--redis-url` value: one URL or several separated by commas.
pub fn seeds(urls: &str) -> Vec<String> {
    urls.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The cluster client's builder; `tls` is the CA / client certificate of `rediss://` seeds
/// ([`super::connect::tls`]), `None` for the built-in roots or no TLS.
fn builder(urls: &str, tls: Option<&redis::TlsCertificates>) -> ClusterClientBuilder {
    let b = ClusterClientBuilder::new(seeds(urls))
        .connection_timeout(COMMAND_TIMEOUT)
        .response_timeout(COMMAND_TIMEOUT);
    match tls {
        Some(certs) => b.certs(certs.clone()),
        None => b,
    }
}

/// Publishes broadcasts with `SPUBLISH` in the sharded adapter's format. Shared by the
/// engine and the `publish` library. Connects on first use.
#[derive(Clone)]
pub struct ClusterPublisher {
    client: Arc<ClusterClient>,
    conn: Arc<OnceCell<ClusterConnection>>,
    uid: Arc<str>,
    /// With history, one-room broadcasts go through the history script.
    history: Option<HistoryConfig>,
}

/// The connection is not `Debug`: the uid names the publisher.
impl std::fmt::Debug for ClusterPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterPublisher")
            .field("uid", &self.uid)
            .finish_non_exhaustive()
    }
}

impl ClusterPublisher {
    /// A publisher for the cluster reached through the seeds in `urls` (comma-separated),
    /// stamping its messages with `uid`; `tls` as for the engine.
    pub fn new(
        urls: &str,
        uid: &str,
        tls: Option<&redis::TlsCertificates>,
    ) -> Result<Self, BackplaneError> {
        Ok(Self {
            client: Arc::new(builder(urls, tls).build()?),
            conn: Arc::new(OnceCell::new()),
            uid: uid.into(),
            history: None,
        })
    }

    /// The same publisher, keeping each room's updates in its history as configured
    /// (`None`: no history, the bytes are the sharded adapter's exactly).
    pub fn with_history(mut self, history: Option<HistoryConfig>) -> Self {
        self.history = history;
        self
    }

    /// A connection to the cluster (multiplexed, routed by key), shared with the readers
    /// of room history and sessions.
    pub async fn connection(&self) -> Result<ClusterConnection, BackplaneError> {
        self.conn().await
    }

    async fn conn(&self) -> Result<ClusterConnection, BackplaneError> {
        let conn = self
            .conn
            .get_or_try_init(|| async {
                match tokio::time::timeout(COMMAND_TIMEOUT, self.client.get_async_connection())
                    .await
                {
                    Ok(r) => r,
                    Err(_) => Err(redis::RedisError::from((
                        redis::ErrorKind::Io,
                        "cluster connect timed out",
                    ))),
                }
            })
            .await?;
        Ok(conn.clone())
    }

    /// Publish `b` on its sharded channel; returns how many subscribers received it.
    pub async fn publish(&self, b: &Broadcast) -> Result<u64, BackplaneError> {
        self.publish_positioned(b).await.map(|(n, _)| n)
    }

    /// Publish `b`; returns how many subscribers received it and, when it went into its
    /// room's history (history on, exactly one room on its own channel, not volatile), its
    /// position. A room whose name is as long as a socket id has no channel of its own in
    /// the sharded adapter (its updates go to the namespace channel, another slot), so no
    /// history either.
    pub async fn publish_positioned(
        &self,
        b: &Broadcast,
    ) -> Result<(u64, Option<Position>), BackplaneError> {
        let channel = sharded_wire::channel_for(b);
        match &self.history {
            Some(cfg) if b.rooms.len() == 1 && !b.volatile && channel != BROADCAST_CHANNEL => {
                let prefix = sharded_wire::encode_open(&self.uid, b);
                let mut conn = self.conn().await?;
                let (n, at) = stream::publish(&mut conn, cfg, &channel, &prefix, true).await?;
                Ok((n, Some(at)))
            }
            _ => {
                let bytes = sharded_wire::encode_broadcast(&self.uid, b);
                Ok((self.publish_raw(&channel, bytes).await?, None))
            }
        }
    }

    /// `SPUBLISH` already-encoded bytes on `channel`.
    pub async fn publish_raw(&self, channel: &str, bytes: Vec<u8>) -> Result<u64, BackplaneError> {
        let mut conn = self.conn().await?;
        Ok(redis::cmd("SPUBLISH")
            .arg(channel)
            .arg(bytes)
            .query_async(&mut conn)
            .await?)
    }
}

impl ClusterPublisher {
    /// Classic `PUBLISH` (which a cluster forwards to every node), for control messages.
    pub async fn publish_classic(
        &self,
        channel: &str,
        bytes: Vec<u8>,
    ) -> Result<u64, BackplaneError> {
        let mut conn = self.conn().await?;
        Ok(redis::cmd("PUBLISH")
            .arg(channel)
            .arg(bytes)
            .query_async(&mut conn)
            .await?)
    }
}

/// Who asked what, so an answer built by the gateway reaches the requester's channel.
#[derive(Default)]
struct Requesters {
    by_id: HashMap<String, (String, u64)>,
    order: VecDeque<String>,
}

impl Requesters {
    fn remember(&mut self, id: String, uid: String, kind: u64) {
        if self.order.len() >= REQUESTERS_KEPT
            && let Some(old) = self.order.pop_front()
        {
            self.by_id.remove(&old);
        }
        self.order.push_back(id.clone());
        self.by_id.insert(id, (uid, kind));
    }

    /// The requester of `id` and the kind of answer to send. A broadcast with acks gets
    /// several (its client count, then each ack), so it is kept until it ages out; every
    /// other request gets one answer.
    fn answer(&mut self, id: &str, classic_type: Option<u64>) -> Option<(String, u64)> {
        let (uid, kind) = self.by_id.get(id)?.clone();
        if kind != sharded_wire::BROADCAST_CLIENT_COUNT {
            self.by_id.remove(id);
            return Some((uid, kind));
        }
        // The classic answers: 8 (the count), 9 (one ack).
        let kind = match classic_type {
            Some(9) => sharded_wire::BROADCAST_ACK,
            _ => kind,
        };
        Some((uid, kind))
    }
}

/// The cluster engine's handle, cheap to share.
pub struct ClusterBackplane {
    commands: Subscriptions,
    publisher: ClusterPublisher,
    inbound: InboundTx,
    ready: Arc<AtomicBool>,
    requesters: Arc<Mutex<Requesters>>,
}

impl ClusterBackplane {
    /// The publisher, whose connection the readers of room history and sessions share.
    pub fn publisher(&self) -> &ClusterPublisher {
        &self.publisher
    }

    /// Start the subscriber task for the cluster reached through `urls` (seed nodes,
    /// comma-separated) and return the engine and the inbound channel. The task keeps
    /// retrying in the background; check [`Backplane::is_ready`].
    pub fn start(
        urls: &str,
        tls: Option<&redis::TlsCertificates>,
        history: Option<HistoryConfig>,
    ) -> Result<(Self, InboundRx, EngineTask), BackplaneError> {
        let uid = new_uid();
        let publisher = ClusterPublisher::new(urls, &uid, tls)?.with_history(history);
        let (push_tx, push_rx) = mpsc::unbounded_channel::<PushInfo>();
        let client = builder(urls, tls)
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(push_tx)
            .build()?;
        let (tx, rx) = mpsc::channel(super::INBOUND_CAPACITY);
        let (ctx, crx) = Subscriptions::channel();
        let ready = Arc::new(AtomicBool::new(false));
        let requesters = Arc::new(Mutex::new(Requesters::default()));
        let response = sharded_wire::response_channel(&uid);
        let sub = Subscriber {
            client,
            base: vec![BROADCAST_CHANNEL.to_owned(), response.clone()],
            response,
            receiver: Receiver::new(uid.clone(), tx.clone()),
            ready: ready.clone(),
            rooms: HashSet::new(),
            healthy: false,
            lost: HashSet::new(),
            recheck_at: None,
            stale: HashSet::new(),
            requesters: requesters.clone(),
        };
        tracing::info!(uid = %uid, seeds = seeds(urls).len(), "redis cluster backplane starting");
        Ok((
            Self {
                commands: ctx,
                publisher,
                inbound: tx,
                ready,
                requesters,
            },
            rx,
            sub.run(crx, push_rx).boxed(),
        ))
    }
}

impl Backplane for ClusterBackplane {
    fn publish(&self, b: Broadcast) -> BoxFuture<'static, Result<(), BackplaneError>> {
        let publisher = self.publisher.clone();
        let inbound = self.inbound.clone();
        async move {
            // A copy with a history position is delivered from Redis like every other
            // (not locally), so local members see the room's updates in order.
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
        let requesters = self.requesters.clone();
        async move {
            let answer = serde_json::from_slice::<serde_json::Value>(&r.payload).ok();
            let id = answer
                .as_ref()
                .and_then(|v| v.get("requestId")?.as_str().map(str::to_owned));
            let classic_type = answer.as_ref().and_then(|v| v.get("type")?.as_u64());
            let target = id.and_then(|id| {
                requesters
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .answer(&id, classic_type)
            });
            let Some((uid, kind)) = target else {
                return Ok(());
            };
            let Some(bytes) = sharded_wire::encode_response(&publisher.uid, kind, &r.payload)
            else {
                return Ok(());
            };
            publisher
                .publish_raw(&sharded_wire::response_channel(&uid), bytes)
                .await
                .map(drop)
        }
        .boxed()
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

struct Subscriber {
    client: ClusterClient,
    /// Channels subscribed for the replica's whole life: the namespace and its answers.
    base: Vec<String>,
    response: String,
    receiver: Receiver,
    ready: Arc<AtomicBool>,
    /// Room channels with local members.
    rooms: HashSet<String>,
    /// Every wanted channel is confirmed by the node that owns its slot.
    healthy: bool,
    /// Channels a node dropped (slot moved away) that are still wanted.
    lost: HashSet<String>,
    /// When to subscribe everything once more after a full re-subscription.
    recheck_at: Option<tokio::time::Instant>,
    /// Rooms left while the engine could not unsubscribe them.
    stale: HashSet<String>,
    requesters: Arc<Mutex<Requesters>>,
}

async fn bounded<T>(
    fut: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(COMMAND_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

impl Subscriber {
    async fn run(mut self, mut commands: Commands, mut pushes: mpsc::UnboundedReceiver<PushInfo>) {
        let mut conn = None::<ClusterConnection>;
        let mut repair = tokio::time::interval(REPAIR_EVERY);
        repair.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut down_logged = false;
        loop {
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    None => return,
                    Some(cmd) => self.on_command(conn.as_mut(), cmd).await,
                },
                push = pushes.recv() => match push {
                    None => return,
                    Some(p) => self.on_push(p).await,
                },
                _ = repair.tick(), if !self.healthy || !self.lost.is_empty() || !self.stale.is_empty() || self.recheck_due() => {
                    if conn.is_none() {
                        match bounded(self.client.get_async_connection()).await {
                            Ok(c) => conn = Some(c),
                            Err(e) => {
                                if !down_logged {
                                    tracing::warn!(error = %e, "redis cluster unreachable; serving local clients, retrying");
                                    down_logged = true;
                                }
                                continue;
                            }
                        }
                    }
                    if let Some(c) = conn.as_mut()
                        && self.repair(c).await
                    {
                        down_logged = false;
                    }
                }
                _ = ping.tick(), if self.healthy => {
                    if let Some(c) = conn.as_mut()
                        && let Err(e) = bounded(redis::cmd("PING").query_async::<Value>(c)).await
                    {
                        self.unwell(&e);
                    }
                }
            }
        }
    }

    fn recheck_due(&self) -> bool {
        self.recheck_at
            .is_some_and(|at| tokio::time::Instant::now() >= at)
    }

    /// Every channel the replica should be subscribed to now.
    fn wanted(&self) -> Vec<String> {
        self.base.iter().chain(self.rooms.iter()).cloned().collect()
    }

    fn unwell(&mut self, why: &str) {
        if self.healthy {
            tracing::warn!(error = %why, "redis cluster backplane lost a node; re-subscribing");
            metrics::gauge!("wsgate_backplane_connected").set(0.0);
        }
        self.healthy = false;
        self.ready.store(false, Ordering::Relaxed);
    }

    /// Subscribe to every wanted channel (while not ready, or for the recheck), or only the
    /// lost ones; true once all are confirmed.
    async fn repair(&mut self, conn: &mut ClusterConnection) -> bool {
        let full = !self.healthy;
        let recheck = !full && self.recheck_due();
        let channels: Vec<String> = if full || recheck {
            self.wanted()
        } else {
            self.lost.iter().cloned().collect()
        };
        // One at a time: concurrent requests to a node the crate is (re)connecting to can
        // cost a subscription (see the module comment). The pass stops at the first failure
        // (a shard still failing over) so it never waits a timeout per channel; the next
        // tick starts again, and what already succeeded is a no-op then.
        let total = channels.len();
        for ch in channels {
            let r = bounded(conn.ssubscribe(&ch)).await;
            tracing::debug!(channel = %ch, result = ?r, "cluster re-subscription");
            if let Err(e) = r {
                tracing::debug!(error = %e, "cluster re-subscription incomplete; retrying");
                return false;
            }
            self.lost.remove(&ch);
        }
        // Rooms left during the outage: unsubscribe them now, in order with everything else.
        for ch in self.stale.iter().cloned().collect::<Vec<_>>() {
            if bounded(conn.sunsubscribe(&ch)).await.is_err() {
                return false;
            }
            self.stale.remove(&ch);
        }
        // Control messages travel by classic pub/sub, which a cluster sends to every node.
        if full && let Err(e) = bounded(conn.subscribe(CONTROL_CHANNEL)).await {
            tracing::debug!(error = %e, "control channel subscription failed; retrying");
            return false;
        }
        if recheck {
            self.recheck_at = None;
            tracing::debug!(channels = total, "cluster subscriptions rechecked");
        } else if full {
            self.healthy = true;
            self.recheck_at = Some(tokio::time::Instant::now() + RECHECK_AFTER);
            self.ready.store(true, Ordering::Relaxed);
            metrics::gauge!("wsgate_backplane_connected").set(1.0);
            metrics::counter!("wsgate_backplane_reconnects_total").increment(1);
            tracing::info!(
                channels = total,
                rooms = self.rooms.len(),
                "redis cluster backplane subscribed"
            );
        } else {
            tracing::info!(
                channels = total,
                "re-subscribed shard channels whose slot moved"
            );
        }
        metrics::gauge!("wsgate_backplane_subscriptions").set(self.rooms.len() as f64);
        true
    }

    async fn on_command(&mut self, conn: Option<&mut ClusterConnection>, cmd: Command) {
        match cmd {
            Command::Subscribe(ch, done) => {
                self.stale.remove(&ch);
                let new = self.rooms.insert(ch.clone());
                if new
                    && self.healthy
                    && let Some(c) = conn
                    && let Err(e) = bounded(c.ssubscribe(&ch)).await
                {
                    // Answered anyway: the repair loop subscribes it with the others.
                    self.unwell(&e);
                }
                let _ = done.send(());
            }
            Command::Unsubscribe(ch) => {
                self.lost.remove(&ch);
                if self.rooms.remove(&ch) {
                    let sent = match conn {
                        Some(c) if self.healthy => bounded(c.sunsubscribe(&ch)).await,
                        _ => Err("not connected".into()),
                    };
                    if let Err(e) = sent {
                        // The crate would re-subscribe it after the outage: drop it then.
                        tracing::debug!(error = %e, "sunsubscribe deferred");
                        self.stale.insert(ch);
                    }
                }
            }
        }
        metrics::gauge!("wsgate_backplane_subscriptions").set(self.rooms.len() as f64);
    }

    async fn on_push(&mut self, p: PushInfo) {
        if p.kind != PushKind::SMessage {
            tracing::debug!(kind = ?p.kind, data = ?p.data, "cluster push");
        }
        match p.kind {
            PushKind::SMessage | PushKind::Message => {
                let mut data = p.data.into_iter();
                let (Some(ch), Some(payload)) = (data.next(), data.next()) else {
                    return;
                };
                let (Value::BulkString(ch), Value::BulkString(payload)) = (ch, payload) else {
                    return;
                };
                self.on_message(&ch, &payload).await;
            }
            PushKind::SUnsubscribe => {
                let Some(Value::BulkString(ch)) = p.data.first() else {
                    return;
                };
                let ch = String::from_utf8_lossy(ch).into_owned();
                // Our own SUNSUBSCRIBE removed it from `rooms` first; a wanted channel
                // dropped by the server means its slot moved.
                if (self.rooms.contains(&ch) || self.base.contains(&ch)) && self.lost.insert(ch) {
                    metrics::counter!("wsgate_backplane_resubscribes_total").increment(1);
                    tracing::info!("a shard channel's slot moved; re-subscribing it");
                }
            }
            PushKind::Disconnection => self.unwell("a cluster node connection closed"),
            _ => {}
        }
    }

    async fn on_message(&self, channel: &[u8], payload: &[u8]) {
        let rx = &self.receiver;
        let inbound = if channel == CONTROL_CHANNEL.as_bytes() {
            match rx.control(payload) {
                Some(c) => c,
                None => return,
            }
        } else {
            match sharded_wire::decode(payload) {
                Ok(sharded_wire::Message::Broadcast {
                    uid,
                    nsp,
                    broadcast,
                }) => {
                    if rx.is_own(Some(&uid)) || nsp != "/" {
                        return;
                    }
                    Inbound::Broadcast(broadcast)
                }
                Ok(sharded_wire::Message::Request { nsp, request }) => {
                    if rx.is_own(request.uid.as_deref())
                        || nsp != "/"
                        || channel == self.response.as_bytes()
                    {
                        return;
                    }
                    self.remember_requester(&request);
                    Inbound::Request(request)
                }
                Ok(sharded_wire::Message::Ignored { .. }) => return,
                Err(e) => return rx.bad_message(e.kind(), &e.to_string()),
            }
        };
        rx.forward(inbound).await;
    }

    /// Keep who asked, so the gateway's answer reaches the requester's own channel.
    fn remember_requester(&self, request: &request::Request) {
        if let (Some(id), Some(uid), Some(kind)) = (
            &request.request_id,
            &request.uid,
            sharded_wire::response_kind(&request.kind),
        ) {
            self.requesters
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remember(id.clone(), uid.clone(), kind);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_split_on_commas() {
        assert_eq!(
            seeds("redis://a:1, redis://b:2,,"),
            ["redis://a:1", "redis://b:2"]
        );
    }

    #[test]
    fn requesters_are_bounded() {
        let mut r = Requesters::default();
        for i in 0..(REQUESTERS_KEPT + 10) {
            r.remember(i.to_string(), "u".into(), 8);
        }
        assert!(r.answer("0", None).is_none());
        assert_eq!(
            r.answer(&(REQUESTERS_KEPT + 9).to_string(), None),
            Some(("u".into(), 8))
        );
        assert!(r.by_id.len() < REQUESTERS_KEPT);
    }

    #[test]
    fn a_broadcast_with_acks_is_answered_several_times() {
        let mut r = Requesters::default();
        let count = sharded_wire::BROADCAST_CLIENT_COUNT;
        r.remember("b".into(), "node".into(), count);
        r.remember(
            "f".into(),
            "node".into(),
            sharded_wire::FETCH_SOCKETS_RESPONSE,
        );
        assert_eq!(r.answer("b", Some(8)), Some(("node".into(), count)));
        let ack = Some(("node".into(), sharded_wire::BROADCAST_ACK));
        assert_eq!(r.answer("b", Some(9)), ack);
        assert_eq!(r.answer("b", Some(9)), ack);
        assert!(r.answer("f", None).is_some());
        assert!(r.answer("f", None).is_none(), "one answer to a fetch");
    }
}
