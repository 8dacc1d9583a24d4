//! Keep as little of a handshake's request head as the session needs.
//!
//! engineioxide keeps the head (URI, headers, extensions) of the request that opened an
//! Engine.IO session for the session's whole life (`Socket::req_parts`). As hyper hands it
//! over, that head is expensive to keep:
//! - the URI and header values are slices of the connection's read buffer (about 16 KB),
//!   which they keep alive;
//! - an `http::HeaderMap` takes about 104 bytes per header slot, so a browser's dozen
//!   headers (User-Agent, Accept-*, Cookie, Sec-WebSocket-*, ...) cost 2-3 KB per session;
//! - the extensions hold what axum and hyper put there for the request (route parameters,
//!   the original URI), each boxed in a map.
//!
//! For a handshake (a `/socket.io/` request without `sid`: the only request whose head a
//! session keeps) this middleware replaces the head by a copy of what is read later:
//! - headers: `Authorization` (the connect middleware's credentials), `Sec-WebSocket-Key`
//!   (engineioxide answers the upgrade with it) and the headers the HTTP hooks forward
//!   (`--hook-forward-header`, read at the handshake and at each `auth_refresh`); nothing
//!   else of wsgate's, engineioxide's or socketioxide's reads a session's headers;
//! - extensions: the session's admission permit (`net::SessionPermit`, released when the
//!   session is dropped) and hyper's pending upgrade (`OnUpgrade`, for the websocket);
//! - the URI, copied into an allocation of its own.
//!
//! Other requests (polling requests of an existing session, `/metrics`, ...) pass as they
//! are: nothing keeps their head past the response. Figures in BENCHMARKS.md ("Issue 15:
//! idle memory and connect cost").

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::Response,
};
use bytes::Bytes;
use http::{Extensions, HeaderMap, HeaderName, Uri, header};

use crate::net::{SessionPermit, admission::is_handshake};

/// The names of the handshake headers a session keeps.
#[derive(Debug, Clone)]
pub struct KeptHeaders(Arc<[HeaderName]>);

impl KeptHeaders {
    /// `Authorization`, `Sec-WebSocket-Key` and `forwarded` (the `--hook-forward-header`
    /// names; one that is not a header name is skipped: the hook client refuses it at start).
    pub fn new(forwarded: &[String]) -> Self {
        let mut names = vec![header::AUTHORIZATION, header::SEC_WEBSOCKET_KEY];
        for n in forwarded {
            if let Ok(name) = HeaderName::try_from(n.trim())
                && !names.contains(&name)
            {
                names.push(name);
            }
        }
        Self(names.into())
    }
}

/// Middleware: a handshake goes on with only the head its session keeps (module doc).
pub async fn detach_head(State(kept): State<KeptHeaders>, req: Request, next: Next) -> Response {
    if !is_handshake(&req) {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    parts.uri = copy_uri(&parts.uri);
    parts.headers = copy_headers(&parts.headers, &kept.0);
    parts.extensions = kept_extensions(&mut parts.extensions);
    next.run(Request::from_parts(parts, body)).await
}

/// The URI in one exact-size allocation of its own.
fn copy_uri(uri: &Uri) -> Uri {
    let Some(pq) = uri.path_and_query() else {
        return uri.clone();
    };
    if uri.scheme().is_some() || uri.authority().is_some() {
        // An absolute-form request target: rare, copied through its text.
        return Uri::try_from(uri.to_string()).unwrap_or_else(|_| uri.clone());
    }
    Uri::from_maybe_shared(Bytes::copy_from_slice(pq.as_str().as_bytes()))
        .unwrap_or_else(|_| uri.clone())
}

/// The headers named in `kept`, their values copied out of hyper's buffer (in one
/// allocation shared by all of them).
fn copy_headers(headers: &HeaderMap, kept: &[HeaderName]) -> HeaderMap {
    let present = || {
        kept.iter()
            .flat_map(|name| headers.get_all(name).iter().map(move |v| (name, v)))
    };
    let (count, bytes) = present().fold((0, 0), |(c, b), (_, v)| (c + 1, b + v.len()));
    let mut out = HeaderMap::with_capacity(count);
    if count == 0 {
        return out;
    }
    let mut all = Vec::with_capacity(bytes);
    for (_, v) in present() {
        all.extend_from_slice(v.as_bytes());
    }
    let all = Bytes::from(all);
    let mut at = 0;
    for (name, value) in present() {
        let slice = all.slice(at..at + value.len());
        at += value.len();
        let Ok(mut copy) = http::HeaderValue::from_maybe_shared(slice) else {
            continue;
        };
        copy.set_sensitive(value.is_sensitive());
        out.append(name.clone(), copy);
    }
    out
}

/// The extensions a session needs: its admission permit and hyper's pending upgrade.
fn kept_extensions(extensions: &mut Extensions) -> Extensions {
    let mut kept = Extensions::new();
    if let Some(permit) = extensions.remove::<Arc<SessionPermit>>() {
        kept.insert(permit);
    }
    if let Some(upgrade) = extensions.remove::<hyper::upgrade::OnUpgrade>() {
        kept.insert(upgrade);
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn a_copied_uri_is_equal() {
        for s in [
            "/socket.io/?EIO=4&transport=websocket",
            "/socket.io/",
            "http://example.com/socket.io/?EIO=4",
        ] {
            let uri: Uri = s.parse().unwrap();
            assert_eq!(copy_uri(&uri), uri);
        }
    }

    #[test]
    fn only_the_kept_headers_are_copied_in_order() {
        let kept = KeptHeaders::new(&["Cookie".into(), " x-custom ".into(), "bad name".into()]);
        let mut h = HeaderMap::new();
        h.append("user-agent", HeaderValue::from_static("Mozilla/5.0"));
        let mut secret = HeaderValue::from_static("Bearer x");
        secret.set_sensitive(true);
        h.append("authorization", secret);
        h.append("x-custom", HeaderValue::from_static("a"));
        h.append("x-custom", HeaderValue::from_static("b"));
        h.append(
            "sec-websocket-key",
            HeaderValue::from_static("dGhlIHNhbXBsZQ=="),
        );
        let copy = copy_headers(&h, &kept.0);
        assert_eq!(copy.len(), 4);
        assert!(copy.get("user-agent").is_none());
        assert!(copy.get("authorization").unwrap().is_sensitive());
        assert_eq!(copy.get("authorization").unwrap(), "Bearer x");
        let custom: Vec<_> = copy.get_all("x-custom").iter().collect();
        assert_eq!(custom, ["a", "b"]);
        assert_eq!(copy.get("sec-websocket-key").unwrap(), "dGhlIHNhbXBsZQ==");
        assert!(copy_headers(&HeaderMap::new(), &kept.0).is_empty());
    }

    #[test]
    fn only_the_permit_and_the_upgrade_stay_in_the_extensions() {
        let mut ext = Extensions::new();
        ext.insert(5u32);
        ext.insert("route params");
        let kept = kept_extensions(&mut ext);
        assert!(kept.get::<u32>().is_none());
        assert!(kept.get::<&str>().is_none());
    }
}
