//! The HTTP mapping of the distribution API on `http` crate types: routing,
//! status codes, headers and error bodies. Both shells hand every request to
//! [`handle`], with the [`Service`] they serve (its auth, mirror, events,
//! archive and signature gate; [`Service::open`] for an open registry), and
//! send back what it returns, so they agree to the byte.

use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http::header::{HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use http::{Method, Request, Response, StatusCode};

use crate::archive::Archiver;
use crate::auth::Auth;
use crate::body::{BodyError, RequestBody};
use crate::digest::{Digest, DigestError};
use crate::error::{ErrorCode, RegistryError, Result};
use crate::events::EventSink;
use crate::mirror::Mirror;
use crate::names::{RepoName, Tag};
use crate::records::Reference;
use crate::registry::Registry;
use crate::signing::SignatureGate;
use crate::store::ByteStream;

mod admin;
mod blobs;
mod browse;
mod discovery;
mod guard;
mod manifests;
mod route_class;
pub(crate) mod token;
mod ui;
mod uploads;

pub use admin::authorize_metrics;
pub use route_class::{is_upload, route_class};

use guard::Access;

/// A response body: nothing, bytes in hand, or a stream of known length.
pub enum Body {
    Empty,
    Full(Bytes),
    Stream { stream: ByteStream, length: u64 },
}

pub type HttpResponse = Response<Body>;

pub const API_VERSION_HEADER: &str = "docker-distribution-api-version";
pub const CONTENT_DIGEST: &str = "docker-content-digest";
/// `Cache-Control` of digest-addressed responses (blobs, manifests by digest):
/// their bytes never change, so any cache may keep them. With auth, answers
/// from a repository not everyone may pull say `private` instead, so that no
/// shared cache hands them to someone else.
pub const IMMUTABLE_CACHE_CONTROL: &str = "public, max-age=31536000, immutable";

/// What a request is for, after routing.
#[derive(Debug, PartialEq)]
enum Route {
    Ping,
    Catalog,
    Tags(RepoName),
    Manifest(RepoName, String),
    Blob(RepoName, String),
    Uploads(RepoName),
    Upload(RepoName, String),
    Referrers(RepoName, String),
}

impl Route {
    /// The same route on the repository `rename` gives for its own.
    fn renamed(self, rename: impl FnOnce(&RepoName) -> Result<RepoName>) -> Result<Route> {
        Ok(match self {
            Route::Ping => Route::Ping,
            Route::Catalog => Route::Catalog,
            Route::Tags(repo) => Route::Tags(rename(&repo)?),
            Route::Manifest(repo, reference) => Route::Manifest(rename(&repo)?, reference),
            Route::Blob(repo, digest) => Route::Blob(rename(&repo)?, digest),
            Route::Uploads(repo) => Route::Uploads(rename(&repo)?),
            Route::Upload(repo, id) => Route::Upload(rename(&repo)?, id),
            Route::Referrers(repo, digest) => Route::Referrers(rename(&repo)?, digest),
        })
    }

    fn repository(&self) -> Option<&RepoName> {
        match self {
            Route::Ping | Route::Catalog => None,
            Route::Tags(repo)
            | Route::Manifest(repo, _)
            | Route::Blob(repo, _)
            | Route::Uploads(repo)
            | Route::Upload(repo, _)
            | Route::Referrers(repo, _) => Some(repo),
        }
    }
}

/// Splits `/v2/<name>/<resource>` paths. The name is everything before the
/// resource marker; markers are matched from the right so names may contain
/// words like `blobs`.
fn route(path: &str) -> Result<Option<Route>> {
    let Some(rest) = path.strip_prefix("/v2") else {
        return Ok(None);
    };
    if rest.is_empty() || rest == "/" {
        return Ok(Some(Route::Ping));
    }
    let Some(rest) = rest.strip_prefix('/') else {
        return Ok(None);
    };
    if rest == "_catalog" {
        return Ok(Some(Route::Catalog));
    }
    let name = |text: &str| -> Result<RepoName> {
        RepoName::parse(text).ok_or_else(|| {
            RegistryError::new(ErrorCode::NameInvalid, format!("invalid repository name {text:?}"))
                .with_detail(serde_json::json!({ "name": text }))
        })
    };
    if let Some(repo) = rest.strip_suffix("/tags/list") {
        return Ok(Some(Route::Tags(name(repo)?)));
    }
    if let Some(repo) = rest
        .strip_suffix("/blobs/uploads/")
        .or_else(|| rest.strip_suffix("/blobs/uploads"))
    {
        return Ok(Some(Route::Uploads(name(repo)?)));
    }
    let (head, last) = rest.rsplit_once('/').unwrap_or(("", rest));
    if let Some(repo) = head.strip_suffix("/blobs/uploads") {
        return Ok(Some(Route::Upload(name(repo)?, last.to_string())));
    }
    if let Some(repo) = head.strip_suffix("/blobs") {
        return Ok(Some(Route::Blob(name(repo)?, last.to_string())));
    }
    if let Some(repo) = head.strip_suffix("/manifests") {
        return Ok(Some(Route::Manifest(name(repo)?, last.to_string())));
    }
    if let Some(repo) = head.strip_suffix("/referrers") {
        return Ok(Some(Route::Referrers(name(repo)?, last.to_string())));
    }
    Ok(None)
}

/// What the HTTP mapping serves: the registry and what a deployment puts
/// around it. `crate::deployment` assembles one per request; tests and tools
/// that need only an open registry use [`Service::open`].
#[derive(Clone, Copy)]
pub struct Service<'a> {
    pub registry: &'a Registry,
    /// Who may do what; `None` lets everyone do everything.
    pub auth: Option<&'a Auth>,
    /// The namespaces served as pull-through caches.
    pub mirror: Option<&'a Mirror>,
    /// Who hears of pushes, pulls and deletes (webhooks, replication).
    pub events: Option<&'a EventSink>,
    /// The archive tier's passes, for its admin endpoints.
    pub archive: Option<&'a Archiver>,
    /// The namespaces whose manifests are pulled only when signed.
    pub signatures: Option<&'a SignatureGate>,
}

impl<'a> Service<'a> {
    /// A registry with no auth, no mirror, no events and no namespace
    /// that requires signatures.
    pub fn open(registry: &'a Registry) -> Service<'a> {
        Service {
            registry,
            auth: None,
            mirror: None,
            events: None,
            archive: None,
            signatures: None,
        }
    }
}

/// Answers one request.
pub async fn handle(service: Service<'_>, request: Request<RequestBody>) -> HttpResponse {
    let mut response = match dispatch(&service, request).await {
        Ok(response) => response,
        Err(refusal) => refusal.into_response(),
    };
    response
        .headers_mut()
        .insert(API_VERSION_HEADER, HeaderValue::from_static("registry/2.0"));
    response
}

/// An error answer, with the headers that go with it (auth challenges,
/// `Retry-After`).
#[derive(Debug)]
pub(crate) struct Refusal {
    error: RegistryError,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Refusal {
    /// Adds a header; one whose value cannot be sent is left out (the
    /// error body still says what went wrong).
    fn with_header(mut self, name: HeaderName, value: &str) -> Refusal {
        if let Ok(value) = HeaderValue::from_str(value) {
            self.headers.push((name, value));
        }
        self
    }

    fn into_response(self) -> HttpResponse {
        let mut response = error_response(&self.error);
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

impl From<RegistryError> for Refusal {
    fn from(error: RegistryError) -> Refusal {
        Refusal {
            error,
            headers: Vec::new(),
        }
    }
}

/// Longest request body drained after an early error, so that the client
/// reads the error instead of a reset connection.
const DRAIN_LIMIT: usize = 16 << 20;

async fn dispatch(service: &Service<'_>, request: Request<RequestBody>) -> Result<HttpResponse, Refusal> {
    let (parts, body) = request.into_parts();
    let mut body = BodySlot::new(body);
    let result = authorize_and_route(service, &parts, &mut body).await;
    if result.is_err() {
        body.drain().await;
    }
    result
}

/// The request body, shared between the handler that reads it and the
/// dispatcher, which drains whatever the handler left unread when it fails
/// (a handler may refuse a chunk after taking the body but before reading it).
pub(crate) struct BodySlot(Arc<Mutex<Option<RequestBody>>>);

impl BodySlot {
    fn new(body: RequestBody) -> BodySlot {
        BodySlot(Arc::new(Mutex::new(Some(body))))
    }

    /// A stream reading the body through the slot.
    fn take(&mut self) -> RequestBody {
        let shared = self.0.clone();
        crate::platform::box_stream(futures::stream::poll_fn(move |cx| {
            match shared.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
                Some(body) => body.poll_next_unpin(cx),
                None => Poll::Ready(None),
            }
        }))
    }

    async fn drain(&mut self) {
        let Some(mut body) = self.0.lock().unwrap_or_else(PoisonError::into_inner).take() else {
            return;
        };
        let mut seen = 0;
        while let Some(Ok(chunk)) = body.next().await {
            seen += chunk.len();
            if seen > DRAIN_LIMIT {
                break;
            }
        }
    }
}

/// The path of the token endpoint, served only when auth is on.
const TOKEN_PATH: &str = "/token";

/// Routes a request and, when auth is on, checks what it needs before any
/// handler runs.
async fn authorize_and_route(
    service: &Service<'_>,
    parts: &http::request::Parts,
    body: &mut BodySlot,
) -> Result<HttpResponse, Refusal> {
    let (registry, auth) = (service.registry, service.auth);
    if let (Some(auth), TOKEN_PATH) = (auth, parts.uri.path()) {
        return token::serve(auth, parts, body).await;
    }
    if parts.uri.path() == admin::GC_REPORT_PATH {
        return admin::gc_report(registry, auth, parts).await;
    }
    if admin::is_archive_path(parts.uri.path()) {
        return admin::archive(service.archive, auth, parts, &Query::parse(parts.uri.query())).await;
    }
    if parts.uri.path() == admin::QUOTAS_PATH {
        return admin::quotas(registry, auth, parts).await;
    }
    if admin::is_events_path(parts.uri.path()) {
        return admin::events(service.events, auth, parts, &Query::parse(parts.uri.query())).await;
    }
    if browse::is_browse_path(parts.uri.path()) {
        return browse::serve(service, parts).await;
    }
    if ui::is_ui_path(parts.uri.path()) {
        return Ok(ui::serve(&parts.method, &parts.headers, parts.uri.path())?);
    }
    let route = route(parts.uri.path())?.ok_or_else(|| {
        RegistryError::new(
            ErrorCode::Unsupported,
            format!("no such endpoint: {}", parts.uri.path()),
        )
        .with_status(StatusCode::NOT_FOUND)
    })?;
    let query = Query::parse(parts.uri.query());
    // containerd asking this registry as a mirror of another: the name is
    // the other registry's, the mirror's namespace here holds it.
    let route = match query.get("ns") {
        Some(ns) => route.renamed(|remote| match service.mirror {
            Some(mirror) => mirror.local_name(ns, remote),
            None => Err(RegistryError::new(
                ErrorCode::NameUnknown,
                format!("no pull-through cache here mirrors {ns}"),
            )),
        })?,
        None => route,
    };
    let access = match auth {
        Some(auth) => guard::check(auth, parts, &route, &query).await?,
        None => Access::Open,
    };
    let req = Req {
        method: &parts.method,
        headers: &parts.headers,
        query: &query,
        access: &access,
    };
    let shared_caches_may_keep = route.repository().is_none_or(|repo| access.anyone_may_pull(repo));
    let mut response = route_request(service, route, &req, body).await?;
    if !shared_caches_may_keep {
        keep_out_of_shared_caches(&mut response);
    }
    Ok(response)
}

/// Turns a `public` `Cache-Control` into a `private` one.
fn keep_out_of_shared_caches(response: &mut HttpResponse) {
    let private = match response.headers().get(CACHE_CONTROL).and_then(|v| v.to_str().ok()) {
        Some(value) => match value.strip_prefix("public") {
            Some(rest) => format!("private{rest}"),
            None => return,
        },
        None => return,
    };
    if let Ok(private) = HeaderValue::from_str(&private) {
        response.headers_mut().insert(CACHE_CONTROL, private);
    }
}

async fn route_request(
    service: &Service<'_>,
    route: Route,
    req: &Req<'_>,
    body: &mut BodySlot,
) -> Result<HttpResponse> {
    let registry = service.registry;
    let pushes = matches!(
        (&route, req.method),
        (Route::Manifest(..), &Method::PUT)
            | (Route::Uploads(_), &Method::POST)
            | (Route::Upload(..), &Method::PATCH | &Method::PUT)
    );
    if let (true, Some(repo), Some(mirror)) = (pushes, route.repository(), service.mirror) {
        crate::mirror::refuse_push(mirror, repo)?;
    }
    match (route, req.method.clone()) {
        (Route::Ping, Method::GET | Method::HEAD) => Ok(json_response(StatusCode::OK, Bytes::from_static(b"{}"))),
        (Route::Catalog, Method::GET) => discovery::catalog(registry, req).await,
        (Route::Tags(repo), Method::GET) => discovery::tags(registry, req, &repo).await,
        (Route::Referrers(repo, digest), Method::GET) => discovery::referrers(registry, req, &repo, &digest).await,
        (Route::Manifest(repo, reference), Method::GET | Method::HEAD) => {
            manifests::get(service, req, &repo, &reference).await
        }
        (Route::Manifest(repo, reference), Method::PUT) => manifests::put(service, req, &repo, &reference, body).await,
        (Route::Manifest(repo, reference), Method::DELETE) => manifests::delete(service, req, &repo, &reference).await,
        (Route::Blob(repo, digest), Method::GET | Method::HEAD) => blobs::get(service, req, &repo, &digest).await,
        (Route::Blob(repo, digest), Method::DELETE) => blobs::delete(registry, &repo, &digest).await,
        (Route::Uploads(repo), Method::POST) => uploads::start(registry, req, &repo, body).await,
        (Route::Upload(repo, id), Method::GET) => uploads::status(registry, req, &repo, &id).await,
        (Route::Upload(repo, id), Method::PATCH) => uploads::chunk(registry, req, &repo, &id, body).await,
        (Route::Upload(repo, id), Method::PUT) => uploads::finish(registry, req, &repo, &id, body).await,
        (Route::Upload(repo, id), Method::DELETE) => uploads::cancel(registry, req, &repo, &id).await,
        (_, method) => Err(RegistryError::new(
            ErrorCode::Unsupported,
            format!("{method} is not supported here"),
        )),
    }
}

/// The parts of a request handlers read.
struct Req<'a> {
    method: &'a Method,
    headers: &'a http::HeaderMap,
    query: &'a Query,
    /// What the caller may do, for the decisions handlers make themselves
    /// (what the catalog lists, where a blob may be mounted from).
    access: &'a Access<'a>,
}

impl Req<'_> {
    fn header(&self, name: impl http::header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn content_length(&self) -> Result<Option<u64>> {
        match self.header(CONTENT_LENGTH) {
            None => Ok(None),
            Some(text) => text
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| RegistryError::new(ErrorCode::SizeInvalid, "invalid Content-Length")),
        }
    }

    fn is_head(&self) -> bool {
        self.method == Method::HEAD
    }
}

/// Query parameters in order; a key may repeat (`tag=a&tag=b`).
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(query: Option<&str>) -> Query {
        Query(
            url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

fn parse_digest(text: &str) -> Result<Digest> {
    Digest::parse(text).map_err(|err| {
        let message = match err {
            DigestError::Malformed => format!("invalid digest {text:?}"),
            DigestError::Unsupported => format!("unsupported digest algorithm in {text:?}"),
        };
        RegistryError::new(ErrorCode::DigestInvalid, message).with_detail(serde_json::json!({ "digest": text }))
    })
}

fn parse_tag(text: &str) -> Result<Tag> {
    Tag::parse(text).ok_or_else(|| {
        RegistryError::new(ErrorCode::TagInvalid, format!("invalid tag {text:?}"))
            .with_detail(serde_json::json!({ "tag": text }))
    })
}

/// A manifest reference: digests contain `:`, tags never do.
fn parse_reference(text: &str) -> Result<Reference> {
    if text.contains(':') {
        parse_digest(text).map(Reference::Digest)
    } else {
        parse_tag(text).map(Reference::Tag)
    }
}

/// Reads a whole body of at most `limit` bytes; `None` if it is longer.
async fn read_body(mut body: RequestBody, limit: usize) -> Result<Option<Bytes>> {
    let mut out = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(BodyError::into_registry_error)?;
        if out.len() + chunk.len() > limit {
            return Ok(None);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Some(out.freeze()))
}

/// A header value built from data (a stored media type, a URL a store
/// signed, a page cursor): one that cannot be sent fails the request with a
/// 500 and the spec's error body, never a panic.
fn header_value(text: &str) -> Result<HeaderValue> {
    HeaderValue::from_str(text).map_err(|_| unsendable(&format!("header value {text:?}")))
}

fn unsendable(what: &str) -> RegistryError {
    RegistryError::new(ErrorCode::Internal, format!("{what} cannot be sent in a response"))
}

fn response(status: StatusCode) -> http::response::Builder {
    Response::builder().status(status)
}

/// The response a builder describes. Headers given to a builder as text are
/// checked here: one that is not a valid header value (from data that
/// should never hold one) fails the request, never panics.
fn finish(builder: http::response::Builder, body: Body) -> Result<HttpResponse> {
    builder
        .body(body)
        .map_err(|e| unsendable(&format!("a response header ({e})")))
}

fn empty(builder: http::response::Builder) -> Result<HttpResponse> {
    finish(builder.header(CONTENT_LENGTH, 0), Body::Empty)
}

fn json_response(status: StatusCode, body: Bytes) -> HttpResponse {
    let length = HeaderValue::from(body.len());
    let mut response = Response::new(Body::Full(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CONTENT_LENGTH, length);
    response
}

/// The spec's error body with the error's status.
pub fn error_response(err: &RegistryError) -> HttpResponse {
    json_response(err.status, Bytes::from(err.body()))
}

fn with_location(builder: http::response::Builder, location: &str) -> http::response::Builder {
    builder.header(LOCATION, location)
}

fn digest_header(builder: http::response::Builder, digest: &Digest) -> http::response::Builder {
    builder.header(HeaderName::from_static(CONTENT_DIGEST), digest.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> RepoName {
        RepoName::parse(s).unwrap()
    }

    #[test]
    fn routes() {
        assert_eq!(route("/v2/").unwrap(), Some(Route::Ping));
        assert_eq!(route("/v2").unwrap(), Some(Route::Ping));
        assert_eq!(route("/v2/_catalog").unwrap(), Some(Route::Catalog));
        assert_eq!(route("/v2/a/b/tags/list").unwrap(), Some(Route::Tags(name("a/b"))));
        assert_eq!(route("/v2/a/blobs/uploads/").unwrap(), Some(Route::Uploads(name("a"))));
        assert_eq!(
            route("/v2/a/blobs/uploads/x1").unwrap(),
            Some(Route::Upload(name("a"), "x1".into()))
        );
        assert_eq!(
            route("/v2/blobs/blobs/sha256:1").unwrap(),
            Some(Route::Blob(name("blobs"), "sha256:1".into()))
        );
        assert_eq!(
            route("/v2/a/manifests/latest").unwrap(),
            Some(Route::Manifest(name("a"), "latest".into()))
        );
        assert_eq!(
            route("/v2/a/referrers/sha256:1").unwrap(),
            Some(Route::Referrers(name("a"), "sha256:1".into()))
        );
        assert_eq!(route("/v3/a").unwrap(), None);
        assert_eq!(route("/v2/a/unknown/x").unwrap(), None);
        assert_eq!(route("/v2/A/manifests/x").unwrap_err().code, ErrorCode::NameInvalid);
        assert_eq!(route("/v2/a//b/manifests/x").unwrap_err().code, ErrorCode::NameInvalid);
    }
}
