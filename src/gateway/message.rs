//! `message`: any payload, answered with `Hello world!` (the seed gateway's echo check).

use socketioxide::extract::{AckSender, SocketRef};

/// The fixed answer.
pub const HELLO: &str = "Hello world!";

/// Answer a `message` event.
pub fn handle(socket: &SocketRef, ack: AckSender) {
    super::error::reply_ok(socket, ack, "message", HELLO);
}
