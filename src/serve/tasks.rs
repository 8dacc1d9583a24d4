//! The replica's background tasks (delivery, eviction, the backplane's subscriber, the
//! readiness gauge, the demo push), kept in one place. None of them may end while the
//! replica runs: a replica whose delivery task panicked would stay ready and accept
//! clients it never delivers to. So an end is noticed at once, fails readiness, and makes
//! `serve` exit non-zero with a log line naming the task.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, OnceLock},
    time::Duration,
};

use tokio::task::{Id, JoinSet};

/// The supervised tasks of one replica.
#[derive(Debug, Default)]
pub struct Tasks {
    set: JoinSet<()>,
    names: HashMap<Id, &'static str>,
    failed: Failed,
    /// The test hook of `--fail-task`: which task panics, and when.
    fault: Option<(String, Duration)>,
}

/// Set once a task ended; read by readiness.
#[derive(Debug, Default, Clone)]
pub struct Failed(Arc<OnceLock<&'static str>>);

impl Failed {
    /// The task that ended, if one did.
    pub fn task(&self) -> Option<&'static str> {
        self.0.get().copied()
    }
}

impl Tasks {
    /// No tasks yet; `fault` is `--fail-task` (a test hook).
    pub fn new(fault: Option<(String, Duration)>) -> Self {
        Self {
            fault,
            ..Self::default()
        }
    }

    /// Run `task` under the name `name`.
    pub fn spawn(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        let id = match self.fault.take_if(|(n, _)| n == name) {
            Some((_, after)) => self.set.spawn(async move {
                tokio::select! {
                    () = task => {}
                    () = tokio::time::sleep(after) => panic!("--fail-task {name}: test hook"),
                }
            }),
            None => self.set.spawn(task),
        }
        .id();
        self.names.insert(id, name);
    }

    /// What readiness checks.
    pub fn failed(&self) -> Failed {
        self.failed.clone()
    }

    /// Wait until a task ends (it never should), mark the replica failed and return the
    /// task's name and how it ended. Pending forever when there is no task.
    pub async fn ended(&mut self) -> (&'static str, String) {
        let Some(end) = self.set.join_next_with_id().await else {
            return std::future::pending().await;
        };
        let (id, how) = match end {
            Ok((id, ())) => (id, "returned".to_owned()),
            Err(e) => (e.id(), e.to_string()),
        };
        let name = self.names.get(&id).copied().unwrap_or("unknown");
        let _ = self.failed.0.set(name);
        (name, how)
    }
}
