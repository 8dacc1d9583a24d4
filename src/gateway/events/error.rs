//! Every error a client can see, and the one place that turns it into the client contract
//! (an `exception` event, and the ack when the client asked for one).

use crate::gateway::{Ack, Socket};
use serde_json::{Value, json};

use super::validate::Issue;

/// An error answered to a client's event.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The payload failed validation.
    #[error("validation failed")]
    Validation(Vec<Issue>),
    /// The project is unknown or not permitted (one answer for both).
    #[error("project not found")]
    NotFound {
        /// The event that failed (`join_project`).
        pattern: &'static str,
        /// The payload as the client sent it.
        data: Value,
    },
    /// The socket sent events faster than `--max-event-rate`; the event was not handled.
    #[error("rate limited")]
    RateLimited {
        /// The refused event's name ([`crate::telemetry::EventName`]: `other` for any
        /// event without a handler).
        pattern: &'static str,
    },
    /// A credential was refused (a bad `auth_refresh`); the reason is never shown.
    #[error("unauthorized")]
    Unauthorized {
        /// The event that failed.
        pattern: &'static str,
    },
    /// The user lost the project (fleet-wide revocation); the socket left its room.
    #[error("access revoked")]
    Revoked {
        /// The project whose room the socket left.
        project: String,
    },
    /// A per-identity limit was reached.
    #[error("limit reached: {message}")]
    Limited {
        /// What the client is told (`Too many rooms`).
        message: &'static str,
        /// The event that failed.
        pattern: &'static str,
        /// The payload as the client sent it.
        data: Value,
    },
    /// The socket did not read fast enough: its queue of `max_buffer` packets was full when
    /// an update came, so it missed that update and is being disconnected (docs/client-contract.md, "Slow clients").
    #[error("slow consumer")]
    SlowConsumer {
        /// The queue bound that was reached (`--max-buffer`).
        max_buffer: usize,
    },
}

impl ClientError {
    /// The `exception` event's body, as the seed NestJS gateway sent it.
    fn body(&self) -> Value {
        match self {
            ClientError::Validation(issues) => {
                json!({"message": "Validation failed", "errors": issues})
            }
            ClientError::NotFound { pattern, data } => json!({
                "status": "error", "message": "Project not found",
                "cause": {"pattern": pattern, "data": data}
            }),
            ClientError::RateLimited { pattern } => json!({
                "status": "error", "message": "Rate limited",
                "cause": {"pattern": pattern}
            }),
            ClientError::Unauthorized { pattern } => json!({
                "status": "error", "message": "Unauthorized",
                "cause": {"pattern": pattern, "data": null}
            }),
            ClientError::Revoked { project } => json!({
                "status": "error", "message": "Access revoked",
                "cause": {"pattern": "revoke", "data": {"projectId": project}}
            }),
            ClientError::Limited {
                message,
                pattern,
                data,
            } => json!({
                "status": "error", "message": message,
                "cause": {"pattern": pattern, "data": data}
            }),
            ClientError::SlowConsumer { max_buffer } => json!({
                "status": "error", "message": "Too slow: disconnected",
                "cause": {"pattern": "delivery", "data": {"maxBuffer": max_buffer}}
            }),
        }
    }

    /// The ack's body: the same fields, led by `"status": "error"`.
    fn ack_body(&self) -> Value {
        let mut ack = serde_json::Map::new();
        ack.insert("status".into(), "error".into());
        if let Value::Object(fields) = self.body() {
            ack.extend(fields.into_iter().filter(|(k, _)| k != "status"));
        }
        Value::Object(ack)
    }

    /// Send the `exception` event only (for what the server does on its own initiative,
    /// such as a revocation). False when the socket could not take it (full or closed).
    pub fn emit(&self, socket: &Socket) -> bool {
        match socket.emit("exception", &self.body()) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(sid = %socket.id, error = %e, "could not send exception");
                false
            }
        }
    }

    /// Send the error to the client: the `exception` event, and the ack if asked for, so
    /// `emitWithAck` never hangs.
    pub fn reply(&self, socket: &Socket, ack: Ack) {
        self.emit(socket);
        self.ack(socket, ack);
    }

    /// Answer the ack only (nothing is sent when the client asked for none).
    pub fn ack(&self, socket: &Socket, ack: Ack) {
        if let Err(e) = ack.send(&self.ack_body()) {
            tracing::debug!(sid = %socket.id, error = %e, "could not send error ack");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_bodies_lead_with_status() {
        let e = ClientError::NotFound {
            pattern: "join_project",
            data: json!({"projectId": "x"}),
        };
        assert_eq!(
            serde_json::to_string(&e.ack_body()).unwrap(),
            r#"{"status":"error","message":"Project not found","cause":{"pattern":"join_project","data":{"projectId":"x"}}}"#
        );
        let v = ClientError::Validation(vec![]);
        assert_eq!(
            serde_json::to_string(&v.ack_body()).unwrap(),
            r#"{"status":"error","message":"Validation failed","errors":[]}"#
        );
    }
}
