//! Sync passes (`[[sync]]`) between two deployments over memory stores:
//! the upstream answers the site's registry client through its own HTTP
//! layer (`Deployment::handle`), so a pass runs exactly as in a shell, with
//! a clock the test moves. What is checked here is what the shell suites
//! (tests/sync) cannot force: a pass stopped after every tag by its budget,
//! an upstream going down mid-pass, and a lease another runner holds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::executor::block_on;
use futures::TryStreamExt;
use http::{Method, Request, StatusCode};
use pier_core::api::Body;
use pier_core::body::{empty_body, full_body};
use pier_core::deployment::{Deployment, Ports, Settings, Site, Stores};
use pier_core::digest::{Algorithm, Digest};
use pier_core::names::{RepoName, Tag};
use pier_core::platform::{box_stream, Background, BoxFuture, Env};
use pier_core::records::Reference;
use pier_core::remote::http::{HttpClient, HttpError, IncomingResponse, OutgoingBody, OutgoingRequest};
use pier_core::store::memory::MemoryStore;
use pier_core::store::{PutMode, Store};
use pier_core::sync::{Budget, PassError, PassOutcome, PassRecord, SyncPasses, Unobserved};
use pier_core::testing::{NoNetwork, TestEnv};
use serde_json::json;

/// Background work is not needed by either side: nothing is spawned.
struct NoBackground;
impl Background for NoBackground {
    fn spawn(&self, _task: BoxFuture<'static, ()>) {}
    fn sleep(&self, _: std::time::Duration) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
    fn report(&self, _failed: bool, _message: &str) {}
}

/// A deployment over a memory store.
struct Pier {
    deployment: Deployment,
    site: Site,
}

impl Pier {
    fn new(settings: Settings, http: Arc<dyn HttpClient>, env: Arc<TestEnv>, store: Arc<dyn Store>) -> Pier {
        let deployment = Deployment::new(settings, Ports { env, http }).unwrap();
        let site = deployment.site(Stores::Backend(store), Arc::new(NoBackground));
        Pier { deployment, site }
    }

    fn call(&self, method: Method, uri: &str, content_type: Option<&str>, body: Bytes) -> StatusCode {
        let mut request = Request::builder().method(method).uri(uri).header("host", "up.test");
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let body = if body.is_empty() { empty_body() } else { full_body(body) };
        block_on(self.deployment.handle(&self.site, request.body(body).unwrap())).status()
    }

    /// A one-layer image tagged `tag` in `repo`; its digest.
    fn push_image(&self, repo: &str, tag: &str, content: &str) -> Digest {
        let mut descriptors = Vec::new();
        for data in [format!("{{\"config\":\"{content}\"}}"), format!("layer {content}")] {
            let digest = Digest::of(Algorithm::Sha256, data.as_bytes());
            let uri = format!("/v2/{repo}/blobs/uploads/?digest={digest}");
            assert_eq!(
                self.call(Method::POST, &uri, None, Bytes::from(data.clone())),
                StatusCode::CREATED
            );
            descriptors
                .push(json!({"mediaType": "application/octet-stream", "digest": digest.as_str(), "size": data.len()}));
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": descriptors[0],
            "layers": [descriptors[1]],
        });
        let bytes = serde_json::to_vec(&manifest).unwrap();
        let uri = format!("/v2/{repo}/manifests/{tag}");
        let status = self.call(
            Method::PUT,
            &uri,
            Some("application/vnd.oci.image.manifest.v1+json"),
            Bytes::from(bytes.clone()),
        );
        assert_eq!(status, StatusCode::CREATED);
        Digest::of(Algorithm::Sha256, &bytes)
    }

    fn tag(&self, repo: &str, tag: &str) -> Option<Digest> {
        let repo = RepoName::parse(repo).unwrap();
        let reference = Reference::Tag(Tag::parse(tag).unwrap());
        block_on(self.site.registry().manifest(&repo, &reference))
            .ok()
            .map(|m| m.digest)
    }
}

/// The upstream as the site's HTTP client reaches it; `down` makes every
/// request fail as an unreachable host would.
struct Upstream {
    pier: Pier,
    down: AtomicBool,
    /// Answer `/v2/_catalog` with 401, as registries that keep it private do.
    refuse_catalog: AtomicBool,
}

#[async_trait::async_trait]
impl HttpClient for Upstream {
    async fn send(&self, request: OutgoingRequest) -> Result<IncomingResponse, HttpError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(HttpError("connection refused".into()));
        }
        if self.refuse_catalog.load(Ordering::SeqCst) && request.uri().path() == "/v2/_catalog" {
            let refused = r#"{"errors":[{"code":"UNAUTHORIZED","message":"the catalog is private"}]}"#;
            let body = box_stream(futures::stream::once(async move {
                Ok(Bytes::from_static(refused.as_bytes()))
            }));
            return Ok(http::Response::builder().status(401).body(body).unwrap());
        }
        let (parts, body) = request.into_parts();
        let body = match body {
            OutgoingBody::Empty => empty_body(),
            OutgoingBody::Full(bytes) => full_body(bytes),
            OutgoingBody::Stream(stream) => {
                let bytes: Vec<Bytes> = stream.try_collect().await?;
                full_body(bytes.concat())
            }
        };
        let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let mut inner = Request::builder().method(parts.method).uri(path);
        for (name, value) in &parts.headers {
            inner = inner.header(name, value);
        }
        let inner = inner.header("host", "up.test").body(body).unwrap();
        let response = self.pier.deployment.handle(&self.pier.site, inner).await;
        let (parts, body) = response.into_parts();
        let stream = match body {
            Body::Empty => box_stream(futures::stream::empty()),
            Body::Full(bytes) => box_stream(futures::stream::once(async move { Ok(bytes) })),
            Body::Stream { stream, .. } => box_stream(stream.map_err(|e| HttpError(e.to_string()))),
        };
        Ok(http::Response::from_parts(parts, stream))
    }
}

struct World {
    env: Arc<TestEnv>,
    upstream: Arc<Upstream>,
    site: Pier,
    site_store: Arc<dyn Store>,
}

fn world(rule: serde_json::Value) -> World {
    let env = Arc::new(TestEnv::default());
    let upstream = Arc::new(Upstream {
        pier: Pier::new(
            Settings::default(),
            Arc::new(NoNetwork),
            env.clone(),
            Arc::new(MemoryStore::new(1 << 20)),
        ),
        down: AtomicBool::new(false),
        refuse_catalog: AtomicBool::new(false),
    });
    let site_store: Arc<dyn Store> = Arc::new(MemoryStore::new(1 << 20));
    let settings = Settings {
        sync: vec![serde_json::from_value(rule).unwrap()],
        ..Settings::default()
    };
    let site = Pier::new(settings, upstream.clone(), env.clone(), site_store.clone());
    World {
        env,
        upstream,
        site,
        site_store,
    }
}

fn factory_rule() -> serde_json::Value {
    json!({"name": "factory", "upstream": "http://up.test", "repositories": ["team/*"], "tags": "v*",
           "interval_secs": 60, "delete": true})
}

impl World {
    fn passes(&self) -> SyncPasses {
        self.site.deployment.sync_passes(&self.site.site)
    }

    /// One run of the rule's pass with no time to spare: one tag at most.
    fn one_step(&self, passes: &SyncPasses) -> Result<PassOutcome, PassError> {
        let rule = passes.rule("factory").unwrap();
        block_on(passes.run(rule, Budget::for_ms(self.env.now_millis(), 0), false, &Unobserved))
    }

    fn stored_pass(&self) -> PassRecord {
        let bytes = block_on(pier_core::store::read_small(
            self.site_store.as_ref(),
            "sync/factory/pass",
        ))
        .unwrap()
        .unwrap()
        .0;
        serde_json::from_slice(&bytes).unwrap()
    }
}

#[test]
fn a_pass_out_of_budget_after_every_tag_resumes_and_copies_each_tag_once() {
    let w = world(factory_rule());
    let up = &w.upstream.pier;
    let digests: Vec<Digest> = (1..=4)
        .map(|n| up.push_image(&format!("team/app{n}"), "v1", &format!("a{n}")))
        .collect();
    up.push_image("team/app1", "dev", "dev build");
    up.push_image("other/app", "v1", "not the rule's");
    let passes = w.passes();
    let mut runs = 0;
    let finished = loop {
        runs += 1;
        assert!(runs <= 20, "no end after {runs} runs");
        match w.one_step(&passes).unwrap() {
            PassOutcome::MoreToDo(record) => {
                assert_eq!(record.holder, None, "a run out of budget lets go of the pass");
                let stored = w.stored_pass();
                assert_eq!((stored.pass, stored.counts), (record.pass, record.counts));
            }
            PassOutcome::Finished(record) => break record,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(finished.runs, runs);
    assert!(runs >= 4, "one tag per run: {runs}");
    assert_eq!(finished.counts.tags_copied, 4);
    assert_eq!(finished.counts.tags_unchanged, 0, "nothing was copied twice");
    assert_eq!(
        finished.repositories,
        ["team/app1", "team/app2", "team/app3", "team/app4"]
    );
    for (n, digest) in digests.iter().enumerate() {
        assert_eq!(w.site.tag(&format!("team/app{}", n + 1), "v1").as_ref(), Some(digest));
    }
    assert_eq!(w.site.tag("team/app1", "dev"), None, "the tag filter");
    assert_eq!(w.site.tag("other/app", "v1"), None, "the repository glob");

    // Not due before the interval; then a pass that copies nothing.
    assert!(matches!(
        w.one_step(&passes).unwrap(),
        PassOutcome::NotDue { next_ms: Some(_) }
    ));
    w.env.advance_secs(60);
    let rule = passes.rule("factory").unwrap();
    let PassOutcome::Finished(second) = block_on(passes.run(rule, Budget::UNLIMITED, false, &Unobserved)).unwrap()
    else {
        panic!("a whole pass")
    };
    assert_ne!(second.pass, finished.pass);
    assert_eq!((second.counts.tags_copied, second.counts.tags_unchanged), (0, 4));
}

#[test]
fn an_upstream_going_down_stops_the_run_and_the_next_goes_on() {
    let w = world(factory_rule());
    for n in 1..=3 {
        w.upstream
            .pier
            .push_image(&format!("team/app{n}"), "v1", &format!("b{n}"));
    }
    let passes = w.passes();
    let PassOutcome::MoreToDo(first) = w.one_step(&passes).unwrap() else {
        panic!("one step")
    };
    w.upstream.down.store(true, Ordering::SeqCst);
    let rule = passes.rule("factory").unwrap();
    let stopped = block_on(passes.run(rule, Budget::UNLIMITED, false, &Unobserved));
    assert!(matches!(stopped, Err(PassError::Upstream(_))), "{stopped:?}");
    let kept = w.stored_pass();
    assert_eq!(
        (kept.pass.as_str(), kept.finished_ms, kept.holder.as_ref()),
        (first.pass.as_str(), None, None)
    );
    assert!(
        kept.errors.iter().any(|e| e.contains("connection refused")),
        "{:?}",
        kept.errors
    );
    w.upstream.down.store(false, Ordering::SeqCst);
    let PassOutcome::Finished(done) = block_on(passes.run(rule, Budget::UNLIMITED, false, &Unobserved)).unwrap() else {
        panic!("the pass goes on")
    };
    assert_eq!(done.pass, first.pass);
    assert_eq!((done.counts.tags_copied, done.counts.tags_unchanged), (3, 0));
}

#[test]
fn a_pass_another_runner_holds_is_left_to_it_until_its_lease_lapses() {
    let w = world(factory_rule());
    w.upstream.pier.push_image("team/app1", "v1", "c1");
    let passes = w.passes();
    let stepped = w.one_step(&passes).unwrap();
    assert!(
        matches!(stepped, PassOutcome::MoreToDo(_) | PassOutcome::Finished(_)),
        "{stepped:?}"
    );
    // Another instance (over the same bucket) holds an unfinished pass.
    let mut held = w.stored_pass();
    held.finished_ms = None;
    held.holder = Some("other-instance".into());
    held.lease_until_ms = w.env.now_millis() + 30_000;
    let bytes = Bytes::from(serde_json::to_vec(&held).unwrap());
    block_on(w.site_store.put("sync/factory/pass", bytes, PutMode::Overwrite)).unwrap();
    let rule = passes.rule("factory").unwrap();
    let busy = block_on(passes.run(rule, Budget::UNLIMITED, true, &Unobserved)).unwrap();
    assert_eq!(
        busy,
        PassOutcome::Busy {
            holder: "other-instance".into(),
            until_ms: held.lease_until_ms
        }
    );
    w.env.advance_secs(31);
    let PassOutcome::Finished(taken) = block_on(passes.run(rule, Budget::UNLIMITED, true, &Unobserved)).unwrap() else {
        panic!("taken over once the lease lapsed")
    };
    assert_eq!(taken.pass, held.pass);
    assert_eq!(taken.runs, held.runs + 1);
}

#[test]
fn a_refused_catalog_is_named_and_waits_for_the_interval() {
    let w = world(factory_rule());
    w.upstream.pier.push_image("team/app", "v1", "e1");
    w.upstream.refuse_catalog.store(true, Ordering::SeqCst);
    let passes = w.passes();
    let rule = passes.rule("factory").unwrap();
    let refused = block_on(passes.run(rule, Budget::UNLIMITED, false, &Unobserved));
    let Err(PassError::Upstream(why)) = refused else {
        panic!("{refused:?}")
    };
    assert!(
        why.contains("need the upstream's /v2/_catalog") && why.contains("401"),
        "{why}"
    );
    let last = w.stored_pass();
    assert!(last.finished_ms.is_some() && last.errors.iter().any(|e| e.contains("_catalog")));
    assert!(matches!(
        block_on(passes.run(rule, Budget::UNLIMITED, false, &Unobserved)),
        Ok(PassOutcome::NotDue { .. })
    ));
    // Listed by name, the repository needs no catalog.
    let named = world(json!({"name": "factory", "upstream": "http://up.test", "repositories": ["team/app"]}));
    named.upstream.pier.push_image("team/app", "v1", "e1");
    named.upstream.refuse_catalog.store(true, Ordering::SeqCst);
    let passes = named.passes();
    let rule = passes.rule("factory").unwrap();
    let done = block_on(passes.run(rule, Budget::UNLIMITED, true, &Unobserved)).unwrap();
    assert!(
        matches!(done, PassOutcome::Finished(ref r) if r.counts.tags_copied == 1),
        "{done:?}"
    );
}

#[test]
fn deletes_follow_upstream_only_for_the_rules_tags() {
    let w = world(factory_rule());
    let up = &w.upstream.pier;
    up.push_image("team/app", "v1", "d1");
    up.push_image("team/app", "v2", "d2");
    let passes = w.passes();
    let rule = passes.rule("factory").unwrap();
    block_on(passes.run(rule, Budget::UNLIMITED, true, &Unobserved)).unwrap();
    // A tag of the site's own, outside the rule's filter.
    w.site.push_image("team/app", "local", "site build");
    assert_eq!(
        up.call(Method::DELETE, "/v2/team/app/manifests/v2", None, Bytes::new()),
        StatusCode::ACCEPTED
    );
    let PassOutcome::Finished(record) = block_on(passes.run(rule, Budget::UNLIMITED, true, &Unobserved)).unwrap()
    else {
        panic!("a pass")
    };
    assert_eq!((record.counts.tags_deleted, record.counts.tags_unchanged), (1, 1));
    assert_eq!(w.site.tag("team/app", "v2"), None);
    assert!(w.site.tag("team/app", "v1").is_some());
    assert!(w.site.tag("team/app", "local").is_some(), "not the rule's to delete");
}
