//! `pier check-storage`: proves a storage configuration can do everything the
//! registry asks of it before any instance serves from it.
//!
//! A bucket that lists but refuses conditional writes, or an S3-compatible
//! server that ignores `If-None-Match`, would corrupt tags and uploads
//! silently under load; this finds out in seconds, under a temporary prefix
//! that is removed afterwards.

use std::time::{Duration, Instant};

use bytes::Bytes;
use pier_core::store::{list_all, read_small, PutMode, Store, StoreError};

/// One check's outcome.
pub struct CheckResult {
    pub name: &'static str,
    pub elapsed: Duration,
    pub outcome: Result<(), String>,
}

type Outcome = Result<(), String>;

fn expect(condition: bool, message: impl FnOnce() -> String) -> Outcome {
    if condition {
        Ok(())
    } else {
        Err(message())
    }
}

fn failed(what: &str) -> impl FnOnce(StoreError) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// Runs every check under `prefix` (which should end with `/`) and removes
/// what they wrote.
pub async fn run(store: &dyn Store, prefix: &str) -> Vec<CheckResult> {
    let mut results = Vec::new();
    macro_rules! check {
        ($name:literal, $body:expr) => {{
            let started = Instant::now();
            let outcome = $body.await;
            results.push(CheckResult {
                name: $name,
                elapsed: started.elapsed(),
                outcome,
            });
        }};
    }
    check!("list", list_empty(store, prefix));
    check!("write and read", write_and_read(store, prefix));
    check!("ranged read", ranged_read(store, prefix));
    check!("create only if absent", create_if_absent(store, prefix));
    check!("update only if unchanged", update_if_unchanged(store, prefix));
    check!("list in order with a cursor", list_in_order(store, prefix));
    check!("multipart write", multipart(store, prefix));
    check!("delete", delete_everything(store, prefix));
    results
}

async fn list_empty(store: &dyn Store, prefix: &str) -> Outcome {
    let page = store.list(prefix, None, 10).await.map_err(failed("list"))?;
    expect(page.keys.is_empty(), || format!("a fresh prefix lists {:?}", page.keys))
}

async fn write_and_read(store: &dyn Store, prefix: &str) -> Outcome {
    let key = format!("{prefix}plain");
    let written = store
        .put(&key, Bytes::from_static(b"pier check"), PutMode::Overwrite)
        .await
        .map_err(failed("put"))?;
    let head = store.head(&key).await.map_err(failed("head"))?;
    expect(head.as_ref() == Some(&written), || {
        format!("head says {head:?}, the write said {written:?}")
    })?;
    let read = read_small(store, &key).await.map_err(failed("get"))?;
    expect(
        read.as_ref().map(|(bytes, _)| &bytes[..]) == Some(b"pier check"),
        || format!("read back {read:?}"),
    )
}

async fn ranged_read(store: &dyn Store, prefix: &str) -> Outcome {
    let key = format!("{prefix}plain");
    let part = store
        .get(&key, Some(5..10))
        .await
        .map_err(failed("ranged get"))?
        .ok_or("the object written before is gone")?
        .bytes()
        .await
        .map_err(failed("ranged body"))?;
    expect(&part[..] == b"check", || format!("bytes 5..10 read as {part:?}"))
}

async fn create_if_absent(store: &dyn Store, prefix: &str) -> Outcome {
    let key = format!("{prefix}created");
    store
        .put(&key, Bytes::from_static(b"first"), PutMode::Create)
        .await
        .map_err(failed("first create"))?;
    let second = store.put(&key, Bytes::from_static(b"second"), PutMode::Create).await;
    expect(second == Err(StoreError::AlreadyExists), || {
        format!("a second create must be refused, got {second:?}: the backend ignores If-None-Match")
    })?;
    let kept = read_small(store, &key).await.map_err(failed("get"))?;
    expect(kept.is_some_and(|(bytes, _)| &bytes[..] == b"first"), || {
        "the refused create changed the object".into()
    })
}

async fn update_if_unchanged(store: &dyn Store, prefix: &str) -> Outcome {
    let key = format!("{prefix}updated");
    let first = store
        .put(&key, Bytes::from_static(b"one"), PutMode::Overwrite)
        .await
        .map_err(failed("put"))?;
    let second = store
        .put(&key, Bytes::from_static(b"two"), PutMode::Update(first.etag.clone()))
        .await
        .map_err(failed("update with the current etag"))?;
    expect(second.etag != first.etag, || "a rewrite kept its etag".into())?;
    let stale = store
        .put(&key, Bytes::from_static(b"three"), PutMode::Update(first.etag))
        .await;
    expect(stale == Err(StoreError::PreconditionFailed), || {
        format!("an update with a stale etag must be refused, got {stale:?}: the backend ignores If-Match")
    })
}

async fn list_in_order(store: &dyn Store, prefix: &str) -> Outcome {
    let dir = format!("{prefix}sorted/");
    for name in ["b", "a/x", "c", "a-"] {
        store
            .put(&format!("{dir}{name}"), Bytes::new(), PutMode::Overwrite)
            .await
            .map_err(failed("put"))?;
    }
    let expected: Vec<String> = ["a-", "a/x", "b", "c"].iter().map(|n| format!("{dir}{n}")).collect();
    let all = list_all(store, &dir).await.map_err(failed("list"))?;
    expect(all == expected, || format!("listed {all:?}, expected {expected:?}"))?;
    let page = store
        .list(&dir, Some(&expected[1]), 1)
        .await
        .map_err(failed("list after a cursor"))?;
    expect(page.keys == expected[2..3] && page.more, || {
        format!("the page after {} is {page:?}", expected[1])
    })
}

async fn multipart(store: &dyn Store, prefix: &str) -> Outcome {
    let key = format!("{prefix}multipart");
    let part_size = store.part_size();
    let first: Bytes = (0..part_size).map(|i| (i % 251) as u8).collect::<Vec<_>>().into();
    let id = store.create_multipart(&key).await.map_err(failed("create"))?;
    let parts = vec![
        store
            .put_part(&key, &id, 1, first.clone())
            .await
            .map_err(failed("part 1"))?,
        store
            .put_part(&key, &id, 2, Bytes::from_static(b"last part"))
            .await
            .map_err(failed("part 2"))?,
    ];
    let before = store.head(&key).await.map_err(failed("head"))?;
    expect(before.is_none(), || "the object is visible before completion".into())?;
    let meta = store
        .complete_multipart(&key, &id, parts)
        .await
        .map_err(failed("complete"))?;
    expect(meta.size == part_size as u64 + 9, || {
        format!("completed size {} != {}", meta.size, part_size + 9)
    })?;
    let seam = store
        .get(&key, Some(part_size as u64 - 3..part_size as u64 + 4))
        .await
        .map_err(failed("ranged get"))?
        .ok_or("the completed object is missing")?
        .bytes()
        .await
        .map_err(failed("body"))?;
    let mut expected = first[part_size - 3..].to_vec();
    expected.extend_from_slice(b"last");
    expect(seam[..] == expected[..], || "the parts were joined wrongly".into())?;
    let aborted = format!("{prefix}aborted");
    let id = store.create_multipart(&aborted).await.map_err(failed("create"))?;
    store.put_part(&aborted, &id, 1, first).await.map_err(failed("part"))?;
    store.abort_multipart(&aborted, &id).await.map_err(failed("abort"))
}

async fn delete_everything(store: &dyn Store, prefix: &str) -> Outcome {
    let keys = list_all(store, prefix).await.map_err(failed("list"))?;
    for key in &keys {
        store.delete(key).await.map_err(failed("delete"))?;
    }
    let left = list_all(store, prefix).await.map_err(failed("list"))?;
    expect(left.is_empty(), || format!("still listed after delete: {left:?}"))?;
    store
        .delete(&format!("{prefix}plain"))
        .await
        .map_err(failed("deleting a missing key must succeed"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pier_core::store::memory::MemoryStore;

    #[tokio::test]
    async fn a_correct_store_passes_every_check_and_is_left_clean() {
        let store = MemoryStore::new(4096);
        let results = run(&store, "check/1/").await;
        for result in &results {
            assert_eq!(result.outcome, Ok(()), "{}", result.name);
        }
        assert_eq!(results.len(), 8);
        assert!(list_all(&store, "").await.unwrap().is_empty(), "nothing is left behind");
    }
}
