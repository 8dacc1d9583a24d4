//! The rooms wsgate keeps itself, so a backend can reach one user or one socket with the
//! ordinary emitter calls (`to(room)`, `except(room)`, `socketsJoin`, `disconnectSockets`):
//!
//! - the socket-id room: as in Node, every socket is in the room named by its id. It is a
//!   local room only (no Redis subscription per socket): the Redis engine receives every
//!   room channel whose name has a socket id's length with one pattern subscription, and
//!   the local adapter resolves the room to the socket;
//! - the user room, `<prefix><userId>` (`--user-room-prefix`, `user:` by default; empty:
//!   none): a room like any project room (subscribed while it has local members), entered
//!   at connect.
//!
//! Neither can be joined, left or named by a client through `join_project` /
//! `leave_project`, and neither counts as a project room (room limits, revocation,
//! sessions).

use std::sync::Arc;

use super::membership;
use crate::{
    auth::Identity,
    gateway::{Gateway, Socket},
};

/// The user room a socket is in (socket extension), kept so that what lists a socket's
/// project rooms can leave it out without the gateway's settings.
#[derive(Clone)]
pub(crate) struct UserRoom(pub(crate) Arc<str>);

/// Whether `room` has the shape of a wsgate socket id: a socket-id room, never a project.
pub(crate) use crate::backplane::is_socket_id;

/// The user room of `user` with `prefix` (`None`: user rooms are off).
pub(crate) fn user_room(prefix: Option<&str>, user: &str) -> Option<String> {
    prefix.map(|p| format!("{p}{user}"))
}

/// Whether a client may not name `room` in `join_project` / `leave_project`: a socket id,
/// or any room under the user-room prefix (its own user's included: the room is wsgate's).
pub(crate) fn reserved(prefix: Option<&str>, room: &str) -> bool {
    is_socket_id(room) || prefix.is_some_and(|p| room.starts_with(p))
}

/// Whether `room` is one of `socket`'s own rooms kept by wsgate.
pub(crate) fn is_own(socket: &Socket, room: &str) -> bool {
    room == socket.id.as_str()
        || socket
            .extensions
            .get::<UserRoom>()
            .is_some_and(|u| *u.0 == *room)
}

/// A new socket enters its socket-id room (local, at once) and its user's room (in the
/// background: the first member on this replica subscribes the room's channel). Called
/// from the connect handler; nothing it does waits, so the connect path keeps its order.
pub(crate) fn enter(gw: &Arc<Gateway>, socket: &Socket) {
    socket.join(socket.id.to_string());
    let Some(identity) = socket.extensions.get::<Identity>() else {
        return;
    };
    let Some(room) = user_room(gw.user_room_prefix.as_deref(), &identity.user_id) else {
        return;
    };
    socket.extensions.insert(UserRoom(room.as_str().into()));
    let (gw, socket) = (gw.clone(), socket.clone());
    tokio::spawn(async move {
        if let Err(e) = gw.membership.join(&socket, &room).await {
            // The socket is in the room locally; the backplane subscribes on reconnect.
            tracing::warn!(error = %e, "backplane subscribe failed (user room)");
        }
    });
}

/// The rooms a Node server reports for `socket` (`fetchSockets`), in Node's order: its
/// id first, then the rooms in the order it entered them (the user room at connect,
/// then its projects, whose order socketioxide does not keep: sorted).
pub(crate) fn node_rooms(socket: &Socket) -> Vec<String> {
    let mut rooms = vec![socket.id.to_string()];
    if let Some(u) = socket.extensions.get::<UserRoom>()
        && socket.rooms().iter().any(|r| *r == *u.0)
    {
        rooms.push(u.0.to_string());
    }
    let mut projects = membership::project_rooms(socket);
    projects.sort();
    rooms.extend(projects);
    rooms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_ids_and_user_rooms_are_reserved() {
        let sid = socketioxide::socket::Sid::new().to_string();
        assert!(is_socket_id(&sid));
        assert!(reserved(Some("user:"), &sid));
        assert!(reserved(None, &sid));
        assert!(reserved(Some("user:"), "user:alice"));
        assert!(!reserved(None, "user:alice"));
        assert!(!reserved(Some("user:"), "project_one"));
        // Node's ids (20 characters) are not wsgate's.
        assert!(!is_socket_id("abcdefghijklmnopqrst"));
        assert!(!is_socket_id("abcdefghijklmno!"));
    }

    #[test]
    fn user_room_follows_the_prefix() {
        assert_eq!(
            user_room(Some("user:"), "alice").as_deref(),
            Some("user:alice")
        );
        assert_eq!(user_room(None, "alice"), None);
    }
}
