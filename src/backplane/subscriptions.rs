//! The queue between a Redis engine's handle and the task that owns its subscriber
//! connection: subscribe / unsubscribe commands, in the order they were made.
//!
//! Both engines (one Redis, Redis Cluster) answer a subscribe only once Redis confirmed it,
//! so a join is answered after its room's channel is live.

use futures_util::{FutureExt, future::BoxFuture};
use tokio::sync::{mpsc, oneshot};

use super::{BackplaneError, room_channel};

/// What the subscriber task is asked to do.
pub(crate) enum Command {
    /// Subscribe the channel; answer on the sender once Redis confirmed it.
    Subscribe(String, oneshot::Sender<()>),
    /// Unsubscribe the channel.
    Unsubscribe(String),
}

/// The receiving end, owned by the subscriber task.
pub(crate) type Commands = mpsc::UnboundedReceiver<Command>;

/// The sending end, held by the engine's handle.
#[derive(Clone)]
pub(crate) struct Subscriptions(mpsc::UnboundedSender<Command>);

impl Subscriptions {
    /// A queue and its receiving end. Unbounded: a join or leave never waits on Redis to
    /// be queued, and there is at most one command per join or leave.
    pub(crate) fn channel() -> (Subscriptions, Commands) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Subscriptions(tx), rx)
    }

    /// Subscribe `room`'s channel; resolves once the subscriber task confirmed it.
    pub(crate) fn subscribe(&self, room: &str) -> BoxFuture<'static, Result<(), BackplaneError>> {
        let (done, wait) = oneshot::channel();
        let sent = self.0.send(Command::Subscribe(room_channel(room), done));
        async move {
            sent.map_err(|_| BackplaneError::Stopped)?;
            wait.await.map_err(|_| BackplaneError::Stopped)
        }
        .boxed()
    }

    /// Unsubscribe `room`'s channel (fire and forget: ordered after earlier commands).
    pub(crate) fn unsubscribe(&self, room: &str) {
        let _ = self.0.send(Command::Unsubscribe(room_channel(room)));
    }
}
