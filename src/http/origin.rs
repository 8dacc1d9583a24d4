//! Which web pages may talk to the gateway: the `Origin` policy and CORS for long-polling.
//!
//! A browser puts `Origin` on every WebSocket upgrade and every cross-origin XHR, and it
//! cannot be forged by a page. Without a check, any site a user visits could open a socket
//! to the gateway on the user's behalf (a WebSocket is not bound by the same-origin
//! policy). So a Socket.IO request whose `Origin` is not allowed is refused with 403 and
//! counted; a request with no `Origin` (Node, Rust, curl: not a browser) is let through,
//! since such clients prove who they are with a token anyway.
//!
//! Long-polling from a page on another allowed origin also needs CORS headers, or the
//! browser hides the answers from the page: tower-http's CORS layer adds them, for allowed
//! origins only, with `Access-Control-Allow-Credentials` when asked for.

use std::{fmt, str::FromStr, sync::Arc};

use axum::{
    Router,
    extract::{Request, State},
    http::{HeaderValue, Method, StatusCode, header, request::Parts, uri::Authority},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

use crate::telemetry::OriginTransport;

/// The Socket.IO endpoint the policy guards (socketioxide's default path).
const SOCKET_IO_PATH: &str = "/socket.io";

/// The value of `--allowed-origins` when it is not set: the gateway's own pages (the demo
/// page) and pages served from this machine, on any port. Never `*`.
pub const DEFAULT_ALLOWED_ORIGINS: &str =
    "self,http://localhost:*,http://127.0.0.1:*,http://[::1]:*";

/// Why an origin setting is unusable; the message names the setting.
#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    /// An entry of `--allowed-origins` is not `*`, `self` or an origin.
    #[error(
        "{0:?} is not an origin: expected `*`, `self`, `scheme://host[:port]` or `scheme://host:*`"
    )]
    Pattern(String),
    /// Credentials for any origin would let every site act as the user.
    #[error(
        "--cors-credentials / WSGATE_CORS_CREDENTIALS cannot be combined with \
         --allowed-origins / WSGATE_ALLOWED_ORIGINS `*`: list the origins instead"
    )]
    CredentialsWithAny,
}

/// One entry of `--allowed-origins`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPattern {
    /// `*`: every origin (only when set explicitly).
    Any,
    /// `self`: the origin the request was sent to (its `Host`), such as the demo page's.
    SameOrigin,
    /// `scheme://host[:port]`, matched exactly (default ports made explicit).
    Exact(Origin),
    /// `scheme://host:*`: that host on any port.
    AnyPort {
        /// Lower-case scheme.
        scheme: String,
        /// Lower-case host (IPv6 in brackets).
        host: String,
    },
}

impl FromStr for OriginPattern {
    type Err = OriginError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        match s {
            "*" => return Ok(Self::Any),
            "self" => return Ok(Self::SameOrigin),
            _ => {}
        }
        let bad = || OriginError::Pattern(s.to_owned());
        let text = s.strip_suffix('/').unwrap_or(s);
        if let Some(rest) = text.strip_suffix(":*") {
            let o: Origin = rest.parse().map_err(|_| bad())?;
            if o.explicit_port {
                return Err(bad());
            }
            return Ok(Self::AnyPort {
                scheme: o.scheme,
                host: o.host,
            });
        }
        text.parse().map(Self::Exact).map_err(|_| bad())
    }
}

impl fmt::Display for OriginPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::SameOrigin => f.write_str("self"),
            Self::Exact(o) => write!(f, "{o}"),
            Self::AnyPort { scheme, host } => write!(f, "{scheme}://{host}:*"),
        }
    }
}

/// A parsed web origin: scheme, host and effective port.
#[derive(Debug, Clone, Eq)]
pub struct Origin {
    scheme: String,
    host: String,
    /// The port, with the scheme's default filled in when the text had none.
    port: Option<u16>,
    explicit_port: bool,
}

/// Equal when they name the same origin (`https://a` is `https://a:443`).
impl PartialEq for Origin {
    fn eq(&self, other: &Self) -> bool {
        self.scheme == other.scheme && self.host == other.host && self.port == other.port
    }
}

impl FromStr for Origin {
    type Err = ();

    /// Parses `scheme://host[:port]` (what browsers send; no path, query or user info).
    fn from_str(s: &str) -> Result<Self, ()> {
        let (scheme, authority) = s.split_once("://").ok_or(())?;
        let scheme_ok = !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
        if !scheme_ok || authority.contains(['/', '?', '#', '@']) {
            return Err(());
        }
        let scheme = scheme.to_ascii_lowercase();
        let authority: Authority = authority.parse().map_err(|_| ())?;
        if authority.host().is_empty() || !port_is_numeric(&authority) {
            return Err(());
        }
        let explicit = authority.port_u16();
        Ok(Self {
            port: explicit.or_else(|| default_port(&scheme)),
            host: authority.host().to_ascii_lowercase(),
            scheme,
            explicit_port: explicit.is_some(),
        })
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        match self.port {
            Some(p) if Some(p) != default_port(&self.scheme) => write!(f, ":{p}"),
            _ => Ok(()),
        }
    }
}

/// Whether whatever follows the host is nothing or `:` and a port number. `Authority`
/// accepts `localhost:9999.evil.example` (its port then reads as absent), which would make
/// `http://localhost:*` match a page of `evil.example`'s choosing.
fn port_is_numeric(authority: &Authority) -> bool {
    let after_host = &authority.as_str()[authority.host().len()..];
    match after_host.strip_prefix(':') {
        None => after_host.is_empty(),
        Some(port) => {
            !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && authority.port_u16().is_some()
        }
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

/// The allowed origins and whether they may send credentials; decides every request.
#[derive(Debug, Clone)]
pub struct OriginPolicy {
    patterns: Vec<OriginPattern>,
    credentials: bool,
}

impl OriginPolicy {
    /// A policy from `--allowed-origins` and `--cors-credentials`; refuses `*` with
    /// credentials.
    pub fn new(patterns: Vec<OriginPattern>, credentials: bool) -> Result<Self, OriginError> {
        if credentials && patterns.contains(&OriginPattern::Any) {
            return Err(OriginError::CredentialsWithAny);
        }
        Ok(Self {
            patterns,
            credentials,
        })
    }

    /// Whether a page of `origin` may use a gateway reached as `host` (the request's
    /// `Host`, used by `self`). An `Origin` that does not parse (including `null`, sent by
    /// sandboxed frames and `file:` pages) is allowed only by `*`.
    pub fn allows(&self, origin: &HeaderValue, host: Option<&str>) -> bool {
        if self.patterns.contains(&OriginPattern::Any) {
            return true;
        }
        let Some(origin) = origin.to_str().ok().and_then(|o| o.parse::<Origin>().ok()) else {
            return false;
        };
        self.patterns.iter().any(|p| match p {
            OriginPattern::Any => true,
            OriginPattern::SameOrigin => host.is_some_and(|h| same_authority(&origin, h)),
            OriginPattern::Exact(o) => *o == origin,
            OriginPattern::AnyPort { scheme, host } => {
                *scheme == origin.scheme && *host == origin.host
            }
        })
    }

    fn allows_parts(&self, origin: &HeaderValue, parts: &Parts) -> bool {
        self.allows(origin, request_host(parts))
    }
}

/// Whether `host` (a `Host` header: `host[:port]`) names the origin's host and port. The
/// scheme is not compared: behind a TLS-terminating proxy the gateway cannot know it.
fn same_authority(origin: &Origin, host: &str) -> bool {
    let Ok(a) = host.parse::<Authority>() else {
        return false;
    };
    let port = a.port_u16().or_else(|| default_port(&origin.scheme));
    a.host().eq_ignore_ascii_case(&origin.host) && port == origin.port
}

fn request_host(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(Authority::as_str))
}

/// Wraps `router` (everything the replica serves) with the origin check and CORS.
pub fn guard(router: Router, policy: OriginPolicy) -> Router {
    let policy = Arc::new(policy);
    let for_cors = policy.clone();
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin, parts| {
            for_cors.allows_parts(origin, parts)
        }))
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers(AllowHeaders::mirror_request())
        .allow_credentials(policy.credentials)
        .max_age(std::time::Duration::from_secs(600));
    // The last layer added runs first: refuse before CORS and Socket.IO see the request.
    router
        .layer(cors)
        .layer(middleware::from_fn_with_state(policy, check_origin))
}

/// Refuses a Socket.IO request (upgrade or polling) from a page whose origin is not allowed.
async fn check_origin(
    State(policy): State<Arc<OriginPolicy>>,
    req: Request,
    next: Next,
) -> Response {
    if !is_socket_io(req.uri().path()) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let mut origins = parts.headers.get_all(header::ORIGIN).iter();
    let allowed = match (origins.next(), origins.next()) {
        (None, _) => true,
        (Some(o), None) => policy.allows_parts(o, &parts),
        (Some(_), Some(_)) => false,
    };
    if allowed {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let transport = transport_of(parts.uri.query());
    transport.count();
    tracing::debug!(
        origin = ?parts.headers.get(header::ORIGIN),
        transport = transport.as_str(),
        "refused a request from an origin that is not allowed"
    );
    (StatusCode::FORBIDDEN, "origin not allowed\n").into_response()
}

/// Whether Engine.IO would serve `path`: its own matching (`/socket.io` or below it), so
/// that no spelling of the path gets past the check.
fn is_socket_io(path: &str) -> bool {
    path.strip_prefix(SOCKET_IO_PATH)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The Engine.IO transport a request is for, as a metric label with a fixed set of values.
fn transport_of(query: Option<&str>) -> OriginTransport {
    let value = query
        .unwrap_or_default()
        .split('&')
        .find_map(|kv| kv.strip_prefix("transport="));
    match value {
        Some("websocket") => OriginTransport::Websocket,
        Some("polling") => OriginTransport::Polling,
        _ => OriginTransport::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(list: &str) -> OriginPolicy {
        let patterns = list.split(',').map(|p| p.parse().unwrap()).collect();
        OriginPolicy::new(patterns, false).unwrap()
    }

    fn allows(p: &OriginPolicy, origin: &str, host: &str) -> bool {
        p.allows(&HeaderValue::from_str(origin).unwrap(), Some(host))
    }

    #[test]
    fn default_allows_own_origin_and_localhost_only() {
        let p = policy(DEFAULT_ALLOWED_ORIGINS);
        assert!(allows(&p, "http://gw.example:3000", "gw.example:3000"));
        assert!(allows(&p, "https://gw.example", "gw.example"));
        assert!(allows(&p, "http://localhost:5173", "gw.example:3000"));
        assert!(allows(&p, "http://127.0.0.1", "gw.example:3000"));
        assert!(allows(&p, "http://[::1]:8080", "gw.example:3000"));
        assert!(!allows(&p, "http://evil.example", "gw.example:3000"));
        assert!(!allows(&p, "http://gw.example:3001", "gw.example:3000"));
        assert!(!allows(&p, "http://127.0.0.2:3000", "127.0.0.1:3000"));
        assert!(!allows(&p, "null", "gw.example:3000"));
        assert!(!allows(&p, "https://localhost:5173", "gw.example:3000"));
    }

    #[test]
    fn a_port_wildcard_matches_port_numbers_only() {
        let p = policy(DEFAULT_ALLOWED_ORIGINS);
        for evil in [
            "http://localhost:9999.evil.example",
            "http://127.0.0.1:80.evil.example",
            "http://[::1]:80.evil.example",
            "http://localhost:",
            "http://localhost:+80",
            "http://localhost:99999",
            "http://localhost:80:80",
            "http://localhost.evil.example:80",
        ] {
            assert!(!allows(&p, evil, "gw.example:3000"), "{evil} allowed");
        }
        assert!(allows(&p, "http://localhost:9999", "gw.example:3000"));
        assert!(allows(&p, "http://127.0.0.1:80", "gw.example:3000"));
        for bad in ["http://localhost:9999.evil.example", "http://a:80.b:*"] {
            assert!(bad.parse::<OriginPattern>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn exact_origins_compare_effective_ports_and_case() {
        let p = policy("https://App.Example,http://a.example:8080/");
        assert!(allows(&p, "https://app.example", "gw"));
        assert!(allows(&p, "https://app.example:443", "gw"));
        assert!(allows(&p, "http://a.example:8080", "gw"));
        assert!(!allows(&p, "http://app.example", "gw"));
        assert!(!allows(&p, "http://a.example", "gw"));
    }

    #[test]
    fn any_is_explicit_and_refused_with_credentials() {
        assert!(allows(&policy("*"), "null", "gw"));
        assert!(allows(&policy("*"), "http://evil.example", "gw"));
        let err = OriginPolicy::new(vec![OriginPattern::Any], true).unwrap_err();
        assert!(err.to_string().contains("--cors-credentials"));
        assert!(OriginPolicy::new(vec![OriginPattern::SameOrigin], true).is_ok());
    }

    #[test]
    fn bad_patterns_are_rejected() {
        for bad in [
            "",
            "localhost",
            "http://",
            "http://a.example/path",
            "http://u@a.example",
            "http://a.example:1:*",
            "http://a.example?x",
            "ht tp://a",
        ] {
            assert!(bad.parse::<OriginPattern>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn patterns_print_as_parsed() {
        for p in [
            "*",
            "self",
            "http://localhost:*",
            "https://a.example",
            "http://a:81",
        ] {
            assert_eq!(p.parse::<OriginPattern>().unwrap().to_string(), p);
        }
    }

    #[test]
    fn the_check_covers_every_path_engine_io_serves() {
        for p in ["/socket.io", "/socket.io/", "/socket.io/x"] {
            assert!(is_socket_io(p), "{p}");
        }
        for p in ["/", "/socket.iox", "/healthz", "/demo/socket.io.min.js"] {
            assert!(!is_socket_io(p), "{p}");
        }
    }

    #[test]
    fn transport_label_is_bounded() {
        let label = |q| transport_of(q).as_str();
        assert_eq!(label(Some("EIO=4&transport=websocket")), "websocket");
        assert_eq!(label(Some("transport=polling&t=x")), "polling");
        assert_eq!(label(Some("transport=carrier-pigeon")), "other");
        assert_eq!(label(None), "other");
    }
}
