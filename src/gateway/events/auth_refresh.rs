//! `auth_refresh {token}`: replace the connection's credential with a newer one for the
//! same user, before the old one expires. A token for another user, or one that does not
//! verify, is refused with `Unauthorized` (the reason goes to logs and metrics only).

use crate::gateway::{Ack, Gateway, Socket, connection::expiry};
use serde_json::Value;

use super::error::ClientError;
use crate::{
    auth::{AuthError, Credentials, Identity},
    telemetry::{self, AuthRefreshResult, AuthStage},
};

/// Handle an `auth_refresh` event.
pub fn handle(gw: &Gateway, socket: &Socket, payload: Option<Value>, ack: Ack) {
    let creds = Credentials {
        header: None,
        auth: payload.as_ref(),
    };
    let result =
        gw.auth
            .authenticate(&creds)
            .and_then(|new| match socket.extensions.get::<Identity>() {
                Some(old) if old.user_id == new.user_id => Ok(new),
                _ => Err(AuthError::OtherUser),
            });
    match result {
        Ok(identity) => {
            AuthRefreshResult::Ok.count();
            expiry::set(socket, identity.expires_at);
            socket.extensions.insert(identity);
            super::error::reply_ok(socket, ack, "auth_refresh", "Token refreshed");
        }
        Err(e) => {
            AuthRefreshResult::Refused.count();
            telemetry::auth_refusal(e.label(), AuthStage::Refresh);
            tracing::info!(sid = %socket.id, reason = e.label().as_str(), "refused auth_refresh");
            ClientError::Unauthorized {
                pattern: "auth_refresh",
            }
            .reply(socket, ack);
        }
    }
}
