//! `--authz http`: the application says who may see a project. At `join_project` the
//! gateway `POST`s `{"user": "<id>", "project": "<id>"}` to `--authz-url`; `2xx
//! {"allow": true}` allows; `{"allow": false}`, `403` and `404` deny; anything else denies
//! too (fail closed), is counted as a hook error and is not cached (see [`crate::hook`]).
//!
//! Answers are cached per replica by (user, project) for `--perm-cache-ttl`, and
//! concurrent identical lookups share one call. Revocation ([`Authorizer::invalidate`])
//! moves the user to a new generation, which is part of the cache key: the user's cached
//! answers, and those of calls still in flight (which may have read the backend before the
//! change), are never read again.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::future::{BoxFuture, FutureExt};
use moka::future::Cache;
use serde::Deserialize;

use super::Authorizer;
use crate::{
    auth::Identity,
    hook::{HookClient, Verdict},
    telemetry::{self, Hook},
};

/// What the backend answers.
#[derive(Debug, Deserialize)]
struct Answer {
    allow: bool,
}

/// The per-user generations of revocation. A user's entry is dropped once no cached
/// answer of an older generation can be alive (`keep`: the cache TTL plus the longest
/// call), so the map holds only recently revoked users.
#[derive(Debug)]
struct Generations {
    by_user: Mutex<HashMap<Arc<str>, (u64, Instant)>>,
    next: AtomicU64,
    keep: Duration,
}

/// How many revoked users are remembered before old entries are pruned.
const PRUNE_ABOVE: usize = 1024;

impl Generations {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, (u64, Instant)>> {
        self.by_user.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn of(&self, user: &str) -> u64 {
        self.lock().get(user).map_or(0, |(g, _)| *g)
    }

    fn bump(&self, user: &str) {
        let mut by_user = self.lock();
        if by_user.len() > PRUNE_ABOVE {
            let keep = self.keep;
            by_user.retain(|_, (_, at)| at.elapsed() < keep);
        }
        let next = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        by_user.insert(user.into(), (next, Instant::now()));
    }
}

/// The HTTP permission source and its cache: (user, project, generation) -> allowed.
pub struct HttpPermissions {
    client: Arc<HookClient>,
    url: String,
    cache: Cache<(Arc<str>, Arc<str>, u64), bool>,
    generations: Generations,
}

impl std::fmt::Debug for HttpPermissions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpPermissions")
            .field("url", &self.url)
            .finish()
    }
}

impl HttpPermissions {
    /// A source asking `url` through `client` (whose calls take at most `timeout`),
    /// caching up to `capacity` answers for `ttl`.
    pub fn new(
        client: Arc<HookClient>,
        url: &str,
        ttl: Duration,
        capacity: u64,
        timeout: Duration,
    ) -> Self {
        Self {
            client,
            url: url.to_owned(),
            cache: Cache::builder()
                .time_to_live(ttl)
                .max_capacity(capacity)
                .build(),
            generations: Generations {
                by_user: Mutex::new(HashMap::new()),
                next: AtomicU64::new(0),
                keep: ttl + timeout + Duration::from_secs(1),
            },
        }
    }

    async fn ask(&self, identity: &Identity, project: &str) -> Result<bool, crate::hook::Failure> {
        let body = serde_json::json!({ "user": &*identity.user_id, "project": project });
        let refusals = [::http::StatusCode::FORBIDDEN, ::http::StatusCode::NOT_FOUND];
        let verdict = self
            .client
            .call(
                Hook::Authz,
                &self.url,
                &body,
                &identity.forwarded,
                &refusals,
                |a: Answer| {
                    if a.allow {
                        Verdict::Allow(())
                    } else {
                        Verdict::Deny
                    }
                },
            )
            .await?;
        Ok(verdict == Verdict::Allow(()))
    }
}

impl Authorizer for HttpPermissions {
    fn may_join<'a>(&'a self, identity: &'a Identity, project_id: &'a str) -> BoxFuture<'a, bool> {
        async move {
            let generation = self.generations.of(&identity.user_id);
            let key = (identity.user_id.clone(), Arc::from(project_id), generation);
            match self
                .cache
                .entry(key)
                .or_try_insert_with(self.ask(identity, project_id))
                .await
            {
                Ok(entry) => {
                    if !entry.is_fresh() {
                        telemetry::hook_cache_hit(Hook::Authz);
                    }
                    entry.into_value()
                }
                // Fail closed; the failure is not cached.
                Err(_) => false,
            }
        }
        .boxed()
    }

    fn invalidate(&self, user_id: &str) {
        self.generations.bump(user_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocation_moves_only_that_user_on() {
        let g = Generations {
            by_user: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            keep: Duration::from_secs(60),
        };
        assert_eq!(g.of("alice"), 0);
        g.bump("alice");
        let first = g.of("alice");
        assert_ne!(first, 0);
        assert_eq!(g.of("bob"), 0);
        g.bump("alice");
        assert_ne!(g.of("alice"), first);
    }
}
