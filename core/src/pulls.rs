//! Last-pull times: when each manifest was last pulled, for retention by
//! pulls (`unpulled_for_days`) and for admins, without turning pulls into
//! writes.
//!
//! A pull records the time under `repos/<name>/_pulled/<alg>/<hex>` only
//! when this instance has not recorded it within the period: the process's
//! memory decides first (one map per native process or Worker isolate), then
//! on the Worker the location's [`LocalMarks`], so the isolates of one
//! Cloudflare location write once per period between them. N instances
//! write at most N times a period per manifest. The write is volatile (not
//! flushed on disk): a time lost to a power cut is only a period older.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;

use crate::digest::Digest;
use crate::layout;
use crate::names::RepoName;
use crate::platform::{Env, LocalMarks};
use crate::store::{read_small, PutMode, Store};

/// Manifests remembered per process before the oldest are forgotten (a
/// forgotten one is written again at its next pull, a period early at worst).
const REMEMBERED: usize = 65_536;

/// When this instance last recorded a pull of each manifest.
pub struct PullClock {
    period_ms: u64,
    recorded: Mutex<HashMap<String, u64>>,
}

impl PullClock {
    /// Records each manifest's pulls at most once per `period_secs`; 0
    /// records none.
    pub fn new(period_secs: u64) -> PullClock {
        PullClock {
            period_ms: period_secs.saturating_mul(1000),
            recorded: Mutex::new(HashMap::new()),
        }
    }

    /// Whether this process should record a pull of `key` now; if so it
    /// counts as recorded from `now`.
    fn due_here(&self, key: &str, now: u64) -> bool {
        let Ok(mut recorded) = self.recorded.lock() else {
            return false;
        };
        if recorded
            .get(key)
            .is_some_and(|&at| now.saturating_sub(at) < self.period_ms)
        {
            return false;
        }
        if recorded.len() >= REMEMBERED {
            let period = self.period_ms;
            recorded.retain(|_, at| now.saturating_sub(*at) < period);
            if recorded.len() >= REMEMBERED {
                recorded.clear();
            }
        }
        recorded.insert(key.to_string(), now);
        true
    }

    /// Notes a pull of `digest` in `repo`: writes its time if due here (and,
    /// given `local`, at this location). A failed write is not the puller's
    /// problem: the next period tries again.
    pub async fn note(
        &self,
        store: &dyn Store,
        env: &dyn Env,
        local: Option<&dyn LocalMarks>,
        repo: &RepoName,
        digest: &Digest,
    ) {
        if self.period_ms == 0 {
            return;
        }
        let key = layout::manifest_pulled(repo, digest);
        let now = env.now_millis();
        if !self.due_here(&key, now) {
            return;
        }
        if let Some(local) = local {
            if !local.mark(&key, self.period_ms / 1000).await {
                return;
            }
        }
        let _ = store
            .put_volatile(&key, Bytes::from(now.to_string()), PutMode::Overwrite)
            .await;
    }
}

/// When `digest` was last pulled in `repo`, if a pull was recorded.
pub async fn last_pull(store: &dyn Store, repo: &RepoName, digest: &Digest) -> crate::error::Result<Option<u64>> {
    Ok(read_small(store, &layout::manifest_pulled(repo, digest))
        .await?
        .and_then(|(bytes, _)| std::str::from_utf8(&bytes).ok()?.trim().parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_is_due_once_per_period() {
        let clock = PullClock::new(60);
        assert!(clock.due_here("a", 1_000));
        assert!(!clock.due_here("a", 30_000));
        assert!(clock.due_here("b", 30_000));
        assert!(clock.due_here("a", 61_000));
        assert!(!clock.due_here("a", 120_000));
    }

    #[test]
    fn a_full_memory_forgets_what_is_past_its_period() {
        let clock = PullClock::new(1);
        for i in 0..REMEMBERED {
            assert!(clock.due_here(&i.to_string(), 0));
        }
        assert!(clock.due_here("late", 5_000));
        let remembered = clock.recorded.lock().map(|r| r.len()).unwrap_or(0);
        assert_eq!(remembered, 1);
    }
}
