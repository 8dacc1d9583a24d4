//! Copy the request head out of hyper's connection read buffer.
//!
//! hyper parses the URI and header values of a request without copying: they are slices of
//! the connection's read buffer (about 16 KB). socketioxide keeps the handshake request's
//! head for the whole life of the socket, so each idle connection kept that whole buffer
//! alive for a few hundred bytes of head. Copying the head into its own small allocations
//! before socketioxide sees it lets the buffer go (heaptrack figures in BENCHMARKS.md).

use axum::{
    extract::{OriginalUri, Request},
    middleware::Next,
    response::Response,
};
use http::{HeaderMap, HeaderName, HeaderValue, Uri};

/// Middleware: replace the URI (also axum's `OriginalUri`) and headers by copies that share
/// nothing with hyper's buffer.
pub async fn detach_head(req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    parts.uri = copy_uri(&parts.uri);
    parts.headers = copy_headers(&parts.headers);
    // axum's router keeps the URI as it came, too.
    if let Some(OriginalUri(original)) = parts.extensions.get_mut::<OriginalUri>() {
        *original = copy_uri(original);
    }
    next.run(Request::from_parts(parts, body)).await
}

fn copy_uri(uri: &Uri) -> Uri {
    // `Uri: TryFrom<String>` takes ownership of a fresh allocation.
    Uri::try_from(uri.to_string()).unwrap_or_else(|_| uri.clone())
}

fn copy_headers(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        // Standard names are static; other names and every value are copied.
        let name =
            HeaderName::from_bytes(name.as_str().as_bytes()).unwrap_or_else(|_| name.clone());
        let mut copy = HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
        copy.set_sensitive(value.is_sensitive());
        out.append(name, copy);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_are_equal() {
        let uri: Uri = "/socket.io/?EIO=4&transport=websocket".parse().unwrap();
        assert_eq!(copy_uri(&uri), uri);
        let mut h = HeaderMap::new();
        h.append("authorization", HeaderValue::from_static("Bearer x"));
        h.append("x-custom", HeaderValue::from_static("a"));
        h.append("x-custom", HeaderValue::from_static("b"));
        assert_eq!(copy_headers(&h), h);
    }
}
