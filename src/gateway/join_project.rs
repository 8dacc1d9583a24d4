//! `join_project {projectId}`: validate, authorize, join the project's room.

use serde_json::Value;
use socketioxide::extract::{AckSender, SocketRef};

use super::{Gateway, error::ClientError, validate};
use crate::auth::Identity;

/// Handle a `join_project` event (`payload` is `None` when the client sent none).
pub async fn handle(gw: &Gateway, socket: &SocketRef, payload: Option<Value>, ack: AckSender) {
    let project = match validate::project_id(payload.as_ref()) {
        Ok(p) => p,
        Err(issues) => {
            metrics::counter!("wsgate_joins_total", "result" => "invalid").increment(1);
            return ClientError::Validation(issues).reply(socket, ack);
        }
    };
    let allowed = socket
        .extensions
        .get::<Identity>()
        .is_some_and(|id| gw.authz.may_join(&id, project));
    if !allowed {
        metrics::counter!("wsgate_joins_total", "result" => "denied").increment(1);
        let data = payload.unwrap_or(Value::Null);
        return ClientError::NotFound {
            pattern: "join_project",
            data,
        }
        .reply(socket, ack);
    }
    if let Err(e) = gw.membership.join(socket, project).await {
        // The socket is in the room locally; the backplane subscribes on reconnect.
        tracing::warn!(error = %e, "backplane subscribe failed");
    }
    metrics::counter!("wsgate_joins_total", "result" => "ok").increment(1);
    super::error::reply_ok(
        socket,
        ack,
        "join_project",
        &format!("You have joined {project}!"),
    );
}
