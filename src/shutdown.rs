//! The replica's life after SIGTERM, as one small value shared by everything that must
//! change its behaviour when the replica starts draining: readiness (`/readyz` false at
//! once), the HTTP layer and the connect middleware (new clients refused), and the drain
//! task (existing clients closed in batches). "How does this stop" always has this answer.

use std::sync::Arc;

use tokio::sync::watch;

/// Whether the replica is draining, shared by cloning. Draining only ever starts; it is
/// never undone.
#[derive(Debug, Clone)]
pub struct Shutdown {
    draining: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A replica that is serving.
    pub fn new() -> Self {
        Self {
            draining: Arc::new(watch::Sender::new(false)),
        }
    }

    /// Start draining; returns `false` when it had already started.
    pub fn begin(&self) -> bool {
        let first = self
            .draining
            .send_if_modified(|d| !std::mem::replace(d, true));
        if first {
            metrics::gauge!("wsgate_draining").set(1.0);
        }
        first
    }

    /// Whether draining has started: new clients must be refused.
    pub fn is_draining(&self) -> bool {
        *self.draining.borrow()
    }

    /// Completes once draining has started (at once if it already has).
    pub async fn draining(&self) {
        let mut rx = self.draining.subscribe();
        // Cannot fail: the sender lives in `self`.
        let _ = rx.wait_for(|d| *d).await;
    }
}

/// Completes on the first SIGTERM or SIGINT.
pub async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn draining_starts_once_and_wakes_waiters() {
        let s = Shutdown::new();
        assert!(!s.is_draining());
        let waiter = tokio::spawn({
            let s = s.clone();
            async move { s.draining().await }
        });
        assert!(s.begin());
        assert!(!s.begin());
        assert!(s.is_draining());
        tokio::time::timeout(std::time::Duration::from_secs(1), waiter)
            .await
            .expect("waiter woke")
            .expect("waiter ran");
    }
}
