//! Per-replica and per-socket limits: how many connections a replica holds, and how many
//! events per second one socket may send (a token bucket from `governor`). The largest
//! payload is enforced by socketioxide itself (`--max-payload`).
//!
//! Every refusal is counted: `wsgate_connects_total{result="limited"}` and
//! `wsgate_events_limited_total`.

use std::{
    num::NonZeroU32,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use crate::gateway::Socket;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// One socket's token bucket, kept in the socket's extensions.
#[derive(Clone)]
struct Bucket(Arc<DefaultDirectRateLimiter>);

/// The limits of one replica.
#[derive(Debug)]
pub struct Limits {
    max_connections: usize,
    live: AtomicUsize,
    quota: Option<Quota>,
}

impl Limits {
    /// `max_connections` 0 and `events_per_second` 0 mean "no limit".
    pub fn new(max_connections: usize, events_per_second: u32, burst: u32) -> Self {
        let quota = NonZeroU32::new(events_per_second).map(|rate| {
            Quota::per_second(rate).allow_burst(NonZeroU32::new(burst).unwrap_or(rate))
        });
        Self {
            max_connections,
            live: AtomicUsize::new(0),
            quota,
        }
    }

    /// Whether one more connection may be accepted. Handshakes in flight at the same
    /// instant may pass it by a few: the count moves when sockets connect, never leaks.
    pub fn has_room(&self) -> bool {
        self.max_connections == 0 || self.live.load(Ordering::Relaxed) < self.max_connections
    }

    /// A socket connected: count it and give it its bucket.
    pub fn on_connect(&self, socket: &Socket) {
        self.live.fetch_add(1, Ordering::Relaxed);
        if let Some(q) = self.quota {
            socket
                .extensions
                .insert(Bucket(Arc::new(RateLimiter::direct(q))));
        }
    }

    /// A socket went away.
    pub fn on_disconnect(&self) {
        self.live.fetch_sub(1, Ordering::Relaxed);
    }

    /// Take one token from the socket's bucket; `false` when the event must be refused.
    pub fn admit_event(&self, socket: &Socket) -> bool {
        match socket.extensions.get::<Bucket>() {
            Some(b) if b.0.check().is_err() => {
                metrics::counter!("wsgate_events_limited_total").increment(1);
                false
            }
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_means_no_connection_limit() {
        let l = Limits::new(0, 0, 1);
        l.live.store(1_000_000, Ordering::Relaxed);
        assert!(l.has_room());
        let l = Limits::new(2, 0, 1);
        l.live.store(2, Ordering::Relaxed);
        assert!(!l.has_room());
    }
}
