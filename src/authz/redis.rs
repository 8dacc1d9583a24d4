//! Permissions in Redis: one set of project ids per user, under a key template (default
//! `wsgate:perm:{user}`), cached per replica with a TTL and a size bound so that a join
//! costs no Redis round trip while the cache is warm.
//!
//! Revocation calls [`Authorizer::invalidate`]. A lookup that was in flight when an
//! invalidation happened may have read the set before the change, so it must not refill
//! the cache: every invalidation bumps a generation, and a lookup stores its answer only if
//! the generation is the one it started with (checked and stored under the same lock that
//! the invalidation takes). The gateway re-checks such a join itself (see
//! `gateway::revoke`).

use std::{
    collections::HashSet,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use futures_util::future::{BoxFuture, FutureExt};
use moka::sync::Cache;
use redis::AsyncCommands;

use super::{Authorizer, answer};
use crate::{
    auth::Identity,
    backplane::{connect::Connector, pool},
    logs::LogLimiter,
    telemetry::AuthzLookup,
};

/// How long one Redis lookup may take before the join is denied.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// The placeholder of the key template.
pub const USER_PLACEHOLDER: &str = "{user}";

/// Why the Redis permission source cannot start.
#[derive(Debug, thiserror::Error)]
pub enum RedisPermissionsError {
    /// The template has no `{user}`.
    #[error("--perm-key-template / WSGATE_PERM_KEY_TEMPLATE: {0:?} has no {{user}} placeholder")]
    Template(String),
    /// The pool cannot be built from the URL.
    #[error("--redis-url / WSGATE_REDIS_URL: {0}")]
    Pool(String),
    /// The Redis settings (URL, TLS files, sentinels) are not usable.
    #[error(transparent)]
    Connect(#[from] crate::backplane::connect::ConnectError),
}

/// The Redis permission source and its cache.
pub struct RedisPermissions {
    pool: crate::backplane::pool::Pool,
    template: String,
    cache: Cache<Arc<str>, Arc<HashSet<String>>>,
    generation: Mutex<u64>,
    logs: LogLimiter,
}

impl std::fmt::Debug for RedisPermissions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPermissions")
            .field("template", &self.template)
            .finish()
    }
}

impl RedisPermissions {
    /// A source reading `template` (with `{user}`) in the Redis `connector` reaches,
    /// caching up to `capacity` users for `ttl` each.
    pub fn new(
        connector: &Connector,
        template: &str,
        ttl: Duration,
        capacity: u64,
    ) -> Result<Self, RedisPermissionsError> {
        if !template.contains(USER_PLACEHOLDER) {
            return Err(RedisPermissionsError::Template(template.to_owned()));
        }
        let pool = pool::pool(connector.clone(), 8, LOOKUP_TIMEOUT)
            .map_err(RedisPermissionsError::Pool)?;
        Ok(Self {
            pool,
            template: template.to_owned(),
            cache: Cache::builder()
                .time_to_live(ttl)
                .max_capacity(capacity)
                .build(),
            generation: Mutex::new(0),
            logs: LogLimiter::new(Duration::from_secs(10)),
        })
    }

    /// The Redis key of `user`'s set.
    pub fn key(&self, user: &str) -> String {
        self.template.replace(USER_PLACEHOLDER, user)
    }

    fn generation(&self) -> std::sync::MutexGuard<'_, u64> {
        self.generation
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    async fn fetch(&self, user: &str) -> Result<HashSet<String>, String> {
        let lookup = async {
            let mut conn = self.pool.get().await.map_err(|e| e.to_string())?;
            conn.smembers::<_, HashSet<String>>(self.key(user))
                .await
                .map_err(|e| e.to_string())
        };
        tokio::time::timeout(LOOKUP_TIMEOUT, lookup)
            .await
            .map_err(|_| "lookup timed out".to_owned())?
    }

    /// The user's projects: from the cache, or from Redis (then cached unless an
    /// invalidation happened meanwhile). `None` when Redis could not answer.
    pub async fn projects(&self, user: &Arc<str>) -> Option<Arc<HashSet<String>>> {
        if let Some(set) = self.cache.get(user) {
            AuthzLookup::Hit.count();
            return Some(set);
        }
        let started = *self.generation();
        match self.fetch(user).await {
            Ok(set) => {
                AuthzLookup::Miss.count();
                let set = Arc::new(set);
                let generation = self.generation();
                if *generation == started {
                    self.cache.insert(user.clone(), set.clone());
                }
                Some(set)
            }
            Err(e) => {
                AuthzLookup::Error.count();
                if let Some(held) = self.logs.allow("lookup") {
                    tracing::warn!(error = %e, suppressed = held, "permission lookup in Redis failed; denying");
                }
                None
            }
        }
    }
}

impl Authorizer for RedisPermissions {
    fn may_join<'a>(&'a self, identity: &'a Identity, project_id: &'a str) -> BoxFuture<'a, bool> {
        if let Some(set) = self.cache.get(&identity.user_id) {
            AuthzLookup::Hit.count();
            return answer(set.contains(project_id));
        }
        async move {
            self.projects(&identity.user_id)
                .await
                .is_some_and(|set| set.contains(project_id))
        }
        .boxed()
    }

    fn invalidate(&self, user_id: &str) {
        let mut generation = self.generation();
        *generation += 1;
        self.cache.invalidate(user_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_needs_the_placeholder() {
        let c = Connector::new("redis://127.0.0.1:1", &Default::default()).unwrap();
        let e = RedisPermissions::new(&c, "perm", Duration::from_secs(1), 10)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--perm-key-template"), "{e}");
        let p =
            RedisPermissions::new(&c, "wsgate:perm:{user}", Duration::from_secs(1), 10).unwrap();
        assert_eq!(p.key("alice"), "wsgate:perm:alice");
    }
}
