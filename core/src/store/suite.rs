//! The storage-port test suite every backend must pass (memory, filesystem,
//! S3-compatible, R2). Backends call [`run_all`] from their own tests with a
//! fresh key prefix, so the suite can run repeatedly against a persistent store.

use bytes::Bytes;

use super::{list_all, read_small, PutMode, Store, StoreError};

/// Runs every check under `prefix` (which should end with `/`), panicking with
/// the failed check's name.
pub async fn run_all(store: &dyn Store, prefix: &str) {
    put_get_head_delete(store, &format!("{prefix}basic/")).await;
    ranged_reads(store, &format!("{prefix}range/")).await;
    conditional_writes(store, &format!("{prefix}cond/")).await;
    listing(store, &format!("{prefix}list/")).await;
    multipart(store, &format!("{prefix}mp/")).await;
}

async fn get_all(store: &dyn Store, key: &str) -> Option<Bytes> {
    read_small(store, key).await.expect("get").map(|(bytes, _)| bytes)
}

async fn put_get_head_delete(store: &dyn Store, p: &str) {
    let key = format!("{p}a/b");
    assert_eq!(store.head(&key).await.unwrap(), None, "head of a missing key is None");
    assert!(
        store.get(&key, None).await.unwrap().is_none(),
        "get of a missing key is None"
    );
    let meta = store
        .put(&key, Bytes::from_static(b"hello"), PutMode::Overwrite)
        .await
        .unwrap();
    assert_eq!(meta.size, 5);
    let head = store.head(&key).await.unwrap().expect("head after put");
    assert_eq!(head.size, 5);
    assert_eq!(head.etag, meta.etag, "head reports the etag put returned");
    assert_eq!(get_all(store, &key).await.as_deref(), Some(&b"hello"[..]));
    let empty = format!("{p}empty");
    store.put(&empty, Bytes::new(), PutMode::Overwrite).await.unwrap();
    assert_eq!(
        get_all(store, &empty).await.as_deref(),
        Some(&b""[..]),
        "empty objects exist"
    );
    store.delete(&key).await.unwrap();
    assert_eq!(store.head(&key).await.unwrap(), None, "deleted");
    store.delete(&key).await.expect("deleting a missing key succeeds");
}

async fn ranged_reads(store: &dyn Store, p: &str) {
    let key = format!("{p}data");
    let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    store
        .put(&key, Bytes::from(data.clone()), PutMode::Overwrite)
        .await
        .unwrap();
    for (start, end) in [(0u64, 1000u64), (0, 1), (10, 20), (999, 1000), (500, 500)] {
        let got = store
            .get(&key, Some(start..end))
            .await
            .unwrap()
            .expect("ranged get")
            .bytes()
            .await
            .unwrap();
        assert_eq!(&got[..], &data[start as usize..end as usize], "range {start}..{end}");
    }
}

async fn conditional_writes(store: &dyn Store, p: &str) {
    let key = format!("{p}tag");
    let first = store
        .put(&key, Bytes::from_static(b"one"), PutMode::Create)
        .await
        .expect("create on absent key");
    assert_eq!(
        store.put(&key, Bytes::from_static(b"two"), PutMode::Create).await,
        Err(StoreError::AlreadyExists),
        "a second create fails"
    );
    assert_eq!(
        get_all(store, &key).await.as_deref(),
        Some(&b"one"[..]),
        "the failed create changed nothing"
    );
    let second = store
        .put(&key, Bytes::from_static(b"two"), PutMode::Update(first.etag.clone()))
        .await
        .expect("update with the current etag");
    assert_ne!(second.etag, first.etag, "a rewrite changes the etag");
    assert_eq!(
        store
            .put(&key, Bytes::from_static(b"three"), PutMode::Update(first.etag.clone()))
            .await,
        Err(StoreError::PreconditionFailed),
        "update with a stale etag fails"
    );
    assert_eq!(get_all(store, &key).await.as_deref(), Some(&b"two"[..]));
    let missing = format!("{p}missing");
    assert_eq!(
        store
            .put(&missing, Bytes::from_static(b"x"), PutMode::Update(second.etag))
            .await,
        Err(StoreError::PreconditionFailed),
        "update of a missing key fails"
    );
    assert_eq!(store.head(&missing).await.unwrap(), None);
    store
        .put(&key, Bytes::from_static(b"four"), PutMode::Overwrite)
        .await
        .unwrap();
    assert_eq!(
        get_all(store, &key).await.as_deref(),
        Some(&b"four"[..]),
        "overwrite replaces"
    );
}

async fn listing(store: &dyn Store, p: &str) {
    let mut names: Vec<String> = (0..25).map(|i| format!("{p}k/{i:02}")).collect();
    names.push(format!("{p}k/sub/deep"));
    names.push(format!("{p}k-sibling"));
    for name in names.iter().rev() {
        store
            .put(name, Bytes::from_static(b"x"), PutMode::Overwrite)
            .await
            .unwrap();
    }
    let under_k = format!("{p}k/");
    let all = list_all(store, &under_k).await.unwrap();
    let mut expected: Vec<String> = names.iter().filter(|n| n.starts_with(&under_k)).cloned().collect();
    expected.sort();
    assert_eq!(
        all, expected,
        "list returns every key under the prefix, sorted, and no others"
    );

    let page = store.list(&under_k, None, 10).await.unwrap();
    assert_eq!(page.keys, expected[..10].to_vec(), "first page");
    assert!(page.more, "first page says more remain");
    let page = store.list(&under_k, Some(&expected[9]), 10).await.unwrap();
    assert_eq!(page.keys, expected[10..20].to_vec(), "page after a cursor");
    let page = store.list(&under_k, Some(&expected[19]), 100).await.unwrap();
    assert_eq!(page.keys, expected[20..].to_vec(), "last page");
    assert!(!page.more, "last page says nothing remains");
    let none = store.list(&format!("{p}nothing/"), None, 10).await.unwrap();
    assert!(none.keys.is_empty() && !none.more, "empty prefix");
}

async fn multipart(store: &dyn Store, p: &str) {
    let part = store.part_size();
    let key = format!("{p}object");
    let data: Vec<u8> = (0..(2 * part + 123)).map(|i| (i % 253) as u8).collect();
    let id = store.create_multipart(&key).await.unwrap();
    // Parts are written out of order: completion orders them.
    let p2 = store
        .put_part(&key, &id, 2, Bytes::copy_from_slice(&data[part..2 * part]))
        .await
        .unwrap();
    let p1 = store
        .put_part(&key, &id, 1, Bytes::copy_from_slice(&data[..part]))
        .await
        .unwrap();
    let p3 = store
        .put_part(&key, &id, 3, Bytes::copy_from_slice(&data[2 * part..]))
        .await
        .unwrap();
    assert_eq!(
        store.head(&key).await.unwrap(),
        None,
        "nothing is visible before completion"
    );
    let meta = store.complete_multipart(&key, &id, vec![p1, p2, p3]).await.unwrap();
    assert_eq!(meta.size, data.len() as u64);
    let got = store.get(&key, None).await.unwrap().unwrap().bytes().await.unwrap();
    assert!(got[..] == data[..], "completed object equals the parts in order");
    let tail = store
        .get(&key, Some(part as u64 - 5..part as u64 + 5))
        .await
        .unwrap()
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        &tail[..],
        &data[part - 5..part + 5],
        "ranged read across a part boundary"
    );

    let single = format!("{p}single");
    let id = store.create_multipart(&single).await.unwrap();
    let only = store
        .put_part(&single, &id, 1, Bytes::from_static(b"short"))
        .await
        .unwrap();
    store.complete_multipart(&single, &id, vec![only]).await.unwrap();
    assert_eq!(
        get_all(store, &single).await.as_deref(),
        Some(&b"short"[..]),
        "a single short part"
    );

    let aborted = format!("{p}aborted");
    let id = store.create_multipart(&aborted).await.unwrap();
    store
        .put_part(&aborted, &id, 1, Bytes::from(vec![1u8; part]))
        .await
        .unwrap();
    store.abort_multipart(&aborted, &id).await.unwrap();
    assert_eq!(
        store.head(&aborted).await.unwrap(),
        None,
        "an aborted upload leaves nothing"
    );
    store
        .abort_multipart(&aborted, &id)
        .await
        .expect("aborting twice succeeds");
}
