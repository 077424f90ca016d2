//! What a client can list: tags, the catalog and referrers, in pages.

use futures::future::try_join_all;
use serde_json::Value;

use crate::digest::Digest;
use crate::error::{ErrorCode, RegistryError, Result};
use crate::layout;
use crate::names::RepoName;
use crate::store::read_small;

use super::{
    NamePage, ReferrersPage, Registry, MAX_CATALOG_SCAN, MAX_PAGE, MAX_REFERRERS_PAGE_BYTES, MAX_REFERRERS_SCAN,
    REFERRERS_BATCH,
};

impl Registry {
    async fn repo_exists(&self, repo: &RepoName) -> Result<bool> {
        Ok(self.store.head(&layout::catalog_entry(repo)).await?.is_some())
    }

    /// Tags of `repo` in lexical order, after `last`, at most `n` (and at
    /// most [`MAX_PAGE`]).
    pub async fn tags(&self, repo: &RepoName, n: usize, last: Option<&str>) -> Result<NamePage> {
        if !self.repo_exists(repo).await? {
            return Err(RegistryError::new(
                ErrorCode::NameUnknown,
                format!("repository {repo} is not known"),
            ));
        }
        let limit = n.min(MAX_PAGE);
        if limit == 0 {
            return Ok(NamePage::default());
        }
        let prefix = layout::tags_prefix(repo);
        let start_after = last.map(|last| format!("{prefix}{last}"));
        let page = self.store.list(&prefix, start_after.as_deref(), limit).await?;
        let names: Vec<String> = page
            .keys
            .iter()
            .filter_map(|key| key.strip_prefix(&prefix).map(str::to_string))
            .collect();
        let next = names.last().filter(|_| page.more).cloned();
        Ok(NamePage { names, next })
    }

    /// Repositories `lists` accepts, in lexical order, after `last`, at most
    /// `n` (and at most [`MAX_PAGE`]). A page examines at most
    /// [`MAX_CATALOG_SCAN`] repositories: one cut short by that bound (a
    /// caller who may see few of many) ends with a `next` to go on from.
    ///
    /// Catalog keys are `catalog/<name>/_repo`, and the store lists them in
    /// key order, which differs from name order where one name extends
    /// another with a character sorting before `/_` (`a` comes after `a-b`,
    /// `a.b` and `a/0` in key order, before them in name order). Listing
    /// from `catalog/<last>` finds every name after `last`; such a shorter
    /// name of a listed one, not listed yet, is looked up directly.
    pub async fn catalog(&self, n: usize, last: Option<&str>, lists: impl Fn(&str) -> bool) -> Result<NamePage> {
        let limit = n.min(MAX_PAGE);
        if limit == 0 {
            return Ok(NamePage::default());
        }
        let last = last.unwrap_or("");
        let after_last = |name: &str| name > last;
        let mut seen = std::collections::BTreeSet::new();
        let mut cursor = Some(format!("{}{last}", layout::CATALOG)).filter(|_| !last.is_empty());
        let mut exhausted = false;
        loop {
            let page = self.store.list(layout::CATALOG, cursor.as_deref(), 1000).await?;
            cursor = page.keys.last().cloned().or(cursor);
            seen.extend(
                page.keys
                    .iter()
                    .filter_map(|key| layout::repo_of_catalog_entry(key))
                    .filter(|name| after_last(name))
                    .map(str::to_string),
            );
            if !page.more {
                exhausted = true;
                break;
            }
            let listed = seen.iter().filter(|name| lists(name)).count();
            if listed > limit || seen.len() >= MAX_CATALOG_SCAN {
                break;
            }
        }
        let mut shorter = Vec::new();
        for name in &seen {
            // Where the key of the shorter name sorts after this one's:
            // before `-` or `.`, or before `/` and a digit (`/_repo` > `/0`).
            let inverted = |(at, separator): &(usize, &str)| {
                *separator != "/"
                    || name
                        .get(at + 1..)
                        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
            };
            for (at, _) in name.match_indices(['-', '.', '/']).filter(inverted) {
                let Some(candidate) = name.get(..at).filter(|c| after_last(c) && !seen.contains(*c)) else {
                    continue;
                };
                if let Some(repo) = RepoName::parse(candidate) {
                    shorter.push(repo);
                }
            }
        }
        shorter.sort();
        shorter.dedup();
        for repo in shorter {
            if self.repo_exists(&repo).await? {
                seen.insert(repo.as_str().to_string());
            }
        }
        let examined_up_to = seen.last().cloned();
        let mut names: Vec<String> = seen.into_iter().filter(|name| lists(name)).collect();
        let next = if names.len() > limit {
            names.truncate(limit);
            names.last().cloned()
        } else if exhausted {
            None
        } else {
            examined_up_to
        };
        Ok(NamePage { names, next })
    }

    /// Descriptors of the manifests in `repo` whose subject is `subject`,
    /// optionally only those of `artifact_type`, after the referrer `after`:
    /// at most `n` (and [`MAX_PAGE`]), of at most [`MAX_REFERRERS_PAGE_BYTES`]
    /// together, from at most [`MAX_REFERRERS_SCAN`] examined.
    pub async fn referrers_page(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
        after: Option<&Digest>,
        n: usize,
    ) -> Result<ReferrersPage> {
        let limit = n.min(MAX_PAGE);
        if limit == 0 {
            return Ok(ReferrersPage::default());
        }
        let prefix = layout::referrers_prefix(repo, subject);
        let mut cursor = after.map(|after| layout::referrer(repo, subject, after));
        let mut page = ReferrersPage::default();
        let (mut bytes, mut examined) = (0, 0);
        loop {
            let listed = self.store.list(&prefix, cursor.as_deref(), REFERRERS_BATCH).await?;
            let entries = try_join_all(listed.keys.iter().map(|key| read_small(self.store(), key))).await?;
            for (key, entry) in listed.keys.iter().zip(entries) {
                let value =
                    entry.and_then(|(entry, _)| Some((entry.len(), serde_json::from_slice::<Value>(&entry).ok()?)));
                let wanted = value.filter(|(_, entry)| {
                    artifact_type.is_none_or(|t| entry.get("artifactType").and_then(Value::as_str) == Some(t))
                });
                if let Some((size, entry)) = wanted {
                    let full = page.manifests.len() >= limit
                        || (!page.manifests.is_empty() && bytes + size > MAX_REFERRERS_PAGE_BYTES);
                    if full {
                        page.next = cursor.as_deref().and_then(layout::digest_at_end);
                        return Ok(page);
                    }
                    bytes += size;
                    page.manifests.push(entry);
                }
                examined += 1;
                cursor = Some(key.clone());
            }
            if !listed.more {
                return Ok(page);
            }
            if examined >= MAX_REFERRERS_SCAN {
                page.next = cursor.as_deref().and_then(layout::digest_at_end);
                return Ok(page);
            }
        }
    }

    /// Every referrer of `subject` in `repo`, following pages (for copies
    /// made by the operator, not for requests).
    pub async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Value>> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .referrers_page(repo, subject, artifact_type, after.as_ref(), MAX_PAGE)
                .await?;
            all.extend(page.manifests);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(all),
            }
        }
    }
}
