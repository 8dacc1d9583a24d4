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
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
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

/// wsgate hunk 9: what a queued value weighs against the queue's byte bound.
pub(crate) trait Weigh {
    /// Bytes counted for this value while it is queued.
    fn weight(&self) -> usize;
}

struct Shared<T> {
    items: Mutex<VecDeque<T>>,
    /// wsgate hunk 9: the weight of what is queued, and the bound past which no slot is
    /// given (the value that crosses it is queued: a bound on what is accepted next).
    bytes: AtomicUsize,
    max_bytes: usize,
    /// Slots in use: queued packets plus those promised to a [`Permit`]. Taken before a push
    /// and given back after a pop, so `0` means empty without taking the lock; a reservation
    /// costs no lock.
    used: AtomicUsize,
    capacity: usize,
    /// Set under the `items` lock, so a push that holds the lock sees it.
    closed: AtomicBool,
    /// The consumer's waker (one consumer at a time: it is behind the socket's `internal_rx`
    /// lock).
    rx_waker: AtomicWaker,
    /// Woken when the queue is closed, for [`Sender::closed`].
    closed_notify: Notify,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, VecDeque<T>> {
        // A panic while the lock is held cannot leave the deque half-updated (every update
        // is a single push or pop), so a poisoned lock is still usable.
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Take a slot if the queue is open and not full.
    fn take_slot(&self) -> Result<(), TrySendError<()>> {
        if self.closed.load(Ordering::Acquire) {
            return Err(TrySendError::Closed(()));
        }
        if self.bytes.load(Ordering::Acquire) >= self.max_bytes {
            return Err(TrySendError::Full(()));
        }
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used < self.capacity).then_some(used + 1)
            })
            .map(drop)
            .map_err(|_| TrySendError::Full(()))
    }
}

impl<T: Weigh> Shared<T> {
    /// Queue `value` in a slot already taken (dropped, and the slot given back, if the queue
    /// was closed since), then wake the consumer.
    fn push(&self, value: T) {
        {
            let mut items = self.lock();
            if self.closed.load(Ordering::Relaxed) {
                drop(items);
                self.used.fetch_sub(1, Ordering::AcqRel);
                return;
            }
            self.bytes.fetch_add(value.weight(), Ordering::AcqRel);
            items.push_back(value);
        }
        self.rx_waker.wake();
    }
}

/// Create a queue bounded to `capacity` packets (at least one, as tokio's channel requires)
/// and, wsgate hunk 9, to `max_bytes` queued bytes (see [`Weigh`]).
pub(crate) fn channel<T: Weigh>(capacity: usize, max_bytes: usize) -> (Sender<T>, Receiver<T>) {
    assert!(capacity > 0, "the queue's capacity must be at least 1");
    let shared = Arc::new(Shared {
        items: Mutex::new(VecDeque::new()),
        bytes: AtomicUsize::new(0),
        max_bytes,
        used: AtomicUsize::new(0),
        capacity,
        closed: AtomicBool::new(false),
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

impl<T: Weigh> Sender<T> {
    /// Queue `value` if the queue is open and not full.
    pub(crate) fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        match self.shared.take_slot() {
            Ok(()) => {
                self.shared.push(value);
                Ok(())
            }
            Err(TrySendError::Full(())) => Err(TrySendError::Full(value)),
            Err(TrySendError::Closed(())) => Err(TrySendError::Closed(value)),
        }
    }

    /// Queue `value` whatever the bound, if the queue is open. Only for the single control
    /// packet of an upgrade (its `Noop`), which tokio's channel let wait for a free slot.
    pub(crate) fn send_unbounded(&self, value: T) -> Result<(), TrySendError<T>> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(TrySendError::Closed(value));
        }
        self.shared.used.fetch_add(1, Ordering::AcqRel);
        self.shared.push(value);
        Ok(())
    }

    /// Reserve a slot, so that a packet built later is sure to be queued.
    pub(crate) fn try_reserve(&self) -> Result<Permit<'_, T>, TrySendError<()>> {
        self.shared.take_slot()?;
        Ok(Permit {
            shared: &self.shared,
        })
    }

    /// Nothing queued nor reserved (tests).
    #[cfg(test)]
    pub(crate) fn is_empty_for_test(&self) -> bool {
        self.shared.used.load(Ordering::Acquire) == 0
    }

    /// Whether the queue was closed (no packet can be queued any more).
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
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

impl<T: Weigh> Permit<'_, T> {
    /// Queue `value` in the reserved slot (dropped if the queue was closed since, as tokio's
    /// channel does).
    pub(crate) fn send(self, value: T) {
        let this = ManuallyDrop::new(self);
        this.shared.push(value);
    }
}

impl<T> Permit<'_, T> {
    /// wsgate hunk 8: whether this permit's slot is the only one in use, so that nothing is
    /// queued (or about to be) before its packet.
    pub(crate) fn is_alone(&self) -> bool {
        self.shared.used.load(Ordering::Acquire) == 1
    }
}

impl<T> Drop for Permit<'_, T> {
    fn drop(&mut self) {
        self.shared.used.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<T: Weigh> Receiver<T> {
    /// Take the next packet, if one is queued. `Disconnected` once the queue is closed and
    /// empty.
    pub(crate) fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let shared = &*self.shared;
        // No slot in use: nothing queued, no need for the lock.
        if shared.used.load(Ordering::Acquire) == 0 {
            return Err(match shared.closed.load(Ordering::Acquire) {
                true => TryRecvError::Disconnected,
                false => TryRecvError::Empty,
            });
        }
        let popped = {
            let mut items = shared.lock();
            let popped = items.pop_front();
            if items.is_empty() && items.capacity() > KEEP_WHEN_EMPTY {
                *items = VecDeque::new();
            }
            popped
        };
        match popped {
            Some(value) => {
                shared.bytes.fetch_sub(value.weight(), Ordering::AcqRel);
                shared.used.fetch_sub(1, Ordering::AcqRel);
                Ok(value)
            }
            // Slots are reserved but nothing is queued yet.
            None if shared.closed.load(Ordering::Acquire) => Err(TryRecvError::Disconnected),
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

    /// wsgate hunk 8: ready when a packet is queued (`true`) or the queue is closed and
    /// empty (`false`), without taking the packet: the websocket writer takes its sink
    /// before it takes a packet, so that no sender writes past a packet it holds.
    pub(crate) fn poll_queued(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        let queued = |shared: &Shared<T>| {
            if shared.used.load(Ordering::Acquire) == 0 && !shared.closed.load(Ordering::Acquire) {
                return None;
            }
            let items = shared.lock();
            match (items.is_empty(), shared.closed.load(Ordering::Acquire)) {
                (false, _) => Some(true),
                (true, true) => Some(false),
                (true, false) => None,
            }
        };
        if let Some(queued) = queued(&self.shared) {
            return Poll::Ready(queued);
        }
        self.shared.rx_waker.register(cx.waker());
        match queued(&self.shared) {
            Some(queued) => Poll::Ready(queued),
            None => Poll::Pending,
        }
    }

    /// Wait for the next packet; `None` once the queue is closed and empty.
    // wsgate hunk 8: the websocket writer waits with `poll_queued` instead; the test harness
    // and the tests still use it.
    #[cfg_attr(not(any(test, feature = "__test_harness")), allow(dead_code))]
    pub(crate) async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }
}

impl<T> Receiver<T> {
    /// Close the queue: nothing more can be queued, what is queued can still be taken.
    pub(crate) fn close(&mut self) {
        {
            let _items = self.shared.lock();
            self.shared.closed.store(true, Ordering::Release);
        }
        self.shared.rx_waker.wake();
        self.shared.closed_notify.notify_waiters();
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.close();
    }
}

impl<T: Weigh> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("used", &self.shared.used.load(Ordering::Relaxed))
            .field("capacity", &self.shared.capacity)
            .field("closed", &self.is_closed())
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

    // A test value weighs what it says.
    impl Weigh for u32 {
        fn weight(&self) -> usize {
            *self as usize
        }
    }
    impl Weigh for u64 {
        fn weight(&self) -> usize {
            0
        }
    }

    /// wsgate hunk 9: past `max_bytes` queued, nothing more is accepted until the consumer
    /// takes some; the value that crosses the bound is queued.
    #[test]
    fn bound_counts_queued_bytes() {
        let (tx, mut rx) = channel::<u32>(100, 10);
        tx.try_send(4).unwrap();
        tx.try_send(8).unwrap(); // 12 bytes: crosses the bound, still queued
        assert!(matches!(tx.try_send(1), Err(TrySendError::Full(1))));
        assert!(matches!(tx.try_reserve(), Err(TrySendError::Full(()))));
        assert_eq!(rx.try_recv(), Ok(4));
        // 8 bytes queued: under the bound again, until it is reached.
        tx.try_send(2).unwrap();
        assert!(matches!(tx.try_send(1), Err(TrySendError::Full(1))));
        assert_eq!(rx.try_recv(), Ok(8));
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(tx.shared.bytes.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn bound_counts_queued_and_reserved_packets() {
        let (tx, mut rx) = channel::<u32>(2, usize::MAX);
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
        let (tx, mut rx) = channel::<u64>(1024, usize::MAX);
        assert_eq!(tx.shared.lock().capacity(), 0);
        for i in 0..1000 {
            tx.try_send(i).unwrap();
        }
        assert!(tx.shared.lock().capacity() >= 1000);
        for i in 0..1000 {
            assert_eq!(rx.try_recv(), Ok(i));
        }
        assert_eq!(tx.shared.lock().capacity(), 0);

        // A connection that gets one packet at a time keeps its few slots.
        tx.try_send(1).unwrap();
        assert_eq!(rx.try_recv(), Ok(1));
        let kept = tx.shared.lock().capacity();
        assert!(kept > 0 && kept <= KEEP_WHEN_EMPTY, "{kept}");
    }

    #[test]
    fn close_keeps_what_is_queued_and_refuses_the_rest() {
        let (tx, mut rx) = channel::<u32>(4, usize::MAX);
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
        let (tx, mut rx) = channel::<u32>(8, usize::MAX);
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
        let (tx, mut rx) = channel::<u32>(4, usize::MAX);
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
