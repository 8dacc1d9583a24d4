//! Fleet-wide revocation, as one replica applies it.
//!
//! Order is what makes it safe: (1) the permission source (and an identity source with a
//! cache) forgets the user (no stale cache can answer after this), (2) the revocation generation moves on, so a join that
//! was authorized before (1) but has not yet entered the room checks again (see
//! `join_project`), (3) the user's sockets leave the rooms and are told. A join commits
//! (generation check + room entry) under the membership lock, so it is either before (3)
//! and undone by it, or after (2) and re-checked.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::gateway::{ClientError, Gateway, Io, delivery::membership};
use crate::{
    auth::Identity,
    {backplane::Control, clock::now_ms},
};

/// Counts revocations applied here; a join compares it before and after its permission
/// check.
#[derive(Debug, Default)]
pub struct Revocations(AtomicU64);

impl Revocations {
    /// The current generation.
    pub fn current(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    /// Move to the next generation.
    pub fn bump(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Apply a control message to this replica's sockets.
pub async fn apply(io: &Io, gw: &Gateway, control: Control) {
    let Control::Revoke {
        user,
        project,
        at_ms,
    } = control;
    gw.authz.invalidate(&user);
    gw.auth.invalidate(&user);
    gw.revocations.bump();
    let mut removed = 0usize;
    for sid in gw.sessions.of(&user) {
        let Some(socket) = io.get_socket(sid) else {
            continue;
        };
        let rooms = membership::project_rooms(&socket);
        let lost: Vec<String> = match &project {
            Some(p) => rooms.into_iter().filter(|r| r == p).collect(),
            None => {
                let identity = socket.extensions.get::<Identity>().unwrap_or_default();
                let mut lost = Vec::new();
                for room in rooms {
                    if !gw.authz.may_join(&identity, &room).await {
                        lost.push(room);
                    }
                }
                lost
            }
        };
        for room in lost {
            gw.membership.leave(&socket, &room);
            ClientError::Revoked { project: room }.emit(&socket);
            removed += 1;
        }
    }
    metrics::counter!("wsgate_revocations_total").increment(1);
    let latency_ms = at_ms.map(|at| now_ms().saturating_sub(at));
    if let Some(ms) = latency_ms {
        metrics::histogram!("wsgate_revoke_seconds").record(ms as f64 / 1000.0);
    }
    tracing::info!(
        user = %user,
        project = project.as_deref().unwrap_or("*"),
        removed,
        latency_ms,
        "revocation applied"
    );
}
