//! Per-replica and per-socket limits: how many connections a replica holds, and how many
//! events per second one socket may send (a token bucket from `governor`), with what
//! happens to a socket that keeps sending over it (its transport is closed). The largest
//! payload is enforced by socketioxide itself (`--max-payload`).
//!
//! Every refusal is counted: `wsgate_connects_total{result="limited"}`,
//! `wsgate_events_limited_total` and `wsgate_event_flood_disconnects_total`.

use std::{
    num::NonZeroU32,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use crate::gateway::Socket;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// A pause in refusals this long ends a flood: the next refusal starts a new one.
const FLOOD_GAP: Duration = Duration::from_secs(1);
/// A socket over the rate is told (`exception` `Rate limited`) at most this often; its
/// acks are answered every time, so `emitWithAck` never hangs.
const TELL_EVERY: Duration = Duration::from_secs(1);

/// One socket's token bucket and its refusals, kept in the socket's extensions.
#[derive(Clone)]
struct Bucket(Arc<BucketState>);

struct BucketState {
    limiter: DefaultDirectRateLimiter,
    refusals: Mutex<Refusals>,
}

/// The current run of refusals of one socket.
#[derive(Debug, Default)]
struct Refusals {
    /// When the run started, and the last refusal of it.
    run: Option<(Instant, Instant)>,
    /// When the socket was last sent the `exception`.
    told: Option<Instant>,
    /// Its transport is being closed.
    closing: bool,
}

impl Refusals {
    /// One more refusal at `now`: what to do about it.
    fn refuse(&mut self, now: Instant, flood_window: Duration) -> Admission {
        if self.closing {
            return Admission::Closing;
        }
        let start = match self.run {
            Some((start, last)) if now.duration_since(last) < FLOOD_GAP => start,
            _ => now,
        };
        self.run = Some((start, now));
        if !flood_window.is_zero() && now.duration_since(start) >= flood_window {
            self.closing = true;
            return Admission::Flood;
        }
        let tell = self
            .told
            .is_none_or(|t| now.duration_since(t) >= TELL_EVERY);
        if tell {
            self.told = Some(now);
        }
        Admission::Refused { tell }
    }
}

/// What happens to one inbound event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Handle it.
    Admitted,
    /// Over the rate: refuse it (answer its ack), and send the `exception` when `tell`.
    Refused {
        /// Whether the `exception` goes out (at most once a second).
        tell: bool,
    },
    /// Over the rate for `--event-flood-window`: close the socket's transport (counted).
    Flood,
    /// Its transport is being closed: drop it.
    Closing,
}

/// The limits of one replica.
#[derive(Debug)]
pub struct Limits {
    max_connections: usize,
    live: AtomicUsize,
    quota: Option<Quota>,
    flood_window: Duration,
}

impl Limits {
    /// `max_connections` 0 and `events_per_second` 0 mean "no limit". A socket over the
    /// rate is never disconnected for it (see [`Self::with_flood_window`]).
    pub fn new(max_connections: usize, events_per_second: u32, burst: u32) -> Self {
        let quota = NonZeroU32::new(events_per_second).map(|rate| {
            Quota::per_second(rate).allow_burst(NonZeroU32::new(burst).unwrap_or(rate))
        });
        Self {
            max_connections,
            live: AtomicUsize::new(0),
            quota,
            flood_window: Duration::ZERO,
        }
    }

    /// The same limits, closing the transport of a socket whose events are refused for
    /// `window` with no pause of a second (`--event-flood-window`; zero: never).
    pub fn with_flood_window(self, window: Duration) -> Self {
        Self {
            flood_window: window,
            ..self
        }
    }

    /// Whether one more connection may be accepted. Handshakes in flight at the same
    /// instant may pass it by a few: the count moves when sockets connect, never leaks.
    pub fn has_room(&self) -> bool {
        self.max_connections == 0 || self.live.load(Ordering::Relaxed) < self.max_connections
    }

    /// A socket connected: count it.
    pub fn on_connect(&self) {
        self.live.fetch_add(1, Ordering::Relaxed);
    }

    /// Give an admitted socket its event bucket. Called by the connect middleware, before
    /// the CONNECT reply can reach the client, so its first event finds the bucket.
    pub fn prepare(&self, socket: &Socket) {
        if let Some(q) = self.quota {
            socket.extensions.insert(Bucket(Arc::new(BucketState {
                limiter: RateLimiter::direct(q),
                refusals: Mutex::default(),
            })));
        }
    }

    /// A socket went away.
    pub fn on_disconnect(&self) {
        self.live.fetch_sub(1, Ordering::Relaxed);
    }

    /// Take one token from the socket's bucket, and say what to do with the event.
    pub(crate) fn admit_event(&self, socket: &Socket) -> Admission {
        let Some(b) = socket.extensions.get::<Bucket>() else {
            return Admission::Admitted;
        };
        if b.0.limiter.check().is_ok() {
            return Admission::Admitted;
        }
        let mut refusals = b.0.refusals.lock().unwrap_or_else(|e| e.into_inner());
        let admission = refusals.refuse(Instant::now(), self.flood_window);
        match admission {
            Admission::Flood => {
                metrics::counter!("wsgate_event_flood_disconnects_total").increment(1)
            }
            Admission::Refused { .. } => {
                metrics::counter!("wsgate_events_limited_total").increment(1)
            }
            Admission::Admitted | Admission::Closing => {}
        }
        admission
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

    /// Refusals every `every` from `t0` for `length`: the admissions in order.
    fn run(r: &mut Refusals, t0: Instant, every: Duration, length: Duration) -> Vec<Admission> {
        let mut out = Vec::new();
        let mut t = Duration::ZERO;
        while t <= length {
            out.push(r.refuse(t0 + t, Duration::from_secs(2)));
            t += every;
        }
        out
    }

    #[test]
    fn a_sustained_excess_is_a_flood_and_is_told_once_a_second() {
        let mut r = Refusals::default();
        let t0 = Instant::now();
        let got = run(
            &mut r,
            t0,
            Duration::from_millis(10),
            Duration::from_millis(2500),
        );
        let told = got
            .iter()
            .filter(|a| **a == Admission::Refused { tell: true })
            .count();
        assert_eq!(told, 2, "told at 0 s and 1 s");
        assert_eq!(got[200], Admission::Flood, "closed at 2 s");
        assert!(got[201..].iter().all(|a| *a == Admission::Closing));
    }

    #[test]
    fn bursts_with_pauses_are_never_a_flood() {
        let mut r = Refusals::default();
        let t0 = Instant::now();
        for burst in 0..10 {
            // 1.5 s of refusals, then a pause of 1.1 s.
            let start = t0 + Duration::from_millis(2600 * burst);
            let got = run(
                &mut r,
                start,
                Duration::from_millis(50),
                Duration::from_millis(1500),
            );
            assert!(got.iter().all(|a| matches!(a, Admission::Refused { .. })));
            assert_eq!(got[0], Admission::Refused { tell: true });
        }
        let mut off = Refusals::default();
        assert!(matches!(
            off.refuse(t0, Duration::ZERO),
            Admission::Refused { .. }
        ));
        assert!(matches!(
            off.refuse(t0 + Duration::from_secs(5), Duration::ZERO),
            Admission::Refused { .. }
        ));
    }
}
