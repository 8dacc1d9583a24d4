//! Slow consumers: a socket whose queue was full when an update came is disconnected with
//! a reason instead of losing updates in silence (docs/client-contract.md, "Slow clients").
//!
//! The adapter reports the socket (see [`super::adapter`]); this task, off the delivery
//! path, takes it out of every room at once (so nothing more is queued for it and its
//! memory stays bounded by `--max-buffer`), counts it, and then tells it: the `exception`
//! `Too slow: disconnected` (retried until its queue has room), then its transport is
//! closed, so the stock client reconnects by itself (`transport close`) and, with room
//! history, recovers what it missed. A client that never makes room gets the close without
//! the reason after `GIVE_UP_AFTER`.

use std::{sync::Arc, time::Duration};

use tokio::time::Instant;

use crate::gateway::{
    ClientError, Gateway, Io, OverflowRx, Socket, connection::close::close_transport,
};

/// How often a full socket is offered the reason again.
const RETRY_EVERY: Duration = Duration::from_millis(50);
/// After this the transport is closed without the reason (it is out of every room already).
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
            "slow consumer: its queue was full, it missed an update; closing its transport"
        );
        tokio::spawn(goodbye(socket, max_buffer));
    }
}

/// Tell the socket why as soon as its queue takes the packet, then close its transport.
async fn goodbye(socket: Socket, max_buffer: usize) {
    let give_up = Instant::now() + GIVE_UP_AFTER;
    let reason = ClientError::SlowConsumer { max_buffer };
    while Instant::now() < give_up && socket.connected() {
        if reason.emit(&socket) {
            break;
        }
        tokio::time::sleep(RETRY_EVERY).await;
    }
    if socket.connected() {
        close_transport(&socket);
    }
}
