//! The connect middleware: authenticate the handshake before the socket exists.

use serde_json::Value;
use socketioxide::extract::TryData;

use super::Socket;

use super::Gateway;
use crate::auth::{AuthError, Credentials};

/// The only message a refused client sees, whatever the reason.
pub const UNAUTHORIZED: &str = "Unauthorized";
/// What a client sees when the replica is full (`--max-connections`) or its user has the
/// most connections allowed.
pub const TOO_MANY_CONNECTIONS: &str = "Too many connections";

/// Count a refused credential under its reason (`stage`: `handshake` or `refresh`).
pub fn count_refusal(e: &AuthError, stage: &'static str) {
    metrics::counter!("wsgate_auth_refusals_total", "reason" => e.label(), "stage" => stage)
        .increment(1);
}

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
        metrics::counter!("wsgate_connects_total", "result" => "draining").increment(1);
        tracing::debug!(sid = %socket.id, "refused handshake: draining");
        return Err(DRAINING);
    }
    if !gw.limits.has_room() {
        metrics::counter!("wsgate_connects_total", "result" => "limited").increment(1);
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
                metrics::counter!("wsgate_connects_total", "result" => "limited").increment(1);
                metrics::counter!("wsgate_limit_refusals_total", "limit" => "connections_per_user")
                    .increment(1);
                tracing::info!(sid = %socket.id, user = %identity.user_id, "refused handshake: too many connections for the user");
                return Err(TOO_MANY_CONNECTIONS);
            }
            metrics::counter!("wsgate_connects_total", "result" => "ok").increment(1);
            tracing::debug!(sid = %socket.id, user = %identity.user_id, transport = ?socket.transport_type(), "connected");
            socket.extensions.insert(identity);
            Ok(())
        }
        Err(e) => {
            metrics::counter!("wsgate_connects_total", "result" => "unauthorized").increment(1);
            count_refusal(&e, "handshake");
            tracing::debug!(sid = %socket.id, reason = e.label(), "refused handshake");
            Err(UNAUTHORIZED)
        }
    }
}
