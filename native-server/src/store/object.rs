//! The object-store backend: S3 (and S3-compatible servers such as MinIO, Ceph
//! or R2's S3 API), Google Cloud Storage and Azure Blob through `object_store`.
//!
//! This is what lets many stateless `pier` instances share one bucket. The
//! port's conditional writes map onto the backends' own (`If-None-Match: *`,
//! `If-Match: <etag>`; on GCS generation preconditions, the port's etag being
//! the generation there), and multipart writes go through `MultipartStore`, whose
//! uploads are addressed by id rather than held in a process, so a chunked
//! push may continue on any instance. Keys live under an optional prefix inside
//! the bucket. Failures other than "not found" and refused conditions are
//! reported as [`StoreError::Unavailable`], which clients see as a retryable
//! 503.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{
    ClientConfigKey, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutOptions, PutPayload, RetryConfig,
    UpdateVersion,
};
use pier_core::platform::box_stream;
use pier_core::store::{
    Capabilities, GetResult, ListPage, ObjectMeta, PartRef, PutMode, Store, StoreError, StoreResult,
};
use url::Url;

/// Endpoint settings for S3 and S3-compatible servers; unset values come from
/// the `AWS_*` environment variables, then `object_store`'s defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct S3Options {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub allow_http: Option<bool>,
    pub virtual_hosted_style: Option<bool>,
}

/// Retries of one storage request: a few quick ones for a blip, then the
/// error goes to the client as a 503 (registry clients retry on their own)
/// rather than holding the request for minutes.
fn retry_policy() -> RetryConfig {
    RetryConfig {
        max_retries: 3,
        retry_timeout: Duration::from_secs(15),
        ..RetryConfig::default()
    }
}

/// object_store's default client gives a request 30 s from connecting to the
/// last body byte, which would cut off any blob pull that streams for longer.
/// A stalled connection is caught by the read timeout instead; the request
/// timeout is only a backstop. Set as config keys, so that client settings
/// read from the environment (proxies, `*_ALLOW_HTTP`) are kept.
const CLIENT_TIMEOUTS: [(ClientConfigKey, &str); 2] =
    [(ClientConfigKey::Timeout, "24h"), (ClientConfigKey::ReadTimeout, "30s")];

/// What names one version of an object in the port's `etag` (what a
/// conditional update must match).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Versions {
    /// The backend's ETag, matched with `If-Match` (S3, Azure, memory).
    ETag,
    /// GCS's generation number, matched with `x-goog-if-generation-match`.
    /// `object_store` makes conditional updates on GCS by generation only,
    /// and a GCS ETag is no version anyway: for a simple upload it is the
    /// MD5 of the bytes, the same again when the same bytes are rewritten.
    Generation,
}

/// A store over one bucket (or a prefix inside it).
pub struct BucketStore {
    objects: Arc<dyn ObjectStore>,
    multipart: Arc<dyn MultipartStore>,
    signer: Option<Arc<dyn Signer>>,
    /// Prepended to every key: empty, or a path ending with `/`.
    root: String,
    part_size: usize,
    versions: Versions,
}

impl BucketStore {
    /// A store over `backend`, keeping every key under `prefix` (may be empty).
    pub fn new<B: ObjectStore + MultipartStore>(
        backend: Arc<B>,
        prefix: &str,
        part_size: usize,
    ) -> Result<BucketStore, String> {
        let prefix = prefix.trim_matches('/');
        if !prefix.is_empty() {
            Path::parse(prefix).map_err(|e| format!("bucket prefix {prefix:?}: {e}"))?;
        }
        Ok(BucketStore {
            objects: backend.clone(),
            multipart: backend,
            signer: None,
            root: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            part_size,
            versions: Versions::ETag,
        })
    }

    /// Lets [`Store::signed_url`] hand out URLs signed by `signer`.
    pub fn with_signer(mut self, signer: Arc<dyn Signer>) -> BucketStore {
        self.signer = Some(signer);
        self
    }

    /// Opens the bucket a URL names: `s3://bucket/prefix`, `gs://bucket/prefix`
    /// or `az://container/prefix`, with credentials from the environment.
    pub fn open(url: &Url, s3: &S3Options, part_size: usize) -> Result<BucketStore, String> {
        let prefix = url.path();
        let failed = |e: object_store::Error| format!("storage {url}: {e}");
        match url.scheme() {
            "s3" | "s3a" => {
                let mut builder = AmazonS3Builder::from_env()
                    .with_url(url.as_str())
                    .with_retry(retry_policy());
                for (key, value) in CLIENT_TIMEOUTS {
                    builder = builder.with_config(AmazonS3ConfigKey::Client(key), value);
                }
                if let Some(endpoint) = &s3.endpoint {
                    builder = builder.with_endpoint(endpoint);
                }
                if let Some(region) = &s3.region {
                    builder = builder.with_region(region);
                }
                if let Some(allow_http) = s3.allow_http {
                    builder = builder.with_allow_http(allow_http);
                }
                if let Some(virtual_hosted) = s3.virtual_hosted_style {
                    builder = builder.with_virtual_hosted_style_request(virtual_hosted);
                }
                let backend = Arc::new(builder.build().map_err(failed)?);
                Ok(BucketStore::new(backend.clone(), prefix, part_size)?.with_signer(backend))
            }
            "gs" => {
                let mut builder = GoogleCloudStorageBuilder::from_env()
                    .with_url(url.as_str())
                    .with_retry(retry_policy());
                for (key, value) in CLIENT_TIMEOUTS {
                    builder = builder.with_config(GoogleConfigKey::Client(key), value);
                }
                let backend = Arc::new(builder.build().map_err(failed)?);
                let store = BucketStore::new(backend.clone(), prefix, part_size)?.with_signer(backend);
                Ok(BucketStore {
                    versions: Versions::Generation,
                    ..store
                })
            }
            "az" | "azure" => {
                let mut builder = MicrosoftAzureBuilder::from_env()
                    .with_url(url.as_str())
                    .with_retry(retry_policy());
                for (key, value) in CLIENT_TIMEOUTS {
                    builder = builder.with_config(AzureConfigKey::Client(key), value);
                }
                let backend = Arc::new(builder.build().map_err(failed)?);
                Ok(BucketStore::new(backend.clone(), prefix, part_size)?.with_signer(backend))
            }
            other => Err(format!("storage URL scheme {other:?} is not one of s3, gs, az")),
        }
    }

    fn path(&self, key: &str) -> StoreResult<Path> {
        Path::parse(format!("{}{key}", self.root))
            .map_err(|e| StoreError::Invalid(format!("key {key:?} is not a valid object path: {e}")))
    }

    /// The port's key of an object the backend listed.
    fn key_of<'a>(&self, location: &'a Path) -> Option<&'a str> {
        location.as_ref().strip_prefix(self.root.as_str())
    }

    async fn meta_of(&self, path: &Path) -> StoreResult<ObjectMeta> {
        self.objects
            .head(path)
            .await
            .map(|meta| self.port_meta(&meta))
            .map_err(port_error)
    }

    fn port_meta(&self, meta: &object_store::ObjectMeta) -> ObjectMeta {
        let version = match self.versions {
            Versions::ETag => &meta.e_tag,
            Versions::Generation => &meta.version,
        };
        ObjectMeta {
            size: meta.size,
            etag: version.clone().unwrap_or_default(),
        }
    }
}

/// Maps a backend error onto the port's; `NotFound` is left to callers that
/// give absence a meaning. Failures are logged whole here and reach clients
/// (as the 503's message) without the backend's endpoint, bucket or keys.
fn port_error(err: object_store::Error) -> StoreError {
    match err {
        object_store::Error::NotFound { .. } => StoreError::NotFound,
        object_store::Error::AlreadyExists { .. } => StoreError::AlreadyExists,
        object_store::Error::Precondition { .. } => StoreError::PreconditionFailed,
        object_store::Error::InvalidPath { .. } => StoreError::Invalid(err.to_string()),
        // The in-memory backend reports an unknown multipart upload this way
        // (S3, GCS and Azure answer 404, which is `NotFound` above).
        object_store::Error::Generic {
            store: "InMemory",
            ref source,
        } if source.to_string().starts_with("MultipartUpload not found") => StoreError::NotFound,
        other => {
            tracing::warn!(error = %other, "object store request failed");
            StoreError::Unavailable("the object store failed or did not answer; retry later".into())
        }
    }
}

/// `Ok(None)` for a missing object.
fn absent_as_none<T>(result: object_store::Result<T>) -> StoreResult<Option<T>> {
    match result.map_err(port_error) {
        Ok(value) => Ok(Some(value)),
        Err(StoreError::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

#[async_trait::async_trait]
impl Store for BucketStore {
    async fn head(&self, key: &str) -> StoreResult<Option<ObjectMeta>> {
        let path = self.path(key)?;
        Ok(absent_as_none(self.objects.head(&path).await)?.map(|meta| self.port_meta(&meta)))
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> StoreResult<Option<GetResult>> {
        let path = self.path(key)?;
        if let Some(range) = &range {
            if range.is_empty() {
                // Backends refuse zero-length ranges; the answer is known.
                let Some(meta) = self.head(key).await? else {
                    return Ok(None);
                };
                if range.start > meta.size {
                    return Err(StoreError::Invalid(format!(
                        "range {range:?} outside object of {} bytes",
                        meta.size
                    )));
                }
                return Ok(Some(GetResult {
                    meta,
                    body: box_stream(futures::stream::empty()),
                }));
            }
        }
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..GetOptions::default()
        };
        let Some(result) = absent_as_none(self.objects.get_opts(&path, options).await)? else {
            return Ok(None);
        };
        let meta = self.port_meta(&result.meta);
        let body = result.into_stream().map_err(port_error);
        Ok(Some(GetResult {
            meta,
            body: box_stream(body),
        }))
    }

    async fn put(&self, key: &str, data: Bytes, mode: PutMode) -> StoreResult<ObjectMeta> {
        let path = self.path(key)?;
        let size = data.len() as u64;
        let updating = matches!(mode, PutMode::Update(_));
        let mode = match mode {
            PutMode::Overwrite => object_store::PutMode::Overwrite,
            PutMode::Create => object_store::PutMode::Create,
            PutMode::Update(etag) => object_store::PutMode::Update(match self.versions {
                Versions::ETag => UpdateVersion {
                    e_tag: Some(etag),
                    version: None,
                },
                Versions::Generation => UpdateVersion {
                    e_tag: None,
                    version: Some(etag),
                },
            }),
        };
        let options = PutOptions {
            mode,
            ..PutOptions::default()
        };
        match self.objects.put_opts(&path, PutPayload::from(data), options).await {
            Ok(result) => {
                let version = match self.versions {
                    Versions::ETag => result.e_tag,
                    Versions::Generation => result.version,
                };
                match version {
                    Some(etag) => Ok(ObjectMeta { size, etag }),
                    None => self.meta_of(&path).await,
                }
            }
            // An update of an object that is gone is a refused condition.
            Err(object_store::Error::NotFound { .. }) if updating => Err(StoreError::PreconditionFailed),
            Err(e) => Err(port_error(e)),
        }
    }

    /// A bucket keeps what it acknowledges: the same as `put`.
    async fn put_volatile(&self, key: &str, data: Bytes, mode: PutMode) -> StoreResult<ObjectMeta> {
        self.put(key, data, mode).await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        let path = self.path(key)?;
        absent_as_none(self.objects.delete(&path).await).map(|_| ())
    }

    async fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> StoreResult<ListPage> {
        // The backends list whole path segments, so list the directory that
        // holds the prefix and keep the keys that start with all of it.
        let directory = match prefix.rfind('/') {
            Some(end) => &prefix[..end],
            None => "",
        };
        let directory = format!("{}{directory}", self.root);
        let directory = if directory.is_empty() {
            None
        } else {
            Some(Path::parse(directory.trim_end_matches('/')).map_err(|e| StoreError::Invalid(e.to_string()))?)
        };
        // A cursor that is not a valid path (a client's `last=`) is applied here only.
        let offset = start_after.and_then(|after| self.path(after).ok());
        let mut listing = match &offset {
            Some(offset) => self.objects.list_with_offset(directory.as_ref(), offset),
            None => self.objects.list(directory.as_ref()),
        };
        let mut keys: Vec<String> = Vec::new();
        let mut sorted = true;
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(port_error)?;
            let Some(key) = self.key_of(&meta.location) else {
                continue;
            };
            if !key.starts_with(prefix) || start_after.is_some_and(|after| key <= after) {
                continue;
            }
            sorted &= keys.last().is_none_or(|last| last.as_str() < key);
            keys.push(key.to_string());
            // S3, GCS, Azure and memory list in key order, so a page needs
            // only `limit + 1` keys; a backend that does not is read whole.
            if sorted && keys.len() > limit {
                break;
            }
        }
        if !sorted {
            keys.sort_unstable();
        }
        let more = keys.len() > limit;
        keys.truncate(limit);
        Ok(ListPage { keys, more })
    }

    /// Instances share the bucket; one part write at a time keeps memory low.
    fn capabilities(&self) -> Capabilities {
        Capabilities::shared(self.part_size)
    }

    async fn create_multipart(&self, key: &str) -> StoreResult<String> {
        let path = self.path(key)?;
        self.multipart.create_multipart(&path).await.map_err(port_error)
    }

    async fn put_part(&self, key: &str, upload_id: &str, number: u32, data: Bytes) -> StoreResult<PartRef> {
        if number == 0 {
            return Err(StoreError::Invalid("parts are numbered from 1".into()));
        }
        let path = self.path(key)?;
        let part = self
            .multipart
            .put_part(
                &path,
                &upload_id.to_string(),
                number as usize - 1,
                PutPayload::from(data),
            )
            .await
            .map_err(port_error)?;
        Ok(PartRef {
            number,
            etag: part.content_id,
        })
    }

    async fn complete_multipart(&self, key: &str, upload_id: &str, mut parts: Vec<PartRef>) -> StoreResult<ObjectMeta> {
        let path = self.path(key)?;
        parts.sort_by_key(|part| part.number);
        let parts = parts.into_iter().map(|part| PartId { content_id: part.etag }).collect();
        self.multipart
            .complete_multipart(&path, &upload_id.to_string(), parts)
            .await
            .map_err(port_error)?;
        self.meta_of(&path).await
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> StoreResult<()> {
        let path = self.path(key)?;
        absent_as_none(self.multipart.abort_multipart(&path, &upload_id.to_string()).await).map(|_| ())
    }

    async fn signed_url(&self, key: &str, expires: Duration) -> StoreResult<Option<String>> {
        let Some(signer) = &self.signer else {
            return Ok(None);
        };
        let path = self.path(key)?;
        let url = signer
            .signed_url(http::Method::GET, &path, expires)
            .await
            .map_err(port_error)?;
        Ok(Some(url.into()))
    }

    async fn forget(&self, _key: &str) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::SystemEnv;
    use object_store::memory::InMemory;
    use pier_core::store::contract;

    #[tokio::test]
    async fn keeps_keys_under_its_prefix() {
        let backend = Arc::new(InMemory::new());
        let store = BucketStore::new(backend.clone(), "/team/registry/", 1024).unwrap();
        let results = contract::run(&store, &SystemEnv, "contract/").await;
        assert_eq!(contract::all_passed(&results), Ok(contract::check_names().count()));
        store
            .put("catalog/a/_repo", Bytes::new(), PutMode::Overwrite)
            .await
            .unwrap();
        let outside = backend
            .list(None)
            .map_ok(|m| m.location.to_string())
            .try_collect::<Vec<_>>();
        let outside: Vec<String> = outside.await.unwrap();
        assert!(outside.contains(&"team/registry/catalog/a/_repo".to_string()));
        assert!(
            outside.iter().all(|key| key.starts_with("team/registry/")),
            "every object is under the prefix: {outside:?}"
        );
        assert_eq!(
            store.list("catalog/", None, 10).await.unwrap().keys,
            vec!["catalog/a/_repo".to_string()],
            "listing gives keys without the prefix"
        );
    }

    #[tokio::test]
    async fn prefixes_need_not_end_at_a_slash() {
        let store = BucketStore::new(Arc::new(InMemory::new()), "", 1024).unwrap();
        for key in ["tags/v1", "tags/v10", "tags/v2", "tags/w1"] {
            store.put(key, Bytes::new(), PutMode::Overwrite).await.unwrap();
        }
        let page = store.list("tags/v1", None, 10).await.unwrap();
        assert_eq!(page.keys, vec!["tags/v1".to_string(), "tags/v10".to_string()]);
        let page = store.list("tags/", Some("tags/v%"), 10).await.unwrap();
        assert_eq!(
            page.keys,
            vec!["tags/v1", "tags/v10", "tags/v2", "tags/w1"],
            "a cursor that is no valid path still orders"
        );
    }

    #[tokio::test]
    async fn memory_has_no_signed_urls() {
        let store = BucketStore::new(Arc::new(InMemory::new()), "", 1024).unwrap();
        assert_eq!(store.signed_url("data/x", Duration::from_secs(60)).await, Ok(None));
    }
}
