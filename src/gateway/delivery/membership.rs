//! Room membership with a reference count per room, so the backplane is subscribed to a
//! room exactly while this replica has at least one member in it.
//!
//! socketioxide's local adapter is the authority on which socket is in which room (it does
//! the local fan-out); this type wraps every change to it so that the counts cannot drift.
//! All changes go through one mutex, never held across an `.await`: the backplane orders
//! subscribe / unsubscribe at call time, so calling it under the lock keeps the order of
//! first-join and last-leave in Redis the same as here.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use tokio::sync::watch;

use crate::gateway::Socket;

/// How long a join waits for a subscription another join started.
const CONFIRM_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// What a join waits for once it is in the room.
enum Wait {
    /// It is the room's first member: subscribe, then tell the others.
    Subscribe(
        futures_util::future::BoxFuture<'static, Result<(), BackplaneError>>,
        watch::Sender<bool>,
    ),
    /// Another join subscribed: wait for its confirmation.
    Confirmed(watch::Receiver<bool>),
}

use crate::backplane::{Backplane, BackplaneError};

/// The project rooms `socket` is in: its rooms without wsgate's companion rooms of
/// recovery and without its socket-id and user rooms (`reach`), which never count in room
/// limits or revocation.
pub fn project_rooms(socket: &Socket) -> Vec<String> {
    socket
        .rooms()
        .into_iter()
        .filter(|r| !super::recover::is_internal(r) && !super::reach::is_own(socket, r))
        .map(|r| r.to_string())
        .collect()
}

/// A room with local members: how many, and whether its subscription is confirmed.
struct Room {
    members: usize,
    /// `true` once the backplane confirmed the subscription (or failed: it subscribes
    /// again on reconnect).
    subscribed: watch::Receiver<bool>,
}

/// Local room reference counts, tied to one backplane.
pub struct Membership {
    backplane: Arc<dyn Backplane>,
    counts: Mutex<HashMap<String, Room>>,
}

impl Membership {
    /// Track memberships for `backplane`.
    pub fn new(backplane: Arc<dyn Backplane>) -> Self {
        Self {
            backplane,
            counts: Mutex::new(HashMap::new()),
        }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<String, Room>> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Put `socket` in `room`. Completes once the room's fleet-wide updates will reach it.
    pub async fn join(&self, socket: &Socket, room: &str) -> Result<(), BackplaneError> {
        self.join_if(socket, room, || true).await.map(drop)
    }

    /// Put `socket` in `room` if `still_allowed()` holds at the moment of entry (evaluated
    /// under the membership lock, so nothing that also takes it runs in between).
    /// `Ok(false)`: the check failed and nothing changed. Every joiner waits for the room's
    /// subscription, not only the first: a second join while the first one's SUBSCRIBE is
    /// in flight must not answer (or read history) before updates can arrive.
    pub async fn join_if(
        &self,
        socket: &Socket,
        room: &str,
        still_allowed: impl FnOnce() -> bool,
    ) -> Result<bool, BackplaneError> {
        let subscribed = {
            let mut counts = self.counts();
            // socketioxide marks a closing socket disconnected before its disconnect
            // handler (`leave_all`) runs: a join racing a disconnect must not count a room
            // that nothing would ever release.
            if !socket.connected() {
                return Ok(true);
            }
            if !still_allowed() {
                return Ok(false);
            }
            let member = socket.rooms().iter().any(|r| r == room);
            if !member {
                socket.join(room.to_owned());
            }
            match counts.get_mut(room) {
                Some(r) => {
                    r.members += usize::from(!member);
                    Wait::Confirmed(r.subscribed.clone())
                }
                None => {
                    let (tx, rx) = watch::channel(false);
                    counts.insert(
                        room.to_owned(),
                        Room {
                            members: 1,
                            subscribed: rx,
                        },
                    );
                    Wait::Subscribe(self.backplane.subscribe(room), tx)
                }
            }
        };
        match subscribed {
            Wait::Subscribe(fut, tx) => {
                let r = fut.await;
                let _ = tx.send(true);
                r.map(|()| true)
            }
            Wait::Confirmed(mut rx) => {
                // The first joiner's future may be dropped with its task: not forever.
                let _ = tokio::time::timeout(CONFIRM_WAIT, rx.wait_for(|s| *s)).await;
                Ok(true)
            }
        }
    }

    /// Take `socket` out of `room` (nothing happens if it was not in it).
    pub fn leave(&self, socket: &Socket, room: &str) {
        let mut counts = self.counts();
        if !socket.rooms().iter().any(|r| r == room) {
            return;
        }
        socket.leave(vec![
            room.to_owned(),
            super::recover::opted_room(room),
            super::recover::pending_room(room),
        ]);
        self.release(&mut counts, room);
    }

    /// Forget every room of a disconnecting socket (socketioxide removes it from the local
    /// adapter itself right after).
    pub fn leave_all(&self, socket: &Socket) {
        let mut counts = self.counts();
        for room in socket.rooms() {
            socket.leave(room.clone());
            self.release(&mut counts, &room);
        }
    }

    fn release(&self, counts: &mut HashMap<String, Room>, room: &str) {
        if let Some(r) = counts.get_mut(room) {
            r.members -= 1;
            if r.members == 0 {
                counts.remove(room);
                self.backplane.unsubscribe(room);
            }
        }
    }

    /// The number of local members of `room`.
    pub fn count(&self, room: &str) -> usize {
        self.counts().get(room).map_or(0, |r| r.members)
    }

    /// The rooms with at least one local member.
    pub fn rooms(&self) -> Vec<String> {
        self.counts().keys().cloned().collect()
    }
}
