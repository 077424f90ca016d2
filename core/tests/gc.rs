//! Garbage collection over the in-memory store: what marking keeps for every
//! kind of manifest, what sweeping frees, each retention rule, dry runs,
//! upload expiry and resuming an interrupted collection.

mod gc_support;

use std::sync::Arc;

use futures::executor::block_on;
use gc_support::*;
use pier_core::error::ErrorCode;
use pier_core::gc::{Gc, GcConfig};
use pier_core::manifest::{DOCKER_LIST, OCI_INDEX};
use pier_core::records::Reference;
use pier_core::retention::RetentionRule;
use pier_core::store::memory::MemoryStore;
use pier_core::store::{list_all, Store};
use pier_core::upload::{load_state, SavedState};
use serde_json::Value;

fn rule(namespace: &str) -> RetentionRule {
    RetentionRule {
        namespace: namespace.into(),
        tags: "*".into(),
        keep_last: None,
        expire_after_days: None,
        unpulled_for_days: None,
        untagged_expire_after_days: None,
        protect: Vec::new(),
        immutable_tags: false,
    }
}

/// Untagged manifests expire at once: only what tags reach survives, so each
/// marking test shows the path from the tag to the blob is followed.
fn only_tagged() -> Vec<RetentionRule> {
    vec![RetentionRule {
        untagged_expire_after_days: Some(0.0),
        ..rule("**")
    }]
}

struct World {
    store: Arc<MemoryStore>,
    env: Arc<TestEnv>,
    registry: pier_core::Registry,
}

fn world(rules: Vec<RetentionRule>) -> World {
    let store = Arc::new(MemoryStore::new(8));
    let env = test_env();
    let registry = registry(store.clone(), env.clone(), rules);
    World { store, env, registry }
}

impl World {
    async fn blob(&self, repo: &str, content: &str) -> Value {
        push_blob(&self.registry, &gc_support::repo(repo), content.as_bytes()).await
    }

    async fn manifest(&self, repo: &str, reference: Reference, body: &Value) -> Value {
        push_manifest(&self.registry, &gc_support::repo(repo), reference, body).await
    }

    /// Moves past the grace window and collects with `rules`.
    async fn collect_later(&self, rules: Vec<RetentionRule>, dry_run: bool) -> pier_core::gc::Report {
        self.env.advance_millis(2 * HOUR_MS);
        collect(self.store.clone(), self.env.clone(), config(rules), dry_run).await
    }

    async fn stored(&self, descriptor: &Value) -> bool {
        blob_stored(self.store.as_ref(), descriptor).await
    }
}

/// Pushes an unreferenced blob too, so that each marking test also shows the
/// collection did delete something.
async fn assert_keeps_only(w: &World, kept: &[&Value]) {
    let stray = w.blob("app", "stray").await;
    let report = w.collect_later(only_tagged(), false).await;
    for descriptor in kept {
        assert!(w.stored(descriptor).await, "{descriptor} was collected");
    }
    assert!(!w.stored(&stray).await, "the unreferenced blob survived");
    assert!(report.blobs_deleted >= 1);
    assert!(assert_every_manifest_complete(w.store.as_ref()).await > 0);
}

#[test]
fn an_image_keeps_its_config_and_layers() {
    block_on(async {
        let w = world(Vec::new());
        let (config, layer) = (w.blob("app", "config").await, w.blob("app", "layer").await);
        w.manifest("app", tag("v1"), &image(&config, &[&layer])).await;
        assert_keeps_only(&w, &[&config, &layer]).await;
    });
}

#[test]
fn an_index_keeps_its_untagged_children() {
    block_on(async {
        let w = world(Vec::new());
        let (config, layer) = (w.blob("app", "config").await, w.blob("app", "layer").await);
        let child = w
            .manifest(
                "app",
                Reference::Digest(digest_of(&json_image_digest(&config, &layer))),
                &image(&config, &[&layer]),
            )
            .await;
        w.manifest("app", tag("multi"), &index(OCI_INDEX, &[&child])).await;
        assert_keeps_only(&w, &[&config, &layer]).await;
        assert!(manifest_stored(w.store.as_ref(), &repo("app"), &child).await);
    });
}

/// The descriptor of `image(config, [layer])`, to push it by digest.
fn json_image_digest(config: &Value, layer: &Value) -> Value {
    let bytes = serde_json::to_vec(&image(config, &[layer])).unwrap();
    let digest = pier_core::digest::Digest::of(pier_core::digest::Algorithm::Sha256, &bytes);
    serde_json::json!({ "digest": digest.as_str() })
}

#[test]
fn a_nested_index_keeps_the_whole_tree() {
    block_on(async {
        let w = world(Vec::new());
        let (config, layer) = (w.blob("app", "config").await, w.blob("app", "layer").await);
        let leaf = w
            .manifest(
                "app",
                Reference::Digest(digest_of(&json_image_digest(&config, &layer))),
                &image(&config, &[&layer]),
            )
            .await;
        let inner_body = index(OCI_INDEX, &[&leaf]);
        let inner_digest = digest_of(
            &serde_json::json!({ "digest": pier_core::digest::Digest::of(pier_core::digest::Algorithm::Sha256, &serde_json::to_vec(&inner_body).unwrap()).as_str() }),
        );
        let inner = w.manifest("app", Reference::Digest(inner_digest), &inner_body).await;
        w.manifest("app", tag("outer"), &index(OCI_INDEX, &[&inner])).await;
        assert_keeps_only(&w, &[&config, &layer]).await;
        assert!(manifest_stored(w.store.as_ref(), &repo("app"), &inner).await);
        assert!(manifest_stored(w.store.as_ref(), &repo("app"), &leaf).await);
    });
}

#[test]
fn an_artifact_is_kept_by_its_subject() {
    block_on(async {
        let w = world(Vec::new());
        let (config, layer) = (w.blob("app", "config").await, w.blob("app", "layer").await);
        let subject = w.manifest("app", tag("v1"), &image(&config, &[&layer])).await;
        let sbom = w.blob("app", "sbom").await;
        let body = artifact(&subject, &sbom);
        let digest = pier_core::digest::Digest::of(
            pier_core::digest::Algorithm::Sha256,
            &serde_json::to_vec(&body).unwrap(),
        );
        w.manifest("app", Reference::Digest(digest), &body).await;
        assert_keeps_only(&w, &[&config, &layer, &sbom]).await;
    });
}

#[test]
fn an_artifact_whose_subject_goes_goes_too() {
    block_on(async {
        let w = world(Vec::new());
        let (config, layer) = (w.blob("app", "config").await, w.blob("app", "layer").await);
        let subject = w.manifest("app", tag("v1"), &image(&config, &[&layer])).await;
        let sbom = w.blob("app", "sbom").await;
        let body = artifact(&subject, &sbom);
        let digest = pier_core::digest::Digest::of(
            pier_core::digest::Algorithm::Sha256,
            &serde_json::to_vec(&body).unwrap(),
        );
        w.manifest("app", Reference::Digest(digest.clone()), &body).await;
        w.registry
            .delete_manifest(&repo("app"), &Reference::Digest(digest_of(&subject)))
            .await
            .unwrap();
        let report = w.collect_later(only_tagged(), false).await;
        assert!(!w.stored(&sbom).await && !w.stored(&config).await);
        assert_eq!(report.manifests_deleted, 1);
        let referrers = list_all(w.store.as_ref(), "repos/app/_referrers/").await.unwrap();
        assert!(referrers.is_empty(), "{referrers:?}");
    });
}

#[test]
fn a_docker_list_keeps_its_images() {
    block_on(async {
        let w = world(Vec::new());
        let (config, layer) = (w.blob("app", "config").await, w.blob("app", "layer").await);
        let body = docker_image(&config, &[&layer]);
        let digest = pier_core::digest::Digest::of(
            pier_core::digest::Algorithm::Sha256,
            &serde_json::to_vec(&body).unwrap(),
        );
        let child = w.manifest("app", Reference::Digest(digest), &body).await;
        w.manifest("app", tag("list"), &index(DOCKER_LIST, &[&child])).await;
        assert_keeps_only(&w, &[&config, &layer]).await;
    });
}

#[test]
fn deleting_a_manifest_frees_what_no_one_else_uses() {
    block_on(async {
        let w = world(Vec::new());
        let base = w.blob("app", &"base layer ".repeat(100)).await;
        let (config_a, only_a) = (
            w.blob("app", "config a").await,
            w.blob("app", &"only in a ".repeat(300)).await,
        );
        let config_b = w.blob("other", "config b").await;
        w.registry
            .mount_blob(&repo("other"), &digest_of(&base), Some(&repo("app")))
            .await
            .unwrap();
        let a = w.manifest("app", tag("a"), &image(&config_a, &[&base, &only_a])).await;
        w.manifest("other", tag("b"), &image(&config_b, &[&base])).await;

        let before = w.store.total_bytes();
        let first = w.collect_later(Vec::new(), false).await;
        assert_eq!(first.blobs_deleted, 0, "nothing is unreferenced yet");
        w.registry
            .delete_manifest(&repo("app"), &Reference::Digest(digest_of(&a)))
            .await
            .unwrap();
        let report = w.collect_later(Vec::new(), false).await;

        assert_eq!(report.blobs_deleted, 2);
        assert_eq!(report.blob_bytes_freed, 3000 + "config a".len() as u64);
        assert!(!w.stored(&only_a).await && !w.stored(&config_a).await);
        assert!(w.stored(&base).await && w.stored(&config_b).await);
        let freed = before - w.store.total_bytes();
        assert!(freed >= report.blob_bytes_freed, "store shrank by {freed} bytes");
        assert_eq!(report.links_deleted, 2, "app's links to the deleted blobs go too");
        assert!(w.registry.blob(&repo("app"), &digest_of(&base)).await.is_ok());
    });
}

#[test]
fn the_grace_window_keeps_blobs_whose_manifest_has_not_arrived() {
    block_on(async {
        let w = world(Vec::new());
        let old = w.blob("app", "old").await;
        w.env.advance_millis(2 * HOUR_MS);
        let fresh = w.blob("app", "fresh").await;
        let report = collect(w.store.clone(), w.env.clone(), config(Vec::new()), false).await;
        assert!(!w.stored(&old).await);
        assert!(w.stored(&fresh).await);
        assert_eq!(report.blobs_in_grace, 1);
    });
}

#[test]
fn reusing_an_old_blob_restarts_its_grace_window() {
    block_on(async {
        let w = world(Vec::new());
        let old = w.blob("app", "old").await;
        w.env.advance_millis(2 * HOUR_MS);
        w.blob("other", "old").await; // uploaded again: deduplicated and touched
        let report = collect(w.store.clone(), w.env.clone(), config(Vec::new()), false).await;
        assert!(w.stored(&old).await);
        assert_eq!(report.blobs_in_grace, 1);
    });
}

/// What a pull of `descriptor` from `repo` through the registry returns.
async fn pull(w: &World, name: &str, descriptor: &Value) -> Result<Vec<u8>, ErrorCode> {
    let digest = digest_of(descriptor);
    let record = w.registry.blob(&repo(name), &digest).await.map_err(|e| e.code)?;
    let found = w.registry.open_blob(&digest, &record, None).await.map_err(|e| e.code)?;
    Ok(found.bytes().await.unwrap().to_vec())
}

/// The registry caches blob records, but a record is not immutable: a
/// collection (run by another instance here, so the cache does not see it)
/// deletes it, and the next upload of the same bytes writes a new one
/// pointing at new data. A pull must then find the new bytes at once, not
/// the stale record's deleted data (the 404 the GC stress test found).
#[test]
fn a_collected_blob_pushed_again_pulls_at_once_through_the_cache() {
    block_on(async {
        let w = world(Vec::new());
        // Larger than the cache keeps, so the bytes come from the store.
        let content = "x".repeat(100_000);
        let x = w.blob("app", &content).await;
        w.env.advance_millis(2 * HOUR_MS);
        assert!(pull(&w, "app", &x).await.is_ok()); // the record is now cached
        collect(w.store.clone(), w.env.clone(), config(Vec::new()), false).await;
        assert!(!w.stored(&x).await);
        w.blob("app", &content).await;
        assert_eq!(pull(&w, "app", &x).await.unwrap(), content.as_bytes());
    });
}

/// A HEAD answered from a stale cached record makes a client skip an upload
/// the collection has just undone; its manifest is refused (the check reads
/// the store), and the refusal drops the stale record, so the client's next
/// HEAD says the blob is missing and it uploads it again.
#[test]
fn a_manifest_refused_for_a_collected_blob_clears_the_stale_record() {
    block_on(async {
        let w = world(Vec::new());
        let config_blob = w.blob("app", "config").await;
        let x = w.blob("app", "x").await;
        w.env.advance_millis(2 * HOUR_MS);
        assert!(pull(&w, "app", &x).await.is_ok()); // now cached
        let mut gc = Gc::new(w.store.clone(), w.env.clone(), config(Vec::new()), false);
        // Stop after the sweep, before the links of deleted blobs go.
        while gc.step().await.unwrap().phase != pier_core::gc::Phase::Links {}
        assert!(!w.stored(&x).await);
        let pushed = w
            .registry
            .put_manifest(
                &repo("app"),
                &tag("v1"),
                Some(pier_core::manifest::OCI_MANIFEST),
                serde_json::to_vec(&image(&config_blob, &[&x])).unwrap().into(),
                &[],
            )
            .await;
        assert_eq!(pushed.err().map(|e| e.code), Some(ErrorCode::ManifestBlobUnknown));
        assert_eq!(pull(&w, "app", &x).await.unwrap_err(), ErrorCode::BlobUnknown);
    });
}

async fn tags_of(w: &World, name: &str) -> Vec<String> {
    w.registry
        .tags(&repo(name), pier_core::registry::MAX_PAGE, None)
        .await
        .unwrap()
        .names
}

/// Pushes image `i` tagged `name`, an hour apart each.
async fn push_tagged(w: &World, repo: &str, names: &[&str]) -> Vec<Value> {
    let mut descriptors = Vec::new();
    for name in names {
        let config = w.blob(repo, &format!("config {name}")).await;
        descriptors.push(w.manifest(repo, tag(name), &image(&config, &[])).await);
        w.env.advance_millis(HOUR_MS);
    }
    descriptors
}

#[test]
fn keep_last_keeps_the_newest_matching_tags() {
    block_on(async {
        let w = world(Vec::new());
        push_tagged(&w, "ci/app", &["b1", "b2", "b3", "b4", "latest"]).await;
        let rules = vec![RetentionRule {
            tags: "b*".into(),
            keep_last: Some(2),
            ..rule("ci/**")
        }];
        let report = w.collect_later(rules, false).await;
        assert_eq!(tags_of(&w, "ci/app").await, ["b3", "b4", "latest"]);
        assert_eq!(report.tags_deleted, 2);
        assert_eq!(
            report.blobs_deleted, 0,
            "untagged manifests are kept without an untagged rule"
        );
    });
}

#[test]
fn expire_after_days_deletes_old_matching_tags() {
    block_on(async {
        let w = world(Vec::new());
        push_tagged(&w, "ci/app", &["pr-1", "stable"]).await;
        w.env.advance_millis(3 * DAY_MS);
        push_tagged(&w, "ci/app", &["pr-2"]).await;
        let rules = vec![RetentionRule {
            tags: "pr-*".into(),
            expire_after_days: Some(2.0),
            unpulled_for_days: None,
            ..rule("ci/**")
        }];
        w.collect_later(rules, false).await;
        assert_eq!(tags_of(&w, "ci/app").await, ["pr-2", "stable"]);
    });
}

#[test]
fn untagged_manifests_expire_after_their_days() {
    block_on(async {
        let w = world(Vec::new());
        let old = push_tagged(&w, "ci/app", &["old"]).await.remove(0);
        w.registry.delete_manifest(&repo("ci/app"), &tag("old")).await.unwrap();
        w.env.advance_millis(2 * DAY_MS);
        let young = push_tagged(&w, "ci/app", &["young"]).await.remove(0);
        w.registry
            .delete_manifest(&repo("ci/app"), &tag("young"))
            .await
            .unwrap();
        let rules = vec![RetentionRule {
            untagged_expire_after_days: Some(1.0),
            ..rule("ci/**")
        }];
        let report = w.collect_later(rules, false).await;
        assert!(!manifest_stored(w.store.as_ref(), &repo("ci/app"), &old).await);
        assert!(manifest_stored(w.store.as_ref(), &repo("ci/app"), &young).await);
        assert_eq!((report.manifests_deleted, report.blobs_deleted), (1, 1));
    });
}

#[test]
fn protected_tags_survive_every_rule() {
    block_on(async {
        let w = world(Vec::new());
        push_tagged(&w, "prod/app", &["v1", "v2", "nightly", "v3"]).await;
        let rules = vec![RetentionRule {
            keep_last: Some(1),
            protect: vec!["v*".into()],
            ..rule("prod/**")
        }];
        w.collect_later(rules, false).await;
        assert_eq!(tags_of(&w, "prod/app").await, ["v1", "v2", "v3"]);
    });
}

#[test]
fn a_dry_run_reports_and_removes_nothing() {
    block_on(async {
        let w = world(Vec::new());
        push_tagged(&w, "ci/app", &["a", "b", "c"]).await;
        let stray = w.blob("ci/app", &"x".repeat(50)).await;
        let rules = vec![RetentionRule {
            keep_last: Some(1),
            untagged_expire_after_days: Some(0.0),
            ..rule("ci/**")
        }];
        let keys_before = list_all(w.store.as_ref(), "").await.unwrap();
        let report = w.collect_later(rules.clone(), true).await;
        assert!(report.dry_run);
        assert_eq!(
            (report.tags_deleted, report.manifests_deleted, report.blobs_deleted),
            (2, 2, 3)
        );
        assert_eq!(report.blob_bytes_freed, 50 + 2 * "config a".len() as u64);
        let keys_after: Vec<String> = list_all(w.store.as_ref(), "")
            .await
            .unwrap()
            .into_iter()
            .filter(|k| k != "gc/last-report")
            .collect();
        assert_eq!(keys_before, keys_after, "a dry run changed the store");
        let real = collect(w.store.clone(), w.env.clone(), config(rules), false).await;
        assert_eq!(
            (real.tags_deleted, real.manifests_deleted, real.blobs_deleted),
            (2, 2, 3)
        );
        assert!(!w.stored(&stray).await);
    });
}

#[test]
fn immutable_tags_refuse_to_move_but_accept_the_same_push() {
    block_on(async {
        let rules = vec![RetentionRule {
            immutable_tags: true,
            ..rule("prod/**")
        }];
        let w = world(rules);
        let config_1 = w.blob("prod/app", "one").await;
        let config_2 = w.blob("prod/app", "two").await;
        let v1 = w.manifest("prod/app", tag("v1"), &image(&config_1, &[])).await;
        w.manifest("prod/app", tag("v1"), &image(&config_1, &[])).await;
        let body = serde_json::to_vec(&image(&config_2, &[])).unwrap();
        let err = w
            .registry
            .put_manifest(
                &repo("prod/app"),
                &tag("v1"),
                Some(pier_core::manifest::OCI_MANIFEST),
                body.clone().into(),
                &[],
            )
            .await
            .err()
            .expect("moving an immutable tag is refused");
        assert_eq!((err.code, err.status.as_u16()), (ErrorCode::Denied, 409));
        // Nor does deleting it first: by tag or by digest, both refused.
        for reference in [tag("v1"), Reference::Digest(digest_of(&v1))] {
            let err = w.registry.delete_manifest(&repo("prod/app"), &reference).await.err();
            let err = err.expect("untagging an immutable tag is refused");
            assert_eq!((err.code, err.status.as_u16()), (ErrorCode::Denied, 409));
        }
        // Retention rules still retire it.
        let retire = RetentionRule {
            expire_after_days: Some(0.0),
            unpulled_for_days: None,
            immutable_tags: true,
            ..rule("prod/**")
        };
        w.collect_later(vec![retire], false).await;
        assert!(w
            .registry
            .tags(&repo("prod/app"), 10, None)
            .await
            .unwrap()
            .names
            .is_empty());
        // Elsewhere tags move as usual.
        let config_3 = w.blob("dev/app", "one").await;
        w.manifest("dev/app", tag("v1"), &image(&config_3, &[])).await;
        w.manifest("dev/app", tag("v1"), &image(&w.blob("dev/app", "two").await, &[]))
            .await;
    });
}

#[test]
fn tag_records_of_older_builds_still_resolve() {
    block_on(async {
        let w = world(Vec::new());
        let config = w.blob("app", "config").await;
        let pushed = w.manifest("app", tag("v1"), &image(&config, &[])).await;
        let plain = pushed["digest"].as_str().unwrap().to_string();
        w.store
            .put(
                "repos/app/_tags/old",
                plain.into(),
                pier_core::store::PutMode::Overwrite,
            )
            .await
            .unwrap();
        let found = w.registry.manifest(&repo("app"), &tag("old")).await.unwrap();
        assert_eq!(found.digest, digest_of(&pushed));
        w.collect_later(only_tagged(), false).await;
        assert!(w.stored(&config).await);
    });
}

/// A DELETE by digest finds the manifest's tags through the hints written
/// when tagging: a tag that moved on keeps its tag (its old hint is stale),
/// and tags written by an older build (no hints, no marker) are found by
/// one read of every tag, after which the repository is marked complete.
#[test]
fn delete_by_digest_finds_tags_by_hints_and_old_tags_once() {
    block_on(async {
        let w = world(Vec::new());
        let app = repo("app");
        let config = w.blob("app", "config").await;
        let first = w.manifest("app", tag("a"), &image(&config, &[])).await;
        let second = w
            .manifest("app", tag("b"), &image(&config, &[&w.blob("app", "x").await]))
            .await;
        // `b` moves from the second manifest to the first.
        w.manifest("app", tag("b"), &image(&config, &[])).await;
        let by_digest = |d: &Value| Reference::Digest(digest_of(d));
        w.registry.delete_manifest(&app, &by_digest(&second)).await.unwrap();
        assert_eq!(w.registry.tags(&app, 10, None).await.unwrap().names, ["a", "b"]);
        // A tag as an older build wrote it: no hint, and no marker.
        let plain = first["digest"].as_str().unwrap().to_string();
        let put = pier_core::store::PutMode::Overwrite;
        w.store.put("repos/app/_tags/old", plain.into(), put).await.unwrap();
        w.store.delete("repos/app/_tagged-all").await.unwrap();
        w.registry.delete_manifest(&app, &by_digest(&first)).await.unwrap();
        assert!(w.registry.tags(&app, 10, None).await.unwrap().names.is_empty());
        assert!(w.store.head("repos/app/_tagged-all").await.unwrap().is_some());
        assert!(list_all(w.store.as_ref(), "repos/app/_tagged/")
            .await
            .unwrap()
            .is_empty());
    });
}

#[test]
fn idle_uploads_expire_with_their_multipart_writes() {
    block_on(async {
        let w = world(Vec::new());
        let app = repo("app");
        let idle = w.registry.start_upload(&app).await.unwrap().id;
        // 20 bytes with 8-byte parts: two parts written, a tail left.
        w.registry
            .upload_chunk(&app, &idle, None, pier_core::body::full_body(vec![7u8; 20]))
            .await
            .unwrap();
        let SavedState::Saved(_, state) = load_state(w.store.as_ref(), &idle).await.unwrap() else {
            panic!("the idle upload has a state");
        };
        let multipart = state.multipart.clone().expect("a multipart write was started");
        w.env.advance_millis(25 * HOUR_MS);
        let active = w.registry.start_upload(&app).await.unwrap().id;

        let report = collect(w.store.clone(), w.env.clone(), config(Vec::new()), false).await;
        assert_eq!(report.uploads_expired, 1);
        assert!(list_all(w.store.as_ref(), &format!("uploads/{idle}/"))
            .await
            .unwrap()
            .is_empty());
        let aborted = w
            .store
            .put_part(&format!("data/{idle}"), &multipart, 3, bytes::Bytes::from_static(b"x"))
            .await;
        assert!(aborted.is_err(), "the multipart write was not aborted");
        assert!(w.registry.upload_status(&app, &active).await.is_ok());
    });
}

/// An ended session's states stay until upload expiry, its newest a closed
/// marker, so that no request holding an older view can bring it back; the
/// collector removes them once the session ended that long ago (and its id
/// is older than a day, see `upload_id`), and a marker older builds wrote
/// (no time) at once.
#[test]
fn ended_sessions_keep_their_states_until_expiry() {
    block_on(async {
        let w = world(Vec::new());
        let app = repo("app");
        let cancelled = w.registry.start_upload(&app).await.unwrap().id;
        w.registry
            .upload_chunk(&app, &cancelled, None, pier_core::body::full_body(vec![7u8; 20]))
            .await
            .unwrap();
        w.registry.cancel_upload(&app, &cancelled).await.unwrap();
        let states = format!("uploads/{cancelled}/s/");
        let kept = list_all(w.store.as_ref(), &format!("uploads/{cancelled}/"))
            .await
            .unwrap();
        assert!(
            kept.len() >= 2 && kept.iter().all(|key| key.starts_with(&states)),
            "{kept:?}"
        );
        // An id of an older build, which has no time in it.
        let older = "0123456789abcdef0123456789abcdef";
        let marker = pier_core::layout::upload_state(older, 1);
        let put = pier_core::store::PutMode::Create;
        w.store.put(&marker, "closed".into(), put).await.unwrap();

        w.env.advance_millis(23 * HOUR_MS);
        let report = collect(w.store.clone(), w.env.clone(), config(Vec::new()), false).await;
        assert_eq!(report.uploads_expired, 0, "{report:?}");
        let left = list_all(w.store.as_ref(), &states).await.unwrap();
        assert_eq!(left, kept, "states kept before expiry");
        assert!(list_all(w.store.as_ref(), &format!("uploads/{older}/"))
            .await
            .unwrap()
            .is_empty());
        let status = w.registry.upload_status(&app, &cancelled).await;
        assert_eq!(status.err().map(|e| e.code), Some(ErrorCode::BlobUploadUnknown));

        w.env.advance_millis(2 * HOUR_MS);
        collect(w.store.clone(), w.env.clone(), config(Vec::new()), false).await;
        assert!(list_all(w.store.as_ref(), "uploads/").await.unwrap().is_empty());
        // Its id is too old now to be taken for a session nothing was sent to.
        let chunk = pier_core::body::full_body(vec![7u8; 20]);
        let replayed = w.registry.upload_chunk(&app, &cancelled, None, chunk).await;
        assert_eq!(replayed.err().map(|e| e.code), Some(ErrorCode::BlobUploadUnknown));
        assert!(list_all(w.store.as_ref(), "uploads/").await.unwrap().is_empty());
    });
}

/// Upload states are written volatile (a crash may tear them): a torn state
/// makes its session unknown to clients (404, not 500) and garbage to the
/// collector once its id is a day old, while a live session beside it stays.
#[test]
fn a_state_torn_by_a_crash_loses_its_session_and_nothing_else() {
    block_on(async {
        let w = world(Vec::new());
        let app = repo("app");
        let torn = w.registry.start_upload(&app).await.unwrap().id;
        w.registry
            .upload_chunk(&app, &torn, None, pier_core::body::full_body(vec![7u8; 20]))
            .await
            .unwrap();
        let states = list_all(w.store.as_ref(), &format!("uploads/{torn}/s/")).await.unwrap();
        let newest = states.last().expect("the session has a state");
        // What a power cut can leave of a state that was never flushed.
        let zeros = bytes::Bytes::from(vec![0u8; 40]);
        w.store
            .put(newest, zeros, pier_core::store::PutMode::Overwrite)
            .await
            .unwrap();
        assert!(matches!(
            load_state(w.store.as_ref(), &torn).await.unwrap(),
            SavedState::Torn
        ));

        for refusal in [
            w.registry.upload_status(&app, &torn).await.err(),
            w.registry
                .upload_chunk(&app, &torn, None, pier_core::body::full_body(vec![1u8; 4]))
                .await
                .err(),
        ] {
            let code = refusal.expect("a torn session is refused").code;
            assert_eq!(code, ErrorCode::BlobUploadUnknown);
        }

        // Garbage, kept only while its id is young: without its states a
        // request would take the session for one nothing was sent to.
        let report = collect(w.store.clone(), w.env.clone(), config(Vec::new()), false).await;
        assert_eq!(report.uploads_expired, 0, "{report:?}");
        let status = w.registry.upload_status(&app, &torn).await;
        assert_eq!(status.err().map(|e| e.code), Some(ErrorCode::BlobUploadUnknown));
        w.env.advance_millis(25 * HOUR_MS);
        let live = w.registry.start_upload(&app).await.unwrap().id;
        w.registry
            .upload_chunk(&app, &live, None, pier_core::body::full_body(vec![7u8; 4]))
            .await
            .unwrap();
        let report = collect(w.store.clone(), w.env.clone(), config(Vec::new()), false).await;
        assert_eq!(report.uploads_expired, 1, "{report:?}");
        assert!(list_all(w.store.as_ref(), &format!("uploads/{torn}/"))
            .await
            .unwrap()
            .is_empty());
        assert!(
            w.registry.upload_status(&app, &live).await.is_ok(),
            "the live session stays"
        );
    });
}

/// The pass deployments run when no collection is configured: idle
/// sessions go, fresh ones stay, and nothing else is touched (an unreferenced
/// old blob survives; there is no report).
#[test]
fn the_uploads_only_pass_removes_idle_sessions_and_nothing_else() {
    block_on(async {
        let w = world(Vec::new());
        let app = repo("app");
        let stray = w.blob("app", "stray").await;
        let idle = w.registry.start_upload(&app).await.unwrap().id;
        w.registry
            .upload_chunk(&app, &idle, None, pier_core::body::full_body(vec![7u8; 20]))
            .await
            .unwrap();
        w.env.advance_millis(25 * HOUR_MS);
        let active = w.registry.start_upload(&app).await.unwrap().id;
        let mut pass = Gc::uploads_only(w.store.clone(), w.env.clone(), config(Vec::new()));
        let report = pass.run_to_end().await.unwrap();
        assert_eq!(report.uploads_expired, 1);
        assert!(w.registry.upload_status(&app, &idle).await.is_err());
        assert!(w.registry.upload_status(&app, &active).await.is_ok());
        assert!(w.stored(&stray).await, "the pass collected a blob");
        assert!(pier_core::gc::last_report(w.store.as_ref()).await.unwrap().is_none());
        assert!(
            list_all(w.store.as_ref(), "gc/").await.unwrap().is_empty(),
            "state left behind"
        );
    });
}

#[test]
fn an_interrupted_collection_resumes_where_it_stopped() {
    block_on(async {
        let w = world(Vec::new());
        let mut kept = Vec::new();
        let mut dropped = Vec::new();
        for i in 0..6 {
            let config = w.blob(&format!("r{i}"), &format!("config {i}")).await;
            let layer = w.blob(&format!("r{i}"), &format!("layer {i}")).await;
            w.manifest(&format!("r{i}"), tag("v1"), &image(&config, &[&layer]))
                .await;
            kept.extend([config, layer]);
            dropped.push(w.blob(&format!("r{i}"), &format!("stray {i}")).await);
        }
        w.env.advance_millis(2 * HOUR_MS);
        for steps in [3, 9, 14] {
            let mut first = Gc::new(w.store.clone(), w.env.clone(), config(Vec::new()), false);
            for _ in 0..steps {
                assert!(!first.step().await.unwrap().done);
            }
            drop(first); // the process dies here
            assert!(
                w.store.head("gc/run").await.unwrap().is_some(),
                "the state is in the store"
            );
            if steps != 14 {
                continue; // and restarts a few more times before finishing
            }
            let report = Gc::new(w.store.clone(), w.env.clone(), config(Vec::new()), false)
                .run_to_end()
                .await
                .unwrap();
            assert!(
                report.steps > 14,
                "resumed rather than restarted: {} steps",
                report.steps
            );
        }
        for blob in &kept {
            assert!(w.stored(blob).await);
        }
        for blob in &dropped {
            assert!(!w.stored(blob).await);
        }
        assert!(w.store.head("gc/run").await.unwrap().is_none());
        assert!(list_all(w.store.as_ref(), "gc/marks/").await.unwrap().is_empty());
        assert!(list_all(w.store.as_ref(), "gc/doomed/").await.unwrap().is_empty());
    });
}

#[test]
fn orphaned_data_goes_in_the_run_after_it_is_suspected() {
    block_on(async {
        let w = world(Vec::new());
        let config = w.blob("app", "config").await;
        w.manifest("app", tag("v1"), &image(&config, &[])).await;
        w.store
            .put(
                "data/deadbeef",
                bytes::Bytes::from_static(b"lost bytes"),
                pier_core::store::PutMode::Overwrite,
            )
            .await
            .unwrap();
        let first = w.collect_later(Vec::new(), false).await;
        assert_eq!(first.orphan_data_deleted, 0);
        assert!(w.store.head("data/deadbeef").await.unwrap().is_some());
        let second = w.collect_later(Vec::new(), false).await;
        assert_eq!((second.orphan_data_deleted, second.orphan_bytes_freed), (1, 10));
        assert!(w.store.head("data/deadbeef").await.unwrap().is_none());
        assert!(w.stored(&config).await);
    });
}

#[test]
fn a_budgeted_run_takes_at_least_one_step_and_the_next_one_resumes() {
    block_on(async {
        let w = world(Vec::new());
        for i in 0..4 {
            let config = w.blob(&format!("r{i}"), &format!("config {i}")).await;
            w.manifest(&format!("r{i}"), tag("v1"), &image(&config, &[])).await;
            w.blob(&format!("r{i}"), &format!("stray {i}")).await;
        }
        w.env.advance_millis(2 * HOUR_MS);
        // A budget of nothing: one step per call, as a cron invocation that
        // is out of time at once; each call is a new collector (a new isolate).
        let mut calls = 0;
        let report = loop {
            let mut gc = Gc::new(w.store.clone(), w.env.clone(), config(Vec::new()), false);
            let run = gc.run_for(0).await.unwrap();
            assert_eq!(run.steps, 1);
            calls += 1;
            if let Some(report) = run.last.report {
                break report;
            }
        };
        assert_eq!(report.steps, calls, "every call advanced the same collection");
        assert_eq!(report.blobs_deleted, 4);
        // The clock of this test stands still, so steps take no time and any
        // budget finishes a collection in one call.
        w.blob("r0", "another stray").await;
        w.env.advance_millis(2 * HOUR_MS);
        let mut gc = Gc::new(w.store.clone(), w.env.clone(), config(Vec::new()), false);
        let run = gc.run_for(1000).await.unwrap();
        assert!(run.last.done);
        assert_eq!(run.steps, run.last.report.unwrap().steps);
    });
}

#[test]
fn the_json_form_of_the_gc_table_is_checked() {
    let config = GcConfig::from_json(
        r#"{"grace_secs": 60, "interval_secs": 3600,
            "rules": [{"namespace": "prod/**", "immutable_tags": true}]}"#,
    )
    .unwrap();
    assert_eq!(config.grace_secs, 60);
    assert_eq!(config.page_size, GcConfig::default().page_size);
    assert!(config.rules[0].immutable_tags);
    let misspelt = GcConfig::from_json(r#"{"grace_sec": 60}"#).unwrap_err();
    assert!(misspelt.contains("grace_sec"), "{misspelt}");
    assert!(GcConfig::from_json("[]").is_err());
    assert!(GcConfig::from_json(r#"{"rules": [{"namespace": "a", "keep": 1}]}"#).is_err());
}

/// A manifest whose kind only its push's Content-Type told (no `mediaType`,
/// `config`, `layers` or `manifests`) read as unreadable to the collection,
/// which kept nothing of it: its blobs were swept though a tag kept it.
#[test]
fn a_manifest_typed_by_its_content_type_alone_keeps_its_blobs() {
    block_on(async {
        let w = world(Vec::new());
        let note = w.blob("app", "note").await;
        let body = serde_json::to_vec(&serde_json::json!({ "blobs": [note] })).unwrap();
        w.registry
            .put_manifest(
                &gc_support::repo("app"),
                &tag("v1"),
                Some("application/vnd.example.note+json"),
                body.into(),
                &[],
            )
            .await
            .unwrap();
        let stray = w.blob("app", "stray").await;
        w.collect_later(only_tagged(), false).await;
        assert!(!w.stored(&stray).await, "the collection ran");
        assert!(w.stored(&note).await, "the blob of a tagged manifest was collected");
    });
}

/// Found by the `config` fuzz target's long run: `grace_secs` of 2e16
/// overflowed when counted in milliseconds (a panic in checked builds; in
/// release a wrap to a short window that deletes the blobs of pushes under
/// way). A grace window too long to count keeps everything; so does an
/// upload expiry too long to count.
#[test]
fn a_grace_window_too_long_to_count_keeps_everything() {
    block_on(async {
        let w = world(Vec::new());
        let stray = w.blob("app", "stray").await;
        let session = w.registry.start_upload(&gc_support::repo("app")).await.unwrap();
        let chunk = pier_core::body::full_body(vec![7u8; 4]);
        w.registry
            .upload_chunk(&gc_support::repo("app"), &session.id, None, chunk)
            .await
            .unwrap();
        w.env.advance_millis(400 * 24 * HOUR_MS);
        for secs in [20_000_000_000_000_061, u64::MAX] {
            let config = GcConfig {
                grace_secs: secs,
                upload_expiry_secs: secs,
                ..config(Vec::new())
            };
            let report = collect(w.store.clone(), w.env.clone(), config, false).await;
            assert_eq!((report.blobs_deleted, report.uploads_expired), (0, 0), "{report:?}");
        }
        assert!(w.stored(&stray).await);
        let status = w.registry.upload_status(&gc_support::repo("app"), &session.id).await;
        assert!(status.is_ok(), "the idle upload was kept");
    });
}
