//! `leave_project {projectId}`: validate, leave the project's room (leaving a room the
//! socket is not in is not an error, as in the seed gateway).

use crate::gateway::{Ack, Gateway, Socket};
use serde_json::Value;

use super::{error::ClientError, validate};

/// Handle a `leave_project` event.
pub fn handle(gw: &Gateway, socket: &Socket, payload: Option<Value>, ack: Ack) {
    match validate::project_id(payload.as_ref()) {
        Ok(project) => {
            gw.membership.leave(socket, project);
            super::error::reply_ok(
                socket,
                ack,
                "leave_project",
                &format!("You have left {project}!"),
            );
        }
        Err(issues) => ClientError::Validation(issues).reply(socket, ack),
    }
}
