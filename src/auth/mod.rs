//! Authentication: who is this connection?
//!
//! The gateway hands the handshake's credentials ([`Credentials`]) to an [`Authenticator`]
//! and gets an [`Identity`] or a refusal. The reason for a refusal is for logs and metrics
//! only: every client sees the same `Unauthorized`.

pub mod forward;
pub mod http;
pub mod jwt;
pub mod mint;
mod table;

use std::{collections::HashSet, sync::Arc};

use futures_util::future::{BoxFuture, FutureExt, ready};

use crate::telemetry::AuthRefusal;

pub use http::HttpAuthenticator;
pub use jwt::JwtAuthenticator;
pub use table::TokenTable;

/// Who a connection belongs to, attached to the socket for its lifetime.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    /// The user id that permissions are looked up by.
    pub user_id: Arc<str>,
    /// When the credential stops being valid (Unix seconds), for sources that say so (JWT
    /// `exp`): the gateway disconnects the socket then, unless it was refreshed.
    pub expires_at: Option<u64>,
    /// The projects the credential itself grants (the JWT projects claim), for the claim
    /// permission source. `None` when the credential carries no such claim.
    pub projects: Option<Arc<HashSet<String>>>,
    /// The handshake headers the HTTP hooks forward (`--hook-forward-header`), kept for
    /// the permission hook's calls on this connection. Empty for other sources.
    pub forwarded: Forwarded,
}

/// Handshake headers kept for the HTTP hooks. Its `Debug` shows the names only: the
/// values (cookies) must never reach a log line.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Forwarded(pub Arc<[(::http::HeaderName, ::http::HeaderValue)]>);

impl std::fmt::Debug for Forwarded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(n, _)| n))
            .finish()
    }
}

impl Identity {
    /// An identity with only a user id (no expiry, no projects claim).
    pub fn new(user_id: impl Into<Arc<str>>) -> Self {
        Self {
            user_id: user_id.into(),
            ..Self::default()
        }
    }
}

/// The credentials a client offered in its handshake, before any checking.
#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials<'a> {
    /// The `Authorization` header, raw or `Bearer <token>`.
    pub header: Option<&'a str>,
    /// The `auth` object of the Socket.IO CONNECT packet.
    pub auth: Option<&'a serde_json::Value>,
}

impl<'a> Credentials<'a> {
    /// The token candidates in the order they are tried: header first, then `auth.token`
    /// (the seed gateway's order). Empty and non-string values are not candidates.
    pub fn tokens(&self) -> impl Iterator<Item = &'a str> {
        let header = self.header.map(|h| {
            let h = h.trim();
            match h.split_once(char::is_whitespace) {
                Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
                _ if h.eq_ignore_ascii_case("bearer") => "",
                _ => h,
            }
        });
        let auth = self
            .auth
            .and_then(|a| a.as_object())
            .and_then(|o| o.get("token"))
            .and_then(|t| t.as_str());
        header.into_iter().chain(auth).filter(|t| !t.is_empty())
    }
}

/// Why a handshake was refused. Never shown to the client.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// No header and no usable `auth.token`.
    #[error("no token in the handshake")]
    Missing,
    /// A token was offered but no source knows it.
    #[error("unknown token")]
    Unknown,
    /// A JWT longer than [`jwt::MAX_TOKEN_BYTES`].
    #[error("token too long")]
    TooLong,
    /// Not three base64url parts, or a header / claims set that is not JSON.
    #[error("malformed token")]
    Malformed,
    /// `alg: none` (an unsigned token).
    #[error("unsigned token (alg none)")]
    AlgNone,
    /// An algorithm that is not configured.
    #[error("algorithm not allowed")]
    AlgNotAllowed,
    /// No configured key has the token's `kid`.
    #[error("no key for the token's kid")]
    UnknownKey,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// `exp` is past (leeway included).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (leeway included).
    #[error("token not yet valid")]
    NotYetValid,
    /// `iss` is not a configured issuer.
    #[error("wrong issuer")]
    WrongIssuer,
    /// `aud` is not a configured audience.
    #[error("wrong audience")]
    WrongAudience,
    /// A required claim (`exp`, the user claim, `iss` / `aud` when configured) is absent
    /// or of the wrong type.
    #[error("missing or invalid claim")]
    BadClaim,
    /// The user claim is a number: RFC 7519 makes `sub` a string (StringOrURI), and a
    /// number read as text could name another user (`1` vs `1.0`). Allowed by
    /// `--jwt-numeric-sub`.
    #[error("numeric user claim")]
    NumericSub,
    /// A refresh token that belongs to another user than the connection.
    #[error("refresh for another user")]
    OtherUser,
    /// The HTTP identity hook gave no usable answer (down, timeout, unexpected status or
    /// body).
    #[error("identity hook failed")]
    HookFailed,
}

impl AuthError {
    /// Its label in `wsgate_auth_refusals_total{reason}` (and in logs).
    pub fn label(&self) -> AuthRefusal {
        match self {
            AuthError::Missing => AuthRefusal::Missing,
            AuthError::Unknown => AuthRefusal::Unknown,
            AuthError::TooLong => AuthRefusal::TooLong,
            AuthError::Malformed => AuthRefusal::Malformed,
            AuthError::AlgNone => AuthRefusal::AlgNone,
            AuthError::AlgNotAllowed => AuthRefusal::AlgNotAllowed,
            AuthError::UnknownKey => AuthRefusal::UnknownKey,
            AuthError::BadSignature => AuthRefusal::BadSignature,
            AuthError::Expired => AuthRefusal::Expired,
            AuthError::NotYetValid => AuthRefusal::NotYetValid,
            AuthError::WrongIssuer => AuthRefusal::WrongIssuer,
            AuthError::WrongAudience => AuthRefusal::WrongAudience,
            AuthError::BadClaim => AuthRefusal::BadClaim,
            AuthError::NumericSub => AuthRefusal::NumericSub,
            AuthError::OtherUser => AuthRefusal::OtherUser,
            AuthError::HookFailed => AuthRefusal::HookFailed,
        }
    }
}

/// A source of identities. Implementations must be cheap to call on every handshake.
pub trait Authenticator: Send + Sync + 'static {
    /// Resolve the credentials to an identity, without waiting (`auth_refresh`, which is
    /// answered in order as events are read). A source that must ask a remote service
    /// answers here from what it has cached only.
    fn authenticate(&self, credentials: &Credentials<'_>) -> Result<Identity, AuthError>;

    /// Resolve a handshake's credentials, possibly waiting (the connect middleware is
    /// async); `handshake` holds the request headers, for sources that forward some. The
    /// default is [`Authenticator::authenticate`], ready at once.
    fn authenticate_handshake<'a>(
        &'a self,
        credentials: Credentials<'a>,
        _handshake: &'a ::http::HeaderMap,
    ) -> BoxFuture<'a, Result<Identity, AuthError>> {
        ready(self.authenticate(&credentials)).boxed()
    }

    /// Forget what is cached about `user_id` (fleet-wide revocation). Sources without a
    /// cache have nothing to do.
    fn invalidate(&self, _user_id: &str) {}
}

/// Failure to load an authentication source at start-up.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("{setting}: cannot read {path}: {source}")]
    Read {
        /// The setting that named the file.
        setting: &'static str,
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is neither the documented JSON nor TOML form.
    #[error("{setting}: {path} is not {expected}: {reason}")]
    Format {
        /// The setting that named the file.
        setting: &'static str,
        /// The file.
        path: String,
        /// The form the file must have.
        expected: &'static str,
        /// What the parsers said.
        reason: String,
    },
    /// A key or key setting is unusable.
    #[error("{setting}: {reason}")]
    Key {
        /// The setting that named the key.
        setting: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Read a JSON or TOML map file (by extension; unknown extensions try JSON then TOML).
pub(crate) fn load_map<T: serde::de::DeserializeOwned>(
    setting: &'static str,
    path: &std::path::Path,
    expected: &'static str,
) -> Result<T, LoadError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        setting,
        path: shown.clone(),
        source,
    })?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let json = || serde_json::from_str::<T>(&text).map_err(|e| format!("JSON: {e}"));
    let toml = || toml::from_str::<T>(&text).map_err(|e| format!("TOML: {e}"));
    let result = match ext {
        "json" => json(),
        "toml" => toml(),
        _ => json().or_else(|a| toml().map_err(|b| format!("{a}; {b}"))),
    };
    result.map_err(|reason| LoadError::Format {
        setting,
        path: shown,
        expected,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tokens(header: Option<&str>, auth: Option<serde_json::Value>) -> Vec<String> {
        let creds = Credentials {
            header,
            auth: auth.as_ref(),
        };
        creds.tokens().map(str::to_owned).collect()
    }

    #[test]
    fn header_raw_and_bearer_then_auth_token() {
        assert_eq!(tokens(Some("abc"), None), ["abc"]);
        assert_eq!(tokens(Some("Bearer abc"), None), ["abc"]);
        assert_eq!(tokens(Some("bearer  abc "), None), ["abc"]);
        assert_eq!(tokens(Some("h"), Some(json!({"token": "a"}))), ["h", "a"]);
    }

    #[test]
    fn unusable_values_are_not_candidates() {
        assert!(tokens(Some(""), None).is_empty());
        assert!(tokens(Some("Bearer "), None).is_empty());
        assert!(tokens(None, Some(json!({"token": 5}))).is_empty());
        assert!(tokens(None, Some(json!({"token": ""}))).is_empty());
        assert!(tokens(None, Some(json!("valid-token-1"))).is_empty());
        assert!(tokens(None, Some(json!(["valid-token-1"]))).is_empty());
    }
}
