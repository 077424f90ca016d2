//! What pier takes on the word of other parties, through the HTTP layer
//! (`api::handle`) over the in-memory store: a pull-through cache whose
//! upstream lies about having a blob, and promotion rules fed referrers by
//! whoever may push the source namespace. (The token realm and redirect
//! policies have unit tests beside their code in `remote`.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::executor::block_on;
use futures::StreamExt;
use http::{Method, Request, StatusCode};
use pier_core::api::Body;
use pier_core::body::{empty_body, full_body};
use pier_core::deployment::{Deployment, Ports, Settings, Site, Stores};
use pier_core::digest::{Algorithm, Digest};
use pier_core::mirror::MirrorConfig;
use pier_core::platform::{box_stream, Background, BoxFuture};
use pier_core::remote::http::{HttpClient, HttpError, IncomingResponse, OutgoingRequest};
use pier_core::store::memory::MemoryStore;
use pier_core::testing::TestEnv;
use serde_json::{json, Value};

fn env() -> Arc<TestEnv> {
    Arc::new(TestEnv::default())
}

/// One deployment as a shell assembles it, over a memory store.
struct Pier {
    deployment: Deployment,
    site: Site,
}

impl Pier {
    fn new(settings: Settings, http: Arc<dyn HttpClient>, env: Arc<TestEnv>, background: Arc<dyn Background>) -> Pier {
        let deployment = Deployment::new(settings, Ports { env, http }).unwrap();
        let site = deployment.site(Stores::Backend(Arc::new(MemoryStore::new(1 << 20))), background);
        Pier { deployment, site }
    }
}

fn call(registry: &Pier, method: Method, uri: &str, content_type: Option<&str>, body: &[u8]) -> (StatusCode, Bytes) {
    let mut builder = Request::builder().method(method).uri(uri).header("host", "reg.test");
    if let Some(content_type) = content_type {
        builder = builder.header("content-type", content_type);
    }
    let body = if body.is_empty() {
        empty_body()
    } else {
        full_body(Bytes::copy_from_slice(body))
    };
    let response = block_on(registry.deployment.handle(&registry.site, builder.body(body).unwrap()));
    let status = response.status();
    let bytes = block_on(async {
        match response.into_body() {
            Body::Empty => Bytes::new(),
            Body::Full(bytes) => bytes,
            Body::Stream { mut stream, .. } => {
                let mut out = Vec::new();
                while let Some(chunk) = stream.next().await {
                    match chunk {
                        Ok(chunk) => out.extend_from_slice(&chunk),
                        Err(_) => break,
                    }
                }
                Bytes::from(out)
            }
        }
    });
    (status, bytes)
}

fn push_blob(registry: &Pier, repo: &str, data: &[u8]) -> Value {
    let digest = Digest::of(Algorithm::Sha256, data);
    let uri = format!("/v2/{repo}/blobs/uploads/?digest={digest}");
    let (status, body) = call(registry, Method::POST, &uri, None, data);
    assert_eq!(status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&body));
    json!({ "mediaType": "application/octet-stream", "digest": digest.as_str(), "size": data.len() })
}

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Pushes a manifest under `reference`; returns its descriptor.
fn push_manifest(registry: &Pier, repo: &str, reference: Option<&str>, manifest: &Value) -> Value {
    let bytes = serde_json::to_vec(manifest).unwrap();
    let digest = Digest::of(Algorithm::Sha256, &bytes);
    let reference = reference.map(str::to_string).unwrap_or_else(|| digest.to_string());
    let uri = format!("/v2/{repo}/manifests/{reference}");
    let media_type = manifest["mediaType"].as_str().unwrap();
    let (status, body) = call(registry, Method::PUT, &uri, Some(media_type), &bytes);
    assert_eq!(status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&body));
    json!({ "mediaType": media_type, "digest": digest.as_str(), "size": bytes.len() })
}

// ---- F2: a mirrored repository serves only what upstream delivered ----

/// An upstream that answers 200 to a HEAD of any blob, and serves a GET
/// only of the bytes it really has.
struct LyingUpstream {
    has: Vec<u8>,
}

#[async_trait::async_trait]
impl HttpClient for LyingUpstream {
    async fn send(&self, request: OutgoingRequest) -> Result<IncomingResponse, HttpError> {
        let path = request.uri().path().to_string();
        let real = format!("sha256:{}", Digest::of(Algorithm::Sha256, &self.has).hex());
        let answer = http::Response::builder();
        let empty = || box_stream(futures::stream::empty());
        let response = if !path.contains("/blobs/") {
            answer.status(404).body(empty())
        } else if request.method() == Method::HEAD {
            answer.status(200).header("content-length", "1234").body(empty())
        } else if path.ends_with(&real) {
            let bytes = Bytes::from(self.has.clone());
            answer
                .status(200)
                .header("content-length", bytes.len())
                .body(box_stream(futures::stream::once(async move { Ok(bytes) })))
        } else {
            answer.status(404).body(empty())
        };
        Ok(response.unwrap())
    }
}

fn mirrored_registry(upstream_has: &[u8]) -> Pier {
    let env = env();
    let config: MirrorConfig = serde_json::from_value(json!({
        "namespace": "hub/**", "upstream": "https://upstream.test"
    }))
    .unwrap();
    let upstream = Arc::new(LyingUpstream {
        has: upstream_has.to_vec(),
    });
    let settings = Settings {
        mirrors: vec![config],
        ..Settings::default()
    };
    Pier::new(settings, upstream, env, Arc::new(Later::default()))
}

#[test]
fn a_private_blob_is_not_read_through_a_mirror_whose_upstream_claims_it() {
    let registry = mirrored_registry(b"public layer");
    let private = push_blob(&registry, "prod/app", b"private layer of prod");
    let digest = private["digest"].as_str().unwrap();
    let (status, body) = call(&registry, Method::GET, &format!("/v2/hub/x/blobs/{digest}"), None, b"");
    assert_eq!(status, StatusCode::NOT_FOUND, "{}", String::from_utf8_lossy(&body));
    assert!(!body.windows(7).any(|w| w == b"private"));
    // Nor is it linked there afterwards.
    let (status, _) = call(&registry, Method::GET, &format!("/v2/hub/x/blobs/{digest}"), None, b"");
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A HEAD says what upstream says, and nothing local.
    let (status, _) = call(&registry, Method::HEAD, &format!("/v2/hub/x/blobs/{digest}"), None, b"");
    assert_eq!(status, StatusCode::OK);
}

#[test]
fn what_upstream_delivers_is_served_and_stored_once() {
    let registry = mirrored_registry(b"shared base layer");
    let local = push_blob(&registry, "prod/app", b"shared base layer");
    let uri = format!("/v2/hub/x/blobs/{}", local["digest"].as_str().unwrap());
    let (status, body) = call(&registry, Method::GET, &uri, None, b"");
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"shared base layer"[..]));
    // Cached now (linked to the stored copy): served without upstream.
    let (status, body) = call(&registry, Method::GET, &uri, None, b"");
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"shared base layer"[..]));
}

// ---- F9: a promotion carries only the referrers its rule lists ----

/// Background work run when the test says, sleeps ending at once.
#[derive(Default)]
struct Later {
    tasks: Mutex<Vec<BoxFuture<'static, ()>>>,
    reports: Mutex<Vec<String>>,
}

impl Background for Later {
    fn spawn(&self, task: BoxFuture<'static, ()>) {
        self.tasks.lock().unwrap().push(task);
    }
    fn sleep(&self, _: Duration) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
    fn report(&self, _failed: bool, message: &str) {
        self.reports.lock().unwrap().push(message.to_string());
    }
}

impl Later {
    /// Runs every task, and those they start.
    fn run(&self) {
        loop {
            let tasks: Vec<_> = self.tasks.lock().unwrap().drain(..).collect();
            if tasks.is_empty() {
                return;
            }
            block_on(futures::future::join_all(tasks));
        }
    }
}

fn promoting_registry(rule: Value) -> (Pier, Arc<Later>) {
    let settings = Settings {
        replicate: serde_json::from_value(json!([rule])).unwrap(),
        ..Settings::default()
    };
    let later = Arc::new(Later::default());
    let upstream = Arc::new(LyingUpstream { has: Vec::new() });
    (Pier::new(settings, upstream, env(), later.clone()), later)
}

fn image(registry: &Pier, repo: &str) -> Value {
    let config = push_blob(registry, repo, b"{\"architecture\":\"amd64\"}");
    let layer = push_blob(registry, repo, b"layer");
    let manifest = json!({
        "schemaVersion": 2, "mediaType": MANIFEST,
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": config["digest"], "size": config["size"] },
        "layers": [layer],
    });
    push_manifest(registry, repo, Some("rc"), &manifest)
}

/// A referrer of `subject` of `artifact_type`, `text` its one layer.
fn referrer(registry: &Pier, repo: &str, subject: &Value, artifact_type: &str, text: &str) -> String {
    let empty = push_blob(registry, repo, b"{}");
    let layer = push_blob(registry, repo, text.as_bytes());
    let manifest = json!({
        "schemaVersion": 2, "mediaType": MANIFEST, "artifactType": artifact_type,
        "config": { "mediaType": "application/vnd.oci.empty.v1+json",
                    "digest": empty["digest"], "size": 2 },
        "layers": [layer],
        "subject": subject,
    });
    push_manifest(registry, repo, None, &manifest)["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

fn referrers_in(registry: &Pier, repo: &str, subject: &Value) -> Vec<String> {
    let uri = format!("/v2/{repo}/referrers/{}", subject["digest"].as_str().unwrap());
    let (status, body) = call(registry, Method::GET, &uri, None, b"");
    assert_eq!(status, StatusCode::OK);
    let index: Value = serde_json::from_slice(&body).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_string())
        .collect()
}

const SIGNATURE: &str = "application/vnd.example.sig";

#[test]
fn a_promotion_carries_only_the_referrer_types_its_rule_lists() {
    let (registry, later) = promoting_registry(json!({
        "repository": "ci/**", "tags": "v*", "to_namespace": "prod/**",
        "referrers": [SIGNATURE], "follow_referrers": true,
    }));
    let subject = image(&registry, "ci/app");
    let injected = referrer(&registry, "ci/app", &subject, "application/x-anything", "payload");
    let signature = referrer(&registry, "ci/app", &subject, SIGNATURE, "signed by ci");
    let manifest_uri = format!("/v2/ci/app/manifests/{}", subject["digest"].as_str().unwrap());
    let (_, bytes) = call(&registry, Method::GET, &manifest_uri, None, b"");
    push_manifest(
        &registry,
        "ci/app",
        Some("v1"),
        &serde_json::from_slice(&bytes).unwrap(),
    );
    later.run();
    let promoted = referrers_in(&registry, "prod/app", &subject);
    assert_eq!(promoted, std::slice::from_ref(&signature), "the signature only");
    let (status, _) = call(
        &registry,
        Method::GET,
        &format!("/v2/prod/app/manifests/{injected}"),
        None,
        b"",
    );
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Pushed after the promotion: the listed type follows, nothing else.
    let late_injected = referrer(&registry, "ci/app", &subject, "application/x-anything", "later");
    let late_signature = referrer(&registry, "ci/app", &subject, SIGNATURE, "signed later");
    later.run();
    let mut promoted = referrers_in(&registry, "prod/app", &subject);
    promoted.sort();
    let mut expected = vec![signature, late_signature];
    expected.sort();
    assert_eq!(promoted, expected);
    let (status, _) = call(
        &registry,
        Method::GET,
        &format!("/v2/prod/app/manifests/{late_injected}"),
        None,
        b"",
    );
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[test]
fn by_default_a_promotion_carries_no_referrer() {
    let (registry, later) = promoting_registry(json!({
        "repository": "ci/**", "tags": "v*", "to_namespace": "prod/**",
    }));
    let subject = image(&registry, "ci/app");
    referrer(&registry, "ci/app", &subject, SIGNATURE, "signed by ci");
    let manifest_uri = format!("/v2/ci/app/manifests/{}", subject["digest"].as_str().unwrap());
    let (_, bytes) = call(&registry, Method::GET, &manifest_uri, None, b"");
    push_manifest(
        &registry,
        "ci/app",
        Some("v1"),
        &serde_json::from_slice(&bytes).unwrap(),
    );
    later.run();
    let (status, _) = call(&registry, Method::GET, "/v2/prod/app/manifests/v1", None, b"");
    assert_eq!(status, StatusCode::OK, "the image is promoted");
    assert!(referrers_in(&registry, "prod/app", &subject).is_empty());
    referrer(&registry, "ci/app", &subject, SIGNATURE, "signed later");
    later.run();
    assert!(referrers_in(&registry, "prod/app", &subject).is_empty());
}
