//! Slow consumers: a socket whose queue was full when an update came is disconnected with
//! a reason instead of losing updates in silence (docs/client-contract.md, "Slow clients").
//!
//! The adapter reports the socket (see [`super::adapter`]); this task, off the delivery
//! path, takes it out of every room at once (so nothing more is queued for it and its
//! memory stays bounded by `--max-buffer`), counts it, and then tells it: the `exception`
//! `Too slow: disconnected`, then a Socket.IO disconnect. Both need room in the very queue
//! that was full, so they are retried until the client has read enough or the socket is
//! gone. A client that reads nothing at all is closed by engine.io itself: its next ping
//! finds the queue full and the transport is closed (at most `--ping-interval` later).

use std::{sync::Arc, time::Duration};

use socketioxide::SocketError;
use tokio::time::Instant;

use crate::gateway::{ClientError, Gateway, Io, OverflowRx, Socket};

/// How often a full socket is offered the goodbye again.
const RETRY_EVERY: Duration = Duration::from_millis(50);
/// After this the socket is left to engine.io's heartbeat (it is out of every room already).
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

/// Marks a socket being evicted, so that repeated reports act once.
#[derive(Clone, Copy)]
struct Evicted;

/// Consume overflow reports until the adapter is gone. `max_buffer` is the queue bound the
/// client is told it passed.
pub async fn run(io: Io, gw: Arc<Gateway>, mut reports: OverflowRx, max_buffer: usize) {
    while let Some(sid) = reports.recv().await {
        let Some(socket) = io.get_socket(sid) else {
            continue;
        };
        if socket.extensions.get::<Evicted>().is_some() {
            continue;
        }
        socket.extensions.insert(Evicted);
        gw.membership.leave_all(&socket);
        metrics::counter!("wsgate_slow_consumer_disconnects_total").increment(1);
        let user = socket
            .extensions
            .get::<crate::auth::Identity>()
            .map(|i| i.user_id.to_string());
        tracing::warn!(
            sid = %sid,
            user = user.as_deref().unwrap_or("-"),
            max_buffer,
            "slow consumer: its queue was full, it missed an update; disconnecting it"
        );
        tokio::spawn(goodbye(socket, max_buffer));
    }
}

/// Tell the socket why, then disconnect it, as soon as its queue takes the packets.
async fn goodbye(socket: Socket, max_buffer: usize) {
    let give_up = Instant::now() + GIVE_UP_AFTER;
    let reason = ClientError::SlowConsumer { max_buffer };
    let mut told = false;
    while Instant::now() < give_up && socket.connected() {
        told = told || reason.emit(&socket);
        if told {
            match socket.clone().disconnect() {
                Err(SocketError::InternalChannelFull) => {}
                Ok(()) | Err(SocketError::Closed) => return,
            }
        }
        tokio::time::sleep(RETRY_EVERY).await;
    }
    tracing::debug!(sid = %socket.id, "slow consumer left to the engine.io heartbeat");
}
