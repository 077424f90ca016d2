//! The retry policy of deliveries (webhooks, replication copies): a
//! bounded number of attempts with exponential backoff between them, which
//! the outbox (`outbox`) applies, and a timeout per attempt on the
//! platform's clock ([`Background::sleep`]).

use std::future::Future;
use std::time::Duration;

use futures::future::{select, Either};

use crate::platform::Background;

/// The wait after the first failed attempt; it doubles after each one.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5 * 60);
/// Attempts when the configuration says nothing (about half an hour of a
/// receiver down: 1 s, 2 s, ... 256 s, then every 5 min), and at most.
pub const DEFAULT_ATTEMPTS: u32 = 15;
pub const MAX_ATTEMPTS: u32 = 100;

pub fn default_attempts() -> u32 {
    DEFAULT_ATTEMPTS
}

/// Checks a configured number of attempts.
pub fn check_attempts(attempts: u32) -> Result<u32, String> {
    if (1..=MAX_ATTEMPTS).contains(&attempts) {
        Ok(attempts)
    } else {
        Err(format!("attempts = {attempts} must be between 1 and {MAX_ATTEMPTS}"))
    }
}

/// The wait after failed attempt number `failed` (1-based).
pub fn backoff(failed: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1u32.checked_shl(failed.saturating_sub(1)).unwrap_or(u32::MAX))
        .min(MAX_BACKOFF)
}

/// `work`, or an error once `limit` has passed.
pub async fn within<T, Fut>(background: &dyn Background, limit: Duration, work: Fut) -> Result<T, String>
where
    Fut: Future<Output = Result<T, String>>,
{
    let work = std::pin::pin!(work);
    match select(work, background.sleep(limit)).await {
        Either::Left((result, _)) => result,
        Either::Right(((), _)) => Err(format!("no answer within {limit:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let waits: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256]);
        assert_eq!(backoff(10), MAX_BACKOFF);
        assert_eq!(backoff(100), MAX_BACKOFF);
    }

    #[test]
    fn attempts_are_bounded() {
        assert!(check_attempts(0).is_err());
        assert!(check_attempts(MAX_ATTEMPTS + 1).is_err());
        assert_eq!(check_attempts(3), Ok(3));
    }
}
