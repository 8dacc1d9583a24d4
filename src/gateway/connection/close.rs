//! The two ways the server ends a connection, and why each cause picks the one it does.
//! The official clients decide from the way whether to come back:
//!
//! - [`close_transport`] closes the engine.io connection (a websocket close frame; a
//!   polling session's close packet) and sends no Socket.IO DISCONNECT. The client sees
//!   `transport close` (or `transport error`) and reconnects with its own backoff, as after
//!   Node's `io.close()` or a dying Node process. For every cause after which the client is
//!   welcome back: the drain after SIGTERM, a slow-consumer eviction, and the transport
//!   part of an adapter's `disconnectSockets(true)`.
//! - [`disconnect_for_good`] sends the Socket.IO DISCONNECT: the client sees
//!   `io server disconnect` and stays offline until the application decides otherwise.
//!   For "do not come back": an expired token, and `disconnectSockets` from a backend
//!   (which Node answers the same way, whether `close` is set or not).

use std::time::Duration;

use socketioxide::SocketError;

use crate::gateway::Socket;

/// How long a close may take before its task stops waiting. The close itself has started
/// by then; only a peer that stopped reading keeps it from completing (its connection ends
/// when the peer reads again or TCP gives up).
const CLOSE_WAIT: Duration = Duration::from_secs(30);

/// Close the socket's engine.io connection: the client reconnects by itself. Returns at
/// once; the close runs in a task of its own.
pub(crate) fn close_transport(socket: &Socket) {
    let socket = socket.clone();
    tokio::spawn(async move {
        if tokio::time::timeout(CLOSE_WAIT, socket.close_underlying_transport())
            .await
            .is_err()
        {
            tracing::debug!(sid = %socket.id, "transport close still pending (peer not reading)");
        }
    });
}

/// Send the Socket.IO DISCONNECT: the client does not reconnect by itself. Fails with
/// [`SocketError::InternalChannelFull`] while the socket's queue has no room (retry later).
pub(crate) fn disconnect_for_good(socket: &Socket) -> Result<(), SocketError> {
    socket.clone().disconnect()
}
