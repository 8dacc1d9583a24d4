//! The in-process engine: one replica, no Redis. A publish goes straight to the inbound
//! channel, so the gateway delivers it through the same path as a Redis message.

use futures_util::{FutureExt, future::BoxFuture};

use super::{Backplane, BackplaneError, Broadcast, InboundRx, InboundTx, request};

/// The in-process backplane.
#[derive(Debug, Clone)]
pub struct MemoryBackplane {
    inbound: InboundTx,
}

impl MemoryBackplane {
    /// An engine and the inbound channel the gateway consumes.
    pub fn new() -> (Self, InboundRx) {
        let (tx, rx) = tokio::sync::mpsc::channel(super::INBOUND_CAPACITY);
        (Self { inbound: tx }, rx)
    }
}

impl Backplane for MemoryBackplane {
    fn publish(&self, b: Broadcast) -> BoxFuture<'static, Result<(), BackplaneError>> {
        let tx = self.inbound.clone();
        async move { super::inbound::deliver_locally(&tx, b).await }.boxed()
    }

    fn subscribe(&self, _room: &str) -> BoxFuture<'static, Result<(), BackplaneError>> {
        futures_util::future::ready(Ok(())).boxed()
    }

    fn unsubscribe(&self, _room: &str) {}

    fn respond(&self, _r: request::Response) -> BoxFuture<'static, Result<(), BackplaneError>> {
        // There is no other server to answer.
        futures_util::future::ready(Ok(())).boxed()
    }

    fn is_ready(&self) -> bool {
        true
    }
}
