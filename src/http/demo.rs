//! The demo page at `/`: a browser client of the gateway for people trying it out (pick a
//! demo token, connect, join projects, watch updates and errors arrive).
//!
//! Plain HTML and JavaScript under `src/http/demo/`, built into the binary, with the
//! official `socket.io-client` browser bundle (`socket.io.min.js`, version in its header)
//! shipped beside them: the page works on a machine with no internet and no npm.

use axum::{
    Router,
    http::header,
    response::{IntoResponse, Response},
    routing::get,
};

const INDEX_HTML: &str = include_str!("demo/index.html");
const APP_JS: &str = include_str!("demo/app.js");
const SOCKET_IO_JS: &str = include_str!("demo/socket.io.min.js");

/// Serves the demo page at `/` and its scripts under `/demo/`; every other request goes
/// to `rest` (the Socket.IO service and the operational endpoints).
pub fn with_demo_page(rest: Router) -> Router {
    Router::new()
        .route("/", get(|| file("text/html; charset=utf-8", INDEX_HTML)))
        .route(
            "/demo/app.js",
            get(|| file("text/javascript; charset=utf-8", APP_JS)),
        )
        .route(
            "/demo/socket.io.min.js",
            get(|| file("text/javascript; charset=utf-8", SOCKET_IO_JS)),
        )
        .fallback_service(rest)
}

async fn file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}
