//! Permissions carried by the credential itself: the JWT projects claim (default
//! `projects`, a list of project ids). No lookup at all; a token without the claim may
//! join nothing. Losing a project takes a new token (or a revocation, which removes the
//! sockets from the room; a re-join with the same token is admitted again).

use futures_util::future::BoxFuture;

use super::{Authorizer, answer};
use crate::auth::Identity;

/// Reads [`Identity::projects`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ClaimPermissions;

impl Authorizer for ClaimPermissions {
    fn may_join<'a>(&'a self, identity: &'a Identity, project_id: &'a str) -> BoxFuture<'a, bool> {
        answer(
            identity
                .projects
                .as_ref()
                .is_some_and(|ps| ps.contains(project_id)),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::HashSet, sync::Arc};

    use futures_util::FutureExt;

    use super::*;

    #[test]
    fn only_the_claimed_projects() {
        let mut id = Identity::new("u");
        let may = |id: &Identity, p: &str| ClaimPermissions.may_join(id, p).now_or_never();
        assert_eq!(may(&id, "a"), Some(false));
        id.projects = Some(Arc::new(HashSet::from(["a".to_owned()])));
        assert_eq!(may(&id, "a"), Some(true));
        assert_eq!(may(&id, "b"), Some(false));
    }
}
