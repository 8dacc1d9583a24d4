//! What the HTTP hooks (`--auth http`, `--authz http`) share: one HTTP/1.1 keep-alive
//! client pool, the configured extra headers (values may name environment variables, so
//! secrets stay out of process lists), the forwarded handshake headers, the timeout, and
//! how a call is classified, counted and logged.
//!
//! A call ends in one of four results ([`HookResult`]): `allow` and `deny` are answers
//! (the caller may cache them); `error` (connection refused, unexpected status, body that
//! does not parse) and `timeout` are failures: the caller refuses and does not cache.
//! Nothing here logs a token, a header value or a response body.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use ::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    auth::Forwarded,
    logs::LogLimiter,
    telemetry::{self, Hook, HookResult},
};

/// How the hooks call their backend.
#[derive(Debug, Clone, Default)]
pub struct HookSettings {
    /// Most time one call may take (connection included).
    pub timeout: Duration,
    /// `Name: value` lines added to every call; `${VAR}` in a value is replaced by the
    /// environment variable `VAR` at start-up.
    pub headers: Vec<String>,
    /// Handshake headers copied into every call (e.g. `Cookie`).
    pub forward: Vec<String>,
    /// A CA trusted for `https://` hooks besides the built-in roots.
    pub ca_file: Option<std::path::PathBuf>,
}

/// Why the hooks cannot start.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// A `--hook-header` that is not `Name: value`, or names an unset variable.
    #[error("--hook-header / WSGATE_HOOK_HEADER: {0}")]
    Header(String),
    /// A `--hook-forward-header` that is not a header name.
    #[error("--hook-forward-header / WSGATE_HOOK_FORWARD_HEADER: {0:?} is not a header name")]
    Forward(String),
    /// The HTTP client cannot be built.
    #[error("HTTP hook client: {0}")]
    Client(String),
    /// `--hook-ca-file` cannot be read or holds no certificate.
    #[error("--hook-ca-file / WSGATE_HOOK_CA_FILE {path}: {why}")]
    Ca {
        /// The file.
        path: String,
        /// What is wrong with it.
        why: String,
    },
}

/// What a hook call decided, when the backend answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<V> {
    /// Accepted (with what the answer carried).
    Allow(V),
    /// Refused by the backend.
    Deny,
}

/// A call that got no usable answer (counted and logged already): refuse, do not cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No answer within `--hook-timeout`.
    Timeout,
    /// Connection refused or reset, an unexpected status, a body that does not parse.
    Error,
}

/// The client pool and the settings both hooks share.
pub struct HookClient {
    http: reqwest::Client,
    headers: HeaderMap,
    forward: Vec<HeaderName>,
    logs: LogLimiter,
}

impl std::fmt::Debug for HookClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header names only: the values are secrets.
        f.debug_struct("HookClient")
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("forward", &self.forward)
            .finish()
    }
}

/// `${VAR}` replaced by the environment variable `VAR` (an unset one is an error naming it).
fn expand(value: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, HookError> {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| HookError::Header("unclosed ${ in a value".into()))?;
        let name = &after[..end];
        let var = env(name).ok_or_else(|| {
            HookError::Header(format!("environment variable {name:?} is not set"))
        })?;
        out.push_str(&var);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn header_line(
    line: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(HeaderName, HeaderValue), HookError> {
    let (name, value) = line
        .split_once(':')
        .ok_or_else(|| HookError::Header("expected `Name: value`".into()))?;
    let name = HeaderName::try_from(name.trim())
        .map_err(|_| HookError::Header(format!("{:?} is not a header name", name.trim())))?;
    let mut value = HeaderValue::try_from(expand(value.trim(), env)?)
        .map_err(|_| HookError::Header(format!("the value of {name} is not a header value")))?;
    value.set_sensitive(true);
    Ok((name, value))
}

/// The certificates of a PEM file (at least one).
fn ca_certificates(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, HookError> {
    let ca = |why: String| HookError::Ca {
        path: path.display().to_string(),
        why,
    };
    let pem = std::fs::read(path).map_err(|e| ca(e.to_string()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ca(e.to_string()))?;
    if certs.is_empty() {
        return Err(ca("no PEM certificate in it".into()));
    }
    Ok(certs)
}

impl HookClient {
    /// The shared client for `settings`.
    pub fn new(settings: &HookSettings) -> Result<Arc<Self>, HookError> {
        let mut headers = HeaderMap::new();
        for line in &settings.headers {
            let (name, value) = header_line(line, &|name| std::env::var(name).ok())?;
            headers.append(name, value);
        }
        let forward = settings
            .forward
            .iter()
            .map(|n| HeaderName::try_from(n.trim()).map_err(|_| HookError::Forward(n.clone())))
            .collect::<Result<_, _>>()?;
        let mut builder = reqwest::Client::builder();
        if let Some(path) = &settings.ca_file {
            for cert in ca_certificates(path)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .http1_only()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| HookError::Client(e.to_string()))?;
        Ok(Arc::new(Self {
            http,
            headers,
            forward,
            logs: LogLimiter::new(Duration::from_secs(10)),
        }))
    }

    /// The handshake headers to forward, out of `handshake`.
    pub fn forwarded(&self, handshake: &HeaderMap) -> Forwarded {
        let picked: Vec<_> = self
            .forward
            .iter()
            .flat_map(|name| {
                handshake.get_all(name).iter().map(|v| {
                    let mut v = v.clone();
                    v.set_sensitive(true);
                    (name.clone(), v)
                })
            })
            .collect();
        Forwarded(picked.into())
    }

    /// `POST url` with `body` as JSON. A 2xx body parsed as `T` is passed to `decide`; a
    /// status in `refusals` denies; anything else fails. Counted under `hook` either way.
    pub async fn call<T, V>(
        &self,
        hook: Hook,
        url: &str,
        body: &impl Serialize,
        forwarded: &Forwarded,
        refusals: &[StatusCode],
        decide: impl FnOnce(T) -> Verdict<V>,
    ) -> Result<Verdict<V>, Failure>
    where
        T: DeserializeOwned,
    {
        let started = Instant::now();
        let outcome = self.post(url, body, forwarded).await;
        let verdict = match outcome {
            Ok((status, bytes)) if status.is_success() => serde_json::from_slice::<T>(&bytes)
                .map(decide)
                .map_err(|e| (Failure::Error, "body", e.to_string())),
            Ok((status, _)) if refusals.contains(&status) => Ok(Verdict::Deny),
            Ok((status, _)) => Err((Failure::Error, "status", format!("status {status}"))),
            Err(e) if e.is_timeout() => Err((Failure::Timeout, "timeout", chain(&e))),
            Err(e) => Err((Failure::Error, "request", chain(&e))),
        };
        let result = match &verdict {
            Ok(Verdict::Allow(_)) => HookResult::Allow,
            Ok(Verdict::Deny) => HookResult::Deny,
            Err((Failure::Timeout, ..)) => HookResult::Timeout,
            Err((Failure::Error, ..)) => HookResult::Error,
        };
        telemetry::hook_call(hook, result, started.elapsed().as_secs_f64());
        verdict.map_err(|(failure, kind, error)| {
            self.warn(hook, kind, &error);
            failure
        })
    }

    async fn post(
        &self,
        url: &str,
        body: &impl Serialize,
        forwarded: &Forwarded,
    ) -> Result<(StatusCode, bytes::Bytes), reqwest::Error> {
        let mut headers = self.headers.clone();
        for (name, value) in forwarded.0.iter() {
            headers.append(name.clone(), value.clone());
        }
        let body = serde_json::to_vec(body).unwrap_or_default();
        let response = self
            .http
            .post(url)
            .headers(headers)
            .header(::http::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await?;
        let status = response.status();
        Ok((status, response.bytes().await?))
    }

    fn warn(&self, hook: Hook, kind: &'static str, error: &str) {
        let key = match (hook, kind) {
            (Hook::Auth, "timeout") => "auth timeout",
            (Hook::Auth, "status") => "auth status",
            (Hook::Auth, "body") => "auth body",
            (Hook::Auth, _) => "auth request",
            (Hook::Authz, "timeout") => "authz timeout",
            (Hook::Authz, "status") => "authz status",
            (Hook::Authz, "body") => "authz body",
            (Hook::Authz, _) => "authz request",
        };
        if let Some(held) = self.logs.allow(key) {
            tracing::warn!(
                hook = hook.as_str(),
                kind,
                error,
                suppressed = held,
                "HTTP hook call failed; refusing"
            );
        }
    }
}

/// An error and its causes, without the URL (which may carry credentials).
fn chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "KEY").then(|| "s3cret".to_owned())
    }

    #[test]
    fn header_values_expand_variables_and_are_sensitive() {
        let (name, value) = header_line("X-Gateway-Key: k-${KEY}", &env).unwrap();
        assert_eq!(name, "x-gateway-key");
        assert_eq!(value, "k-s3cret");
        assert!(value.is_sensitive());
        let e = header_line("X: ${UNSET}", &env).unwrap_err();
        assert!(e.to_string().contains("UNSET"), "{e}");
        assert!(!e.to_string().contains("s3cret"), "{e}");
        assert!(header_line("no colon", &env).is_err());
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused_by_name() {
        let dir = std::env::temp_dir().join(format!("wsgate-hook-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("empty.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        for p in [path.clone(), dir.join("missing.pem")] {
            let e = HookClient::new(&HookSettings {
                timeout: Duration::from_secs(1),
                headers: vec![],
                forward: vec![],
                ca_file: Some(p),
            })
            .expect_err("refused");
            assert!(e.to_string().starts_with("--hook-ca-file"), "{e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn debug_shows_no_values() {
        let client = HookClient::new(&HookSettings {
            timeout: Duration::from_secs(1),
            headers: vec!["X-Key: s3cret".into()],
            forward: vec!["Cookie".into()],
            ca_file: None,
        })
        .unwrap();
        let mut handshake = HeaderMap::new();
        handshake.insert("cookie", HeaderValue::from_static("session=abc"));
        let shown = format!("{client:?} {:?}", client.forwarded(&handshake));
        assert!(
            !shown.contains("s3cret") && !shown.contains("abc"),
            "{shown}"
        );
    }
}
