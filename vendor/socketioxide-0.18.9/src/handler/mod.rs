//! Functions and types used to handle incoming connections and messages.
//! There is three main types of handlers: [connect], [message] and [disconnect].
pub mod connect;
pub mod disconnect;
pub mod message;

pub(crate) use connect::BoxedConnectHandler;
pub use connect::{ConnectHandler, ConnectMiddleware, FromConnectParts};
pub(crate) use disconnect::BoxedDisconnectHandler;
pub use disconnect::{DisconnectHandler, FromDisconnectParts};
pub(crate) use message::BoxedMessageHandler;
pub use message::{FromMessage, FromMessageParts, MessageHandler};
pub use socketioxide_core::Value;

/// A struct used to erase the type of [`ConnectHandler`] or [`MessageHandler`] so it can be stored in a map
pub(crate) struct MakeErasedHandler<H, A, T> {
    handler: H,
    adapter: std::marker::PhantomData<A>,
    type_: std::marker::PhantomData<T>,
}
impl<H, A, T> MakeErasedHandler<H, A, T> {
    pub fn new(handler: H) -> Self {
        Self {
            handler,
            adapter: std::marker::PhantomData,
            type_: std::marker::PhantomData,
        }
    }
}
impl<H: Clone, A, T> Clone for MakeErasedHandler<H, A, T> {
    fn clone(&self) -> Self {
        Self {
            handler: self.handler.clone(),
            adapter: std::marker::PhantomData,
            type_: std::marker::PhantomData,
        }
    }
}

// wsgate hunk 10 (begin)
/// Runs a handler's future: polled once in place, then spawned on a task of its own only if
/// it is not done. A handler whose work is synchronous (its future completes at its first
/// poll, e.g. `async {}` after a closure body that did everything) then costs no task:
/// no allocation of a task cell, no scheduling, no wake-up of another worker thread. A
/// future that waits goes on in its task as before (the first poll's waker is a no-op; the
/// task polls it again at once with its own).
pub(crate) fn spawn_unless_ready<F>(fut: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let mut fut = Box::pin(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    if fut.as_mut().poll(&mut cx).is_pending() {
        tokio::spawn(fut);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };

    #[tokio::test]
    async fn a_ready_future_runs_in_place_and_a_waiting_one_in_its_task() {
        let ran = Arc::new(AtomicBool::new(false));
        let r = ran.clone();
        super::spawn_unless_ready(async move { r.store(true, Ordering::SeqCst) });
        // Done before this test yields: it ran where it was called.
        assert!(ran.load(Ordering::SeqCst));

        // A future that waits is woken through its task's waker, not the first poll's no-op.
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        super::spawn_unless_ready(async move {
            rx.await.unwrap();
            done_tx.send(()).unwrap();
        });
        tokio::task::yield_now().await;
        tx.send(()).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), done_rx)
            .await
            .expect("the waiting future was woken")
            .unwrap();
    }
}
// wsgate hunk 10 (end)
