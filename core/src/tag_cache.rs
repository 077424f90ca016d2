//! Tags served from memory to clients that only pull, where a namespace
//! policy allows it (`[[policy]] tag_cache_secs`).
//!
//! A manifest by tag is the one pull that must ask the store each time,
//! since tags move; on the edge that is a trip to R2 from wherever the
//! puller is. A namespace fed by promotion (prod) can accept that its
//! pullers see a moved tag a few seconds late. Who may push there never
//! reads from this cache (`api::manifests`), so whoever pushed a tag reads
//! it back at once, whichever instance answers; pull-only clients see a
//! tag moved or deleted elsewhere (another instance or isolate, a
//! collection, a sync pass) within the policy's seconds. A tag written
//! through this instance is dropped from its memory at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::digest::Digest;
use crate::names::{RepoName, Tag};
use crate::namespace_policy::NamespacePolicies;
use crate::platform::Env;

/// Tags held at most; past it the memory starts over (a bound, not a
/// working-set policy: a namespace's hot tags are few).
const MAX_ENTRIES: usize = 16_384;

/// One process's or isolate's memory of tags, for the namespaces whose
/// policy sets `tag_cache_secs`.
pub struct TagCache {
    policies: NamespacePolicies,
    env: Arc<dyn Env>,
    /// `repo:tag` → (digest, when it was read from the store).
    entries: Mutex<HashMap<String, (Digest, u64)>>,
}

impl TagCache {
    /// The cache for `policies`; `None` when none sets `tag_cache_secs`.
    pub fn new(policies: &NamespacePolicies, env: Arc<dyn Env>) -> Option<TagCache> {
        policies.all().any(|p| p.tag_cache_secs > 0).then(|| TagCache {
            policies: policies.clone(),
            env,
            entries: Mutex::new(HashMap::new()),
        })
    }

    /// How long `repo`'s tags may be served from memory, in milliseconds;
    /// `None` for never.
    fn max_age_ms(&self, repo: &RepoName) -> Option<u64> {
        let (_, policy) = self.policies.policy_for(repo.as_str())?;
        (policy.tag_cache_secs > 0).then(|| policy.tag_cache_secs.saturating_mul(1000))
    }

    /// Whether `repo`'s tags may be served from memory at all.
    pub fn covers(&self, repo: &RepoName) -> bool {
        self.max_age_ms(repo).is_some()
    }

    /// The digest `repo:tag` named when last read, if that is recent enough.
    pub fn lookup(&self, repo: &RepoName, tag: &Tag) -> Option<Digest> {
        let max_age_ms = self.max_age_ms(repo)?;
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let (digest, read_ms) = entries.get(&key(repo, tag))?;
        (self.env.now_millis().saturating_sub(*read_ms) < max_age_ms).then(|| digest.clone())
    }

    /// Remembers what the store said `repo:tag` names, now.
    pub fn insert(&self, repo: &RepoName, tag: &Tag, digest: &Digest) {
        if !self.covers(repo) {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(key(repo, tag), (digest.clone(), self.env.now_millis()));
    }

    /// Drops `repo:tag`: it was written or deleted here, or what it named
    /// is gone.
    pub fn forget(&self, repo: &RepoName, tag: &Tag) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key(repo, tag));
    }
}

fn key(repo: &RepoName, tag: &Tag) -> String {
    format!("{repo}:{tag}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Algorithm;
    use crate::namespace_policy::PolicyConfig;
    use crate::testing::TestEnv;

    fn cache(clock: Arc<TestEnv>) -> TagCache {
        let configs: Vec<PolicyConfig> = serde_json::from_str(
            r#"[{"namespace": "prod/**", "tag_cache_secs": 30},
                {"namespace": "prod/fresh/**"}]"#,
        )
        .unwrap();
        TagCache::new(&NamespacePolicies::new(&configs).unwrap(), clock).unwrap()
    }

    #[test]
    fn serves_a_tag_for_its_namespaces_seconds_only() {
        let clock = Arc::new(TestEnv::at(0));
        let tags = cache(clock.clone());
        let (app, fresh, ci) = (
            RepoName::parse("prod/app").unwrap(),
            RepoName::parse("prod/fresh/app").unwrap(),
            RepoName::parse("ci/app").unwrap(),
        );
        let (v1, digest) = (Tag::parse("v1").unwrap(), Digest::of(Algorithm::Sha256, b"m"));
        for repo in [&app, &fresh, &ci] {
            tags.insert(repo, &v1, &digest);
        }
        assert_eq!(tags.lookup(&app, &v1), Some(digest.clone()));
        assert_eq!(tags.lookup(&fresh, &v1), None, "the narrower policy sets no seconds");
        assert_eq!(tags.lookup(&ci, &v1), None, "no policy: never from memory");
        clock.advance_millis(29_999);
        assert_eq!(tags.lookup(&app, &v1), Some(digest.clone()));
        clock.advance_millis(1);
        assert_eq!(tags.lookup(&app, &v1), None, "30 s old: asked again");
        tags.insert(&app, &v1, &digest);
        tags.forget(&app, &v1);
        assert_eq!(tags.lookup(&app, &v1), None, "written here: dropped at once");
    }

    #[test]
    fn is_not_built_without_a_policy_that_asks() {
        let configs: Vec<PolicyConfig> = serde_json::from_str(r#"[{"namespace": "prod/**"}]"#).unwrap();
        let policies = NamespacePolicies::new(&configs).unwrap();
        assert!(TagCache::new(&policies, Arc::new(TestEnv::at(0))).is_none());
    }
}
