//! While draining, answer new Engine.IO handshakes (a `/socket.io/` request without a
//! `sid`) with 503 before they reach socketioxide, so a load balancer retries them on
//! another replica; requests of existing sessions pass, so their clients still receive
//! their disconnect.

use axum::{
    extract::{Request, State},
    http::StatusCode,
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::{shutdown::Shutdown, telemetry::ConnectResult};

/// The axum middleware; install with `axum::middleware::from_fn_with_state(shutdown, refuse)`.
pub async fn refuse_new_sessions(
    State(shutdown): State<Shutdown>,
    req: Request,
    next: Next,
) -> Response {
    if shutdown.is_draining() && is_handshake(&req) {
        ConnectResult::Draining.count();
        return (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response();
    }
    next.run(req).await
}

use crate::net::admission::is_handshake;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_requests_without_a_session_are_handshakes() {
        let req = |uri: &str| {
            Request::builder()
                .uri(uri)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        assert!(is_handshake(&req("/socket.io/?EIO=4&transport=polling")));
        assert!(is_handshake(&req("/socket.io/?EIO=4&transport=websocket")));
        assert!(!is_handshake(&req(
            "/socket.io/?EIO=4&transport=polling&sid=abc"
        )));
        assert!(!is_handshake(&req("/readyz")));
    }
}
