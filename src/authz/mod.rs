//! Authorization: may this identity see this project?
//!
//! A denied project and a project that does not exist get the same answer, so the gateway
//! never tells a client which project ids exist.

use std::{
    collections::{HashMap, HashSet},
    path::Path,
};

use crate::auth::{Identity, LoadError};

/// A source of permissions. Called on every join, so it must be cheap.
pub trait Authorizer: Send + Sync + 'static {
    /// Whether `identity` may join the room of `project_id`.
    fn may_join(&self, identity: &Identity, project_id: &str) -> bool;
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

    /// The demo permissions of DESIGN.md §1.
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
    fn may_join(&self, identity: &Identity, project_id: &str) -> bool {
        self.by_user
            .get(&*identity.user_id)
            .is_some_and(|ps| ps.contains(project_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> Identity {
        Identity { user_id: id.into() }
    }

    #[test]
    fn demo_permissions() {
        let t = PermissionTable::demo();
        assert!(t.may_join(&user("user_1"), "project_one"));
        assert!(!t.may_join(&user("user_1"), "project_two"));
        assert!(!t.may_join(&user("user_1"), "nope"));
        assert!(t.may_join(&user("user_2"), "project_three"));
        assert!(!t.may_join(&user("nobody"), "project_one"));
    }
}
