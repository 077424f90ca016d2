//! Shared by the GC tests: a clock the test moves, pushes of blobs and
//! manifests of every kind, and the invariant every collection must keep.

#![allow(dead_code)] // each test crate uses its own subset

use std::sync::Arc;

use bytes::Bytes;
use pier_core::body::full_body;
use pier_core::digest::{Algorithm, Digest};
use pier_core::gc::{Gc, GcConfig, Report};
use pier_core::manifest;
use pier_core::names::{RepoName, Tag};
use pier_core::records::BlobRecord;
use pier_core::records::Reference;
use pier_core::registry::RegistryOptions;
use pier_core::store::{list_all, read_small, Store};
use pier_core::Registry;
use serde_json::{json, Value};

pub const HOUR_MS: u64 = 3_600_000;
pub const DAY_MS: u64 = 24 * HOUR_MS;

pub use pier_core::testing::TestEnv;

/// A test host at the default time.
pub fn test_env() -> Arc<TestEnv> {
    Arc::new(TestEnv::default())
}

pub fn repo(name: &str) -> RepoName {
    RepoName::parse(name).unwrap()
}

pub fn tag(name: &str) -> Reference {
    Reference::Tag(Tag::parse(name).unwrap())
}

pub fn registry(
    store: Arc<dyn Store>,
    env: Arc<TestEnv>,
    retention: Vec<pier_core::retention::RetentionRule>,
) -> Registry {
    let options = RegistryOptions {
        retention,
        ..RegistryOptions::default()
    };
    Registry::new(store, env, options)
}

pub fn config(rules: Vec<pier_core::retention::RetentionRule>) -> GcConfig {
    GcConfig {
        grace_secs: 3600,
        upload_expiry_secs: 24 * 3600,
        page_size: 3,
        rules,
    }
}

pub async fn collect(store: Arc<dyn Store>, env: Arc<TestEnv>, config: GcConfig, dry_run: bool) -> Report {
    Gc::new(store, env, config, dry_run).run_to_end().await.unwrap()
}

pub async fn push_blob(registry: &Registry, repo: &RepoName, content: &[u8]) -> Value {
    let digest = Digest::of(Algorithm::Sha256, content);
    registry
        .upload_whole(repo, &digest, full_body(content.to_vec()))
        .await
        .unwrap();
    json!({ "mediaType": "application/octet-stream", "digest": digest.as_str(), "size": content.len() })
}

pub async fn push_manifest(registry: &Registry, repo: &RepoName, reference: Reference, body: &Value) -> Value {
    let bytes = serde_json::to_vec(body).unwrap();
    let media_type = body["mediaType"].as_str().unwrap().to_string();
    let pushed = registry
        .put_manifest(repo, &reference, Some(&media_type), Bytes::from(bytes.clone()), &[])
        .await
        .unwrap();
    json!({ "mediaType": media_type, "digest": pushed.digest.as_str(), "size": bytes.len() })
}

pub fn image(config: &Value, layers: &[&Value]) -> Value {
    json!({
        "schemaVersion": 2,
        "mediaType": manifest::OCI_MANIFEST,
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config["digest"], "size": config["size"] },
        "layers": layers,
    })
}

pub fn docker_image(config: &Value, layers: &[&Value]) -> Value {
    json!({
        "schemaVersion": 2,
        "mediaType": manifest::DOCKER_MANIFEST,
        "config": { "mediaType": "application/vnd.docker.container.image.v1+json", "digest": config["digest"], "size": config["size"] },
        "layers": layers,
    })
}

pub fn index(media_type: &str, children: &[&Value]) -> Value {
    json!({ "schemaVersion": 2, "mediaType": media_type, "manifests": children })
}

pub fn artifact(subject: &Value, blob: &Value) -> Value {
    json!({
        "schemaVersion": 2,
        "mediaType": manifest::OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom",
        "config": { "mediaType": "application/vnd.oci.empty.v1+json", "digest": blob["digest"], "size": blob["size"] },
        "layers": [blob],
        "subject": subject,
    })
}

pub fn digest_of(descriptor: &Value) -> Digest {
    Digest::parse(descriptor["digest"].as_str().unwrap()).unwrap()
}

/// Whether the blob's record and its bytes are both still stored.
pub async fn blob_stored(store: &dyn Store, descriptor: &Value) -> bool {
    let key = format!("blobs/sha256/{}", digest_of(descriptor).hex());
    match read_small(store, &key).await.unwrap() {
        None => false,
        Some((bytes, _)) => {
            let record: BlobRecord = serde_json::from_slice(&bytes).unwrap();
            store.head(&record.object).await.unwrap().is_some()
        }
    }
}

pub async fn manifest_stored(store: &dyn Store, repo: &RepoName, descriptor: &Value) -> bool {
    let key = format!("repos/{repo}/_manifests/sha256/{}", digest_of(descriptor).hex());
    store.head(&key).await.unwrap().is_some()
}

/// The invariant: every stored manifest's blobs and children are stored.
/// Returns the number of manifests checked.
pub async fn assert_every_manifest_complete(store: &dyn Store) -> usize {
    let mut checked = 0;
    for key in list_all(store, "repos/").await.unwrap() {
        let Some((prefix, _)) = key.split_once("/_manifests/") else {
            continue;
        };
        let (bytes, _) = read_small(store, &key).await.unwrap().unwrap();
        let parsed = manifest::parse(&bytes, None).unwrap();
        for blob in &parsed.blobs {
            let descriptor = json!({ "digest": blob.digest.as_str() });
            assert!(
                blob_stored(store, &descriptor).await,
                "{key} references missing blob {}",
                blob.digest
            );
        }
        for child in &parsed.children {
            let child_key = format!(
                "{prefix}/_manifests/{}/{}",
                child.digest.algorithm().name(),
                child.digest.hex()
            );
            assert!(
                store.head(&child_key).await.unwrap().is_some(),
                "{key} references missing {child_key}"
            );
        }
        checked += 1;
    }
    checked
}
