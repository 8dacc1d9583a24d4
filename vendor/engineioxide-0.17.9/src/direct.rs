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

use std::{
    pin::Pin,
    sync::{Mutex, TryLockError},
    task::{Context, Poll, Waker},
};

use futures_util::{Sink, stream::SplitSink, task::AtomicWaker};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::{WebSocketStream, tungstenite::Message};
use tokio_util::sync::CancellationToken;

use crate::socket::QueuedPackets;

/// What a socket's senders use to write a packet without its writer task.
pub(crate) trait DirectWrite: Send + Sync {
    /// Write `packets` now, or give them back to be queued: when the sink is busy (held by
    /// the writer task, locked by another sender, or holding unflushed bytes), or for a
    /// packet this path does not write (anything but one text or binary message).
    fn try_write(&self, packets: QueuedPackets) -> Result<(), QueuedPackets>;
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
    fn try_write(&self, packets: QueuedPackets) -> Result<(), QueuedPackets> {
        let message = match &packets {
            QueuedPackets::Message(msg) => {
                // The engine.io message packet: `4` then the payload.
                let mut text = String::with_capacity(msg.len() + 1);
                text.push('4');
                text.push_str(msg);
                Message::Text(text.into())
            }
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
        let mut sink = Pin::new(sink);
        // No task waits on this context: when a write cannot complete now, the writer task
        // is woken to finish it with its own.
        let mut cx = Context::from_waker(Waker::noop());
        match sink.as_mut().poll_ready(&mut cx) {
            Poll::Ready(Ok(())) => {}
            // Not expected (the sink is only left unready when handed over), but then the
            // writer is the one to wait.
            Poll::Pending | Poll::Ready(Err(_)) => return Err(packets),
        }
        if let Err(_e) = sink.as_mut().start_send(message) {
            // As the writer task does: the connection is broken, the reader will end it.
            #[cfg(feature = "tracing")]
            tracing::debug!("error sending packet directly: {_e}");
            return Ok(());
        }
        match sink.poll_flush(&mut cx) {
            Poll::Ready(_) => Ok(()),
            Poll::Pending => {
                state.handed_over = true;
                drop(state);
                self.writer.wake();
                Ok(())
            }
        }
    }
}
