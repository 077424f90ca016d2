//! Credentials for requests to another registry: after its first 401 we know
//! whether it wants Basic or tokens from a token endpoint; tokens are fetched
//! (with Basic credentials, or anonymously) per set of scopes and kept until
//! shortly before they expire, so a copy or a cache fill asks once, not per
//! request.
//!
//! The token endpoint (the challenge's `realm`) is the other registry's
//! word, so it is trusted only where pier was told to trust it
//! ([`TokenRealms`]): the registry's own origin, Docker Hub's well-known
//! auth service for Docker Hub, or origins the operator listed. Anywhere
//! else, nothing is sent at all: neither the configured credentials nor an
//! anonymous token request (which would let the registry make pier fetch
//! any URL, an internal one included).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use http::header::{ACCEPT, AUTHORIZATION};
use serde::Deserialize;

use super::challenge::Challenge;
use super::http::{read_body, HttpClient, OutgoingBody, Redirects};
use super::{Credentials, RemoteError};
use crate::platform::Env;

/// The scopes a request needs, e.g. `repository:a/b:pull,push`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scopes(Vec<String>);

impl Scopes {
    pub fn pull(repo: &str) -> Scopes {
        Scopes(vec![format!("repository:{repo}:pull")])
    }

    pub fn push(repo: &str) -> Scopes {
        Scopes(vec![format!("repository:{repo}:pull,push")])
    }

    pub fn delete(repo: &str) -> Scopes {
        Scopes(vec![format!("repository:{repo}:delete")])
    }

    /// Listing the registry's repositories (`/v2/_catalog`).
    pub fn catalog() -> Scopes {
        Scopes(vec!["registry:catalog:*".into()])
    }

    /// These scopes and pull on `repo` (the source of a mount).
    pub fn and_pull(mut self, repo: &str) -> Scopes {
        self.0.push(format!("repository:{repo}:pull"));
        self
    }

    fn key(&self) -> String {
        self.0.join(" ")
    }
}

struct CachedToken {
    value: String,
    expires_ms: u64,
}

#[derive(Default)]
struct State {
    /// What the registry asked for last (realm made absolute).
    challenge: Option<Challenge>,
    tokens: HashMap<String, CachedToken>,
}

/// Tokens last this long when the endpoint does not say (the Docker protocol's default).
const DEFAULT_TOKEN_SECS: u64 = 60;
/// Tokens are renewed this long before they expire, so none runs out in flight.
const RENEW_BEFORE_MS: u64 = 10_000;

/// Docker Hub's registry and the auth service its challenges name.
const DOCKER_HUB_REGISTRIES: [&str; 3] = ["registry-1.docker.io", "index.docker.io", "registry.hub.docker.com"];
const DOCKER_HUB_AUTH: &str = "https://auth.docker.io";

/// The token endpoints pier may ask for one registry: those at the
/// registry's own origin (scheme, host, port), Docker Hub's auth service for
/// Docker Hub, and the origins the operator listed (`token_realms`). Never
/// an `http` realm for an `https` registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRealms {
    base: url::Url,
    listed: Vec<url::Origin>,
}

impl TokenRealms {
    /// The realms trusted for the registry at `base`, plus `listed`
    /// (`https://host[:port]`, as configured).
    pub fn new(base: &url::Url, listed: &[String]) -> Result<TokenRealms, String> {
        let mut origins = Vec::new();
        if base.scheme() == "https" && base.host_str().is_some_and(|h| DOCKER_HUB_REGISTRIES.contains(&h)) {
            let auth = url::Url::parse(DOCKER_HUB_AUTH).map_err(|e| format!("{DOCKER_HUB_AUTH}: {e}"))?;
            origins.push(auth.origin());
        }
        for text in listed {
            let url = url::Url::parse(text).map_err(|e| format!("token realm {text:?}: {e}"))?;
            if !matches!(url.scheme(), "http" | "https")
                || url.host_str().is_none()
                || !matches!(url.path(), "" | "/")
                || url.query().is_some()
                || !url.username().is_empty()
            {
                return Err(format!(
                    "token realm {text:?} must be an origin: http(s)://host[:port], without a path"
                ));
            }
            if base.scheme() == "https" && url.scheme() == "http" {
                return Err(format!(
                    "token realm {text:?} is http:// for an https:// registry: credentials would travel in clear"
                ));
            }
            origins.push(url.origin());
        }
        Ok(TokenRealms {
            base: base.clone(),
            listed: origins,
        })
    }

    /// Whether pier may send a token request (with credentials, or none) to `realm`.
    pub fn trusts(&self, realm: &url::Url) -> Result<(), String> {
        if !matches!(realm.scheme(), "http" | "https") || realm.host_str().is_none() {
            return Err(format!("token realm {realm} is not an http(s) URL"));
        }
        if self.base.scheme() == "https" && realm.scheme() == "http" {
            return Err(format!(
                "token realm {realm} is http:// for the https:// registry {}: never downgraded",
                self.base
            ));
        }
        let origin = realm.origin();
        if origin == self.base.origin() || self.listed.contains(&origin) {
            return Ok(());
        }
        Err(format!(
            "token realm {realm} is not at {}'s own origin nor listed in its token_realms: \
             nothing was sent there",
            self.base.origin().ascii_serialization()
        ))
    }
}

/// Answers challenges for one registry.
pub struct Authenticator {
    credentials: Option<Credentials>,
    realms: TokenRealms,
    state: Mutex<State>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

impl Authenticator {
    pub fn new(credentials: Option<Credentials>, realms: TokenRealms) -> Authenticator {
        Authenticator {
            credentials,
            realms,
            state: Mutex::new(State::default()),
        }
    }

    /// Remembers a 401's challenge (its realm resolved against the
    /// registry's URL) and forgets the token just refused for `scopes`.
    /// `Ok(false)` when the challenge is one we cannot answer; an error when
    /// its realm is not one pier trusts (and then nothing is sent there).
    pub fn learn(&self, header: &str, scopes: &Scopes) -> Result<bool, RemoteError> {
        let challenge = match super::challenge::parse(header) {
            Some(Challenge::Bearer { realm, service, scope }) => match self.realms.base.join(&realm) {
                Ok(realm) => {
                    self.realms.trusts(&realm).map_err(RemoteError::Invalid)?;
                    Challenge::Bearer {
                        realm: realm.to_string(),
                        service,
                        scope,
                    }
                }
                Err(_) => return Ok(false),
            },
            Some(Challenge::Basic) if self.credentials.is_some() => Challenge::Basic,
            _ => return Ok(false),
        };
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.tokens.remove(&scopes.key());
        state.challenge = Some(challenge);
        Ok(true)
    }

    /// The `Authorization` header for a request needing `scopes`, fetching
    /// a token if the registry wants one and none is cached.
    pub async fn authorization(
        &self,
        http: &dyn HttpClient,
        env: &dyn Env,
        scopes: &Scopes,
    ) -> Result<Option<String>, RemoteError> {
        let key = scopes.key();
        let now = env.now_millis();
        let (realm, service, challenged) = {
            let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            match &state.challenge {
                None => return Ok(None),
                Some(Challenge::Basic) => return Ok(self.credentials.as_ref().map(Credentials::basic_header)),
                Some(Challenge::Bearer { realm, service, scope }) => {
                    if let Some(token) = state.tokens.get(&key).filter(|t| t.expires_ms > now) {
                        return Ok(Some(format!("Bearer {}", token.value)));
                    }
                    (realm.clone(), service.clone(), scope.clone())
                }
            }
        };
        let mut url = url::Url::parse(&realm).map_err(|e| RemoteError::Invalid(format!("token realm {realm}: {e}")))?;
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = &service {
                query.append_pair("service", service);
            }
            let mut wanted: Vec<&str> = scopes.0.iter().map(String::as_str).collect();
            for scope in challenged.iter().flat_map(|s| s.split(' ')).filter(|s| !s.is_empty()) {
                if !wanted.contains(&scope) {
                    wanted.push(scope);
                }
            }
            for scope in wanted {
                query.append_pair("scope", scope);
            }
        }
        let mut request = http::Request::get(url.as_str()).header(ACCEPT, "application/json");
        if let Some(credentials) = &self.credentials {
            request = request.header(AUTHORIZATION, credentials.basic_header());
        }
        let request = request
            .body(OutgoingBody::Empty)
            .map_err(|e| RemoteError::Invalid(format!("token request: {e}")))?;
        let response = super::http::send(http, request, Redirects::SameOrigin).await?;
        let status = response.status();
        let body = read_body(response.into_body(), 1 << 20).await?.unwrap_or_default();
        if !status.is_success() {
            let why = if status == http::StatusCode::UNAUTHORIZED {
                "refused the credentials"
            } else {
                "failed"
            };
            return Err(RemoteError::Status {
                status: status.as_u16(),
                code: None,
                message: format!("token endpoint {realm} {why} ({status})"),
            });
        }
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|e| RemoteError::Invalid(format!("token endpoint {realm}: unreadable answer: {e}")))?;
        let value = answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| RemoteError::Invalid(format!("token endpoint {realm} sent no token")))?;
        // `expires_in` is the peer's number: saturate rather than overflow
        // (a token "valid for ever" is kept until the registry refuses it).
        let lifetime_ms = answer
            .expires_in
            .unwrap_or(DEFAULT_TOKEN_SECS)
            .max(1)
            .saturating_mul(1000);
        let expires_ms = now.saturating_add(lifetime_ms) - RENEW_BEFORE_MS.min(lifetime_ms / 2);
        let header = format!("Bearer {value}");
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .tokens
            .insert(key, CachedToken { value, expires_ms });
        Ok(Some(header))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::remote::http::{IncomingResponse, OutgoingRequest};
    use crate::remote::RegistryClient;
    use crate::testing::TestEnv;

    /// A registry whose token endpoint hands out numbered tokens valid for
    /// 300 s to `user:pw` only, and whose API wants the newest token.
    struct FakeRegistry {
        issued: AtomicUsize,
        /// The `expires_in` of its tokens.
        expires_in: u64,
    }

    fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> IncomingResponse {
        let mut response = http::Response::builder().status(status);
        for (name, value) in headers {
            response = response.header(*name, *value);
        }
        let body = bytes::Bytes::from(body.to_string());
        response
            .body(crate::platform::box_stream(futures::stream::once(
                async move { Ok(body) },
            )))
            .unwrap()
    }

    #[async_trait::async_trait]
    impl HttpClient for FakeRegistry {
        async fn send(&self, request: OutgoingRequest) -> Result<IncomingResponse, super::super::http::HttpError> {
            let authorization = request
                .headers()
                .get(AUTHORIZATION)
                .map(|v| v.to_str().unwrap().to_string());
            let uri = request.uri().to_string();
            if uri.starts_with("https://auth.test/token") {
                assert!(uri.contains("service=reg&scope=repository%3Aa%3Apull"), "{uri}");
                if authorization != Some(Credentials::parse("user:pw").unwrap().basic_header()) {
                    return Ok(answer(401, &[], "{}"));
                }
                let n = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
                let expires_in = self.expires_in;
                return Ok(answer(
                    200,
                    &[],
                    &format!(r#"{{"token":"t{n}","expires_in":{expires_in}}}"#),
                ));
            }
            let current = format!("Bearer t{}", self.issued.load(Ordering::SeqCst));
            if authorization.as_deref() == Some(current.as_str()) {
                Ok(answer(200, &[("content-length", "7")], ""))
            } else {
                let challenge = r#"Bearer realm="https://auth.test/token",service="reg",scope="repository:a:pull""#;
                Ok(answer(
                    401,
                    &[("www-authenticate", challenge)],
                    r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#,
                ))
            }
        }
    }

    /// The fake registry's token endpoint is on another host: listed.
    fn realms() -> Vec<String> {
        vec!["https://auth.test".into()]
    }

    fn digest() -> crate::digest::Digest {
        crate::digest::Digest::of(crate::digest::Algorithm::Sha256, b"content")
    }

    #[test]
    fn tokens_are_fetched_once_per_scope_and_renewed_before_expiry() {
        let fake = Arc::new(FakeRegistry {
            issued: AtomicUsize::new(0),
            expires_in: 300,
        });
        let env = Arc::new(TestEnv::at(1_000_000));
        let credentials = Credentials::parse("user:pw");
        let client =
            RegistryClient::new(fake.clone(), env.clone(), "https://reg.test", credentials, &realms()).unwrap();
        futures::executor::block_on(async {
            assert_eq!(client.blob_size("a", &digest()).await.unwrap(), Some(7));
            assert_eq!(client.blob_size("a", &digest()).await.unwrap(), Some(7));
            assert_eq!(fake.issued.load(Ordering::SeqCst), 1, "the cached token is reused");
            env.advance_secs(295);
            assert_eq!(client.blob_size("a", &digest()).await.unwrap(), Some(7));
            assert_eq!(fake.issued.load(Ordering::SeqCst), 2, "renewed before it runs out");
        });
    }

    #[test]
    fn refused_credentials_are_an_error_naming_the_token_endpoint() {
        let fake = Arc::new(FakeRegistry {
            issued: AtomicUsize::new(0),
            expires_in: 300,
        });
        let env = Arc::new(TestEnv::at(0));
        let client = RegistryClient::new(
            fake,
            env,
            "https://reg.test",
            Credentials::parse("user:wrong"),
            &realms(),
        )
        .unwrap();
        let error = futures::executor::block_on(client.blob_size("a", &digest())).unwrap_err();
        assert_eq!(error.status(), Some(401));
        assert!(
            error
                .to_string()
                .contains("https://auth.test/token refused the credentials"),
            "{error}"
        );
    }

    /// A registry whose challenge names a token endpoint elsewhere: a
    /// collector of whatever is sent there.
    struct Misdirecting {
        realm: &'static str,
        sent: std::sync::Mutex<Vec<String>>,
    }

    #[async_trait::async_trait]
    impl HttpClient for Misdirecting {
        async fn send(&self, request: OutgoingRequest) -> Result<IncomingResponse, super::super::http::HttpError> {
            self.sent.lock().unwrap().push(request.uri().to_string());
            let challenge = format!(r#"Bearer realm="{}",service="reg""#, self.realm);
            Ok(answer(401, &[("www-authenticate", challenge.as_str())], "{}"))
        }
    }

    #[test]
    fn realms_elsewhere_get_nothing_unless_listed() {
        for (base, realm) in [
            ("https://reg.test", "https://collector.test/token"),
            ("https://reg.test", "http://reg.test/token"),
            ("https://reg.test", "https://reg.test:8443/token"),
            ("http://127.0.0.1:5000", "http://127.0.0.1:5001/token"),
            ("https://reg.test", "file:///etc/passwd"),
            ("https://registry-1.docker.io", "http://auth.docker.io/token"),
        ] {
            let fake = Arc::new(Misdirecting {
                realm,
                sent: Default::default(),
            });
            let client = RegistryClient::new(
                fake.clone(),
                Arc::new(TestEnv::at(0)),
                base,
                Credentials::parse("u:p"),
                &[],
            )
            .unwrap();
            let error = futures::executor::block_on(client.blob_size("a", &digest())).unwrap_err();
            assert!(error.to_string().contains("token realm"), "{realm}: {error}");
            let sent = fake.sent.lock().unwrap();
            assert_eq!(sent.len(), 1, "{realm}: only the registry was asked: {sent:?}");
        }
    }

    #[test]
    fn trusted_realms() {
        let base = url::Url::parse("https://registry-1.docker.io/").unwrap();
        let hub = TokenRealms::new(&base, &[]).unwrap();
        let url = |u: &str| url::Url::parse(u).unwrap();
        assert!(
            hub.trusts(&url("https://auth.docker.io/token")).is_ok(),
            "Docker Hub's own pairing"
        );
        assert!(hub.trusts(&url("https://registry-1.docker.io/token")).is_ok());
        assert!(hub.trusts(&url("https://auth.docker.io.evil.test/token")).is_err());
        let gitlab = TokenRealms::new(&url("https://registry.gitlab.com"), &["https://gitlab.com".into()]).unwrap();
        assert!(gitlab.trusts(&url("https://gitlab.com/jwt/auth")).is_ok(), "listed");
        assert!(gitlab.trusts(&url("https://auth.docker.io/token")).is_err());
        for bad in ["https://a/token", "ftp://a", "http://a", "https://u:p@a", "not a url"] {
            assert!(
                TokenRealms::new(&url("https://reg.test"), &[bad.into()]).is_err(),
                "{bad}"
            );
        }
        let plain = TokenRealms::new(&url("http://reg.test:5000"), &["http://auth.test".into()]).unwrap();
        assert!(plain.trusts(&url("http://auth.test/token")).is_ok());
        assert!(
            plain.trusts(&url("https://reg.test:5000/token")).is_err(),
            "another origin"
        );
    }

    /// Found by the `challenge` fuzz target: an `expires_in` whose
    /// milliseconds do not fit in a u64 overflowed (a panic where overflow
    /// checks are on, a wrapped expiry elsewhere).
    #[test]
    fn a_token_lifetime_past_the_end_of_time_is_kept_until_refused() {
        let fake = Arc::new(FakeRegistry {
            issued: AtomicUsize::new(0),
            expires_in: u64::MAX,
        });
        let env = Arc::new(TestEnv::at(1_000_000));
        let client = RegistryClient::new(
            fake.clone(),
            env.clone(),
            "https://reg.test",
            Credentials::parse("user:pw"),
            &realms(),
        )
        .unwrap();
        futures::executor::block_on(async {
            assert_eq!(client.blob_size("a", &digest()).await.unwrap(), Some(7));
            env.advance_secs(365 * 24 * 3600);
            assert_eq!(client.blob_size("a", &digest()).await.unwrap(), Some(7));
            assert_eq!(fake.issued.load(Ordering::SeqCst), 1, "the token is still good");
        });
    }
}
