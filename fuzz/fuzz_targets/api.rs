//! The whole API over the in-memory store: a sequence of requests (methods,
//! paths from the grammar of real routes with fuzzed parts, headers, small
//! bodies arriving in pieces or breaking off) that must never panic, never
//! answer 5xx, and never break what the store layout promises
//! (core/src/layout.rs), checked after every request:
//!
//! - a blob record points at bytes of its size that hash to its digest
//!   (no upload leaves a half-written blob visible);
//! - a repository's blob links point at existing blob records;
//! - a stored manifest hashes to its digest and its repository is listed;
//! - a tag points at a manifest stored in its repository;
//! - a referrers entry names a manifest stored in its repository;
//! - upload sessions are readable;
//! - unless sparse manifests are allowed, a manifest pushed since the last
//!   delete in its repository has its blobs and child manifests present;
//! - an immutable tag never moves;
//! - what reads answer is what was stored (digests of bodies).
#![no_main]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arbitrary::Arbitrary;
use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION, RANGE};
use http::{Method, StatusCode};
use libfuzzer_sys::fuzz_target;
use pier_core::digest::{Algorithm, Digest};
use pier_core::layout;
use pier_core::manifest::{self, Manifest};
use pier_core::names::RepoName;
use pier_core::records::BlobRecord;
use pier_core::records::TagRecord;
use pier_core::registry::RegistryOptions;
use pier_core::retention::RetentionRule;
use pier_core::store::memory::MemoryStore;
use pier_core::store::{list_all, read_small, Store};
use pier_core::testing::TestEnv;
use pier_core::upload::UploadState;
use pier_core::Registry;
use pier_fuzz::{body_in_pieces, read_response, run, split_at};

const REPOS: [&str; 4] = ["a", "b/c", "prod/app", "blobs"];
const TAGS: [&str; 3] = ["latest", "v1", "sha256-abc.sig"];
const CONTENT_TYPES: [&str; 6] = [
    manifest::OCI_MANIFEST,
    manifest::OCI_INDEX,
    manifest::DOCKER_MANIFEST,
    manifest::DOCKER_LIST,
    "application/vnd.example.artifact+json",
    "application/json",
];
/// Contents every input can refer to, beside its own.
const FIXED_BLOBS: [&[u8]; 4] = [
    b"",
    b"{}",
    b"layer one",
    b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz",
];

#[derive(Arbitrary, Debug)]
struct Input {
    sparse: bool,
    /// A body limit of this many bytes (as on the edge), if any.
    max_body: Option<u8>,
    no_cache: bool,
    part_size: u8,
    /// Tags of `prod/**` are immutable.
    immutable_prod: bool,
    blobs: Vec<Vec<u8>>,
    requests: Vec<Request>,
}

#[derive(Arbitrary, Debug)]
struct Request {
    method: MethodGen,
    path: PathGen,
    query: Vec<QueryGen>,
    headers: Vec<HeaderGen>,
    body: BodyGen,
    cuts: Vec<u16>,
    breaks_off: bool,
    later_secs: u8,
}

#[derive(Arbitrary, Debug)]
enum MethodGen {
    Get,
    Head,
    Put,
    Post,
    Patch,
    Delete,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum RepoGen {
    Known(u8),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum DigestGen {
    Blob(u8),
    Sha512Blob(u8),
    Manifest(u8),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum ReferenceGen {
    Tag(u8),
    Digest(DigestGen),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum UploadGen {
    /// The Location of an upload this sequence opened.
    Location(u8),
    /// Its id, under a repository of the fuzzer's choice.
    Id(RepoGen, u8),
    Raw(RepoGen, String),
}

#[derive(Arbitrary, Debug)]
enum PathGen {
    Ping,
    Catalog,
    Tags(RepoGen),
    Manifest(RepoGen, ReferenceGen),
    Blob(RepoGen, DigestGen),
    Uploads(RepoGen),
    Upload(UploadGen),
    Referrers(RepoGen, DigestGen),
    GcReport,
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum QueryGen {
    Digest(DigestGen),
    Mount(DigestGen),
    From(RepoGen),
    Tag(ReferenceGen),
    N(String),
    Last(String),
    ArtifactType(String),
    Raw(String, String),
}

#[derive(Arbitrary, Debug)]
enum HeaderGen {
    ContentType(u8),
    ContentTypeRaw(String),
    /// The body's length, or the declared one.
    ContentLength(Option<String>),
    /// `start-end` of the body from the start of the upload, or this text.
    ContentRange(u64, Option<String>),
    Range(String),
    Accept(String),
    Raw(String, String),
}

#[derive(Arbitrary, Debug)]
enum BodyGen {
    Empty,
    Blob(u8),
    Manifest(ManifestGen),
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct ManifestGen {
    kind: u8,
    /// `mediaType`: the kind's own, or any text.
    declared_media_type: Option<Option<String>>,
    config: Option<BlobRef>,
    layers: Option<Vec<BlobRef>>,
    children: Vec<DigestGen>,
    subject: Option<DigestGen>,
    artifact_type: Option<String>,
    annotation: Option<(String, String)>,
    schema_version: Option<i8>,
}

#[derive(Arbitrary, Debug)]
enum BlobRef {
    /// A pool blob, described truthfully.
    Pool(u8),
    /// A pool blob with the wrong size.
    WrongSize(u8, u32),
    /// A layer stored elsewhere (`urls`).
    Foreign(u8),
    /// A pool blob with its bytes inline (`data`).
    Inline(u8),
    Raw(String),
}

/// What the sequence has seen, to aim later requests at it and to know
/// which invariants hold.
struct Model {
    blobs: Vec<Vec<u8>>,
    manifests: Vec<(Digest, Vec<u8>)>,
    uploads: Vec<(String, String)>,
    /// Per (repository, manifest): the step of its last successful push and its Content-Type.
    pushed: HashMap<(String, Digest), (usize, Option<String>)>,
    /// Per repository: the step of its last successful delete.
    deleted: HashMap<String, usize>,
    /// Tags seen in immutable repositories and where they point.
    immutable_tags: BTreeMap<String, Digest>,
}

impl Model {
    fn repo(&self, repo: &RepoGen) -> String {
        match repo {
            RepoGen::Known(i) => REPOS[*i as usize % REPOS.len()].to_string(),
            RepoGen::Raw(text) => text.clone(),
        }
    }

    fn blob(&self, i: u8) -> &[u8] {
        &self.blobs[i as usize % self.blobs.len()]
    }

    fn digest(&self, digest: &DigestGen) -> String {
        match digest {
            DigestGen::Blob(i) => Digest::of(Algorithm::Sha256, self.blob(*i)).to_string(),
            DigestGen::Sha512Blob(i) => Digest::of(Algorithm::Sha512, self.blob(*i)).to_string(),
            DigestGen::Manifest(i) if !self.manifests.is_empty() => {
                self.manifests[*i as usize % self.manifests.len()].0.to_string()
            }
            DigestGen::Manifest(i) => Digest::of(Algorithm::Sha256, &[*i]).to_string(),
            DigestGen::Raw(text) => text.clone(),
        }
    }

    fn reference(&self, reference: &ReferenceGen) -> String {
        match reference {
            ReferenceGen::Tag(i) => TAGS[*i as usize % TAGS.len()].to_string(),
            ReferenceGen::Digest(digest) => self.digest(digest),
            ReferenceGen::Raw(text) => text.clone(),
        }
    }

    fn descriptor(&self, blob: &BlobRef) -> serde_json::Value {
        let (media_type, content, size, extra) = match blob {
            BlobRef::Pool(i) => ("application/vnd.oci.image.layer.v1.tar", self.blob(*i), None, None),
            BlobRef::WrongSize(i, size) => (
                "application/vnd.oci.image.layer.v1.tar",
                self.blob(*i),
                Some(*size as u64),
                None,
            ),
            BlobRef::Foreign(i) => (
                "application/vnd.oci.image.layer.nondistributable.v1.tar",
                self.blob(*i),
                None,
                Some(("urls", serde_json::json!(["https://example.com/layer"]))),
            ),
            BlobRef::Inline(i) => {
                let content = self.blob(*i);
                let encoded = <ct_codecs::Base64 as ct_codecs::Encoder>::encode_to_string(content).expect("base64");
                (
                    "application/vnd.oci.image.layer.v1.tar",
                    content,
                    None,
                    Some(("data", serde_json::json!(encoded))),
                )
            }
            BlobRef::Raw(text) => {
                return serde_json::json!({"mediaType": "application/octet-stream", "digest": text, "size": 1})
            }
        };
        let mut value = serde_json::json!({
            "mediaType": media_type,
            "digest": Digest::of(Algorithm::Sha256, content).as_str(),
            "size": size.unwrap_or(content.len() as u64),
        });
        if let Some((key, extra)) = extra {
            value[key] = extra;
        }
        value
    }

    fn manifest_descriptor(&self, digest: &DigestGen) -> serde_json::Value {
        let (media_type, size) = match digest {
            DigestGen::Manifest(i) if !self.manifests.is_empty() => {
                let (_, bytes) = &self.manifests[*i as usize % self.manifests.len()];
                (manifest::media_type_of(bytes), bytes.len())
            }
            _ => (manifest::OCI_MANIFEST.to_string(), 2),
        };
        serde_json::json!({"mediaType": media_type, "digest": self.digest(digest), "size": size})
    }

    fn manifest(&self, gen: &ManifestGen) -> Vec<u8> {
        let media_type = CONTENT_TYPES[gen.kind as usize % CONTENT_TYPES.len()];
        let mut value = serde_json::json!({});
        if let Some(version) = gen.schema_version {
            value["schemaVersion"] = serde_json::json!(if version >= 0 { 2 } else { version });
        }
        if let Some(declared) = &gen.declared_media_type {
            value["mediaType"] = serde_json::json!(declared.as_deref().unwrap_or(media_type));
        }
        let is_index = media_type == manifest::OCI_INDEX || media_type == manifest::DOCKER_LIST;
        if is_index || !gen.children.is_empty() {
            let children: Vec<_> = gen
                .children
                .iter()
                .take(4)
                .map(|c| self.manifest_descriptor(c))
                .collect();
            value["manifests"] = serde_json::json!(children);
        }
        if !is_index {
            if let Some(config) = &gen.config {
                value["config"] = self.descriptor(config);
            }
            if let Some(layers) = &gen.layers {
                let layers: Vec<_> = layers.iter().take(4).map(|l| self.descriptor(l)).collect();
                value["layers"] = serde_json::json!(layers);
            }
        }
        if let Some(subject) = &gen.subject {
            value["subject"] = self.manifest_descriptor(subject);
        }
        if let Some(artifact_type) = &gen.artifact_type {
            value["artifactType"] = serde_json::json!(artifact_type);
        }
        if let Some((key, annotation)) = &gen.annotation {
            value["annotations"] = serde_json::json!({ key: annotation });
        }
        serde_json::to_vec(&value).expect("json")
    }
}

fn method(gen: &MethodGen) -> Option<Method> {
    Some(match gen {
        MethodGen::Get => Method::GET,
        MethodGen::Head => Method::HEAD,
        MethodGen::Put => Method::PUT,
        MethodGen::Post => Method::POST,
        MethodGen::Patch => Method::PATCH,
        MethodGen::Delete => Method::DELETE,
        MethodGen::Other(text) => Method::from_bytes(text.as_bytes()).ok()?,
    })
}

fn digest_of_key(key: &str) -> Digest {
    layout::digest_at_end(key).unwrap_or_else(|| panic!("a key that should end in a digest: {key}"))
}

/// The repository of a `repos/<name>/<marker>/...` key.
fn repo_of(key: &str, marker: &str) -> String {
    let rest = key.strip_prefix("repos/").expect("a repository key");
    let (repo, _) = rest
        .split_once(marker)
        .unwrap_or_else(|| panic!("{key} has no {marker}"));
    repo.to_string()
}

async fn exists(store: &dyn Store, key: &str) -> bool {
    store.head(key).await.expect("the memory store answers").is_some()
}

/// Every invariant of the layout, read from the store itself.
async fn check_store(store: &dyn Store, model: &mut Model, sparse: bool, immutable_prod: bool, step: usize) {
    let all = list_all(store, "").await.expect("list");
    for key in &all {
        if key.starts_with(layout::BLOB_RECORDS) {
            let (bytes, _) = read_small(store, key).await.expect("read").expect("listed");
            let record: BlobRecord = serde_json::from_slice(&bytes).expect("a blob record is readable");
            let (data, _) = read_small(store, &record.object)
                .await
                .expect("read")
                .unwrap_or_else(|| panic!("blob record {key} points at missing bytes {}", record.object));
            assert_eq!(data.len() as u64, record.size, "blob record {key} has the wrong size");
            let digest = digest_of_key(key);
            assert_eq!(
                Digest::of(digest.algorithm(), &data),
                digest,
                "blob {key} holds other bytes"
            );
        } else if key.contains("/_layers/") {
            let digest = digest_of_key(key);
            assert!(
                exists(store, &layout::blob_record(&digest)).await,
                "link {key} to no blob"
            );
        } else if key.contains("/_manifests/") {
            let repo = repo_of(key, "/_manifests/");
            let digest = digest_of_key(key);
            let (bytes, _) = read_small(store, key).await.expect("read").expect("listed");
            assert_eq!(
                Digest::of(digest.algorithm(), &bytes),
                digest,
                "manifest {key} holds other bytes"
            );
            let name = RepoName::parse(&repo).expect("a stored repository has a valid name");
            assert!(
                exists(store, &layout::catalog_entry(&name)).await,
                "{repo} holds manifests but is not listed"
            );
            let Some((pushed, content_type)) = model.pushed.get(&(repo.clone(), digest.clone())) else {
                panic!("manifest {key} was never acknowledged");
            };
            let deleted = model.deleted.get(&repo).copied();
            if !sparse && deleted.is_none_or(|d| d < *pushed) {
                let parsed = manifest::parse(&bytes, content_type.as_deref()).expect("an accepted manifest parses");
                for blob in parsed.blobs.iter().filter(|d| !Manifest::blob_may_be_foreign(d)) {
                    assert!(
                        exists(store, &layout::layer_link(&name, &blob.digest)).await,
                        "{key}: blob {} missing",
                        blob.digest
                    );
                }
                for child in &parsed.children {
                    assert!(
                        exists(store, &layout::manifest(&name, &child.digest)).await,
                        "{key}: child {} missing",
                        child.digest
                    );
                }
            }
        } else if key.contains("/_tags/") {
            let repo = repo_of(key, "/_tags/");
            let (bytes, _) = read_small(store, key).await.expect("read").expect("listed");
            let record = TagRecord::parse(&bytes).expect("a tag record is readable");
            let name = RepoName::parse(&repo).expect("valid");
            assert!(
                exists(store, &layout::manifest(&name, &record.digest)).await,
                "tag {key} points at nothing"
            );
            if immutable_prod && repo.starts_with("prod/") {
                if let Some(before) = model.immutable_tags.insert(key.clone(), record.digest.clone()) {
                    let deleted_now = model.deleted.get(&repo) == Some(&step);
                    assert!(before == record.digest || deleted_now, "immutable tag {key} moved");
                }
            }
        } else if key.contains("/_referrers/") {
            let repo = repo_of(key, "/_referrers/");
            let digest = digest_of_key(key);
            let name = RepoName::parse(&repo).expect("valid");
            assert!(
                exists(store, &layout::manifest(&name, &digest)).await,
                "referrer {key} names no manifest"
            );
        } else if key.starts_with(layout::UPLOADS) && key.contains("/s/") {
            // A state, or the closed marker an ended session keeps until upload expiry.
            let (bytes, _) = read_small(store, key).await.expect("read").expect("listed");
            let closed = bytes.starts_with(b"closed ");
            assert!(
                closed || serde_json::from_slice::<UploadState>(&bytes).is_ok(),
                "an upload state is readable: {key}"
            );
        }
    }
    // Tags removed with their manifest are forgotten.
    model.immutable_tags.retain(|key, _| all.contains(key));
}

fn build_path(model: &Model, path: &PathGen) -> String {
    match path {
        PathGen::Ping => "/v2/".into(),
        PathGen::Catalog => "/v2/_catalog".into(),
        PathGen::Tags(repo) => format!("/v2/{}/tags/list", model.repo(repo)),
        PathGen::Manifest(repo, reference) => {
            format!("/v2/{}/manifests/{}", model.repo(repo), model.reference(reference))
        }
        PathGen::Blob(repo, digest) => format!("/v2/{}/blobs/{}", model.repo(repo), model.digest(digest)),
        PathGen::Uploads(repo) => format!("/v2/{}/blobs/uploads/", model.repo(repo)),
        PathGen::Upload(UploadGen::Location(i)) if !model.uploads.is_empty() => {
            model.uploads[*i as usize % model.uploads.len()].0.clone()
        }
        PathGen::Upload(UploadGen::Id(repo, i)) if !model.uploads.is_empty() => {
            let id = &model.uploads[*i as usize % model.uploads.len()].1;
            format!("/v2/{}/blobs/uploads/{id}", model.repo(repo))
        }
        PathGen::Upload(UploadGen::Location(_) | UploadGen::Id(..)) => "/v2/a/blobs/uploads/none".into(),
        PathGen::Upload(UploadGen::Raw(repo, id)) => format!("/v2/{}/blobs/uploads/{id}", model.repo(repo)),
        PathGen::Referrers(repo, digest) => format!("/v2/{}/referrers/{}", model.repo(repo), model.digest(digest)),
        PathGen::GcReport => "/_pier/gc/report".into(),
        PathGen::Raw(text) => text.clone(),
    }
}

fuzz_target!(|input: Input| {
    let env = Arc::new(TestEnv::default());
    let store = Arc::new(MemoryStore::new(1 + input.part_size as usize % 48));
    let retention = if input.immutable_prod {
        vec![serde_json::from_value::<RetentionRule>(
            serde_json::json!({"namespace": "prod/**", "immutable_tags": true}),
        )
        .expect("a rule")]
    } else {
        Vec::new()
    };
    let options = RegistryOptions {
        allow_sparse_manifests: input.sparse,
        max_body_bytes: input.max_body.map(u64::from),
        cache_bytes: if input.no_cache { 0 } else { 1 << 20 },
        retention,
        ..RegistryOptions::default()
    };
    let registry = Registry::new(store.clone(), env.clone(), options);
    let mut model = Model {
        blobs: FIXED_BLOBS
            .iter()
            .map(|b| b.to_vec())
            .chain(input.blobs.into_iter().take(4).map(|mut b| {
                b.truncate(256);
                b
            }))
            .collect(),
        manifests: Vec::new(),
        uploads: Vec::new(),
        pushed: HashMap::new(),
        deleted: HashMap::new(),
        immutable_tags: BTreeMap::new(),
    };

    for (step, request) in input.requests.iter().take(16).enumerate() {
        env.advance_millis(request.later_secs as u64 * 1000);
        let Some(method) = method(&request.method) else {
            continue;
        };
        let path = build_path(&model, &request.path);
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for param in request.query.iter().take(4) {
            match param {
                QueryGen::Digest(d) => query.append_pair("digest", &model.digest(d)),
                QueryGen::Mount(d) => query.append_pair("mount", &model.digest(d)),
                QueryGen::From(repo) => query.append_pair("from", &model.repo(repo)),
                QueryGen::Tag(reference) => query.append_pair("tag", &model.reference(reference)),
                QueryGen::N(n) => query.append_pair("n", n),
                QueryGen::Last(last) => query.append_pair("last", last),
                QueryGen::ArtifactType(t) => query.append_pair("artifactType", t),
                QueryGen::Raw(k, v) => query.append_pair(k, v),
            };
        }
        let query = query.finish();
        let uri = if query.is_empty() {
            path.clone()
        } else {
            let joiner = if path.contains('?') { '&' } else { '?' };
            format!("{path}{joiner}{query}")
        };
        let (body, content_type): (Vec<u8>, Option<String>) = match &request.body {
            BodyGen::Empty => (Vec::new(), None),
            BodyGen::Blob(i) => (model.blob(*i).to_vec(), None),
            BodyGen::Manifest(gen) => (
                model.manifest(gen),
                Some(CONTENT_TYPES[gen.kind as usize % CONTENT_TYPES.len()].to_string()),
            ),
            BodyGen::Raw(bytes) => (bytes[..bytes.len().min(512)].to_vec(), None),
        };
        let mut builder = http::Request::builder().method(method.clone()).uri(uri.as_str());
        let mut sent_type = content_type;
        let mut headers: Vec<(http::HeaderName, String)> = Vec::new();
        for header in request.headers.iter().take(4) {
            match header {
                HeaderGen::ContentType(i) => {
                    sent_type = Some(CONTENT_TYPES[*i as usize % CONTENT_TYPES.len()].to_string())
                }
                HeaderGen::ContentTypeRaw(text) => sent_type = Some(text.clone()),
                HeaderGen::ContentLength(None) => headers.push((CONTENT_LENGTH, body.len().to_string())),
                HeaderGen::ContentLength(Some(text)) => headers.push((CONTENT_LENGTH, text.clone())),
                HeaderGen::ContentRange(start, None) => {
                    let end = start.saturating_add(body.len() as u64).saturating_sub(1);
                    headers.push((CONTENT_RANGE, format!("{start}-{end}")))
                }
                HeaderGen::ContentRange(_, Some(text)) => headers.push((CONTENT_RANGE, text.clone())),
                HeaderGen::Range(text) => headers.push((RANGE, text.clone())),
                HeaderGen::Accept(text) => headers.push((ACCEPT, text.clone())),
                HeaderGen::Raw(name, value) => {
                    if let Ok(name) = http::HeaderName::from_bytes(name.as_bytes()) {
                        headers.push((name, value.clone()))
                    }
                }
            }
        }
        let sent_type = sent_type.filter(|t| http::HeaderValue::from_str(t).is_ok());
        if let Some(content_type) = &sent_type {
            builder = builder.header(CONTENT_TYPE, content_type);
        }
        for (name, value) in &headers {
            if http::HeaderValue::from_str(value).is_ok() {
                builder = builder.header(name, value);
            }
        }
        let Ok(http_request) = builder.body(body_in_pieces(split_at(&body, &request.cuts), request.breaks_off)) else {
            continue;
        };
        let response = run(pier_core::api::handle(
            pier_core::api::Service::open(&registry),
            http_request,
        ));
        let status = response.status();
        assert!(!status.is_server_error(), "{method} {uri}: {status}");
        let (parts, answer) = read_response(response);

        // What the answer says.
        let stated_digest = parts
            .headers
            .get("docker-content-digest")
            .map(|v| v.to_str().expect("text").to_string());
        if status.is_success() && method == Method::GET {
            if let (Some(digest), true) = (&stated_digest, status == StatusCode::OK) {
                let digest = Digest::parse(digest).expect("a valid digest header");
                assert_eq!(
                    Digest::of(digest.algorithm(), &answer),
                    digest,
                    "{uri} answered other bytes"
                );
            }
        }
        if status == StatusCode::ACCEPTED && method == Method::POST {
            if let Some(location) = parts.headers.get(LOCATION) {
                let location = location.to_str().expect("text").to_string();
                // The Location may carry a query (pier's names the session's state).
                let path = location.split('?').next().unwrap_or("");
                let id = path.rsplit('/').next().unwrap_or("").to_string();
                model.uploads.push((location, id));
            }
        }
        let repo_of_path = path.strip_prefix("/v2/").and_then(|rest| {
            ["/manifests/", "/blobs/"]
                .iter()
                .find_map(|m| rest.rsplit_once(m).map(|(repo, _)| repo.to_string()))
        });
        if status == StatusCode::CREATED && method == Method::PUT && path.contains("/manifests/") {
            let digest = Digest::parse(stated_digest.as_deref().expect("a pushed manifest's digest")).expect("valid");
            if !model.manifests.iter().any(|(d, _)| d == &digest) {
                model.manifests.push((digest.clone(), body.clone()));
            }
            let repo = repo_of_path.clone().expect("a manifest path names a repository");
            // The Content-Type as the registry read it: a header that is not
            // text counts as none.
            let read_type = sent_type
                .clone()
                .filter(|t| t.bytes().all(|b| (0x20..0x7f).contains(&b)));
            model.pushed.insert((repo, digest), (step, read_type));
        }
        if status.is_success() && method == Method::DELETE {
            if let Some(repo) = &repo_of_path {
                model.deleted.insert(repo.clone(), step);
            }
        }
        run(check_store(
            store.as_ref(),
            &mut model,
            input.sparse,
            input.immutable_prod,
            step,
        ));
    }
});
