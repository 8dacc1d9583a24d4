//! Adapters are responsible for managing the internal state of the server (rooms, sockets, etc...).
//! When a socket joins or leaves a room, the adapter is responsible for updating the state.
//! The default adapter is the [`LocalAdapter`], which stores the state in memory.
//! Other adapters can be made to share the state between multiple servers.

use socketioxide_core::{
    adapter::{BroadcastOptions, CoreAdapter, CoreLocalAdapter, DefinedAdapter, SocketEmitter},
    packet::Packet,
};
use std::{convert::Infallible, sync::Arc, time::Duration};

pub use crate::ns::Emitter;
pub use socketioxide_core::adapter::errors::AdapterError;
/// An adapter is responsible for managing the state of the namespace.
/// This adapter can be implemented to share the state between multiple servers.
/// The default adapter is the [`LocalAdapter`], which stores the state in memory.
pub trait Adapter: CoreAdapter<Emitter> + Sized {}
impl<T: CoreAdapter<Emitter>> Adapter for T {}

// === LocalAdapter impls ===

/// The default adapter. Store the state in memory.
pub struct LocalAdapter(CoreLocalAdapter<Emitter>);

impl CoreAdapter<Emitter> for LocalAdapter {
    type Error = Infallible;
    type State = ();
    type AckStream = <Emitter as SocketEmitter>::AckStream;
    type InitRes = ();

    fn new(_state: &Self::State, local: CoreLocalAdapter<Emitter>) -> Self {
        Self(local)
    }

    fn init(self: Arc<Self>, on_success: impl FnOnce() + Send + 'static) -> Self::InitRes {
        on_success();
    }

    async fn broadcast_with_ack(
        &self,
        packet: Packet,
        opts: BroadcastOptions,
        timeout: Option<Duration>,
    ) -> Result<Self::AckStream, Self::Error> {
        Ok(self.get_local().broadcast_with_ack(packet, opts, timeout).0)
    }

    fn get_local(&self) -> &CoreLocalAdapter<Emitter> {
        &self.0
    }
}
impl DefinedAdapter for LocalAdapter {}

/// wsgate hunk 8: which sockets a broadcast found full, by id, on the shared path.
///
/// The local adapter encodes a broadcast once and hands the same bytes to every matching
/// socket, but a full socket comes back as a bare `SocketError::InternalChannelFull`, which
/// names no socket. An adapter that must act on the full socket (disconnect a slow consumer)
/// had to send to each socket on its own, encoding the packet again for each. Inside
/// [`report_full`], the namespace's `send_many` skips the sockets in `skip` and records
/// every socket whose queue was full; nothing changes outside it.
pub mod report {
    use socketioxide_core::Sid;
    use std::{cell::RefCell, collections::HashSet};

    struct Scope {
        skip: HashSet<Sid>,
        full: Vec<Sid>,
    }

    thread_local! {
        static SCOPE: RefCell<Option<Scope>> = const { RefCell::new(None) };
    }

    /// Run `f` (which broadcasts on this thread, without awaiting), not sending to the
    /// sockets in `skip`; returns `f`'s result and the sockets found full, in send order.
    pub fn report_full<T>(skip: HashSet<Sid>, f: impl FnOnce() -> T) -> (T, Vec<Sid>) {
        let outer = SCOPE.with(|s| {
            s.borrow_mut().replace(Scope {
                skip,
                full: Vec::new(),
            })
        });
        // Restored also if `f` panics, so the thread's later broadcasts are not captured.
        struct Restore(Option<Option<Scope>>);
        impl Drop for Restore {
            fn drop(&mut self) {
                if let Some(outer) = self.0.take() {
                    SCOPE.with(|s| *s.borrow_mut() = outer);
                }
            }
        }
        let mut restore = Restore(Some(outer));
        let out = f();
        let outer = restore.0.take().unwrap_or(None);
        let full = SCOPE
            .with(|s| std::mem::replace(&mut *s.borrow_mut(), outer))
            .map(|scope| scope.full)
            .unwrap_or_default();
        (out, full)
    }

    /// Whether a [`report_full`] is running on this thread, and whether it skips any socket.
    pub(crate) fn active() -> (bool, bool) {
        SCOPE.with(|s| match s.borrow().as_ref() {
            Some(scope) => (true, !scope.skip.is_empty()),
            None => (false, false),
        })
    }

    /// Whether the current [`report_full`] skips `sid`.
    pub(crate) fn skipped(sid: &Sid) -> bool {
        SCOPE.with(|s| s.borrow().as_ref().is_some_and(|scope| scope.skip.contains(sid)))
    }

    /// Record that `sid`'s queue was full, if a [`report_full`] is running.
    pub(crate) fn full(sid: Sid) {
        SCOPE.with(|s| {
            if let Some(scope) = s.borrow_mut().as_mut() {
                scope.full.push(sid);
            }
        });
    }
}
