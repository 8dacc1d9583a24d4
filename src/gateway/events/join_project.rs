//! `join_project {projectId}`: validate, check the room limit, authorize, join the
//! project's room. The permission check may wait (a Redis lookup); if a revocation was
//! applied meanwhile, its answer may be stale, so the join checks again (see
//! `gateway::revoke` for the order that makes this enough).

use serde_json::Value;

use super::{Outcome, Reply, error::ClientError, validate};
use crate::{
    auth::Identity,
    gateway::{
        Gateway, Socket,
        delivery::{
            membership,
            recover::{self, Recover},
            resume,
        },
    },
    telemetry::{EventName, JoinResult, LimitKind},
};

/// Permission checks one join makes at most while revocations keep racing it.
const MAX_ATTEMPTS: usize = 5;

/// Handle a `join_project` event (`payload` is `None` when the client sent none).
pub(crate) async fn handle(gw: &Gateway, socket: &Socket, payload: Option<Value>) -> Outcome {
    let (project, ask) = validate::join(payload.as_ref()).map_err(ClientError::Validation)?;
    if gw.reserved_room(project) {
        // wsgate's own rooms (a socket id, a user): as for any project it may not see.
        return Err(not_found(payload));
    }
    within_room_limit(gw, socket, project, payload.as_ref())?;
    let opted = ask != Recover::No;
    if opted {
        // Before the room is joined: from here on its updates are kept for this socket.
        recover::start(gw, socket, project).await;
    }
    if let Some(id) = socket.extensions.get::<Identity>() {
        // Stock recovery: the room's order is recorded before the socket enters it.
        resume::joining(gw, socket, &id, project).await;
    }
    if !enter(gw, socket, project).await {
        resume::left(gw, socket, project);
        if opted {
            recover::cancel(gw, socket, project);
        }
        return Err(not_found(payload));
    }
    if opted {
        let read = recover::read(gw, socket, project, ask).await;
        return Ok(Reply::Recovery(Box::new(read)));
    }
    Ok(Reply::Text(format!("You have joined {project}!").into()))
}

/// The one answer for a project that does not exist or may not be seen.
fn not_found(payload: Option<Value>) -> ClientError {
    ClientError::NotFound {
        pattern: EventName::JoinProject.as_str(),
        data: payload.unwrap_or(Value::Null),
    }
}

/// The `wsgate_joins_total` label of an outcome.
pub(crate) fn result(outcome: &Outcome) -> JoinResult {
    match outcome {
        Ok(_) => JoinResult::Ok,
        Err(ClientError::Validation(_)) => JoinResult::Invalid,
        Err(ClientError::Limited { .. }) => JoinResult::Limited,
        // Not found or not permitted (one answer for both).
        Err(_) => JoinResult::Denied,
    }
}

/// Refuse a new room past `--max-rooms-per-socket` (a room the socket is in already is
/// not a new one).
fn within_room_limit(
    gw: &Gateway,
    socket: &Socket,
    project: &str,
    payload: Option<&Value>,
) -> Result<(), ClientError> {
    let Some(max) = gw.sessions.limits().rooms_per_socket else {
        return Ok(());
    };
    let rooms = membership::project_rooms(socket);
    if rooms.len() < max.get() || rooms.iter().any(|r| r == project) {
        return Ok(());
    }
    LimitKind::RoomsPerSocket.count();
    Err(ClientError::Limited {
        message: "Too many rooms",
        pattern: EventName::JoinProject.as_str(),
        data: payload.cloned().unwrap_or(Value::Null),
    })
}

/// Authorize the socket's identity for `project` and enter its room. A revocation applied
/// during the permission check may have made its answer stale: the entry (under the
/// membership lock) fails then, and the check is made again. `false`: not permitted.
async fn enter(gw: &Gateway, socket: &Socket, project: &str) -> bool {
    let Some(id) = socket.extensions.get::<Identity>() else {
        return false;
    };
    for _ in 0..MAX_ATTEMPTS {
        let generation = gw.revocations.current();
        if !gw.authz.may_join(&id, project).await {
            return false;
        }
        let still = || gw.revocations.current() == generation;
        match gw.membership.join_if(socket, project, still).await {
            Ok(false) => continue,
            Ok(true) => {}
            Err(e) => {
                // The socket is in the room locally; the backplane subscribes on reconnect.
                tracing::warn!(error = %e, "backplane subscribe failed");
            }
        }
        return true;
    }
    false
}
