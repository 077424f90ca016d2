//! Uploads of a repository, whole or in chunks, over the upload state
//! machine (`crate::upload`).

use std::sync::atomic::{AtomicBool, Ordering};

use crate::body::RequestBody;
use crate::digest::Digest;
use crate::error::{ErrorCode, Result};
use crate::names::RepoName;
use crate::platform::BoxFuture;
use crate::store::PutMode;
use crate::upload::{ChunkRange, Leftovers, Upload, UploadStatus};
use crate::upload_id;

use super::Registry;

/// Which upload a request names: its id and the state its client was last
/// told of (the `state` query parameter of the session's Location).
#[derive(Clone, Copy, Debug)]
pub struct SessionRef<'a> {
    pub id: &'a str,
    pub state: Option<u64>,
}

/// A bare id: the session's newest state is found by listing its keys.
impl<'a> From<&'a str> for SessionRef<'a> {
    fn from(id: &'a str) -> SessionRef<'a> {
        SessionRef { id, state: None }
    }
}

impl<'a> From<&'a String> for SessionRef<'a> {
    fn from(id: &'a String) -> SessionRef<'a> {
        SessionRef::from(id.as_str())
    }
}

impl Registry {
    /// Opens an upload session (refused at once where a quota is full). It
    /// is saved by its first request that writes: until then its id alone
    /// says it is open (see `upload_id`).
    pub async fn start_upload(&self, repo: &RepoName) -> Result<UploadStatus> {
        self.options.quotas.admit_upload(self.origin(), repo).await?;
        Ok(UploadStatus {
            id: upload_id::issue(self.env.as_ref(), repo),
            offset: 0,
            state: Some(0),
        })
    }

    /// A whole blob in one request (POST or PUT with the digest known up front).
    pub async fn upload_whole(&self, repo: &RepoName, digest: &Digest, body: RequestBody) -> Result<()> {
        self.options.quotas.admit_upload(self.origin(), repo).await?;
        let mut upload = Upload::new(self.origin(), self.env.as_ref(), repo, digest.algorithm());
        let stored = self.store_whole(&mut upload, None, repo, digest, None, body).await;
        self.remove_later(upload.take_leftovers()).await;
        stored
    }

    /// Stores a blob received whole in `whole`, a session of its own, never
    /// saved unless the blob needs a multipart write. `replaced`, the session
    /// the client opened for it, ends while the blob's record is written, or
    /// when its digest was wrong; earlier failures leave it for a retry.
    async fn store_whole(
        &self,
        whole: &mut Upload<'_>,
        mut replaced: Option<&mut Upload<'_>>,
        repo: &RepoName,
        digest: &Digest,
        range: Option<ChunkRange>,
        body: RequestBody,
    ) -> Result<()> {
        if let Err(e) = whole.append(range, body).await {
            let _ = whole.close().await;
            return Err(e);
        }
        let ending = replaced.as_deref_mut();
        let end_replaced = Box::pin(async move {
            if let Some(replaced) = ending {
                // Left to its other requests, or expiry, when one changed it meanwhile.
                let _ = replaced.close().await;
            }
        });
        match self.finish_linked(whole, repo, digest, end_replaced).await {
            Ok(()) => {
                let _ = whole.close().await;
                Ok(())
            }
            Err(e) => {
                if let (ErrorCode::DigestInvalid, Some(replaced)) = (e.code, replaced) {
                    let _ = replaced.close().await;
                }
                Err(e)
            }
        }
    }

    /// Finishes `upload` and links its blob into `repo` while the record is
    /// written, with `alongside` (the end of the session a whole upload
    /// replaces). A link found there already is written again once the
    /// record is stored: the collector may be deleting it as dangling, and
    /// only a link written after the record is sure to be seen by the check
    /// it makes after deleting (docs/gc.md, "Links written beside their
    /// record").
    async fn finish_linked(
        &self,
        upload: &mut Upload<'_>,
        repo: &RepoName,
        digest: &Digest,
        alongside: BoxFuture<'_, ()>,
    ) -> Result<()> {
        let found_linked = AtomicBool::new(false);
        let found = &found_linked;
        let link_beside_record = move |size| -> BoxFuture<'_, Result<()>> {
            Box::pin(async move {
                let (created, ()) = futures::join!(self.write_link(repo, digest, size, PutMode::Create), alongside);
                found.store(!created?, Ordering::Relaxed);
                Ok(())
            })
        };
        let size = upload.finish(digest, Box::new(link_beside_record)).await?;
        if found_linked.load(Ordering::Relaxed) {
            self.link_blob(repo, digest, size).await?;
        }
        Ok(())
    }

    pub async fn upload_status(&self, repo: &RepoName, session: impl Into<SessionRef<'_>>) -> Result<UploadStatus> {
        Ok(self.open_upload(repo, session).await?.status())
    }

    async fn open_upload(&self, repo: &RepoName, session: impl Into<SessionRef<'_>>) -> Result<Upload<'_>> {
        let session = session.into();
        Upload::open(self.origin(), self.env.as_ref(), repo, session.id, session.state).await
    }

    /// Adds a chunk (PATCH).
    pub async fn upload_chunk(
        &self,
        repo: &RepoName,
        session: impl Into<SessionRef<'_>>,
        range: Option<ChunkRange>,
        body: RequestBody,
    ) -> Result<UploadStatus> {
        let mut upload = self.open_upload(repo, session).await?;
        upload.check_start(range)?;
        upload.writing_as(&self.instance)?;
        let written = match upload.append(range, body).await {
            Ok(()) => upload.commit().await,
            Err(e) => Err(e),
        };
        if written.is_err() {
            upload.release().await;
        }
        self.remove_later(upload.take_leftovers()).await;
        written.map(|()| upload.status())
    }

    /// Ends an upload (PUT), with an optional last chunk.
    pub async fn finish_upload(
        &self,
        repo: &RepoName,
        session: impl Into<SessionRef<'_>>,
        digest: &Digest,
        range: Option<ChunkRange>,
        body: RequestBody,
    ) -> Result<()> {
        let mut upload = self.open_upload(repo, session).await?;
        upload.check_start(range)?;
        upload.writing_as(&self.instance)?;
        let finished = if upload.is_untouched() {
            // Nothing was sent before this request (POST then PUT, the common
            // push): the blob goes to an object of its own, as in a monolithic
            // POST.
            let mut whole = Upload::new(self.origin(), self.env.as_ref(), repo, digest.algorithm());
            let stored = self
                .store_whole(&mut whole, Some(&mut upload), repo, digest, range, body)
                .await;
            self.remove_later(whole.take_leftovers()).await;
            stored
        } else {
            self.finish_session(&mut upload, repo, digest, range, body).await
        };
        self.remove_later(upload.take_leftovers()).await;
        finished
    }

    async fn finish_session(
        &self,
        upload: &mut Upload<'_>,
        repo: &RepoName,
        digest: &Digest,
        range: Option<ChunkRange>,
        body: RequestBody,
    ) -> Result<()> {
        if let Err(e) = upload.append(range, body).await {
            upload.release().await;
            return Err(e);
        }
        match self.finish_linked(upload, repo, digest, Box::pin(async {})).await {
            Ok(()) => {
                let _ = upload.close().await;
                Ok(())
            }
            Err(e) => {
                // A failed finish keeps the session (unless it closed it),
                // so a retry of the PUT can take it at once.
                upload.release().await;
                Err(e)
            }
        }
    }

    pub async fn cancel_upload(&self, repo: &RepoName, session: impl Into<SessionRef<'_>>) -> Result<()> {
        let mut upload = self.open_upload(repo, session).await?;
        let ended = upload.close().await;
        self.remove_later(upload.take_leftovers()).await;
        ended
    }

    /// Removes what an upload request left after the answer, on the
    /// platform's background work; at once where there is none.
    async fn remove_later(&self, leftovers: Leftovers) {
        if leftovers.is_empty() {
            return;
        }
        match &self.background {
            Some(background) => {
                let store = self.origin.clone();
                background.spawn(Box::pin(async move { leftovers.remove(store.as_ref()).await }));
            }
            None => leftovers.remove(self.origin()).await,
        }
    }
}
