//! The web UI's JSON API (`api::browse`) through the HTTP layer over the
//! in-memory store, with auth: what a tag summary says about an index, an
//! image and an artifact (sizes, platforms, push time, a signature in
//! cosign's tag form), the actions each caller gets, which repositories
//! each caller sees, the filter and its paging, and that a caller refused by
//! the distribution API is refused here with the same answer. (tests/ui runs
//! the same endpoints and the UI against the real servers.)

use std::sync::Arc;

use futures::executor::block_on;
use http::{Method, Request, StatusCode};
use pier_core::api::{handle, Body, Service};
use pier_core::auth::identity::hash_password;
use pier_core::auth::token::{new_signing_key, KeyAlgorithm};
use pier_core::auth::{Auth, AuthConfig};
use pier_core::body::{empty_body, full_body};
use pier_core::digest::{Algorithm, Digest};
use pier_core::registry::RegistryOptions;
use pier_core::store::memory::MemoryStore;
use pier_core::testing::TestEnv;
use pier_core::time::rfc3339;
use pier_core::Registry;
use serde_json::{json, Value};

const NOW_MS: u64 = 1_750_000_000_000;
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const IMAGE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

struct Fixture {
    registry: Registry,
    auth: Auth,
}

/// What one request answered.
struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    json: Value,
}

fn basic(user: &str) -> String {
    let pair = format!("{user}:{user}-pass");
    format!(
        "Basic {}",
        <ct_codecs::Base64 as ct_codecs::Encoder>::encode_to_string(pair).unwrap()
    )
}

impl Fixture {
    /// `team/**`: the dev group pulls, admins do everything; `ci/**`: anyone pulls.
    fn new() -> Fixture {
        let env = Arc::new(TestEnv::at(NOW_MS));
        let hash = |user: &str| hash_password(&format!("{user}-pass"), 256, 1, env.as_ref()).unwrap();
        let config = json!({
            "service": "pier",
            "admins": ["group:admins"],
            "users": [
                { "name": "alice", "password_hash": hash("alice"), "groups": ["dev"] },
                { "name": "root", "password_hash": hash("root"), "groups": ["admins"] },
            ],
            "rules": [
                { "repositories": "team/**", "pull": ["group:dev"] },
                { "repositories": "ci/**", "pull": ["anonymous"] },
            ],
        });
        let key = new_signing_key(KeyAlgorithm::Es256, env.as_ref());
        let auth = Auth::new(AuthConfig::from_json(&config.to_string()).unwrap(), &key, env.clone()).unwrap();
        let registry = Registry::new(Arc::new(MemoryStore::new(1 << 20)), env, RegistryOptions::default());
        Fixture { registry, auth }
    }

    fn call(&self, method: Method, path: &str, who: Option<&str>, body: Option<(&str, Vec<u8>)>) -> Answer {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(who) = who {
            request = request.header("authorization", basic(who));
        }
        let request = match body {
            Some((content_type, bytes)) => request.header("content-type", content_type).body(full_body(bytes)),
            None => request.body(empty_body()),
        }
        .unwrap();
        let service = Service {
            auth: Some(&self.auth),
            ..Service::open(&self.registry)
        };
        let response = block_on(handle(service, request));
        let status = response.status();
        let headers = response.headers().clone();
        let json = match response.into_body() {
            Body::Full(bytes) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            _ => Value::Null,
        };
        Answer { status, headers, json }
    }

    fn get(&self, path: &str, who: Option<&str>) -> Answer {
        self.call(Method::GET, path, who, None)
    }

    /// A blob pushed by root; its descriptor.
    fn blob(&self, repo: &str, media_type: &str, bytes: &[u8]) -> Value {
        let digest = Digest::of(Algorithm::Sha256, bytes);
        let path = format!("/v2/{repo}/blobs/uploads/?digest={digest}");
        let answer = self.call(
            Method::POST,
            &path,
            Some("root"),
            Some(("application/octet-stream", bytes.to_vec())),
        );
        assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.json);
        json!({ "mediaType": media_type, "digest": digest.as_str(), "size": bytes.len() })
    }

    /// A manifest pushed by root under `reference`; its descriptor.
    fn manifest(&self, repo: &str, reference: &str, manifest: &Value) -> Value {
        let bytes = serde_json::to_vec(manifest).unwrap();
        let media_type = manifest["mediaType"].as_str().unwrap();
        let path = format!("/v2/{repo}/manifests/{reference}");
        let answer = self.call(Method::PUT, &path, Some("root"), Some((media_type, bytes.clone())));
        assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.json);
        json!({ "mediaType": media_type, "digest": Digest::of(Algorithm::Sha256, &bytes).as_str(), "size": bytes.len() })
    }

    /// An image of one layer for `platform` (`os`, `architecture`[, `variant`]).
    fn image(&self, repo: &str, reference: &str, platform: &Value, layer: &[u8]) -> Value {
        let mut config = platform.clone();
        config["rootfs"] = json!({ "type": "layers", "diff_ids": [] });
        let config = self.blob(repo, IMAGE_CONFIG, &serde_json::to_vec(&config).unwrap());
        let layer = self.blob(repo, "application/vnd.oci.image.layer.v1.tar", layer);
        let manifest = json!({ "schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [layer] });
        let mut descriptor = self.manifest(repo, reference, &manifest);
        descriptor["platform"] = platform.clone();
        descriptor
    }
}

fn size_of(descriptor: &Value) -> u64 {
    descriptor["size"].as_u64().unwrap()
}

#[test]
fn tags_are_summarised_with_sizes_platforms_times_and_signatures() {
    let fixture = Fixture::new();
    let amd = fixture.image(
        "team/app",
        "amd",
        &json!({"os": "linux", "architecture": "amd64"}),
        b"amd64 layer",
    );
    let arm = fixture.image(
        "team/app",
        "arm",
        &json!({"os": "linux", "architecture": "arm64", "variant": "v8"}),
        b"arm64 layer, longer",
    );
    let index = json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [amd, arm] });
    let index = fixture.manifest("team/app", "v1", &index);
    // A signature in cosign's tag form: `sha256-<hex>.sig`.
    let signature_tag = index["digest"].as_str().unwrap().replace(':', "-") + ".sig";
    let payload = fixture.blob("team/app", "application/vnd.dev.cosign.simplesigning.v1+json", b"{}");
    let empty = fixture.blob("team/app", "application/vnd.oci.empty.v1+json", b"{}");
    let signature = json!({ "schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": empty, "layers": [payload] });
    fixture.manifest("team/app", &signature_tag, &signature);

    let answer = fixture.get("/_pier/repositories/team/app/tags", Some("root"));
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.json);
    assert_eq!(answer.headers["cache-control"], "no-store");
    assert_eq!(answer.json["actions"], json!(["pull", "push", "delete"]));
    let tags = answer.json["tags"].as_array().unwrap();
    let names: Vec<&str> = tags.iter().map(|t| t["tag"].as_str().unwrap()).collect();
    assert_eq!(names, ["amd", "arm", signature_tag.as_str(), "v1"]);
    let v1 = &tags[3];
    let image_size = |descriptor: &Value| {
        // The image manifest's config and layer, as pushed above.
        let answer = fixture.get(
            &format!("/v2/team/app/manifests/{}", descriptor["digest"].as_str().unwrap()),
            Some("root"),
        );
        size_of(&answer.json["config"]) + size_of(&answer.json["layers"][0])
    };
    assert_eq!(v1["media_type"], OCI_INDEX);
    assert_eq!(v1["digest"], index["digest"]);
    assert_eq!(
        v1["platforms"],
        json!([
            { "platform": "linux/amd64", "digest": amd["digest"], "size": image_size(&amd) },
            { "platform": "linux/arm64/v8", "digest": arm["digest"], "size": image_size(&arm) },
        ])
    );
    assert_eq!(v1["size"], image_size(&amd) + image_size(&arm));
    assert_eq!(v1["signed"], true);
    assert_eq!(v1["pushed"], rfc3339(NOW_MS / 1000));
    assert_eq!(v1["pushed_ms"], NOW_MS);
    assert_eq!(v1["last_pull"], Value::Null);
    // An image: its platform from its config; an artifact: none; neither signed.
    assert_eq!(tags[0]["platforms"][0]["platform"], "linux/amd64");
    assert_eq!(tags[0]["size"], image_size(&amd));
    assert_eq!(tags[0]["signed"], false);
    assert_eq!(tags[2]["platforms"], json!([]));

    let alice = fixture.get("/_pier/repositories/team/app/tags?n=1", Some("alice"));
    assert_eq!(alice.json["actions"], json!(["pull"]));
    assert_eq!(alice.json["tags"].as_array().unwrap().len(), 1);
    assert_eq!(
        alice.headers["link"],
        "</_pier/repositories/team/app/tags?n=1&last=amd>; rel=\"next\""
    );
}

#[test]
fn each_caller_sees_what_it_may_pull_and_is_refused_as_the_distribution_api_refuses() {
    let fixture = Fixture::new();
    let platform = json!({"os": "linux", "architecture": "amd64"});
    for repo in ["team/app", "team/api", "ci/tool", "ci/app"] {
        fixture.image(repo, "v1", &platform, repo.as_bytes());
    }
    let listed = |who: Option<&str>, query: &str| fixture.get(&format!("/_pier/repositories{query}"), who);
    assert_eq!(listed(None, "").json["repositories"], json!(["ci/app", "ci/tool"]));
    assert_eq!(
        listed(Some("alice"), "").json["repositories"],
        json!(["ci/app", "ci/tool", "team/api", "team/app"])
    );
    let filtered = listed(Some("root"), "?q=app&n=1");
    assert_eq!(filtered.json["repositories"], json!(["ci/app"]));
    assert_eq!(
        filtered.headers["link"],
        "</_pier/repositories?n=1&last=ci%2Fapp&q=app>; rel=\"next\""
    );
    assert_eq!(
        listed(Some("root"), "?q=app&n=1&last=ci/app").json["repositories"],
        json!(["team/app"])
    );
    assert_eq!(listed(Some("root"), "?n=x").status, StatusCode::BAD_REQUEST);

    for (who, repo) in [(None, "team/app"), (Some("alice"), "team/nothing")] {
        let ours = fixture.get(&format!("/_pier/repositories/{repo}/tags"), who);
        let theirs = fixture.get(&format!("/v2/{repo}/tags/list"), who);
        assert_eq!(
            (ours.status, &ours.json),
            (theirs.status, &theirs.json),
            "{who:?} on {repo}"
        );
        assert_eq!(
            ours.headers.get("www-authenticate"),
            theirs.headers.get("www-authenticate")
        );
    }
    assert_eq!(
        fixture.get("/_pier/repositories/team/app/tags", None).status,
        StatusCode::UNAUTHORIZED
    );
    let unknown = fixture.get("/_pier/repositories/team/nothing/tags", Some("root"));
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.json["errors"][0]["code"], "NAME_UNKNOWN");
    let anonymous = fixture.get("/_pier/repositories/ci/tool/tags", None);
    assert_eq!(anonymous.json["actions"], json!(["pull"]));
    let wrong_method = fixture.call(Method::DELETE, "/_pier/repositories/ci/tool/tags", Some("root"), None);
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
}
