//! The socketioxide adapter of a replica: the local adapter, plus knowing *which* socket
//! could not take a broadcast.
//!
//! socketioxide's local adapter serializes a broadcast once and queues the bytes on every
//! matching socket, but when a socket's queue is full it only reports "some socket was full"
//! (`BroadcastError::Socket(Vec<SocketError>)` names none). Without the socket's id a slow
//! consumer cannot be disconnected, so it would lose messages in silence
//! (docs/client-contract.md, "Slow clients").
//!
//! This adapter keeps socketioxide's room registry and shared path ([`CoreLocalAdapter`]:
//! one encoding, the same bytes for every recipient) and runs a non-volatile broadcast
//! inside vendored socketioxide hunk 8 (`adapter::report::report_full`), which names the
//! sockets whose queue was full and skips those cut off earlier; each is reported on the
//! [`Overflow`] channel. Volatile broadcasts may be skipped anyway, so there is nothing to
//! report for them.

use std::{
    collections::{HashMap, HashSet},
    future,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use socketioxide::{
    BroadcastError,
    adapter::{Emitter, report::report_full},
};
use socketioxide_core::{
    Sid,
    adapter::{
        BroadcastFlags, BroadcastOptions, CoreAdapter, CoreLocalAdapter, DefinedAdapter,
        SocketEmitter,
    },
    packet::Packet,
};
use tokio::sync::mpsc;

/// How many overflow reports wait for the eviction task before new ones are dropped. A
/// dropped report is not lost for good: the socket overflows again on the next broadcast
/// and is reported then.
pub const OVERFLOW_CAPACITY: usize = 4096;

/// Where the adapter reports sockets whose queue was full (the adapter's shared state);
/// nowhere in `--slow-consumer drop` mode, which keeps socketioxide's shared-bytes path.
#[derive(Clone, Debug)]
pub struct Overflow {
    tx: Option<mpsc::Sender<Sid>>,
    /// Sockets whose queue overflowed: nothing more is queued for them, so a client never
    /// gets an update after one it missed (its offset would skip the gap for good). Kept
    /// `CUT_FOR`, long after eviction closed them.
    cut: Arc<Mutex<HashMap<Sid, Instant>>>,
}

/// How long an overflowed socket stays cut off (eviction closes it well before).
const CUT_FOR: Duration = Duration::from_secs(180);

/// The receiving end of [`Overflow`], read by the eviction task ([`crate::gateway::evict`]).
pub type OverflowRx = mpsc::Receiver<Sid>;

impl Overflow {
    /// A report channel and its receiver.
    pub fn channel() -> (Overflow, OverflowRx) {
        let (tx, rx) = mpsc::channel(OVERFLOW_CAPACITY);
        (
            Overflow {
                tx: Some(tx),
                cut: Arc::default(),
            },
            rx,
        )
    }

    /// No reports: a full queue only loses the update (counted by the delivery).
    pub fn ignore() -> Overflow {
        Overflow {
            tx: None,
            cut: Arc::default(),
        }
    }

    /// Report `sid` without waiting: the adapter runs inside a broadcast and must not block.
    fn report(tx: &mpsc::Sender<Sid>, sid: Sid) {
        if tx.try_send(sid).is_err() {
            metrics::counter!("wsgate_overflow_reports_dropped_total").increment(1);
        }
    }
}

/// socketioxide's local adapter, with full sockets reported by id.
pub struct Adapter {
    local: CoreLocalAdapter<Emitter>,
    overflow: Overflow,
}

impl CoreAdapter<Emitter> for Adapter {
    type Error = std::convert::Infallible;
    type State = Overflow;
    type AckStream = <Emitter as SocketEmitter>::AckStream;
    type InitRes = ();

    fn new(state: &Overflow, local: CoreLocalAdapter<Emitter>) -> Self {
        Adapter {
            local,
            overflow: state.clone(),
        }
    }

    fn init(self: Arc<Self>, on_success: impl FnOnce() + Send + 'static) {
        on_success();
    }

    fn broadcast(
        &self,
        packet: Packet,
        opts: BroadcastOptions,
    ) -> impl Future<Output = Result<(), BroadcastError>> + Send {
        future::ready(self.send_each(packet, opts))
    }

    async fn broadcast_with_ack(
        &self,
        packet: Packet,
        opts: BroadcastOptions,
        timeout: Option<Duration>,
    ) -> Result<Self::AckStream, Self::Error> {
        Ok(self.local.broadcast_with_ack(packet, opts, timeout).0)
    }

    fn get_local(&self) -> &CoreLocalAdapter<Emitter> {
        &self.local
    }
}

impl DefinedAdapter for Adapter {}

impl Adapter {
    /// Queue `packet` on every socket `opts` selects, reporting each full queue by id.
    fn send_each(&self, packet: Packet, opts: BroadcastOptions) -> Result<(), BroadcastError> {
        let tx = match self.overflow.tx.as_ref() {
            Some(tx) if !opts.has_flag(BroadcastFlags::Volatile) => tx,
            _ => {
                return self
                    .local
                    .broadcast(packet, opts)
                    .map_err(BroadcastError::from);
            }
        };
        // The lock is not held while packets are queued.
        let cut: HashSet<Sid> = {
            let mut cut = self
                .overflow
                .cut
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if cut.is_empty() {
                HashSet::new()
            } else {
                cut.retain(|_, at| at.elapsed() < CUT_FOR);
                cut.keys().copied().collect()
            }
        };
        // Encoded once, the same bytes queued on every socket (vendored socketioxide hunk 8
        // names the full ones and skips the cut ones).
        let (sent, full) = report_full(cut, || self.local.broadcast(packet, opts));
        if !full.is_empty() {
            let mut cut = self
                .overflow
                .cut
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for sid in full {
                cut.insert(sid, Instant::now());
                Overflow::report(tx, sid);
            }
        }
        sent.map_err(BroadcastError::from)
    }
}
