//! wsgate hunk 8: a packet for an idle websocket is written by its sender, not by the
//! socket's writer task.
//!
//! Before this hunk every packet went through the socket's queue and woke its writer task,
//! which then wrote it and flushed: for a client that keeps up (nearly every delivery), that
//! is a queue push and pop, a task wake-up and a scheduler round trip per packet, on top of
//! the write itself. Here the websocket's sink is shared by the writer task and the senders:
//! when nothing is queued for the socket and the writer does not hold the sink, the sender
//! writes the frame itself and flushes it without blocking. Whatever the kernel does not take
//! at once stays in the sink and is handed to the writer task, which flushes it (waiting for
//! the socket to be writable) before it writes anything queued; while it holds the sink, new
//! packets are queued as before. So the order of packets is kept (a packet is only written
//! directly when nothing is queued before it), and the bound is kept: a client that stops
//! reading leaves a frame in the sink, after which everything is queued, up to the bound.
//!
//! Inside [`write_batch`] (a wrapper of the task that fans broadcasts out), a direct write
//! is not flushed at once: each socket written to is flushed once when the task's poll
//! ends, so a socket that gets several packets in one poll gets them in one `send()`, as it
//! did when its writer task woke once for a burst.

use std::{
    cell::RefCell,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, TryLockError},
    task::{Context, Poll, Waker},
};

use futures_util::{Sink, stream::SplitSink, task::AtomicWaker};
use tokio::io::{AsyncRead, AsyncWrite};
use engineioxide_core::Str;
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{Message, Utf8Bytes},
};
use tokio_util::sync::CancellationToken;

use crate::socket::QueuedPackets;

/// What a socket's senders use to write a packet without its writer task.
pub(crate) trait DirectWrite: Send + Sync {
    /// Write `packets` now, or give them back to be queued: when the sink is busy (held by
    /// the writer task, locked by another sender, or holding unflushed bytes), or for a
    /// packet this path does not write (anything but one text or binary message). With
    /// `batch`, the frame is not flushed: `Ok(true)` says the sink must be flushed at the end
    /// of the batch (its first unflushed frame), `Ok(false)` that it is already due.
    fn try_write(&self, packets: QueuedPackets, batch: bool) -> Result<bool, QueuedPackets>;

    /// Flush what a batch left in the sink, without waiting (the writer task finishes it).
    fn end_batch(&self);
}

thread_local! {
    /// The sinks written to, unflushed, during the current poll of a [`write_batch`] future.
    static BATCH: RefCell<Option<Vec<Arc<dyn DirectWrite>>>> = const { RefCell::new(None) };
}

thread_local! {
    /// wsgate hunk 8: the last message framed for a direct write on this thread, and its
    /// frame. Every recipient of a broadcast is sent the same bytes (one encoding), so all
    /// but the first reuse the frame: a reference count instead of an allocation and a copy
    /// per recipient. The message is kept with its frame, so its bytes cannot be freed and
    /// their address reused by another message while they are compared.
    static LAST_FRAME: RefCell<Option<(Str, Utf8Bytes)>> = const { RefCell::new(None) };
}

/// The engine.io message packet for `msg` (`4` then the payload), built once per message.
fn text_frame(msg: &Str) -> Utf8Bytes {
    LAST_FRAME.with(|last| {
        let mut last = last.borrow_mut();
        if let Some((seen, frame)) = last.as_ref()
            && seen.as_str().as_ptr() == msg.as_str().as_ptr()
            && seen.len() == msg.len()
        {
            return frame.clone();
        }
        let mut text = String::with_capacity(msg.len() + 1);
        text.push('4');
        text.push_str(msg);
        let frame = Utf8Bytes::from(text);
        *last = Some((msg.clone(), frame.clone()));
        frame
    })
}

/// Write `packets` through `direct` now (see [`DirectWrite::try_write`]), unflushed if a
/// [`write_batch`] future is being polled on this thread.
pub(crate) fn write(
    direct: &Arc<dyn DirectWrite>,
    packets: QueuedPackets,
) -> Result<(), QueuedPackets> {
    BATCH.with(|batch| match batch.borrow_mut().as_mut() {
        None => direct.try_write(packets, false).map(drop),
        Some(list) => {
            if direct.try_write(packets, true)? {
                list.push(direct.clone());
            }
            Ok(())
        }
    })
}

/// wsgate hunk 8: poll `fut` so that the packets it sends directly to websockets are
/// flushed once per socket when each of its polls ends, instead of once per packet. For a
/// task that sends many packets per poll (a fan-out); a frame waits at most until the end
/// of the poll that wrote it, so a future that loops without yielding delays its frames.
pub fn write_batch<F: Future>(fut: F) -> WriteBatch<F> {
    WriteBatch {
        fut: Box::pin(fut),
        list: Vec::new(),
    }
}

/// The future of [`write_batch`].
pub struct WriteBatch<F> {
    fut: Pin<Box<F>>,
    /// The list's storage, kept between polls.
    list: Vec<Arc<dyn DirectWrite>>,
}

impl<F> std::fmt::Debug for WriteBatch<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteBatch").finish_non_exhaustive()
    }
}

/// Ends a batch when dropped, also if the polled future panicked: the thread's next
/// direct writes must not wait for a flush nobody does.
struct EndBatch<'a> {
    list: &'a mut Vec<Arc<dyn DirectWrite>>,
    outer: Option<Vec<Arc<dyn DirectWrite>>>,
}

impl Drop for EndBatch<'_> {
    fn drop(&mut self) {
        let outer = self.outer.take();
        if let Some(mut list) =
            BATCH.with(|batch| std::mem::replace(&mut *batch.borrow_mut(), outer))
        {
            for sink in list.drain(..) {
                sink.end_batch();
            }
            *self.list = list;
        }
    }
}

impl<F: Future> Future for WriteBatch<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let list = std::mem::take(&mut this.list);
        // A batch inside a batch ends with the inner poll; the outer one goes on after.
        let outer = BATCH.with(|batch| batch.borrow_mut().replace(list));
        let _end = EndBatch {
            list: &mut this.list,
            outer,
        };
        this.fut.as_mut().poll(cx)
    }
}

/// The writing half of a websocket, shared by its writer task and its senders.
pub(crate) struct SharedSink<S> {
    state: Mutex<State<S>>,
    /// A v3 binary packet needs a prefix byte: left to the writer task.
    v3: bool,
    /// The session's: once it is closing, packets are queued (and never written), as before.
    closing: CancellationToken,
    /// The writer task, woken when a direct write left bytes for it to flush.
    writer: AtomicWaker,
}

struct State<S> {
    /// `None` while the writer task holds it, and for good once the writer stopped.
    sink: Option<SplitSink<WebSocketStream<S>, Message>>,
    /// A direct write could not be flushed without waiting: the writer task must flush the
    /// sink before anything else is written.
    handed_over: bool,
    /// A batch wrote to the sink and flushes it when it ends.
    in_batch: bool,
}

impl<S> SharedSink<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    pub(crate) fn new(
        sink: SplitSink<WebSocketStream<S>, Message>,
        v3: bool,
        closing: CancellationToken,
    ) -> Self {
        Self {
            v3,
            closing,
            state: Mutex::new(State {
                sink: Some(sink),
                handed_over: false,
                in_batch: false,
            }),
            writer: AtomicWaker::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<S>> {
        // Every update of the state is a single assignment: a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// For the writer task: register its waker and tell whether a direct write handed it
    /// bytes to flush.
    pub(crate) fn poll_handed_over(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.writer.register(cx.waker());
        match self.lock().handed_over {
            true => Poll::Ready(()),
            false => Poll::Pending,
        }
    }

    /// For the writer task: take the sink, so that senders queue instead of writing. `None`
    /// once the writer stopped (it does not put the sink back then).
    pub(crate) fn take(&self) -> Option<SplitSink<WebSocketStream<S>, Message>> {
        let mut state = self.lock();
        state.handed_over = false;
        state.sink.take()
    }

    /// For the writer task: give the sink back once it is flushed.
    pub(crate) fn put_back(&self, sink: SplitSink<WebSocketStream<S>, Message>) {
        self.lock().sink = Some(sink);
    }
}

impl<S> DirectWrite for SharedSink<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn try_write(&self, packets: QueuedPackets, batch: bool) -> Result<bool, QueuedPackets> {
        let message = match &packets {
            QueuedPackets::Message(msg) => Message::Text(text_frame(msg)),
            QueuedPackets::Binary(bin) if !self.v3 => Message::Binary(bin.clone()),
            QueuedPackets::Binary(_) | QueuedPackets::Other(_) => return Err(packets),
        };
        let mut state = match self.state.try_lock() {
            Ok(state) => state,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => return Err(packets),
        };
        if state.handed_over || self.closing.is_cancelled() {
            return Err(packets);
        }
        let Some(sink) = state.sink.as_mut() else {
            return Err(packets);
        };
        match write_now(Pin::new(sink), message, batch) {
            Step::Busy => {
                // The transport is full (a batch's frames filled tungstenite's buffer) or
                // broken: the writer task is the one to wait, this packet is queued behind.
                state.handed_over = true;
                drop(state);
                self.writer.wake();
                Err(packets)
            }
            Step::Written => Ok(false),
            Step::Buffered => {
                // Flushed by `end_batch`, once for every frame the batch writes to this socket.
                Ok(!std::mem::replace(&mut state.in_batch, true))
            }
            Step::Unflushed => {
                state.handed_over = true;
                drop(state);
                self.writer.wake();
                Ok(false)
            }
        }
    }

    fn end_batch(&self) {
        let mut state = self.lock();
        state.in_batch = false;
        if state.handed_over {
            return;
        }
        // `None`: the writer task took the sink, and flushes it before giving it back.
        let Some(sink) = state.sink.as_mut() else {
            return;
        };
        if now(|cx| Pin::new(&mut *sink).poll_flush(cx)).is_pending() {
            state.handed_over = true;
            drop(state);
            self.writer.wake();
        }
    }
}

/// What [`write_now`] did.
enum Step {
    /// The sink cannot take a frame now (or is broken): nothing written.
    Busy,
    /// Written and flushed (or lost to a broken connection, as the writer task would).
    Written,
    /// Written, not flushed (a batch).
    Buffered,
    /// Written; the flush could not complete without waiting.
    Unflushed,
}

/// Write `message` to `sink` without waiting, flushing it unless `batch`.
fn write_now<S>(
    mut sink: Pin<&mut SplitSink<WebSocketStream<S>, Message>>,
    message: Message,
    batch: bool,
) -> Step
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut message = Some(message);
    match now(|cx| {
        Poll::Ready(match sink.as_mut().poll_ready(cx) {
            Poll::Pending | Poll::Ready(Err(_)) => Step::Busy,
            Poll::Ready(Ok(())) => match message.take().map(|m| sink.as_mut().start_send(m)) {
                Some(Err(_e)) => {
                    // As the writer task does: the connection is broken, the reader ends it.
                    #[cfg(feature = "tracing")]
                    tracing::debug!("error sending packet directly: {_e}");
                    Step::Written
                }
                _ if batch => Step::Buffered,
                _ => match sink.as_mut().poll_flush(cx) {
                    Poll::Ready(_) => Step::Written,
                    Poll::Pending => Step::Unflushed,
                },
            },
        })
    }) {
        Poll::Ready(step) => step,
        Poll::Pending => Step::Busy,
    }
}

/// Poll `f` once, outside tokio's cooperative budget and with a waker that wakes nobody
/// (whoever must wait is woken otherwise: the writer task, through `SharedSink::writer`).
///
/// Outside the budget because a task gets 128 budget units per poll and every poll of an
/// I/O resource takes one: past them, the socket reports `Pending` whatever its state, to
/// make the task yield. A fan-out writing to 1,000 sockets in one poll would find all but
/// the first 128 "busy" (measured: three quarters of the packets of the fan-out profile
/// went to the queues and their writer tasks that way).
fn now<T>(f: impl FnMut(&mut Context<'_>) -> Poll<T>) -> Poll<T> {
    let mut cx = Context::from_waker(Waker::noop());
    let fut = std::pin::pin!(tokio::task::coop::unconstrained(std::future::poll_fn(f)));
    fut.poll(&mut cx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_framed_once_and_only_its_own_bytes_match() {
        let msg = Str::from(String::from("2[\"update\",1]"));
        let first = text_frame(&msg);
        assert_eq!(first.as_str(), "42[\"update\",1]");
        // A clone shares the bytes: the same frame, not a new one.
        let again = text_frame(&msg.clone());
        assert_eq!(again.as_str().as_ptr(), first.as_str().as_ptr());
        // Equal text elsewhere, or a slice of the same bytes, is framed on its own.
        let other = Str::from(String::from("2[\"update\",1]"));
        let framed = text_frame(&other);
        assert_eq!(framed.as_str(), "42[\"update\",1]");
        assert_ne!(framed.as_str().as_ptr(), first.as_str().as_ptr());
        let part = other.slice(0..1);
        assert_eq!(text_frame(&part).as_str(), "42");
        assert_eq!(text_frame(&msg).as_str(), "42[\"update\",1]");
    }
}
