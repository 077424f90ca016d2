//! An in-memory backend: the reference implementation of the port, used by the
//! core's own tests and for throwaway registries.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use bytes::{Bytes, BytesMut};

use super::{Capabilities, GetResult, ListPage, ObjectMeta, PartRef, PutMode, Store, StoreError, StoreResult};

/// A multipart upload in progress: the key it completes into, its parts by number.
type Multipart = (String, BTreeMap<u32, Bytes>);

/// Objects and multipart uploads in process memory.
pub struct MemoryStore {
    part_size: usize,
    /// Reported as `Capabilities::single_process` (see [`MemoryStore::owned`]).
    single_process: bool,
    version: AtomicU64,
    objects: Mutex<BTreeMap<String, (Bytes, String)>>,
    uploads: Mutex<HashMap<String, Multipart>>,
}

impl MemoryStore {
    /// A store whose multipart parts are `part_size` bytes.
    pub fn new(part_size: usize) -> MemoryStore {
        MemoryStore {
            part_size,
            single_process: false,
            version: AtomicU64::new(1),
            objects: Mutex::new(BTreeMap::new()),
            uploads: Mutex::new(HashMap::new()),
        }
    }

    /// A store that says one process owns it, as a locked local directory
    /// does, for tests of what relies on that.
    pub fn owned(part_size: usize) -> MemoryStore {
        MemoryStore {
            single_process: true,
            ..MemoryStore::new(part_size)
        }
    }

    fn next_etag(&self) -> String {
        format!("m{}", self.version.fetch_add(1, Ordering::Relaxed))
    }

    /// A copy of everything stored, multipart writes in progress included
    /// (tests that run many schedules from one setup start each from a copy).
    pub fn snapshot(&self) -> MemoryStore {
        MemoryStore {
            part_size: self.part_size,
            single_process: self.single_process,
            version: AtomicU64::new(self.version.load(Ordering::Relaxed)),
            objects: Mutex::new(self.objects.lock().unwrap_or_else(PoisonError::into_inner).clone()),
            uploads: Mutex::new(self.uploads.lock().unwrap_or_else(PoisonError::into_inner).clone()),
        }
    }

    /// Total bytes held in objects (for tests measuring what GC frees).
    pub fn total_bytes(&self) -> u64 {
        self.objects
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(|(data, _)| data.len() as u64)
            .sum()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new(5 << 20)
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl Store for MemoryStore {
    async fn head(&self, key: &str) -> StoreResult<Option<ObjectMeta>> {
        let objects = self.objects.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(objects.get(key).map(|(data, etag)| ObjectMeta {
            size: data.len() as u64,
            etag: etag.clone(),
        }))
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> StoreResult<Option<GetResult>> {
        let found = self
            .objects
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned();
        let Some((data, etag)) = found else {
            return Ok(None);
        };
        let meta = ObjectMeta {
            size: data.len() as u64,
            etag,
        };
        let slice = match range {
            Some(r) if r.start <= r.end && r.end <= meta.size => data.slice(r.start as usize..r.end as usize),
            Some(r) => {
                return Err(StoreError::Invalid(format!(
                    "range {r:?} outside object of {} bytes",
                    meta.size
                )))
            }
            None => data,
        };
        let body = crate::platform::box_stream(futures::stream::once(async move { Ok(slice) }));
        Ok(Some(GetResult { meta, body }))
    }

    async fn put(&self, key: &str, data: Bytes, mode: PutMode) -> StoreResult<ObjectMeta> {
        let mut objects = self.objects.lock().unwrap_or_else(PoisonError::into_inner);
        match (&mode, objects.get(key)) {
            (PutMode::Create, Some(_)) => return Err(StoreError::AlreadyExists),
            (PutMode::Update(expected), Some((_, etag))) if etag != expected => {
                return Err(StoreError::PreconditionFailed)
            }
            (PutMode::Update(_), None) => return Err(StoreError::PreconditionFailed),
            _ => {}
        }
        let etag = self.next_etag();
        let meta = ObjectMeta {
            size: data.len() as u64,
            etag: etag.clone(),
        };
        objects.insert(key.to_string(), (data, etag));
        Ok(meta)
    }

    /// Nothing in memory outlives a crash: the same as `put`.
    async fn put_volatile(&self, key: &str, data: Bytes, mode: PutMode) -> StoreResult<ObjectMeta> {
        self.put(key, data, mode).await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.objects.lock().unwrap_or_else(PoisonError::into_inner).remove(key);
        Ok(())
    }

    async fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> StoreResult<ListPage> {
        let objects = self.objects.lock().unwrap_or_else(PoisonError::into_inner);
        let mut keys = objects
            .range(prefix.to_string()..)
            .map(|(key, _)| key)
            .take_while(|key| key.starts_with(prefix))
            .filter(|key| start_after.is_none_or(|after| key.as_str() > after));
        let page: Vec<String> = keys.by_ref().take(limit).cloned().collect();
        let more = keys.next().is_some();
        Ok(ListPage { keys: page, more })
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            single_process: self.single_process,
            ..Capabilities::shared(self.part_size)
        }
    }

    async fn create_multipart(&self, key: &str) -> StoreResult<String> {
        let id = self.next_etag();
        self.uploads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.clone(), (key.to_string(), BTreeMap::new()));
        Ok(id)
    }

    async fn put_part(&self, key: &str, upload_id: &str, number: u32, data: Bytes) -> StoreResult<PartRef> {
        let mut uploads = self.uploads.lock().unwrap_or_else(PoisonError::into_inner);
        match uploads.get_mut(upload_id) {
            Some((target, parts)) if target == key => {
                parts.insert(number, data);
                Ok(PartRef {
                    number,
                    etag: format!("p{number}"),
                })
            }
            _ => Err(StoreError::NotFound),
        }
    }

    async fn complete_multipart(&self, key: &str, upload_id: &str, parts: Vec<PartRef>) -> StoreResult<ObjectMeta> {
        let (target, stored) = self
            .uploads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(upload_id)
            .ok_or(StoreError::NotFound)?;
        if target != key {
            return Err(StoreError::NotFound);
        }
        let mut data = BytesMut::new();
        for (i, part) in parts.iter().enumerate() {
            let bytes = stored
                .get(&part.number)
                .ok_or(StoreError::Invalid(format!("part {} missing", part.number)))?;
            if i + 1 < parts.len() && bytes.len() != self.part_size {
                return Err(StoreError::Invalid(format!(
                    "part {} is not {} bytes",
                    part.number, self.part_size
                )));
            }
            data.extend_from_slice(bytes);
        }
        self.put(key, data.freeze(), PutMode::Overwrite).await
    }

    async fn abort_multipart(&self, _key: &str, upload_id: &str) -> StoreResult<()> {
        self.uploads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(upload_id);
        Ok(())
    }

    async fn signed_url(&self, _key: &str, _expires: std::time::Duration) -> StoreResult<Option<String>> {
        Ok(None)
    }

    async fn forget(&self, _key: &str) {}
}

#[cfg(test)]
mod tests {
    use crate::store::contract;
    use crate::testing::TestEnv;

    #[test]
    fn keeps_the_storage_contract() {
        let store = super::MemoryStore::new(1024);
        let results = futures::executor::block_on(contract::run(&store, &TestEnv::at(0), "contract/"));
        assert_eq!(contract::all_passed(&results), Ok(contract::check_names().count()));
        assert_eq!(store.total_bytes(), 0, "the contract leaves nothing behind");
    }
}
