//! Phase 2, one repository per step: apply the retention rules to its tags,
//! find the manifests it keeps (tagged, children of kept indexes, referrers of
//! kept subjects, untagged ones the rules do not expire), delete the others
//! and their referrer entries, and mark every blob a kept manifest references.
//! Memory is one repository's manifests. Sorted maps, so a step does the same
//! storage operations in the same order every time (the interleaving explorer
//! of core/tests replays schedules).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::{Gc, Phase, RunState};
use crate::digest::Digest;
use crate::error::Result;
use crate::layout;
use crate::manifest;
use crate::names::{RepoName, Tag};
use crate::pulls;
use crate::records::TagRecord;
use crate::retention::{self, TagInfo};
use crate::store::{list_all, read_small, PutMode, Store};

/// What retention (and the archive) needs to know about one stored manifest.
pub(crate) struct ManifestNode {
    pub(crate) blobs: Vec<Digest>,
    pub(crate) children: Vec<Digest>,
    pub(crate) subject: Option<Digest>,
}

impl Gc {
    pub(super) async fn collect_repo(&mut self, state: &mut RunState) -> Result<Option<Phase>> {
        let page = super::marks::page(self.store.as_ref(), layout::CATALOG, state.cursor.as_deref(), 1).await?;
        let Some(suffix) = page.suffixes.first() else {
            return Ok(Some(Phase::Sweep));
        };
        if let Some(repo) = suffix.strip_suffix("/_repo").and_then(RepoName::parse) {
            state.report.repos_examined += 1;
            self.collect(&repo, state).await?;
        }
        state.cursor = Some(suffix.clone());
        Ok((!page.more).then_some(Phase::Sweep))
    }

    async fn collect(&mut self, repo: &RepoName, state: &mut RunState) -> Result<()> {
        let store = self.store.clone();
        let store = store.as_ref();
        let now = self.now();
        let tags = self.read_tags(repo).await?;
        let expired = retention::expired_tags(&self.config.rules, repo.as_str(), &tags, now);
        let expired_names: BTreeSet<&str> = expired.iter().map(|e| e.tag.name.as_str()).collect();
        for expired in &expired {
            state.report.tags_deleted += 1;
            state
                .report
                .list(format!("tag {repo}:{} ({})", expired.tag.name, expired.reason));
            if !self.dry_run {
                self.delete_tag_unless_moved(repo, expired.tag).await?;
            }
        }

        let nodes = read_nodes(store, repo).await?;

        let mut roots: Vec<Digest> = tags
            .iter()
            .filter(|t| !expired_names.contains(t.name.as_str()))
            .map(|t| t.digest.clone())
            .collect();
        match retention::untagged_expiry_ms(&self.config.rules, repo.as_str()) {
            None => roots.extend(nodes.keys().cloned()),
            Some(expiry) => {
                for digest in nodes.keys() {
                    if now.saturating_sub(self.pushed_ms(repo, digest).await?) <= expiry {
                        roots.push(digest.clone());
                    }
                }
            }
        }
        let mut kept = keep_closure(&nodes, roots);

        let doomed: Vec<Digest> = nodes.keys().filter(|d| !kept.contains(*d)).cloned().collect();
        if !doomed.is_empty() {
            let spared = self.delete_manifests(repo, &doomed, &nodes, state).await?;
            kept.extend(spared);
        }
        self.remove_orphaned_referrers(repo, &nodes, &kept, state).await?;

        let mut marked = BTreeSet::new();
        for digest in &kept {
            let Some(node) = nodes.get(digest) else { continue };
            for blob in &node.blobs {
                if marked.insert(blob.clone()) {
                    store
                        .put(
                            &layout::gc_blob_mark(&state.run, blob),
                            Bytes::new(),
                            PutMode::Overwrite,
                        )
                        .await?;
                }
            }
        }
        Ok(())
    }

    async fn read_tags(&self, repo: &RepoName) -> Result<Vec<TagInfo>> {
        let counts_pulls = retention::counts_pulls(&self.config.rules, repo.as_str());
        read_tags(self.store.as_ref(), repo, counts_pulls).await
    }

    /// Deletes an expired tag, unless a push moved it since it was read. The
    /// tombstone first, so a push of the tag that this re-read misses sees
    /// the tombstone or finds its tag gone (see `protocol`).
    async fn delete_tag_unless_moved(&self, repo: &RepoName, tag: &TagInfo) -> Result<()> {
        let Some(name) = Tag::parse(&tag.name) else {
            return Ok(());
        };
        let (key, tombstone) = (layout::tag(repo, &name), layout::gc_doomed_tag(repo, &name));
        self.store.put(&tombstone, Bytes::new(), PutMode::Overwrite).await?;
        let current = read_small(self.store.as_ref(), &key).await?;
        let unchanged = current
            .and_then(|(bytes, _)| TagRecord::parse(&bytes))
            .is_some_and(|record| record.digest == tag.digest && record.tagged_ms == tag.tagged_ms);
        if unchanged {
            self.store.delete(&key).await?;
        }
        self.store.delete(&tombstone).await?;
        Ok(())
    }

    async fn pushed_ms(&self, repo: &RepoName, digest: &Digest) -> Result<u64> {
        Ok(read_small(self.store.as_ref(), &layout::manifest_pushed(repo, digest))
            .await?
            .and_then(|(bytes, _)| std::str::from_utf8(&bytes).ok()?.trim().parse().ok())
            .unwrap_or(0))
    }

    /// Deletes manifests retention dropped, except those a push named since
    /// the run started (tombstone first, then the journal: see `protocol`).
    /// Returns the spared ones.
    async fn delete_manifests(
        &mut self,
        repo: &RepoName,
        doomed: &[Digest],
        nodes: &BTreeMap<Digest, ManifestNode>,
        state: &mut RunState,
    ) -> Result<Vec<Digest>> {
        if self.dry_run {
            for digest in doomed {
                state.report.manifests_deleted += 1;
                state.report.list(format!("manifest {repo}@{digest}"));
            }
            return Ok(Vec::new());
        }
        let store = self.store.clone();
        for digest in doomed {
            store
                .put(
                    &layout::gc_doomed_manifest(repo, digest),
                    Bytes::new(),
                    PutMode::Overwrite,
                )
                .await?;
        }
        let journaled = self.journaled(state.started_ms).await?;
        let mut spared = Vec::new();
        for digest in doomed {
            if journaled.contains(digest.as_str()) {
                spared.push(digest.clone());
            } else {
                if let Some(subject) = nodes.get(digest).and_then(|n| n.subject.as_ref()) {
                    store.delete(&layout::referrer(repo, subject, digest)).await?;
                }
                store.delete(&layout::manifest(repo, digest)).await?;
                store.delete(&layout::manifest_pushed(repo, digest)).await?;
                store.delete(&layout::manifest_pulled(repo, digest)).await?;
                for hint in list_all(store.as_ref(), &layout::tag_hints_prefix(repo, digest)).await? {
                    store.delete(&hint).await?;
                }
                state.report.manifests_deleted += 1;
                state.report.list(format!("manifest {repo}@{digest}"));
            }
            store.delete(&layout::gc_doomed_manifest(repo, digest)).await?;
        }
        Ok(spared)
    }

    /// Deletes referrer entries whose referring manifest is gone.
    async fn remove_orphaned_referrers(
        &self,
        repo: &RepoName,
        nodes: &BTreeMap<Digest, ManifestNode>,
        kept: &BTreeSet<Digest>,
        state: &mut RunState,
    ) -> Result<()> {
        for key in list_all(self.store.as_ref(), &layout::referrers_root(repo)).await? {
            let Some(referrer) = layout::digest_at_end(&key) else {
                continue;
            };
            let deleted_now = nodes.contains_key(&referrer) && !kept.contains(&referrer);
            if kept.contains(&referrer) || (self.dry_run && deleted_now) {
                continue;
            }
            // Entries are written after their manifest, so a listed entry
            // whose manifest is absent now is an orphan, not a push under way.
            if self.store.head(&layout::manifest(repo, &referrer)).await?.is_some() {
                continue;
            }
            state.report.referrers_deleted += 1;
            if !self.dry_run {
                self.store.delete(&key).await?;
            }
        }
        Ok(())
    }
}

/// The repository's tags, with their manifests' last pulls when
/// `with_pulls` (one read per manifest, not per tag).
pub(crate) async fn read_tags(store: &dyn Store, repo: &RepoName, with_pulls: bool) -> Result<Vec<TagInfo>> {
    let prefix = layout::tags_prefix(repo);
    let mut pulls: BTreeMap<Digest, Option<u64>> = BTreeMap::new();
    let mut tags = Vec::new();
    for key in list_all(store, &prefix).await? {
        let Some((bytes, _)) = read_small(store, &key).await? else {
            continue;
        };
        let Some(record) = TagRecord::parse(&bytes) else {
            continue;
        };
        let pulled_ms = match (with_pulls, pulls.get(&record.digest)) {
            (false, _) => None,
            (true, Some(known)) => *known,
            (true, None) => {
                let read = pulls::last_pull(store, repo, &record.digest).await?;
                pulls.insert(record.digest.clone(), read);
                read
            }
        };
        tags.push(TagInfo {
            name: key[prefix.len()..].to_string(),
            digest: record.digest,
            tagged_ms: record.tagged_ms,
            pulled_ms,
        });
    }
    Ok(tags)
}

/// The manifests stored in `repo`, as retention and the archive see them.
pub(crate) async fn read_nodes(store: &dyn Store, repo: &RepoName) -> Result<BTreeMap<Digest, ManifestNode>> {
    let mut nodes = BTreeMap::new();
    for key in list_all(store, &layout::manifests_prefix(repo)).await? {
        let Some(digest) = layout::digest_at_end(&key) else {
            continue;
        };
        if let Some((bytes, _)) = read_small(store, &key).await? {
            nodes.insert(digest, node_of(&bytes));
        }
    }
    Ok(nodes)
}

fn node_of(bytes: &[u8]) -> ManifestNode {
    match manifest::parse_stored(bytes) {
        Ok(parsed) => ManifestNode {
            blobs: parsed.blobs.into_iter().map(|d| d.digest).collect(),
            children: parsed.children.into_iter().map(|d| d.digest).collect(),
            subject: parsed.subject.map(|d| d.digest),
        },
        // Stored manifests were valid when pushed; an unreadable one keeps nothing.
        Err(_) => ManifestNode {
            blobs: Vec::new(),
            children: Vec::new(),
            subject: None,
        },
    }
}

/// Everything `roots` keep: children of kept indexes and referrers of kept
/// subjects, transitively.
pub(crate) fn keep_closure(nodes: &BTreeMap<Digest, ManifestNode>, roots: Vec<Digest>) -> BTreeSet<Digest> {
    let mut referrers: BTreeMap<&Digest, Vec<&Digest>> = BTreeMap::new();
    for (digest, node) in nodes {
        if let Some(subject) = &node.subject {
            referrers.entry(subject).or_default().push(digest);
        }
    }
    let mut kept = BTreeSet::new();
    let mut pending = roots;
    while let Some(digest) = pending.pop() {
        if !kept.insert(digest.clone()) {
            continue;
        }
        if let Some(node) = nodes.get(&digest) {
            pending.extend(node.children.iter().cloned());
        }
        if let Some(found) = referrers.get(&digest) {
            pending.extend(found.iter().map(|d| (*d).clone()));
        }
    }
    kept
}
