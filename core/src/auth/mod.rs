//! Authentication and authorization, decided here once for both shells.
//!
//! A shell builds one [`Auth`] from an [`AuthConfig`] and the signing-key
//! secret, keeps it for as long as it can (the failed-login counts live in
//! it), marks each request with the [`ClientAddress`] it came from (and
//! the [`ClientCertificate`] it verified, over mutual TLS), and
//! passes it to `api::Service`. Without an `Auth`, the
//! registry is open, as before auth existed.

use std::sync::Arc;

use ct_codecs::{Base64, Decoder};
use http::header::AUTHORIZATION;

mod certificate;
pub mod challenge;
mod config;
pub mod identity;
mod limiter;
mod oidc;
pub mod policy;
pub mod scope;
pub mod token;

pub use config::{
    AuthConfig, CertificateConfig, FailedLoginConfig, OidcIdentityConfig, OidcIssuerConfig, RobotConfig, RuleConfig,
    UserConfig,
};
pub use identity::{Identity, IdentityKind};

use certificate::Certificates;
use identity::{Check, Directory, PasswordCheck};
use limiter::FailedLogins;
use oidc::TrustedIssuers;
use policy::Policy;
use scope::{AccessEntry, Scope};
use token::{TokenKeys, Tokens, VerifiedAccess};

use crate::platform::Env;

/// The client a request comes from, as its shell knows it (the native
/// server's peer address, the edge's `CF-Connecting-IP`): a request
/// extension. Failed logins are counted per client; requests without one
/// share a single count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientAddress(pub String);

/// The subject of the client certificate the shell verified during the TLS
/// handshake (RFC 4514, `CN=ci-runner,O=acme`): a request extension, set
/// only for a certificate signed by the client CA the operator trusts.
/// `[[auth.certificates]]` says which subjects are which identities.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCertificate {
    pub subject: String,
}

/// The scheme and host the client addressed (`https://registry.example.com`),
/// when the shell knows them for certain: a request extension. The edge
/// Worker does (the runtime hands it the URL the client used, while TLS ends
/// at Cloudflare, so no header says `https`); so does the native server
/// when it serves TLS itself (`https` and the host the client asked for);
/// over plain HTTP it leaves the realm to the `Host` and
/// `X-Forwarded-Proto` headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestOrigin(pub String);

/// Who a request says it is, once its credentials are checked.
#[derive(Debug)]
pub enum Caller {
    /// No credentials.
    Anonymous,
    /// A password, robot token or OIDC ID token, checked on this request,
    /// or a verified client certificate of a configured subject.
    Identified(Identity),
    /// One of pier's access tokens.
    Token(VerifiedAccess),
}

impl Caller {
    pub fn identity(&self) -> Option<&Identity> {
        match self {
            Caller::Anonymous => None,
            Caller::Identified(identity) => Some(identity),
            Caller::Token(token) => token.identity.as_ref(),
        }
    }
}

/// Why credentials were not accepted.
#[derive(Debug, PartialEq, Eq)]
pub enum LoginError {
    /// Wrong name, password, robot token or OIDC token.
    Invalid,
    /// Too many failures from this client: try again in this many seconds.
    Blocked(u64),
    /// A bearer token that is not a valid pier access token.
    InvalidToken(String),
    /// An `Authorization` header pier cannot read.
    Malformed,
}

pub struct Auth {
    service: String,
    realm: Option<String>,
    policy: Policy,
    directory: Directory,
    issuers: TrustedIssuers,
    certificates: Certificates,
    tokens: Tokens,
    failed_logins: FailedLogins,
    env: Arc<dyn Env>,
}

/// The longest a token may live: a year. Longer would not be a session but
/// a password, and past 2^32 seconds a token's expiry cannot be written.
pub const MAX_TOKEN_LIFETIME_SECS: u64 = 366 * 24 * 3600;

impl Auth {
    /// Checks the whole configuration up front: a mistake is an error at
    /// start, never a surprise at the first login.
    pub fn new(config: AuthConfig, signing_keys: &str, env: Arc<dyn Env>) -> Result<Auth, String> {
        if config.service.is_empty() {
            return Err("auth: service must not be empty".into());
        }
        let lifetimes = [config.token_lifetime_secs, config.refresh_token_lifetime_secs];
        if lifetimes
            .iter()
            .any(|secs| !(1..=MAX_TOKEN_LIFETIME_SECS).contains(secs))
        {
            return Err(format!(
                "auth: token lifetimes must be between one second and {MAX_TOKEN_LIFETIME_SECS} seconds (a year)"
            ));
        }
        let policy = Policy::new(&config.rules, &config.admins)
            .and_then(|policy| policy.with_metrics_readers(&config.metrics_readers))
            .map_err(|e| format!("auth: {e}"))?;
        let directory = Directory::new(&config.users, &config.robots).map_err(|e| format!("auth: {e}"))?;
        let certificates = Certificates::new(&config.certificates).map_err(|e| format!("auth: {e}"))?;
        if let Some(reserved) = directory
            .names()
            .chain(certificates.names())
            .find(|n| matches!(*n, "anonymous" | "authenticated"))
        {
            return Err(format!("auth: {reserved:?} is a reserved subject, not an account name"));
        }
        if let Some(taken) = certificates
            .names()
            .find(|n| directory.names().any(|account| account == *n))
        {
            return Err(format!("auth: certificate identity {taken} is also a user or robot"));
        }
        let issuers = TrustedIssuers::new(&config.oidc).map_err(|e| format!("auth: {e}"))?;
        let keys = TokenKeys::parse(signing_keys).map_err(|e| format!("auth: {e}"))?;
        let issuer = config.issuer.as_deref().unwrap_or(&config.service);
        let tokens = Tokens::new(
            keys,
            &config.service,
            issuer,
            config.token_lifetime_secs,
            config.refresh_token_lifetime_secs,
        );
        Ok(Auth {
            realm: config.realm,
            policy,
            directory,
            issuers,
            certificates,
            tokens,
            failed_logins: FailedLogins::new(config.failed_logins.limit, config.failed_logins.window_secs),
            service: config.service,
            env,
        })
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    pub fn env(&self) -> &dyn Env {
        self.env.as_ref()
    }

    /// The token endpoint's URL for challenges: configured, or `/token` on
    /// the origin the client addressed ([`RequestOrigin`] when the shell
    /// knows it, else the `Host` header with the scheme of
    /// `X-Forwarded-Proto`, default `http`).
    pub fn realm(&self, parts: &http::request::Parts) -> String {
        if let Some(realm) = &self.realm {
            return realm.clone();
        }
        if let Some(RequestOrigin(origin)) = parts.extensions.get::<RequestOrigin>() {
            return format!("{}/token", origin.trim_end_matches('/'));
        }
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
        let scheme = header("x-forwarded-proto").unwrap_or("http");
        match header("host") {
            Some(host) => format!("{scheme}://{host}/token"),
            None => "/token".into(),
        }
    }

    /// Checks a name and secret (password, robot token, or an OIDC ID token
    /// from a trusted issuer), counting the attempt against `client` until it
    /// succeeds. A password hash runs through [`Env::run_heavy`].
    pub async fn login(&self, client: &str, name: &str, secret: &str) -> Result<Identity, LoginError> {
        let attempt = self
            .failed_logins
            .attempt(client, self.env.now_millis())
            .map_err(LoginError::Blocked)?;
        let identity = match self.issuers.verify(secret, self.env()) {
            Some(result) => result.ok(),
            None => match self.directory.check(name, secret) {
                Check::Decided(identity) => Some(identity),
                Check::Password(check) => self.verify_password(check).await,
            },
        };
        let identity = identity.ok_or(LoginError::Invalid)?;
        attempt.succeeded();
        Ok(identity)
    }

    async fn verify_password(&self, check: Box<PasswordCheck>) -> Option<Identity> {
        let (sender, receiver) = futures::channel::oneshot::channel();
        self.env
            .run_heavy(Box::new(move || {
                // The receiver is gone only if the request was abandoned.
                let _ = sender.send(check.verify());
            }))
            .await;
        receiver.await.ok().flatten()
    }

    /// The caller of a request: from its `Authorization` header, else from
    /// the client certificate the shell verified (when its subject is
    /// configured), else anonymous. Failed logins count against the
    /// request's [`ClientAddress`].
    pub async fn caller(&self, parts: &http::request::Parts) -> Result<Caller, LoginError> {
        let Some(value) = parts.headers.get(AUTHORIZATION) else {
            let certified = parts
                .extensions
                .get::<ClientCertificate>()
                .and_then(|certificate| self.certificates.identity(&certificate.subject));
            return Ok(certified.map_or(Caller::Anonymous, Caller::Identified));
        };
        let client = parts.extensions.get::<ClientAddress>().map_or("", |c| c.0.as_str());
        let value = value.to_str().map_err(|_| LoginError::Malformed)?.trim();
        let (scheme, credentials) = value.split_once(' ').ok_or(LoginError::Malformed)?;
        let credentials = credentials.trim();
        if scheme.eq_ignore_ascii_case("basic") {
            let (name, secret) = basic_credentials(credentials).ok_or(LoginError::Malformed)?;
            self.login(client, &name, &secret).await.map(Caller::Identified)
        } else if scheme.eq_ignore_ascii_case("bearer") {
            self.tokens
                .verify_access(credentials, self.env())
                .map(Caller::Token)
                .map_err(LoginError::InvalidToken)
        } else {
            Err(LoginError::Malformed)
        }
    }

    /// Of the requested scopes, what `identity` (or an anonymous caller)
    /// gets: per repository the allowed subset of the actions; the catalog
    /// to identities only (it lists what they may pull).
    pub fn grant(&self, identity: Option<&Identity>, requested: &[Scope]) -> Vec<AccessEntry> {
        requested
            .iter()
            .filter_map(|scope| match scope {
                Scope::Catalog => identity.is_some().then(|| AccessEntry::of(scope)),
                Scope::Repository { name, actions } => {
                    let granted = self.policy.granted(identity, name.as_str(), actions);
                    (!granted.is_empty()).then(|| AccessEntry::of(&Scope::repository(name, &granted)))
                }
            })
            .collect()
    }

    /// A refresh token for `identity`, bound to the credential it logged in
    /// with; `None` for OIDC identities, which get none: their ID tokens are
    /// short-lived on purpose, and a job needing more asks its issuer again;
    /// and `None` for certificate identities, whose proof is the TLS
    /// connection itself.
    pub fn issue_refresh(&self, identity: &Identity) -> Result<Option<String>, String> {
        match self.directory.credential(&identity.name, identity.kind) {
            Some(credential) => self.tokens.issue_refresh(identity, credential, self.env()).map(Some),
            None => Ok(None),
        }
    }

    /// The current identity of a refresh token's holder: a user or robot as
    /// configured now, and only while it logs in with the credential the
    /// token was issued for (a changed password or robot token, or a removed
    /// account, revokes it). Refresh tokens of OIDC identities, which this
    /// registry no longer issues, are refused.
    pub fn refresh(&self, refresh_token: &str) -> Option<Identity> {
        let grant = self.tokens.verify_refresh(refresh_token, self.env()).ok()?;
        let (name, kind) = (&grant.identity.name, grant.identity.kind);
        let current = self.directory.credential(name, kind)?;
        if !ct_codecs::verify(current.as_bytes(), grant.credential.as_bytes()) {
            return None;
        }
        self.directory.current(name, kind)
    }
}

/// `name:secret` from a Basic credential.
fn basic_credentials(encoded: &str) -> Option<(String, String)> {
    let decoded = Base64::decode_to_vec(encoded, None).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (name, secret) = text.split_once(':')?;
    Some((name.to_string(), secret.to_string()))
}
