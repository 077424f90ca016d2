//! The storage contract: what every implementation of the storage port must
//! do, run against a live store and reported check by check.
//!
//! One contract serves every backend (memory, disk, S3, GCS, Azure, R2) and
//! every caller: the backends' tests assert that each check passed, `pier
//! check-storage` prints the results before instances are pointed at a
//! bucket, and the Worker's test route returns them as JSON. It is always
//! compiled, not a test feature, so it keeps core's no-panic rules: a store
//! that breaks the contract yields a failed check saying how, never a panic
//! or a loop without end. Each check works under its own part of the prefix
//! it is given, and the last one deletes everything under that prefix, so
//! the contract can run again and again against a store in use.
//!
//! Beyond single requests it checks what only shows under load or at scale:
//! conditional writes racing on one key (exactly one winner), listings
//! longer than the 1000 keys a backend returns per call, and reads at the
//! edges of objects and of multipart parts.

use std::collections::HashSet;
use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;

use super::memory::MemoryStore;
use super::{
    list_all, read_small, Capabilities, GetResult, ListPage, ObjectMeta, PartRef, PutMode, Store, StoreError,
    StoreResult,
};
use crate::platform::{BoxFuture, Env};

/// One check's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckResult {
    pub name: &'static str,
    /// `Err` says what the store did wrong.
    pub outcome: Result<(), String>,
    pub elapsed_ms: u64,
}

/// Whether every check of a run passed: `Ok` with the number of checks, or
/// one line per failed check (what tests assert on, so a failure reads well).
pub fn all_passed(results: &[CheckResult]) -> Result<usize, String> {
    let failures: Vec<String> = results
        .iter()
        .filter_map(|result| match &result.outcome {
            Ok(()) => None,
            Err(why) => Some(format!("{}: {why}", result.name)),
        })
        .collect();
    if failures.is_empty() {
        Ok(results.len())
    } else {
        Err(failures.join("\n"))
    }
}

type Outcome = Result<(), String>;

/// A check, given the store and the prefix it may write under.
type CheckFn = for<'a> fn(&'a dyn Store, &'a str) -> BoxFuture<'a, Outcome>;

struct Check {
    name: &'static str,
    run: CheckFn,
}

/// Writers racing on one key in the concurrency checks.
const RACERS: usize = 8;
/// Keys of the long listing: past the 1000 that R2 and S3 return per call.
const MANY_KEYS: usize = 1010;
/// Page size of the long listing, the most R2 returns.
const LONG_PAGE: usize = 1000;
/// Writes or deletes under way at once when many keys are set up or removed.
const BATCH: usize = 32;

/// Every check but the cleanup, in the order they run.
const CHECKS: &[Check] = &[
    Check {
        name: "list",
        run: |store, dir| Box::pin(unused_prefix_lists_nothing(store, dir)),
    },
    Check {
        name: "missing keys",
        run: |store, dir| Box::pin(missing_keys(store, dir)),
    },
    Check {
        name: "write and read",
        run: |store, dir| Box::pin(write_and_read(store, dir)),
    },
    Check {
        name: "ranged read",
        run: |store, dir| Box::pin(ranged_reads(store, dir)),
    },
    Check {
        name: "create only if absent",
        run: |store, dir| Box::pin(create_if_absent(store, dir)),
    },
    Check {
        name: "update only if unchanged",
        run: |store, dir| Box::pin(update_if_unchanged(store, dir)),
    },
    Check {
        name: "concurrent creates",
        run: |store, dir| Box::pin(concurrent_creates(store, dir)),
    },
    Check {
        name: "concurrent updates",
        run: |store, dir| Box::pin(concurrent_updates(store, dir)),
    },
    Check {
        name: "list in order with a cursor",
        run: |store, dir| Box::pin(list_in_order(store, dir)),
    },
    Check {
        name: "list past 1000 keys",
        run: |store, dir| Box::pin(list_past_a_thousand(store, dir)),
    },
    Check {
        name: "multipart write",
        run: |store, dir| Box::pin(multipart_write(store, dir)),
    },
    Check {
        name: "multipart abort",
        run: |store, dir| Box::pin(multipart_abort(store, dir)),
    },
    Check {
        name: "delete",
        run: |store, dir| Box::pin(delete(store, dir)),
    },
];

/// The last check: it removes what the others wrote, so it always runs.
const CLEANUP: &str = "deletes leave the prefix empty";

/// The names of the checks, in the order [`run`] reports them.
pub fn check_names() -> impl Iterator<Item = &'static str> {
    CHECKS.iter().map(|check| check.name).chain(std::iter::once(CLEANUP))
}

/// Runs every check under `prefix`, which must end with `/` and hold
/// nothing else (all under it is deleted at the end), timing each with
/// `env`'s clock.
pub async fn run(store: &dyn Store, env: &dyn Env, prefix: &str) -> Vec<CheckResult> {
    run_selected(store, env, prefix, |_| true).await
}

/// Runs the checks whose names `select` accepts, then the cleanup: for a
/// store known to lack something (an emulator that takes no writes), so
/// that the rest is still checked.
pub async fn run_selected(
    store: &dyn Store,
    env: &dyn Env,
    prefix: &str,
    select: impl Fn(&str) -> bool,
) -> Vec<CheckResult> {
    if prefix.is_empty() || !prefix.ends_with('/') {
        // The cleanup deletes everything under the prefix: never a whole store.
        return vec![CheckResult {
            name: CLEANUP,
            outcome: Err(format!(
                "the contract runs under a prefix ending with '/', not {prefix:?}"
            )),
            elapsed_ms: 0,
        }];
    }
    let mut results = Vec::new();
    for check in CHECKS.iter().filter(|check| select(check.name)) {
        let dir = format!("{prefix}{}/", check.name.replace(' ', "-"));
        results.push(timed(env, check.name, (check.run)(store, &dir)).await);
    }
    results.push(timed(env, CLEANUP, delete_everything(store, prefix)).await);
    results
}

async fn timed(env: &dyn Env, name: &'static str, check: impl Future<Output = Outcome>) -> CheckResult {
    let started = env.now_millis();
    let outcome = check.await;
    CheckResult {
        name,
        outcome,
        elapsed_ms: env.now_millis().saturating_sub(started),
    }
}

fn ensure(condition: bool, why: impl FnOnce() -> String) -> Outcome {
    if condition {
        Ok(())
    } else {
        Err(why())
    }
}

/// Names the store call that failed.
fn failed(what: &str) -> impl FnOnce(StoreError) -> String + '_ {
    move |err| format!("{what}: {err}")
}

/// `len` bytes that differ from one offset to the next and with `seed`, so
/// that bytes from the wrong place or the wrong object do not compare equal.
fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect::<Vec<u8>>().into()
}

/// The keys of `keys` in `range` (none where it falls outside).
fn window(keys: &[String], range: Range<usize>) -> Vec<String> {
    keys.get(range).map(<[String]>::to_vec).unwrap_or_default()
}

async fn read_whole(store: &dyn Store, key: &str) -> Result<Option<(Bytes, ObjectMeta)>, String> {
    read_small(store, key).await.map_err(failed(&format!("get {key}")))
}

/// Reads `key` whole and compares it with `expected`.
async fn expect_content(store: &dyn Store, key: &str, expected: &[u8]) -> Outcome {
    match read_whole(store, key).await? {
        Some((bytes, _)) if bytes == expected => Ok(()),
        Some((bytes, _)) => Err(format!(
            "{key} reads as {} bytes {}, not the {} bytes written",
            bytes.len(),
            preview(&bytes),
            expected.len()
        )),
        None => Err(format!("{key} is missing")),
    }
}

/// The start of some bytes, for a failure message.
fn preview(bytes: &[u8]) -> String {
    let shown = bytes.get(..bytes.len().min(24)).unwrap_or_default();
    format!(
        "{:?}{}",
        String::from_utf8_lossy(shown),
        if bytes.len() > 24 { "..." } else { "" }
    )
}

/// Reads `range` of `key`, which holds `data`, and compares the bytes and
/// the size the read reports (the whole object's).
async fn expect_range(store: &dyn Store, key: &str, data: &[u8], range: Range<u64>) -> Outcome {
    let read = store
        .get(key, Some(range.clone()))
        .await
        .map_err(failed(&format!("get {key} bytes {range:?}")))?
        .ok_or_else(|| format!("{key} is missing for a read of bytes {range:?}"))?;
    let reported = read.meta.size;
    let bytes = read
        .bytes()
        .await
        .map_err(failed(&format!("body of {key} bytes {range:?}")))?;
    let expected = data.get(range.start as usize..range.end as usize).unwrap_or_default();
    ensure(bytes == expected, || {
        format!(
            "bytes {range:?} of {key} read as {} bytes {}, expected {} bytes {}",
            bytes.len(),
            preview(&bytes),
            expected.len(),
            preview(expected)
        )
    })?;
    ensure(reported == data.len() as u64, || {
        format!(
            "a read of bytes {range:?} reports a size of {reported}, not the object's {}",
            data.len()
        )
    })
}

/// Writes `data` under every key, [`BATCH`] at a time.
async fn put_all(store: &dyn Store, keys: &[String], data: Bytes) -> Outcome {
    for batch in keys.chunks(BATCH) {
        let writes = batch.iter().map(|key| store.put(key, data.clone(), PutMode::Overwrite));
        for (key, written) in batch.iter().zip(join_all(writes).await) {
            written.map_err(failed(&format!("put {key}")))?;
        }
    }
    Ok(())
}

/// Deletes every key, [`BATCH`] at a time.
async fn delete_all(store: &dyn Store, keys: &[String]) -> Outcome {
    for batch in keys.chunks(BATCH) {
        let deletes = batch.iter().map(|key| store.delete(key));
        for (key, deleted) in batch.iter().zip(join_all(deletes).await) {
            deleted.map_err(failed(&format!("delete {key}")))?;
        }
    }
    Ok(())
}

fn expect_page(page: &ListPage, keys: Vec<String>, more: bool, what: &str) -> Outcome {
    ensure(page.keys == keys && page.more == more, || {
        format!(
            "{what}: listed {:?} (more: {}), expected {keys:?} (more: {more})",
            page.keys, page.more
        )
    })
}

async fn unused_prefix_lists_nothing(store: &dyn Store, dir: &str) -> Outcome {
    let page = store.list(dir, None, 10).await.map_err(failed("list"))?;
    expect_page(&page, Vec::new(), false, "an unused prefix")
}

async fn missing_keys(store: &dyn Store, dir: &str) -> Outcome {
    let key = format!("{dir}absent");
    let head = store.head(&key).await.map_err(failed("head"))?;
    ensure(head.is_none(), || format!("head of a missing key found {head:?}"))?;
    let whole = store.get(&key, None).await.map_err(failed("get"))?;
    ensure(whole.is_none(), || "get of a missing key found an object".into())?;
    let ranged = store.get(&key, Some(0..1)).await.map_err(failed("ranged get"))?;
    ensure(ranged.is_none(), || {
        "a ranged get of a missing key found an object".into()
    })?;
    store
        .delete(&key)
        .await
        .map_err(failed("deleting a missing key must succeed"))
}

async fn write_and_read(store: &dyn Store, dir: &str) -> Outcome {
    let key = format!("{dir}nested/plain");
    let written = store
        .put(&key, Bytes::from_static(b"pier check"), PutMode::Overwrite)
        .await
        .map_err(failed("put"))?;
    ensure(written.size == 10, || {
        format!("the write reports {written:?} for 10 bytes")
    })?;
    let head = store.head(&key).await.map_err(failed("head"))?;
    ensure(head.as_ref() == Some(&written), || {
        format!("head says {head:?}, the write said {written:?}")
    })?;
    match read_whole(store, &key).await? {
        Some((bytes, meta)) => ensure(bytes.as_ref() == b"pier check" && meta == written, || {
            format!(
                "read back {} with {meta:?}, wrote \"pier check\" as {written:?}",
                preview(&bytes)
            )
        })?,
        None => return Err("the object just written is missing".into()),
    }

    let empty = format!("{dir}empty");
    store
        .put(&empty, Bytes::new(), PutMode::Overwrite)
        .await
        .map_err(failed("put of an empty object"))?;
    let head = store.head(&empty).await.map_err(failed("head of an empty object"))?;
    ensure(head.as_ref().is_some_and(|meta| meta.size == 0), || {
        format!("an empty object has head {head:?}")
    })?;
    expect_content(store, &empty, b"").await?;

    let rewritten = store
        .put(&key, Bytes::from_static(b"rewritten"), PutMode::Overwrite)
        .await
        .map_err(failed("overwrite"))?;
    ensure(rewritten.etag != written.etag, || {
        format!("a rewrite kept the etag {:?}", written.etag)
    })?;
    expect_content(store, &key, b"rewritten").await?;
    let head = store.head(&key).await.map_err(failed("head after the rewrite"))?;
    ensure(head.as_ref() == Some(&rewritten), || {
        format!("after a rewrite head says {head:?}, the write said {rewritten:?}")
    })
}

async fn ranged_reads(store: &dyn Store, dir: &str) -> Outcome {
    let key = format!("{dir}data");
    let data = pattern(1000, 0x11);
    store
        .put(&key, data.clone(), PutMode::Overwrite)
        .await
        .map_err(failed("put"))?;
    // The whole object, its first and last byte, the middle, an empty range.
    for range in [0..1000, 0..1, 999..1000, 10..20, 500..500] {
        expect_range(store, &key, &data, range).await?;
    }
    let one = format!("{dir}one-byte");
    store
        .put(&one, Bytes::from_static(b"Z"), PutMode::Overwrite)
        .await
        .map_err(failed("put of a one-byte object"))?;
    expect_range(store, &one, b"Z", 0..1).await?;
    expect_content(store, &one, b"Z").await
}

async fn create_if_absent(store: &dyn Store, dir: &str) -> Outcome {
    let key = format!("{dir}created");
    let first = store
        .put(&key, Bytes::from_static(b"first"), PutMode::Create)
        .await
        .map_err(failed("create of an absent key"))?;
    let second = store.put(&key, Bytes::from_static(b"second"), PutMode::Create).await;
    ensure(second == Err(StoreError::AlreadyExists), || {
        format!("a second create must be refused as AlreadyExists, got {second:?}: the backend ignores If-None-Match")
    })?;
    expect_content(store, &key, b"first")
        .await
        .map_err(|why| format!("the refused create changed the object: {why}"))?;
    let head = store.head(&key).await.map_err(failed("head"))?;
    ensure(head.as_ref() == Some(&first), || {
        format!("after a refused create head says {head:?}, the create said {first:?}")
    })?;
    // A collected blob record is created anew by a later push.
    store.delete(&key).await.map_err(failed("delete"))?;
    store
        .put(&key, Bytes::from_static(b"again"), PutMode::Create)
        .await
        .map_err(failed("create of a deleted key"))?;
    expect_content(store, &key, b"again").await
}

async fn update_if_unchanged(store: &dyn Store, dir: &str) -> Outcome {
    let key = format!("{dir}updated");
    let first = store
        .put(&key, Bytes::from_static(b"one"), PutMode::Overwrite)
        .await
        .map_err(failed("put"))?;
    let second = store
        .put(&key, Bytes::from_static(b"two"), PutMode::Update(first.etag.clone()))
        .await
        .map_err(failed("update with the current etag"))?;
    ensure(second.etag != first.etag, || "an update kept the etag".into())?;
    let stale = store
        .put(&key, Bytes::from_static(b"three"), PutMode::Update(first.etag))
        .await;
    ensure(stale == Err(StoreError::PreconditionFailed), || {
        format!("an update with a stale etag must be refused as PreconditionFailed, got {stale:?}: the backend ignores If-Match")
    })?;
    expect_content(store, &key, b"two")
        .await
        .map_err(|why| format!("the refused update changed the object: {why}"))?;
    // The etag a write returns is the one the next update matches.
    store
        .put(&key, Bytes::from_static(b"four"), PutMode::Update(second.etag.clone()))
        .await
        .map_err(failed("update with the etag the last update returned"))?;
    expect_content(store, &key, b"four").await?;

    let missing = format!("{dir}missing");
    let absent = store
        .put(&missing, Bytes::from_static(b"x"), PutMode::Update(second.etag))
        .await;
    ensure(absent == Err(StoreError::PreconditionFailed), || {
        format!("an update of a missing key must be refused as PreconditionFailed, got {absent:?}")
    })?;
    let head = store.head(&missing).await.map_err(failed("head"))?;
    ensure(head.is_none(), || {
        "the refused update of a missing key created it".into()
    })
}

/// Of writes raced on one key, exactly one must succeed and every other
/// fail with `refusal`; the key then holds the winner's bytes.
async fn one_winner(
    store: &dyn Store,
    key: &str,
    attempts: Vec<StoreResult<ObjectMeta>>,
    refusal: StoreError,
) -> Outcome {
    let mut winners = Vec::new();
    for (writer, attempt) in attempts.into_iter().enumerate() {
        match attempt {
            Ok(meta) => winners.push((writer, meta)),
            Err(err) if err == refusal => {}
            Err(err) => return Err(format!("writer {writer} of {RACERS} failed with {err}, not {refusal}")),
        }
    }
    let [(writer, meta)] = winners.as_slice() else {
        let who: Vec<usize> = winners.iter().map(|(writer, _)| *writer).collect();
        return Err(format!(
            "{} of {RACERS} racing writes succeeded (writers {who:?}), not one",
            who.len()
        ));
    };
    let stored = read_whole(store, key).await?.ok_or("the raced key is missing")?;
    ensure(stored.0 == racer_bytes(*writer) && stored.1.etag == meta.etag, || {
        format!(
            "writer {writer} won, but the key holds {} with {:?}",
            preview(&stored.0),
            stored.1
        )
    })
}

fn racer_bytes(writer: usize) -> Bytes {
    Bytes::from(format!("written by racer {writer}"))
}

async fn concurrent_creates(store: &dyn Store, dir: &str) -> Outcome {
    let key = format!("{dir}contested");
    let attempts = (0..RACERS).map(|writer| store.put(&key, racer_bytes(writer), PutMode::Create));
    let attempts = join_all(attempts).await;
    one_winner(store, &key, attempts, StoreError::AlreadyExists).await
}

async fn concurrent_updates(store: &dyn Store, dir: &str) -> Outcome {
    let key = format!("{dir}contested");
    let base = store
        .put(&key, Bytes::from_static(b"base"), PutMode::Overwrite)
        .await
        .map_err(failed("put"))?;
    let attempts = (0..RACERS).map(|writer| store.put(&key, racer_bytes(writer), PutMode::Update(base.etag.clone())));
    let attempts = join_all(attempts).await;
    one_winner(store, &key, attempts, StoreError::PreconditionFailed).await
}

async fn list_in_order(store: &dyn Store, dir: &str) -> Outcome {
    let under = format!("{dir}k/");
    // `-` and `.` sort before `/`: a walk of directories must not list
    // `a/x` before `a-` or `a.b`.
    let mut names: Vec<String> = (0..25).map(|i| format!("{under}{i:02}")).collect();
    names.extend(["sub/deep", "a-", "a/x", "a.b"].map(|name| format!("{under}{name}")));
    let outside = [format!("{dir}k-sibling"), format!("{dir}kk")];
    put_all(store, &names, Bytes::from_static(b"x")).await?;
    put_all(store, &outside, Bytes::from_static(b"x")).await?;
    let mut expected = names;
    expected.sort();

    let all = list_all(store, &under).await.map_err(failed("list all"))?;
    ensure(all == expected, || {
        format!("listed {all:?}, expected every key under the prefix in byte order: {expected:?}")
    })?;
    let page = store.list(&under, None, 10).await.map_err(failed("list"))?;
    expect_page(&page, window(&expected, 0..10), true, "the first page")?;
    let cursor = expected.get(9).cloned().unwrap_or_default();
    let page = store.list(&under, Some(&cursor), 10).await.map_err(failed("list"))?;
    expect_page(&page, window(&expected, 10..20), true, "the page after a cursor")?;
    let cursor = expected.get(19).cloned().unwrap_or_default();
    let page = store.list(&under, Some(&cursor), 100).await.map_err(failed("list"))?;
    expect_page(&page, window(&expected, 20..expected.len()), false, "the last page")?;
    let cursor = expected
        .get(expected.len().saturating_sub(2))
        .cloned()
        .unwrap_or_default();
    let page = store.list(&under, Some(&cursor), 1).await.map_err(failed("list"))?;
    let last = expected.len().saturating_sub(1)..expected.len();
    expect_page(
        &page,
        window(&expected, last),
        false,
        "a page that ends with the last key",
    )?;

    // A cursor need not be a key (a client's `last=`).
    let between = format!("{under}04z");
    let page = store.list(&under, Some(&between), 2).await.map_err(failed("list"))?;
    expect_page(
        &page,
        vec![format!("{under}05"), format!("{under}06")],
        true,
        "the page after a cursor that is no key",
    )?;
    // Nor need a prefix end at a `/`.
    let partial = format!("{under}1");
    let page = store.list(&partial, None, 100).await.map_err(failed("list"))?;
    let tens = (10..20).map(|i| format!("{under}{i}")).collect();
    expect_page(&page, tens, false, "a prefix ending inside a name")
}

async fn list_past_a_thousand(store: &dyn Store, dir: &str) -> Outcome {
    let keys: Vec<String> = (0..MANY_KEYS).map(|i| format!("{dir}{i:04}")).collect();
    put_all(store, &keys, Bytes::new()).await?;
    // Page by page from the cursor, each page the next keys in order: a
    // store that ignored the cursor would list the first page again.
    let mut listed = 0;
    let mut cursor: Option<String> = None;
    while listed < keys.len() {
        let page = store
            .list(dir, cursor.as_deref(), LONG_PAGE)
            .await
            .map_err(failed("list"))?;
        let after = cursor.as_deref().unwrap_or("the start");
        ensure(!page.keys.is_empty() && page.keys.len() <= LONG_PAGE, || {
            format!(
                "the page after {after} holds {} keys, {} remaining, limit {LONG_PAGE}",
                page.keys.len(),
                keys.len() - listed
            )
        })?;
        let next = window(&keys, listed..listed + page.keys.len());
        ensure(page.keys == next, || {
            format!(
                "the page after {after} is not the next keys in order: it starts {:?}, expected {:?}",
                page.keys.iter().take(3).collect::<Vec<_>>(),
                next.iter().take(3).collect::<Vec<_>>()
            )
        })?;
        listed += page.keys.len();
        ensure(page.more == (listed < keys.len()), || {
            format!(
                "with {listed} of {} keys listed the page says more: {}",
                keys.len(),
                page.more
            )
        })?;
        cursor = page.keys.last().cloned();
    }
    let cursor = keys.get(499).cloned().unwrap_or_default();
    let page = store.list(dir, Some(&cursor), 3).await.map_err(failed("list"))?;
    expect_page(&page, window(&keys, 500..503), true, "a page from the middle")?;
    let all = list_all(store, dir).await.map_err(failed("list all"))?;
    ensure(all == keys, || {
        format!(
            "list_all returned {} keys, not the {} written in order",
            all.len(),
            keys.len()
        )
    })
}

/// Part size the store asks for, refusing one no multipart write can use.
fn part_size(store: &dyn Store) -> Result<usize, String> {
    let part = store.capabilities().part_size;
    ensure(part > 0, || "the store's part size is 0".into())?;
    Ok(part)
}

async fn multipart_write(store: &dyn Store, dir: &str) -> Outcome {
    let part = part_size(store)?;
    let key = format!("{dir}object");
    let data = pattern(2 * part + 123, 0x22);
    let id = store.create_multipart(&key).await.map_err(failed("create"))?;
    let written = write_three_parts(store, &key, &id, &data, part).await;
    if written.is_err() {
        // Leave no multipart write behind; the failure is the news.
        let _ = store.abort_multipart(&key, &id).await;
    }
    written?;

    let len = data.len() as u64;
    let part = part as u64;
    let head = store.head(&key).await.map_err(failed("head"))?;
    ensure(head.as_ref().is_some_and(|meta| meta.size == len), || {
        format!("the completed object has head {head:?}, {len} bytes were written")
    })?;
    expect_content(store, &key, &data).await?;
    // Reads at and across the seams of the parts.
    for range in [
        0..1,
        part - 1..part + 1,
        part..2 * part,
        2 * part - 1..2 * part + 1,
        part - 1..2 * part + 1,
        len - 1..len,
    ] {
        expect_range(store, &key, &data, range).await?;
    }

    // Over an object already at the key, which the completion replaces (an
    // upload's first bytes are kept in the object its parts complete to).
    let single = format!("{dir}single");
    store
        .put(&single, Bytes::from_static(b"there before"), PutMode::Create)
        .await
        .map_err(failed("the object there before"))?;
    let id = store.create_multipart(&single).await.map_err(failed("create"))?;
    let only = store
        .put_part(&single, &id, 1, Bytes::from_static(b"short"))
        .await
        .map_err(failed("the only part"))?;
    store
        .complete_multipart(&single, &id, vec![only])
        .await
        .map_err(failed("complete with one short part"))?;
    expect_content(store, &single, b"short").await
}

/// Writes `data` as three parts, out of order (completion orders them), and
/// completes them; nothing may be visible before.
async fn write_three_parts(store: &dyn Store, key: &str, id: &str, data: &Bytes, part: usize) -> Outcome {
    let second = store
        .put_part(key, id, 2, data.slice(part..2 * part))
        .await
        .map_err(failed("part 2"))?;
    let first = store
        .put_part(key, id, 1, data.slice(..part))
        .await
        .map_err(failed("part 1"))?;
    let third = store
        .put_part(key, id, 3, data.slice(2 * part..))
        .await
        .map_err(failed("part 3"))?;
    let before = store.head(key).await.map_err(failed("head"))?;
    ensure(before.is_none(), || "the object is visible before completion".into())?;
    let meta = store
        .complete_multipart(key, id, vec![first, second, third])
        .await
        .map_err(failed("complete"))?;
    ensure(meta.size == data.len() as u64, || {
        format!("completion reports {} bytes, the parts hold {}", meta.size, data.len())
    })
}

async fn multipart_abort(store: &dyn Store, dir: &str) -> Outcome {
    let part = part_size(store)?;
    let key = format!("{dir}aborted");
    let id = store.create_multipart(&key).await.map_err(failed("create"))?;
    store
        .put_part(&key, &id, 1, pattern(part, 0x33))
        .await
        .map_err(failed("part 1"))?;
    store.abort_multipart(&key, &id).await.map_err(failed("abort"))?;
    let head = store.head(&key).await.map_err(failed("head"))?;
    ensure(head.is_none(), || format!("an aborted write left {head:?}"))?;
    let page = store.list(dir, None, 10).await.map_err(failed("list"))?;
    expect_page(&page, Vec::new(), false, "after an abort")?;
    store
        .abort_multipart(&key, &id)
        .await
        .map_err(failed("aborting twice must succeed"))
}

async fn delete(store: &dyn Store, dir: &str) -> Outcome {
    let (first, second) = (format!("{dir}d/first"), format!("{dir}d/second"));
    put_all(store, &[first.clone(), second.clone()], Bytes::from_static(b"x")).await?;
    store.delete(&first).await.map_err(failed("delete"))?;
    let head = store.head(&first).await.map_err(failed("head"))?;
    ensure(head.is_none(), || format!("a deleted key has head {head:?}"))?;
    let read = store.get(&first, None).await.map_err(failed("get"))?;
    ensure(read.is_none(), || "a deleted key can still be read".into())?;
    let page = store.list(dir, None, 10).await.map_err(failed("list"))?;
    expect_page(&page, vec![second.clone()], false, "after one of two keys was deleted")?;
    expect_content(store, &second, b"x").await?;
    store
        .delete(&first)
        .await
        .map_err(failed("deleting a deleted key must succeed"))?;
    // Once a "directory" is emptied, keys can be written into it again.
    store.delete(&second).await.map_err(failed("delete"))?;
    let again = format!("{dir}d/again");
    store
        .put(&again, Bytes::from_static(b"y"), PutMode::Create)
        .await
        .map_err(failed("create after the prefix was emptied"))?;
    expect_content(store, &again, b"y").await?;
    store.delete(&again).await.map_err(failed("delete"))?;
    let page = store.list(dir, None, 10).await.map_err(failed("list"))?;
    expect_page(&page, Vec::new(), false, "after every key was deleted")
}

/// Deletes every key under `prefix`, page by page from the start (no
/// cursor, so it cleans up even where listing after one is broken), and
/// checks that nothing is listed after.
async fn delete_everything(store: &dyn Store, prefix: &str) -> Outcome {
    let mut deleted: HashSet<String> = HashSet::new();
    loop {
        let page = store.list(prefix, None, LONG_PAGE).await.map_err(failed("list"))?;
        if let Some(foreign) = page.keys.iter().find(|key| !key.starts_with(prefix)) {
            return Err(format!("listing {prefix} returned {foreign}, outside it"));
        }
        if let Some(kept) = page.keys.iter().find(|key| deleted.contains(*key)) {
            return Err(format!("{kept} is still listed after it was deleted"));
        }
        if page.keys.is_empty() {
            return ensure(!page.more, || "an empty listing says more keys remain".into());
        }
        delete_all(store, &page.keys).await?;
        deleted.extend(page.keys);
    }
}

/// Capabilities no backend has, reported by the probe [`check_wrapper`]
/// wraps, so that a wrapper answering for itself shows.
const PROBE_CAPABILITIES: Capabilities = Capabilities {
    part_size: 12_345,
    part_writes_in_flight: 3,
    single_process: true,
    unsynced_epoch: 77,
};

/// What the probe answers to `signed_url`.
fn probe_url(key: &str, expires: Duration) -> String {
    format!("https://probe.invalid/{key}?expires={}", expires.as_secs())
}

/// Checks that a store wrapping another (a cache, a metering layer)
/// reports exactly the capabilities of the store it wraps and forwards
/// `signed_url` to it. `wrap` builds the wrapper around the store it is
/// given: a probe with capabilities and signed URLs no default would give.
pub async fn check_wrapper<W: Store>(wrap: impl FnOnce(Arc<dyn Store>) -> W) -> Result<(), String> {
    let wrapper = wrap(Arc::new(Probe(MemoryStore::new(PROBE_CAPABILITIES.part_size))));
    let mut wrong = Vec::new();
    let reported = wrapper.capabilities();
    if reported != PROBE_CAPABILITIES {
        wrong.push(format!(
            "it reports {reported:?}, the store it wraps {PROBE_CAPABILITIES:?}"
        ));
    }
    let (key, expires) = ("blobs/sha256/probe", Duration::from_secs(321));
    let expected = probe_url(key, expires);
    match wrapper.signed_url(key, expires).await {
        Ok(Some(url)) if url == expected => {}
        other => wrong.push(format!("signed_url gave {other:?}, the store it wraps {expected:?}")),
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("; "))
    }
}

/// The store [`check_wrapper`] wraps: objects in memory, and answers to
/// `capabilities` and `signed_url` that only forwarding can give.
struct Probe(MemoryStore);

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl Store for Probe {
    async fn head(&self, key: &str) -> StoreResult<Option<ObjectMeta>> {
        self.0.head(key).await
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> StoreResult<Option<GetResult>> {
        self.0.get(key, range).await
    }

    async fn put(&self, key: &str, data: Bytes, mode: PutMode) -> StoreResult<ObjectMeta> {
        self.0.put(key, data, mode).await
    }

    async fn put_volatile(&self, key: &str, data: Bytes, mode: PutMode) -> StoreResult<ObjectMeta> {
        self.0.put_volatile(key, data, mode).await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.0.delete(key).await
    }

    async fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> StoreResult<ListPage> {
        self.0.list(prefix, start_after, limit).await
    }

    fn capabilities(&self) -> Capabilities {
        PROBE_CAPABILITIES
    }

    async fn create_multipart(&self, key: &str) -> StoreResult<String> {
        self.0.create_multipart(key).await
    }

    async fn put_part(&self, key: &str, upload_id: &str, number: u32, data: Bytes) -> StoreResult<PartRef> {
        self.0.put_part(key, upload_id, number, data).await
    }

    async fn complete_multipart(&self, key: &str, upload_id: &str, parts: Vec<PartRef>) -> StoreResult<ObjectMeta> {
        self.0.complete_multipart(key, upload_id, parts).await
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> StoreResult<()> {
        self.0.abort_multipart(key, upload_id).await
    }

    async fn signed_url(&self, key: &str, expires: Duration) -> StoreResult<Option<String>> {
        Ok(Some(probe_url(key, expires)))
    }

    async fn forget(&self, _key: &str) {}
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;

    use super::*;
    use crate::testing::TestEnv;

    /// A promise of the port that [`Broken`] does not keep.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Fault {
        CreateOverwrites,
        UpdateIgnoresEtag,
        ListIgnoresCursor,
        RangesReadWhole,
        AnswersForItself,
    }

    /// A store over another that breaks one promise.
    struct Broken {
        inner: Arc<dyn Store>,
        fault: Fault,
    }

    #[async_trait::async_trait]
    impl Store for Broken {
        async fn head(&self, key: &str) -> StoreResult<Option<ObjectMeta>> {
            self.inner.head(key).await
        }

        async fn get(&self, key: &str, range: Option<Range<u64>>) -> StoreResult<Option<GetResult>> {
            let range = range.filter(|_| self.fault != Fault::RangesReadWhole);
            self.inner.get(key, range).await
        }

        async fn put(&self, key: &str, data: Bytes, mode: PutMode) -> StoreResult<ObjectMeta> {
            let mode = match (self.fault, mode) {
                (Fault::CreateOverwrites, PutMode::Create) | (Fault::UpdateIgnoresEtag, PutMode::Update(_)) => {
                    PutMode::Overwrite
                }
                (_, mode) => mode,
            };
            self.inner.put(key, data, mode).await
        }

        async fn put_volatile(&self, key: &str, data: Bytes, mode: PutMode) -> StoreResult<ObjectMeta> {
            self.put(key, data, mode).await
        }

        async fn delete(&self, key: &str) -> StoreResult<()> {
            self.inner.delete(key).await
        }

        async fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> StoreResult<ListPage> {
            let start_after = start_after.filter(|_| self.fault != Fault::ListIgnoresCursor);
            self.inner.list(prefix, start_after, limit).await
        }

        fn capabilities(&self) -> Capabilities {
            match self.fault {
                Fault::AnswersForItself => Capabilities::shared(self.inner.capabilities().part_size),
                _ => self.inner.capabilities(),
            }
        }

        async fn create_multipart(&self, key: &str) -> StoreResult<String> {
            self.inner.create_multipart(key).await
        }

        async fn put_part(&self, key: &str, upload_id: &str, number: u32, data: Bytes) -> StoreResult<PartRef> {
            self.inner.put_part(key, upload_id, number, data).await
        }

        async fn complete_multipart(&self, key: &str, upload_id: &str, parts: Vec<PartRef>) -> StoreResult<ObjectMeta> {
            self.inner.complete_multipart(key, upload_id, parts).await
        }

        async fn abort_multipart(&self, key: &str, upload_id: &str) -> StoreResult<()> {
            self.inner.abort_multipart(key, upload_id).await
        }

        async fn signed_url(&self, key: &str, expires: Duration) -> StoreResult<Option<String>> {
            match self.fault {
                Fault::AnswersForItself => Ok(None),
                _ => self.inner.signed_url(key, expires).await,
            }
        }

        async fn forget(&self, key: &str) {
            self.inner.forget(key).await
        }
    }

    #[test]
    fn each_broken_promise_fails_the_checks_that_rely_on_it() {
        for (fault, expected) in [
            (Fault::CreateOverwrites, ["create only if absent", "concurrent creates"]),
            (
                Fault::UpdateIgnoresEtag,
                ["update only if unchanged", "concurrent updates"],
            ),
            (
                Fault::ListIgnoresCursor,
                ["list in order with a cursor", "list past 1000 keys"],
            ),
            (Fault::RangesReadWhole, ["ranged read", "multipart write"]),
        ] {
            let memory = Arc::new(MemoryStore::new(64));
            let store = Broken {
                inner: memory.clone(),
                fault,
            };
            let results = block_on(run(&store, &TestEnv::at(0), "contract/"));
            let failed: Vec<&str> = results
                .iter()
                .filter(|result| result.outcome.is_err())
                .map(|result| result.name)
                .collect();
            assert_eq!(failed, expected, "{fault:?}: {results:#?}");
            assert_eq!(results.len(), check_names().count(), "{fault:?}: every check ran");
            assert_eq!(memory.total_bytes(), 0, "{fault:?}: the contract cleaned up");
            if fault == Fault::CreateOverwrites {
                let race = results.iter().find(|result| result.name == "concurrent creates");
                let why = race.and_then(|result| result.outcome.clone().err()).unwrap_or_default();
                assert!(why.contains("8 of 8 racing writes succeeded"), "{why}");
            }
        }
    }

    #[test]
    fn a_wrapper_answering_for_itself_is_caught() {
        let outcome = block_on(check_wrapper(|inner| Broken {
            inner,
            fault: Fault::AnswersForItself,
        }));
        let why = outcome.expect_err("the wrapper forwards nothing");
        assert!(
            why.contains("it reports") && why.contains("signed_url gave Ok(None)"),
            "{why}"
        );
    }

    #[test]
    fn never_runs_over_a_whole_store() {
        let memory = MemoryStore::new(64);
        block_on(memory.put("kept", Bytes::from_static(b"x"), PutMode::Overwrite)).unwrap();
        for prefix in ["", "no-slash"] {
            let results = block_on(run(&memory, &TestEnv::at(0), prefix));
            assert!(matches!(all_passed(&results), Err(why) if why.contains("prefix ending with '/'")));
        }
        assert!(block_on(memory.head("kept")).unwrap().is_some(), "nothing was touched");
    }
}
