//! A deployment as both shells assemble it (`pier_core::deployment`), driven
//! through `Deployment::handle` and its scheduled collection: settings reach
//! the parts they configure, a bad table is refused and named, and the
//! schedule collects only what the settings say.
//!
//! Bad settings tried: a mirror namespace that is no glob, a webhook to a
//! URL that is none, a replication rule without a target, auth with signing
//! keys that are not a JWK Set.

mod gc_support;

use std::sync::Arc;

use bytes::Bytes;
use futures::executor::block_on;
use gc_support::*;
use http::{Method, Request, StatusCode};
use pier_core::api::HttpResponse;
use pier_core::auth::token::{new_signing_key, KeyAlgorithm};
use pier_core::auth::AuthConfig;
use pier_core::body::{empty_body, full_body};
use pier_core::deployment::{Deployment, Ports, Settings, SettingsError, Site, Stores};
use pier_core::gc::GcConfig;
use pier_core::platform::{Background, BoxFuture};
use pier_core::store::memory::MemoryStore;
use pier_core::store::Store;
use pier_core::testing::NoNetwork;
use serde_json::{json, Value};

/// Background work dropped: no hook is configured where a site is made.
struct Nowhere;

impl Background for Nowhere {
    fn spawn(&self, _task: BoxFuture<'static, ()>) {}
    fn sleep(&self, _duration: std::time::Duration) -> BoxFuture<'static, ()> {
        Box::pin(std::future::ready(()))
    }
    fn report(&self, _failed: bool, _message: &str) {}
}

fn deploy(settings: Settings, env: Arc<TestEnv>) -> Result<Deployment, SettingsError> {
    let ports = Ports {
        env,
        http: Arc::new(NoNetwork),
    };
    Deployment::new(settings, ports)
}

fn site(deployment: &Deployment, store: Arc<dyn Store>) -> Site {
    deployment.site(Stores::Backend(store), Arc::new(Nowhere))
}

fn send(deployment: &Deployment, site: &Site, method: Method, uri: &str, body: Option<(&str, Bytes)>) -> HttpResponse {
    let builder = Request::builder().method(method).uri(uri).header("host", "reg.test");
    let request = match body {
        None => builder.body(empty_body()),
        Some((content_type, bytes)) => builder.header("content-type", content_type).body(full_body(bytes)),
    };
    block_on(deployment.handle(site, request.unwrap()))
}

#[test]
fn an_open_deployment_answers_and_warns_that_auth_is_off() {
    let deployment = deploy(Settings::default(), test_env()).unwrap();
    let site = site(&deployment, Arc::new(MemoryStore::new(8)));
    assert_eq!(
        send(&deployment, &site, Method::GET, "/v2/", None).status(),
        StatusCode::OK
    );
    let warnings: Vec<_> = deployment.notices().iter().filter(|n| n.warning).collect();
    assert_eq!(warnings.len(), 1, "{:?}", deployment.notices());
    assert!(warnings[0].message.contains("auth is off"));
}

#[test]
fn with_auth_settings_the_api_asks_for_a_token() {
    let env = test_env();
    let keys = format!("{{\"keys\":[{}]}}", new_signing_key(KeyAlgorithm::Es256, env.as_ref()));
    let config = AuthConfig::from_json(r#"{"service": "pier"}"#).unwrap();
    let settings = Settings {
        auth: Some((config, keys)),
        ..Settings::default()
    };
    let deployment = deploy(settings, env).unwrap();
    let site = site(&deployment, Arc::new(MemoryStore::new(8)));
    let answer = send(&deployment, &site, Method::GET, "/v2/", None);
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    assert!(answer.headers().contains_key("www-authenticate"));
    assert!(deployment.notices().iter().all(|n| !n.warning));
}

/// Whether an error names the table a test broke.
type NamesTheTable = fn(&SettingsError) -> bool;

#[test]
fn a_bad_table_is_refused_and_named() {
    let tables: Vec<(Settings, NamesTheTable)> = vec![
        (
            Settings {
                mirrors: serde_json::from_value(json!([{ "namespace": "hub/[", "upstream": "https://up.test" }]))
                    .unwrap(),
                ..Settings::default()
            },
            |e| matches!(e, SettingsError::Mirror(_)),
        ),
        (
            Settings {
                webhooks: serde_json::from_value(json!([{ "url": "not a url" }])).unwrap(),
                ..Settings::default()
            },
            |e| matches!(e, SettingsError::Webhook(_)),
        ),
        (
            Settings {
                replicate: serde_json::from_value(json!([{ "repository": "ci/**" }])).unwrap(),
                ..Settings::default()
            },
            |e| matches!(e, SettingsError::Replicate(_)),
        ),
        (
            Settings {
                auth: Some((
                    AuthConfig::from_json(r#"{"service": "pier"}"#).unwrap(),
                    "no keys".into(),
                )),
                ..Settings::default()
            },
            |e| matches!(e, SettingsError::Auth(_)),
        ),
        (
            Settings {
                policies: serde_json::from_value(json!([{ "namespace": "prod/**", "require_signature": ["no key"] }]))
                    .unwrap(),
                ..Settings::default()
            },
            |e| matches!(e, SettingsError::Policy(why) if why.contains("namespace policy \"prod/**\"")),
        ),
    ];
    for (settings, names_the_table) in tables {
        let err = deploy(settings, test_env()).err().expect("refused");
        assert!(names_the_table(&err), "{err:?}");
        assert!(!err.to_string().is_empty());
    }
}

fn immutable_prod() -> GcConfig {
    let rules = serde_json::from_value(json!([{ "namespace": "prod/**", "immutable_tags": true }])).unwrap();
    config(rules)
}

/// The retention rules are wired into pushes as well as collection: a tag
/// of an immutable namespace does not move, whether or not collection runs.
#[test]
fn retention_rules_make_tags_immutable_at_push() {
    let settings = Settings {
        gc: immutable_prod(),
        collect: false,
        ..Settings::default()
    };
    let deployment = deploy(settings, test_env()).unwrap();
    let site = site(&deployment, Arc::new(MemoryStore::new(8)));
    let prod = repo("prod/app");
    let manifest = |layer: &Value| -> Value {
        let config = block_on(push_blob(site.registry(), &prod, b"{}"));
        image(&config, &[layer])
    };
    let first = manifest(&block_on(push_blob(site.registry(), &prod, b"one")));
    let second = manifest(&block_on(push_blob(site.registry(), &prod, b"two")));
    let put = |body: &Value| {
        let bytes = Bytes::from(serde_json::to_vec(body).unwrap());
        let media_type = body["mediaType"].as_str().unwrap();
        send(
            &deployment,
            &site,
            Method::PUT,
            "/v2/prod/app/manifests/v1",
            Some((media_type, bytes)),
        )
        .status()
    };
    assert_eq!(put(&first), StatusCode::CREATED);
    assert_eq!(put(&first), StatusCode::CREATED, "the same manifest again is no move");
    assert_eq!(put(&second), StatusCode::CONFLICT);
}

/// With collection off the schedule only expires idle uploads; with it on,
/// it collects as `[gc]` says.
#[test]
fn the_schedule_collects_only_what_the_settings_say() {
    for collect in [false, true] {
        let env = test_env();
        let store = Arc::new(MemoryStore::new(8));
        let settings = Settings {
            gc: config(Vec::new()),
            collect,
            ..Settings::default()
        };
        let deployment = deploy(settings, env.clone()).unwrap();
        let site = site(&deployment, store.clone());
        let stray = block_on(push_blob(site.registry(), &repo("app"), b"stray"));
        let session = block_on(site.registry().start_upload(&repo("app"))).unwrap();
        let chunk = pier_core::body::full_body(vec![7u8; 4]);
        block_on(site.registry().upload_chunk(&repo("app"), &session.id, None, chunk)).unwrap();
        env.advance_millis(2 * DAY_MS);
        let report = block_on(deployment.scheduled_collector(store.clone()).run_to_end()).unwrap();
        assert_eq!(report.uploads_expired, 1, "collect = {collect}");
        assert_eq!(
            block_on(blob_stored(store.as_ref(), &stray)),
            !collect,
            "collect = {collect}"
        );
    }
}
