//! Token expiry on live connections: a socket whose credential has an `exp` gets one
//! timer task that sends `token_expired` and disconnects it at `exp`. `auth_refresh` moves
//! the deadline; a disconnect ends the task (its sender is dropped with the extension).

use std::{sync::Arc, time::Duration};

use crate::gateway::Socket;
use serde_json::json;
use tokio::{sync::watch, time::Instant};

use crate::clock::now_ms;

/// The event sent just before the disconnect.
pub const TOKEN_EXPIRED: &str = "token_expired";

/// The socket's deadline (Unix seconds), kept in its extensions.
#[derive(Clone)]
struct Deadline(Arc<watch::Sender<u64>>);

/// The [`Instant`] of Unix time `exp` seconds.
fn instant_of(exp: u64) -> Instant {
    let left = exp.saturating_mul(1000).saturating_sub(now_ms());
    Instant::now() + Duration::from_millis(left)
}

/// Set (or move) the socket's expiry to `exp`; `None` leaves things as they are.
pub fn set(socket: &Socket, exp: Option<u64>) {
    let Some(exp) = exp else { return };
    if let Some(Deadline(tx)) = socket.extensions.get::<Deadline>() {
        tx.send_replace(exp);
        return;
    }
    let (tx, rx) = watch::channel(exp);
    socket.extensions.insert(Deadline(Arc::new(tx)));
    tokio::spawn(watch_expiry(socket.clone(), rx));
}

/// End the socket's timer (on disconnect).
pub fn stop(socket: &Socket) {
    socket.extensions.remove::<Deadline>();
}

async fn watch_expiry(socket: Socket, mut rx: watch::Receiver<u64>) {
    loop {
        let at = instant_of(*rx.borrow_and_update());
        tokio::select! {
            _ = tokio::time::sleep_until(at) => break,
            changed = rx.changed() => if changed.is_err() { return },
        }
    }
    metrics::counter!("wsgate_token_expired_total").increment(1);
    tracing::debug!(sid = %socket.id, "token expired; disconnecting");
    if let Err(e) = socket.emit(TOKEN_EXPIRED, &json!({"message": "Token expired"})) {
        tracing::debug!(sid = %socket.id, error = %e, "could not send token_expired");
    }
    // "Do not come back" with this token: the client must get a new one first.
    let _ = super::close::disconnect_for_good(&socket);
}
