//! Credentials for requests to another registry: after its first 401 we know
//! whether it wants Basic or tokens from a token endpoint; tokens are fetched
//! (with Basic credentials, or anonymously) per set of scopes and kept until
//! shortly before they expire, so a copy or a cache fill asks once, not per
//! request.

use std::collections::HashMap;
use std::sync::Mutex;

use http::header::{ACCEPT, AUTHORIZATION};
use serde::Deserialize;

use super::challenge::Challenge;
use super::http::{read_body, HttpClient, OutgoingBody};
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

/// Answers challenges for one registry.
pub struct Authenticator {
    credentials: Option<Credentials>,
    state: Mutex<State>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

impl Authenticator {
    pub fn new(credentials: Option<Credentials>) -> Authenticator {
        Authenticator {
            credentials,
            state: Mutex::new(State::default()),
        }
    }

    /// Remembers a 401's challenge (its realm resolved against `base`) and
    /// forgets the token just refused for `scopes`. `false` when the
    /// challenge is one we cannot answer.
    pub fn learn(&self, header: &str, base: &url::Url, scopes: &Scopes) -> bool {
        let challenge = match super::challenge::parse(header) {
            Some(Challenge::Bearer { realm, service, scope }) => match base.join(&realm) {
                Ok(realm) => Challenge::Bearer {
                    realm: realm.to_string(),
                    service,
                    scope,
                },
                Err(_) => return false,
            },
            Some(Challenge::Basic) if self.credentials.is_some() => Challenge::Basic,
            _ => return false,
        };
        let mut state = self.state.lock().expect("auth state");
        state.tokens.remove(&scopes.key());
        state.challenge = Some(challenge);
        true
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
            let state = self.state.lock().expect("auth state");
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
        let response = http.send(request).await?;
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
            .expect("auth state")
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
    use crate::auth::testing::FixedEnv;
    use crate::remote::http::{IncomingResponse, OutgoingRequest};
    use crate::remote::RegistryClient;

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

    fn digest() -> crate::digest::Digest {
        crate::digest::Digest::of(crate::digest::Algorithm::Sha256, b"content")
    }

    #[test]
    fn tokens_are_fetched_once_per_scope_and_renewed_before_expiry() {
        let fake = Arc::new(FakeRegistry {
            issued: AtomicUsize::new(0),
            expires_in: 300,
        });
        let env = Arc::new(FixedEnv::at(1_000_000));
        let credentials = Credentials::parse("user:pw");
        let client = RegistryClient::new(fake.clone(), env.clone(), "https://reg.test", credentials).unwrap();
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
        let env = Arc::new(FixedEnv::at(0));
        let client = RegistryClient::new(fake, env, "https://reg.test", Credentials::parse("user:wrong")).unwrap();
        let error = futures::executor::block_on(client.blob_size("a", &digest())).unwrap_err();
        assert_eq!(error.status(), Some(401));
        assert!(
            error
                .to_string()
                .contains("https://auth.test/token refused the credentials"),
            "{error}"
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
        let env = Arc::new(FixedEnv::at(1_000_000));
        let client = RegistryClient::new(
            fake.clone(),
            env.clone(),
            "https://reg.test",
            Credentials::parse("user:pw"),
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
