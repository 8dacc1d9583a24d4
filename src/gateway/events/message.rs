//! `message`: any payload, answered with `Hello world!` (the seed gateway's echo check).

use crate::gateway::{Ack, Socket};

/// The fixed answer.
pub const HELLO: &str = "Hello world!";

/// Answer a `message` event.
pub fn handle(socket: &Socket, ack: Ack) {
    super::error::reply_ok(socket, ack, "message", HELLO);
}
