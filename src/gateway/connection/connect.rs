//! The connect middleware: authenticate the handshake before the socket exists.

use serde_json::Value;
use socketioxide::extract::TryData;

use crate::gateway::{Gateway, Socket};
use crate::{
    auth::Credentials,
    telemetry::{self, AuthStage, ConnectResult, LimitKind},
};

/// The only message a refused client sees, whatever the reason.
pub const UNAUTHORIZED: &str = "Unauthorized";
/// What a client sees when the replica is full (`--max-connections`) or its user has the
/// most connections allowed.
pub const TOO_MANY_CONNECTIONS: &str = "Too many connections";

/// The message of a client refused because this replica is shutting down.
pub const DRAINING: &str = "Server shutting down";

/// Authenticate from the `Authorization` header or `auth.token`; on success the socket
/// carries its [`crate::auth::Identity`] in its extensions.
pub fn authenticate(
    gw: &Gateway,
    socket: &Socket,
    auth: TryData<Value>,
) -> Result<(), &'static str> {
    if gw.shutdown.is_draining() {
        ConnectResult::Draining.count();
        tracing::debug!(sid = %socket.id, "refused handshake: draining");
        return Err(DRAINING);
    }
    if !gw.limits.has_room() {
        ConnectResult::Limited.count();
        tracing::debug!(sid = %socket.id, "refused handshake: too many connections");
        return Err(TOO_MANY_CONNECTIONS);
    }
    let header = socket
        .req_parts()
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let auth = auth.0.ok();
    let creds = Credentials {
        header,
        auth: auth.as_ref(),
    };
    match gw.auth.authenticate(&creds) {
        Ok(identity) => {
            if !gw.sessions.try_add(&identity.user_id, socket.id) {
                ConnectResult::Limited.count();
                LimitKind::ConnectionsPerUser.count();
                tracing::info!(sid = %socket.id, user = %identity.user_id, "refused handshake: too many connections for the user");
                return Err(TOO_MANY_CONNECTIONS);
            }
            ConnectResult::Ok.count();
            tracing::debug!(sid = %socket.id, user = %identity.user_id, transport = ?socket.transport_type(), "connected");
            socket.extensions.insert(identity);
            Ok(())
        }
        Err(e) => {
            ConnectResult::Unauthorized.count();
            telemetry::auth_refusal(e.label(), AuthStage::Handshake);
            tracing::debug!(sid = %socket.id, reason = e.label().as_str(), "refused handshake");
            Err(UNAUTHORIZED)
        }
    }
}
