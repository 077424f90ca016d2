//! One blob's move between the main store and the archive store, as a state
//! machine whose state is a record in the main store, so that a crash or a
//! Worker invocation's end at any point loses nothing and leaves no copy
//! that no record names.
//!
//! A move first writes its intent (`archive/moves/<alg>/<hex>`: direction,
//! object, progress), then copies the bytes part by part (saving the
//! progress and the running hash after each part, so the next step goes on
//! from there), checks the copy's digest, flips the blob record's
//! `archived` flag by a conditional write, deletes the source copy and
//! finally the intent. Until the flip the record names the source, which is
//! whole; after it, the destination, which is whole and checked. Any intent
//! found later is finished from where it stands: a copy not flipped yet goes
//! on (or is thrown away if its blob changed or went), a flipped one only
//! needs its source deleted.

use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::digest::{Digest, Hasher};
use crate::error::{ErrorCode, RegistryError, Result};
use crate::layout;
use crate::platform::Env;
use crate::records::BlobRecord;
use crate::store::{read_small, PartRef, PutMode, Store, StoreError};

/// Which way a blob goes.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Main store to archive store.
    Out,
    /// Archive store back to the main store.
    In,
}

/// A move under way, as saved in its intent record.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Intent {
    digest: String,
    direction: Direction,
    /// The data key, the same in both stores.
    object: String,
    size: u64,
    /// The multipart write of the destination, for blobs over one part.
    multipart: Option<String>,
    parts: Vec<PartRef>,
    /// Bytes copied and hashed so far.
    copied: u64,
    /// The hash of the bytes copied so far (multipart copies).
    hash: Option<String>,
    /// The destination holds the whole object, its digest checked.
    copied_whole: bool,
    /// The record flipped: only the source copy remains to delete.
    flipped: bool,
}

impl Intent {
    /// A move of `object` (`size` bytes) about to start.
    fn new(digest: &Digest, direction: Direction, object: String, size: u64) -> Intent {
        Intent {
            digest: digest.to_string(),
            direction,
            object,
            size,
            multipart: None,
            parts: Vec::new(),
            copied: 0,
            hash: None,
            copied_whole: false,
            flipped: false,
        }
    }
}

/// How a step of a move ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Moved {
    /// The blob is where it was sent.
    Done,
    /// The deadline came first; the intent holds the progress.
    Unfinished,
    /// The blob went or changed under the move (a collection, a new upload):
    /// the copy was thrown away.
    Abandoned,
}

/// The two stores a move is between.
pub struct Stores<'a> {
    pub main: &'a dyn Store,
    pub archive: &'a dyn Store,
}

impl<'a> Stores<'a> {
    fn source(&self, direction: Direction) -> &'a dyn Store {
        match direction {
            Direction::Out => self.main,
            Direction::In => self.archive,
        }
    }

    fn destination(&self, direction: Direction) -> &'a dyn Store {
        match direction {
            Direction::Out => self.archive,
            Direction::In => self.main,
        }
    }
}

fn corrupt(key: &str, e: impl std::fmt::Display) -> RegistryError {
    RegistryError::new(ErrorCode::Internal, format!("corrupt archive record {key}: {e}"))
}

async fn read_intent(main: &dyn Store, key: &str) -> Result<Option<Intent>> {
    match read_small(main, key).await? {
        None => Ok(None),
        Some((bytes, _)) => serde_json::from_slice(&bytes).map(Some).map_err(|e| corrupt(key, e)),
    }
}

/// The data key a move under way (its intent at `key`) copies, if any.
pub(crate) async fn moving_object(main: &dyn Store, key: &str) -> Result<Option<String>> {
    Ok(read_intent(main, key).await?.map(|intent| intent.object))
}

async fn save_intent(main: &dyn Store, key: &str, intent: &Intent) -> Result<()> {
    let bytes = serde_json::to_vec(intent).map_err(|e| RegistryError::unserializable("an archive move", e))?;
    main.put(key, bytes.into(), PutMode::Overwrite).await?;
    Ok(())
}

/// The blob record with its etag, if the blob exists.
pub(crate) async fn read_record(main: &dyn Store, digest: &Digest) -> Result<Option<(BlobRecord, String)>> {
    let key = layout::blob_record(digest);
    match read_small(main, &key).await? {
        None => Ok(None),
        Some((bytes, meta)) => {
            let record: BlobRecord = serde_json::from_slice(&bytes).map_err(|e| corrupt(&key, e))?;
            Ok(Some((record, meta.etag)))
        }
    }
}

/// Starts (or goes on with) moving `digest` in `direction`, working until
/// `deadline_ms` by `env`'s clock. A blob already where it is sent is `Done` at once.
pub async fn advance(
    stores: &Stores<'_>,
    digest: &Digest,
    direction: Direction,
    env: &dyn Env,
    deadline_ms: u64,
) -> Result<Moved> {
    let key = layout::archive_move(digest);
    let mut intent = match read_intent(stores.main, &key).await? {
        Some(intent) => intent,
        None => {
            let Some((record, _)) = read_record(stores.main, digest).await? else {
                return Ok(Moved::Abandoned);
            };
            if record.archived == (direction == Direction::Out) {
                return Ok(Moved::Done);
            }
            let intent = Intent::new(digest, direction, record.object, record.size);
            save_intent(stores.main, &key, &intent).await?;
            intent
        }
    };
    resume(stores, digest, &key, &mut intent, env, deadline_ms).await
}

/// Finishes whatever move of `digest` an intent records (a crash's
/// leftover), within the deadline.
pub async fn resume_intent(stores: &Stores<'_>, digest: &Digest, env: &dyn Env, deadline_ms: u64) -> Result<Moved> {
    let key = layout::archive_move(digest);
    match read_intent(stores.main, &key).await? {
        None => Ok(Moved::Done),
        Some(mut intent) => resume(stores, digest, &key, &mut intent, env, deadline_ms).await,
    }
}

async fn resume(
    stores: &Stores<'_>,
    digest: &Digest,
    key: &str,
    intent: &mut Intent,
    env: &dyn Env,
    deadline_ms: u64,
) -> Result<Moved> {
    let direction = intent.direction;
    let (source, destination) = (stores.source(direction), stores.destination(direction));
    if !intent.flipped {
        let current = read_record(stores.main, digest).await?;
        let still_the_same = current.as_ref().is_some_and(|(record, _)| {
            record.object == intent.object
                && record.size == intent.size
                && record.archived == (direction == Direction::In)
        });
        if !still_the_same {
            abandon(stores, key, intent, digest).await?;
            return Ok(Moved::Abandoned);
        }
        if !intent.copied_whole {
            match copy(source, destination, digest, key, intent, stores.main, env, deadline_ms).await? {
                Copied::Whole => {
                    intent.copied_whole = true;
                    save_intent(stores.main, key, intent).await?;
                }
                Copied::Partly => return Ok(Moved::Unfinished),
                Copied::SourceGone => {
                    abandon(stores, key, intent, digest).await?;
                    return Ok(Moved::Abandoned);
                }
            }
        }
        // The flip: the record names the copy now, if nobody changed it meanwhile.
        let Some((mut record, etag)) = read_record(stores.main, digest).await? else {
            abandon(stores, key, intent, digest).await?;
            return Ok(Moved::Abandoned);
        };
        if record.object != intent.object || record.archived != (direction == Direction::In) {
            abandon(stores, key, intent, digest).await?;
            return Ok(Moved::Abandoned);
        }
        record.archived = direction == Direction::Out;
        let bytes = serde_json::to_vec(&record).map_err(|e| RegistryError::unserializable("a blob record", e))?;
        match stores
            .main
            .put(&layout::blob_record(digest), bytes.into(), PutMode::Update(etag))
            .await
        {
            Ok(_) => {}
            Err(StoreError::PreconditionFailed) => {
                abandon(stores, key, intent, digest).await?;
                return Ok(Moved::Abandoned);
            }
            Err(e) => return Err(e.into()),
        }
        stores.main.forget(&layout::blob_record(digest)).await;
        intent.flipped = true;
        save_intent(stores.main, key, intent).await?;
    }
    source.delete(&intent.object).await?;
    stores.main.delete(key).await?;
    Ok(Moved::Done)
}

/// Ends a move that cannot go on as planned, by what the record says now:
/// if it names the destination (another mover, or this one before a crash,
/// flipped it), the source is the stray copy; otherwise the destination is
/// (and its multipart write), and the source stays. Then the intent goes.
/// So two movers on one blob never delete the copy the record names.
async fn abandon(stores: &Stores<'_>, key: &str, intent: &Intent, digest: &Digest) -> Result<()> {
    let direction = intent.direction;
    let landed = read_record(stores.main, digest)
        .await?
        .is_some_and(|(record, _)| record.object == intent.object && record.archived == (direction == Direction::Out));
    if landed {
        stores.source(direction).delete(&intent.object).await?;
    } else {
        let destination = stores.destination(direction);
        if let Some(upload) = &intent.multipart {
            destination.abort_multipart(&intent.object, upload).await?;
        }
        destination.delete(&intent.object).await?;
    }
    stores.main.delete(key).await?;
    Ok(())
}

enum Copied {
    Whole,
    Partly,
    SourceGone,
}

/// Copies what remains of the object, a part at a time, hashing as it goes;
/// the progress is saved after each part. The digest is checked at the end.
#[allow(clippy::too_many_arguments)]
async fn copy(
    source: &dyn Store,
    destination: &dyn Store,
    digest: &Digest,
    key: &str,
    intent: &mut Intent,
    main: &dyn Store,
    env: &dyn Env,
    deadline_ms: u64,
) -> Result<Copied> {
    let part_size = destination.capabilities().part_size as u64;
    let mut hasher = match &intent.hash {
        Some(saved) => {
            Hasher::restore(digest.algorithm(), saved).ok_or_else(|| corrupt(key, "an unreadable hash state"))?
        }
        None => Hasher::new(digest.algorithm()),
    };
    if intent.size <= part_size {
        let Some(bytes) = read_range(source, &intent.object, 0..intent.size).await? else {
            return Ok(Copied::SourceGone);
        };
        hasher.update(&bytes);
        check_digest(digest, hasher)?;
        destination.put(&intent.object, bytes, PutMode::Overwrite).await?;
        intent.copied = intent.size;
        return Ok(Copied::Whole);
    }
    let upload = match &intent.multipart {
        Some(upload) => upload.clone(),
        None => {
            let upload = destination.create_multipart(&intent.object).await?;
            intent.multipart = Some(upload.clone());
            save_intent(main, key, intent).await?;
            upload
        }
    };
    // At least one part per step, so that every step gets somewhere.
    let mut parts_this_step = 0;
    while intent.copied < intent.size {
        if parts_this_step > 0 && env.now_millis() >= deadline_ms {
            return Ok(Copied::Partly);
        }
        parts_this_step += 1;
        let end = (intent.copied + part_size).min(intent.size);
        let Some(bytes) = read_range(source, &intent.object, intent.copied..end).await? else {
            return Ok(Copied::SourceGone);
        };
        hasher.update(&bytes);
        let number = intent.parts.len() as u32 + 1;
        let part = destination.put_part(&intent.object, &upload, number, bytes).await?;
        intent.parts.push(part);
        intent.copied = end;
        intent.hash = Some(hasher.save());
        save_intent(main, key, intent).await?;
    }
    check_digest(digest, hasher)?;
    match destination
        .complete_multipart(&intent.object, &upload, intent.parts.clone())
        .await
    {
        Ok(_) => Ok(Copied::Whole),
        // Completed by this move before it was killed, with no time to say
        // so: only this move writes the object, so one of the full size is
        // the copy, checked above. (Else every later pass failed here.)
        Err(StoreError::NotFound) if completed_before(destination, intent).await? => Ok(Copied::Whole),
        Err(e) => Err(e.into()),
    }
}

/// Whether the destination already holds the move's object, whole.
async fn completed_before(destination: &dyn Store, intent: &Intent) -> Result<bool> {
    let meta = destination.head(&intent.object).await?;
    Ok(meta.is_some_and(|meta| meta.size == intent.size))
}

fn check_digest(expected: &Digest, hasher: Hasher) -> Result<()> {
    let actual = hasher.finish();
    if &actual != expected {
        return Err(RegistryError::new(
            ErrorCode::Internal,
            format!("the stored bytes of blob {expected} hash to {actual}: not moved"),
        ));
    }
    Ok(())
}

/// The bytes of `range` of `object` (an empty range: the whole, empty, object).
async fn read_range(store: &dyn Store, object: &str, range: std::ops::Range<u64>) -> Result<Option<Bytes>> {
    let asked = (range.start < range.end).then_some(range.clone());
    let Some(result) = store.get(object, asked).await? else {
        return Ok(None);
    };
    let mut body = result.body;
    let mut bytes = Vec::with_capacity((range.end - range.start) as usize);
    while let Some(chunk) = body.next().await {
        bytes.extend_from_slice(&chunk?);
    }
    Ok(Some(bytes.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Algorithm;
    use crate::store::memory::MemoryStore;
    use crate::testing::TestEnv;

    /// A move killed after it completed the destination's multipart write
    /// but before it saved that: the next pass finds the write gone and the
    /// object whole, and goes on.
    #[test]
    fn a_copy_completed_before_a_kill_is_taken_as_whole() {
        futures::executor::block_on(async {
            let (source, destination, main) = (MemoryStore::new(8), MemoryStore::new(8), MemoryStore::new(8));
            let bytes: Vec<u8> = (0..20u8).collect();
            let digest = Digest::of(Algorithm::Sha256, &bytes);
            source
                .put("data/x", Bytes::from(bytes), PutMode::Overwrite)
                .await
                .unwrap();
            let mut intent = Intent::new(&digest, Direction::Out, "data/x".into(), 20);
            let env = TestEnv::default();
            let copied = copy(
                &source,
                &destination,
                &digest,
                "intent",
                &mut intent,
                &main,
                &env,
                u64::MAX,
            )
            .await;
            assert!(matches!(copied, Ok(Copied::Whole)));
            // The kill: the intent as last saved, before the completion.
            let (saved, _) = read_small(&main, "intent").await.unwrap().unwrap();
            let mut resumed: Intent = serde_json::from_slice(&saved).unwrap();
            let copied = copy(
                &source,
                &destination,
                &digest,
                "intent",
                &mut resumed,
                &main,
                &env,
                u64::MAX,
            )
            .await;
            assert!(matches!(copied, Ok(Copied::Whole)), "resumed after the completion");
            let (stored, _) = read_small(&destination, "data/x").await.unwrap().unwrap();
            assert_eq!(stored.len(), 20);
        });
    }
}
