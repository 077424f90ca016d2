//! Auth through the HTTP layer (`api::handle_with_auth`) over the in-memory
//! store: challenges, Basic and Bearer on `/v2/`, the token endpoint (GET
//! and the OAuth2 POST form), every forged or unusable token, policy
//! refusals, catalog filtering, mount sources, failed-login limits (and
//! password checks handed to the platform's heavy-work hook), refresh-token
//! revocation and who may read the metrics. Tests named `f<N>_` guard the
//! findings of issue 13 (docs/security.md).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::executor::block_on;
use futures::StreamExt;
use http::{Method, Request, StatusCode};
use jwt_simple::prelude::*;
use pier_core::api::{handle, Body, HttpResponse, Service};
use pier_core::auth::identity::{hash_password, new_robot_token};
use pier_core::auth::token::{new_signing_key, KeyAlgorithm};
use pier_core::auth::{Auth, AuthConfig, ClientAddress, ClientCertificate, RequestOrigin};
use pier_core::body::{empty_body, full_body};
use pier_core::digest::{Algorithm, Digest};
use pier_core::gc::{Gc, GcConfig};
use pier_core::platform::Env;
use pier_core::registry::RegistryOptions;
use pier_core::store::memory::MemoryStore;
use pier_core::testing::TestEnv;
use pier_core::Registry;
use serde_json::{json, Value};

/// The API of `registry` behind `auth`.
fn with_auth<'a>(registry: &'a Registry, auth: &'a Auth) -> Service<'a> {
    Service {
        auth: Some(auth),
        ..Service::open(registry)
    }
}

const NOW_MS: u64 = 1_700_000_000_000;
const HOST: &str = "reg.test";

/// A registry with the three-namespace layout of docs/auth.md.
struct Fixture {
    env: Arc<TestEnv>,
    store: Arc<MemoryStore>,
    registry: Registry,
    auth: Auth,
    config: Value,
    signing_key: String,
    ci_token: String,
    promoter_token: String,
}

fn cheap_hash(env: &TestEnv, password: &str) -> String {
    hash_password(password, 256, 1, env).unwrap()
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::with_oidc(json!([]))
    }

    fn with_oidc(oidc: Value) -> Fixture {
        let env = Arc::new(TestEnv::at(NOW_MS));
        let (ci_token, ci_digest) = new_robot_token(env.as_ref());
        let (promoter_token, promoter_digest) = new_robot_token(env.as_ref());
        let config = json!({
            "service": "pier",
            "admins": ["group:admins"],
            "users": [
                { "name": "alice", "password_hash": cheap_hash(&env, "alice-pass"), "groups": ["dev"] },
                { "name": "root", "password_hash": cheap_hash(&env, "root-pass"), "groups": ["admins"] },
            ],
            "robots": [
                { "name": "ci-bot", "token_sha256": ci_digest, "groups": ["ci"] },
                { "name": "promoter", "token_sha256": promoter_digest },
            ],
            "oidc": oidc,
            "certificates": [
                { "subject": "CN=ci-runner,O=acme", "name": "ci-runner", "groups": ["ci"] },
            ],
            "rules": [
                { "repositories": "machines/**", "pull": ["ci-runner"], "push": ["ci-runner"] },
                { "repositories": "sandbox/**", "pull": ["authenticated"], "push": ["authenticated"], "delete": ["authenticated"] },
                { "repositories": "ci/**", "pull": ["anonymous"], "push": ["group:ci"], "delete": ["group:ci"] },
                { "repositories": "prod/**", "pull": ["group:production", "promoter"], "push": ["promoter"] },
                { "repositories": "public/**", "pull": ["anonymous"], "push": ["promoter"] },
            ],
            "failed_logins": { "limit": 3, "window_secs": 60 },
        });
        let signing_key = new_signing_key(KeyAlgorithm::Es256, env.as_ref());
        let auth = Auth::new(
            AuthConfig::from_json(&config.to_string()).unwrap(),
            &signing_key,
            env.clone(),
        )
        .unwrap();
        let store = Arc::new(MemoryStore::new(1 << 20));
        let registry = Registry::new(store.clone(), env.clone(), RegistryOptions::default());
        Fixture {
            env,
            store,
            registry,
            auth,
            config,
            signing_key,
            ci_token,
            promoter_token,
        }
    }

    fn send(&self, request: Request<pier_core::body::RequestBody>) -> Answer {
        Answer::of(block_on(handle(with_auth(&self.registry, &self.auth), request)))
    }

    /// The fixture's auth, built again from its configuration as `change`
    /// leaves it (a restart after the operator edited the configuration).
    fn reconfigured(&self, change: impl FnOnce(&mut Value)) -> Auth {
        let mut config = self.config.clone();
        change(&mut config);
        Auth::new(
            AuthConfig::from_json(&config.to_string()).unwrap(),
            &self.signing_key,
            self.env.clone(),
        )
        .unwrap()
    }

    /// A refresh token from the OAuth2 password grant of `name`.
    fn refresh_token(&self, name: &str, secret: &str) -> String {
        let form = format!("grant_type=password&username={name}&password={secret}&access_type=offline&service=pier");
        let answer = self.call(Method::POST, "/token", None, form.as_bytes());
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        answer.json()["refresh_token"].as_str().unwrap().to_string()
    }

    /// The status of a refresh grant with `refresh_token` against `auth`.
    fn refresh_with(&self, auth: &Auth, refresh_token: &str) -> StatusCode {
        let form = format!("grant_type=refresh_token&refresh_token={refresh_token}&service=pier");
        let answer = Answer::of(block_on(handle(
            with_auth(&self.registry, auth),
            request(Method::POST, "/token", None, form.as_bytes(), "10.0.0.1"),
        )));
        answer.status
    }

    /// A request over a TLS connection whose client certificate the shell
    /// verified, with this subject.
    fn call_certified(&self, subject: &str, method: Method, uri: &str, authorization: Option<&str>) -> Answer {
        let mut request = request(method, uri, authorization, b"", "10.0.0.1");
        request.extensions_mut().insert(ClientCertificate {
            subject: subject.to_string(),
        });
        self.send(request)
    }

    fn call(&self, method: Method, uri: &str, authorization: Option<&str>, body: &[u8]) -> Answer {
        self.send(request(method, uri, authorization, body, "10.0.0.1"))
    }

    /// An access token from the token endpoint.
    fn token(&self, basic: Option<&str>, scopes: &[&str]) -> String {
        let query: String = scopes
            .iter()
            .map(|s| format!("&scope={}", s.replace(' ', "%20")))
            .collect();
        let answer = self.call(Method::GET, &format!("/token?service=pier{query}"), basic, b"");
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        answer.json()["token"].as_str().unwrap().to_string()
    }

    fn push_blob(&self, repo: &str, data: &[u8], authorization: &str) -> Digest {
        let digest = Digest::of(Algorithm::Sha256, data);
        let answer = self.call(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
            Some(authorization),
            data,
        );
        assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
        digest
    }

    /// A token signed with this registry's key, with claims of the test's
    /// choosing.
    fn signed(&self, claims: JWTClaims<Value>) -> String {
        ES256KeyPair::from_jwk(&self.signing_key).unwrap().sign(claims).unwrap()
    }

    fn kid(&self) -> String {
        serde_json::from_str::<Value>(&self.signing_key).unwrap()["kid"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

fn request(
    method: Method,
    uri: &str,
    authorization: Option<&str>,
    body: &[u8],
    client: &str,
) -> Request<pier_core::body::RequestBody> {
    let mut builder = Request::builder().method(method).uri(uri).header("host", HOST);
    if let Some(authorization) = authorization {
        builder = builder.header("authorization", authorization);
    }
    let body = if body.is_empty() {
        empty_body()
    } else {
        full_body(Bytes::copy_from_slice(body))
    };
    let mut request = builder.body(body).unwrap();
    request.extensions_mut().insert(ClientAddress(client.to_string()));
    request
}

fn basic(name: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        Base64::encode_to_string(format!("{name}:{secret}")).unwrap()
    )
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Answer {
    fn of(response: HttpResponse) -> Answer {
        let (parts, body) = response.into_parts();
        let body = match body {
            Body::Empty => Bytes::new(),
            Body::Full(bytes) => bytes,
            Body::Stream { mut stream, .. } => block_on(async {
                let mut all = Vec::new();
                while let Some(chunk) = stream.next().await {
                    all.extend_from_slice(&chunk.unwrap());
                }
                Bytes::from(all)
            }),
        };
        Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", |v| v.to_str().unwrap())
    }

    fn code(&self) -> String {
        self.json()["errors"][0]["code"].as_str().unwrap_or("").to_string()
    }

    /// Asserts a 401 UNAUTHORIZED with a Bearer challenge and returns it.
    fn challenge(&self) -> &str {
        assert_eq!(self.status, StatusCode::UNAUTHORIZED, "{self:?}");
        assert_eq!(self.code(), "UNAUTHORIZED", "{self:?}");
        let challenge = self.header("www-authenticate");
        assert!(
            challenge.starts_with(&format!("Bearer realm=\"http://{HOST}/token\",service=\"pier\"")),
            "{challenge}"
        );
        challenge
    }

    fn denied(&self) {
        assert_eq!(self.status, StatusCode::FORBIDDEN, "{self:?}");
        assert_eq!(self.code(), "DENIED", "{self:?}");
        assert!(self.headers.get("www-authenticate").is_none());
    }
}

/// The claims of a normal access token for `access`, to be altered.
fn claims(fixture: &Fixture, access: Value) -> JWTClaims<Value> {
    let now = UnixTimeStamp::from_secs(fixture.env.now_millis() / 1000);
    JWTClaims {
        issued_at: Some(now),
        expires_at: Some(now + Duration::from_secs(300)),
        invalid_before: Some(now),
        audiences: Some(Audiences::AsString("pier".into())),
        issuer: Some("pier".into()),
        jwt_id: None,
        subject: Some("alice".into()),
        nonce: None,
        custom: json!({ "access": access, "groups": ["dev"], "kind": "user" }),
    }
}

fn sandbox_pull() -> Value {
    json!([{ "type": "repository", "name": "sandbox/app", "actions": ["pull"] }])
}

const SANDBOX_TAGS: &str = "/v2/sandbox/app/tags/list";

// ---------------------------------------------------------------- basics

#[test]
fn without_auth_the_registry_stays_open_and_has_no_token_endpoint() {
    let fixture = Fixture::new();
    let open = |uri: &str| {
        Answer::of(block_on(handle(
            Service::open(&fixture.registry),
            request(Method::GET, uri, None, b"", "c"),
        )))
    };
    assert_eq!(open("/v2/").status, StatusCode::OK);
    assert_eq!(open("/token").status, StatusCode::NOT_FOUND);
}

#[test]
fn the_version_check_challenges_callers_without_credentials() {
    let fixture = Fixture::new();
    let answer = fixture.call(Method::GET, "/v2/", None, b"");
    assert_eq!(
        answer.challenge(),
        "Bearer realm=\"http://reg.test/token\",service=\"pier\""
    );
    assert_eq!(answer.header("docker-distribution-api-version"), "registry/2.0");
    assert_eq!(
        fixture
            .call(Method::GET, "/v2/", Some(&basic("alice", "alice-pass")), b"")
            .status,
        StatusCode::OK
    );
    let token = fixture.token(Some(&basic("alice", "alice-pass")), &[]);
    assert_eq!(
        fixture.call(Method::GET, "/v2/", Some(&bearer(&token)), b"").status,
        StatusCode::OK
    );
}

#[test]
fn the_realm_follows_the_configuration_the_addressed_origin_or_the_forwarded_scheme() {
    let fixture = Fixture::new();
    let mut forwarded = request(Method::GET, "/v2/", None, b"", "c");
    forwarded
        .headers_mut()
        .insert("x-forwarded-proto", "https".parse().unwrap());
    let answer = fixture.send(forwarded);
    assert!(answer
        .header("www-authenticate")
        .starts_with("Bearer realm=\"https://reg.test/token\""));
    // A shell that knows the URL the client used (the edge) says so; it wins
    // over the headers.
    let mut addressed = request(Method::GET, "/v2/", None, b"", "c");
    addressed
        .extensions_mut()
        .insert(RequestOrigin("https://edge.example".into()));
    let answer = fixture.send(addressed);
    assert!(answer
        .header("www-authenticate")
        .starts_with("Bearer realm=\"https://edge.example/token\""));
    let mut config = fixture.config.clone();
    config["realm"] = json!("https://auth.example/token");
    let auth = Auth::new(
        AuthConfig::from_json(&config.to_string()).unwrap(),
        &fixture.signing_key,
        fixture.env.clone(),
    )
    .unwrap();
    let answer = Answer::of(block_on(handle(
        with_auth(&fixture.registry, &auth),
        request(Method::GET, "/v2/", None, b"", "c"),
    )));
    assert!(answer
        .header("www-authenticate")
        .starts_with("Bearer realm=\"https://auth.example/token\""));
}

#[test]
fn anonymous_pulls_work_where_policy_allows_and_are_challenged_elsewhere() {
    let fixture = Fixture::new();
    let ci = basic("ci-bot", &fixture.ci_token);
    let digest = fixture.push_blob("ci/app", b"layer", &ci);
    let answer = fixture.call(Method::GET, &format!("/v2/ci/app/blobs/{digest}"), None, b"");
    assert_eq!((answer.status, answer.body.as_ref()), (StatusCode::OK, &b"layer"[..]));
    let answer = fixture.call(Method::GET, &format!("/v2/sandbox/app/blobs/{digest}"), None, b"");
    assert!(answer.challenge().ends_with(",scope=\"repository:sandbox/app:pull\""));
    let answer = fixture.call(Method::POST, "/v2/ci/app/blobs/uploads/", None, b"");
    assert!(answer.challenge().ends_with(",scope=\"repository:ci/app:pull,push\""));
    let answer = fixture.call(Method::DELETE, &format!("/v2/ci/app/blobs/{digest}"), None, b"");
    assert!(answer.challenge().ends_with(",scope=\"repository:ci/app:delete\""));
}

#[test]
fn only_what_anyone_may_pull_is_left_to_shared_caches() {
    let fixture = Fixture::new();
    let root = basic("root", "root-pass");
    for (repo, cache_control) in [
        ("ci/app", "public, max-age=31536000, immutable"),
        ("sandbox/app", "private, max-age=31536000, immutable"),
    ] {
        let digest = fixture.push_blob(repo, b"cacheable?", &root);
        let answer = fixture.call(Method::GET, &format!("/v2/{repo}/blobs/{digest}"), Some(&root), b"");
        assert_eq!(answer.header("cache-control"), cache_control, "{repo}");
    }
}

#[test]
fn basic_credentials_on_registry_requests_follow_the_policy() {
    let fixture = Fixture::new();
    let alice = basic("alice", "alice-pass");
    fixture.push_blob("sandbox/app", b"mine", &alice);
    let answer = fixture.call(Method::POST, "/v2/ci/app/blobs/uploads/", Some(&alice), b"");
    answer.denied();
    assert_eq!(
        answer.json()["errors"][0]["detail"],
        json!({ "repository": "ci/app", "action": "push" })
    );
    fixture
        .call(Method::GET, "/v2/prod/app/tags/list", Some(&alice), b"")
        .denied();
    let answer = fixture.call(Method::GET, "/v2/", Some(&basic("alice", "wrong")), b"");
    answer.challenge();
    let answer = fixture.call(Method::GET, "/v2/", Some("Negotiate abc"), b"");
    answer.challenge();
}

#[test]
fn nobody_deletes_in_prod_but_ci_robots_delete_in_ci() {
    let fixture = Fixture::new();
    let promoter = basic("promoter", &fixture.promoter_token);
    let digest = fixture.push_blob("prod/app", b"release", &promoter);
    fixture
        .call(
            Method::DELETE,
            &format!("/v2/prod/app/blobs/{digest}"),
            Some(&promoter),
            b"",
        )
        .denied();
    let ci = basic("ci-bot", &fixture.ci_token);
    let digest = fixture.push_blob("ci/app", b"build", &ci);
    let answer = fixture.call(Method::DELETE, &format!("/v2/ci/app/blobs/{digest}"), Some(&ci), b"");
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{answer:?}");
}

// ---------------------------------------------------------------- token endpoint

#[test]
fn the_token_endpoint_grants_only_what_the_policy_allows() {
    let fixture = Fixture::new();
    let ci = basic("ci-bot", &fixture.ci_token);
    let answer = fixture.call(
        Method::GET,
        "/token?service=pier&scope=repository:ci/app:pull,push&scope=repository:prod/app:pull,push",
        Some(&ci),
        b"",
    );
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.header("cache-control"), "no-store");
    let body = answer.json();
    assert_eq!(body["token"], body["access_token"]);
    assert_eq!(body["expires_in"], json!(300));
    assert_eq!(body["issued_at"], json!("2023-11-14T22:13:20Z"));
    let token = body["token"].as_str().unwrap();
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&Base64UrlSafeNoPadding::decode_to_vec(payload, None).unwrap()).unwrap();
    assert_eq!(
        claims["access"],
        json!([{ "type": "repository", "name": "ci/app", "actions": ["pull", "push"] }])
    );
    assert_eq!(
        (claims["sub"].as_str(), claims["aud"].as_str()),
        (Some("ci-bot"), Some("pier"))
    );

    let pushed = fixture.call(Method::POST, "/v2/ci/app/blobs/uploads/", Some(&bearer(token)), b"");
    assert_eq!(pushed.status, StatusCode::ACCEPTED, "{pushed:?}");
    fixture
        .call(Method::POST, "/v2/prod/app/blobs/uploads/", Some(&bearer(token)), b"")
        .denied();
}

#[test]
fn anonymous_tokens_carry_only_anonymous_rights() {
    let fixture = Fixture::new();
    let token = fixture.token(None, &["repository:ci/app:pull,push", "repository:sandbox/app:pull"]);
    let with_token = |method, uri: &str| fixture.call(method, uri, Some(&bearer(&token)), b"");
    assert_eq!(with_token(Method::GET, "/v2/ci/app/tags/list").code(), "NAME_UNKNOWN");
    with_token(Method::POST, "/v2/ci/app/blobs/uploads/").challenge();
    with_token(Method::GET, SANDBOX_TAGS).challenge();
}

#[test]
fn several_scopes_in_one_parameter_are_all_considered() {
    let fixture = Fixture::new();
    let alice = basic("alice", "alice-pass");
    let token = fixture.token(Some(&alice), &["repository:sandbox/a:pull repository:sandbox/b:push"]);
    assert_eq!(
        fixture
            .call(Method::GET, "/v2/sandbox/a/tags/list", Some(&bearer(&token)), b"")
            .code(),
        "NAME_UNKNOWN"
    );
    let answer = fixture.call(Method::POST, "/v2/sandbox/b/blobs/uploads/", Some(&bearer(&token)), b"");
    assert_eq!(answer.status, StatusCode::ACCEPTED);
}

#[test]
fn the_token_endpoint_refuses_bad_credentials_with_a_basic_challenge() {
    let fixture = Fixture::new();
    for credentials in [
        basic("alice", "nope"),
        basic("nobody", "x"),
        basic("ci-bot", "pier_forged"),
    ] {
        let answer = fixture.send(request(
            Method::GET,
            "/token?service=pier",
            Some(&credentials),
            b"",
            "10.9.9.9",
        ));
        assert_eq!(
            (answer.status, answer.code().as_str()),
            (StatusCode::UNAUTHORIZED, "UNAUTHORIZED")
        );
        assert_eq!(
            answer.header("www-authenticate"),
            "Basic realm=\"pier\",charset=\"UTF-8\""
        );
    }
    let answer = fixture.call(Method::GET, "/token?service=elsewhere", None, b"");
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
}

#[test]
fn failed_logins_are_limited_per_client() {
    let fixture = Fixture::new();
    let attempt = |client: &str, password: &str| {
        fixture.send(request(
            Method::GET,
            "/token",
            Some(&basic("alice", password)),
            b"",
            client,
        ))
    };
    for _ in 0..3 {
        assert_eq!(attempt("10.6.6.6", "guess").status, StatusCode::UNAUTHORIZED);
    }
    let blocked = attempt("10.6.6.6", "alice-pass");
    assert_eq!(
        (blocked.status, blocked.code().as_str()),
        (StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS")
    );
    assert_eq!(blocked.header("retry-after"), "60");
    let direct = fixture.send(request(
        Method::GET,
        "/v2/",
        Some(&basic("alice", "alice-pass")),
        b"",
        "10.6.6.6",
    ));
    assert_eq!(direct.status, StatusCode::TOO_MANY_REQUESTS, "Basic on /v2/ counts too");
    assert_eq!(
        attempt("10.7.7.7", "alice-pass").status,
        StatusCode::OK,
        "other clients log in"
    );
    fixture.env.advance_millis(60_000);
    assert_eq!(
        attempt("10.6.6.6", "alice-pass").status,
        StatusCode::OK,
        "the window ended"
    );
}

#[test]
fn the_oauth2_form_gives_refresh_tokens_that_give_access_tokens() {
    let fixture = Fixture::new();
    let form = "grant_type=password&username=alice&password=alice-pass&service=pier\
                &client_id=docker&access_type=offline&scope=repository%3Asandbox%2Fapp%3Apull";
    let answer = fixture.call(Method::POST, "/token", None, form.as_bytes());
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let refresh = answer.json()["refresh_token"].as_str().unwrap().to_string();
    let access = answer.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        fixture
            .call(Method::GET, SANDBOX_TAGS, Some(&bearer(&access)), b"")
            .code(),
        "NAME_UNKNOWN"
    );
    fixture
        .call(Method::GET, SANDBOX_TAGS, Some(&bearer(&refresh)), b"")
        .challenge();

    let form = format!("grant_type=refresh_token&refresh_token={refresh}&service=pier&scope=repository:sandbox/b:push");
    let answer = fixture.call(Method::POST, "/token", None, form.as_bytes());
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let access = answer.json()["access_token"].as_str().unwrap().to_string();
    let pushed = fixture.call(
        Method::POST,
        "/v2/sandbox/b/blobs/uploads/",
        Some(&bearer(&access)),
        b"",
    );
    assert_eq!(pushed.status, StatusCode::ACCEPTED);

    let form = format!("grant_type=refresh_token&refresh_token={access}&service=pier");
    assert_eq!(
        fixture.call(Method::POST, "/token", None, form.as_bytes()).status,
        StatusCode::UNAUTHORIZED,
        "an access token is no refresh token"
    );
    let answer = fixture.call(Method::POST, "/token", None, b"grant_type=client_credentials");
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
}

#[test]
fn a_removed_user_can_no_longer_refresh() {
    let fixture = Fixture::new();
    let form = "grant_type=password&username=alice&password=alice-pass&access_type=offline";
    let refresh = fixture.call(Method::POST, "/token", None, form.as_bytes()).json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    let mut config = fixture.config.clone();
    config["users"].as_array_mut().unwrap().retain(|u| u["name"] != "alice");
    let auth = Auth::new(
        AuthConfig::from_json(&config.to_string()).unwrap(),
        &fixture.signing_key,
        fixture.env.clone(),
    )
    .unwrap();
    let form = format!("grant_type=refresh_token&refresh_token={refresh}");
    let answer = Answer::of(block_on(handle(
        with_auth(&fixture.registry, &auth),
        request(Method::POST, "/token", None, form.as_bytes(), "c"),
    )));
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
}

// ---------------------------------------------------------------- forged and unusable tokens

fn assert_invalid_token(fixture: &Fixture, token: &str) {
    let answer = fixture.call(Method::GET, SANDBOX_TAGS, Some(&bearer(token)), b"");
    let challenge = answer.challenge();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert!(
        challenge.contains("scope=\"repository:sandbox/app:pull\""),
        "{challenge}"
    );
}

#[test]
fn a_well_formed_token_is_accepted() {
    let fixture = Fixture::new();
    let token = fixture.signed(claims(&fixture, sandbox_pull()));
    let answer = fixture.call(Method::GET, SANDBOX_TAGS, Some(&bearer(&token)), b"");
    assert_eq!(
        answer.code(),
        "NAME_UNKNOWN",
        "the baseline the forgeries below differ from"
    );
}

#[test]
fn a_token_with_a_wrong_signature_is_refused() {
    let fixture = Fixture::new();
    let token = fixture.signed(claims(&fixture, sandbox_pull()));
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    let mut tampered = claims(&fixture, sandbox_pull());
    tampered.custom["access"][0]["actions"] = json!(["pull", "push", "delete"]);
    parts[1] = Base64UrlSafeNoPadding::encode_to_string(serde_json::to_vec(&tampered).unwrap()).unwrap();
    assert_invalid_token(&fixture, &parts.join("."));
}

#[test]
fn a_token_with_alg_none_is_refused() {
    let fixture = Fixture::new();
    let header = json!({ "alg": "none", "typ": "JWT", "kid": fixture.kid() });
    let encode = |v: &Value| Base64UrlSafeNoPadding::encode_to_string(v.to_string()).unwrap();
    let claims = serde_json::to_value(claims(&fixture, sandbox_pull())).unwrap();
    assert_invalid_token(&fixture, &format!("{}.{}.", encode(&header), encode(&claims)));
}

#[test]
fn a_token_signed_by_another_key_under_our_kid_is_refused() {
    let fixture = Fixture::new();
    let impostor = ES256KeyPair::generate().with_key_id(&fixture.kid());
    assert_invalid_token(&fixture, &impostor.sign(claims(&fixture, sandbox_pull())).unwrap());
}

#[test]
fn a_token_of_an_unknown_key_is_refused() {
    let fixture = Fixture::new();
    let other = ES256KeyPair::generate().with_key_id("someone-else");
    assert_invalid_token(&fixture, &other.sign(claims(&fixture, sandbox_pull())).unwrap());
}

#[test]
fn an_expired_token_is_refused() {
    let fixture = Fixture::new();
    let mut expired = claims(&fixture, sandbox_pull());
    expired.issued_at = Some(UnixTimeStamp::from_secs(NOW_MS / 1000 - 3600));
    expired.invalid_before = expired.issued_at;
    expired.expires_at = Some(UnixTimeStamp::from_secs(NOW_MS / 1000 - 3300));
    assert_invalid_token(&fixture, &fixture.signed(expired));
}

#[test]
fn a_token_not_valid_yet_is_refused() {
    let fixture = Fixture::new();
    let mut future = claims(&fixture, sandbox_pull());
    future.invalid_before = Some(UnixTimeStamp::from_secs(NOW_MS / 1000 + 3600));
    future.expires_at = Some(UnixTimeStamp::from_secs(NOW_MS / 1000 + 7200));
    assert_invalid_token(&fixture, &fixture.signed(future));
}

#[test]
fn a_token_for_another_audience_is_refused() {
    let fixture = Fixture::new();
    let mut elsewhere = claims(&fixture, sandbox_pull());
    elsewhere.audiences = Some(Audiences::AsString("another-registry".into()));
    assert_invalid_token(&fixture, &fixture.signed(elsewhere));
}

#[test]
fn a_token_from_another_issuer_is_refused() {
    let fixture = Fixture::new();
    let mut foreign = claims(&fixture, sandbox_pull());
    foreign.issuer = Some("someone-else".into());
    assert_invalid_token(&fixture, &fixture.signed(foreign));
}

#[test]
fn a_token_without_expiry_is_refused() {
    let fixture = Fixture::new();
    let mut forever = claims(&fixture, sandbox_pull());
    forever.expires_at = None;
    assert_invalid_token(&fixture, &fixture.signed(forever));
}

#[test]
fn a_scope_the_token_lacks_but_the_caller_may_have_asks_for_a_new_token() {
    let fixture = Fixture::new();
    let token = fixture.signed(claims(&fixture, sandbox_pull()));
    let answer = fixture.call(
        Method::POST,
        "/v2/sandbox/app/blobs/uploads/",
        Some(&bearer(&token)),
        b"",
    );
    let challenge = answer.challenge();
    assert!(
        challenge.contains("scope=\"repository:sandbox/app:pull,push\""),
        "{challenge}"
    );
    assert!(challenge.ends_with("error=\"insufficient_scope\""), "{challenge}");
}

#[test]
fn a_scope_the_policy_refuses_to_the_caller_is_denied() {
    let fixture = Fixture::new();
    let forged_grant = json!([{ "type": "repository", "name": "ci/app", "actions": ["pull"] }]);
    let token = fixture.signed(claims(&fixture, forged_grant));
    fixture
        .call(Method::POST, "/v2/ci/app/blobs/uploads/", Some(&bearer(&token)), b"")
        .denied();
    fixture
        .call(Method::GET, "/v2/prod/app/tags/list", Some(&bearer(&token)), b"")
        .denied();
}

// ---------------------------------------------------------------- listings and mounts

#[test]
fn the_catalog_lists_only_what_the_caller_may_pull() {
    let fixture = Fixture::new();
    let root = basic("root", "root-pass");
    for repo in ["ci/app", "prod/app", "sandbox/app"] {
        let digest = fixture.push_blob(repo, b"{}", &root);
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest.as_str(), "size": 2 },
            "layers": [],
        })
        .to_string();
        let mut put = request(
            Method::PUT,
            &format!("/v2/{repo}/manifests/v1"),
            Some(&root),
            manifest.as_bytes(),
            "c",
        );
        put.headers_mut().insert(
            "content-type",
            "application/vnd.oci.image.manifest.v1+json".parse().unwrap(),
        );
        assert_eq!(fixture.send(put).status, StatusCode::CREATED);
    }
    let listed = |authorization: Option<&str>, query: &str| {
        let answer = fixture.call(Method::GET, &format!("/v2/_catalog{query}"), authorization, b"");
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        (answer.json()["repositories"].clone(), answer.header("link").to_string())
    };
    fixture.call(Method::GET, "/v2/_catalog", None, b"").challenge();
    assert_eq!(
        listed(Some(&basic("alice", "alice-pass")), "").0,
        json!(["ci/app", "sandbox/app"])
    );
    let (page, link) = listed(Some(&basic("alice", "alice-pass")), "?n=1");
    assert_eq!(page, json!(["ci/app"]));
    assert_eq!(link, "</v2/_catalog?n=1&last=ci%2Fapp>; rel=\"next\"");
    let (page, link) = listed(Some(&basic("alice", "alice-pass")), "?n=1&last=ci%2Fapp");
    assert_eq!((page, link.as_str()), (json!(["sandbox/app"]), ""));
    assert_eq!(listed(Some(&root), "").0, json!(["ci/app", "prod/app", "sandbox/app"]));
    let repo_only = fixture.token(Some(&root), &["repository:ci/app:pull"]);
    let answer = fixture.call(Method::GET, "/v2/_catalog", Some(&bearer(&repo_only)), b"");
    assert!(answer.challenge().contains("scope=\"registry:catalog:*\""));
}

#[test]
fn referrers_need_pull_on_the_repository() {
    let fixture = Fixture::new();
    let subject = Digest::of(Algorithm::Sha256, b"x");
    let uri = format!("/v2/sandbox/app/referrers/{subject}");
    fixture.call(Method::GET, &uri, None, b"").challenge();
    let answer = fixture.call(Method::GET, &uri, Some(&basic("alice", "alice-pass")), b"");
    assert_eq!(answer.status, StatusCode::OK);
    let answer = fixture.call(
        Method::GET,
        &format!("/v2/prod/app/referrers/{subject}"),
        Some(&basic("alice", "alice-pass")),
        b"",
    );
    answer.denied();
}

#[test]
fn mounts_take_blobs_only_from_sources_the_caller_may_pull() {
    let fixture = Fixture::new();
    let promoter = basic("promoter", &fixture.promoter_token);
    let digest = fixture.push_blob("prod/app", b"secret layer", &promoter);
    let alice = basic("alice", "alice-pass");
    let mount = |authorization: &str, from: Option<&str>| {
        let from = from.map_or(String::new(), |f| format!("&from={f}"));
        fixture.call(
            Method::POST,
            &format!("/v2/sandbox/copy/blobs/uploads/?mount={digest}{from}"),
            Some(authorization),
            b"",
        )
    };
    assert_eq!(
        mount(&alice, Some("prod/app")).status,
        StatusCode::ACCEPTED,
        "an upload, not a mount"
    );
    assert_eq!(
        mount(&alice, None).status,
        StatusCode::ACCEPTED,
        "no automatic mount for non-admins"
    );
    let answer = fixture.call(
        Method::GET,
        &format!("/v2/sandbox/copy/blobs/{digest}"),
        Some(&alice),
        b"",
    );
    assert_eq!(answer.code(), "BLOB_UNKNOWN");
    let root = basic("root", "root-pass");
    assert_eq!(mount(&root, Some("prod/app")).status, StatusCode::CREATED);
    assert_eq!(mount(&root, None).status, StatusCode::CREATED);
}

#[test]
fn a_token_without_the_mount_source_asks_for_both_scopes() {
    let fixture = Fixture::new();
    let promoter = basic("promoter", &fixture.promoter_token);
    let digest = fixture.push_blob("prod/app", b"layer", &promoter);
    let push_only = fixture.token(Some(&promoter), &["repository:public/app:pull,push"]);
    let uri = format!("/v2/public/app/blobs/uploads/?mount={digest}&from=prod/app");
    let challenge = fixture.call(Method::POST, &uri, Some(&bearer(&push_only)), b"");
    assert!(challenge
        .challenge()
        .contains("scope=\"repository:public/app:pull,push repository:prod/app:pull\",error=\"insufficient_scope\""));
    let both = fixture.token(
        Some(&promoter),
        &["repository:public/app:pull,push", "repository:prod/app:pull"],
    );
    assert_eq!(
        fixture.call(Method::POST, &uri, Some(&bearer(&both)), b"").status,
        StatusCode::CREATED
    );
}

// ---------------------------------------------------------------- OIDC

#[test]
fn an_oidc_id_token_logs_in_as_its_mapped_identity() {
    let (fixture, provider) = oidc_fixture();
    let id_token = |repository: &str| id_token(&provider, repository, 600);
    let token = fixture.token(
        Some(&basic("oidc", &id_token("acme/release"))),
        &["repository:prod/app:pull,push"],
    );
    let pushed = fixture.call(Method::POST, "/v2/prod/app/blobs/uploads/", Some(&bearer(&token)), b"");
    assert_eq!(pushed.status, StatusCode::ACCEPTED, "{pushed:?}");
    let answer = fixture.call(
        Method::GET,
        "/token",
        Some(&basic("oidc", &id_token("acme/other"))),
        b"",
    );
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
}

#[test]
fn only_admins_read_the_gc_report() {
    let fixture = Fixture::new();
    let path = "/_pier/gc/report";
    let anonymous = fixture.call(Method::GET, path, None, b"");
    assert!(!anonymous.challenge().contains("scope="), "no scope to ask for");
    let alice = basic("alice", "alice-pass");
    fixture.call(Method::GET, path, Some(&alice), b"").denied();
    let alice_token = fixture.token(Some(&alice), &[]);
    fixture
        .call(Method::GET, path, Some(&bearer(&alice_token)), b"")
        .denied();
    let ci_token = fixture.token(Some(&basic("ci-bot", &fixture.ci_token)), &[]);
    fixture.call(Method::GET, path, Some(&bearer(&ci_token)), b"").denied();
    let anonymous_token = fixture.token(None, &[]);
    fixture
        .call(Method::GET, path, Some(&bearer(&anonymous_token)), b"")
        .challenge();
    assert_eq!(
        fixture
            .call(Method::GET, path, Some(&basic("root", "wrong")), b"")
            .status,
        StatusCode::UNAUTHORIZED
    );

    let root = basic("root", "root-pass");
    let none_yet = fixture.call(Method::GET, path, Some(&root), b"");
    assert_eq!(none_yet.status, StatusCode::NOT_FOUND, "{none_yet:?}");
    assert_eq!(none_yet.code(), "GC_REPORT_UNKNOWN");

    let report =
        block_on(Gc::new(fixture.store.clone(), fixture.env.clone(), GcConfig::default(), false).run_to_end()).unwrap();
    let root_token = fixture.token(Some(&root), &[]);
    for authorization in [root, bearer(&root_token)] {
        let answer = fixture.call(Method::GET, path, Some(&authorization), b"");
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        assert_eq!(answer.header("content-type"), "application/json");
        assert_eq!(answer.header("cache-control"), "no-store");
        assert_eq!(answer.json()["run"], report.run.as_str());
        assert_eq!(answer.json()["steps"], report.steps);
    }
    fixture.call(Method::GET, path, Some(&alice), b"").denied();
}

#[test]
fn without_auth_the_gc_report_is_open() {
    let fixture = Fixture::new();
    let open = |method: Method| {
        Answer::of(block_on(handle(
            Service::open(&fixture.registry),
            request(method, "/_pier/gc/report", None, b"", "c"),
        )))
    };
    let none_yet = open(Method::GET);
    assert_eq!(
        (none_yet.status, none_yet.code().as_str()),
        (StatusCode::NOT_FOUND, "GC_REPORT_UNKNOWN")
    );
    block_on(Gc::new(fixture.store.clone(), fixture.env.clone(), GcConfig::default(), true).run_to_end()).unwrap();
    let answer = open(Method::GET);
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["dry_run"], true);
    let head = open(Method::HEAD);
    assert_eq!((head.status, head.body.len()), (StatusCode::OK, 0));
    let post = open(Method::POST);
    assert_eq!(
        (post.status, post.code().as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED")
    );
}

// ---------------------------------------------------------------- F5: refresh tokens outlive the identity

#[test]
fn f5_a_changed_password_revokes_the_users_refresh_tokens() {
    let fixture = Fixture::new();
    let refresh = fixture.refresh_token("alice", "alice-pass");
    let unchanged = fixture.reconfigured(|_| {});
    assert_eq!(
        fixture.refresh_with(&unchanged, &refresh),
        StatusCode::OK,
        "a restart alone revokes nothing"
    );
    let new_hash = cheap_hash(&fixture.env, "alice-new-pass");
    let changed = fixture.reconfigured(|config| config["users"][0]["password_hash"] = json!(new_hash));
    assert_eq!(fixture.refresh_with(&changed, &refresh), StatusCode::UNAUTHORIZED);
    let removed = fixture.reconfigured(|config| {
        config["users"].as_array_mut().unwrap().remove(0);
    });
    assert_eq!(fixture.refresh_with(&removed, &refresh), StatusCode::UNAUTHORIZED);
}

#[test]
fn f5_a_rotated_or_removed_robot_token_revokes_the_robots_refresh_tokens() {
    let fixture = Fixture::new();
    let ci_refresh = fixture.refresh_token("ci-bot", &fixture.ci_token);
    let promoter_refresh = fixture.refresh_token("promoter", &fixture.promoter_token);
    let (_, rotated_digest) = new_robot_token(fixture.env.as_ref());
    let rotated = fixture.reconfigured(|config| {
        config["robots"][0]["token_sha256"] = json!(rotated_digest);
        config["robots"].as_array_mut().unwrap().remove(1);
    });
    assert_eq!(fixture.refresh_with(&rotated, &ci_refresh), StatusCode::UNAUTHORIZED);
    assert_eq!(
        fixture.refresh_with(&rotated, &promoter_refresh),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(fixture.refresh_with(&fixture.auth, &ci_refresh), StatusCode::OK);
}

#[test]
fn f5_refresh_grants_follow_the_current_groups() {
    let fixture = Fixture::new();
    let refresh = fixture.refresh_token("ci-bot", &fixture.ci_token);
    let regrouped = fixture.reconfigured(|config| config["robots"][0]["groups"] = json!([]));
    let form = format!("grant_type=refresh_token&refresh_token={refresh}&scope=repository:ci/app:push");
    let answer = Answer::of(block_on(handle(
        with_auth(&fixture.registry, &regrouped),
        request(Method::POST, "/token", None, form.as_bytes(), "c"),
    )));
    assert_eq!(answer.status, StatusCode::OK);
    let token = answer.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(payload(&token)["access"], json!([]), "no longer in group ci: no push");
}

/// The claims of a JWT, unchecked.
fn payload(token: &str) -> Value {
    let encoded = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&Base64UrlSafeNoPadding::decode_to_vec(encoded, None).unwrap()).unwrap()
}

fn oidc_fixture() -> (Fixture, ES256KeyPair) {
    let provider = ES256KeyPair::generate().with_key_id("ci-provider-1");
    let oidc = json!([{
        "issuer": "https://ci.example.test",
        "audience": "pier",
        "jwks": json!({ "keys": [serde_json::from_str::<Value>(&provider.public_key().to_jwk()).unwrap()] }).to_string(),
        "identities": [
            { "claims": { "repository": "acme/release", "ref": "refs/heads/main" }, "name": "promoter" },
        ],
    }]);
    (Fixture::with_oidc(oidc), provider)
}

fn id_token(provider: &ES256KeyPair, repository: &str, lifetime_secs: u64) -> String {
    let now = UnixTimeStamp::from_secs(NOW_MS / 1000);
    let claims = JWTClaims {
        issued_at: Some(now),
        expires_at: Some(now + Duration::from_secs(lifetime_secs)),
        invalid_before: Some(now),
        audiences: Some(Audiences::AsString("pier".into())),
        issuer: Some("https://ci.example.test".into()),
        jwt_id: None,
        subject: Some(format!("repo:{repository}")),
        nonce: None,
        custom: json!({ "repository": repository, "ref": "refs/heads/main" }),
    };
    provider.sign(claims).unwrap()
}

#[test]
fn f5_oidc_logins_get_no_refresh_token() {
    let (fixture, provider) = oidc_fixture();
    let form = format!(
        "grant_type=password&username=oidc&password={}&access_type=offline&service=pier\
         &scope=repository:prod/app:pull",
        id_token(&provider, "acme/release", 300)
    );
    let answer = fixture.call(Method::POST, "/token", None, form.as_bytes());
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert!(answer.json()["access_token"].is_string());
    assert!(
        answer.json().get("refresh_token").is_none(),
        "a 5-minute ID token must not become a 7-day refresh token: {answer:?}"
    );
}

#[test]
fn f5_refresh_tokens_of_oidc_identities_or_without_a_credential_are_refused() {
    let (fixture, _) = oidc_fixture();
    let refresh_claims = |custom: Value, subject: &str| {
        let now = UnixTimeStamp::from_secs(NOW_MS / 1000);
        JWTClaims {
            issued_at: Some(now),
            expires_at: Some(now + Duration::from_secs(3600)),
            invalid_before: Some(now),
            audiences: Some(Audiences::AsString("pier#refresh".into())),
            issuer: Some("pier".into()),
            jwt_id: None,
            subject: Some(subject.into()),
            nonce: None,
            custom,
        }
    };
    let kid = fixture.kid();
    let sign = |claims| {
        ES256KeyPair::from_jwk(&fixture.signing_key)
            .unwrap()
            .with_key_id(&kid)
            .sign(claims)
            .unwrap()
    };
    // What the registry issued before: OIDC identities kept as recorded.
    let oidc = sign(refresh_claims(
        json!({ "groups": [], "kind": "oidc", "credential": "x" }),
        "promoter",
    ));
    assert_eq!(fixture.refresh_with(&fixture.auth, &oidc), StatusCode::UNAUTHORIZED);
    let issuer_gone = fixture.reconfigured(|config| config["oidc"] = json!([]));
    assert_eq!(fixture.refresh_with(&issuer_gone, &oidc), StatusCode::UNAUTHORIZED);
    // A user's token from before credentials were bound.
    let unbound = sign(refresh_claims(json!({ "groups": ["dev"], "kind": "user" }), "alice"));
    assert_eq!(fixture.refresh_with(&fixture.auth, &unbound), StatusCode::UNAUTHORIZED);
}

// ---------------------------------------------------------------- F8: login cost and limiter

/// Polls each future once, without waiting: the ones that finish answer.
fn poll_once_each<F: Future + Unpin>(futures: &mut [Option<F>]) -> Vec<F::Output> {
    let mut context = Context::from_waker(futures::task::noop_waker_ref());
    let mut done = Vec::new();
    for slot in futures.iter_mut() {
        if let Some(future) = slot {
            if let Poll::Ready(output) = Pin::new(future).poll(&mut context) {
                done.push(output);
                *slot = None;
            }
        }
    }
    done
}

#[test]
fn f8_parallel_wrong_guesses_beyond_the_limit_are_refused_before_hashing() {
    let fixture = Fixture::new();
    fixture.env.defer_heavy_work(true);
    // Ten guesses in parallel from one client; the limit is three.
    let mut guesses: Vec<_> = (0..10)
        .map(|i| {
            let request = request(
                Method::GET,
                "/token",
                Some(&basic("alice", &format!("guess-{i}"))),
                b"",
                "10.6.6.6",
            );
            Some(Box::pin(handle(with_auth(&fixture.registry, &fixture.auth), request)))
        })
        .collect();
    let refused_at_once: Vec<Answer> = poll_once_each(&mut guesses).into_iter().map(Answer::of).collect();
    assert_eq!(
        refused_at_once.len(),
        7,
        "all but the limit answered before any hash ran"
    );
    assert!(refused_at_once
        .iter()
        .all(|a| a.status == StatusCode::TOO_MANY_REQUESTS));
    assert_eq!(fixture.env.run_queued_heavy_work(), 3, "three password checks, no more");
    let checked: Vec<Answer> = poll_once_each(&mut guesses).into_iter().map(Answer::of).collect();
    assert_eq!(checked.len(), 3);
    assert!(checked.iter().all(|a| a.status == StatusCode::UNAUTHORIZED));
}

#[test]
fn f8_password_checks_go_to_the_platforms_heavy_work_and_unknown_names_pay_one_too() {
    let fixture = Fixture::new();
    fixture.env.defer_heavy_work(true);
    let start = |name: &str, secret: &str, client: &str| {
        let request = request(Method::GET, "/token", Some(&basic(name, secret)), b"", client);
        Some(Box::pin(handle(with_auth(&fixture.registry, &fixture.auth), request)))
    };
    let mut logins = vec![
        start("alice", "alice-pass", "10.0.0.1"),
        start("nobody", "alice-pass", "10.0.0.2"),
        start("ci-bot", "pier_wrong", "10.0.0.3"),
        start("ci-bot", &fixture.ci_token, "10.0.0.4"),
    ];
    let decided = poll_once_each(&mut logins);
    assert_eq!(decided.len(), 1, "only the right robot token needs no hash");
    assert_eq!(decided[0].status(), StatusCode::OK);
    assert_eq!(
        fixture.env.run_queued_heavy_work(),
        3,
        "a password, an unknown name and a wrong robot token each pay a hash"
    );
    let statuses: Vec<StatusCode> = poll_once_each(&mut logins).iter().map(|r| r.status()).collect();
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED]
    );
}

#[test]
fn f8_an_ipv6_64_shares_one_count() {
    let fixture = Fixture::new();
    let attempt = |client: &str, password: &str| {
        fixture
            .send(request(
                Method::GET,
                "/token",
                Some(&basic("alice", password)),
                b"",
                client,
            ))
            .status
    };
    for client in ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::3"] {
        assert_eq!(attempt(client, "guess"), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        attempt("2001:db8:1:2:abcd::4", "alice-pass"),
        StatusCode::TOO_MANY_REQUESTS,
        "a neighbour in the same /64"
    );
    assert_eq!(attempt("2001:db8:1:3::1", "alice-pass"), StatusCode::OK, "the next /64");
}

// ---------------------------------------------------------------- F11: exposure

#[test]
fn f11_the_catalog_needs_an_identity_not_an_anonymous_token() {
    let fixture = Fixture::new();
    let anonymous = fixture.token(None, &["registry:catalog:*"]);
    assert_eq!(
        payload(&anonymous)["access"],
        json!([]),
        "no catalog grant for anonymous callers"
    );
    let answer = fixture.call(Method::GET, "/v2/_catalog", Some(&bearer(&anonymous)), b"");
    answer.challenge();
    // Even a token that says so (issued by an older version) is not enough.
    let forged_grant = fixture.signed({
        let mut claims = claims_for_anonymous(&fixture);
        claims.custom = json!({ "access": [{ "type": "registry", "name": "catalog", "actions": ["*"] }] });
        claims
    });
    fixture
        .call(Method::GET, "/v2/_catalog", Some(&bearer(&forged_grant)), b"")
        .challenge();
}

fn claims_for_anonymous(fixture: &Fixture) -> JWTClaims<Value> {
    let mut claims = claims(fixture, json!([]));
    claims.subject = None;
    claims
}

fn metrics_request(authorization: Option<&str>) -> http::request::Parts {
    request(Method::GET, "/metrics", authorization, b"", "10.0.0.9")
        .into_parts()
        .0
}

#[test]
fn f11_metrics_need_an_admin_or_a_configured_reader() {
    let fixture = Fixture::new();
    // The refusal, `None` when the metrics may be read.
    let metrics = |auth: Option<&Auth>, authorization: Option<&str>| {
        block_on(pier_core::api::authorize_metrics(auth, &metrics_request(authorization)))
            .err()
            .map(Answer::of)
    };
    assert!(metrics(None, None).is_none(), "without auth, open like everything");
    metrics(Some(&fixture.auth), None).unwrap().challenge();
    metrics(Some(&fixture.auth), Some(&basic("alice", "alice-pass")))
        .unwrap()
        .denied();
    let anonymous_token = fixture.token(None, &[]);
    metrics(Some(&fixture.auth), Some(&bearer(&anonymous_token)))
        .unwrap()
        .challenge();
    assert!(metrics(Some(&fixture.auth), Some(&basic("root", "root-pass"))).is_none());
    let root_token = fixture.token(Some(&basic("root", "root-pass")), &[]);
    assert!(metrics(Some(&fixture.auth), Some(&bearer(&root_token))).is_none());

    let scraper = fixture.reconfigured(|config| config["metrics_readers"] = json!(["ci-bot"]));
    assert!(metrics(Some(&scraper), Some(&basic("ci-bot", &fixture.ci_token))).is_none());
    metrics(Some(&scraper), Some(&basic("alice", "alice-pass")))
        .unwrap()
        .denied();
    let public = fixture.reconfigured(|config| config["metrics_readers"] = json!(["anonymous"]));
    assert!(metrics(Some(&public), None).is_none(), "an explicit opt-in");
    assert!(AuthConfig::from_json(r#"{"metrics_readers":["user:x"]}"#)
        .map(|config| Auth::new(config, &fixture.signing_key, fixture.env.clone()).is_err())
        .unwrap());
}

/// Found by the `config` fuzz target's long run (the same shape as its
/// grace-window crash): a lifetime past 2^32 seconds overflowed the token's
/// expiry. Lifetimes of zero, of a year and a second, and of u64::MAX are
/// refused when auth is built; a year is the most allowed.
#[test]
fn token_lifetimes_beyond_a_year_are_refused_at_start() {
    let fixture = Fixture::new();
    let build = |key: &str, secs: u64| {
        let mut config = fixture.config.clone();
        config[key] = json!(secs);
        Auth::new(
            AuthConfig::from_json(&config.to_string()).unwrap(),
            &fixture.signing_key,
            fixture.env.clone(),
        )
    };
    for key in ["token_lifetime_secs", "refresh_token_lifetime_secs"] {
        for bad in [0, pier_core::auth::MAX_TOKEN_LIFETIME_SECS + 1, u64::MAX] {
            let err = build(key, bad)
                .err()
                .unwrap_or_else(|| panic!("{key} = {bad} accepted"));
            assert!(err.contains("token lifetimes"), "{err}");
        }
        assert!(build(key, pier_core::auth::MAX_TOKEN_LIFETIME_SECS).is_ok());
    }
}

// ---------------------------------------------------------------- client certificates (mutual TLS)

const CI_RUNNER: &str = "CN=ci-runner,O=acme";

#[test]
fn a_verified_certificate_of_a_configured_subject_is_its_identity() {
    let fixture = Fixture::new();
    let tags = "/v2/machines/app/tags/list";
    fixture.call(Method::GET, tags, None, b"").challenge();
    let answer = fixture.call_certified(CI_RUNNER, Method::GET, tags, None);
    assert_eq!(
        answer.code(),
        "NAME_UNKNOWN",
        "allowed, and nothing there yet: {answer:?}"
    );
    // Written the way another tool prints it, it is the same subject.
    let answer = fixture.call_certified("cn=ci-runner, o=acme", Method::GET, tags, None);
    assert_eq!(answer.code(), "NAME_UNKNOWN", "{answer:?}");
    // Its groups apply: ci robots push in ci/**.
    let answer = fixture.call_certified(CI_RUNNER, Method::POST, "/v2/ci/app/blobs/uploads/", None);
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{answer:?}");
    // A verified certificate nobody configured proves nothing: anonymous.
    let answer = fixture.call_certified("CN=laptop,O=acme", Method::GET, tags, None);
    answer.challenge();
    // Its identity may not do what the rules do not grant it.
    fixture
        .call_certified(CI_RUNNER, Method::GET, "/v2/prod/app/tags/list", None)
        .denied();
}

#[test]
fn credentials_in_the_request_take_precedence_over_the_certificate() {
    let fixture = Fixture::new();
    let alice = basic("alice", "alice-pass");
    let answer = fixture.call_certified(CI_RUNNER, Method::GET, "/v2/machines/app/tags/list", Some(&alice));
    answer.denied();
    let answer = fixture.call_certified(CI_RUNNER, Method::GET, "/v2/", Some(&basic("alice", "wrong")));
    answer.challenge();
}

#[test]
fn an_anonymous_token_request_with_a_certificate_gets_its_identitys_token() {
    let fixture = Fixture::new();
    let uri = "/token?service=pier&scope=repository:machines/app:pull,push";
    let answer = fixture.call_certified(CI_RUNNER, Method::GET, uri, None);
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let token = answer.json()["token"].as_str().unwrap().to_string();
    // The token stands alone, as docker uses it (the certificate is not needed again).
    let answer = fixture.call(
        Method::POST,
        "/v2/machines/app/blobs/uploads/",
        Some(&bearer(&token)),
        b"",
    );
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{answer:?}");
    // Without the certificate the same request gets an anonymous token: no rights there.
    let anonymous = fixture.token(None, &["repository:machines/app:pull,push"]);
    let answer = fixture.call(
        Method::GET,
        "/v2/machines/app/tags/list",
        Some(&bearer(&anonymous)),
        b"",
    );
    answer.challenge();
}

#[test]
fn certificate_identities_are_checked_at_start() {
    let fixture = Fixture::new();
    for (certificates, error) in [
        (json!([{ "subject": "ci-runner", "name": "x" }]), "is not TYPE=value"),
        (json!([{ "subject": "CN=a", "name": "alice" }]), "also a user or robot"),
        (json!([{ "subject": "CN=a", "name": "anonymous" }]), "reserved"),
        (
            json!([{ "subject": "CN=a,O=b", "name": "x" }, { "subject": "cn=a, o=b", "name": "y" }]),
            "twice",
        ),
    ] {
        let mut config = fixture.config.clone();
        config["certificates"] = certificates;
        let parsed = AuthConfig::from_json(&config.to_string()).unwrap();
        let err = Auth::new(parsed, &fixture.signing_key, fixture.env.clone())
            .err()
            .unwrap();
        assert!(err.contains(error), "{err}");
    }
}
