//! The Socket.IO side: the only module that handles client events (their names are
//! [`crate::telemetry::EventName`], the label they are counted under).
//!
//! - `events/`: what a client sends (one file per event), validation, and the one mapping
//!   of every error to the client contract;
//! - `connection/`: a connection's life, from the authenticated handshake through limits,
//!   token expiry and revocation to the drain;
//! - `delivery/`: what reaches the sockets: room membership (and the backplane
//!   subscriptions it drives), the delivery task, the adapter, slow-consumer eviction and
//!   recovery.
//!
//! This file holds what they share: [`Gateway`], and what a new socket gets (its
//! handlers, its expiry timer, its disconnect handler).

mod connection;
mod delivery;
mod events;

// The two modules tests and benches reach into (revocation in process, companion rooms).
pub use connection::revoke;
pub use delivery::{recover, resume};
/// The `join_project` payload validator, public for the fuzz targets (`fuzz/`): a client's
/// payload is the first thing of a socket's that wsgate's own code parses.
pub use events::validate::join as validate_join_project;

use std::sync::Arc;

use serde_json::Value;
use socketioxide::{extract::TryData, handler::ConnectHandler};

use crate::{
    auth::{Authenticator, Identity},
    authz::Authorizer,
    backplane::Backplane,
    shutdown::Shutdown,
};
use connection::{connect, expiry, sessions::Sessions};
pub use connection::{drain::run as drain, limits::Limits, sessions::Limits as IdentityLimits};
pub use delivery::{
    adapter::{Adapter, Overflow, OverflowRx},
    deliver::{
        broadcast as deliver_broadcast, broadcast_counted as deliver_broadcast_counted,
        run as deliver,
    },
    evict::run as evict,
    membership::Membership,
};
use events::error::ClientError;

/// The Socket.IO server of a replica (socketioxide with wsgate's [`Adapter`]).
pub type Io = socketioxide::SocketIo<Adapter>;
/// One connected client socket.
pub type Socket = socketioxide::extract::SocketRef<Adapter>;
/// The acknowledgement callback of a client event.
pub type Ack = socketioxide::extract::AckSender<Adapter>;

/// Everything the handlers share.
pub struct Gateway {
    auth: Arc<dyn Authenticator>,
    authz: Arc<dyn Authorizer>,
    membership: Membership,
    backplane: Arc<dyn Backplane>,
    limits: Limits,
    shutdown: Shutdown,
    sessions: Sessions,
    revocations: revoke::Revocations,
    history: Arc<dyn crate::history::History>,
    recover: recover::Commands,
    /// Stock connection-state recovery, when on.
    csr: Option<resume::Csr>,
    /// `--user-room-prefix`: every socket is in `<prefix><userId>` (`None`: no user rooms).
    user_room_prefix: Option<String>,
}

impl Gateway {
    /// A gateway that also enforces per-identity `limits` (no replica limits, no drain).
    pub fn with_limits(
        auth: Arc<dyn Authenticator>,
        authz: Arc<dyn Authorizer>,
        backplane: Arc<dyn Backplane>,
        identity: IdentityLimits,
    ) -> Arc<Self> {
        Self::recovering(
            auth,
            authz,
            backplane,
            Limits::new(0, 0, 1),
            Shutdown::new(),
            identity,
            Arc::new(crate::history::Unavailable),
        )
    }

    /// A gateway that enforces replica `limits` and per-identity limits, refuses new
    /// clients once `shutdown` starts draining, and answers recovering joins from `history`.
    pub fn recovering(
        auth: Arc<dyn Authenticator>,
        authz: Arc<dyn Authorizer>,
        backplane: Arc<dyn Backplane>,
        limits: Limits,
        shutdown: Shutdown,
        identity: IdentityLimits,
        history: Arc<dyn crate::history::History>,
    ) -> Arc<Self> {
        Arc::new(Self {
            auth,
            authz,
            membership: Membership::new(backplane.clone()),
            backplane,
            limits,
            shutdown,
            sessions: Sessions::new(identity),
            revocations: revoke::Revocations::default(),
            history,
            recover: recover::Commands::default(),
            csr: None,
            user_room_prefix: Some(crate::backplane::DEFAULT_USER_ROOM_PREFIX.to_owned()),
        })
    }

    /// This gateway with stock connection-state recovery (`--connection-state-recovery`).
    /// Call before [`Gateway::attach`], while no one else holds it.
    pub fn with_connection_state_recovery(mut self: Arc<Self>, csr: resume::Csr) -> Arc<Self> {
        if let Some(gw) = Arc::get_mut(&mut self) {
            gw.csr = Some(csr);
        }
        self
    }

    /// This gateway with user rooms under `prefix` (`--user-room-prefix`; empty: none).
    /// Call before [`Gateway::attach`], while no one else holds it.
    pub fn with_user_room_prefix(mut self: Arc<Self>, prefix: &str) -> Arc<Self> {
        if let Some(gw) = Arc::get_mut(&mut self) {
            gw.user_room_prefix = (!prefix.is_empty()).then(|| prefix.to_owned());
        }
        self
    }

    /// Whether a client may not name `room` in `join_project` / `leave_project`: a
    /// socket-id room or a user room (`delivery::reach`).
    fn reserved_room(&self, room: &str) -> bool {
        delivery::reach::reserved(self.user_room_prefix.as_deref(), room)
    }

    /// Whether stock connection-state recovery is on.
    pub fn has_connection_state_recovery(&self) -> bool {
        self.csr.is_some()
    }

    /// Whether the replica can offer sessions to new connections: always without stock
    /// recovery; with it, once the session store answered (its clock is known).
    pub fn sessions_ready(&self) -> bool {
        self.csr.as_ref().is_none_or(resume::Csr::ready)
    }

    /// Register the default namespace's middleware and handlers on `io`.
    pub fn attach(self: &Arc<Self>, io: &Io) {
        let on_connect = {
            let gw = self.clone();
            move |socket: Socket| {
                on_connect(gw.clone(), socket);
                async {}
            }
        };
        let middleware = {
            let gw = self.clone();
            move |socket: Socket, auth: TryData<Value>| {
                let gw = gw.clone();
                async move { connect::authenticate(&gw, &socket, auth).await }
            }
        };
        io.ns("/", on_connect.with(middleware));
    }
}

fn on_connect(gw: Arc<Gateway>, socket: Socket) {
    if socket
        .extensions
        .get::<connect::ArrivedDraining>()
        .is_some()
    {
        connection::close::close_transport(&socket);
        return;
    }
    metrics::gauge!("wsgate_connections").increment(1.0);
    gw.limits.on_connect();
    if socket.extensions.get::<resume::Resuming>().is_some() {
        tokio::spawn(resume::run(gw.clone(), socket.clone()));
    }
    if let Some(identity) = socket.extensions.get::<Identity>() {
        expiry::set(&socket, identity.expires_at);
    }
    delivery::reach::enter(&gw, &socket);
    socket.on_disconnect(move |s: Socket| {
        metrics::gauge!("wsgate_connections").decrement(1.0);
        gw.limits.on_disconnect();
        gw.membership.leave_all(&s);
        resume::disconnected(&gw, &s);
        expiry::stop(&s);
        if let Some(identity) = s.extensions.get::<Identity>() {
            gw.sessions.remove(&identity.user_id, s.id);
        }
        tracing::debug!(sid = %s.id, "disconnected");
        async {}
    });
}
