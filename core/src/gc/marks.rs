//! Merge-joins of a sorted listing with the sorted listing of marks, page by
//! page, so the sweep holds one page of keys in memory whatever the number of
//! blobs: marks are keyed so they sort exactly like the objects they mark.

use std::collections::HashSet;

use crate::store::{Store, StoreResult};

/// One page of `prefix` after `cursor` (a full key), as key suffixes.
pub struct Page {
    pub suffixes: Vec<String>,
    pub more: bool,
}

pub async fn page(store: &dyn Store, prefix: &str, cursor: Option<&str>, limit: usize) -> StoreResult<Page> {
    let start_after = cursor.map(|suffix| format!("{prefix}{suffix}"));
    let listed = store.list(prefix, start_after.as_deref(), limit).await?;
    Ok(Page {
        suffixes: listed.keys.iter().map(|k| k[prefix.len()..].to_string()).collect(),
        more: listed.more,
    })
}

/// The suffixes under `prefix` in `(after, up_to]`: the marks that can match a
/// page of objects spanning that range.
pub async fn suffixes_in_range(
    store: &dyn Store,
    prefix: &str,
    after: Option<&str>,
    up_to: &str,
) -> StoreResult<HashSet<String>> {
    let mut found = HashSet::new();
    let mut cursor = after.map(str::to_string);
    loop {
        let listed = page(store, prefix, cursor.as_deref(), 1000).await?;
        let beyond = listed.suffixes.last().is_none_or(|last| last.as_str() >= up_to);
        cursor = listed.suffixes.last().cloned();
        found.extend(listed.suffixes.into_iter().filter(|s| s.as_str() <= up_to));
        if beyond || !listed.more {
            return Ok(found);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use crate::store::PutMode;

    #[test]
    fn range_holds_only_what_the_page_can_match() {
        let store = MemoryStore::default();
        futures::executor::block_on(async {
            for key in ["m/a", "m/c", "m/e", "m/g"] {
                store.put(key, bytes::Bytes::new(), PutMode::Overwrite).await.unwrap();
            }
            let found = suffixes_in_range(&store, "m/", Some("a"), "e").await.unwrap();
            let mut found: Vec<_> = found.into_iter().collect();
            found.sort();
            assert_eq!(found, ["c", "e"]);
        });
    }
}
