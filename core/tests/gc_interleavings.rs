//! Every push against every collection, in every interleaving of their
//! storage operations up to a stated number of preemptions (see `explore`).
//!
//! The invariant checked after each schedule is the one docs/gc.md proves:
//! an acknowledged push is never lost. Its manifest, every blob and child it
//! references, and the tags it set are all still there; and no manifest left
//! in the store (acknowledged or not) references a missing blob or child. A
//! refused push may only be refused with a code that tells the client to push
//! again (503 `UNAVAILABLE`, `MANIFEST_BLOB_UNKNOWN`, `BLOB_UNKNOWN`, ...).
//!
//! Two preemptions are enough to find every loss the old protocol had (a
//! push's checks read concurrently, so a collector could delete between two
//! of them), and that is the bound used here.

mod explore;
mod gc_support;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use explore::{explore, Run, Scheduler};
use futures::executor::block_on;
use gc_support::*;
use pier_core::body::full_body;
use pier_core::digest::{Algorithm, Digest};
use pier_core::error::{ErrorCode, RegistryError};
use pier_core::gc::{Gc, GcConfig, Phase};
use pier_core::names::Tag;
use pier_core::records::Reference;
use pier_core::retention::RetentionRule;
use pier_core::store::memory::MemoryStore;
use pier_core::store::Store;
use pier_core::upload::ChunkRange;
use serde_json::Value;

const PREEMPTIONS: usize = 2;

type Outcome = Arc<Mutex<Option<Result<(), RegistryError>>>>;

fn collector_config(rules: Vec<RetentionRule>) -> GcConfig {
    GcConfig {
        page_size: 4,
        ..config(rules)
    }
}

fn untagged_expire() -> Vec<RetentionRule> {
    vec![RetentionRule {
        namespace: "app".into(),
        tags: "*".into(),
        keep_last: None,
        expire_after_days: Some(1.0),
        unpulled_for_days: None,
        untagged_expire_after_days: Some(1.0),
        protect: Vec::new(),
        immutable_tags: false,
    }]
}

/// The codes a push refused because of a collection may carry: each makes a
/// client push the missing pieces and retry.
fn assert_retryable(what: &str, error: &RegistryError) {
    assert!(
        matches!(
            error.code,
            ErrorCode::Unavailable
                | ErrorCode::ManifestBlobUnknown
                | ErrorCode::BlobUnknown
                | ErrorCode::BlobUploadUnknown
        ),
        "{what}: refused with {:?}: {}",
        error.code,
        error.message
    );
}

/// Everything the acknowledged push of `manifest` to `repo:tag` promised.
async fn assert_push_kept(store: Arc<dyn Store>, manifest: &Value, tag_name: &str) {
    let app = repo("app");
    let reader = registry(store.clone(), test_env(), Vec::new());
    let digest = digest_of_value(manifest);
    let descriptor = serde_json::json!({ "digest": digest.as_str() });
    assert!(
        manifest_stored(store.as_ref(), &app, &descriptor).await,
        "an acknowledged manifest {digest} is gone"
    );
    let tagged = reader
        .manifest(&app, &Reference::Tag(Tag::parse(tag_name).unwrap()))
        .await
        .unwrap_or_else(|e| panic!("the acknowledged tag {tag_name} is gone: {e:?}"));
    assert_eq!(tagged.digest, digest, "the acknowledged tag {tag_name} moved");
}

/// What a client does against the collection: an action over its own
/// registry, and the check of its outcome once both have ended.
type Action =
    Box<dyn FnOnce(pier_core::Registry) -> pier_core::platform::BoxFuture<'static, Result<(), RegistryError>>>;
type Check = Box<dyn FnOnce(Arc<dyn Store>, Result<(), RegistryError>)>;

/// Explores one client action against a collection. `setup` fills a store
/// once (through a registry, with a clock it may move); the collection's
/// phases before `from` then run on it, unscheduled (they only read, or
/// touch nothing the client uses); every schedule starts from a copy of that
/// store, with `client` and the rest of the collection both scheduled.
fn race<T: Clone + 'static>(
    name: &str,
    from: Phase,
    rules: Vec<RetentionRule>,
    setup: impl FnOnce(&pier_core::Registry, &TestEnv) -> T,
    client: impl Fn(T) -> (Action, Check),
) {
    let memory = Arc::new(MemoryStore::new(8));
    let env = test_env();
    let prepared = setup(&registry(memory.clone(), env.clone(), Vec::new()), &env);
    if from != Phase::Uploads {
        let mut early = Gc::new(memory.clone(), env.clone(), collector_config(rules.clone()), false);
        block_on(async { while early.step().await.expect("a collection step fails").phase != from {} });
    }
    let explored = explore(PREEMPTIONS, || {
        let scheduler = Scheduler::new(Arc::new(memory.snapshot()));
        let env = Arc::new(env.fork());
        let (action, check) = client(prepared.clone());
        let outcome: Outcome = Arc::default();
        let recorded = outcome.clone();
        let act = action(registry(scheduler.store(0), env.clone(), rules.clone()));
        let push = Box::pin(async move {
            let result = act.await;
            *recorded.lock().unwrap() = Some(result);
        });
        let mut gc = Gc::new(scheduler.store(1), env, collector_config(rules.clone()), false);
        let collect = Box::pin(async move {
            gc.run_to_end().await.expect("the collection fails");
        });
        let store: Arc<dyn Store> = scheduler.memory();
        let run = Run {
            tasks: vec![push, collect],
            check: Box::new(move || {
                let result = outcome.lock().unwrap().take().expect("the client never ended");
                block_on(assert_every_manifest_complete(store.as_ref()));
                check(store, result);
            }),
        };
        (scheduler, run)
    });
    eprintln!(
        "{name}: {} schedules (up to {PREEMPTIONS} preemptions), longest {} storage operations",
        explored.schedules, explored.longest
    );
    assert!(explored.schedules > 10, "{name}: the tasks did not interleave");
}

/// A manifest push to `app:<tag_name>` that, acknowledged, must be kept.
fn push_kept(manifest: Value, tag_name: &'static str, what: &'static str) -> (Action, Check) {
    let expected = manifest.clone();
    (
        put_manifest_task(manifest, tag_name),
        Box::new(move |store, result| match result {
            Ok(()) => block_on(assert_push_kept(store, &expected, tag_name)),
            Err(e) => assert_retryable(what, &e),
        }),
    )
}

fn put_manifest_task(manifest: Value, tag_name: &'static str) -> Action {
    Box::new(move |pusher| {
        Box::pin(async move {
            let bytes = Bytes::from(serde_json::to_vec(&manifest).unwrap());
            let media_type = manifest["mediaType"].as_str().unwrap().to_string();
            pusher
                .put_manifest(&repo("app"), &tag(tag_name), Some(&media_type), bytes, &[])
                .await
                .map(|_| ())
        })
    })
}

/// A client's HEAD found an old, unreferenced layer, so it pushes a manifest
/// referencing it without uploading it, while the sweep deletes it.
#[test]
fn a_manifest_reusing_an_old_blob_against_the_sweep() {
    let setup = |setup: &pier_core::Registry, env: &TestEnv| {
        block_on(async {
            let app = repo("app");
            let layer = push_blob(setup, &app, b"old layer").await;
            env.advance_millis(2 * HOUR_MS);
            let config = push_blob(setup, &app, b"fresh config").await;
            image(&config, &[&layer])
        })
    };
    race("manifest vs sweep", Phase::Sweep, Vec::new(), setup, |manifest| {
        push_kept(manifest, "v1", "manifest push")
    });
}

/// An index pushed over an old untagged child that retention expires.
#[test]
fn an_index_over_an_old_untagged_child_against_retention() {
    let setup = |setup: &pier_core::Registry, env: &TestEnv| {
        block_on(async {
            let app = repo("app");
            let config = push_blob(setup, &app, b"config").await;
            let layer = push_blob(setup, &app, b"layer").await;
            let child = image(&config, &[&layer]);
            let child = push_manifest(setup, &app, Reference::Digest(digest_of_value(&child)), &child).await;
            env.advance_millis(2 * DAY_MS);
            index(pier_core::manifest::OCI_INDEX, &[&child])
        })
    };
    race("index vs retention", Phase::Repos, untagged_expire(), setup, |index| {
        push_kept(index, "v1", "index push")
    });
}

/// An old untagged manifest pushed again with a tag while retention deletes it.
#[test]
fn a_repush_of_an_expiring_manifest_against_retention() {
    let setup = |setup: &pier_core::Registry, env: &TestEnv| {
        block_on(async {
            let app = repo("app");
            let config = push_blob(setup, &app, b"config").await;
            let layer = push_blob(setup, &app, b"layer").await;
            let manifest = image(&config, &[&layer]);
            push_manifest(setup, &app, Reference::Digest(digest_of_value(&manifest)), &manifest).await;
            env.advance_millis(2 * DAY_MS);
            manifest
        })
    };
    race(
        "re-push vs retention",
        Phase::Repos,
        untagged_expire(),
        setup,
        |manifest| push_kept(manifest, "v1", "re-push"),
    );
}

/// A tag that retention expires by age, pushed again (refreshed) while the
/// collection deletes it; and a tag moved onto an expiring manifest.
#[test]
fn a_tag_refreshed_or_moved_against_tag_expiry() {
    for moved in [false, true] {
        let setup = move |setup: &pier_core::Registry, env: &TestEnv| {
            block_on(async {
                let app = repo("app");
                let config = push_blob(setup, &app, b"config").await;
                let old = image(&config, &[&push_blob(setup, &app, b"old layer").await]);
                let new = image(&config, &[&push_blob(setup, &app, b"new layer").await]);
                push_manifest(setup, &app, tag("v1"), &old).await;
                if moved {
                    push_manifest(setup, &app, Reference::Digest(digest_of_value(&new)), &new).await;
                }
                env.advance_millis(2 * DAY_MS);
                if moved {
                    new
                } else {
                    old
                }
            })
        };
        let name = if moved {
            "tag move vs expiry"
        } else {
            "tag refresh vs expiry"
        };
        race(name, Phase::Repos, untagged_expire(), setup, |target| {
            push_kept(target, "v1", "tag push")
        });
    }
}

/// An upload of bytes already stored (deduplicated) and a mount of an old
/// blob, each against the sweep: an answered upload or mount leaves the blob
/// readable where the client put it.
#[test]
fn an_upload_or_mount_reusing_an_old_blob_against_the_sweep() {
    for mount in [false, true] {
        let setup = |setup: &pier_core::Registry, env: &TestEnv| {
            block_on(async {
                let layer = push_blob(setup, &repo("app"), b"old layer").await;
                env.advance_millis(2 * HOUR_MS);
                digest_of(&layer)
            })
        };
        let name = if mount { "mount vs sweep" } else { "upload vs sweep" };
        race(name, Phase::Sweep, Vec::new(), setup, |digest: Digest| {
            let target = digest.clone();
            let action: Action = Box::new(move |client| {
                Box::pin(async move {
                    let other = repo("other");
                    if mount {
                        match client.mount_blob(&other, &digest, Some(&repo("app"))).await? {
                            true => Ok(()),
                            false => Err(RegistryError::new(ErrorCode::BlobUnknown, "not mounted")),
                        }
                    } else {
                        client.upload_whole(&other, &digest, full_body(&b"old layer"[..])).await
                    }
                })
            });
            let check: Check = Box::new(move |store, result| match result {
                Ok(()) => assert_blob_readable(store, "other", &target, "an answered upload or mount"),
                Err(e) => assert_retryable("reuse", &e),
            });
            (action, check)
        });
    }
}

/// A chunked upload idle past the expiry is finished (its last chunk and the
/// PUT) while the collection expires it: the blob is either stored whole and
/// readable, or the client is told to start again.
#[test]
fn an_upload_finished_against_upload_expiry() {
    let content = b"0123456789abcdefghij".to_vec();
    let digest = Digest::of(Algorithm::Sha256, &content);
    let setup = |setup: &pier_core::Registry, env: &TestEnv| {
        block_on(async {
            let app = repo("app");
            let started = setup.start_upload(&app).await.unwrap();
            let first = ChunkRange { start: 0, end: 11 };
            setup
                .upload_chunk(&app, &started.id, Some(first), full_body(content[..12].to_vec()))
                .await
                .unwrap();
            env.advance_millis(25 * HOUR_MS);
            started.id
        })
    };
    race(
        "upload finish vs expiry",
        Phase::Uploads,
        Vec::new(),
        setup,
        |id: String| {
            let (digest, target, rest) = (digest.clone(), digest.clone(), content[12..].to_vec());
            let action: Action = Box::new(move |client| {
                Box::pin(async move {
                    let last = ChunkRange { start: 12, end: 19 };
                    client
                        .finish_upload(&repo("app"), &id, &digest, Some(last), full_body(rest))
                        .await
                })
            });
            let check: Check = Box::new(move |store, result| match result {
                Ok(()) => assert_blob_readable(store, "app", &target, "a finished upload"),
                Err(e) => assert_retryable("upload finish", &e),
            });
            (action, check)
        },
    );
}

/// A session whose only chunk is in its own data object (less than a part)
/// is finished by a PUT that adds nothing, which makes that object the blob,
/// while the collection sweeps orphan data or expires the idle session: the
/// blob is either stored whole and readable, or the client is told to start
/// again.
#[test]
fn a_first_chunk_adopted_against_the_sweep_and_expiry() {
    let content = b"0123456".to_vec();
    let digest = Digest::of(Algorithm::Sha256, &content);
    for (phase, idle_hours) in [(Phase::Sweep, 2), (Phase::Uploads, 25)] {
        let chunk = content.clone();
        let setup = move |setup: &pier_core::Registry, env: &TestEnv| {
            block_on(async {
                let app = repo("app");
                let started = setup.start_upload(&app).await.unwrap();
                setup
                    .upload_chunk(&app, &started.id, None, full_body(chunk))
                    .await
                    .unwrap();
                env.advance_millis(idle_hours * HOUR_MS);
                started.id
            })
        };
        let name = format!("first chunk adopted vs {phase:?}");
        race(&name, phase, Vec::new(), setup, |id: String| {
            let (digest, target) = (digest.clone(), digest.clone());
            let action: Action = Box::new(move |client| {
                Box::pin(async move {
                    client
                        .finish_upload(&repo("app"), &id, &digest, None, full_body(Vec::new()))
                        .await
                })
            });
            let check: Check = Box::new(move |store, result| match result {
                Ok(()) => assert_blob_readable(store, "app", &target, "an adopted upload"),
                Err(e) => assert_retryable("adopting upload", &e),
            });
            (action, check)
        });
    }
}

/// A blob pushed into a repository while the collection removes its
/// dangling links: the upload writes the link at the same time as the record,
/// so the collector may find the link before the record. Pushed POST+PUT and
/// as docker does (POST, PATCH, empty PUT); new content, and content whose
/// old record the sweep just deleted, leaving its old link dangling. An
/// answered upload leaves the blob readable in the repository.
#[test]
fn an_upload_linked_against_the_links_phase() {
    for (content, docker) in [
        (&b"new layer"[..], false),
        (b"new layer", true),
        (b"old layer", false),
        (b"old layer", true),
    ] {
        let setup = |setup: &pier_core::Registry, env: &TestEnv| {
            block_on(async {
                let app = repo("app");
                // A tagged image, so the links phase looks at the repository;
                // and an old unreferenced layer, which the sweep deletes.
                let config = push_blob(setup, &app, b"config").await;
                push_manifest(setup, &app, tag("v1"), &image(&config, &[])).await;
                push_blob(setup, &app, b"old layer").await;
                env.advance_millis(2 * HOUR_MS);
            })
        };
        let digest = Digest::of(Algorithm::Sha256, content);
        let name = format!(
            "{} push of {:?} vs links",
            if docker { "docker" } else { "POST+PUT" },
            String::from_utf8_lossy(content)
        );
        race(&name, Phase::Links, Vec::new(), setup, |()| {
            let (digest, target) = (digest.clone(), digest.clone());
            let action: Action = Box::new(move |client| {
                Box::pin(async move {
                    let app = repo("app");
                    let started = client.start_upload(&app).await?;
                    if docker {
                        client.upload_chunk(&app, &started.id, None, full_body(content)).await?;
                        client
                            .finish_upload(&app, &started.id, &digest, None, full_body(Vec::new()))
                            .await
                    } else {
                        client
                            .finish_upload(&app, &started.id, &digest, None, full_body(content))
                            .await
                    }
                })
            });
            let check: Check = Box::new(move |store, result| match result {
                Ok(()) => assert_blob_readable(store, "app", &target, "an answered upload"),
                Err(e) => assert_retryable("upload", &e),
            });
            (action, check)
        });
    }
}

/// The blob is readable in `repo_name` and has the bytes of its digest.
fn assert_blob_readable(store: Arc<dyn Store>, repo_name: &str, digest: &Digest, what: &str) {
    let reader = registry(store, test_env(), Vec::new());
    block_on(async {
        let record = reader
            .blob(&repo(repo_name), digest)
            .await
            .unwrap_or_else(|e| panic!("{what} lost its blob: {e:?}"));
        let opened = reader.open_blob(digest, &record, None).await;
        let bytes = opened
            .unwrap_or_else(|e| panic!("{what}: bytes gone: {e:?}"))
            .bytes()
            .await
            .unwrap();
        assert_eq!(&Digest::of(digest.algorithm(), &bytes), digest, "{what}: wrong bytes");
    });
}

fn digest_of_value(manifest: &Value) -> Digest {
    Digest::of(Algorithm::Sha256, &serde_json::to_vec(manifest).unwrap())
}
