//! `auth_refresh {token}`: replace the connection's credential with a newer one for the
//! same user, before the old one expires. A token for another user, or one that does not
//! verify, is refused with `Unauthorized` (the reason goes to logs and metrics only).
//!
//! The new token is checked as a handshake's is (`authenticate_handshake`), so an identity
//! hook (`--auth http`) is asked about it (or answers from its cache), with the
//! connection's handshake headers.

use serde_json::Value;

use super::{Outcome, Reply, error::ClientError};
use crate::{
    auth::{AuthError, Credentials, Identity},
    gateway::{Gateway, Socket, connection::expiry},
    telemetry::{self, AuthRefreshResult, AuthStage, EventName},
};

/// Handle an `auth_refresh` event.
pub(crate) async fn handle(gw: &Gateway, socket: &Socket, payload: Option<Value>) -> Outcome {
    let creds = Credentials {
        header: None,
        auth: payload.as_ref(),
    };
    let headers = &socket.req_parts().headers;
    let result = gw
        .auth
        .authenticate_handshake(creds, headers)
        .await
        .and_then(|new| match socket.extensions.get::<Identity>() {
            // The handshake headers the hooks forward stay those of the connection.
            Some(old) if old.user_id == new.user_id => Ok(Identity {
                forwarded: old.forwarded,
                ..new
            }),
            _ => Err(AuthError::OtherUser),
        });
    match result {
        Ok(identity) => {
            expiry::set(socket, identity.expires_at);
            socket.extensions.insert(identity);
            Ok(Reply::Text("Token refreshed".into()))
        }
        Err(e) => {
            telemetry::auth_refusal(e.label(), AuthStage::Refresh);
            tracing::info!(sid = %socket.id, reason = e.label().as_str(), "refused auth_refresh");
            Err(ClientError::Unauthorized {
                pattern: EventName::AuthRefresh.as_str(),
            })
        }
    }
}

/// The `wsgate_auth_refresh_total` label of an outcome.
pub(crate) fn result(outcome: &Outcome) -> AuthRefreshResult {
    match outcome {
        Ok(_) => AuthRefreshResult::Ok,
        Err(_) => AuthRefreshResult::Refused,
    }
}
