//! `leave_project {projectId}`: validate, leave the project's room (leaving a room the
//! socket is not in is not an error, as in the seed gateway).

use serde_json::Value;

use super::{Outcome, Reply, error::ClientError, validate};
use crate::gateway::{Gateway, Socket, delivery::resume};

/// Handle a `leave_project` event.
pub(crate) fn handle(gw: &Gateway, socket: &Socket, payload: Option<Value>) -> Outcome {
    let project = validate::project_id(payload.as_ref()).map_err(ClientError::Validation)?;
    gw.membership.leave(socket, project);
    resume::left(gw, socket, project);
    Ok(Reply::Text(format!("You have left {project}!").into()))
}
