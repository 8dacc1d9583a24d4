//! The connect middleware: authenticate the handshake before the socket exists.

use std::sync::Arc;

use serde_json::Value;
use socketioxide::extract::TryData;

use crate::{
    auth::{Credentials, Identity},
    gateway::{Gateway, Socket, delivery::resume, events},
    telemetry::{self, AuthStage, ConnectResult, LimitKind},
};

/// The only message a refused client sees, whatever the reason.
pub const UNAUTHORIZED: &str = "Unauthorized";
/// What a client sees when its user has the most connections allowed, or when the replica's
/// sockets reach `--max-connections` (which the handshake's admission, `net::admission`,
/// makes all but impossible: sessions are counted first).
pub const TOO_MANY_CONNECTIONS: &str = "Too many connections";

/// Marks a socket whose CONNECT reached a draining replica: it is accepted and its
/// transport closed at once (see `gateway::on_connect`), because a `connect_error` would
/// make the stock client give up, while a closed transport sends it through the load
/// balancer to a ready replica.
#[derive(Clone, Copy)]
pub(crate) struct ArrivedDraining;

/// Authenticate from the `Authorization` header or `auth.token`; on success the socket
/// carries its [`Identity`] in its extensions and has its event handlers. Every handshake
/// is counted here, once.
/// It waits only for sources that ask a remote service (`--auth http`).
pub async fn authenticate(
    gw: &Arc<Gateway>,
    socket: &Socket,
    auth: TryData<Value>,
) -> Result<(), &'static str> {
    let resume = resume::asked(auth.0.as_ref().ok());
    match admit(gw, socket, auth).await {
        Ok(identity) => {
            ConnectResult::Ok.count();
            tracing::debug!(sid = %socket.id, user = %identity.user_id, transport = ?socket.transport_type(), "connected");
            resume::handshake(gw, socket, &identity, resume).await;
            socket.extensions.insert(identity);
            // socketioxide sends the CONNECT reply before it calls the connect handler, and
            // the client may answer it with an event at once: a handler registered only in
            // `on_connect` can come too late, and an event without one is dropped unanswered.
            gw.limits.prepare(socket);
            events::register(gw, socket);
            Ok(())
        }
        Err(ConnectResult::Draining) => {
            ConnectResult::Draining.count();
            socket.extensions.insert(ArrivedDraining);
            Ok(())
        }
        Err(refused) => {
            refused.count();
            Err(match refused {
                ConnectResult::Limited => TOO_MANY_CONNECTIONS,
                // `Ok` and `Draining` are never a refusal.
                ConnectResult::Unauthorized | ConnectResult::Ok | ConnectResult::Draining => {
                    UNAUTHORIZED
                }
            })
        }
    }
}

/// The handshake's identity, or why it is refused (logged here).
async fn admit(
    gw: &Gateway,
    socket: &Socket,
    auth: TryData<Value>,
) -> Result<Identity, ConnectResult> {
    if gw.shutdown.is_draining() {
        tracing::debug!(sid = %socket.id, "refused handshake: draining");
        return Err(ConnectResult::Draining);
    }
    if !gw.limits.has_room() {
        tracing::debug!(sid = %socket.id, "refused handshake: too many connections");
        return Err(ConnectResult::Limited);
    }
    let headers = &socket.req_parts().headers;
    let header = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let auth = auth.0.ok();
    let creds = Credentials {
        header,
        auth: auth.as_ref(),
    };
    let identity = gw.auth.authenticate_handshake(creds, headers).await;
    let identity = identity.map_err(|e| {
        telemetry::auth_refusal(e.label(), AuthStage::Handshake);
        tracing::debug!(sid = %socket.id, reason = e.label().as_str(), "refused handshake");
        ConnectResult::Unauthorized
    })?;
    if !gw.sessions.try_add(&identity.user_id, socket.id) {
        LimitKind::ConnectionsPerUser.count();
        tracing::info!(sid = %socket.id, user = %identity.user_id, "refused handshake: too many connections for the user");
        return Err(ConnectResult::Limited);
    }
    Ok(identity)
}
