//! `leave_project {projectId}`: validate, leave the project's room (leaving a room the
//! socket is not in is not an error, as in the seed gateway; wsgate's own rooms, a socket
//! id or a user room, are never left this way).

use serde_json::Value;

use super::{Outcome, Reply, error::ClientError, validate};
use crate::gateway::{Gateway, Socket, delivery::resume};

/// Handle a `leave_project` event.
pub(crate) fn handle(gw: &Gateway, socket: &Socket, payload: Option<Value>) -> Outcome {
    let project = validate::project_id(payload.as_ref()).map_err(ClientError::Validation)?;
    // wsgate's own rooms (a socket id, a user) stay: the answer is the one for any room
    // the socket is not in.
    if !gw.reserved_room(project) {
        gw.membership.leave(socket, project);
        resume::left(gw, socket, project);
    }
    Ok(Reply::Text(format!("You have left {project}!").into()))
}
