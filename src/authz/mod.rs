//! Authorization: may this identity see this project?
//!
//! A denied project and a project that does not exist get the same answer, so the gateway
//! never tells a client which project ids exist.

pub mod claim;
pub mod http;
pub mod redis;

use std::{
    collections::{HashMap, HashSet},
    path::Path,
};

use futures_util::future::{BoxFuture, FutureExt, ready};

use crate::auth::{Identity, LoadError};
pub use claim::ClaimPermissions;
pub use http::HttpPermissions;
pub use redis::RedisPermissions;

/// A source of permissions. Called on every join, so it must be cheap: sources that ask a
/// remote store answer from a local cache when they can (the future is then ready at once).
pub trait Authorizer: Send + Sync + 'static {
    /// Whether `identity` may join the room of `project_id`. A source that cannot answer
    /// (its store is down) denies.
    fn may_join<'a>(&'a self, identity: &'a Identity, project_id: &'a str) -> BoxFuture<'a, bool>;

    /// Forget what is cached about `user_id` (fleet-wide revocation): the next answer comes
    /// from the source of truth. Sources without a cache have nothing to do.
    fn invalidate(&self, _user_id: &str) {}
}

/// An answer known without waiting, as the future [`Authorizer::may_join`] returns.
pub(crate) fn answer(allowed: bool) -> BoxFuture<'static, bool> {
    ready(allowed).boxed()
}

/// A static `user id -> project ids` table: the demo default, or a file.
#[derive(Debug, Clone, Default)]
pub struct PermissionTable {
    by_user: HashMap<String, HashSet<String>>,
}

impl PermissionTable {
    /// Build a table from `user -> projects` pairs.
    pub fn new<I, U, P>(entries: I) -> Self
    where
        I: IntoIterator<Item = (U, P)>,
        U: Into<String>,
        P: IntoIterator,
        P::Item: Into<String>,
    {
        let by_user = entries
            .into_iter()
            .map(|(u, ps)| (u.into(), ps.into_iter().map(Into::into).collect()))
            .collect();
        Self { by_user }
    }

    /// The demo permissions (docs/client-contract.md, "Demo identities").
    pub fn demo() -> Self {
        Self::new([
            ("user_1", vec!["project_one"]),
            (
                "user_2",
                vec!["project_one", "project_two", "project_three"],
            ),
            ("user_3", vec!["project_three"]),
        ])
    }

    /// Load a JSON (`{"user": ["p1"]}`) or TOML (`user = ["p1"]`) file.
    pub fn from_file(path: &Path) -> Result<Self, LoadError> {
        let map: HashMap<String, Vec<String>> = crate::auth::load_map(
            "--permissions / WSGATE_PERMISSIONS",
            path,
            "a JSON object or TOML table mapping user id -> list of project ids",
        )?;
        Ok(Self::new(map))
    }
}

impl Authorizer for PermissionTable {
    fn may_join<'a>(&'a self, identity: &'a Identity, project_id: &'a str) -> BoxFuture<'a, bool> {
        answer(
            self.by_user
                .get(&*identity.user_id)
                .is_some_and(|ps| ps.contains(project_id)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> Identity {
        Identity::new(id)
    }

    fn may(t: &dyn Authorizer, u: &str, p: &str) -> bool {
        futures_util::FutureExt::now_or_never(t.may_join(&user(u), p)).unwrap_or(false)
    }

    #[test]
    fn demo_permissions() {
        let t = PermissionTable::demo();
        assert!(may(&t, "user_1", "project_one"));
        assert!(!may(&t, "user_1", "project_two"));
        assert!(!may(&t, "user_1", "nope"));
        assert!(may(&t, "user_2", "project_three"));
        assert!(!may(&t, "nobody", "project_one"));
    }
}
