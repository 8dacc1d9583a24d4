//! The Socket.IO side: the only module that knows event names.
//!
//! One file per client event (`message`, `join_project`, `leave_project`), the connect
//! middleware in `connect`, payload validation in `validate`, the mapping of every error
//! to the client contract in `error`, room reference counts in `membership`, and the
//! delivery of what the backplane brings in `deliver`.

mod auth_refresh;
mod connect;
mod deliver;
mod error;
pub mod expiry;
mod join_project;
mod leave_project;
mod membership;
mod message;
pub mod revoke;
pub mod sessions;
pub mod validate;

use std::sync::Arc;

use serde_json::Value;
use socketioxide::{
    SocketIo,
    extract::{AckSender, SocketRef, TryData},
    handler::ConnectHandler,
};

use crate::{auth::Authenticator, authz::Authorizer, backplane::Backplane};
pub use deliver::{broadcast as deliver_broadcast, run as deliver};
pub use error::ClientError;
pub use membership::Membership;
pub use sessions::{Limits, Sessions};

/// Everything the handlers share.
pub struct Gateway {
    auth: Arc<dyn Authenticator>,
    authz: Arc<dyn Authorizer>,
    membership: Membership,
    backplane: Arc<dyn Backplane>,
    sessions: Sessions,
    revocations: revoke::Revocations,
}

impl Gateway {
    /// A gateway over these identity, permission and backplane sources.
    pub fn new(
        auth: Arc<dyn Authenticator>,
        authz: Arc<dyn Authorizer>,
        backplane: Arc<dyn Backplane>,
    ) -> Arc<Self> {
        Self::with_limits(auth, authz, backplane, Limits::default())
    }

    /// A gateway that also enforces per-identity `limits`.
    pub fn with_limits(
        auth: Arc<dyn Authenticator>,
        authz: Arc<dyn Authorizer>,
        backplane: Arc<dyn Backplane>,
        limits: Limits,
    ) -> Arc<Self> {
        Arc::new(Self {
            auth,
            authz,
            membership: Membership::new(backplane.clone()),
            backplane,
            sessions: Sessions::new(limits),
            revocations: revoke::Revocations::default(),
        })
    }

    /// Register the default namespace's middleware and handlers on `io`.
    pub fn attach(self: &Arc<Self>, io: &SocketIo) {
        let on_connect = {
            let gw = self.clone();
            move |socket: SocketRef| {
                on_connect(gw.clone(), socket);
                async {}
            }
        };
        let middleware = {
            let gw = self.clone();
            move |socket: SocketRef, auth: TryData<Value>| {
                let result = connect::authenticate(&gw, &socket, auth);
                async move { result }
            }
        };
        io.ns("/", on_connect.with(middleware));
    }
}

/// Count an inbound event under a bounded label.
fn count_event(name: &'static str) {
    metrics::counter!("wsgate_events_received_total", "event" => name).increment(1);
}

/// A handler that answers at once: `(gateway, socket, payload, ack)`.
type PayloadHandler = fn(&Gateway, &SocketRef, Option<Value>, AckSender);

/// Register `handle` for `event`, counted under the event's name.
fn on_payload(gw: &Arc<Gateway>, socket: &SocketRef, event: &'static str, handle: PayloadHandler) {
    let gw = gw.clone();
    socket.on(
        event,
        move |s: SocketRef, TryData(data): TryData<Value>, ack: AckSender| {
            count_event(event);
            handle(&gw, &s, data.ok(), ack);
            async {}
        },
    );
}

fn on_connect(gw: Arc<Gateway>, socket: SocketRef) {
    metrics::gauge!("wsgate_connections").increment(1.0);
    socket.on("message", |s: SocketRef, ack: AckSender| {
        count_event("message");
        message::handle(&s, ack);
        async {}
    });
    {
        let gw = gw.clone();
        socket.on(
            "join_project",
            move |s: SocketRef, TryData(data): TryData<Value>, ack: AckSender| {
                count_event("join_project");
                let gw = gw.clone();
                async move { join_project::handle(&gw, &s, data.ok(), ack).await }
            },
        );
    }
    on_payload(&gw, &socket, "leave_project", leave_project::handle);
    on_payload(&gw, &socket, "auth_refresh", auth_refresh::handle);
    if let Some(identity) = socket.extensions.get::<crate::auth::Identity>() {
        expiry::set(&socket, identity.expires_at);
    }
    socket.on_fallback(|| {
        count_event("other");
        async {}
    });
    socket.on_disconnect(move |s: SocketRef| {
        metrics::gauge!("wsgate_connections").decrement(1.0);
        gw.membership.leave_all(&s);
        expiry::stop(&s);
        if let Some(identity) = s.extensions.get::<crate::auth::Identity>() {
            gw.sessions.remove(&identity.user_id, s.id);
        }
        tracing::debug!(sid = %s.id, "disconnected");
        async {}
    });
}
