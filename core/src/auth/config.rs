//! The auth settings both shells read: the native server from the `[auth]`
//! table of its TOML file, the edge Worker from a JSON var. Only hashes and
//! public keys appear here; the token signing keys are a separate secret.

use std::collections::BTreeMap;

use serde::Deserialize;

fn default_service() -> String {
    "pier".into()
}

fn default_token_lifetime() -> u64 {
    300
}

fn default_refresh_token_lifetime() -> u64 {
    7 * 24 * 3600
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Names this registry in tokens (their audience) and in challenges.
    #[serde(default = "default_service")]
    pub service: String,
    /// URL of the token endpoint announced in challenges. Default: `/token`
    /// on the origin the client asked for (`https` when the shell knows the
    /// client used it, else the scheme from `X-Forwarded-Proto`, else
    /// `http`); set it when a proxy ends TLS without saying so.
    #[serde(default)]
    pub realm: Option<String>,
    /// `iss` of issued tokens [default: the service].
    #[serde(default)]
    pub issuer: Option<String>,
    /// Lifetime of access tokens, in seconds [default: 300].
    #[serde(default = "default_token_lifetime")]
    pub token_lifetime_secs: u64,
    /// Lifetime of refresh tokens (OAuth2 `access_type=offline`) [default:
    /// 7 days]. Only users and robots get them, bound to their credential.
    #[serde(default = "default_refresh_token_lifetime")]
    pub refresh_token_lifetime_secs: u64,
    /// Subjects that may do everything everywhere, whatever the rules say.
    #[serde(default)]
    pub admins: Vec<String>,
    /// Subjects besides the admins that may read the native server's
    /// `/metrics`: a robot for the scraper, or `anonymous` to leave it open.
    #[serde(default)]
    pub metrics_readers: Vec<String>,
    #[serde(default)]
    pub users: Vec<UserConfig>,
    #[serde(default)]
    pub robots: Vec<RobotConfig>,
    #[serde(default)]
    pub oidc: Vec<OidcIssuerConfig>,
    /// Identities proven by a TLS client certificate (mutual TLS).
    #[serde(default)]
    pub certificates: Vec<CertificateConfig>,
    /// Namespace rules; the most specific matching one decides, none denies.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    #[serde(default)]
    pub failed_logins: FailedLoginConfig,
}

impl AuthConfig {
    /// Reads the JSON form (the edge's var).
    pub fn from_json(text: &str) -> Result<AuthConfig, String> {
        serde_json::from_str(text).map_err(|e| format!("auth configuration: {e}"))
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    /// Argon2id PHC string from `pier auth hash-password`.
    pub password_hash: String,
    #[serde(default)]
    pub groups: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RobotConfig {
    pub name: String,
    /// Hex SHA-256 of the robot's token, from `pier auth new-robot`.
    pub token_sha256: String,
    #[serde(default)]
    pub groups: Vec<String>,
}

/// A client certificate's subject and the identity it proves. The shell
/// verifies the certificate against its client CA; a verified certificate
/// whose subject is configured here is this identity on requests without
/// other credentials (see `auth::certificate`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// The distinguished name, RFC 4514 (`CN=ci-runner,O=acme`), as
    /// `openssl x509 -noout -subject -nameopt RFC2253` prints it.
    pub subject: String,
    pub name: String,
    #[serde(default)]
    pub groups: Vec<String>,
}

/// An external issuer (e.g. a CI provider's workload identity) whose ID
/// tokens are accepted as passwords.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcIssuerConfig {
    /// The exact `iss` of its tokens.
    pub issuer: String,
    /// The `aud` its tokens must carry for this registry.
    pub audience: String,
    /// Its JSON Web Key Set, as published at its `jwks_uri` (pier fetches
    /// nothing: update it here when the issuer rotates keys).
    pub jwks: String,
    /// Which tokens are accepted and as whom: the first mapping whose claims
    /// all match decides; a token no mapping matches is refused.
    pub identities: Vec<OidcIdentityConfig>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcIdentityConfig {
    /// Claim name -> glob its string value must match.
    #[serde(default)]
    pub claims: BTreeMap<String, String>,
    /// The identity's name; `{claim}` is replaced by that claim's value.
    pub name: String,
    #[serde(default)]
    pub groups: Vec<String>,
}

/// One namespace rule: which subjects may pull, push and delete in the
/// repositories matching a glob. Subjects: `anonymous` (anyone, no login
/// needed), `authenticated` (any identity), `group:<name>`, or an identity's
/// name.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub repositories: String,
    #[serde(default)]
    pub pull: Vec<String>,
    #[serde(default)]
    pub push: Vec<String>,
    #[serde(default)]
    pub delete: Vec<String>,
}

fn default_failure_limit() -> u32 {
    10
}

fn default_failure_window() -> u64 {
    60
}

/// At most `limit` failed logins per client in `window_secs`; then 429.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailedLoginConfig {
    #[serde(default = "default_failure_limit")]
    pub limit: u32,
    #[serde(default = "default_failure_window")]
    pub window_secs: u64,
}

impl Default for FailedLoginConfig {
    fn default() -> FailedLoginConfig {
        FailedLoginConfig {
            limit: default_failure_limit(),
            window_secs: default_failure_window(),
        }
    }
}
