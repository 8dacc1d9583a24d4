//! `--auth http`: the application says who a token belongs to. At a handshake the gateway
//! `POST`s `{"token": "..."}` to `--auth-url`; `2xx {"user": "<id>"}` accepts (optional
//! `"exp"`, Unix seconds, enforced on the live socket as for a JWT, and `"projects"`, for
//! `--authz claim`); `401` / `403` refuse; anything else refuses too and is counted as a
//! hook error (see [`crate::hook`]).
//!
//! Answers (acceptances and refusals, never failures) are cached per replica by the
//! SHA-256 digest of the token, so the token itself is kept nowhere; concurrent
//! handshakes with one token share one call.

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures_util::future::{BoxFuture, FutureExt};
use moka::future::Cache;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{AuthError, Authenticator, Credentials, Forwarded, Identity};
use crate::{
    clock::now_ms,
    hook::{Failure, HookClient, Verdict},
    telemetry::{self, Hook},
};

/// What the backend answers to an accepted token.
#[derive(Debug, Deserialize)]
struct Accepted {
    user: String,
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default)]
    projects: Option<Vec<String>>,
}

/// The HTTP identity source and its cache (`None`: the backend refused the token).
pub struct HttpAuthenticator {
    client: Arc<HookClient>,
    url: String,
    cache: Cache<[u8; 32], Option<Identity>>,
    /// Bumped by every [`Authenticator::invalidate`]: an answer asked for before a bump is
    /// used once but not kept (it may predate the revocation).
    generation: AtomicU64,
}

impl std::fmt::Debug for HttpAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpAuthenticator")
            .field("url", &self.url)
            .finish()
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl HttpAuthenticator {
    /// A source asking `url` through `client`, caching up to `capacity` answers for `ttl`.
    pub fn new(client: Arc<HookClient>, url: &str, ttl: Duration, capacity: u64) -> Self {
        Self {
            client,
            url: url.to_owned(),
            cache: Cache::builder()
                .time_to_live(ttl)
                .max_capacity(capacity)
                .support_invalidation_closures()
                .build(),
            generation: AtomicU64::new(0),
        }
    }

    async fn ask(&self, token: &str, forwarded: &Forwarded) -> Result<Option<Identity>, Failure> {
        let body = serde_json::json!({ "token": token });
        let refusals = [
            ::http::StatusCode::UNAUTHORIZED,
            ::http::StatusCode::FORBIDDEN,
        ];
        let verdict = self
            .client
            .call(
                Hook::Auth,
                &self.url,
                &body,
                forwarded,
                &refusals,
                |a: Accepted| {
                    if a.user.is_empty() {
                        return Verdict::Deny;
                    }
                    Verdict::Allow(Identity {
                        user_id: a.user.into(),
                        expires_at: a.exp,
                        projects: a
                            .projects
                            .map(|p| Arc::new(p.into_iter().collect::<HashSet<_>>())),
                        forwarded: Forwarded::default(),
                    })
                },
            )
            .await?;
        Ok(match verdict {
            Verdict::Allow(identity) => Some(identity),
            Verdict::Deny => None,
        })
    }

    /// One token's identity: from the cache, or from the backend (one call for concurrent
    /// identical lookups).
    async fn resolve(&self, token: &str, forwarded: &Forwarded) -> Result<Identity, AuthError> {
        let generation = self.generation.load(Ordering::Acquire);
        let key = digest(token);
        let entry = self
            .cache
            .entry(key)
            .or_try_insert_with(self.ask(token, forwarded))
            .await
            .map_err(|_| AuthError::HookFailed)?;
        if !entry.is_fresh() {
            telemetry::hook_cache_hit(Hook::Auth);
        } else if self.generation.load(Ordering::Acquire) != generation {
            // A revocation came while the backend was asked: do not keep the answer.
            self.cache.invalidate(&key).await;
        }
        let identity = entry.into_value().ok_or(AuthError::Unknown)?;
        admit(identity, forwarded)
    }
}

/// A cached or fresh identity, refused once past its `exp`, with this handshake's headers.
fn admit(mut identity: Identity, forwarded: &Forwarded) -> Result<Identity, AuthError> {
    if identity
        .expires_at
        .is_some_and(|exp| exp * 1000 <= now_ms())
    {
        return Err(AuthError::Expired);
    }
    identity.forwarded = forwarded.clone();
    Ok(identity)
}

/// The first acceptance among the tokens, else the first refusal (`Missing` if none).
async fn first_accepted<'a, F, Fut>(
    credentials: &Credentials<'a>,
    mut one: F,
) -> Result<Identity, AuthError>
where
    F: FnMut(&'a str) -> Fut,
    Fut: std::future::Future<Output = Result<Identity, AuthError>>,
{
    let mut first_error = None;
    for token in credentials.tokens() {
        match one(token).await {
            Ok(identity) => return Ok(identity),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.unwrap_or(AuthError::Missing))
}

impl Authenticator for HttpAuthenticator {
    /// From the cache only (for callers that cannot wait; `auth_refresh` and handshakes use
    /// `authenticate_handshake`): a token the backend has not answered for recently is
    /// refused.
    fn authenticate(&self, credentials: &Credentials<'_>) -> Result<Identity, AuthError> {
        let cached = |token: &str| {
            let hit = self.cache.get(&digest(token)).now_or_never().flatten();
            async move {
                let answer = hit.ok_or(AuthError::Unknown)?;
                telemetry::hook_cache_hit(Hook::Auth);
                admit(answer.ok_or(AuthError::Unknown)?, &Forwarded::default())
            }
        };
        first_accepted(credentials, cached)
            .now_or_never()
            .unwrap_or(Err(AuthError::Unknown))
    }

    fn authenticate_handshake<'a>(
        &'a self,
        credentials: Credentials<'a>,
        handshake: &'a ::http::HeaderMap,
    ) -> BoxFuture<'a, Result<Identity, AuthError>> {
        async move {
            let forwarded = self.client.forwarded(handshake);
            let forwarded = &forwarded;
            first_accepted(&credentials, |token| self.resolve(token, forwarded)).await
        }
        .boxed()
    }

    fn invalidate(&self, user_id: &str) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        let user: Arc<str> = user_id.into();
        // Only fails if the cache was built without closures, which `new` enables.
        let _ = self.cache.invalidate_entries_if(move |_, answer| {
            answer.as_ref().is_some_and(|id| id.user_id == user)
        });
    }
}
