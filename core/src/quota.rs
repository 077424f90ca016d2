//! Storage quotas per namespace: a team's repositories (`team-a/**`) may hold
//! at most so many bytes, each blob and manifest counted once however many of
//! its repositories hold it.
//!
//! Usage is kept as it grows, not recounted per push: a marker per counted
//! object (`quota/<id>/objects/<alg>/<hex>`) says the object is in the sum,
//! and the usage record (`quota/<id>/usage`) holds the sum, updated by
//! conditional writes. A push is admitted when the objects it adds fit
//! (checked before the link or manifest that would make it visible, so a
//! refused push leaves nothing in the repository), and counted after. What
//! deletes free is counted back by garbage collection, which recounts each
//! namespace from its repositories and rewrites markers and sum
//! ([`Quotas::reconcile`]). Between two collections usage only grows, and
//! pushes racing each other may pass a quota by what they add at once; a
//! crash between a marker and its sum leaves the sum short until the next
//! collection. docs/lifecycle.md says so to operators.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::digest::{Algorithm, Digest};
use crate::error::{ErrorCode, RegistryError, Result};
use crate::glob;
use crate::layout;
use crate::names::RepoName;
use crate::platform::Env;
use crate::records::BlobRecord;
use crate::store::{list_all, read_small, PutMode, Store, StoreError};

/// One `[[quota]]` table.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    /// Repositories sharing the quota, e.g. `team-a/**`.
    pub namespace: String,
    /// Bytes the namespace's blobs and manifests may take, each counted once.
    pub max_bytes: u64,
}

/// Attempts at a conditional update of a usage record before giving up.
const UPDATE_ATTEMPTS: usize = 32;

/// A quota as enforced: its table and where its records live.
#[derive(Clone, Debug)]
struct Quota {
    namespace: String,
    max_bytes: u64,
    /// Key-safe id of the namespace glob.
    id: String,
}

/// A namespace's quota and what it holds, for admins and `/metrics`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Usage {
    pub namespace: String,
    pub max_bytes: u64,
    pub used_bytes: u64,
    /// When a collection last recounted it (ms), if ever.
    pub reconciled_ms: Option<u64>,
}

/// The usage record's shape in the store.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct UsageRecord {
    namespace: String,
    used_bytes: u64,
    #[serde(default)]
    reconciled_ms: Option<u64>,
}

/// Every configured quota.
#[derive(Clone, Debug, Default)]
pub struct Quotas {
    quotas: Vec<Quota>,
}

/// An object a push adds to a repository, as quotas count it.
#[derive(Clone, Copy)]
pub struct Added<'a> {
    pub digest: &'a Digest,
    pub size: u64,
}

fn usage_key(quota: &Quota) -> String {
    format!("quota/{}/usage", quota.id)
}

fn objects_prefix(quota: &Quota) -> String {
    format!("quota/{}/objects/", quota.id)
}

fn object_key(quota: &Quota, digest: &Digest) -> String {
    format!(
        "{}{}/{}",
        objects_prefix(quota),
        digest.algorithm().name(),
        digest.hex()
    )
}

fn corrupt(key: &str, e: impl std::fmt::Display) -> RegistryError {
    RegistryError::new(ErrorCode::Internal, format!("corrupt quota record {key}: {e}"))
}

impl Quotas {
    /// Checks the tables: a namespace glob, a quota above 0, one table per namespace.
    pub fn new(configs: &[QuotaConfig]) -> std::result::Result<Quotas, String> {
        let mut quotas: Vec<Quota> = Vec::new();
        for config in configs {
            glob::Glob::new(&config.namespace).map_err(|e| format!("quota namespace {:?}: {e}", config.namespace))?;
            if config.max_bytes == 0 {
                return Err(format!(
                    "quota {:?}: max_bytes must be above 0 (leave the table out for no quota)",
                    config.namespace
                ));
            }
            if quotas.iter().any(|q| q.namespace == config.namespace) {
                return Err(format!("quota {:?} is set twice", config.namespace));
            }
            let id = Digest::of(Algorithm::Sha256, config.namespace.as_bytes()).hex()[..24].to_string();
            quotas.push(Quota {
                namespace: config.namespace.clone(),
                max_bytes: config.max_bytes,
                id,
            });
        }
        Ok(Quotas { quotas })
    }

    pub fn is_empty(&self) -> bool {
        self.quotas.is_empty()
    }

    /// Whether any quota counts `repo`.
    pub fn cover(&self, repo: &RepoName) -> bool {
        self.matching(repo).next().is_some()
    }

    fn matching<'a>(&'a self, repo: &'a RepoName) -> impl Iterator<Item = &'a Quota> + 'a {
        self.quotas
            .iter()
            .filter(move |q| glob::matches(&q.namespace, repo.as_str()))
    }

    /// Refuses an upload into `repo` where a quota is already full, so a
    /// client learns it before sending the bytes.
    pub async fn admit_upload(&self, store: &dyn Store, repo: &RepoName) -> Result<()> {
        for quota in self.matching(repo) {
            let used = read_usage(store, quota).await?.0.used_bytes;
            if used >= quota.max_bytes {
                return Err(over_quota(quota, used, None));
            }
        }
        Ok(())
    }

    /// Refuses `added` in `repo` when, with what every quota of `repo`
    /// already counts, one would exceed its bytes.
    pub async fn admit(&self, store: &dyn Store, repo: &RepoName, added: &[Added<'_>]) -> Result<()> {
        for quota in self.matching(repo) {
            let mut needed = 0u64;
            for object in added {
                if store.head(&object_key(quota, object.digest)).await?.is_none() {
                    needed = needed.saturating_add(object.size);
                }
            }
            if needed == 0 {
                continue;
            }
            let used = read_usage(store, quota).await?.0.used_bytes;
            if used.saturating_add(needed) > quota.max_bytes {
                return Err(over_quota(quota, used, Some(needed)));
            }
        }
        Ok(())
    }

    /// Counts `added` in every quota of `repo` (each object once per quota).
    pub async fn count(&self, store: &dyn Store, repo: &RepoName, added: &[Added<'_>]) -> Result<()> {
        for quota in self.matching(repo) {
            let mut grown = 0u64;
            for object in added {
                match store
                    .put(&object_key(quota, object.digest), Bytes::new(), PutMode::Create)
                    .await
                {
                    Ok(_) => grown = grown.saturating_add(object.size),
                    Err(StoreError::AlreadyExists) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if grown > 0 {
                update_usage(store, quota, |record| {
                    record.used_bytes = record.used_bytes.saturating_add(grown)
                })
                .await?;
            }
        }
        Ok(())
    }

    /// Every quota with its usage.
    pub async fn usage(&self, store: &dyn Store) -> Result<Vec<Usage>> {
        let mut all = Vec::new();
        for quota in &self.quotas {
            let (record, _) = read_usage(store, quota).await?;
            all.push(Usage {
                namespace: quota.namespace.clone(),
                max_bytes: quota.max_bytes,
                used_bytes: record.used_bytes,
                reconciled_ms: record.reconciled_ms,
            });
        }
        Ok(all)
    }

    /// How many quotas there are (a collection reconciles them one per step).
    pub fn len(&self) -> usize {
        self.quotas.len()
    }

    /// Recounts quota number `index` from the repositories it covers: every
    /// blob linked and manifest stored in one of them, once. Rewrites the
    /// markers and the sum unless `dry_run`; returns the recounted usage.
    pub async fn reconcile(
        &self,
        store: &dyn Store,
        env: &dyn Env,
        index: usize,
        dry_run: bool,
    ) -> Result<Option<Usage>> {
        let Some(quota) = self.quotas.get(index) else {
            return Ok(None);
        };
        let objects = recount(store, quota).await?;
        let used_bytes = objects.values().fold(0u64, |sum, size| sum.saturating_add(*size));
        let now = env.now_millis();
        if !dry_run {
            let prefix = objects_prefix(quota);
            for key in list_all(store, &prefix).await? {
                let counted = layout::digest_at_end(&key).is_some_and(|digest| objects.contains_key(&digest));
                if !counted {
                    store.delete(&key).await?;
                }
            }
            for digest in objects.keys() {
                store
                    .put(&object_key(quota, digest), Bytes::new(), PutMode::Overwrite)
                    .await?;
            }
            update_usage(store, quota, |record| {
                record.used_bytes = used_bytes;
                record.reconciled_ms = Some(now);
            })
            .await?;
        }
        Ok(Some(Usage {
            namespace: quota.namespace.clone(),
            max_bytes: quota.max_bytes,
            used_bytes,
            reconciled_ms: Some(now),
        }))
    }
}

/// What the repositories under `quota` hold: each object's digest and size.
async fn recount(store: &dyn Store, quota: &Quota) -> Result<BTreeMap<Digest, u64>> {
    let mut objects = BTreeMap::new();
    for entry in list_all(store, layout::CATALOG).await? {
        let Some(repo) = layout::repo_of_catalog_entry(&entry).and_then(RepoName::parse) else {
            continue;
        };
        if !glob::matches(&quota.namespace, repo.as_str()) {
            continue;
        }
        for key in list_all(store, &layout::layers_prefix(&repo)).await? {
            let Some(digest) = layout::digest_at_end(&key) else {
                continue;
            };
            if objects.contains_key(&digest) {
                continue;
            }
            let record_key = layout::blob_record(&digest);
            if let Some((bytes, _)) = read_small(store, &record_key).await? {
                let record: BlobRecord = serde_json::from_slice(&bytes).map_err(|e| corrupt(&record_key, e))?;
                objects.insert(digest, record.size);
            }
        }
        for key in list_all(store, &layout::manifests_prefix(&repo)).await? {
            let Some(digest) = layout::digest_at_end(&key) else {
                continue;
            };
            if objects.contains_key(&digest) {
                continue;
            }
            if let Some(meta) = store.head(&key).await? {
                objects.insert(digest, meta.size);
            }
        }
    }
    Ok(objects)
}

async fn read_usage(store: &dyn Store, quota: &Quota) -> Result<(UsageRecord, Option<String>)> {
    let key = usage_key(quota);
    match read_small(store, &key).await? {
        None => Ok((
            UsageRecord {
                namespace: quota.namespace.clone(),
                ..UsageRecord::default()
            },
            None,
        )),
        Some((bytes, meta)) => {
            let record = serde_json::from_slice(&bytes).map_err(|e| corrupt(&key, e))?;
            Ok((record, Some(meta.etag)))
        }
    }
}

/// Applies `change` to the usage record by conditional write, again from a
/// fresh read whenever another writer got there first.
async fn update_usage(store: &dyn Store, quota: &Quota, change: impl Fn(&mut UsageRecord)) -> Result<()> {
    let key = usage_key(quota);
    for _ in 0..UPDATE_ATTEMPTS {
        let (mut record, etag) = read_usage(store, quota).await?;
        change(&mut record);
        let bytes = serde_json::to_vec(&record).map_err(|e| RegistryError::unserializable("a quota record", e))?;
        let mode = match etag {
            Some(etag) => PutMode::Update(etag),
            None => PutMode::Create,
        };
        match store.put(&key, bytes.into(), mode).await {
            Ok(_) => return Ok(()),
            Err(StoreError::AlreadyExists | StoreError::PreconditionFailed) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(RegistryError::new(
        ErrorCode::Unavailable,
        format!(
            "the usage of quota {} is being updated by too many pushes at once; retry",
            quota.namespace
        ),
    ))
}

/// `DENIED`, with the quota and its usage in the message and the detail.
fn over_quota(quota: &Quota, used: u64, needed: Option<u64>) -> RegistryError {
    let message = match needed {
        Some(needed) => format!(
            "quota exceeded: {} may hold {} bytes and holds {used}; this push needs {needed} more. \
             Delete images there (space is freed by the next garbage collection) or ask for a larger quota",
            quota.namespace, quota.max_bytes
        ),
        None => format!(
            "quota exceeded: {} may hold {} bytes and holds {used}; delete images there (space is freed by \
             the next garbage collection) or ask for a larger quota",
            quota.namespace, quota.max_bytes
        ),
    };
    RegistryError::new(ErrorCode::Denied, message).with_detail(json!({
        "namespace": quota.namespace,
        "max_bytes": quota.max_bytes,
        "used_bytes": used,
        "needed_bytes": needed,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_tables_are_refused() {
        let table = |namespace: &str, max_bytes| QuotaConfig {
            namespace: namespace.into(),
            max_bytes,
        };
        assert!(Quotas::new(&[table("team/**", 0)]).unwrap_err().contains("above 0"));
        assert!(Quotas::new(&[table("a/**", 1), table("a/**", 2)])
            .unwrap_err()
            .contains("set twice"));
        assert!(Quotas::new(&[table("team/**", 1), table("**", 2)]).is_ok());
    }
}
