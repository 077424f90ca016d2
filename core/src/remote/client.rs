//! A client of another registry's distribution API over the HTTP port:
//! manifests (GET, HEAD, PUT), blobs (GET and HEAD, pushes monolithic or in
//! chunks, cross-repository mounts), tag listing, with the registry's token
//! flow answered on the way. Everything it reads is checked: manifests
//! against their digest, and blob streams can be (see `verify`).

use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;

use bytes::Bytes;
use futures::StreamExt;
use http::header::{
    HeaderName, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LINK, LOCATION, USER_AGENT,
    WWW_AUTHENTICATE,
};
use http::{Method, StatusCode};
use url::Url;

use super::http::{read_body, HttpBody, HttpClient, HttpError, IncomingResponse, OutgoingBody, Redirects};
use super::token::{Authenticator, Scopes, TokenRealms};
use super::{Credentials, RemoteError};
use crate::digest::{Algorithm, Digest};
use crate::manifest::{self, MAX_MANIFEST_BYTES};
use crate::platform::{box_stream, Env};
use crate::records::{Reference, StoredManifest};

/// Every manifest type pier stores, for `Accept`.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json";

const DIGEST_HEADER: &str = "docker-content-digest";
const CHUNK_MIN_HEADER: &str = "oci-chunk-min-length";
/// Blobs larger than this are pushed in chunks of this size by default:
/// under the request body limits of the common hosting platforms (100 MB
/// on Cloudflare's smaller plans).
pub const DEFAULT_CHUNK_SIZE: u64 = 64 << 20;
/// The most of an error body read to explain a failure.
const ERROR_BODY_LIMIT: usize = 64 << 10;

/// A blob being read: its length when the registry said, and its bytes.
pub struct RemoteBlob {
    pub length: Option<u64>,
    pub body: HttpBody,
}

/// What a manifest HEAD tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestInfo {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
}

/// One registry, reached at `base` (`https://host[:port]`).
pub struct RegistryClient {
    http: Arc<dyn HttpClient>,
    env: Arc<dyn Env>,
    base: Url,
    auth: Authenticator,
    chunk_size: u64,
}

fn invalid(text: String) -> RemoteError {
    RemoteError::Invalid(text)
}

impl RegistryClient {
    /// A client of the registry at `base`, answering its challenges with
    /// `credentials`; its token endpoint must be at its own origin (or be
    /// Docker Hub's for Docker Hub), unless listed in `token_realms`
    /// (origins, `https://host[:port]`).
    pub fn new(
        http: Arc<dyn HttpClient>,
        env: Arc<dyn Env>,
        base: &str,
        credentials: Option<Credentials>,
        token_realms: &[String],
    ) -> Result<RegistryClient, String> {
        let base = Url::parse(base).map_err(|e| format!("registry URL {base:?}: {e}"))?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(format!("registry URL {base} must be http(s)://host[:port]"));
        }
        let realms = TokenRealms::new(&base, token_realms)?;
        Ok(RegistryClient {
            http,
            env,
            base,
            auth: Authenticator::new(credentials, realms),
            chunk_size: DEFAULT_CHUNK_SIZE,
        })
    }

    /// Pushes blobs larger than `bytes` in chunks of that size (at least
    /// what the registry asks for with `OCI-Chunk-Min-Length`).
    pub fn with_chunk_size(mut self, bytes: u64) -> RegistryClient {
        self.chunk_size = bytes.max(1);
        self
    }

    /// Scheme, host and port: two clients with the same base reach the same registry.
    pub fn base(&self) -> &str {
        self.base.as_str()
    }

    fn url(&self, path: &str) -> Result<Url, RemoteError> {
        self.base
            .join(path)
            .map_err(|e| invalid(format!("URL {path} on {}: {e}", self.base)))
    }

    /// Sends a request with whatever credentials the registry wants; after a
    /// 401 it learns the challenge and sends again when the body allows.
    /// Redirects are followed within the registry's origin only.
    async fn send(
        &self,
        scopes: &Scopes,
        method: Method,
        url: &Url,
        headers: &[(HeaderName, String)],
        body: OutgoingBody,
    ) -> Result<IncomingResponse, RemoteError> {
        self.send_with(scopes, method, url, headers, body, Redirects::SameOrigin)
            .await
    }

    /// `send`, following the redirects `redirects` allows.
    async fn send_with(
        &self,
        scopes: &Scopes,
        method: Method,
        url: &Url,
        headers: &[(HeaderName, String)],
        body: OutgoingBody,
        redirects: Redirects,
    ) -> Result<IncomingResponse, RemoteError> {
        let replay = body.try_clone();
        let response = self.send_once(scopes, &method, url, headers, body, redirects).await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let challenge = response
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let learned = match challenge {
            Some(challenge) => self
                .auth
                .learn(&challenge, scopes)
                .map_err(|e| invalid(format!("{method} {url}: {e}")))?,
            None => false,
        };
        match replay {
            Some(body) if learned => self.send_once(scopes, &method, url, headers, body, redirects).await,
            _ => Ok(response),
        }
    }

    async fn send_once(
        &self,
        scopes: &Scopes,
        method: &Method,
        url: &Url,
        headers: &[(HeaderName, String)],
        body: OutgoingBody,
        redirects: Redirects,
    ) -> Result<IncomingResponse, RemoteError> {
        let mut request = http::Request::builder()
            .method(method.clone())
            .uri(url.as_str())
            .header(USER_AGENT, concat!("pier/", env!("CARGO_PKG_VERSION")));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        if let Some(authorization) = self
            .auth
            .authorization(self.http.as_ref(), self.env.as_ref(), scopes)
            .await?
        {
            request = request.header(AUTHORIZATION, authorization);
        }
        let request = request
            .body(body)
            .map_err(|e| invalid(format!("{method} {url}: {e}")))?;
        super::http::send(self.http.as_ref(), request, redirects)
            .await
            .map_err(|e| RemoteError::Transport(format!("{method} {url}: {e}")))
    }

    /// A read (GET or HEAD) of `path` in `repo`: the answer if it is 200,
    /// `None` if 404, else the error it reports.
    async fn read(
        &self,
        method: Method,
        repo: &str,
        path: &str,
        headers: &[(HeaderName, String)],
        redirects: Redirects,
    ) -> Result<Option<(Url, IncomingResponse)>, RemoteError> {
        let url = self.url(&format!("/v2/{repo}/{path}"))?;
        let response = self
            .send_with(
                &Scopes::pull(repo),
                method.clone(),
                &url,
                headers,
                OutgoingBody::Empty,
                redirects,
            )
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = expect(response, StatusCode::OK, &format!("{method} {url}")).await?;
        Ok(Some((url, response)))
    }

    // ---- manifests ----

    /// A manifest by tag or digest; `None` if the registry does not have it.
    /// By digest the bytes are checked against it; by tag against the
    /// registry's `Docker-Content-Digest`, when sent.
    pub async fn manifest(&self, repo: &str, reference: &Reference) -> Result<Option<StoredManifest>, RemoteError> {
        let path = format!("manifests/{}", reference_text(reference));
        let Some((url, response)) = self
            .read(Method::GET, repo, &path, &accept_manifests(), Redirects::SameOrigin)
            .await?
        else {
            return Ok(None);
        };
        let announced = header_digest(&response);
        let bytes = read_body(response.into_body(), MAX_MANIFEST_BYTES)
            .await?
            .ok_or_else(|| invalid(format!("GET {url}: manifest over {MAX_MANIFEST_BYTES} bytes")))?;
        let expected = match reference {
            Reference::Digest(digest) => Some(digest.clone()),
            Reference::Tag(_) => announced,
        };
        let digest = Digest::of(expected.as_ref().map_or(Algorithm::Sha256, Digest::algorithm), &bytes);
        if let Some(expected) = expected.as_ref().filter(|e| *e != &digest) {
            return Err(invalid(format!(
                "GET {url}: the manifest's digest is {digest}, not {expected}"
            )));
        }
        manifest::parse(&bytes, None).map_err(|why| invalid(format!("GET {url}: not a manifest: {why}")))?;
        Ok(Some(StoredManifest {
            media_type: manifest::media_type_of(&bytes),
            digest,
            bytes,
        }))
    }

    /// What a manifest HEAD says; `None` if the registry does not have it.
    /// Falls back to a GET for registries that answer HEAD without a digest.
    pub async fn manifest_info(&self, repo: &str, reference: &Reference) -> Result<Option<ManifestInfo>, RemoteError> {
        let path = format!("manifests/{}", reference_text(reference));
        let Some((_, response)) = self
            .read(Method::HEAD, repo, &path, &accept_manifests(), Redirects::SameOrigin)
            .await?
        else {
            return Ok(None);
        };
        let (digest, length) = (header_digest(&response), content_length(&response));
        let media_type =
            header_text(&response, CONTENT_TYPE).map(|t| t.split(';').next().unwrap_or("").trim().to_string());
        match (digest, length, media_type) {
            (Some(digest), Some(size), Some(media_type)) if !media_type.is_empty() => Ok(Some(ManifestInfo {
                digest,
                media_type,
                size,
            })),
            _ => Ok(self.manifest(repo, reference).await?.map(|m| ManifestInfo {
                size: m.bytes.len() as u64,
                digest: m.digest,
                media_type: m.media_type,
            })),
        }
    }

    /// Pushes a manifest; returns the digest the registry reports.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &Reference,
        manifest: &StoredManifest,
    ) -> Result<(), RemoteError> {
        let url = self.url(&format!("/v2/{repo}/manifests/{}", reference_text(reference)))?;
        let headers = [(CONTENT_TYPE, manifest.media_type.clone())];
        let response = self
            .send(
                &Scopes::push(repo),
                Method::PUT,
                &url,
                &headers,
                OutgoingBody::Full(manifest.bytes.clone()),
            )
            .await?;
        expect(response, StatusCode::CREATED, &format!("PUT {url}")).await?;
        Ok(())
    }

    /// Deletes a manifest (by digest) or a tag; `false` when the registry
    /// did not have it.
    pub async fn delete_manifest(&self, repo: &str, reference: &Reference) -> Result<bool, RemoteError> {
        let url = self.url(&format!("/v2/{repo}/manifests/{}", reference_text(reference)))?;
        let response = self
            .send(&Scopes::delete(repo), Method::DELETE, &url, &[], OutgoingBody::Empty)
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        expect(response, StatusCode::ACCEPTED, &format!("DELETE {url}")).await?;
        Ok(true)
    }

    // ---- blobs ----

    /// A blob's bytes as they arrive (unchecked: see `verify`); `None` if
    /// absent. Registries send blob reads to storage URLs on other hosts:
    /// those redirects are followed, without credentials.
    pub async fn blob(&self, repo: &str, digest: &Digest) -> Result<Option<RemoteBlob>, RemoteError> {
        let path = format!("blobs/{digest}");
        let Some((_, response)) = self.read(Method::GET, repo, &path, &[], Redirects::AnyOrigin).await? else {
            return Ok(None);
        };
        Ok(Some(RemoteBlob {
            length: content_length(&response),
            body: response.into_body(),
        }))
    }

    /// A blob's size if the registry has it in `repo`.
    pub async fn blob_size(&self, repo: &str, digest: &Digest) -> Result<Option<u64>, RemoteError> {
        let path = format!("blobs/{digest}");
        let Some((url, response)) = self.read(Method::HEAD, repo, &path, &[], Redirects::AnyOrigin).await? else {
            return Ok(None);
        };
        content_length(&response)
            .map(Some)
            .ok_or_else(|| invalid(format!("HEAD {url}: no Content-Length")))
    }

    /// Mounts a blob of `from` into `repo` on this registry; `false` when the
    /// registry would rather have it uploaded.
    pub async fn mount_blob(&self, repo: &str, digest: &Digest, from: &str) -> Result<bool, RemoteError> {
        let mut url = self.url(&format!("/v2/{repo}/blobs/uploads/"))?;
        url.query_pairs_mut()
            .append_pair("mount", digest.as_str())
            .append_pair("from", from);
        let scopes = Scopes::push(repo).and_pull(from);
        let response = self.send(&scopes, Method::POST, &url, &[], OutgoingBody::Empty).await?;
        if response.status() == StatusCode::CREATED {
            return Ok(true);
        }
        let response = expect(response, StatusCode::ACCEPTED, &format!("POST {url}")).await?;
        // An upload was opened instead: close it, the caller uploads anew.
        if let Ok(location) = self.location(&response, &url) {
            let _ = self
                .send(&Scopes::push(repo), Method::DELETE, &location, &[], OutgoingBody::Empty)
                .await;
        }
        Ok(false)
    }

    /// Pushes a blob of `size` bytes from `body` (which the caller should
    /// wrap in a digest check): one PUT, or PATCHes of the chunk size for
    /// larger blobs. The body is streamed, never held whole.
    pub async fn push_blob(&self, repo: &str, digest: &Digest, size: u64, body: HttpBody) -> Result<(), RemoteError> {
        let scopes = Scopes::push(repo);
        let start = self.url(&format!("/v2/{repo}/blobs/uploads/"))?;
        let response = self
            .send(&scopes, Method::POST, &start, &[], OutgoingBody::Empty)
            .await?;
        let response = expect(response, StatusCode::ACCEPTED, &format!("POST {start}")).await?;
        let min_chunk = header_text(&response, HeaderName::from_static(CHUNK_MIN_HEADER))
            .and_then(|t| t.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let mut location = self.location(&response, &start)?;
        let chunk_size = self.chunk_size.max(min_chunk);
        let octets = (CONTENT_TYPE, "application/octet-stream".to_string());
        let last_body = if size <= chunk_size {
            (Some(size), OutgoingBody::Stream(body))
        } else {
            let source = Arc::new(Mutex::new(Pieces {
                source: body,
                leftover: Bytes::new(),
            }));
            let mut offset = 0;
            while offset < size {
                let len = chunk_size.min(size - offset);
                let headers = [
                    octets.clone(),
                    (CONTENT_LENGTH, len.to_string()),
                    (CONTENT_RANGE, format!("{offset}-{}", offset + len - 1)),
                ];
                let piece = OutgoingBody::Stream(piece(source.clone(), len));
                let response = self.send(&scopes, Method::PATCH, &location, &headers, piece).await?;
                let response = expect(response, StatusCode::ACCEPTED, &format!("PATCH {location}")).await?;
                location = self.location(&response, &location)?;
                offset += len;
            }
            (Some(0), OutgoingBody::Empty)
        };
        location.query_pairs_mut().append_pair("digest", digest.as_str());
        let (length, body) = last_body;
        let mut headers = vec![octets];
        headers.extend(length.map(|n| (CONTENT_LENGTH, n.to_string())));
        let response = self.send(&scopes, Method::PUT, &location, &headers, body).await?;
        expect(response, StatusCode::CREATED, &format!("PUT {location}")).await?;
        Ok(())
    }

    fn location(&self, response: &IncomingResponse, request_url: &Url) -> Result<Url, RemoteError> {
        let text = header_text(response, LOCATION)
            .ok_or_else(|| invalid(format!("{request_url}: answer without a Location")))?;
        request_url
            .join(text)
            .map_err(|e| invalid(format!("{request_url}: bad Location {text:?}: {e}")))
    }

    // ---- referrers ----

    /// The digests of the manifests whose subject is `digest` (the referrers
    /// API of OCI 1.1), following the registry's pages (at most
    /// [`MAX_REFERRER_PAGES`], on its own origin); none from a registry
    /// without that API.
    pub async fn referrers(&self, repo: &str, digest: &Digest) -> Result<Vec<Digest>, RemoteError> {
        #[derive(serde::Deserialize)]
        struct Index {
            #[serde(default)]
            manifests: Vec<Entry>,
        }
        #[derive(serde::Deserialize)]
        struct Entry {
            digest: String,
        }
        let path = format!("referrers/{digest}");
        let Some((mut url, mut response)) = self.read(Method::GET, repo, &path, &[], Redirects::SameOrigin).await?
        else {
            return Ok(Vec::new());
        };
        let mut digests = Vec::new();
        for _ in 0..MAX_REFERRER_PAGES {
            let next = header_text(&response, LINK).and_then(next_link);
            let body = read_body(response.into_body(), MAX_MANIFEST_BYTES)
                .await?
                .ok_or_else(|| invalid(format!("GET {url}: referrers list over {MAX_MANIFEST_BYTES} bytes")))?;
            let index: Index = serde_json::from_slice(&body)
                .map_err(|e| invalid(format!("GET {url}: unreadable referrers list: {e}")))?;
            for entry in &index.manifests {
                let parsed = Digest::parse(&entry.digest)
                    .map_err(|_| invalid(format!("GET {url}: bad digest {:?}", entry.digest)))?;
                digests.push(parsed);
            }
            let Some(next) = next else {
                return Ok(digests);
            };
            url = next_page(&url, &next)?;
            let answer = self
                .send(&Scopes::pull(repo), Method::GET, &url, &[], OutgoingBody::Empty)
                .await?;
            response = expect(answer, StatusCode::OK, &format!("GET {url}")).await?;
        }
        Err(invalid(format!(
            "GET {url}: more than {MAX_REFERRER_PAGES} pages of referrers"
        )))
    }

    // ---- tags and catalog ----

    /// Every tag of `repo`, following the registry's pages.
    pub async fn tags(&self, repo: &str) -> Result<Vec<String>, RemoteError> {
        let url = self.url(&format!("/v2/{repo}/tags/list?n=1000"))?;
        self.names(&Scopes::pull(repo), url, "tags").await
    }

    /// Every repository the registry lists in `/v2/_catalog`, following its
    /// pages; many registries refuse the catalog (an error with their status).
    pub async fn catalog(&self) -> Result<Vec<String>, RemoteError> {
        let url = self.url("/v2/_catalog?n=1000")?;
        self.names(&Scopes::catalog(), url, "repositories").await
    }

    /// The names under `field` of a paged listing starting at `url`,
    /// following its `Link` headers on the registry's own origin only (the
    /// next page is asked with our credentials) and for at most
    /// [`MAX_NAME_PAGES`] pages (a hostile registry could link to the same
    /// page for ever).
    async fn names(&self, scopes: &Scopes, mut url: Url, field: &str) -> Result<Vec<String>, RemoteError> {
        let mut names = Vec::new();
        for _ in 0..MAX_NAME_PAGES {
            let response = self.send(scopes, Method::GET, &url, &[], OutgoingBody::Empty).await?;
            let response = expect(response, StatusCode::OK, &format!("GET {url}")).await?;
            let next = header_text(&response, LINK).and_then(next_link);
            let body = read_body(response.into_body(), 16 << 20)
                .await?
                .ok_or_else(|| invalid(format!("GET {url}: listing over 16 MiB")))?;
            let page: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(&body).map_err(|e| invalid(format!("GET {url}: unreadable listing: {e}")))?;
            match page.get(field) {
                None | Some(serde_json::Value::Null) => {}
                Some(serde_json::Value::Array(values)) => {
                    for value in values {
                        let name = value
                            .as_str()
                            .ok_or_else(|| invalid(format!("GET {url}: {field} holds a non-string {value}")))?;
                        names.push(name.to_string());
                    }
                }
                Some(other) => return Err(invalid(format!("GET {url}: {field} is not a list: {other}"))),
            }
            match next {
                Some(next) => url = next_page(&url, &next)?,
                None => return Ok(names),
            }
        }
        Err(invalid(format!("GET {url}: more than {MAX_NAME_PAGES} pages")))
    }
}

/// The page a `Link` of the answer to `url` names, which must be on the
/// same origin: it is asked with the credentials meant for this registry.
fn next_page(url: &Url, link: &str) -> Result<Url, RemoteError> {
    let next = url
        .join(link)
        .map_err(|e| invalid(format!("GET {url}: bad Link {link:?}: {e}")))?;
    if next.origin() != url.origin() {
        return Err(invalid(format!("GET {url}: Link to another origin: {next}")));
    }
    Ok(next)
}

fn reference_text(reference: &Reference) -> &str {
    match reference {
        Reference::Tag(tag) => tag.as_str(),
        Reference::Digest(digest) => digest.as_str(),
    }
}

fn accept_manifests() -> [(HeaderName, String); 1] {
    [(ACCEPT, MANIFEST_ACCEPT.to_string())]
}

fn header_text(response: &IncomingResponse, name: impl http::header::AsHeaderName) -> Option<&str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

fn header_digest(response: &IncomingResponse) -> Option<Digest> {
    header_text(response, HeaderName::from_static(DIGEST_HEADER)).and_then(|t| Digest::parse(t.trim()).ok())
}

fn content_length(response: &IncomingResponse) -> Option<u64> {
    header_text(response, CONTENT_LENGTH).and_then(|t| t.trim().parse().ok())
}

/// Most pages of referrers of one manifest followed (a million referrers
/// at pier's page size).
const MAX_REFERRER_PAGES: usize = 1000;

/// Most pages of a tag list or catalog followed (a million names at 1000 a page).
const MAX_NAME_PAGES: usize = 1000;

/// The target of a `Link: <url>; rel="next"` header.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|link| {
        let (target, params) = link.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"" || p.trim() == "rel=next")
            .then(|| target.trim().trim_start_matches('<').trim_end_matches('>').to_string())
    })
}

/// `response` if it has `status`, else the error it reports.
async fn expect(response: IncomingResponse, status: StatusCode, what: &str) -> Result<IncomingResponse, RemoteError> {
    if response.status() == status {
        return Ok(response);
    }
    let actual = response.status();
    let body = read_body(response.into_body(), ERROR_BODY_LIMIT)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    let (code, detail) = error_of(&body);
    let detail = detail.map(|d| format!(": {d}")).unwrap_or_default();
    Err(RemoteError::Status {
        status: actual.as_u16(),
        message: format!(
            "{what}: {actual}{}{detail}",
            code.as_ref().map(|c| format!(" {c}")).unwrap_or_default()
        ),
        code,
    })
}

/// The first code and message of a distribution-spec error body.
fn error_of(body: &[u8]) -> (Option<String>, Option<String>) {
    let value: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let first = value.get("errors").and_then(|errors| errors.get(0));
    let text = |field: &str| {
        first
            .and_then(|e| e.get(field))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    (text("code"), text("message"))
}

/// A stream cut into consecutive pieces, each sent as one request body.
struct Pieces {
    source: HttpBody,
    leftover: Bytes,
}

/// The next `len` bytes of `shared` as a stream of their own.
fn piece(shared: Arc<Mutex<Pieces>>, len: u64) -> HttpBody {
    let mut remaining = len;
    box_stream(futures::stream::poll_fn(move |cx| {
        if remaining == 0 {
            return Poll::Ready(None);
        }
        let mut pieces = shared.lock().unwrap_or_else(PoisonError::into_inner);
        let mut chunk = if pieces.leftover.is_empty() {
            match pieces.source.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(chunk))) => chunk,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => {
                    remaining = 0;
                    return Poll::Ready(Some(Err(HttpError("the blob ended before its size".into()))));
                }
                Poll::Pending => return Poll::Pending,
            }
        } else {
            std::mem::take(&mut pieces.leftover)
        };
        if chunk.len() as u64 > remaining {
            pieces.leftover = chunk.split_off(remaining as usize);
        }
        remaining -= chunk.len() as u64;
        Poll::Ready(Some(Ok(chunk)))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_links() {
        assert_eq!(
            next_link("</v2/a/tags/list?n=2&last=b>; rel=\"next\"").as_deref(),
            Some("/v2/a/tags/list?n=2&last=b")
        );
        assert_eq!(next_link("<x>; rel=\"prev\""), None);
    }

    /// A registry whose tag list links to itself for ever.
    struct EndlessTags {
        asked: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl HttpClient for EndlessTags {
        async fn send(
            &self,
            _request: super::super::http::OutgoingRequest,
        ) -> Result<IncomingResponse, super::super::http::HttpError> {
            self.asked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let body = Bytes::from_static(br#"{"name":"a","tags":["t"]}"#);
            http::Response::builder()
                .status(200)
                .header("link", "</v2/a/tags/list?n=1000>; rel=\"next\"")
                .body(box_stream(futures::stream::once(async move { Ok(body) })))
                .map_err(|e| super::super::http::HttpError(e.to_string()))
        }
    }

    #[test]
    fn a_tag_list_that_never_ends_is_an_error() {
        let peer = Arc::new(EndlessTags {
            asked: Default::default(),
        });
        let env = Arc::new(crate::testing::TestEnv::at(0));
        let client = RegistryClient::new(peer.clone(), env, "https://reg.test", None, &[]).unwrap();
        let listed = futures::executor::block_on(client.tags("a"));
        assert!(listed.is_err(), "{listed:?}");
        assert_eq!(peer.asked.load(std::sync::atomic::Ordering::Relaxed), MAX_NAME_PAGES);
    }

    #[test]
    fn error_bodies() {
        let body = br#"{"errors":[{"code":"DENIED","message":"no"}]}"#;
        assert_eq!(error_of(body), (Some("DENIED".into()), Some("no".into())));
        assert_eq!(error_of(b"<html>"), (None, None));
    }

    #[test]
    fn pieces_split_a_stream_at_exact_offsets() {
        let source = box_stream(futures::stream::iter(
            [&b"abcde"[..], b"fgh", b"ijklmnop"].map(|c| Ok(Bytes::from_static(c))),
        ));
        let shared = Arc::new(Mutex::new(Pieces {
            source,
            leftover: Bytes::new(),
        }));
        let collect = |len| {
            let stream = piece(shared.clone(), len);
            futures::executor::block_on(stream.map(|c| c.unwrap().to_vec()).concat())
        };
        assert_eq!(&collect(4)[..], b"abcd");
        assert_eq!(&collect(6)[..], b"efghij");
        assert_eq!(&collect(6)[..], b"klmnop");
        let past_the_end = futures::executor::block_on(piece(shared.clone(), 1).next());
        assert!(matches!(past_the_end, Some(Err(_))));
    }
}
