//! The storage port on an R2 bucket binding: the strongly consistent source of
//! truth for everything the edge deployment stores.
//!
//! R2 has every operation the port needs: ranged streamed reads, conditional
//! writes (`onlyIf`), sorted listing with `startAfter`, and multipart uploads
//! that any isolate can resume by key and upload id.

use std::ops::Range;

use bytes::Bytes;
use pier_core::platform::box_stream;
use pier_core::store::{
    Capabilities, GetResult, ListPage, ObjectMeta, PartRef, PutMode, Store, StoreError, StoreResult,
};
use worker::{Bucket, Conditional, Object, ResponseBody, UploadedPart};

use crate::js_body::js_body;
use crate::js_error::r2_error;

/// R2 answers at most this many keys per list call.
const R2_MAX_LIST: usize = 1000;
/// Objects up to this size are read at once rather than streamed: the small
/// ones core reads whole (tags, blob records, manifests).
const EAGER_READ_MAX_BYTES: u64 = 64 << 10;

/// R2 refuses more parts than this in one multipart upload.
const R2_MAX_PARTS: u32 = 10_000;

pub struct R2Store {
    bucket: Bucket,
    part_size: usize,
}

impl R2Store {
    /// `part_size` must be one R2 accepts for every part but the last (5 MiB
    /// to 5 GiB); the configuration checks it.
    pub fn new(bucket: Bucket, part_size: usize) -> R2Store {
        R2Store { bucket, part_size }
    }
}

fn meta_of(object: &Object) -> ObjectMeta {
    ObjectMeta {
        size: object.size(),
        etag: object.etag(),
    }
}

fn empty_result(meta: ObjectMeta) -> GetResult {
    GetResult {
        meta,
        body: box_stream(futures::stream::empty()),
    }
}

fn part_number(number: u32) -> StoreResult<u16> {
    if (1..=R2_MAX_PARTS).contains(&number) {
        Ok(number as u16)
    } else {
        Err(StoreError::Invalid(format!(
            "part number {number} outside 1..={R2_MAX_PARTS}"
        )))
    }
}

#[async_trait::async_trait(?Send)]
impl Store for R2Store {
    async fn head(&self, key: &str) -> StoreResult<Option<ObjectMeta>> {
        let object = self.bucket.head(key).await.map_err(|e| r2_error("head", key, e))?;
        Ok(object.as_ref().map(meta_of))
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> StoreResult<Option<GetResult>> {
        let request = self.bucket.get(key);
        let request = match &range {
            // R2 has no empty range: an empty read only needs the object to exist.
            Some(r) if r.is_empty() => {
                return Ok(self.head(key).await?.map(empty_result));
            }
            Some(r) => request.range(worker::Range::OffsetWithLength {
                offset: r.start,
                length: r.end - r.start,
            }),
            None => request,
        };
        let Some(object) = request.execute().await.map_err(|e| r2_error("get", key, e))? else {
            return Ok(None);
        };
        let meta = meta_of(&object);
        if let Some(r) = &range {
            if r.end > meta.size {
                return Err(StoreError::Invalid(format!(
                    "range {r:?} outside {key} of {} bytes",
                    meta.size
                )));
            }
        }
        let Some(body) = object.body() else {
            return Ok(Some(empty_result(meta)));
        };
        if meta.size <= EAGER_READ_MAX_BYTES {
            // Tags, records and manifests are read whole: one copy out of
            // JavaScript costs less than a stream polled across the boundary.
            let bytes = Bytes::from(body.bytes().await.map_err(|e| r2_error("get", key, e))?);
            return Ok(Some(GetResult {
                meta,
                body: box_stream(futures::stream::once(async move { Ok(bytes) })),
            }));
        }
        let length = range.as_ref().map_or(meta.size, |r| r.end - r.start);
        let readable = match body.response_body().map_err(|e| r2_error("get", key, e))? {
            ResponseBody::Stream(readable) => readable,
            _ => return Err(StoreError::Unavailable(format!("R2 get {key}: no body stream"))),
        };
        Ok(Some(GetResult {
            meta,
            body: js_body(readable, length, format!("R2 object {key}")),
        }))
    }

    async fn put(&self, key: &str, data: Bytes, mode: PutMode) -> StoreResult<ObjectMeta> {
        let request = self.bucket.put(key, Vec::from(data));
        let request = match &mode {
            PutMode::Overwrite => request,
            PutMode::Create => request.only_if(Conditional {
                etag_does_not_match: Some("*".into()),
                ..Conditional::default()
            }),
            PutMode::Update(etag) => request.only_if(Conditional {
                etag_matches: Some(etag.clone()),
                ..Conditional::default()
            }),
        };
        match request.execute().await.map_err(|e| r2_error("put", key, e))? {
            Some(object) => Ok(meta_of(&object)),
            None if mode == PutMode::Create => Err(StoreError::AlreadyExists),
            None => Err(StoreError::PreconditionFailed),
        }
    }

    /// R2 keeps what it acknowledges: the same as `put`.
    async fn put_volatile(&self, key: &str, data: Bytes, mode: PutMode) -> StoreResult<ObjectMeta> {
        self.put(key, data, mode).await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.bucket.delete(key).await.map_err(|e| r2_error("delete", key, e))
    }

    async fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> StoreResult<ListPage> {
        let request = self
            .bucket
            .list()
            .prefix(prefix)
            .limit(limit.clamp(1, R2_MAX_LIST) as u32);
        let request = match start_after {
            Some(after) => request.start_after(after),
            None => request,
        };
        let listed = request.execute().await.map_err(|e| r2_error("list", prefix, e))?;
        Ok(ListPage {
            keys: listed.objects().iter().map(Object::key).collect(),
            more: listed.truncated(),
        })
    }

    /// Every isolate shares the bucket; an isolate has little memory to
    /// spare for parts in flight.
    fn capabilities(&self) -> Capabilities {
        Capabilities::shared(self.part_size)
    }

    async fn create_multipart(&self, key: &str) -> StoreResult<String> {
        let upload = self
            .bucket
            .create_multipart_upload(key)
            .execute()
            .await
            .map_err(|e| r2_error("create multipart", key, e))?;
        Ok(upload.upload_id().await)
    }

    async fn put_part(&self, key: &str, upload_id: &str, number: u32, data: Bytes) -> StoreResult<PartRef> {
        let upload = self
            .bucket
            .resume_multipart_upload(key, upload_id)
            .map_err(|e| r2_error("resume multipart", key, e))?;
        let part = upload
            .upload_part(part_number(number)?, Vec::from(data))
            .await
            .map_err(|e| r2_error("upload part", key, e))?;
        Ok(PartRef {
            number,
            etag: part.etag(),
        })
    }

    async fn complete_multipart(&self, key: &str, upload_id: &str, parts: Vec<PartRef>) -> StoreResult<ObjectMeta> {
        let upload = self
            .bucket
            .resume_multipart_upload(key, upload_id)
            .map_err(|e| r2_error("resume multipart", key, e))?;
        let parts = parts
            .into_iter()
            .map(|part| Ok(UploadedPart::new(part_number(part.number)?, part.etag)))
            .collect::<StoreResult<Vec<_>>>()?;
        let object = upload
            .complete(parts)
            .await
            .map_err(|e| r2_error("complete multipart", key, e))?;
        Ok(meta_of(&object))
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> StoreResult<()> {
        let upload = self
            .bucket
            .resume_multipart_upload(key, upload_id)
            .map_err(|e| r2_error("resume multipart", key, e))?;
        match upload.abort().await.map_err(|e| r2_error("abort multipart", key, e)) {
            Ok(()) | Err(StoreError::NotFound) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// The binding cannot sign URLs (that takes R2's S3 API and its keys).
    async fn signed_url(&self, _key: &str, _expires: std::time::Duration) -> StoreResult<Option<String>> {
        Ok(None)
    }

    async fn forget(&self, _key: &str) {}
}
