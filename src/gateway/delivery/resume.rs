//! Socket.IO's stock connection-state recovery (`--connection-state-recovery`), for the
//! official clients as they are: no application code.
//!
//! The client keeps the `pid` of the CONNECT reply and the last string argument of every
//! event it gets (its offset), and sends both back with its next CONNECT; the reply with
//! the same `pid` makes it report `socket.recovered`. wsgate's offset is the fleet order
//! (`crate::backplane::stream`): every update delivered carries, as its last argument,
//! the order of the last positioned update this replica has delivered, so a client's
//! offset says, for every room at once, how far it got. The session (user, rooms, and
//! each room's order at the join) is in Redis (`crate::history::session`), so it outlives
//! the replica that held it.
//!
//! A CONNECT with `{pid, offset}` (on any replica):
//! 1. the middleware ([`handshake`]) loads the session, re-authorizes each room and checks
//!    that the rooms' streams still hold everything after the offset; only then is the
//!    same `pid` sent back;
//! 2. the socket is connected; [`run`] puts it in the resuming room (every broadcast skips
//!    it; the delivery task keeps the ones meant for it), joins its rooms and reads what it
//!    missed (one script over every room, so the heads are one instant);
//! 3. `Finish`, in the delivery task: the missed updates in fleet order, then the kept
//!    ones that came after the heads, then it goes live. Between two deliveries, so each
//!    update reaches it once, in order.
//!
//! Replies a handler sends as a string event (`You have joined p!`) would become the
//! client's offset; with recovery on they go through the delivery task, which adds the
//! replica's order as the last argument, exactly where it stands in the stream.

use std::{
    borrow::Cow,
    collections::HashMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures_util::future::BoxFuture;
use socketioxide::socket::Sid;
use tokio::sync::oneshot;

use crate::{
    auth::Identity,
    backplane::{
        Broadcast,
        position::{Clock, Order},
    },
    gateway::{Ack, Gateway, Socket, connection::close::close_transport},
    history::{
        HistoryError, Reason,
        session::{Resume, SessionStore, new_pid, valid_pid},
    },
    telemetry::SessionRecovery,
};

/// The room of sockets being resumed: every live broadcast skips it.
const RESUMING: &str = "\u{1}resuming";

/// Stock recovery's settings and the replica's position in the fleet order.
pub struct Csr {
    store: Arc<dyn SessionStore>,
    /// How often connected sockets' sessions are kept alive.
    keep_every: Duration,
    /// How far this replica got.
    reached: Arc<Reached>,
}

impl Csr {
    /// Recovery with sessions in `store`, kept alive every `keep_every`.
    pub fn new(store: Arc<dyn SessionStore>, keep_every: Duration) -> Self {
        let cluster = store.is_cluster();
        Self {
            store,
            keep_every,
            reached: Arc::new(Reached {
                clock: Mutex::new(Clock::default()),
                known: AtomicBool::new(false),
                cluster,
            }),
        }
    }

    /// Whether sessions can be offered: the store answered once, so this replica knows
    /// where it stands in the fleet order.
    pub fn ready(&self) -> bool {
        self.reached.known.load(Ordering::Acquire)
    }
}

/// The largest order this replica delivered, per shard (on one Redis at least Redis's
/// clock at start-up). Moved by the delivery task only; not known until the store
/// answered once, and no session is offered before.
struct Reached {
    clock: Mutex<Clock>,
    known: AtomicBool,
    /// Offsets written for a cluster (`c...`).
    cluster: bool,
}

impl Reached {
    fn lock(&self) -> std::sync::MutexGuard<'_, Clock> {
        self.clock.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Move up to `order` (if any) and give the offset to send, once known.
    fn stamp(&self, order: Option<Order>) -> Option<String> {
        let mut clock = self.lock();
        if let Some(o) = order {
            clock.advance(o);
        }
        self.known
            .load(Ordering::Acquire)
            .then(|| clock.render(self.cluster))
    }

    /// Where the replica is, once known.
    fn now(&self) -> Option<Clock> {
        self.known
            .load(Ordering::Acquire)
            .then(|| self.lock().clone())
    }

    /// Start from the store's answer (never going back).
    fn seed(&self, start: &Clock) {
        let mut clock = self.lock();
        for (shard, at) in start.parts() {
            clock.advance(Order {
                shard: *shard,
                at: *at,
            });
        }
        self.known.store(true, Ordering::Release);
    }
}

/// A socket's session id (socket extension), set when recovery is on.
#[derive(Clone)]
pub struct SessionId(pub Arc<str>);

/// Set by the middleware when the session can be given back (socket extension).
#[derive(Clone)]
pub(crate) struct Resuming {
    offset: Clock,
    rooms: Vec<(String, u64)>,
    generation: u64,
}

/// The `{pid, offset}` a reconnecting stock client sends in its CONNECT `auth`. An offset
/// that is not one of ours (a string argument the application sent last) counts as none
/// we can trust: the session is not resumed.
pub(crate) fn asked(auth: Option<&serde_json::Value>) -> Option<(String, Option<Clock>)> {
    let auth = auth?;
    let pid = auth.get("pid")?.as_str()?;
    if !valid_pid(pid) {
        return Some((String::new(), None));
    }
    let offset = match auth.get("offset") {
        None | Some(serde_json::Value::Null) => Some(Clock::default()),
        Some(v) => v.as_str().and_then(Clock::parse),
    };
    Some((pid.to_owned(), offset))
}

/// Step 1, in the connect middleware once the client is authenticated: give the session
/// back (its `pid` in the reply, [`Resuming`] for [`run`]) or start a new one.
pub(crate) async fn handshake(
    gw: &Gateway,
    socket: &Socket,
    identity: &Identity,
    asked: Option<(String, Option<Clock>)>,
) {
    let Some(csr) = &gw.csr else { return };
    if !csr.ready() {
        tracing::debug!(sid = %socket.id, "connection-state recovery not ready (Redis time unknown): no session");
        return;
    }
    let pid = match asked {
        Some((pid, offset)) => match attempt(gw, csr, identity, &pid, offset).await {
            Ok(r) => {
                tracing::debug!(sid = %socket.id, rooms = r.rooms.len(), "resuming a session");
                // Before the socket is connected: nothing can reach it (no join, no reply)
                // until the replay is sent.
                hold(gw, socket).await;
                socket.extensions.insert(r);
                pid
            }
            Err(result) => {
                result.count();
                tracing::debug!(sid = %socket.id, result = result.as_str(), "session not resumed; a new one starts");
                new_pid()
            }
        },
        None => new_pid(),
    };
    socket.set_connect_pid(pid.clone());
    socket.extensions.insert(SessionId(pid.into()));
}

async fn attempt(
    gw: &Gateway,
    csr: &Csr,
    identity: &Identity,
    pid: &str,
    offset: Option<Clock>,
) -> Result<Resuming, SessionRecovery> {
    // A pid that cannot be ours names no session, whatever the offset says.
    if pid.is_empty() {
        return Err(SessionRecovery::Expired);
    }
    let offset = offset.ok_or(SessionRecovery::Unavailable)?;
    let session = csr
        .store
        .load(pid)
        .await
        .map_err(|e| unavailable(&e))?
        .filter(|s| *s.user == *identity.user_id)
        .ok_or(SessionRecovery::Expired)?;
    let generation = gw.revocations.current();
    let mut rooms = Vec::with_capacity(session.rooms.len());
    for (room, at) in session.rooms {
        if gw.authz.may_join(identity, &room).await {
            rooms.push((room, at));
        } else {
            forget(csr, pid, &room);
        }
    }
    match csr.store.resume(offset.clone(), rooms.clone(), true).await {
        Ok(Resume::Complete { .. }) => Ok(Resuming {
            offset,
            rooms,
            generation,
        }),
        Ok(Resume::Lost(reason)) => Err(result_of(reason)),
        Err(e) => Err(unavailable(&e)),
    }
}

fn unavailable(e: &HistoryError) -> SessionRecovery {
    tracing::warn!(error = %e, "session store unreachable; the client starts a new session");
    SessionRecovery::Unavailable
}

fn result_of(reason: Reason) -> SessionRecovery {
    match reason {
        Reason::Trimmed => SessionRecovery::Trimmed,
        Reason::EpochChanged => SessionRecovery::EpochChanged,
        Reason::Unavailable => SessionRecovery::Unavailable,
    }
}

/// Drop `room` from session `pid` in the background (the room may no longer be seen).
fn forget(csr: &Csr, pid: &str, room: &str) {
    in_background(
        csr.store.remove_room(pid, room),
        "drop a room from a session",
    );
}

/// Run a session write without waiting for it; a failure is only logged (the session is
/// then less exact, never wrong for another client).
fn in_background(write: BoxFuture<'static, Result<(), HistoryError>>, what: &'static str) {
    tokio::spawn(async move {
        if let Err(e) = write.await {
            tracing::debug!(error = %e, "could not {what}");
        }
    });
}

/// Open the socket's hold in the delivery task, and wait until it is open.
async fn hold(gw: &Gateway, socket: &Socket) {
    gw.recover
        .applied(|done| {
            super::recover::Command::Resume(Command::Start {
                socket: socket.clone(),
                done,
            })
        })
        .await;
}

/// Steps 2 and 3 for a socket the middleware marked [`Resuming`] (its hold is open).
pub(crate) async fn run(gw: Arc<Gateway>, socket: Socket) {
    let (Some(csr), Some(r)) = (&gw.csr, socket.extensions.get::<Resuming>()) else {
        return;
    };
    for (room, _) in &r.rooms {
        let still = || gw.revocations.current() == r.generation;
        match gw.membership.join_if(&socket, room, still).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!(sid = %socket.id, "a revocation raced the resume; room left out")
            }
            Err(e) => tracing::warn!(error = %e, "backplane subscribe failed"),
        }
    }
    let read = csr
        .store
        .resume(r.offset.clone(), r.rooms.clone(), false)
        .await;
    gw.recover
        .send(super::recover::Command::Resume(Command::Finish {
            socket,
            offset: r.offset.clone(),
            read,
        }));
}

/// Record a join in the socket's session, before it enters the room (so the room's order
/// recorded is at or before anything it will get live).
pub(crate) async fn joining(gw: &Gateway, socket: &Socket, identity: &Identity, room: &str) {
    let (Some(csr), Some(pid)) = (&gw.csr, socket.extensions.get::<SessionId>()) else {
        return;
    };
    if let Err(e) = csr.store.add_room(&pid.0, &identity.user_id, room).await {
        tracing::warn!(error = %e, "could not record a join in the session; it will not be recovered");
    }
}

/// The socket left `room` (or was refused it): not part of its session any more.
pub(crate) fn left(gw: &Gateway, socket: &Socket, room: &str) {
    if let (Some(csr), Some(pid)) = (&gw.csr, socket.extensions.get::<SessionId>()) {
        forget(csr, &pid.0, room);
    }
}

/// The socket disconnected: its session is kept for the recovery window only.
pub(crate) fn disconnected(gw: &Gateway, socket: &Socket) {
    if socket.extensions.get::<Resuming>().is_some() {
        gw.recover
            .send(super::recover::Command::Resume(Command::Forget(socket.id)));
    }
    if let (Some(csr), Some(pid)) = (&gw.csr, socket.extensions.get::<SessionId>()) {
        in_background(csr.store.release(&pid.0), "release a session");
    }
}

/// Send a handler's text reply: with recovery on, through the delivery task (which adds
/// the offset), else at once.
pub(crate) fn reply(
    gw: &Gateway,
    socket: &Socket,
    event: &'static str,
    text: Cow<'static, str>,
    ack: Ack,
) {
    if gw.csr.is_some() && socket.extensions.get::<SessionId>().is_some() {
        // Only fails once the delivery task is gone, and the replica with it.
        gw.recover
            .send(super::recover::Command::Resume(Command::Reply {
                socket: socket.clone(),
                event,
                text,
                ack,
            }));
        return;
    }
    send_reply(socket, event, &text, ack, None);
}

fn send_reply(socket: &Socket, event: &str, text: &str, ack: Ack, offset: Option<String>) {
    let sent = match offset {
        Some(o) => socket.emit(event, &(text, o)),
        None => socket.emit(event, &text),
    };
    if let Err(e) = sent {
        tracing::debug!(sid = %socket.id, error = %e, "could not send reply");
    }
    if let Err(e) = ack.send(&text) {
        tracing::debug!(sid = %socket.id, error = %e, "could not send ack");
    }
}

/// Learn Redis's clock (retrying while Redis is away), then keep connected sockets'
/// sessions alive until the process ends.
pub async fn keep_alive(gw: Arc<Gateway>, io: crate::gateway::Io) {
    let Some(csr) = &gw.csr else {
        return std::future::pending().await;
    };
    loop {
        match csr.store.start().await {
            Ok(start) => {
                csr.reached.seed(&start);
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, "connection-state recovery waits for Redis's clock");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    let mut every = tokio::time::interval(csr.keep_every);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let pids: Vec<String> = io
            .sockets()
            .iter()
            .filter_map(|s| s.extensions.get::<SessionId>().map(|p| p.0.to_string()))
            .collect();
        metrics::gauge!("wsgate_sessions").set(pids.len() as f64);
        if let Err(e) = csr.store.keep(pids).await {
            tracing::warn!(error = %e, "could not keep sessions alive");
        }
        let rooms: Vec<String> = gw
            .membership
            .rooms()
            .into_iter()
            .take(SAMPLED_ROOMS)
            .collect();
        match csr.store.room_bytes(rooms).await {
            Ok(sizes) => {
                for bytes in sizes {
                    metrics::histogram!("wsgate_history_room_bytes").record(bytes as f64);
                }
            }
            // An ACL without MEMORY USAGE: the histogram stays empty.
            Err(e) => tracing::debug!(error = %e, "could not measure room histories"),
        }
    }
}

/// How many of this replica's rooms have their history measured per keep-alive.
const SAMPLED_ROOMS: usize = 16;

/// Work for the delivery task.
pub enum Command {
    /// Step 2: keep the broadcasts meant for `socket` from now on.
    Start {
        /// The resuming socket.
        socket: Socket,
        /// Told once the buffer is open.
        done: oneshot::Sender<()>,
    },
    /// Step 3: the replay, the kept broadcasts, live.
    Finish {
        /// The resuming socket.
        socket: Socket,
        /// The client's offset.
        offset: Clock,
        /// What it missed.
        read: Result<Resume, HistoryError>,
    },
    /// The socket is gone: drop its hold.
    Forget(Sid),
    /// A handler's text reply, sent with the offset (after the replay while resuming).
    Reply {
        /// To whom.
        socket: Socket,
        /// The event name.
        event: &'static str,
        /// The text.
        text: Cow<'static, str>,
        /// Answered with the text.
        ack: Ack,
    },
}

/// What is kept for a resuming socket, in arrival order.
enum Kept {
    /// A broadcast meant for it.
    Broadcast(Broadcast),
    /// A handler's text reply.
    Reply(&'static str, Cow<'static, str>, Ack),
}

/// Where a resuming socket is.
enum Phase {
    /// Until the replay is read: everything meant for it is kept.
    Holding(Vec<Kept>),
    /// The replay is sent, but updates it holds may still be on their way to this replica
    /// (published before the read, not yet received): until this replica has delivered up
    /// to the heads, what comes is sent to the socket here, without what the replay had.
    Catching {
        /// Each room's last order in the replay.
        heads: HashMap<String, Order>,
        /// The largest head per shard: once the replica's clock reaches it in every
        /// shard, the socket goes live.
        upto: Clock,
        /// The socket's offset so far.
        at: Clock,
    },
}

/// A resuming socket's hold.
struct Hold {
    socket: Socket,
    since: std::time::Instant,
    phase: Phase,
}

/// A hold older than this is dropped (its socket never connected, or its resume never
/// ended); a late `Finish` then closes the transport, and the client comes back.
const HOLD_AT_MOST: Duration = Duration::from_secs(60);
/// Catching up ends after this even if nothing newer came (nothing was in flight then).
const CATCH_AT_MOST: Duration = Duration::from_secs(2);

/// The delivery task's side: the fleet order, and what is kept for resuming sockets.
#[derive(Default)]
pub struct Resumes {
    reached: Option<Arc<Reached>>,
    holds: HashMap<Sid, Hold>,
}

/// Whether `b` is meant for a socket in `rooms`.
fn meant(b: &Broadcast, rooms: &[socketioxide_core::adapter::Room]) -> bool {
    (b.rooms.is_empty() || rooms.iter().any(|r| b.rooms.iter().any(|x| x == r)))
        && !rooms.iter().any(|r| b.except.iter().any(|x| x == r))
}

/// Whether the replay had `b` (a positioned update at or before its room's head, in the
/// head's shard).
fn replayed(b: &Broadcast, heads: &HashMap<String, Order>) -> bool {
    match (b.order, b.rooms.as_slice()) {
        (Some(o), [room]) => heads
            .get(room)
            .is_some_and(|h| o.shard == h.shard && o.at <= h.at),
        _ => false,
    }
}

/// Whether `now` reached `upto` in every shard.
fn caught_up(now: &Clock, upto: &Clock) -> bool {
    upto.parts()
        .iter()
        .all(|(shard, at)| now.get(*shard) >= *at)
}

/// Send `b` to `socket` with the offset `at` moved to it.
fn send_at(socket: &Socket, mut b: Broadcast, at: &mut Clock, cluster: bool) {
    if let Some(o) = b.order {
        at.advance(o);
    }
    b.args.0.push(rmpv::Value::from(at.render(cluster)));
    if let Err(e) = socket.emit(b.event.as_str(), &b.args) {
        tracing::debug!(sid = %socket.id, error = %e, "could not send a recovered update");
    }
}

impl Resumes {
    /// The delivery task's state for `gw` (inert when recovery is off).
    pub fn new(gw: &Gateway) -> Self {
        Self {
            reached: gw.csr.as_ref().map(|c| c.reached.clone()),
            holds: HashMap::new(),
        }
    }

    fn cluster(&self) -> bool {
        self.reached.as_ref().is_some_and(|r| r.cluster)
    }

    /// A broadcast about to be delivered: resuming sockets keep it (or get it here, without
    /// what their replay had) and the live broadcast skips them; everyone else gets it with
    /// the offset as its last argument (with recovery on).
    pub fn deliver(&mut self, b: &mut Broadcast) {
        if !self.holds.is_empty() {
            // Sockets that caught up before this update get it live; it comes after
            // everything their replay had.
            if let Some(now) = self.now() {
                self.release(&now);
            }
            self.hold(b);
        }
        let Some(reached) = &self.reached else { return };
        if let Some(at) = reached.stamp(b.order) {
            b.args.0.push(rmpv::Value::from(at));
        }
    }

    fn hold(&mut self, b: &mut Broadcast) {
        let cluster = self.cluster();
        for h in self.holds.values_mut() {
            if !meant(b, &h.socket.rooms()) {
                continue;
            }
            match &mut h.phase {
                Phase::Holding(kept) => kept.push(Kept::Broadcast(b.clone())),
                Phase::Catching { heads, at, .. } => {
                    if !replayed(b, heads) {
                        send_at(&h.socket, b.clone(), at, cluster);
                    }
                }
            }
        }
        b.except.push(RESUMING.to_owned());
    }

    /// Let go of the sockets that caught up with the replica (`order`), and of holds that
    /// lasted too long.
    fn release(&mut self, now: &Clock) {
        self.holds.retain(|_, h| {
            let keep = match &h.phase {
                Phase::Holding(_) => h.since.elapsed() < HOLD_AT_MOST,
                Phase::Catching { upto, .. } => {
                    !caught_up(now, upto) && h.since.elapsed() < CATCH_AT_MOST
                }
            };
            if !keep {
                h.socket.leave(RESUMING);
            }
            keep
        });
    }

    fn now(&self) -> Option<Clock> {
        self.reached.as_ref().and_then(|r| r.now())
    }

    /// Apply one command.
    pub fn apply(&mut self, c: Command) {
        match c {
            Command::Start { socket, done } => {
                socket.join(RESUMING);
                let hold = Hold {
                    socket,
                    since: std::time::Instant::now(),
                    phase: Phase::Holding(Vec::new()),
                };
                self.holds.insert(hold.socket.id, hold);
                let _ = done.send(());
            }
            Command::Forget(sid) => {
                self.holds.remove(&sid);
            }
            Command::Finish {
                socket,
                offset,
                read,
            } => self.finish(socket, offset, read),
            Command::Reply {
                socket,
                event,
                text,
                ack,
            } => {
                let cluster = self.cluster();
                match self.holds.get_mut(&socket.id).map(|h| &mut h.phase) {
                    Some(Phase::Holding(kept)) => kept.push(Kept::Reply(event, text, ack)),
                    Some(Phase::Catching { at, .. }) => {
                        send_reply(&socket, event, &text, ack, Some(at.render(cluster)))
                    }
                    None => {
                        let at = self.reached.as_ref().and_then(|r| r.stamp(None));
                        send_reply(&socket, event, &text, ack, at)
                    }
                }
            }
        }
    }

    fn finish(&mut self, socket: Socket, offset: Clock, read: Result<Resume, HistoryError>) {
        let kept = match self.holds.get_mut(&socket.id).map(|h| &mut h.phase) {
            Some(Phase::Holding(kept)) => Some(std::mem::take(kept)),
            _ => None,
        };
        let (replay, heads, kept) = match (read, kept) {
            (Ok(Resume::Complete { replay, heads }), Some(kept)) => (replay, heads, kept),
            (other, kept) => {
                self.holds.remove(&socket.id);
                socket.leave(RESUMING);
                if kept.is_none() && !socket.connected() {
                    return; // gone meanwhile: nothing to give back
                }
                // The check passed a moment ago and the read did not (or the hold was
                // dropped): the client was told `recovered`, so it must not go on as if it
                // were. Closing the transport makes it reconnect, and the next check says
                // what happened.
                let result = match other {
                    Ok(Resume::Lost(r)) => result_of(r),
                    Err(e) => unavailable(&e),
                    Ok(Resume::Complete { .. }) => SessionRecovery::Unavailable,
                };
                result.count();
                tracing::info!(sid = %socket.id, result = result.as_str(), "session could not be resumed after all; closing the transport");
                close_transport(&socket);
                return;
            }
        };
        SessionRecovery::Recovered.count();
        metrics::histogram!("wsgate_session_replay_updates").record(replay.len() as f64);
        let cluster = self.cluster();
        tracing::debug!(sid = %socket.id, offset = %offset.render(cluster), replay = replay.len(), kept = kept.len(), "session resumed");
        let mut at = offset;
        for b in replay {
            send_at(&socket, b, &mut at, cluster);
        }
        let mut replies = Vec::new();
        for k in kept {
            match k {
                Kept::Broadcast(b) if replayed(&b, &heads) => {}
                Kept::Broadcast(b) => send_at(&socket, b, &mut at, cluster),
                Kept::Reply(event, text, ack) => replies.push((event, text, ack)),
            }
        }
        for (event, text, ack) in replies {
            send_reply(&socket, event, &text, ack, Some(at.render(cluster)));
        }
        let mut upto = Clock::default();
        for head in heads.values() {
            upto.advance(*head);
        }
        if let Some(h) = self.holds.get_mut(&socket.id) {
            h.since = std::time::Instant::now();
            h.phase = Phase::Catching { heads, upto, at };
        }
        if let Some(now) = self.now() {
            self.release(&now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn positioned(room: &str, shard: u32, at: u64) -> Broadcast {
        Broadcast {
            rooms: vec![room.into()],
            order: Some(Order { shard, at }),
            ..Broadcast::default()
        }
    }

    #[test]
    fn the_replay_had_an_update_only_at_or_before_its_head_in_the_same_shard() {
        let heads = HashMap::from([("r".to_owned(), Order { shard: 1, at: 50 })]);
        assert!(replayed(&positioned("r", 1, 50), &heads));
        assert!(!replayed(&positioned("r", 1, 51), &heads));
        // Another shard ordered it (the room moved): not comparable, so not in the replay.
        assert!(!replayed(&positioned("r", 2, 10), &heads));
        assert!(!replayed(&positioned("other", 1, 10), &heads));
        assert!(!replayed(&Broadcast::default(), &heads));
    }

    #[test]
    fn caught_up_in_every_shard_of_the_heads() {
        let mut upto = Clock::default();
        upto.advance(Order { shard: 1, at: 50 });
        upto.advance(Order { shard: 2, at: 70 });
        let mut now = Clock::default();
        now.advance(Order { shard: 1, at: 60 });
        assert!(!caught_up(&now, &upto));
        now.advance(Order { shard: 2, at: 70 });
        assert!(caught_up(&now, &upto));
        assert!(caught_up(&Clock::default(), &Clock::default()));
    }

    #[test]
    fn offsets_are_decimal_on_one_redis_and_per_shard_on_a_cluster() {
        let reached = |cluster| Reached {
            clock: Mutex::new(Clock::default()),
            known: AtomicBool::new(false),
            cluster,
        };
        let one = reached(false);
        assert_eq!(one.stamp(Some(Order::single(5))), None, "not known yet");
        one.seed(&Clock::single(3));
        assert_eq!(one.stamp(None).as_deref(), Some("5"));
        let many = reached(true);
        many.seed(&Clock::default());
        assert_eq!(many.stamp(None).as_deref(), Some("c"));
        many.stamp(Some(Order { shard: 2, at: 9 }));
        assert_eq!(
            many.stamp(Some(Order { shard: 1, at: 4 })).as_deref(),
            Some("c00000001.4_00000002.9")
        );
    }
}
