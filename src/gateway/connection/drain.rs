//! Graceful drain: after SIGTERM, close this replica's clients in batches spread over a
//! window, so they reconnect to other replicas a few at a time instead of all at once.
//!
//! Each socket's transport is closed (`super::close::close_transport`): the client sees
//! `transport close` and reconnects by itself through the load balancer, which no longer
//! routes to this replica because `/readyz` is false. New clients are refused meanwhile by
//! the connect middleware and the HTTP layer, so the set only shrinks.

use std::time::Duration;

use crate::gateway::Io;
use tokio::time::Instant;

/// Time between two batches.
const TICK: Duration = Duration::from_millis(100);

/// Marks a socket whose transport the drain is closing, so a later batch skips it while
/// its close completes.
#[derive(Clone, Copy)]
struct Closing;

/// Close every socket of `io` in batches over `window`, then return. Sockets that
/// connected before draining began and are still there at the end are closed in the last
/// batch.
pub async fn run(io: &Io, window: Duration) {
    let started = Instant::now();
    let end = started + window;
    let total = io.sockets().len();
    tracing::info!(clients = total, window = ?window, "draining: closing clients' transports in batches");
    let mut tick = tokio::time::interval(TICK);
    loop {
        tick.tick().await;
        let sockets = io.sockets();
        if sockets.is_empty() {
            break;
        }
        let open: Vec<_> = sockets
            .into_iter()
            .filter(|s| s.extensions.get::<Closing>().is_none())
            .collect();
        let now = Instant::now();
        let batch = batch_size(open.len(), end.saturating_duration_since(now));
        for s in open.into_iter().take(batch) {
            s.extensions.insert(Closing);
            metrics::counter!("wsgate_drain_disconnects_total").increment(1);
            super::close::close_transport(&s);
        }
    }
    tracing::info!(clients = total, took = ?started.elapsed(), "drained");
}

/// How many of `left` sockets to close now so the rest spread evenly over `remaining`.
fn batch_size(left: usize, remaining: Duration) -> usize {
    let ticks = (remaining.as_millis() / TICK.as_millis()).max(1);
    let ticks = usize::try_from(ticks).unwrap_or(usize::MAX);
    left.div_ceil(ticks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_spread_over_the_window() {
        assert_eq!(batch_size(1000, Duration::from_secs(10)), 10);
        assert_eq!(batch_size(5, Duration::from_secs(10)), 1);
        assert_eq!(batch_size(1000, Duration::ZERO), 1000);
        assert_eq!(batch_size(0, Duration::from_secs(1)), 0);
    }
}
