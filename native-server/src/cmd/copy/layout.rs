//! An OCI image layout directory (`oci-layout`, `index.json`,
//! `blobs/<alg>/<hex>`) as a place `pier copy` reads images from and writes
//! them to, so an air-gapped site can be filled from a disk. Tags are the
//! `org.opencontainers.image.ref.name` annotations of `index.json`, as
//! skopeo and umoci write them. Files appear by rename once complete, so an
//! interrupted copy leaves no partial blob under its digest.

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use pier_core::digest::Digest;
use pier_core::manifest::{self, OCI_INDEX};
use pier_core::names::Tag;
use pier_core::platform::box_stream;
use pier_core::records::{Reference, StoredManifest};
use pier_core::remote::copy::{ImageStore, ManifestRole};
use pier_core::remote::http::{HttpBody, HttpError};
use pier_core::remote::RemoteError;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const READ_CHUNK: usize = 256 << 10;

pub struct OciLayout {
    dir: PathBuf,
}

fn io_error(what: &str, path: &Path, error: std::io::Error) -> RemoteError {
    RemoteError::Transport(format!("{what} {}: {error}", path.display()))
}

fn invalid(path: &Path, why: impl std::fmt::Display) -> RemoteError {
    RemoteError::Invalid(format!("{}: {why}", path.display()))
}

impl OciLayout {
    pub fn new(dir: impl Into<PathBuf>) -> OciLayout {
        OciLayout { dir: dir.into() }
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir
            .join("blobs")
            .join(digest.algorithm().name())
            .join(digest.hex())
    }

    fn index_path(&self) -> PathBuf {
        self.dir.join("index.json")
    }

    /// `index.json`, or an empty index when the directory has none yet.
    async fn index(&self) -> Result<Value, RemoteError> {
        let path = self.index_path();
        match tokio::fs::read(&path).await {
            Ok(bytes) => {
                let index: Value = serde_json::from_slice(&bytes).map_err(|e| invalid(&path, e))?;
                if !index["manifests"].is_array() {
                    return Err(invalid(&path, "no manifests array"));
                }
                Ok(index)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [] }))
            }
            Err(e) => Err(io_error("reading", &path, e)),
        }
    }

    /// What to copy out of the layout: the manifest tagged `tag`, or else
    /// the only manifest it holds.
    pub async fn source_reference(&self, tag: Option<&Tag>) -> Result<Reference, RemoteError> {
        if let Some(tag) = tag {
            return Ok(Reference::Tag(tag.clone()));
        }
        let index = self.index().await?;
        let entries = index["manifests"].as_array().expect("checked");
        match entries.as_slice() {
            [only] => entry_digest(only, &self.index_path()).map(Reference::Digest),
            _ => {
                let tags: Vec<&str> = entries
                    .iter()
                    .filter_map(|e| e["annotations"][REF_NAME].as_str())
                    .collect();
                Err(RemoteError::Invalid(format!(
                    "{} holds {} manifests: name one with oci:DIR:TAG (tags: {})",
                    self.dir.display(),
                    entries.len(),
                    tags.join(", ")
                )))
            }
        }
    }

    /// Writes `body` to the blob file of `digest` through a temporary file.
    async fn write_blob(&self, digest: &Digest, size: u64, mut body: HttpBody) -> Result<(), RemoteError> {
        let path = self.blob_path(digest);
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(());
        }
        let parent = path.parent().expect("blobs/<alg>");
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| io_error("creating", parent, e))?;
        let temp = parent.join(format!(".partial-{}-{}", digest.hex(), std::process::id()));
        let written = async {
            let mut file = tokio::fs::File::create(&temp)
                .await
                .map_err(|e| io_error("creating", &temp, e))?;
            let mut seen = 0u64;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| RemoteError::Transport(format!("{digest}: {e}")))?;
                seen += chunk.len() as u64;
                file.write_all(&chunk)
                    .await
                    .map_err(|e| io_error("writing", &temp, e))?;
            }
            if seen != size {
                return Err(RemoteError::Invalid(format!("{digest}: {seen} bytes, not {size}")));
            }
            file.sync_all().await.map_err(|e| io_error("syncing", &temp, e))?;
            tokio::fs::rename(&temp, &path)
                .await
                .map_err(|e| io_error("renaming", &temp, e))
        }
        .await;
        if written.is_err() {
            let _ = tokio::fs::remove_file(&temp).await;
        }
        written
    }

    async fn write_file_atomically(&self, path: &Path, bytes: Vec<u8>) -> Result<(), RemoteError> {
        let temp = path.with_extension(format!("partial-{}", std::process::id()));
        tokio::fs::write(&temp, bytes)
            .await
            .map_err(|e| io_error("writing", &temp, e))?;
        tokio::fs::rename(&temp, path)
            .await
            .map_err(|e| io_error("renaming", &temp, e))
    }
}

fn entry_digest(entry: &Value, index_path: &Path) -> Result<Digest, RemoteError> {
    entry["digest"]
        .as_str()
        .and_then(|d| Digest::parse(d).ok())
        .ok_or_else(|| invalid(index_path, "an entry without a valid digest"))
}

#[async_trait::async_trait]
impl ImageStore for OciLayout {
    fn describe(&self) -> String {
        format!("oci:{}", self.dir.display())
    }

    async fn manifest(&self, reference: &Reference) -> Result<Option<StoredManifest>, RemoteError> {
        let digest = match reference {
            Reference::Digest(digest) => digest.clone(),
            Reference::Tag(tag) => {
                let index = self.index().await?;
                let entry = index["manifests"]
                    .as_array()
                    .expect("checked")
                    .iter()
                    .find(|e| e["annotations"][REF_NAME].as_str() == Some(tag.as_str()));
                match entry {
                    Some(entry) => entry_digest(entry, &self.index_path())?,
                    None => return Ok(None),
                }
            }
        };
        let path = self.blob_path(&digest);
        let bytes = match tokio::fs::read(&path).await {
            Ok(bytes) => Bytes::from(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("reading", &path, e)),
        };
        let actual = Digest::of(digest.algorithm(), &bytes);
        if actual != digest {
            return Err(invalid(&path, format!("content has digest {actual}")));
        }
        Ok(Some(StoredManifest {
            media_type: manifest::media_type_of(&bytes),
            digest,
            bytes,
        }))
    }

    async fn has_manifest(&self, digest: &Digest) -> Result<bool, RemoteError> {
        Ok(self.blob_size(digest).await?.is_some())
    }

    /// The manifests listed in `index.json` whose subject is `digest`.
    async fn referrers(&self, digest: &Digest) -> Result<Vec<Digest>, RemoteError> {
        let index = self.index().await?;
        let mut found = Vec::new();
        for entry in index["manifests"].as_array().expect("checked") {
            let listed = entry_digest(entry, &self.index_path())?;
            let Some(stored) = self.manifest(&Reference::Digest(listed.clone())).await? else {
                continue;
            };
            let subject = manifest::parse(&stored.bytes, None).ok().and_then(|m| m.subject);
            if subject.is_some_and(|s| &s.digest == digest) {
                found.push(listed);
            }
        }
        Ok(found)
    }

    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, RemoteError> {
        let path = self.blob_path(digest);
        match tokio::fs::metadata(&path).await {
            Ok(meta) => Ok(Some(meta.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("reading", &path, e)),
        }
    }

    async fn blob(&self, digest: &Digest) -> Result<HttpBody, RemoteError> {
        let path = self.blob_path(digest);
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| io_error("opening", &path, e))?;
        Ok(box_stream(futures::stream::unfold(Some(file), |file| async move {
            let mut file = file?;
            let mut buffer = BytesMut::with_capacity(READ_CHUNK);
            match file.read_buf(&mut buffer).await {
                Ok(0) => None,
                Ok(_) => Some((Ok(buffer.freeze()), Some(file))),
                Err(e) => Some((Err(HttpError(e.to_string())), None)),
            }
        })))
    }

    async fn put_blob(&self, digest: &Digest, size: u64, body: HttpBody) -> Result<(), RemoteError> {
        self.write_blob(digest, size, body).await
    }

    async fn put_manifest(&self, manifest: &StoredManifest, role: &ManifestRole) -> Result<(), RemoteError> {
        let bytes = manifest.bytes.clone();
        let size = bytes.len() as u64;
        let body = box_stream(futures::stream::once(async move { Ok(bytes) }));
        self.write_blob(&manifest.digest, size, body).await?;
        let tag = match role {
            ManifestRole::Root(tag) => tag,
            // Listed untagged, so that the layout's readers (and a copy out
            // of it) find what refers to its images.
            ManifestRole::Referrer => &None,
            ManifestRole::Child => return Ok(()),
        };
        let mut index = self.index().await?;
        let entries = index["manifests"].as_array_mut().expect("checked");
        let digest = manifest.digest.as_str();
        entries.retain(|e| match tag {
            Some(tag) => e["annotations"][REF_NAME].as_str() != Some(tag.as_str()),
            None => !(e["digest"].as_str() == Some(digest) && e["annotations"][REF_NAME].is_null()),
        });
        let mut entry = json!({ "mediaType": manifest.media_type, "digest": digest, "size": size });
        if let Some(tag) = tag {
            entry["annotations"] = json!({ REF_NAME: tag.as_str() });
        }
        entries.push(entry);
        let layout_file = self.dir.join("oci-layout");
        if !tokio::fs::try_exists(&layout_file).await.unwrap_or(false) {
            self.write_file_atomically(&layout_file, br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec())
                .await?;
        }
        let text = serde_json::to_vec(&index).expect("json");
        self.write_file_atomically(&self.index_path(), text).await
    }
}
