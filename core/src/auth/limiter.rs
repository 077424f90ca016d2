//! Failed logins per client: after `limit` failures within a window, a
//! client's logins are refused (429) until the window ends, before any
//! password is hashed, so guessing costs the guesser time and us no CPU.
//!
//! An attempt is counted when it starts, in the same step as the check, and
//! forgiven only when it succeeds: parallel guesses cannot all pass the check
//! before the first of them is recorded. A client is keyed by its IPv4
//! address or its IPv6 /64 (one subscriber's prefix: every address in it
//! shares one count). The table holds at most [`MAX_TRACKED_CLIENTS`]
//! clients; past that, the oldest window goes.
//!
//! The counts live in this process (on the edge: this isolate). That is
//! exact for one native server and best effort for several instances or
//! isolates, which each count on their own.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Clients tracked at most; past it, the entry with the oldest window goes.
const MAX_TRACKED_CLIENTS: usize = 10_000;
/// Longest client text kept as a key (one that is no IP address).
const MAX_CLIENT_KEY_CHARS: usize = 64;

struct Window {
    started_ms: u64,
    /// Attempts that failed, or have not finished yet.
    attempts: u32,
}

pub struct FailedLogins {
    limit: u32,
    window_ms: u64,
    clients: Mutex<HashMap<String, Window>>,
}

/// One counted login attempt. It stays counted (as a failure) unless
/// [`Attempt::succeeded`] forgives it: an attempt abandoned midway (the
/// client went away during the password check) counts as failed.
pub struct Attempt<'a> {
    limiter: &'a FailedLogins,
    key: String,
    window_started_ms: u64,
}

impl Attempt<'_> {
    /// The login succeeded: it does not count against the client.
    pub fn succeeded(self) {
        let mut clients = self.limiter.lock();
        if let Some(window) = clients.get_mut(&self.key) {
            if window.started_ms == self.window_started_ms {
                window.attempts = window.attempts.saturating_sub(1);
            }
        }
    }
}

impl FailedLogins {
    pub fn new(limit: u32, window_secs: u64) -> FailedLogins {
        FailedLogins {
            limit,
            window_ms: window_secs.saturating_mul(1000),
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Window>> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks and counts a login attempt of `client` in one step.
    /// `Err(seconds until the client may try again)` while it is blocked:
    /// `limit` attempts of its window failed or are still being checked.
    pub fn attempt(&self, client: &str, now_ms: u64) -> Result<Attempt<'_>, u64> {
        let key = client_key(client);
        let mut clients = self.lock();
        if !clients.contains_key(&key) && clients.len() >= MAX_TRACKED_CLIENTS {
            self.make_room(&mut clients, now_ms);
        }
        let window = clients.entry(key.clone()).or_insert(Window {
            started_ms: now_ms,
            attempts: 0,
        });
        if now_ms >= window.started_ms.saturating_add(self.window_ms) {
            *window = Window {
                started_ms: now_ms,
                attempts: 0,
            };
        }
        if window.attempts >= self.limit {
            let ends_ms = window.started_ms.saturating_add(self.window_ms);
            return Err((ends_ms - now_ms).div_ceil(1000));
        }
        window.attempts += 1;
        Ok(Attempt {
            limiter: self,
            key,
            window_started_ms: window.started_ms,
        })
    }

    /// Drops the windows that have ended, and if none has, the oldest one.
    fn make_room(&self, clients: &mut HashMap<String, Window>, now_ms: u64) {
        let window_ms = self.window_ms;
        clients.retain(|_, w| now_ms < w.started_ms.saturating_add(window_ms));
        if clients.len() >= MAX_TRACKED_CLIENTS {
            let oldest = clients
                .iter()
                .min_by_key(|(_, w)| w.started_ms)
                .map(|(key, _)| key.clone());
            if let Some(oldest) = oldest {
                clients.remove(&oldest);
            }
        }
    }
}

/// Whom a client's attempts count against: an IPv4 address as it is, an
/// IPv6 address by its /64 (a subscriber's prefix holds 2^64 addresses),
/// anything else by its (bounded) text.
fn client_key(client: &str) -> String {
    match client.trim().parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                format!("{}/64", std::net::Ipv6Addr::from(prefix))
            }
        },
        Err(_) => client.chars().take(MAX_CLIENT_KEY_CHARS).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(limiter: &FailedLogins, client: &str, now_ms: u64) {
        drop(limiter.attempt(client, now_ms).expect("not blocked"));
    }

    #[test]
    fn a_client_is_blocked_after_the_limit_until_its_window_ends() {
        let limiter = FailedLogins::new(3, 60);
        for _ in 0..3 {
            fail(&limiter, "10.0.0.1", 1_000);
        }
        assert_eq!(limiter.attempt("10.0.0.1", 1_000).err(), Some(60));
        assert_eq!(limiter.attempt("10.0.0.1", 30_500).err(), Some(31));
        assert!(
            limiter.attempt("10.0.0.2", 1_000).is_ok(),
            "other clients are not affected"
        );
        fail(&limiter, "10.0.0.1", 61_000);
        assert!(
            limiter.attempt("10.0.0.1", 61_000).is_ok(),
            "a new window starts from zero"
        );
    }

    #[test]
    fn successes_are_forgiven_and_attempts_in_flight_count() {
        let limiter = FailedLogins::new(2, 60);
        for _ in 0..5 {
            limiter.attempt("10.0.0.1", 0).unwrap().succeeded();
        }
        let first = limiter.attempt("10.0.0.1", 0).unwrap();
        let _second = limiter.attempt("10.0.0.1", 0).unwrap();
        assert!(
            limiter.attempt("10.0.0.1", 0).is_err(),
            "two attempts in flight fill a limit of two"
        );
        first.succeeded();
        assert!(limiter.attempt("10.0.0.1", 0).is_ok(), "a success frees its place");
    }

    #[test]
    fn ipv6_clients_count_by_their_64_prefix() {
        assert_eq!(client_key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(client_key("2001:db8:1:2:ffff:ffff:ffff:ffff"), "2001:db8:1:2::/64");
        assert_eq!(client_key("2001:db8:1:3::1"), "2001:db8:1:3::/64");
        assert_eq!(client_key("::ffff:10.0.0.1"), "10.0.0.1");
        assert_eq!(client_key("10.0.0.1"), "10.0.0.1");
        assert_eq!(client_key(&"x".repeat(1000)).len(), MAX_CLIENT_KEY_CHARS);
        let limiter = FailedLogins::new(2, 60);
        fail(&limiter, "2001:db8::1", 0);
        fail(&limiter, "2001:db8::2", 0);
        assert!(limiter.attempt("2001:db8::ffff", 0).is_err());
        assert!(
            limiter.attempt("2001:db8:0:1::1", 0).is_ok(),
            "the next /64 is another client"
        );
    }

    #[test]
    fn the_table_stays_bounded_and_drops_the_oldest_window() {
        let limiter = FailedLogins::new(1, 3600);
        for i in 0..MAX_TRACKED_CLIENTS as u64 + 10 {
            fail(&limiter, &format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255), i);
        }
        let clients = limiter.lock();
        assert_eq!(clients.len(), MAX_TRACKED_CLIENTS);
        assert!(!clients.contains_key("10.0.0.0"), "the oldest went first");
        assert!(clients.contains_key("10.0.39.25"), "the newest stays");
    }
}
