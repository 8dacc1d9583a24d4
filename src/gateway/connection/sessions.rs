//! Who is connected here, by user: the per-user connection limit, and the index that a
//! revocation uses to find a user's sockets without scanning every socket.

use std::{
    collections::{HashMap, HashSet},
    num::NonZeroUsize,
    sync::{Arc, Mutex, PoisonError},
};

use socketioxide::socket::Sid;

/// Limits per identity (absent: no limit).
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// Concurrent connections of one user on this replica.
    pub connections_per_user: Option<NonZeroUsize>,
    /// Rooms one socket may be in.
    pub rooms_per_socket: Option<NonZeroUsize>,
}

/// The sockets of each connected user.
#[derive(Debug, Default)]
pub struct Sessions {
    limits: Limits,
    by_user: Mutex<HashMap<Arc<str>, HashSet<Sid>>>,
}

impl Sessions {
    /// An empty registry enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            by_user: Mutex::default(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, HashSet<Sid>>> {
        self.by_user.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Record a new socket of `user`; `false` (nothing recorded) when the user already has
    /// the most connections allowed.
    pub fn try_add(&self, user: &Arc<str>, sid: Sid) -> bool {
        let mut map = self.map();
        let sids = map.entry(user.clone()).or_default();
        if let Some(max) = self.limits.connections_per_user
            && sids.len() >= max.get()
        {
            if sids.is_empty() {
                map.remove(user);
            }
            return false;
        }
        sids.insert(sid);
        true
    }

    /// Forget a socket of `user` (on disconnect).
    pub fn remove(&self, user: &str, sid: Sid) {
        let mut map = self.map();
        if let Some(sids) = map.get_mut(user) {
            sids.remove(&sid);
            if sids.is_empty() {
                map.remove(user);
            }
        }
    }

    /// The sockets of `user` on this replica.
    pub fn of(&self, user: &str) -> Vec<Sid> {
        self.map()
            .get(user)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_user_limit_and_index() {
        let s = Sessions::new(Limits {
            connections_per_user: NonZeroUsize::new(2),
            rooms_per_socket: None,
        });
        let u: Arc<str> = "u".into();
        let (a, b, c) = (Sid::new(), Sid::new(), Sid::new());
        assert!(s.try_add(&u, a));
        assert!(s.try_add(&u, b));
        assert!(!s.try_add(&u, c));
        assert!(s.try_add(&"v".into(), c));
        s.remove("u", a);
        assert_eq!(s.of("u"), vec![b]);
        assert!(s.try_add(&u, c));
        s.remove("u", b);
        s.remove("u", c);
        assert!(s.of("u").is_empty());
    }
}
