//! wsgate hunk 5: a socket's outgoing queue, which holds no storage while it is idle.
//!
//! It replaces the bounded [`tokio::sync::mpsc`] channel each [`Socket`](crate::Socket) used to
//! carry, with the same semantics for what engineioxide uses (bounded `try_send`/`try_reserve`,
//! a single consumer, `close`, `closed`). A tokio channel allocates, at creation, its shared
//! state (two cache-padded halves, ≈ 0.5 KB) and its first block of 32 slots, and keeps them
//! as long as the socket lives: ≈ 1.8 KB per connection, idle or not. This queue is one small
//! allocation (the [`Arc`] of [`Shared`]) and a [`VecDeque`] that only holds storage while
//! packets wait: when the consumer empties it, storage beyond [`KEEP_WHEN_EMPTY`] entries is
//! freed, so a burst does not pin memory on an idle connection. The bound is unchanged
//! (`max_buffer_size` packets, reserved slots included).

use std::{
    collections::VecDeque,
    future::poll_fn,
    mem::ManuallyDrop,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll},
};

use futures_util::task::AtomicWaker;
use tokio::sync::{
    Notify,
    mpsc::error::{TryRecvError, TrySendError},
};

/// Entries kept allocated when the queue becomes empty: enough for the packets a quiet
/// connection gets one at a time (so a delivery to it does not allocate), little enough
/// (160 bytes of 40-byte entries) that an idle connection does not carry a burst's storage.
const KEEP_WHEN_EMPTY: usize = 4;

struct State<T> {
    items: VecDeque<T>,
    /// Slots promised to a [`Permit`] and not used yet: they count against the bound.
    reserved: usize,
    closed: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    capacity: usize,
    /// The consumer's waker (one consumer at a time: it is behind the socket's `internal_rx`
    /// lock).
    rx_waker: AtomicWaker,
    /// Woken when the queue is closed, for [`Sender::closed`].
    closed_notify: Notify,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while the lock is held cannot leave the state half-updated (every update
        // is a single push, pop or counter change), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Create a queue bounded to `capacity` packets (at least one, as tokio's channel requires).
pub(crate) fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    assert!(capacity > 0, "the queue's capacity must be at least 1");
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            reserved: 0,
            closed: false,
        }),
        capacity,
        rx_waker: AtomicWaker::new(),
        closed_notify: Notify::new(),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

/// The producing side, held by the socket.
pub(crate) struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// The consuming side, held behind the socket's `internal_rx` lock by the transport.
pub(crate) struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

/// A slot reserved in the queue, see [`Sender::try_reserve`]. Dropped unused, it gives the
/// slot back.
pub(crate) struct Permit<'a, T> {
    shared: &'a Shared<T>,
}

impl<T> Sender<T> {
    /// Queue `value` if the queue is open and not full.
    pub(crate) fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        {
            let mut state = self.shared.lock();
            if state.closed {
                return Err(TrySendError::Closed(value));
            }
            if state.items.len() + state.reserved >= self.shared.capacity {
                return Err(TrySendError::Full(value));
            }
            state.items.push_back(value);
        }
        self.shared.rx_waker.wake();
        Ok(())
    }

    /// Queue `value` whatever the bound, if the queue is open. Only for the single control
    /// packet of an upgrade (its `Noop`), which tokio's channel let wait for a free slot.
    pub(crate) fn send_unbounded(&self, value: T) -> Result<(), TrySendError<T>> {
        {
            let mut state = self.shared.lock();
            if state.closed {
                return Err(TrySendError::Closed(value));
            }
            state.items.push_back(value);
        }
        self.shared.rx_waker.wake();
        Ok(())
    }

    /// Reserve a slot, so that a packet built later is sure to be queued.
    pub(crate) fn try_reserve(&self) -> Result<Permit<'_, T>, TrySendError<()>> {
        let mut state = self.shared.lock();
        if state.closed {
            return Err(TrySendError::Closed(()));
        }
        if state.items.len() + state.reserved >= self.shared.capacity {
            return Err(TrySendError::Full(()));
        }
        state.reserved += 1;
        Ok(Permit {
            shared: &self.shared,
        })
    }

    /// Whether the queue was closed (no packet can be queued any more).
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.lock().closed
    }

    /// Wait until the queue is closed.
    pub(crate) async fn closed(&self) {
        loop {
            let notified = self.shared.closed_notify.notified();
            tokio::pin!(notified);
            // Registered before the check, so a close in between is not missed.
            notified.as_mut().enable();
            if self.is_closed() {
                return;
            }
            notified.await;
        }
    }
}

impl<T> Permit<'_, T> {
    /// Queue `value` in the reserved slot.
    pub(crate) fn send(self, value: T) {
        let this = ManuallyDrop::new(self);
        {
            let mut state = this.shared.lock();
            state.reserved -= 1;
            // A queue closed since the reservation drops the packet, as tokio's does.
            if !state.closed {
                state.items.push_back(value);
            }
        }
        this.shared.rx_waker.wake();
    }
}

impl<T> Drop for Permit<'_, T> {
    fn drop(&mut self) {
        self.shared.lock().reserved -= 1;
    }
}

impl<T> Receiver<T> {
    /// Take the next packet, if one is queued. `Disconnected` once the queue is closed and
    /// empty.
    pub(crate) fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let mut state = self.shared.lock();
        match state.items.pop_front() {
            Some(value) => {
                if state.items.is_empty() && state.items.capacity() > KEEP_WHEN_EMPTY {
                    state.items = VecDeque::new();
                }
                Ok(value)
            }
            None if state.closed => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }

    /// Poll for the next packet; `None` once the queue is closed and empty.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        match self.try_recv() {
            Ok(value) => return Poll::Ready(Some(value)),
            Err(TryRecvError::Disconnected) => return Poll::Ready(None),
            Err(TryRecvError::Empty) => {}
        }
        // Registered before checking again, so a packet queued in between wakes us.
        self.shared.rx_waker.register(cx.waker());
        match self.try_recv() {
            Ok(value) => Poll::Ready(Some(value)),
            Err(TryRecvError::Disconnected) => Poll::Ready(None),
            Err(TryRecvError::Empty) => Poll::Pending,
        }
    }

    /// Wait for the next packet; `None` once the queue is closed and empty.
    pub(crate) async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Close the queue: nothing more can be queued, what is queued can still be taken.
    pub(crate) fn close(&mut self) {
        self.shared.lock().closed = true;
        self.shared.rx_waker.wake();
        self.shared.closed_notify.notify_waiters();
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.close();
    }
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("Sender")
            .field("len", &state.items.len())
            .field("reserved", &state.reserved)
            .field("capacity", &self.shared.capacity)
            .field("closed", &state.closed)
            .finish()
    }
}

impl<T> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_counts_queued_and_reserved_packets() {
        let (tx, mut rx) = channel::<u32>(2);
        tx.try_send(1).unwrap();
        let permit = tx.try_reserve().unwrap();
        assert!(matches!(tx.try_send(2), Err(TrySendError::Full(2))));
        assert!(matches!(tx.try_reserve(), Err(TrySendError::Full(()))));
        permit.send(3);
        assert_eq!(rx.try_recv(), Ok(1));
        assert_eq!(rx.try_recv(), Ok(3));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));

        // An unused permit gives its slot back.
        drop(tx.try_reserve().unwrap());
        tx.try_send(4).unwrap();
        tx.try_send(5).unwrap();
        assert!(matches!(tx.try_send(6), Err(TrySendError::Full(6))));
        // The upgrade's control packet passes a full queue.
        tx.send_unbounded(7).unwrap();
        assert_eq!(
            std::iter::from_fn(|| rx.try_recv().ok()).collect::<Vec<_>>(),
            [4, 5, 7]
        );
    }

    /// What a burst allocated is freed when the consumer empties the queue.
    #[test]
    fn storage_is_freed_when_emptied() {
        let (tx, mut rx) = channel::<u64>(1024);
        assert_eq!(tx.shared.lock().items.capacity(), 0);
        for i in 0..1000 {
            tx.try_send(i).unwrap();
        }
        assert!(tx.shared.lock().items.capacity() >= 1000);
        for i in 0..1000 {
            assert_eq!(rx.try_recv(), Ok(i));
        }
        assert_eq!(tx.shared.lock().items.capacity(), 0);

        // A connection that gets one packet at a time keeps its few slots.
        tx.try_send(1).unwrap();
        assert_eq!(rx.try_recv(), Ok(1));
        let kept = tx.shared.lock().items.capacity();
        assert!(kept > 0 && kept <= KEEP_WHEN_EMPTY, "{kept}");
    }

    #[test]
    fn close_keeps_what_is_queued_and_refuses_the_rest() {
        let (tx, mut rx) = channel::<u32>(4);
        tx.try_send(1).unwrap();
        let permit = tx.try_reserve().unwrap();
        rx.close();
        assert!(tx.is_closed());
        assert!(matches!(tx.try_send(2), Err(TrySendError::Closed(2))));
        assert!(matches!(tx.try_reserve(), Err(TrySendError::Closed(()))));
        permit.send(3); // dropped: the queue is closed
        assert_eq!(rx.try_recv(), Ok(1));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    }

    /// A consumer on another thread gets every packet, in order, whatever the interleaving
    /// of its wake-ups with the producer's pushes (no lost wake-up).
    #[test]
    fn a_consumer_on_another_thread_gets_everything() {
        const N: u32 = 20_000;
        let (tx, mut rx) = channel::<u32>(8);
        let consumer = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            rt.block_on(async move {
                for i in 0..N {
                    assert_eq!(rx.recv().await, Some(i));
                }
            });
        });
        for i in 0..N {
            loop {
                match tx.try_reserve() {
                    Ok(permit) => break permit.send(i),
                    Err(TrySendError::Full(())) => std::thread::yield_now(),
                    Err(TrySendError::Closed(())) => panic!("closed"),
                }
            }
        }
        consumer.join().unwrap();
    }

    #[tokio::test]
    async fn recv_waits_for_a_packet_and_closed_for_the_close() {
        let (tx, mut rx) = channel::<u32>(4);
        let tx = Arc::new(tx);
        let producer = {
            let tx = tx.clone();
            tokio::spawn(async move {
                tokio::task::yield_now().await;
                tx.try_send(1).unwrap();
            })
        };
        assert_eq!(rx.recv().await, Some(1));
        producer.await.unwrap();

        let waiter = {
            let tx = tx.clone();
            tokio::spawn(async move { tx.closed().await })
        };
        tokio::task::yield_now().await;
        rx.close();
        waiter.await.unwrap();
        assert_eq!(rx.recv().await, None);
    }
}
