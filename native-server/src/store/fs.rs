//! The local-disk backend: one file per key under a data directory.
//!
//! Conditional writes are what a registry needs from its store, and a plain
//! filesystem has no compare-and-swap. This backend supplies it: `Create` is a
//! hard link of a finished temporary file (atomic, fails if the key exists),
//! `Update` compares the etag under a per-process lock, and the data directory
//! is locked so only one process serves it. Multipart writes go at their
//! offsets into one file that is renamed into place on completion, so every
//! byte is written once. Everything else is a rename of a complete temporary
//! file: readers never see partial objects, and a killed process leaves only
//! temporary files behind, which are removed at the next start.
//!
//! Writes are durable when they return (unless `fsync` is turned off): a
//! file's data is flushed before it is moved into place and its directory
//! after, so a push acknowledged before a power cut is still there, whole,
//! after it. Without the flush a record could survive a crash while the data
//! it names came back as zeros, and the registry would serve a blob that does
//! not match its digest. Three kinds of write are not flushed: deletes (a
//! crash may undo one; collection and upload expiry run again), upload states
//! (`put_volatile`: a lost state loses its session) and multipart parts,
//! whose writeback starts at once and which are flushed as a whole when the
//! upload completes. Until then they survive a killed process (the page
//! cache keeps them) but maybe not a restart of the machine: the store's
//! `unsynced_epoch` is the boot's id, and an upload saved under another one
//! is unknown.
//!
//! Work on one small file or directory entry (metadata, records, links,
//! manifests: tens of microseconds) runs on the calling thread; only bulk data
//! and directory walks go to the blocking pool. Handing a call to another
//! thread and back costs two wake-ups, which on a virtual machine's idle
//! CPUs cost more than the operation itself (a 1 KiB push took twice as long).

use std::fs::{self, File};
use std::io;
use std::ops::Range;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use pier_core::platform::box_stream;
use pier_core::store::{
    Capabilities, GetResult, ListPage, ObjectMeta, PartRef, PutMode, Store, StoreError, StoreResult,
};
use tokio::sync::Mutex;

const TMP_DIR: &str = ".tmp";
const MULTIPART_DIR: &str = ".multipart";
const LOCK_FILE: &str = ".lock";
/// Bytes per read when streaming objects out.
const READ_CHUNK: u64 = 1 << 20;
/// Reads in flight per stream: one being sent, one being read.
const READ_AHEAD: usize = 2;
/// Objects up to this size are read in one go.
const SMALL_OBJECT: u64 = 64 << 10;

/// A store rooted at a directory.
pub struct FsStore {
    root: PathBuf,
    part_size: usize,
    /// Flush every write to the disk before it returns (see the module doc).
    fsync: bool,
    /// How long unflushed writes last: this boot (see the module doc).
    unsynced_epoch: u64,
    /// Serialises conditional updates within this process.
    update_lock: Mutex<()>,
    /// Held open for the lifetime of the store: the exclusive lock on the directory.
    _lock: File,
}

fn io_err(err: io::Error) -> StoreError {
    StoreError::Unavailable(err.to_string())
}

fn etag_of(meta: &fs::Metadata) -> String {
    format!(
        "{:x}-{:x}-{:x}",
        meta.ino(),
        meta.mtime_nsec() as u64 ^ ((meta.mtime() as u64) << 30),
        meta.size()
    )
}

fn object_meta(meta: &fs::Metadata) -> ObjectMeta {
    ObjectMeta {
        size: meta.size(),
        etag: etag_of(meta),
    }
}

impl FsStore {
    /// Opens (creating if needed) a store at `root`. Fails if another process
    /// holds the directory.
    pub fn open(root: impl Into<PathBuf>, part_size: usize) -> io::Result<FsStore> {
        let root = root.into();
        fs::create_dir_all(root.join(TMP_DIR))?;
        fs::create_dir_all(root.join(MULTIPART_DIR))?;
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(root.join(LOCK_FILE))?;
        lock.try_lock().map_err(|_| {
            io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{} is in use by another pier process", root.display()),
            )
        })?;
        // Temporary files of a process that died are garbage.
        for entry in fs::read_dir(root.join(TMP_DIR))? {
            let _ = fs::remove_file(entry?.path());
        }
        Ok(FsStore {
            root,
            part_size,
            fsync: true,
            unsynced_epoch: boot_epoch(),
            update_lock: Mutex::new(()),
            _lock: lock,
        })
    }

    /// Turns the flushes off: faster writes that a power cut may lose or
    /// tear (scratch registries, CI caches on throwaway disks).
    pub fn without_fsync(mut self) -> FsStore {
        self.fsync = false;
        self
    }

    /// What a write must do to be durable, for work sent to another thread.
    fn flush(&self) -> Flush {
        Flush {
            root: self.fsync.then(|| self.root.clone()),
        }
    }

    /// Writes a whole object, flushed as `flush` says.
    async fn write(&self, key: &str, data: Bytes, mode: PutMode, flush: Flush) -> StoreResult<ObjectMeta> {
        let dest = self.path(key)?;
        let tmp = self.temp_path();
        // A flush waits for the disk: never on the request's thread.
        let inline = data.len() as u64 <= SMALL_OBJECT && flush.root.is_none();
        let write = move |exclusive: bool| -> StoreResult<ObjectMeta> {
            write_file(&tmp, &data, &flush)?;
            place(&tmp, &dest, exclusive, &flush)?;
            fs::metadata(&dest).map(|m| object_meta(&m)).map_err(io_err)
        };
        match mode {
            PutMode::Overwrite | PutMode::Create if inline => write(mode == PutMode::Create),
            PutMode::Overwrite => blocking(move || write(false)).await,
            PutMode::Create => blocking(move || write(true)).await,
            PutMode::Update(expected) => {
                // Conditional updates are of small documents (tag lists, GC state).
                let _guard = self.update_lock.lock().await;
                match fs::metadata(self.path(key)?) {
                    Ok(meta) if etag_of(&meta) == expected => {}
                    Ok(_) => return Err(StoreError::PreconditionFailed),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StoreError::PreconditionFailed),
                    Err(e) => return Err(io_err(e)),
                }
                match inline {
                    true => write(false),
                    false => blocking(move || write(false)).await,
                }
            }
        }
    }

    fn path(&self, key: &str) -> StoreResult<PathBuf> {
        if key.is_empty()
            || key.starts_with('/')
            || key
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == ".." || c.starts_with("."))
        {
            return Err(StoreError::Invalid(format!("key {key:?} is not a valid path")));
        }
        Ok(self.root.join(key))
    }

    fn multipart_path(&self, upload_id: &str) -> StoreResult<PathBuf> {
        if upload_id.is_empty() || !upload_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(StoreError::NotFound);
        }
        Ok(self.root.join(MULTIPART_DIR).join(upload_id))
    }

    fn temp_path(&self) -> PathBuf {
        let mut raw = [0u8; 16];
        getrandom::fill(&mut raw).expect("entropy");
        self.root.join(TMP_DIR).join(pier_core::digest::hex(&raw))
    }
}

/// A number that changes when the machine restarts: the first half of
/// Linux's boot id. Elsewhere, or if it cannot be read, this process's start
/// time, which changes more often than needed (an upload does not survive a
/// restart of pier) but never less.
fn boot_epoch() -> u64 {
    let boot_id = fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .and_then(|id| {
            let hex: String = id.chars().filter(char::is_ascii_hexdigit).take(16).collect();
            u64::from_str_radix(&hex, 16).ok()
        });
    let epoch = boot_id.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |since| since.as_nanos() as u64)
    });
    // 0 means "every write is durable": never this store's.
    epoch.max(1)
}

/// Opens a multipart write's file for writing; a missing one is a write
/// that was aborted or never began.
fn open_multipart(path: &Path) -> StoreResult<File> {
    match File::options().write(true).open(path) {
        Ok(file) => Ok(file),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::NotFound),
        Err(e) => Err(io_err(e)),
    }
}

/// Runs bulk filesystem work (data, directory walks) off the async threads.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> StoreResult<T> + Send + 'static) -> StoreResult<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::Unavailable(format!("worker thread: {e}")))?
}

/// Whether and up to where writes are flushed: `root` is the data
/// directory when they are.
#[derive(Clone)]
struct Flush {
    root: Option<PathBuf>,
}

impl Flush {
    /// Flushes a file's data (and size) before it is moved into place.
    fn data(&self, file: &File) -> StoreResult<()> {
        match self.root {
            Some(_) => file.sync_data().map_err(io_err),
            None => Ok(()),
        }
    }

    /// Starts writing a range of a file to the disk without waiting for it.
    fn start_writing(&self, file: &File, offset: u64, len: usize) {
        #[cfg(target_os = "linux")]
        if self.root.is_some() {
            use std::os::fd::AsRawFd;
            // SAFETY: a plain system call on an open descriptor; it only
            // schedules writeback. Its failure is harmless: completion
            // flushes everything anyway.
            unsafe {
                libc::sync_file_range(
                    file.as_raw_fd(),
                    offset as libc::off64_t,
                    len as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = (file, offset, len);
    }

    /// Flushes the directory entry of a file just moved to `dest`; with
    /// `new_dirs`, every directory between it and the root too (one of them
    /// may have just been created).
    fn entry(&self, dest: &Path, new_dirs: bool) -> StoreResult<()> {
        let Some(root) = &self.root else { return Ok(()) };
        let mut dir = dest.parent();
        while let Some(d) = dir {
            File::open(d).and_then(|f| f.sync_all()).map_err(io_err)?;
            if !new_dirs || d == root || !d.starts_with(root) {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }
}

/// Writes `data` into a new file at `path`, flushed as `flush` says. An
/// empty file (a link) has no data to flush: the flush of the directory it
/// moves into makes it durable, entry and inode together.
fn write_file(path: &Path, data: &[u8], flush: &Flush) -> StoreResult<()> {
    let mut file = File::create(path).map_err(io_err)?;
    if data.is_empty() {
        return Ok(());
    }
    io::Write::write_all(&mut file, data).map_err(io_err)?;
    flush.data(&file)
}

/// Moves a finished file to `dest`, creating parent directories when missing
/// (again, if a concurrent delete removed them), and flushes the new entry.
/// Most keys land in existing directories, so the move is tried first.
fn place(from: &Path, dest: &Path, exclusive: bool, flush: &Flush) -> StoreResult<()> {
    for attempt in 0..4 {
        if attempt > 0 {
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent).map_err(io_err)?;
            }
        }
        let result = if exclusive {
            fs::hard_link(from, dest).and_then(|_| fs::remove_file(from))
        } else {
            fs::rename(from, dest)
        };
        match result {
            Ok(()) => return flush.entry(dest, attempt > 0),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && exclusive => {
                let _ = fs::remove_file(from);
                return Err(StoreError::AlreadyExists);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && attempt < 3 => continue,
            Err(e) => {
                let _ = fs::remove_file(from);
                return Err(io_err(e));
            }
        }
    }
    unreachable!("the loop returns on its last attempt")
}

/// An opened object: small ones already read, large ones to stream.
enum Opened {
    Small(Bytes, ObjectMeta),
    Large(Arc<File>, ObjectMeta, Range<u64>),
}

/// Opens an object: small ones (and small ranges) are read at once.
fn open_object(path: &Path, range: Option<Range<u64>>) -> StoreResult<Option<Opened>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.kind() == io::ErrorKind::NotADirectory => return Ok(None),
        Err(e) => return Err(io_err(e)),
    };
    let meta = file.metadata().map_err(io_err)?;
    if !meta.is_file() {
        return Ok(None);
    }
    let range = range.unwrap_or(0..meta.size());
    if range.start > range.end || range.end > meta.size() {
        return Err(StoreError::Invalid(format!(
            "range {range:?} outside object of {} bytes",
            meta.size()
        )));
    }
    let length = range.end - range.start;
    if length <= SMALL_OBJECT {
        // Metadata and manifests: one read, one chunk.
        let mut data = vec![0u8; length as usize];
        file.read_exact_at(&mut data, range.start).map_err(io_err)?;
        return Ok(Some(Opened::Small(Bytes::from(data), object_meta(&meta))));
    }
    Ok(Some(Opened::Large(Arc::new(file), object_meta(&meta), range)))
}

/// Streams `range` of `file` with positioned reads straight into the chunks
/// sent out (no intermediate buffer), reading the next chunk while the
/// current one is being sent.
fn read_chunks(file: Arc<File>, range: Range<u64>) -> impl futures::Stream<Item = StoreResult<Bytes>> + Send {
    let end = range.end;
    let offsets = (range.start..range.end).step_by(READ_CHUNK as usize);
    futures::stream::iter(offsets)
        .map(move |offset| {
            let file = file.clone();
            blocking(move || {
                let mut buf = vec![0u8; (end - offset).min(READ_CHUNK) as usize];
                file.read_exact_at(&mut buf, offset).map_err(io_err)?;
                Ok(Bytes::from(buf))
            })
        })
        .buffered(READ_AHEAD)
}

/// Removes now-empty directories from `dir` up to (not including) the
/// top-level ones (`uploads`, `data`, ...), which every push would otherwise
/// remove and create again.
fn prune_empty_dirs(root: &Path, mut dir: &Path) {
    while dir.parent().is_some_and(|parent| parent != root) && dir.starts_with(root) {
        if fs::remove_dir(dir).is_err() {
            return;
        }
        match dir.parent() {
            Some(parent) => dir = parent,
            None => return,
        }
    }
}

/// A walk listing keys in order from a position: each directory is read
/// and its entries sorted by the keys they hold (a directory `d` holds keys
/// `d/...`, which sort as `d/`), entries wholly at or before `start_after`
/// are skipped without being entered, and the walk stops once it has
/// `want` keys. A page costs the directories on its path and the keys it
/// returns, not the whole tree (a listing that walked everything per page
/// made paging through a large catalog quadratic).
struct OrderedWalk<'a> {
    /// Keys must start with this (within the first directory walked).
    prefix: &'a str,
    start_after: Option<&'a str>,
    want: usize,
    keys: Vec<String>,
}

impl OrderedWalk<'_> {
    /// Walks `dir`, whose keys start with `key_prefix`; `false` once full.
    fn walk(&mut self, dir: &Path, key_prefix: &str) -> io::Result<bool> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound || e.kind() == io::ErrorKind::NotADirectory => {
                return Ok(true)
            }
            Err(e) => return Err(e),
        };
        // (what the entry's keys sort as, is a directory)
        let mut children = Vec::new();
        for entry in entries {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let file_type = entry.file_type()?;
            let key = format!("{key_prefix}{name}");
            let (sort_key, is_dir) = match (file_type.is_dir(), file_type.is_file()) {
                (true, _) => (format!("{key}/"), true),
                (_, true) => (key, false),
                _ => continue,
            };
            // Keys under the prefix: a directory's keys may still reach it.
            let relevant = sort_key.starts_with(self.prefix) || (is_dir && self.prefix.starts_with(&sort_key));
            if relevant && !self.wholly_before_start(&sort_key, is_dir) {
                children.push((sort_key, is_dir));
            }
        }
        children.sort_unstable();
        for (sort_key, is_dir) in children {
            if is_dir {
                let Some(name) = sort_key.strip_prefix(key_prefix) else {
                    continue;
                };
                if !self.walk(&dir.join(name.trim_end_matches('/')), &sort_key)? {
                    return Ok(false);
                }
            } else {
                if self.keys.len() == self.want {
                    return Ok(false);
                }
                self.keys.push(sort_key);
            }
        }
        Ok(true)
    }

    /// Whether every key an entry holds is at or before `start_after`: a
    /// file's key, or a directory's `d/...` keys when `start_after` is past
    /// `d/` without being inside it.
    fn wholly_before_start(&self, sort_key: &str, is_dir: bool) -> bool {
        let Some(after) = self.start_after else { return false };
        match is_dir {
            false => sort_key <= after,
            true => sort_key < after && !after.starts_with(sort_key),
        }
    }
}

#[async_trait::async_trait]
impl Store for FsStore {
    async fn head(&self, key: &str) -> StoreResult<Option<ObjectMeta>> {
        match fs::metadata(self.path(key)?) {
            Ok(meta) if meta.is_file() => Ok(Some(object_meta(&meta))),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound || e.kind() == io::ErrorKind::NotADirectory => Ok(None),
            Err(e) => Err(io_err(e)),
        }
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> StoreResult<Option<GetResult>> {
        let path = self.path(key)?;
        let opened = open_object(&path, range)?;
        Ok(opened.map(|opened| match opened {
            Opened::Small(data, meta) => GetResult {
                meta,
                body: box_stream(futures::stream::once(async move { Ok(data) })),
            },
            Opened::Large(file, meta, range) => GetResult {
                meta,
                body: box_stream(read_chunks(file, range)),
            },
        }))
    }

    async fn put(&self, key: &str, data: Bytes, mode: PutMode) -> StoreResult<ObjectMeta> {
        self.write(key, data, mode, self.flush()).await
    }

    async fn put_volatile(&self, key: &str, data: Bytes, mode: PutMode) -> StoreResult<ObjectMeta> {
        self.write(key, data, mode, Flush { root: None }).await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        let path = self.path(key)?;
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound || e.kind() == io::ErrorKind::NotADirectory => return Ok(()),
            Err(e) => return Err(io_err(e)),
        }
        if let Some(parent) = path.parent() {
            prune_empty_dirs(&self.root, parent);
        }
        Ok(())
    }

    async fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> StoreResult<ListPage> {
        // Walk the deepest directory that contains the whole prefix.
        let (dir_part, _) = prefix.rsplit_once('/').unwrap_or(("", prefix));
        if !dir_part.is_empty() {
            self.path(dir_part)?;
        }
        let dir = if dir_part.is_empty() {
            self.root.clone()
        } else {
            self.root.join(dir_part)
        };
        let key_prefix = if dir_part.is_empty() {
            String::new()
        } else {
            format!("{dir_part}/")
        };
        let prefix = prefix.to_string();
        let start_after = start_after.map(str::to_string);
        blocking(move || {
            // One key more than asked tells whether more remain.
            let mut walk = OrderedWalk {
                prefix: &prefix,
                start_after: start_after.as_deref(),
                want: limit.saturating_add(1),
                keys: Vec::new(),
            };
            walk.walk(&dir, &key_prefix).map_err(io_err)?;
            let mut keys = walk.keys;
            let more = keys.len() > limit;
            keys.truncate(limit);
            Ok(ListPage { keys, more })
        })
        .await
    }

    /// The directory is locked by this process; two writer threads keep up
    /// with one hashing request thread.
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            part_size: self.part_size,
            part_writes_in_flight: 2,
            single_process: true,
            unsynced_epoch: self.unsynced_epoch,
        }
    }

    async fn create_multipart(&self, key: &str) -> StoreResult<String> {
        self.path(key)?;
        let mut raw = [0u8; 16];
        getrandom::fill(&mut raw).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let id = pier_core::digest::hex(&raw);
        let path = self.multipart_path(&id)?;
        let flush = self.flush();
        blocking(move || {
            File::create_new(&path).map_err(io_err)?;
            flush.entry(&path, false)
        })
        .await?;
        Ok(id)
    }

    async fn put_part(&self, key: &str, upload_id: &str, number: u32, data: Bytes) -> StoreResult<PartRef> {
        self.path(key)?;
        if number == 0 {
            return Err(StoreError::Invalid("parts are numbered from 1".into()));
        }
        let path = self.multipart_path(upload_id)?;
        let offset = (number as u64 - 1) * self.part_size as u64;
        let flush = self.flush();
        blocking(move || {
            let file = open_multipart(&path)?;
            file.write_all_at(&data, offset).map_err(io_err)?;
            // Flushed as a whole on completion; starting now leaves that
            // flush little to wait for.
            flush.start_writing(&file, offset, data.len());
            Ok(PartRef {
                number,
                etag: format!("{number}:{}", data.len()),
            })
        })
        .await
    }

    async fn complete_multipart(&self, key: &str, upload_id: &str, parts: Vec<PartRef>) -> StoreResult<ObjectMeta> {
        let dest = self.path(key)?;
        let path = self.multipart_path(upload_id)?;
        let part_size = self.part_size as u64;
        let last_len: u64 = parts
            .last()
            .and_then(|p| p.etag.split(':').nth(1)?.parse().ok())
            .unwrap_or(0);
        let size = (parts.len() as u64).saturating_sub(1) * part_size + last_len;
        let flush = self.flush();
        blocking(move || {
            let file = open_multipart(&path)?;
            // A retried part may have left a longer file; the parts define the object.
            file.set_len(size).map_err(io_err)?;
            flush.data(&file)?;
            drop(file);
            place(&path, &dest, false, &flush)?;
            fs::metadata(&dest).map(|m| object_meta(&m)).map_err(io_err)
        })
        .await
    }

    async fn abort_multipart(&self, _key: &str, upload_id: &str) -> StoreResult<()> {
        let path = self.multipart_path(upload_id)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(e)),
        }
    }

    /// Files have no URL of their own: the registry serves them.
    async fn signed_url(&self, _key: &str, _expires: std::time::Duration) -> StoreResult<Option<String>> {
        Ok(None)
    }

    async fn forget(&self, _key: &str) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::SystemEnv;
    use pier_core::store::contract;

    #[test]
    fn unflushed_writes_last_for_this_boot() {
        let dir = tempfile::tempdir().unwrap();
        let epoch = FsStore::open(dir.path(), 1024).unwrap().capabilities().unsynced_epoch;
        assert_ne!(epoch, 0, "a disk does not flush every write at once");
        let again = tempfile::tempdir().unwrap();
        let same_boot = FsStore::open(again.path(), 1024).unwrap().capabilities().unsynced_epoch;
        assert_eq!(
            epoch, same_boot,
            "a restart of pier alone keeps the epoch (a killed process loses no page cache)"
        );
    }

    #[tokio::test]
    async fn keeps_the_storage_contract() {
        for fsync in [true, false] {
            keeps_the_storage_contract_with(fsync).await;
        }
    }

    async fn keeps_the_storage_contract_with(fsync: bool) {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path(), 1024).unwrap();
        let store = if fsync { store } else { store.without_fsync() };
        let results = contract::run(&store, &SystemEnv, "contract/").await;
        assert_eq!(contract::all_passed(&results), Ok(contract::check_names().count()));
        assert_eq!(
            files_under(dir.path()),
            vec![dir.path().join(LOCK_FILE)],
            "nothing else is left"
        );
    }

    /// Every file under `dir`, at any depth (top-level directories stay
    /// when their last key goes).
    fn files_under(dir: &Path) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files.extend(files_under(&path));
            } else {
                files.push(path);
            }
        }
        files
    }

    /// Keys in nested directories list in byte order from any position,
    /// one at a time as in pages (a directory `a` holds keys `a/...`, which
    /// sort after `a-b` and `a.b`).
    #[tokio::test]
    async fn pages_through_nested_keys_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path(), 1024).unwrap();
        let mut keys: Vec<String> = [
            "a", "a-b", "a.b", "a/0", "a/0/x", "a/b", "a/b-c/d", "ab", "b/c/d/e", "a0",
        ]
        .iter()
        .map(|name| format!("cat/{name}/_repo"))
        .chain(["cat/z".to_string(), "other/x".to_string()])
        .collect();
        for key in &keys {
            store.put(key, Bytes::new(), PutMode::Overwrite).await.unwrap();
        }
        keys.retain(|k| k.starts_with("cat/"));
        keys.sort();
        let mut listed = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = store.list("cat/", after.as_deref(), 1).await.unwrap();
            listed.extend(page.keys.iter().cloned());
            after = page.keys.last().cloned();
            if !page.more {
                break;
            }
        }
        assert_eq!(listed, keys);
        let from_a = store.list("cat/", Some("cat/a"), 100).await.unwrap().keys;
        assert_eq!(
            from_a,
            keys.iter()
                .filter(|k| k.as_str() > "cat/a")
                .cloned()
                .collect::<Vec<_>>()
        );
        let in_a = store.list("cat/a/", Some("cat/a/0/_repo"), 100).await.unwrap().keys;
        assert_eq!(
            in_a,
            ["cat/a/0/x/_repo", "cat/a/_repo", "cat/a/b-c/d/_repo", "cat/a/b/_repo"]
        );
    }

    #[tokio::test]
    async fn one_process_per_directory() {
        let dir = tempfile::tempdir().unwrap();
        let _first = FsStore::open(dir.path(), 1024).unwrap();
        assert!(
            FsStore::open(dir.path(), 1024).is_err(),
            "a second open of the same directory is refused"
        );
    }

    #[tokio::test]
    async fn refuses_keys_escaping_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(FsStore::open(dir.path(), 1024).unwrap());
        for key in ["../x", "a/../../x", "/etc/passwd", "a//b", ".tmp/x", ""] {
            assert!(store.put(key, Bytes::new(), PutMode::Overwrite).await.is_err(), "{key}");
        }
    }
}
