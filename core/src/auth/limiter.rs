//! Failed logins per client: after `limit` failures within a window, a
//! client's logins are refused (429) until the window ends, before any
//! password is hashed, so guessing costs the guesser time and us no CPU.
//!
//! The counts live in this process (on the edge: this isolate). That is
//! exact for one native server and best effort for several instances or
//! isolates, which each count on their own.

use std::collections::HashMap;
use std::sync::Mutex;

/// Clients tracked at most; past it, entries whose window has ended go.
const MAX_TRACKED_CLIENTS: usize = 10_000;

struct Window {
    started_ms: u64,
    failures: u32,
}

pub struct FailedLogins {
    limit: u32,
    window_ms: u64,
    clients: Mutex<HashMap<String, Window>>,
}

impl FailedLogins {
    pub fn new(limit: u32, window_secs: u64) -> FailedLogins {
        FailedLogins {
            limit,
            window_ms: window_secs * 1000,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(seconds until the client may try again)` while it is blocked.
    pub fn check(&self, client: &str, now_ms: u64) -> Result<(), u64> {
        let clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        match clients.get(client) {
            Some(w) if w.failures >= self.limit && now_ms < w.started_ms + self.window_ms => {
                Err((w.started_ms + self.window_ms - now_ms).div_ceil(1000))
            }
            _ => Ok(()),
        }
    }

    pub fn record_failure(&self, client: &str, now_ms: u64) {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if clients.len() >= MAX_TRACKED_CLIENTS && !clients.contains_key(client) {
            let window_ms = self.window_ms;
            clients.retain(|_, w| now_ms < w.started_ms + window_ms);
        }
        let window = clients.entry(client.to_string()).or_insert(Window {
            started_ms: now_ms,
            failures: 0,
        });
        if now_ms >= window.started_ms + self.window_ms {
            *window = Window {
                started_ms: now_ms,
                failures: 0,
            };
        }
        window.failures += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_is_blocked_after_the_limit_until_its_window_ends() {
        let limiter = FailedLogins::new(3, 60);
        for _ in 0..3 {
            assert_eq!(limiter.check("10.0.0.1", 1_000), Ok(()));
            limiter.record_failure("10.0.0.1", 1_000);
        }
        assert_eq!(limiter.check("10.0.0.1", 1_000), Err(60));
        assert_eq!(limiter.check("10.0.0.1", 30_500), Err(31));
        assert_eq!(
            limiter.check("10.0.0.2", 1_000),
            Ok(()),
            "other clients are not affected"
        );
        assert_eq!(limiter.check("10.0.0.1", 61_000), Ok(()));
        limiter.record_failure("10.0.0.1", 61_000);
        assert_eq!(
            limiter.check("10.0.0.1", 61_000),
            Ok(()),
            "a new window starts from zero"
        );
    }

    #[test]
    fn the_table_stays_bounded() {
        let limiter = FailedLogins::new(1, 1);
        for i in 0..MAX_TRACKED_CLIENTS + 10 {
            limiter.record_failure(&i.to_string(), i as u64 * 10);
        }
        assert!(limiter.clients.lock().unwrap().len() <= MAX_TRACKED_CLIENTS);
    }
}
