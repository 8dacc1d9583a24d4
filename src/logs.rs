//! Log lines that cannot flood: a bad message, a failing lookup or a lost connection may
//! repeat thousands of times a second, and each should cost a counter increment, not a line.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

/// Logs at most one line per kind per interval, with the count of what it held back, so a
/// flood of bad messages costs a counter increment each, not a log line each.
#[derive(Debug)]
pub struct LogLimiter {
    interval: Duration,
    last: Mutex<HashMap<&'static str, (Instant, u64)>>,
}

impl LogLimiter {
    /// A limiter allowing one line per kind per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// Returns `Some(suppressed)` when a line for `kind` may be logged now.
    pub fn allow(&self, kind: &'static str) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        match last.get_mut(kind) {
            Some((at, held)) if now.duration_since(*at) < self.interval => {
                *held += 1;
                None
            }
            Some((at, held)) => {
                let n = *held;
                *at = now;
                *held = 0;
                Some(n)
            }
            None => {
                last.insert(kind, (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_holds_back_repeats() {
        let l = LogLimiter::new(Duration::from_secs(60));
        assert_eq!(l.allow("a"), Some(0));
        assert_eq!(l.allow("a"), None);
        assert_eq!(l.allow("b"), Some(0));
    }
}
