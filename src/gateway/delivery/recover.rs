//! Recovery of a room's missed updates on a rejoin (`join_project {projectId, recover:
//! true}` or `{projectId, since: {epoch, offset}}`), on any replica.
//!
//! A socket that opted in is in the project's room (membership, fan-out to all) and in a
//! companion room of opted-in sockets, which receives each positioned update with one more
//! argument, `{epoch, offset}`: one encode per group, not per recipient. While it
//! recovers, it sits in a pending companion room instead, which the live fan-out skips;
//! the delivery task buffers that room's updates for it.
//!
//! Order, so that nothing is lost or doubled against the live stream:
//! 1. `Start` (in the delivery task): the socket enters the pending room, its buffer opens;
//! 2. the join subscribes the room (the subscription is confirmed by Redis);
//! 3. the history is read (head, and the entries after `since`, atomically);
//! 4. `Finish` (in the delivery task): the answer, the replay, then the buffered updates
//!    after the head, then the socket moves to the opted-in room. Steps 1 and 4 run between
//!    two deliveries, so every update is either buffered or delivered through the room.

use std::collections::HashMap;

use serde_json::{Value, json};
use socketioxide::socket::Sid;
use tokio::sync::{mpsc, oneshot};

use crate::gateway::{Ack, Gateway, Io, Socket};
use crate::{
    backplane::{Args, Broadcast},
    history::{HistoryError, Outcome, Position, Reason, Recovery},
    telemetry::{EventName, RecoveryResult},
};

/// Companion rooms start with a control character, which project ids cannot contain.
const OPTED: &str = "\u{1}recover:";
const PENDING: &str = "\u{1}pending:";

/// The room of the sockets of `room` that receive positions.
pub fn opted_room(room: &str) -> String {
    format!("{OPTED}{room}")
}

/// The room of the sockets of `room` that are recovering (the live fan-out skips them).
pub fn pending_room(room: &str) -> String {
    format!("{PENDING}{room}")
}

/// Whether `room` is one of wsgate's own companion rooms (never shown to anyone).
pub fn is_internal(room: &str) -> bool {
    room.starts_with('\u{1}')
}

/// The arguments of a positioned update for opted-in sockets: its own, then
/// `{projectId, epoch, offset}` (the project, so a client in several rooms knows which
/// position moved).
pub fn with_position(args: &Args, position: &Position, room: &str) -> Args {
    let mut v = Vec::with_capacity(args.0.len() + 1);
    v.extend(args.0.iter().cloned());
    v.push(rmpv::Value::Map(vec![
        ("projectId".into(), room.into()),
        ("epoch".into(), position.epoch.as_str().into()),
        ("offset".into(), position.offset.to_string().into()),
    ]));
    Args(v)
}

/// What a join asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recover {
    /// Nothing: the join answers as it always did.
    No,
    /// `recover: true`: positions from now on.
    Fresh,
    /// `since`: what came after this position, then positions from there on.
    Since(Position),
}

/// Work the delivery task does between two deliveries.
pub enum Command {
    /// Open `socket`'s buffer for `room` (step 1).
    Start {
        /// The recovering socket.
        socket: Socket,
        /// The project's room.
        room: String,
        /// Told once the buffer is open.
        done: oneshot::Sender<()>,
    },
    /// The join was refused: close the buffer, nothing sent.
    Cancel {
        /// The socket.
        socket: Socket,
        /// The project's room.
        room: String,
    },
    /// Answer, replay, release the buffer, go live (step 4).
    Finish(Box<Finish>),
    /// Stock connection-state recovery's work (`resume`).
    Resume(super::resume::Command),
}

/// A recovering join once its history is read (step 3).
pub struct Read {
    socket: Socket,
    room: String,
    since: Option<Position>,
    read: Result<Recovery, HistoryError>,
}

/// The end of a recovery: the read, and the join's ack that step 4 answers.
pub struct Finish {
    read: Read,
    ack: Ack,
}

/// The gateway's side of the command channel.
pub struct Commands {
    tx: mpsc::UnboundedSender<Command>,
    rx: std::sync::Mutex<Option<mpsc::UnboundedReceiver<Command>>>,
}

impl Default for Commands {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            tx,
            rx: std::sync::Mutex::new(Some(rx)),
        }
    }
}

impl Commands {
    /// The receiving half, for the delivery task (once).
    pub fn take(&self) -> Option<mpsc::UnboundedReceiver<Command>> {
        self.rx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    pub(crate) fn send(&self, c: Command) -> bool {
        self.tx.send(c).is_ok()
    }

    /// Send the command `make` builds around a completion signal, and wait until the
    /// delivery task has applied it (at once if that task is gone).
    pub(crate) async fn applied(&self, make: impl FnOnce(oneshot::Sender<()>) -> Command) {
        let (done, wait) = oneshot::channel();
        if self.send(make(done)) {
            let _ = wait.await;
        }
    }
}

/// Step 1, awaited before the join subscribes.
pub async fn start(gw: &Gateway, socket: &Socket, room: &str) {
    gw.recover
        .applied(|done| Command::Start {
            socket: socket.clone(),
            room: room.to_owned(),
            done,
        })
        .await;
}

/// The join was refused after [`start`].
pub fn cancel(gw: &Gateway, socket: &Socket, room: &str) {
    gw.recover.send(Command::Cancel {
        socket: socket.clone(),
        room: room.to_owned(),
    });
}

/// Step 3, once the socket is in the room: the history (head, and what came after `since`).
pub async fn read(gw: &Gateway, socket: &Socket, room: &str, ask: Recover) -> Read {
    let since = match ask {
        Recover::Since(p) => Some(p),
        _ => None,
    };
    let read = gw.history.read(room, since.clone()).await;
    if let Err(e) = &read
        && !matches!(e, HistoryError::Off)
    {
        tracing::warn!(error = %e, "history read failed; answering recovered: false");
    }
    Read {
        socket: socket.clone(),
        room: room.to_owned(),
        since,
        read,
    }
}

/// Step 4, handed to the delivery task with the join's ack.
pub fn finish(gw: &Gateway, read: Read, ack: Ack) {
    gw.recover
        .send(Command::Finish(Box::new(Finish { read, ack })));
}

/// The delivery task's recovery state: the open buffers, by room, and stock recovery's.
#[derive(Default)]
pub struct Recovering {
    pending: HashMap<String, Vec<(Sid, Vec<Broadcast>)>>,
    /// Stock connection-state recovery (`resume`).
    pub resumes: super::resume::Resumes,
}

impl Recovering {
    /// The delivery task's recovery state for `gw`.
    pub fn new(gw: &Gateway) -> Self {
        Self {
            pending: HashMap::new(),
            resumes: super::resume::Resumes::new(gw),
        }
    }

    /// Whether `room` has a recovering socket.
    pub fn has(&self, room: &str) -> bool {
        // Almost always empty: no hashing on the hot path then.
        !self.pending.is_empty() && self.pending.contains_key(room)
    }

    /// Keep `b` for every socket recovering `room`.
    pub fn buffer(&mut self, room: &str, b: &Broadcast) {
        if let Some(list) = self.pending.get_mut(room) {
            for (_, buf) in list {
                buf.push(b.clone());
            }
        }
    }

    fn pending_of(&self, room: &str, sid: Sid) -> bool {
        self.pending
            .get(room)
            .is_some_and(|l| l.iter().any(|(s, _)| *s == sid))
    }

    fn take(&mut self, room: &str, sid: Sid) -> Vec<Broadcast> {
        let Some(list) = self.pending.get_mut(room) else {
            return Vec::new();
        };
        let out = match list.iter().position(|(s, _)| *s == sid) {
            Some(i) => list.swap_remove(i).1,
            None => Vec::new(),
        };
        if list.is_empty() {
            self.pending.remove(room);
        }
        out
    }

    /// Apply one command.
    pub fn apply(&mut self, _io: &Io, c: Command) {
        match c {
            Command::Start { socket, room, done } => {
                socket.leave(opted_room(&room));
                socket.join(pending_room(&room));
                self.pending
                    .entry(room)
                    .or_default()
                    .push((socket.id, Vec::new()));
                let _ = done.send(());
            }
            Command::Cancel { socket, room } => {
                self.take(&room, socket.id);
                socket.leave(pending_room(&room));
            }
            Command::Finish(f) => self.finish(*f),
            Command::Resume(c) => self.resumes.apply(c),
        }
    }

    fn finish(&mut self, f: Finish) {
        let Finish {
            read:
                Read {
                    socket,
                    room,
                    since,
                    read,
                },
            ack,
        } = f;
        let buffered = self.take(&room, socket.id);
        let (answer, replay, head) = answer(&room, since.as_ref(), read);
        answer.1.count();
        let answer = answer.0;
        if let Err(e) = socket.emit(EventName::JoinProject.as_str(), &answer) {
            tracing::debug!(sid = %socket.id, error = %e, "could not send join answer");
        }
        if let Err(e) = ack.send(&answer) {
            tracing::debug!(sid = %socket.id, error = %e, "could not send join ack");
        }
        // A socket taken out of the room meanwhile (revocation, leave, disconnect) gets
        // nothing more of it.
        let in_room = socket.connected() && socket.rooms().iter().any(|r| r == &room);
        let owed = replay
            .iter()
            .chain(buffered.iter().filter(|b| after(b, head.as_ref())))
            .filter(|_| in_room);
        for b in owed {
            let sent = match &b.position {
                Some(p) => socket.emit(b.event.as_str(), &with_position(&b.args, p, &room)),
                None => socket.emit(b.event.as_str(), &b.args),
            };
            if let Err(e) = sent {
                tracing::debug!(sid = %socket.id, error = %e, "could not send a recovered update");
            }
        }
        if self.pending_of(&room, socket.id) {
            // Another recovery of this room by this socket is under way: it goes live.
            return;
        }
        socket.leave(pending_room(&room));
        if in_room {
            socket.join(opted_room(&room));
        }
    }
}

/// Whether a buffered update comes after the head the client was answered with (updates
/// without a position, or when no head is known, always do).
fn after(b: &Broadcast, head: Option<&Position>) -> bool {
    match (&b.position, head) {
        (Some(p), Some(h)) => p.epoch != h.epoch || p.offset.seq > h.offset.seq,
        _ => true,
    }
}

type Answer = ((Value, RecoveryResult), Vec<Broadcast>, Option<Position>);

/// The join answer of an opted-in client, the label of the outcome, what to replay and the
/// head after which buffered updates are released.
fn answer(room: &str, since: Option<&Position>, read: Result<Recovery, HistoryError>) -> Answer {
    let message = format!("You have joined {room}!");
    let lost = |reason: Reason, head: Option<&Position>| {
        let mut v =
            json!({"status": "ok", "message": message, "position": head.map(Position::to_json)});
        if since.is_some() {
            v["recovered"] = false.into();
        }
        v["reason"] = reason.as_str().into();
        (v, result_of(reason))
    };
    match read {
        Err(_) => (lost(Reason::Unavailable, None), Vec::new(), None),
        Ok(Recovery { head, outcome }) => match outcome {
            Outcome::Fresh => (
                (
                    json!({"status": "ok", "message": message, "position": head.to_json()}),
                    RecoveryResult::Fresh,
                ),
                Vec::new(),
                Some(head),
            ),
            Outcome::Recovered(replay) => {
                let at = since.map(Position::to_json);
                (
                    (
                        json!({"status": "ok", "message": message, "position": at, "recovered": true}),
                        RecoveryResult::Recovered,
                    ),
                    replay,
                    Some(head),
                )
            }
            Outcome::Lost(reason) => (lost(reason, Some(&head)), Vec::new(), Some(head)),
        },
    }
}

/// The `wsgate_recoveries_total` label of a recovery that could not replay everything.
fn result_of(reason: Reason) -> RecoveryResult {
    match reason {
        Reason::Trimmed => RecoveryResult::Trimmed,
        Reason::EpochChanged => RecoveryResult::EpochChanged,
        Reason::Unavailable => RecoveryResult::Unavailable,
    }
}
