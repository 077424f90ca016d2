//! Uploads of a repository, whole or in chunks, over the upload state
//! machine (`crate::upload`).

use crate::body::RequestBody;
use crate::digest::{Algorithm, Digest};
use crate::error::{ErrorCode, Result};
use crate::names::RepoName;
use crate::upload::{ChunkRange, Upload, UploadStatus};

use super::Registry;

impl Registry {
    /// Opens an upload session (refused at once where a quota is full).
    pub async fn start_upload(&self, repo: &RepoName) -> Result<UploadStatus> {
        self.options.quotas.admit_upload(self.origin(), repo).await?;
        let mut upload = Upload::new(self.origin(), self.env.as_ref(), repo, Algorithm::Sha256);
        upload.save().await?;
        Ok(upload.status())
    }

    /// A whole blob in one request (POST or PUT with the digest known up front).
    pub async fn upload_whole(&self, repo: &RepoName, digest: &Digest, body: RequestBody) -> Result<()> {
        self.options.quotas.admit_upload(self.origin(), repo).await?;
        self.store_whole(repo, digest, None, body).await
    }

    /// Stores a blob received whole in a session of its own, never saved
    /// unless the blob needs a multipart write.
    async fn store_whole(
        &self,
        repo: &RepoName,
        digest: &Digest,
        range: Option<ChunkRange>,
        body: RequestBody,
    ) -> Result<()> {
        let mut upload = Upload::new(self.origin(), self.env.as_ref(), repo, digest.algorithm());
        if let Err(e) = upload.append(range, body).await {
            upload.discard().await;
            return Err(e);
        }
        let size = upload.finish(digest).await?;
        self.link_blob(repo, digest, size).await
    }

    pub async fn upload_status(&self, repo: &RepoName, id: &str) -> Result<UploadStatus> {
        Ok(Upload::open(self.origin(), self.env.as_ref(), repo, id).await?.status())
    }

    /// Adds a chunk (PATCH).
    pub async fn upload_chunk(
        &self,
        repo: &RepoName,
        id: &str,
        range: Option<ChunkRange>,
        body: RequestBody,
    ) -> Result<UploadStatus> {
        let mut upload = Upload::open(self.origin(), self.env.as_ref(), repo, id).await?;
        upload.check_start(range)?;
        upload.claim(&self.instance).await?;
        let written = match upload.append(range, body).await {
            Ok(()) => upload.commit().await,
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            upload.release().await;
            return Err(e);
        }
        Ok(upload.status())
    }

    /// Ends an upload (PUT), with an optional last chunk.
    pub async fn finish_upload(
        &self,
        repo: &RepoName,
        id: &str,
        digest: &Digest,
        range: Option<ChunkRange>,
        body: RequestBody,
    ) -> Result<()> {
        let mut upload = Upload::open(self.origin(), self.env.as_ref(), repo, id).await?;
        upload.check_start(range)?;
        if upload.is_untouched() {
            // Nothing was sent before this request (POST then PUT, the common
            // push): the blob goes to an object of its own, as in a monolithic
            // POST, so no claim is needed (racing requests cannot share that
            // object). The session ends once the blob exists or its digest
            // was wrong; other failures leave it for a retry.
            let stored = self.store_whole(repo, digest, range, body).await;
            if stored.as_ref().err().is_none_or(|e| e.code == ErrorCode::DigestInvalid) {
                upload.remove_untouched().await;
            }
            return stored;
        }
        upload.claim(&self.instance).await?;
        if let Err(e) = upload.append(range, body).await {
            upload.release().await;
            return Err(e);
        }
        match upload.finish(digest).await {
            Ok(size) => self.link_blob(repo, digest, size).await,
            Err(e) => {
                // A failed finish keeps the session (unless it discarded it),
                // so a retry of the PUT can take it at once.
                upload.release().await;
                Err(e)
            }
        }
    }

    pub async fn cancel_upload(&self, repo: &RepoName, id: &str) -> Result<()> {
        let mut upload = Upload::open(self.origin(), self.env.as_ref(), repo, id).await?;
        upload.discard().await;
        Ok(())
    }
}
