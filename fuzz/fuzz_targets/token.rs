//! The auth front of the API: the token endpoint's query (GET) and OAuth2
//! form (POST), `Authorization` headers of every shape, and the checks of
//! registry requests with what they got, over a registry with a namespace
//! policy. Nothing may panic or answer 5xx; no write may succeed where the
//! caller could not have been allowed; refusals carry challenges that read
//! back.
//!
//! The policy: `public/**` anyone pulls, robot `ci` pushes; `ci/**` any
//! identity pulls, `ci` pushes and deletes; `prod/**` anyone pulls, nobody
//! writes; other repositories: nobody.
#![no_main]

use std::sync::{Arc, OnceLock};

use arbitrary::Arbitrary;
use bytes::Bytes;
use ct_codecs::Encoder as _;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST, WWW_AUTHENTICATE};
use http::{Method, StatusCode};
use libfuzzer_sys::fuzz_target;
use pier_core::auth::identity::{hash_password, new_robot_token};
use pier_core::auth::token::{new_signing_key, KeyAlgorithm};
use pier_core::auth::{Auth, AuthConfig, ClientAddress};
use pier_core::body::{full_body, RequestBody};
use pier_core::digest::{Algorithm, Digest};
use pier_core::names::RepoName;
use pier_core::registry::RegistryOptions;
use pier_core::remote::challenge::{parse, Challenge};
use pier_core::store::memory::MemoryStore;
use pier_core::testing::TestEnv;
use pier_core::Registry;
use pier_fuzz::{read_response, run};

/// What every input shares: made once, they cost (an Argon2 hash) and are
/// the same every time.
struct Setup {
    config: AuthConfig,
    signing_keys: String,
    robot_token: String,
    alice_password: &'static str,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let env = TestEnv::default();
        let (robot_token, robot_sha256) = new_robot_token(&env);
        let alice_password = "alice-password";
        // The cheapest Argon2id the directory accepts: logins stay fast.
        let alice_hash = hash_password(alice_password, 8, 1, &env).expect("a hash");
        let config = serde_json::json!({
            "service": "pier",
            "users": [{"name": "alice", "password_hash": alice_hash, "groups": ["dev"]}],
            "robots": [{"name": "ci", "token_sha256": robot_sha256}],
            "rules": [
                {"repositories": "public/**", "pull": ["anonymous"], "push": ["ci"]},
                {"repositories": "ci/**", "pull": ["authenticated"], "push": ["ci"], "delete": ["ci"]},
                {"repositories": "prod/**", "pull": ["anonymous"]},
            ],
            // One failure blocks the client: the Argon2 decoy of unknown
            // names runs at most once per input.
            "failed_logins": {"limit": 1, "window_secs": 60},
        });
        Setup {
            config: AuthConfig::from_json(&config.to_string()).expect("a valid auth configuration"),
            signing_keys: format!("{{\"keys\":[{}]}}", new_signing_key(KeyAlgorithm::EdDsa, &env)),
            robot_token,
            alice_password,
        }
    })
}

#[derive(Arbitrary, Debug)]
struct Input {
    steps: Vec<Step>,
}

#[derive(Arbitrary, Debug)]
struct Step {
    credentials: Credentials,
    host: Option<String>,
    forwarded_proto: Option<String>,
    action: StepAction,
}

#[derive(Arbitrary, Debug)]
enum Credentials {
    None,
    Robot,
    RobotWrong(String),
    Alice,
    /// `Basic` of a name and any secret (an unknown name costs an Argon2
    /// decoy hash: rarer, to keep the target fast).
    Basic(Name, String),
    /// The access token of an earlier answer.
    IssuedAccess(u8),
    /// The refresh token of an earlier answer, presented as an access token.
    IssuedRefresh(u8),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum Name {
    Ci,
    Alice,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum StepAction {
    TokenGet {
        params: Vec<Param>,
        raw: Option<String>,
    },
    TokenPost {
        params: Vec<Param>,
        raw: Option<Vec<u8>>,
    },
    Api {
        method: ApiMethod,
        repo: Repo,
        kind: ApiKind,
    },
    RawApi {
        method: ApiMethod,
        path: String,
    },
}

#[derive(Arbitrary, Debug)]
enum Param {
    Service(Option<String>),
    Scope(ScopeText),
    GrantType(String),
    Password,
    Username(String),
    PasswordText(String),
    AccessType(String),
    RefreshToken(Option<u8>, String),
    Other(String, String),
}

#[derive(Arbitrary, Debug)]
enum ScopeText {
    Repository(Repo, Vec<ActionText>),
    Catalog,
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum ActionText {
    Pull,
    Push,
    Delete,
    All,
    Raw(String),
}

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq)]
enum Repo {
    Public,
    Ci,
    Prod,
    Other,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum ApiMethod {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
}

#[derive(Arbitrary, Debug)]
enum ApiKind {
    Ping,
    Catalog,
    Tags,
    Blob,
    /// A monolithic upload of a small blob, optionally mounting from another repository.
    Upload(Option<Repo>),
    Manifest,
}

impl Repo {
    fn name(self) -> &'static str {
        match self {
            Repo::Public => "public/app",
            Repo::Ci => "ci/app",
            Repo::Prod => "prod/app",
            Repo::Other => "other/app",
        }
    }

    /// Whether the robot `ci` may write here (nobody else may write anywhere).
    fn ci_writes(self) -> bool {
        matches!(self, Repo::Public | Repo::Ci)
    }
}

impl ApiMethod {
    fn method(self) -> Method {
        match self {
            ApiMethod::Get => Method::GET,
            ApiMethod::Head => Method::HEAD,
            ApiMethod::Post => Method::POST,
            ApiMethod::Put => Method::PUT,
            ApiMethod::Patch => Method::PATCH,
            ApiMethod::Delete => Method::DELETE,
        }
    }
}

const BLOB: &[u8] = b"{}";

fn blob_digest() -> Digest {
    Digest::of(Algorithm::Sha256, BLOB)
}

/// A manifest of the one blob, as config with no layers.
fn manifest() -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": blob_digest().as_str(), "size": BLOB.len()},
        "layers": [],
    }))
    .expect("json")
}

/// Who a request may act as, at most.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Who {
    Anonymous,
    Alice,
    /// The robot, or a caller whose credentials the fuzzer made up (they
    /// might be the robot's, learnt from an earlier answer).
    MaybeCi,
}

struct Issued {
    access: String,
    refresh: Option<String>,
    who: Who,
}

/// The token request's form (or query), and who a token issued for it may
/// stand for beyond the request's own credentials.
fn form(params: &[Param], issued: &[Issued]) -> (String, Who) {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    let mut who = Who::Anonymous;
    for param in params.iter().take(8) {
        match param {
            Param::Service(service) => out.append_pair("service", service.as_deref().unwrap_or("pier")),
            Param::Scope(scope) => out.append_pair("scope", &scope_text(scope)),
            Param::GrantType(text) => out.append_pair("grant_type", text),
            Param::Password => out.append_pair("grant_type", "password"),
            Param::Username(text) => {
                who = Who::MaybeCi;
                out.append_pair("username", text)
            }
            Param::PasswordText(text) => {
                who = Who::MaybeCi;
                out.append_pair("password", text)
            }
            Param::AccessType(text) => out.append_pair("access_type", text),
            Param::RefreshToken(Some(i), _) if !issued.is_empty() => {
                let token = &issued[*i as usize % issued.len()];
                who = who.max(token.who);
                let refresh = token.refresh.as_deref().unwrap_or("");
                out.append_pair("grant_type", "refresh_token")
                    .append_pair("refresh_token", refresh)
            }
            Param::RefreshToken(_, text) => {
                who = Who::MaybeCi;
                out.append_pair("refresh_token", text)
            }
            Param::Other(key, value) => {
                who = Who::MaybeCi;
                out.append_pair(key, value)
            }
        };
    }
    (out.finish(), who)
}

fn scope_text(scope: &ScopeText) -> String {
    match scope {
        ScopeText::Catalog => "registry:catalog:*".into(),
        ScopeText::Raw(text) => text.clone(),
        ScopeText::Repository(repo, actions) => {
            let actions: Vec<&str> = actions
                .iter()
                .take(4)
                .map(|a| match a {
                    ActionText::Pull => "pull",
                    ActionText::Push => "push",
                    ActionText::Delete => "delete",
                    ActionText::All => "*",
                    ActionText::Raw(text) => text.as_str(),
                })
                .collect();
            format!("repository:{}:{}", repo.name(), actions.join(","))
        }
    }
}

fn basic(name: &str, secret: &str) -> String {
    let encoded = ct_codecs::Base64::encode_to_string(format!("{name}:{secret}")).expect("base64 of a short string");
    format!("Basic {encoded}")
}

fuzz_target!(|input: Input| {
    let setup = setup();
    let env = Arc::new(TestEnv::default());
    let auth = Auth::new(setup.config.clone(), &setup.signing_keys, env.clone()).expect("valid auth");
    let registry = Registry::new(Arc::new(MemoryStore::new(64)), env.clone(), RegistryOptions::default());
    // Something to read in every repository.
    for repo in [Repo::Public, Repo::Ci, Repo::Prod, Repo::Other] {
        let repo = RepoName::parse(repo.name()).expect("valid");
        run(registry.upload_whole(&repo, &blob_digest(), full_body(BLOB))).expect("blob");
        let reference = pier_core::records::Reference::Tag(pier_core::names::Tag::parse("v1").expect("valid"));
        run(registry.put_manifest(&repo, &reference, None, manifest().into(), &[])).expect("manifest");
    }
    let mut issued: Vec<Issued> = Vec::new();

    for step in input.steps.iter().take(12) {
        env.advance_millis(1000);
        let (authorization, mut who) = match &step.credentials {
            Credentials::None => (None, Who::Anonymous),
            Credentials::Robot => (Some(basic("ci", &setup.robot_token)), Who::MaybeCi),
            Credentials::RobotWrong(secret) => (Some(basic("ci", secret)), Who::MaybeCi),
            Credentials::Alice => (Some(basic("alice", setup.alice_password)), Who::Alice),
            Credentials::Basic(name, secret) => {
                let name = match name {
                    Name::Ci => "ci",
                    Name::Alice => "alice",
                    Name::Other(name) => name.as_str(),
                };
                (Some(basic(name, secret)), Who::MaybeCi)
            }
            Credentials::IssuedAccess(i) | Credentials::IssuedRefresh(i) if !issued.is_empty() => {
                let token = &issued[*i as usize % issued.len()];
                let value = match &step.credentials {
                    Credentials::IssuedRefresh(_) => token.refresh.clone().unwrap_or_default(),
                    _ => token.access.clone(),
                };
                (Some(format!("Bearer {value}")), token.who)
            }
            Credentials::IssuedAccess(_) | Credentials::IssuedRefresh(_) => (None, Who::Anonymous),
            Credentials::Raw(text) => (Some(text.clone()), Who::MaybeCi),
        };
        let (method, uri, body, repo, writes): (Method, String, Vec<u8>, Option<Repo>, bool) = match &step.action {
            StepAction::TokenGet { params, raw } => {
                let (query, stands_for) = match raw {
                    Some(raw) => (raw.clone(), Who::MaybeCi),
                    None => form(params, &issued),
                };
                who = who.max(stands_for);
                (Method::GET, format!("/token?{query}"), Vec::new(), None, false)
            }
            StepAction::TokenPost { params, raw } => {
                let (body, stands_for) = match raw {
                    Some(raw) => (raw.clone(), Who::MaybeCi),
                    None => {
                        let (text, stands_for) = form(params, &issued);
                        (text.into_bytes(), stands_for)
                    }
                };
                who = who.max(stands_for);
                (Method::POST, "/token".into(), body, None, false)
            }
            StepAction::Api { method, repo, kind } => {
                let name = repo.name();
                let method = method.method();
                let writes = !matches!(method, Method::GET | Method::HEAD);
                let (uri, body) = match kind {
                    ApiKind::Ping => ("/v2/".to_string(), Vec::new()),
                    ApiKind::Catalog => ("/v2/_catalog".to_string(), Vec::new()),
                    ApiKind::Tags => (format!("/v2/{name}/tags/list"), Vec::new()),
                    ApiKind::Blob => (format!("/v2/{name}/blobs/{}", blob_digest()), Vec::new()),
                    ApiKind::Upload(None) => (
                        format!("/v2/{name}/blobs/uploads/?digest={}", blob_digest()),
                        BLOB.to_vec(),
                    ),
                    ApiKind::Upload(Some(from)) => (
                        format!("/v2/{name}/blobs/uploads/?mount={}&from={}", blob_digest(), from.name()),
                        Vec::new(),
                    ),
                    ApiKind::Manifest => (format!("/v2/{name}/manifests/v1"), manifest()),
                };
                let per_repo = !matches!(kind, ApiKind::Ping | ApiKind::Catalog);
                (method, uri, body, per_repo.then_some(*repo), writes)
            }
            StepAction::RawApi { method, path } => (method.method(), path.clone(), Vec::new(), None, false),
        };
        let mut request = http::Request::builder().method(method.clone()).uri(uri.as_str());
        if let Some(value) = authorization
            .as_deref()
            .filter(|v| http::HeaderValue::from_str(v).is_ok())
        {
            request = request.header(AUTHORIZATION, value);
        }
        if let Some(host) = step.host.as_deref().filter(|v| http::HeaderValue::from_str(v).is_ok()) {
            request = request.header(HOST, host);
        }
        if let Some(proto) = step
            .forwarded_proto
            .as_deref()
            .filter(|v| http::HeaderValue::from_str(v).is_ok())
        {
            request = request.header("x-forwarded-proto", proto);
        }
        if matches!(step.action, StepAction::TokenPost { .. }) {
            request = request.header(CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        let Ok(mut request) = request.body::<RequestBody>(full_body(Bytes::from(body))) else {
            continue;
        };
        request.extensions_mut().insert(ClientAddress("203.0.113.7".into()));
        let response = run(pier_core::api::handle(
            pier_core::api::Service {
                auth: Some(&auth),
                ..pier_core::api::Service::open(&registry)
            },
            request,
        ));
        let status = response.status();
        assert!(!status.is_server_error(), "{method} {uri}: {status}");
        let (parts, body) = read_response(response);

        if status == StatusCode::UNAUTHORIZED {
            let challenge = parts
                .headers
                .get(WWW_AUTHENTICATE)
                .expect("a 401 says how to authenticate")
                .to_str()
                .expect("a challenge is text");
            match parse(challenge) {
                Some(Challenge::Bearer { realm, service, .. }) => {
                    assert!(realm.ends_with("/token"), "{challenge}");
                    assert_eq!(service.as_deref(), Some("pier"));
                }
                Some(Challenge::Basic) => assert!(uri.starts_with("/token")),
                None => panic!("unreadable challenge {challenge:?}"),
            }
        }
        if status.is_success() && uri.starts_with("/token") {
            let answer: serde_json::Value = serde_json::from_slice(&body).expect("a token answer is JSON");
            let access = answer["token"]
                .as_str()
                .expect("a token answer has a token")
                .to_string();
            let refresh = answer["refresh_token"].as_str().map(str::to_string);
            // A token issued to whoever presented these credentials (a
            // refresh token stands for whom it was issued to).
            issued.push(Issued { access, refresh, who });
        }
        if status.is_success() {
            if let Some(repo) = repo {
                if writes {
                    assert!(
                        repo.ci_writes() && who == Who::MaybeCi,
                        "{who:?} wrote: {method} {uri}: {status}"
                    );
                } else if repo == Repo::Ci {
                    assert!(who != Who::Anonymous, "anonymous read {uri}");
                } else {
                    assert!(repo != Repo::Other, "{who:?} read {uri}, which nobody may");
                }
            }
            if uri == "/v2/_catalog" && method == Method::GET {
                let listed = String::from_utf8_lossy(&body);
                assert!(!listed.contains("other/app"), "the catalog shows what nobody may pull");
                assert!(
                    who != Who::Anonymous || !listed.contains("ci/app"),
                    "anonymous sees ci/app listed"
                );
            }
        }
    }
});
