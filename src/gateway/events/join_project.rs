//! `join_project {projectId}`: validate, check the room limit, authorize, join the
//! project's room. The permission check may wait (a Redis lookup); if a revocation was
//! applied meanwhile, its answer may be stale, so the join checks again (see
//! `gateway::revoke` for the order that makes this enough).

use crate::gateway::{Ack, Socket};
use serde_json::Value;

use super::{error::ClientError, validate};
use crate::gateway::{
    Gateway,
    delivery::{
        membership,
        recover::{self, Recover},
    },
};
use crate::{
    auth::Identity,
    telemetry::{JoinResult, LimitKind},
};

/// Permission checks one join makes at most while revocations keep racing it.
const MAX_ATTEMPTS: usize = 5;

/// Handle a `join_project` event (`payload` is `None` when the client sent none).
pub async fn handle(gw: &Gateway, socket: &Socket, payload: Option<Value>, ack: Ack) {
    let (project, ask) = match validate::join(payload.as_ref()) {
        Ok(p) => p,
        Err(issues) => {
            JoinResult::Invalid.count();
            return ClientError::Validation(issues).reply(socket, ack);
        }
    };
    if let Some(max) = gw.sessions.limits().rooms_per_socket {
        let rooms = membership::project_rooms(socket);
        if rooms.len() >= max.get() && !rooms.iter().any(|r| r == project) {
            JoinResult::Limited.count();
            LimitKind::RoomsPerSocket.count();
            return ClientError::Limited {
                message: "Too many rooms",
                pattern: "join_project",
                data: payload.unwrap_or(Value::Null),
            }
            .reply(socket, ack);
        }
    }
    let opted = ask != Recover::No;
    if opted {
        // Before the room is joined: from here on its updates are kept for this socket.
        recover::start(gw, socket, project).await;
    }
    let identity = socket.extensions.get::<Identity>();
    let mut joined = false;
    if let Some(id) = identity {
        for _ in 0..MAX_ATTEMPTS {
            let generation = gw.revocations.current();
            if !gw.authz.may_join(&id, project).await {
                break;
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
            joined = true;
            break;
        }
    }
    if !joined {
        if opted {
            recover::cancel(gw, socket, project);
        }
        JoinResult::Denied.count();
        let data = payload.unwrap_or(Value::Null);
        return ClientError::NotFound {
            pattern: "join_project",
            data,
        }
        .reply(socket, ack);
    }
    JoinResult::Ok.count();
    if opted {
        return recover::finish(gw, socket, project, ask, ack).await;
    }
    super::error::reply_ok(
        socket,
        ack,
        "join_project",
        &format!("You have joined {project}!"),
    );
}
