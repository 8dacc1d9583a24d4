//! The engines' side of the inbound channel: what every engine does with a message once it
//! has one (a local publish, or bytes read from Redis), so the gateway sees the same
//! values, counted the same way, whatever the engine.

use std::time::Duration;

use super::{BackplaneError, Broadcast, Control, Inbound, InboundTx};
use crate::{
    logs::LogLimiter,
    telemetry::{BackplaneKind, DecodeErrorKind},
};

/// A new server uid. Never the 6-character form Node adapters use, so uids cannot collide.
pub(super) fn new_uid() -> String {
    format!("wsgate-{}", uuid::Uuid::new_v4().simple())
}

/// Hand this replica's own publish to its local members. Redis echoes it back with our
/// uid and the engine skips that copy, so local members get it once, even while Redis is
/// down.
pub(super) async fn deliver_locally(
    inbound: &InboundTx,
    b: Broadcast,
) -> Result<(), BackplaneError> {
    inbound
        .send(Inbound::Broadcast(b))
        .await
        .map_err(|_| BackplaneError::Stopped)
}

/// The receiving end of a Redis engine: decodes what is not engine-specific, counts every
/// message by kind, and reports the ones that do not decode.
#[derive(Debug)]
pub(super) struct Receiver {
    /// This replica's uid: messages carrying it are our own.
    pub(super) uid: String,
    inbound: InboundTx,
    logs: LogLimiter,
}

impl Receiver {
    /// A receiver for the server `uid`, handing messages to `inbound`.
    pub(super) fn new(uid: String, inbound: InboundTx) -> Self {
        Self {
            uid,
            inbound,
            logs: LogLimiter::new(Duration::from_secs(10)),
        }
    }

    /// Whether a message stamped `uid` is one of ours.
    pub(super) fn is_own(&self, uid: Option<&str>) -> bool {
        uid == Some(self.uid.as_str())
    }

    /// A message of the control channel, or `None` (reported) when it does not decode.
    pub(super) fn control(&self, payload: &[u8]) -> Option<Inbound> {
        match Control::decode(payload) {
            Ok(c) => Some(Inbound::Control(c)),
            Err(e) => {
                self.bad_message(DecodeErrorKind::BadControl, &e.to_string());
                None
            }
        }
    }

    /// Count `msg` and hand it to the gateway. Waits only when the gateway is a whole
    /// inbound channel behind (Redis pub/sub cannot be slowed down: this is where a burst
    /// is absorbed).
    pub(super) async fn forward(&self, msg: Inbound) {
        match &msg {
            Inbound::Broadcast(_) => BackplaneKind::Broadcast,
            Inbound::Request(_) => BackplaneKind::Request,
            Inbound::Control(_) => BackplaneKind::Control,
        }
        .count();
        let _ = self.inbound.send(msg).await;
    }

    /// Count a message that does not decode and log it, at most once per kind per 10 s.
    pub(super) fn bad_message(&self, kind: DecodeErrorKind, detail: &str) {
        kind.count();
        if let Some(held) = self.logs.allow(kind.as_str()) {
            tracing::warn!(
                kind = kind.as_str(),
                suppressed = held,
                detail,
                "dropped a backplane message that does not decode"
            );
        }
    }
}
