//! The blob upload state machine: POST, PATCH*, PUT, and the monolithic forms.
//!
//! Bytes go straight to their final object as equal-size multipart parts; what
//! is left over after a request (less than one part) is kept as "tail" pieces
//! beside the session until the next request completes a part. The running hash
//! state, offset, parts and tails are saved as a new state key after every
//! request (`uploads/<id>/s/<seq>`, created conditionally, so two concurrent
//! writers cannot both win and no key is rewritten). Any instance can therefore
//! take the next request, memory stays under a few parts per upload (one
//! arriving, the store's `part_writes_in_flight` being written), and nothing
//! is visible until the digest is verified and the blob record written.
//!
//! A session's first chunk, when it is all of its request and less than a
//! part (docker's one PATCH of a small layer), is the exception: it goes to
//! the session's data object itself ([`Tail::Whole`]), which a final PUT
//! adding nothing makes the blob, so small pushes write their bytes once.
//!
//! Keys two requests could both write (the session's multipart parts and its
//! data object) are written only under a claim: a new state naming the
//! request as the writer, so a second concurrent request is refused before it
//! writes one and can never overwrite a part of the first. A claim left by a
//! crashed request lapses after [`CLAIM_LEASE_MS`] (long requests renew
//! theirs), or at once on a single-process store when the claim was made by
//! an earlier run of the process. Everything else a request writes has a key
//! of its own (tail pieces carry the request's nonce, a blob that fits in its
//! last request gets a fresh data object), or is created only if absent (a
//! first chunk in the session's data object), so a request that writes no part,
//! the common chunk and the common final PUT, claims nothing: its state's
//! conditional creation alone decides whether it wins.
//!
//! States are kept until upload expiry, even after the session ends (its
//! newest state then a closed marker): a state's number is never free again,
//! so a request holding a view older than later states can never create one
//! of theirs anew and be told it won, nor bring an ended session back and
//! write into the object a finished PUT made the blob. What a request makes
//! obsolete (merged tails, a losing request's piece, an ended session's
//! bytes) is handed back as [`Leftovers`] for the platform to remove after
//! the answer: the client waits for none of it, and a crash before it runs
//! leaves only keys upload expiry removes.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use futures::future::Either;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::body::{BodyError, RequestBody};
use crate::digest::{Algorithm, Digest, Hasher};
use crate::error::{ErrorCode, RegistryError, Result};
use crate::layout;
use crate::names::RepoName;
use crate::platform::{BoxFuture, Env};
use crate::records::BlobRecord;
use crate::store::{list_all, read_small, PartRef, PutMode, Store, StoreError};
use crate::upload_id;

/// What the registry does while a finishing upload writes its blob's record,
/// given the blob's size, once the bytes are stored and their digest checked:
/// it links the blob into the repository there, so the client waits for one
/// round trip instead of two (docs/gc.md, "Links written beside their
/// record", says why a link may land before its record).
#[cfg(not(target_arch = "wasm32"))]
pub type BesideRecord<'a> = Box<dyn FnOnce(u64) -> BoxFuture<'a, Result<()>> + Send + 'a>;
#[cfg(target_arch = "wasm32")]
pub type BesideRecord<'a> = Box<dyn FnOnce(u64) -> BoxFuture<'a, Result<()>> + 'a>;

/// The persisted state of an upload session.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UploadState {
    pub repo: String,
    pub algorithm: Algorithm,
    /// Bytes received so far.
    pub offset: u64,
    /// Saved hasher state after `offset` bytes.
    pub hash: String,
    pub part_size: u64,
    pub multipart: Option<String>,
    pub parts: Vec<PartRef>,
    /// The tail pieces covering `[flushed, offset)`, in order; at most
    /// [`MAX_TAIL_PIECES`].
    pub tails: Vec<Tail>,
    /// The generation of older builds' tail pieces' keys (`Tail::Legacy`).
    #[serde(default)]
    pub tail_generation: u64,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// The request writing to the session now, if any (see [`CLAIM_LEASE_MS`]).
    #[serde(default)]
    pub writer: Option<String>,
    /// Whether `hash` covers the tail pieces too, as older builds saved it,
    /// or only the parts: tails are hashed when they join a part or the
    /// blob, so a chunk that completes no part is never hashed twice over,
    /// and a blob that fits in its last request can be hashed in one piece
    /// by the platform (`Env::digest_of`).
    #[serde(default = "older_builds_hashed_tails")]
    pub tails_hashed: bool,
    /// The store's [`crate::store::Capabilities::unsynced_epoch`] when this state was
    /// saved: parts are flushed only when the upload completes, so under
    /// another epoch (the machine restarted) they may be gone or torn, and
    /// the session is unknown.
    #[serde(default)]
    pub epoch: u64,
}

fn older_builds_hashed_tails() -> bool {
    true
}

/// A piece of the bytes past the last part, kept beside the session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Tail {
    /// Bytes from `offset` on, in the key of the request that drew `nonce`.
    Named { offset: u64, nonce: String },
    /// Bytes from this offset on, as older builds named them (by offset and
    /// the state's generation); still read, never written.
    Legacy(u64),
    /// The session's first `whole` bytes, sent by one request at offset 0,
    /// in the session's own data object (`data/<id>`), which that request
    /// created only if absent, so no other request's bytes are in it. A
    /// final PUT that adds nothing makes that object the blob, verified by
    /// `digest` (computed as the bytes arrived), instead of reading and
    /// writing the bytes again. Older builds read a state naming one as
    /// torn, so to them the session is unknown, never misread.
    Whole { whole: u64, digest: String },
}

impl Tail {
    fn key(&self, id: &str, generation: u64) -> String {
        match self {
            Tail::Named { offset, nonce } => layout::upload_tail_piece(id, *offset, nonce),
            Tail::Legacy(offset) => layout::upload_tail(id, generation, *offset),
            Tail::Whole { .. } => layout::blob_data(id),
        }
    }
}

/// The keys of `tails`' pieces, but for the session's own object (a
/// [`Tail::Whole`]), which only the end of the session may remove.
fn piece_keys<'t>(tails: &'t [Tail], id: &'t str, generation: u64) -> impl Iterator<Item = String> + 't {
    tails
        .iter()
        .filter(|tail| !matches!(tail, Tail::Whole { .. }))
        .map(move |tail| tail.key(id, generation))
}

/// How many tail pieces a session keeps: a request that would add one more
/// merges them into one (less than a part of bytes, read and written once),
/// so a stream of tiny PATCHes cannot grow the state or the object count.
pub const MAX_TAIL_PIECES: usize = 8;

/// How long a writer's claim holds without renewal.
pub const CLAIM_LEASE_MS: u64 = 15_000;

impl UploadState {
    fn flushed(&self) -> u64 {
        self.parts.len() as u64 * self.part_size
    }
}

/// The position of an upload, as reported to clients.
#[derive(Debug)]
pub struct UploadStatus {
    pub id: String,
    pub offset: u64,
    /// The number of the session's newest state, which the client's next
    /// request names so that it reads that state without a listing.
    pub state: Option<u64>,
}

/// The byte range a chunk claims to cover (`Content-Range: start-end`, inclusive).
#[derive(Clone, Copy, Debug)]
pub struct ChunkRange {
    pub start: u64,
    pub end: u64,
}

impl ChunkRange {
    /// How many bytes it covers; `None` when it ends before it starts or
    /// covers more than a u64 counts (`0-18446744073709551615`), which no
    /// body can match.
    pub fn length(&self) -> Option<u64> {
        self.end.checked_sub(self.start)?.checked_add(1)
    }
}

/// An open upload: loaded state plus what this request adds to it.
pub struct Upload<'a> {
    store: &'a dyn Store,
    env: &'a dyn Env,
    id: String,
    /// Sequence number of the saved state, `None` if never saved.
    seq: Option<u64>,
    state: UploadState,
    /// The state as last saved (or as created): what a crash would leave.
    committed: UploadState,
    hasher: Hasher,
    /// Bytes past the last part: loaded tails, then this request's bytes.
    buffer: BytesMut,
    /// How many bytes at the start of `buffer` came from saved tails.
    loaded_tail_bytes: usize,
    /// How many bytes at the start of `buffer` the hasher has seen. Bytes are
    /// hashed as their part is written, so hashing overlaps the write.
    hashed_in_buffer: usize,
    /// The hasher has seen no byte yet.
    hasher_untouched: bool,
    tails_loaded: bool,
    /// The saved tails were folded into a part by this request.
    tails_consumed: bool,
    /// Offset when this request began.
    start_offset: u64,
    /// When this request last claimed or renewed its claim.
    renewed_ms: u64,
    /// The session ended (closed or never to be saved): nothing may be
    /// saved for it any more.
    discarded: bool,
    /// The process this request runs in, once it may write (`writing_as`).
    instance: Option<String>,
    /// This request holds the session's claim (a session it created is its
    /// own from the start).
    claimed: bool,
    /// Names the tail piece this request writes.
    nonce: String,
    /// What this request made obsolete, to remove after the answer.
    leftovers: Leftovers,
    /// This request wrote the state that ends the session.
    marked_closed: bool,
    /// A record of this request names (or, after a failed write, may name)
    /// the session's own data object: it must stay when the session ends.
    names_own_object: bool,
    /// Writes of the newest parts, oldest first, still under way while the
    /// next part's bytes arrive (on disk each runs on another thread). At
    /// most the store's `part_writes_in_flight`; parts are recorded in order.
    in_flight: VecDeque<PartWrite<'a>>,
}

type PartWrite<'a> = BoxFuture<'a, std::result::Result<PartRef, StoreError>>;

fn upload_unknown() -> RegistryError {
    RegistryError::new(ErrorCode::BlobUploadUnknown, "upload unknown")
}

fn changed_concurrently() -> RegistryError {
    RegistryError::new(
        ErrorCode::BlobUploadInvalid,
        "the upload was changed by a concurrent request",
    )
    .with_status(http::StatusCode::CONFLICT)
}

/// How a finished or cancelled session's newest state key starts (then the
/// time it ended): the session is unknown from then on. Older builds wrote
/// the word alone.
const CLOSED: &[u8] = b"closed";

fn closed_marker(now_ms: u64) -> Bytes {
    Bytes::from(format!("closed {now_ms}"))
}

/// How many times a request ending a session tries again when concurrent
/// requests keep saving newer states first.
const CLOSE_ATTEMPTS: usize = 4;

/// An error writing the session's own objects: a part write or join that
/// finds its multipart write gone means the session was removed under the
/// request (expired, or cancelled by another request), not a server fault.
fn session_error(error: StoreError) -> RegistryError {
    match error {
        StoreError::NotFound => upload_unknown(),
        other => other.into(),
    }
}

impl<'a> Upload<'a> {
    /// A new session, not yet saved.
    pub fn new(store: &'a dyn Store, env: &'a dyn Env, repo: &RepoName, algorithm: Algorithm) -> Upload<'a> {
        let now = env.now_millis();
        let hasher = Hasher::new(algorithm);
        let state = fresh_state(store, env, repo, algorithm);
        Upload {
            store,
            env,
            id: env.random_id(),
            seq: None,
            committed: state.clone(),
            state,
            hasher,
            buffer: BytesMut::new(),
            loaded_tail_bytes: 0,
            hashed_in_buffer: 0,
            hasher_untouched: true,
            tails_loaded: true,
            tails_consumed: false,
            start_offset: 0,
            renewed_ms: now,
            discarded: false,
            instance: None,
            claimed: true,
            nonce: env.random_id(),
            leftovers: Leftovers::default(),
            marked_closed: false,
            names_own_object: false,
            in_flight: VecDeque::new(),
        }
    }

    /// Opens a saved session of `repo`; unknown ids and sessions of another
    /// repository are both `BLOB_UPLOAD_UNKNOWN`. `hint` is the state the
    /// client's last response named (`UploadStatus::state`).
    pub async fn open(
        store: &'a dyn Store,
        env: &'a dyn Env,
        repo: &RepoName,
        id: &str,
        hint: Option<u64>,
    ) -> Result<Upload<'a>> {
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(upload_unknown());
        }
        // Only the POST's Location (or a bare id) can name a session nothing
        // was sent to; the id's digest is checked for those alone.
        let unused_yet = matches!(hint, Some(0) | None) && upload_id::may_be_unused(id, repo, env.now_millis());
        let saved = match hint {
            // The POST's state, which it did not save: the first saved is 1.
            Some(0) if unused_yet => load_state(store, id).await?,
            Some(seq) => load_named_state(store, id, seq).await?,
            None => load_state(store, id).await?,
        };
        let (seq, state) = match saved {
            SavedState::Saved(seq, state) => (seq, *state),
            // Nothing was sent to it yet (see `upload_id`).
            SavedState::Missing if unused_yet => (0, fresh_state(store, env, repo, Algorithm::Sha256)),
            _ => return Err(upload_unknown()),
        };
        if state.repo != repo.as_str() || state.epoch != store.capabilities().unsynced_epoch {
            return Err(upload_unknown());
        }
        let hasher = Hasher::restore(state.algorithm, &state.hash)
            .ok_or_else(|| RegistryError::new(ErrorCode::Internal, "corrupt upload hash state"))?;
        let tails_loaded = state.tails.is_empty();
        let hashed = match state.tails_hashed {
            true => state.offset,
            false => state.flushed(),
        };
        Ok(Upload {
            store,
            env,
            id: id.to_string(),
            seq: Some(seq),
            start_offset: state.offset,
            committed: state.clone(),
            state,
            hasher,
            buffer: BytesMut::new(),
            loaded_tail_bytes: 0,
            hashed_in_buffer: 0,
            hasher_untouched: hashed == 0,
            tails_loaded,
            tails_consumed: false,
            renewed_ms: 0,
            discarded: false,
            instance: None,
            claimed: false,
            nonce: env.random_id(),
            leftovers: Leftovers::default(),
            marked_closed: false,
            names_own_object: false,
            in_flight: VecDeque::new(),
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn status(&self) -> UploadStatus {
        UploadStatus {
            id: self.id.clone(),
            offset: self.state.offset,
            state: self.seq,
        }
    }

    /// What this request made obsolete, for the caller to remove (after
    /// the answer, where the platform can).
    pub fn take_leftovers(&mut self) -> Leftovers {
        std::mem::take(&mut self.leftovers)
    }

    /// Saves the session as it stands (a new session before any data).
    pub async fn save(&mut self) -> Result<()> {
        self.save_state(self.state.clone()).await?;
        self.committed = self.state.clone();
        Ok(())
    }

    /// Writes `state` as the next state key.
    async fn save_state(&mut self, mut state: UploadState) -> Result<()> {
        let next = self.seq.map_or(0, |s| s + 1);
        state.updated_ms = self.env.now_millis();
        state.epoch = self.store.capabilities().unsynced_epoch;
        let bytes = serde_json::to_vec(&state).map_err(|e| RegistryError::unserializable("an upload state", e))?;
        match self
            .store
            .put_volatile(&layout::upload_state(&self.id, next), bytes.into(), PutMode::Create)
            .await
        {
            Ok(_) => {}
            Err(StoreError::AlreadyExists) => return Err(lost_to(self.store, &self.id).await),
            Err(e) => return Err(e.into()),
        }
        // The previous state stays until upload expiry (see the module's
        // doc); `load_state` reads the newest.
        self.seq = Some(next);
        Ok(())
    }

    /// Refuses a chunk that does not start where the upload stands.
    pub fn check_start(&self, range: Option<ChunkRange>) -> Result<()> {
        match range {
            Some(range) if range.start != self.state.offset => Err(RegistryError::new(
                ErrorCode::RangeInvalid,
                format!(
                    "chunk starts at {} but the upload is at offset {}",
                    range.start, self.state.offset
                ),
            )
            .with_detail(serde_json::json!({ "offset": self.state.offset }))),
            _ => Ok(()),
        }
    }

    /// Lets this request write to the session, as a request of process
    /// `instance`; refused with 409 while another live request holds the
    /// session's claim. Parts are claimed for when the request comes to
    /// write one.
    pub fn writing_as(&mut self, instance: &str) -> Result<()> {
        if let Some(writer) = &self.state.writer {
            let lapsed = self.env.now_millis().saturating_sub(self.state.updated_ms) >= CLAIM_LEASE_MS;
            let from_dead_process =
                self.store.capabilities().single_process && writer.split(':').next() != Some(instance);
            if !lapsed && !from_dead_process {
                return Err(RegistryError::new(
                    ErrorCode::BlobUploadInvalid,
                    "another request is writing to this upload",
                )
                .with_status(http::StatusCode::CONFLICT));
            }
        }
        self.instance = Some(instance.to_string());
        Ok(())
    }

    /// `writing_as`, then the claim at once.
    pub async fn claim(&mut self, instance: &str) -> Result<()> {
        self.writing_as(instance)?;
        self.ensure_claimed().await
    }

    /// Makes this request the session's only writer before it writes a key
    /// another request could write too, or refuses with 409.
    async fn ensure_claimed(&mut self) -> Result<()> {
        if self.claimed {
            return Ok(());
        }
        let instance = self
            .instance
            .clone()
            .ok_or_else(|| RegistryError::new(ErrorCode::Internal, "a write to an upload not opened for writing"))?;
        let now = self.env.now_millis();
        let mut claiming = self.committed.clone();
        claiming.writer = Some(format!("{instance}:{}", self.env.random_id()));
        self.save_state(claiming.clone()).await?;
        self.state.writer = claiming.writer.clone();
        self.committed = claiming;
        self.claimed = true;
        self.renewed_ms = now;
        Ok(())
    }

    /// Gives up a claim after a failed request, keeping the committed
    /// progress (nothing to do without a claim, or once the session ended).
    pub async fn release(&mut self) {
        if self.discarded || !self.claimed || self.committed.writer.is_none() {
            return;
        }
        let mut state = self.committed.clone();
        state.writer = None;
        let _ = self.save_state(state).await;
    }

    /// Renews the claim of a long request before it lapses.
    async fn renew_claim(&mut self) -> Result<()> {
        let now = self.env.now_millis();
        if self.claimed && self.committed.writer.is_some() && now.saturating_sub(self.renewed_ms) > CLAIM_LEASE_MS / 3 {
            self.save_state(self.committed.clone()).await?;
            self.renewed_ms = now;
        }
        Ok(())
    }

    /// Streams `body` into the upload. `range`, when the client sent one, must
    /// start at the current offset and match the body's length.
    pub async fn append(&mut self, range: Option<ChunkRange>, body: RequestBody) -> Result<()> {
        let received = self.receive(range, body).await;
        // Even after a failure: no write of this request may land later.
        let settled = self.settle_in_flight().await;
        received.and(settled)
    }

    async fn receive(&mut self, range: Option<ChunkRange>, mut body: RequestBody) -> Result<()> {
        self.check_start(range)?;
        let part_size = self.state.part_size as usize;
        while let Some(mut chunk) = self.next_chunk(&mut body).await? {
            self.renew_claim().await?;
            self.state.offset += chunk.len() as u64;
            if self.buffer.is_empty() && self.tails_loaded {
                // Fast path: whole parts straight from the incoming chunk.
                while chunk.len() > part_size {
                    self.write_part(chunk.split_to(part_size), 0).await?;
                }
                self.buffer.extend_from_slice(&chunk);
            } else {
                self.buffer.extend_from_slice(&chunk);
                self.flush_full_parts(HoldLast::Yes).await?;
            }
        }
        if let Some(range) = range {
            let received = self.state.offset - self.start_offset;
            if range.length() != Some(received) {
                return Err(RegistryError::new(
                    ErrorCode::RangeInvalid,
                    format!(
                        "Content-Range {}-{} does not match the {received} bytes sent",
                        range.start, range.end
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The next piece of the body, while the part writes in flight go on
    /// (each recorded as it finishes, oldest first).
    async fn next_chunk(&mut self, body: &mut RequestBody) -> Result<Option<Bytes>> {
        let next = loop {
            let Some(oldest) = self.in_flight.front_mut() else {
                break body.next().await;
            };
            // `next` is cancel-safe: a chunk not taken now is taken next time round.
            match futures::future::select(body.next(), oldest).await {
                Either::Left((next, _)) => break next,
                Either::Right((written, _)) => {
                    self.in_flight.pop_front();
                    self.state.parts.push(written.map_err(session_error)?);
                }
            }
        };
        next.transpose().map_err(BodyError::into_registry_error)
    }

    /// Waits for the oldest part write in flight and records its part.
    async fn settle_oldest(&mut self) -> Result<()> {
        if let Some(write) = self.in_flight.pop_front() {
            self.state.parts.push(write.await.map_err(session_error)?);
        }
        Ok(())
    }

    /// Waits for every part write in flight, even after a failure of one.
    async fn settle_in_flight(&mut self) -> Result<()> {
        let mut result = Ok(());
        while !self.in_flight.is_empty() {
            result = result.and(self.settle_oldest().await);
        }
        result
    }

    async fn load_tails(&mut self) -> Result<()> {
        if self.tails_loaded {
            return Ok(());
        }
        let mut loaded = BytesMut::new();
        let store = self.store;
        let (id, generation) = (&self.id, self.state.tail_generation);
        let reads = self.state.tails.iter().map(|tail| {
            let key = tail.key(id, generation);
            async move { read_small(store, &key).await }
        });
        for read in futures::future::join_all(reads).await {
            let (bytes, _) = read?.ok_or_else(upload_unknown)?;
            loaded.extend_from_slice(&bytes);
        }
        self.loaded_tail_bytes = loaded.len();
        if self.state.tails_hashed {
            // By the request that received them (an older build's session).
            self.hashed_in_buffer += loaded.len();
        }
        loaded.extend_from_slice(&self.buffer);
        self.buffer = loaded;
        self.tails_loaded = true;
        Ok(())
    }

    /// Writes the buffered full parts; with `HoldLast::Yes` one full part
    /// stays buffered until more bytes show it is not the blob's last.
    async fn flush_full_parts(&mut self, hold: HoldLast) -> Result<()> {
        let part_size = self.state.part_size as usize;
        let keep = match hold {
            HoldLast::Yes => part_size,
            HoldLast::No => part_size - 1,
        };
        if self.buffer.len() + self.pending_tail_bytes() <= keep {
            return Ok(());
        }
        self.load_tails().await?;
        while self.buffer.len() > keep {
            let hashed = self.hashed_in_buffer.min(part_size);
            self.hashed_in_buffer -= hashed;
            let part = self.buffer.split_to(part_size).freeze();
            self.write_part(part, hashed).await?;
        }
        Ok(())
    }

    /// Hashes the buffered bytes not hashed yet.
    fn hash_buffer(&mut self) {
        let unhashed = self.buffer.get(self.hashed_in_buffer..).unwrap_or_default();
        self.hasher_untouched &= unhashed.is_empty();
        self.hasher.update(unhashed);
        self.hashed_in_buffer = self.buffer.len();
    }

    /// Bytes in saved tails not yet loaded into the buffer.
    fn pending_tail_bytes(&self) -> usize {
        if self.tails_loaded {
            0
        } else {
            (self.start_offset - self.state.flushed()) as usize
        }
    }

    /// Writes the next part; its bytes after `already_hashed` are hashed while
    /// the write is under way (on disk it runs on another thread).
    async fn write_part(&mut self, part: Bytes, already_hashed: usize) -> Result<()> {
        while self.in_flight.len() >= self.store.capabilities().part_writes_in_flight.max(1) {
            self.settle_oldest().await?;
        }
        self.ensure_claimed().await?;
        let data_key = layout::blob_data(&self.id);
        if self.state.multipart.is_none() {
            let multipart = self.store.create_multipart(&data_key).await?;
            self.state.multipart = Some(multipart.clone());
            // Saved at once, with only the progress already committed, so that
            // upload expiry can find and abort it even if this request dies.
            let mut committed = self.committed.clone();
            committed.multipart = Some(multipart);
            self.save_state(committed.clone()).await?;
            self.committed = committed;
        }
        let number = (self.state.parts.len() + self.in_flight.len()) as u32 + 1;
        let multipart = self.state.multipart.clone().ok_or_else(|| {
            RegistryError::new(
                ErrorCode::Internal,
                "a part was written before its multipart upload began",
            )
        })?;
        let store = self.store;
        let unhashed = part.slice(already_hashed..);
        let mut write: BoxFuture<'a, _> =
            Box::pin(async move { store.put_part(&data_key, &multipart, number, part).await });
        // Started before the hashing, so both run at once; then left running
        // while the next part's bytes arrive.
        let started = futures::poll!(write.as_mut());
        self.hasher_untouched &= unhashed.is_empty();
        self.hasher.update(&unhashed);
        match started {
            std::task::Poll::Ready(written) if self.in_flight.is_empty() => {
                self.state.parts.push(written.map_err(session_error)?)
            }
            // Recorded after the parts before it.
            std::task::Poll::Ready(written) => self.in_flight.push_back(Box::pin(futures::future::ready(written))),
            std::task::Poll::Pending => self.in_flight.push_back(write),
        }
        if self.loaded_tail_bytes > 0 {
            self.tails_consumed = true;
        }
        Ok(())
    }

    /// Ends a request that does not finish the upload: keeps the unflushed
    /// bytes as a tail piece and saves the new state.
    pub async fn commit(&mut self) -> Result<()> {
        // A held-back full part goes out as a part, not into a tail.
        let flushed = self.flush_full_parts(HoldLast::No).await;
        // Even after a failure: no write of this request may land later.
        let settled = self.settle_in_flight().await;
        flushed.and(settled)?;
        let generation = self.state.tail_generation;
        if !self.tails_loaded && self.state.tails.len() >= MAX_TAIL_PIECES {
            // Merged into one piece, below.
            self.load_tails().await?;
            self.tails_consumed = true;
        }
        if self.state.tails_hashed {
            self.hash_buffer();
        }
        let old_tails = std::mem::take(&mut self.state.tails);
        let flushed = self.state.flushed();
        let (keep_old, new_piece, piece_offset) = if self.tails_consumed {
            (false, self.buffer.split().freeze(), flushed)
        } else {
            let new_bytes = self
                .buffer
                .split_off(self.loaded_tail_bytes.min(self.buffer.len()))
                .freeze();
            (true, new_bytes, self.start_offset)
        };
        if keep_old {
            self.state.tails = old_tails.clone();
        }
        let mut written = None;
        let whole = match self.holds_nothing_yet() && !new_piece.is_empty() {
            true => self.write_whole(new_piece.clone()).await?,
            false => None,
        };
        if let Some(whole) = whole {
            self.state.tails.push(whole);
        } else if !new_piece.is_empty() {
            let tail = Tail::Named {
                offset: piece_offset,
                nonce: self.nonce.clone(),
            };
            let key = tail.key(&self.id, generation);
            // Volatile like the parts: a state naming it is refused under
            // another epoch, and the bytes are flushed when the blob is.
            self.store.put_volatile(&key, new_piece, PutMode::Overwrite).await?;
            self.state.tails.push(tail);
            written = Some(key);
        }
        self.state.hash = self.hasher.save();
        self.state.writer = None;
        if let Err(e) = self.save().await {
            // Lost to a concurrent request: the piece is this request's own.
            self.leftovers.keys.extend(written);
            return Err(e);
        }
        if !keep_old {
            // None of these is the new piece, which has this request's nonce.
            // The session's own object is not removed here: a part of this
            // session may be joined into it later (the orphan sweep removes
            // it when nothing does).
            let obsolete: Vec<String> = piece_keys(&old_tails, &self.id, generation).collect();
            self.leftovers.keys.extend(obsolete);
        }
        Ok(())
    }

    /// Whether the session has received no byte before this request.
    fn holds_nothing_yet(&self) -> bool {
        let before = &self.committed;
        self.seq.is_some()
            && self.start_offset == 0
            && before.tails.is_empty()
            && before.multipart.is_none()
            && self.state.multipart.is_none()
            && self.state.parts.is_empty()
            && !self.state.tails_hashed
    }

    /// Writes a request's bytes, the session's first, as the session's own
    /// data object ([`Tail::Whole`]), hashing them meanwhile. `None` when
    /// that object exists already (written by a request that then lost the
    /// session to another): the bytes are then a tail piece like any other.
    /// Durable, unlike tail pieces: the blob may be this very object.
    async fn write_whole(&mut self, bytes: Bytes) -> Result<Option<Tail>> {
        let (store, env) = (self.store, self.env);
        let key = layout::blob_data(&self.id);
        let mut hasher = self.hasher.clone();
        let whole = bytes.len() as u64;
        let (written, digest) = futures::join!(
            store.put(&key, bytes.clone(), PutMode::Create),
            digest_with(&mut hasher, true, env, bytes)
        );
        match written {
            Ok(_) => Ok(Some(Tail::Whole {
                whole,
                digest: digest.to_string(),
            })),
            Err(StoreError::AlreadyExists) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Verifies the digest and stores the blob's record, with `beside` (the
    /// registry's link into the repository) run at the same time; returns
    /// the blob's size. The registry then ends the session (`close`). A
    /// failure leaves the session for a retry of the PUT, except a digest
    /// mismatch, which ends it and keeps nothing the upload wrote.
    pub async fn finish(&mut self, expected: &Digest, beside: BesideRecord<'_>) -> Result<u64> {
        if let Some(actual) = self.whole_to_adopt(expected) {
            return self.adopt_whole(expected, &actual, beside).await;
        }
        // A digest of another algorithm than the session's is checked from storage.
        let hashed_here = expected.algorithm() == self.state.algorithm;
        if hashed_here && self.state.multipart.is_none() {
            self.load_tails().await?;
            return self.finish_in_one_write(expected, beside).await;
        }
        // Two reads the client waits for, made together.
        let record_key = layout::blob_record(expected);
        let store = self.store;
        let (loaded, existing) = futures::join!(self.load_tails(), store.head(&record_key));
        loaded?;
        let exists = existing?.is_some();
        if exists && hashed_here {
            let actual = self.digest_of_buffer().await;
            if &actual != expected {
                let _ = self.close().await;
                return Err(digest_mismatch(expected, Some(&actual)));
            }
            // Stored already: linked once the record is known to stay.
            reuse_existing(self.store, self.env, expected).await?;
            beside(self.state.offset).await?;
            return Ok(self.state.offset);
        }
        let data_key = match self.state.multipart {
            // The session's own object, which only its claimed writer writes.
            Some(_) => {
                self.ensure_claimed().await?;
                self.names_own_object = true;
                layout::blob_data(&self.id)
            }
            // The blob is this request's bytes and tails: a fresh object, so
            // a concurrent request on the session cannot write over it.
            None if self.seq.is_some() => layout::blob_data(&self.env.random_id()),
            None => layout::blob_data(&self.id),
        };
        // A retried final PUT whose first attempt joined the parts and then
        // failed: only the claimed writer writes the session's object, so one
        // of the full size holds exactly the bytes hashed.
        let joined = match self.state.multipart {
            Some(_) => self
                .store
                .head(&data_key)
                .await?
                .is_some_and(|meta| meta.size == self.state.offset),
            None => false,
        };
        let hashed = match joined {
            true => Some(self.digest_of_buffer().await),
            false => self.write_last(&data_key, hashed_here).await?,
        };
        if let Some(multipart) = self.state.multipart.take() {
            if !joined {
                let parts = std::mem::take(&mut self.state.parts);
                self.store
                    .complete_multipart(&data_key, &multipart, parts)
                    .await
                    .map_err(session_error)?;
            }
        }
        let actual = match hashed.filter(|_| hashed_here) {
            Some(actual) => actual,
            None => rehash(self.store, &data_key, expected.algorithm()).await?,
        };
        if &actual != expected {
            self.leftovers.keys.push(data_key);
            let _ = self.close().await;
            return Err(digest_mismatch(expected, Some(&actual)));
        }
        // On a failure the session's own object stays for a retry of the PUT
        // (the session names it); a fresh one is the orphan sweep's.
        if !self.put_record_beside(&record_key, &data_key, beside).await? {
            // Someone else stored the same content first: keep one copy.
            self.leftovers.keys.push(data_key);
            reuse_existing(self.store, self.env, expected).await?;
        }
        Ok(self.state.offset)
    }

    /// Finishes a blob that fits in one write (the buffer holds all of it):
    /// the bytes are written without looking for an existing record first,
    /// whose creation finds one all the same. Content stored already (rare:
    /// clients look before they push) costs a write that is removed after
    /// the answer.
    async fn finish_in_one_write(&mut self, expected: &Digest, beside: BesideRecord<'_>) -> Result<u64> {
        // The blob is this request's bytes and tails: a fresh object, so a
        // concurrent request on the session cannot write over it.
        let data_key = match self.seq {
            Some(_) => layout::blob_data(&self.env.random_id()),
            None => layout::blob_data(&self.id),
        };
        let written = self.write_last(&data_key, true).await;
        let actual = written?.ok_or_else(|| RegistryError::new(ErrorCode::Internal, "a blob written unhashed"))?;
        if &actual != expected {
            self.leftovers.keys.push(data_key);
            let _ = self.close().await;
            return Err(digest_mismatch(expected, Some(&actual)));
        }
        if !self
            .put_record_beside(&layout::blob_record(expected), &data_key, beside)
            .await?
        {
            // Stored by someone else first: keep one copy.
            self.leftovers.keys.push(data_key);
            reuse_existing(self.store, self.env, expected).await?;
        }
        Ok(self.state.offset)
    }

    /// Stores the blob's record, naming `object`, while `beside` runs;
    /// `false` when a record of the same content was there first (`beside`
    /// has run all the same). Either's error comes back once both ended.
    async fn put_record_beside(&mut self, record_key: &str, object: &str, beside: BesideRecord<'_>) -> Result<bool> {
        let record = serde_json::to_vec(&BlobRecord {
            size: self.state.offset,
            object: object.to_string(),
            created_ms: self.env.now_millis(),
            archived: false,
        })
        .map_err(|e| RegistryError::unserializable("a blob record", e))?;
        let put = async {
            match self.store.put(record_key, record.into(), PutMode::Create).await {
                Ok(_) => Ok(true),
                Err(StoreError::AlreadyExists) => Ok(false),
                Err(e) => Err(RegistryError::from(e)),
            }
        };
        let (created, besides) = futures::join!(put, beside(self.state.offset));
        let created = created?;
        besides?;
        Ok(created)
    }

    /// The digest of the session's bytes when they are all in its own
    /// object ([`Tail::Whole`]) and this request adds none, so that the
    /// object can become the blob; `None` otherwise (also for a digest of
    /// another algorithm, checked by reading the bytes as usual).
    fn whole_to_adopt(&self, expected: &Digest) -> Option<Digest> {
        let [Tail::Whole { whole, digest }] = self.state.tails.as_slice() else {
            return None;
        };
        let adds_nothing = !self.tails_loaded && self.buffer.is_empty() && *whole == self.state.offset;
        let digest = Digest::parse(digest).ok()?;
        (adds_nothing && self.state.multipart.is_none() && digest.algorithm() == expected.algorithm()).then_some(digest)
    }

    /// Finishes a session whose bytes are all in its own object: that
    /// object becomes the blob, without reading or writing them again.
    async fn adopt_whole(&mut self, expected: &Digest, actual: &Digest, beside: BesideRecord<'_>) -> Result<u64> {
        if actual != expected {
            let _ = self.close().await;
            return Err(digest_mismatch(expected, Some(actual)));
        }
        let adopted = self.end_and_adopt(expected, beside).await;
        if adopted.is_err() && self.marked_closed {
            // Ended all the same: its keys (and its object, unless a record
            // may name it) go after the answer.
            let _ = self.close().await;
        }
        adopted
    }

    async fn end_and_adopt(&mut self, expected: &Digest, beside: BesideRecord<'_>) -> Result<u64> {
        // The session ends before a record names its object: from then on no
        // request can join a part into that object (its claim would need a
        // state after this one) or adopt it a second time.
        self.mark_closed().await?;
        let data_key = layout::blob_data(&self.id);
        match self
            .put_record_beside(&layout::blob_record(expected), &data_key, beside)
            .await
        {
            Ok(true) => {
                self.names_own_object = true;
                Ok(self.state.offset)
            }
            Ok(false) => {
                reuse_existing(self.store, self.env, expected).await?;
                Ok(self.state.offset)
            }
            Err(e) => {
                // The write may have landed (or `beside` failed after it): the
                // orphan sweep decides.
                self.names_own_object = true;
                Err(e)
            }
        }
    }

    /// Writes the state that ends the session, as the next one; refused
    /// when a concurrent request took that number first (404 when it ended
    /// the session, else 409).
    async fn mark_closed(&mut self) -> Result<()> {
        let Some(seq) = self.seq else {
            return Ok(());
        };
        let marker = closed_marker(self.env.now_millis());
        match self
            .store
            .put_volatile(&layout::upload_state(&self.id, seq + 1), marker, PutMode::Create)
            .await
        {
            Ok(_) => {
                self.marked_closed = true;
                Ok(())
            }
            Err(StoreError::AlreadyExists) => Err(lost_to(self.store, &self.id).await),
            Err(e) => Err(e.into()),
        }
    }

    /// The blob's digest, the buffer being its last bytes.
    async fn digest_of_buffer(&mut self) -> Digest {
        let rest = self.buffer.split().freeze();
        let unhashed = rest.slice(std::mem::take(&mut self.hashed_in_buffer)..);
        digest_with(&mut self.hasher, self.hasher_untouched, self.env, unhashed).await
    }

    /// Writes the buffered last bytes (the whole blob when it fits one part)
    /// while hashing what the hasher has not seen, when `hash`: hash and
    /// write overlap. Returns the blob's digest if it hashed.
    async fn write_last(&mut self, data_key: &str, hash: bool) -> Result<Option<Digest>> {
        let last = self.buffer.split().freeze();
        let unhashed = last.slice(std::mem::take(&mut self.hashed_in_buffer)..);
        let (hasher, untouched, env) = (&mut self.hasher, self.hasher_untouched, self.env);
        let hashing = async move {
            match hash {
                true => Some(digest_with(hasher, untouched, env, unhashed).await),
                false => None,
            }
        };
        let store = self.store;
        match self.state.multipart.clone() {
            Some(_) if last.is_empty() => Ok(hashing.await),
            Some(multipart) => {
                let number = self.state.parts.len() as u32 + 1;
                let (written, digest) = futures::join!(store.put_part(data_key, &multipart, number, last), hashing);
                self.state.parts.push(written.map_err(session_error)?);
                Ok(digest)
            }
            None => {
                let (written, digest) = futures::join!(store.put(data_key, last, PutMode::Overwrite), hashing);
                written?;
                Ok(digest)
            }
        }
    }

    /// Whether the session holds nothing but the state its POST saved.
    pub fn is_untouched(&self) -> bool {
        let state = &self.state;
        state.offset == 0 && state.writer.is_none() && state.multipart.is_none() && state.tails.is_empty()
    }

    /// Ends the session: it is unknown from now on. What it held (its
    /// multipart write, tail pieces, and its own object unless a record
    /// names it) is left to remove (`take_leftovers`); its states stay until
    /// upload expiry (see the module's doc). Refused when the session was
    /// not ended here: 404 when another request ended it first, 409 when
    /// concurrent requests kept saving newer states.
    pub async fn close(&mut self) -> Result<()> {
        self.discarded = true;
        let own_multipart = self.state.multipart.take();
        let data_key = layout::blob_data(&self.id);
        if self.seq.is_none() {
            // Never saved: nothing names it but this request.
            self.leftovers
                .multiparts
                .extend(own_multipart.map(|multipart| (data_key, multipart)));
            return Ok(());
        }
        // The state the session ends at: this request's (with the multipart
        // write it has not completed), or a newer one a concurrent request
        // saved first.
        let mut last = UploadState {
            multipart: own_multipart.clone(),
            ..self.committed.clone()
        };
        let mut ended = Ok(());
        for attempt in 1..=CLOSE_ATTEMPTS {
            if self.marked_closed {
                break;
            }
            ended = self.mark_closed().await;
            let Err(lost) = &ended else { break };
            if lost.code != ErrorCode::BlobUploadInvalid || attempt == CLOSE_ATTEMPTS {
                break;
            }
            let Ok(SavedState::Saved(seq, state)) = load_state(self.store, &self.id).await else {
                break;
            };
            self.seq = Some(seq);
            last = *state;
        }
        // A multipart write no saved state names is this request's own.
        if own_multipart.is_some() && own_multipart != last.multipart {
            self.leftovers
                .multiparts
                .extend(own_multipart.clone().map(|multipart| (data_key.clone(), multipart)));
        }
        ended?;
        let pieces: Vec<String> = piece_keys(&last.tails, &self.id, last.tail_generation).collect();
        self.leftovers.keys.extend(pieces);
        // The session's own object, holding its first bytes, goes too unless
        // a record names it: only the request that ends the session can have
        // made it a blob.
        let own_object_unused =
            matches!(last.tails.as_slice(), [Tail::Whole { .. }]) && last.multipart.is_none() && !self.names_own_object;
        if own_object_unused {
            self.leftovers.keys.push(data_key.clone());
        }
        self.leftovers
            .multiparts
            .extend(last.multipart.map(|multipart| (data_key, multipart)));
        Ok(())
    }
}

/// Ends session `id`, found idle at state `seq` by upload expiry, while its
/// states must stay (see `upload_id`): a closed marker after that state,
/// then its tail pieces go; its multipart write is the caller's to abort.
/// `false` when a request saved a newer state meanwhile.
pub async fn end_idle(store: &dyn Store, id: &str, seq: u64, state: &UploadState, now_ms: u64) -> Result<bool> {
    let marker = layout::upload_state(id, seq + 1);
    match store
        .put_volatile(&marker, closed_marker(now_ms), PutMode::Create)
        .await
    {
        Ok(_) => {}
        Err(StoreError::AlreadyExists) => return Ok(false),
        Err(e) => return Err(e.into()),
    }
    let keys: Vec<String> = piece_keys(&state.tails, id, state.tail_generation).collect();
    futures::future::join_all(keys.iter().map(|key| store.delete(key))).await;
    Ok(true)
}

/// The state of a session nothing was sent to.
fn fresh_state(store: &dyn Store, env: &dyn Env, repo: &RepoName, algorithm: Algorithm) -> UploadState {
    let now = env.now_millis();
    UploadState {
        repo: repo.to_string(),
        algorithm,
        offset: 0,
        hash: Hasher::new(algorithm).save(),
        part_size: store.capabilities().part_size as u64,
        multipart: None,
        parts: Vec::new(),
        tails: Vec::new(),
        tail_generation: 0,
        created_ms: now,
        updated_ms: now,
        writer: None,
        tails_hashed: false,
        epoch: store.capabilities().unsynced_epoch,
    }
}

/// The error for a request whose next state a concurrent request saved
/// first: the session is unknown if that request ended it, else 409.
async fn lost_to(store: &dyn Store, id: &str) -> RegistryError {
    match load_state(store, id).await {
        Ok(SavedState::Saved(..)) | Err(_) => changed_concurrently(),
        Ok(_) => upload_unknown(),
    }
}

/// The digest of a blob whose last bytes, past what `hasher` has seen, are
/// `rest`. When the hasher has seen nothing, the platform may hash the whole
/// blob in one piece (`Env::digest_of`); else, or if it fails, core does.
async fn digest_with(hasher: &mut Hasher, untouched: bool, env: &dyn Env, rest: Bytes) -> Digest {
    if untouched {
        if let Some(hashing) = env.digest_of(hasher.algorithm(), rest.clone()) {
            if let Some(digest) = hashing.await {
                return digest;
            }
        }
    }
    hasher.update(&rest);
    hasher.clone().finish()
}

/// Whether [`Upload::flush_full_parts`] keeps the last full part buffered. A
/// blob that fits in one part is then stored with one plain write, never a
/// multipart write of one part (three storage calls and a state save more).
#[derive(Clone, Copy)]
enum HoldLast {
    Yes,
    No,
}

/// Claims an existing blob for a new use: touches it, then makes sure no
/// collection is deleting it or has just deleted it (the order matters: see
/// `handshake`). A blob being deleted is answered 503 so that the client
/// retries after the sweep, when the upload stores the bytes anew.
async fn reuse_existing(store: &dyn Store, env: &dyn Env, digest: &Digest) -> Result<()> {
    crate::handshake::touch(store, env, digest).await?;
    // The tombstone before the record, never both at once: a collection
    // deletes the record first and the tombstone last.
    if crate::handshake::blob_doomed(store, digest).await? || store.head(&layout::blob_record(digest)).await?.is_none()
    {
        return Err(RegistryError::new(
            ErrorCode::Unavailable,
            format!("blob {digest} is being garbage collected; retry the upload"),
        ));
    }
    Ok(())
}

fn digest_mismatch(expected: &Digest, actual: Option<&Digest>) -> RegistryError {
    let message = match actual {
        Some(actual) => format!("uploaded content has digest {actual}, not {expected}"),
        None => format!("uploaded content does not match {expected}"),
    };
    RegistryError::new(ErrorCode::DigestInvalid, message)
}

/// Deletes every key of an upload session (states and tails): all at once
/// but the newest state, which goes last. Until then the session reads as it
/// stood (or as closed), never as one of its older states: a request racing
/// the removal sees the session whole or not at all.
pub async fn remove_upload_keys(store: &dyn Store, id: &str) {
    let Ok(keys) = list_all(store, &layout::upload_prefix(id)).await else {
        return;
    };
    let states = layout::upload_states(id);
    // Listed in order, and state numbers sort as numbers (zero-padded).
    let newest = keys.iter().rfind(|key| key.starts_with(&states));
    let others = keys.iter().filter(|key| Some(*key) != newest);
    futures::future::join_all(others.map(|key| store.delete(key))).await;
    if let Some(newest) = newest {
        let _ = store.delete(newest).await;
    }
}

/// What an upload request made obsolete: tail pieces no newer state names
/// (merged, or a losing request's), a data object no record will name, and,
/// when the session ended, its tail pieces and multipart write. Nothing a
/// client can reach, so it may be removed after the answer; what a crash
/// keeps, upload expiry and the orphan sweep remove.
#[derive(Debug, Default)]
#[must_use = "leftovers are removed by `Leftovers::remove`"]
pub struct Leftovers {
    keys: Vec<String>,
    /// Multipart writes to abort: their target key and id.
    multiparts: Vec<(String, String)>,
}

impl Leftovers {
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.multiparts.is_empty()
    }

    /// Removes them; failures are left to upload expiry and the orphan sweep.
    pub async fn remove(self, store: &dyn Store) {
        let deletes = self.keys.iter().map(|key| store.delete(key));
        let aborts = self.multiparts.iter().map(|(key, id)| store.abort_multipart(key, id));
        futures::join!(futures::future::join_all(deletes), futures::future::join_all(aborts));
    }
}

/// What the newest state key of a session holds.
#[derive(Debug)]
pub enum SavedState {
    /// No state: the session is unknown, or being removed.
    Missing,
    /// A state a crash left torn (states are written volatile, see
    /// [`Store::put_volatile`]): the session is lost and its keys garbage.
    Torn,
    /// The session ended (see [`Upload::close`]) at this time (`None` when
    /// an older build ended it); its keys stay until upload expiry.
    Closed(Option<u64>),
    Saved(u64, Box<UploadState>),
}

/// The newest saved state of upload `id`.
pub async fn load_state(store: &dyn Store, id: &str) -> Result<SavedState> {
    let states = list_all(store, &layout::upload_states(id)).await?;
    let Some(last) = states.last() else {
        return Ok(SavedState::Missing);
    };
    let Some(seq) = last.rsplit('/').next().and_then(|s| s.parse().ok()) else {
        return Ok(SavedState::Torn);
    };
    Ok(read_state(store, id, seq).await?.unwrap_or(SavedState::Missing))
}

/// State `seq` of upload `id`, read without a listing when it is the
/// newest (the common case: the client names the state its last response
/// gave); otherwise the newest, as [`load_state`] finds it.
async fn load_named_state(store: &dyn Store, id: &str, seq: u64) -> Result<SavedState> {
    let (named, states) = (layout::upload_state(id, seq), layout::upload_states(id));
    let (read, later) = futures::join!(read_state(store, id, seq), store.list(&states, Some(&named), 1));
    match (read?, later?.keys.is_empty()) {
        (Some(saved), true) => Ok(saved),
        _ => load_state(store, id).await,
    }
}

/// What state key `seq` of upload `id` holds, if it exists.
async fn read_state(store: &dyn Store, id: &str, seq: u64) -> Result<Option<SavedState>> {
    let Some((bytes, _)) = read_small(store, &layout::upload_state(id, seq)).await? else {
        return Ok(None);
    };
    if let Some(time) = bytes.strip_prefix(CLOSED) {
        let at_ms = std::str::from_utf8(time).ok().and_then(|time| time.trim().parse().ok());
        return Ok(Some(SavedState::Closed(at_ms)));
    }
    Ok(Some(match serde_json::from_slice(&bytes) {
        Ok(state) => SavedState::Saved(seq, Box::new(state)),
        Err(_) => SavedState::Torn,
    }))
}

async fn rehash(store: &dyn Store, key: &str, algorithm: Algorithm) -> Result<Digest> {
    let mut hasher = Hasher::new(algorithm);
    let result = store
        .get(key, None)
        .await?
        .ok_or_else(|| RegistryError::new(ErrorCode::Internal, "uploaded data vanished"))?;
    let mut body = result.body;
    while let Some(chunk) = body.next().await {
        hasher.update(&chunk?);
    }
    Ok(hasher.finish())
}
