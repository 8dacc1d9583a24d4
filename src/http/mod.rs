//! The HTTP side of a replica: one port for Socket.IO (`/socket.io/`), `/healthz`,
//! `/readyz` and `/metrics`. Handlers are thin; what "ready" means is decided by the
//! caller and passed in as a [`Readiness`] check. Browsers: [`origin`] (who may connect,
//! CORS) and [`demo`] (the demo page at `/`).

pub mod demo;
mod detach;
use detach::KeptHeaders;
pub mod origin;

use std::sync::Arc;

use axum::{
    Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use metrics_exporter_prometheus::PrometheusHandle;
use socketioxide::layer::SocketIoLayer;

pub mod refuse;

/// Whether the replica should receive new clients, with the reason when it should not.
pub trait Readiness: Send + Sync + 'static {
    /// `Ok` when ready, else a short reason for the operator.
    fn check(&self) -> Result<(), &'static str>;
}

#[derive(Clone)]
struct AppState {
    readiness: Arc<dyn Readiness>,
    metrics: Option<PrometheusHandle>,
}

/// The replica's router: Socket.IO (with whatever adapter the gateway chose) plus the
/// operational endpoints. `forwarded`: the handshake headers the HTTP hooks forward, which a
/// session keeps beside its credentials (`detach`).
pub fn router<A: socketioxide::adapter::Adapter>(
    socketio: SocketIoLayer<A>,
    readiness: Arc<dyn Readiness>,
    metrics: Option<PrometheusHandle>,
    forwarded: &[String],
) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .with_state(AppState { readiness, metrics })
        .layer(socketio)
        // Outside socketioxide, so it sees the copied head (http/detach.rs).
        .layer(axum::middleware::from_fn_with_state(
            KeptHeaders::new(forwarded),
            detach::detach_head,
        ))
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<AppState>) -> Response {
    match s.readiness.check() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn render_metrics(State(s): State<AppState>) -> Response {
    match s.metrics {
        Some(h) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            h.render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "metrics recorder not installed\n").into_response(),
    }
}
