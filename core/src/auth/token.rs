//! pier's own tokens. Access tokens are the Docker token protocol's JWTs
//! (`access` claim, audience = the service), short-lived so that a policy
//! change takes effect soon. Refresh tokens (OAuth2 `access_type=offline`,
//! what `docker login` keeps) have their own audience, so neither kind can
//! stand in for the other.
//!
//! Keys are JWKs with a `kid`, in one JWK Set: the first key signs, every key
//! verifies. Rotation: put a new key first, keep the old one until the
//! tokens it signed have expired, then drop it.

use std::collections::HashSet;

use jwt_simple::prelude::*;
use serde::de::DeserializeOwned;

use super::identity::{Identity, IdentityKind};
use super::scope::AccessEntry;
use crate::platform::Env;

/// Accepted difference between the clocks of the instance that issued a
/// token and the one checking it.
const CLOCK_SKEW_SECS: u64 = 30;

/// Algorithms of pier's signing keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// ECDSA P-256 with SHA-256: what every JWT consumer understands.
    Es256,
    /// Ed25519: smaller and faster.
    EdDsa,
}

impl KeyAlgorithm {
    pub fn parse(text: &str) -> Option<KeyAlgorithm> {
        match text.to_ascii_lowercase().as_str() {
            "es256" => Some(KeyAlgorithm::Es256),
            "eddsa" | "ed25519" => Some(KeyAlgorithm::EdDsa),
            _ => None,
        }
    }
}

/// A new private JWK (with `kid`) built from `env`'s entropy.
pub fn new_signing_key(algorithm: KeyAlgorithm, env: &dyn Env) -> String {
    let mut seed = [0u8; 32];
    match algorithm {
        KeyAlgorithm::Es256 => loop {
            env.fill_random(&mut seed);
            // Fails only for the ~2^-32 of values outside the curve's order.
            if let Ok(key) = ES256KeyPair::from_bytes(&seed) {
                let kid = key.jwk_thumbprint();
                return key.with_key_id(&kid).to_jwk();
            }
        },
        KeyAlgorithm::EdDsa => {
            env.fill_random(&mut seed);
            let pair = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(seed));
            // A key pair made from a seed is always a valid one.
            #[allow(clippy::expect_used)]
            let key = Ed25519KeyPair::from_bytes(&pair[..]).expect("a key pair from a seed");
            let kid = key.jwk_thumbprint();
            key.with_key_id(&kid).to_jwk()
        }
    }
}

enum SigningKey {
    Es256(ES256KeyPair),
    EdDsa(Ed25519KeyPair),
}

enum VerifyingKey {
    Es256(ES256PublicKey),
    EdDsa(Ed25519PublicKey),
}

impl VerifyingKey {
    fn verify<C: DeserializeOwned>(
        &self,
        token: &str,
        options: VerificationOptions,
    ) -> Result<JWTClaims<C>, jwt_simple::Error> {
        match self {
            VerifyingKey::Es256(key) => key.verify_token(token, Some(options)),
            VerifyingKey::EdDsa(key) => key.verify_token(token, Some(options)),
        }
    }
}

/// The signing key and every key tokens may be verified with, by `kid`.
pub struct TokenKeys {
    signing: SigningKey,
    verifying: Vec<(String, VerifyingKey)>,
}

impl TokenKeys {
    /// Reads a JWK Set (`{"keys":[...]}`) or a single JWK. The first key must
    /// be private; later ones may be public only (retired keys).
    pub fn parse(text: &str) -> Result<TokenKeys, String> {
        let document: serde_json::Value =
            serde_json::from_str(text.trim()).map_err(|e| format!("signing keys are not JSON: {e}"))?;
        let keys = match document.get("keys") {
            Some(serde_json::Value::Array(keys)) => keys.clone(),
            Some(_) => return Err("signing keys: `keys` must be an array".into()),
            None => vec![document],
        };
        let mut signing = None;
        let mut verifying: Vec<(String, VerifyingKey)> = Vec::new();
        for (index, jwk) in keys.iter().enumerate() {
            let (kid, private, public) = parse_jwk(jwk).map_err(|e| format!("signing key {index}: {e}"))?;
            if verifying.iter().any(|(seen, _)| seen == &kid) {
                return Err(format!("signing key {index}: kid {kid:?} is used twice"));
            }
            match (index, private) {
                (0, Some(key)) => signing = Some(key),
                (0, None) => return Err("the first signing key must be a private key: it signs the tokens".into()),
                _ => {}
            }
            verifying.push((kid, public));
        }
        Ok(TokenKeys {
            signing: signing.ok_or("no signing key given")?,
            verifying,
        })
    }

    fn sign<C: Serialize + DeserializeOwned>(&self, claims: JWTClaims<C>) -> Result<String, String> {
        match &self.signing {
            SigningKey::Es256(key) => key.sign(claims),
            SigningKey::EdDsa(key) => key.sign(claims),
        }
        .map_err(|e| format!("signing a token: {e}"))
    }
}

/// One JWK: its kid, the signing key if it is private, the verifying key.
fn parse_jwk(jwk: &serde_json::Value) -> Result<(String, Option<SigningKey>, VerifyingKey), String> {
    let text = jwk.to_string();
    let field = |name: &str| jwk.get(name).and_then(serde_json::Value::as_str);
    let kid = field("kid").ok_or("a key needs a `kid` (key rotation picks keys by it)")?;
    let private = jwk.get("d").is_some();
    let invalid = |e: jwt_simple::Error| format!("kid {kid:?}: {e}");
    let (signing, verifying) = match (field("kty"), field("crv")) {
        (Some("EC"), Some("P-256")) if private => {
            let key = ES256KeyPair::from_jwk(&text).map_err(invalid)?;
            let public = key.public_key();
            (Some(SigningKey::Es256(key)), VerifyingKey::Es256(public))
        }
        (Some("EC"), Some("P-256")) => (
            None,
            VerifyingKey::Es256(ES256PublicKey::from_jwk(&text).map_err(invalid)?),
        ),
        (Some("OKP"), Some("Ed25519")) if private => {
            let key = Ed25519KeyPair::from_jwk(&text).map_err(invalid)?;
            let public = key.public_key();
            (Some(SigningKey::EdDsa(key)), VerifyingKey::EdDsa(public))
        }
        (Some("OKP"), Some("Ed25519")) => (
            None,
            VerifyingKey::EdDsa(Ed25519PublicKey::from_jwk(&text).map_err(invalid)?),
        ),
        _ => {
            return Err(format!(
                "kid {kid:?}: only EC P-256 (ES256) and OKP Ed25519 (EdDSA) keys sign pier tokens"
            ))
        }
    };
    Ok((kid.to_string(), signing, verifying))
}

#[derive(Serialize, Deserialize)]
struct AccessClaims {
    access: Vec<AccessEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kind: Option<IdentityKind>,
}

#[derive(Serialize, Deserialize)]
struct RefreshClaims {
    #[serde(default)]
    groups: Vec<String>,
    kind: IdentityKind,
    /// The fingerprint of the credential the token was issued for (see
    /// `Directory::credential`); tokens without one are refused.
    credential: String,
}

/// What a valid refresh token says.
#[derive(Debug, PartialEq, Eq)]
pub struct RefreshGrant {
    /// The identity it was issued to, as it was then.
    pub identity: Identity,
    /// The fingerprint of the credential it was issued for.
    pub credential: String,
}

/// What a valid access token says.
#[derive(Debug)]
pub struct VerifiedAccess {
    /// `None` for an anonymous token.
    pub identity: Option<Identity>,
    pub access: Vec<AccessEntry>,
}

/// Issues and checks pier's tokens.
pub struct Tokens {
    keys: TokenKeys,
    issuer: String,
    access_audience: String,
    refresh_audience: String,
    pub access_lifetime_secs: u64,
    refresh_lifetime_secs: u64,
}

impl Tokens {
    pub fn new(keys: TokenKeys, service: &str, issuer: &str, access_lifetime: u64, refresh_lifetime: u64) -> Tokens {
        Tokens {
            keys,
            issuer: issuer.to_string(),
            access_audience: service.to_string(),
            refresh_audience: format!("{service}#refresh"),
            access_lifetime_secs: access_lifetime,
            refresh_lifetime_secs: refresh_lifetime,
        }
    }

    fn claims<C>(
        &self,
        custom: C,
        subject: Option<&str>,
        audience: &str,
        lifetime: u64,
        env: &dyn Env,
    ) -> JWTClaims<C> {
        let now = UnixTimeStamp::from_secs(env.now_millis() / 1000);
        JWTClaims {
            issued_at: Some(now),
            expires_at: Some(now + Duration::from_secs(lifetime)),
            invalid_before: Some(now),
            audiences: Some(Audiences::AsString(audience.to_string())),
            issuer: Some(self.issuer.clone()),
            jwt_id: Some(env.random_id()),
            subject: subject.map(str::to_string),
            nonce: None,
            custom,
        }
    }

    pub fn issue_access(
        &self,
        identity: Option<&Identity>,
        access: Vec<AccessEntry>,
        env: &dyn Env,
    ) -> Result<String, String> {
        let custom = AccessClaims {
            access,
            groups: identity.map(|i| i.groups.clone()).unwrap_or_default(),
            kind: identity.map(|i| i.kind),
        };
        let subject = identity.map(|i| i.name.as_str());
        self.keys
            .sign(self.claims(custom, subject, &self.access_audience, self.access_lifetime_secs, env))
    }

    /// A refresh token bound to `credential`, the fingerprint of what
    /// `identity` logged in with.
    pub fn issue_refresh(&self, identity: &Identity, credential: &str, env: &dyn Env) -> Result<String, String> {
        let custom = RefreshClaims {
            groups: identity.groups.clone(),
            kind: identity.kind,
            credential: credential.to_string(),
        };
        self.keys.sign(self.claims(
            custom,
            Some(&identity.name),
            &self.refresh_audience,
            self.refresh_lifetime_secs,
            env,
        ))
    }

    /// Checks signature (by `kid`; the algorithm is the key's, never the
    /// header's), issuer, audience, `exp` and `nbf`.
    fn verify<C: DeserializeOwned>(&self, token: &str, audience: &str, env: &dyn Env) -> Result<JWTClaims<C>, String> {
        let metadata = Token::decode_metadata(token).map_err(|_| "malformed token".to_string())?;
        let kid = metadata.key_id().ok_or("the token names no key (kid)")?;
        let (_, key) = self
            .keys
            .verifying
            .iter()
            .find(|(id, _)| id == kid)
            .ok_or_else(|| format!("the token's key {kid:?} is not one of this registry's"))?;
        let options = VerificationOptions {
            allowed_issuers: Some(HashSet::from([self.issuer.clone()])),
            allowed_audiences: Some(HashSet::from([audience.to_string()])),
            artificial_time: Some(UnixTimeStamp::from_secs(env.now_millis() / 1000)),
            time_tolerance: Some(Duration::from_secs(CLOCK_SKEW_SECS)),
            ..Default::default()
        };
        let claims = key.verify::<C>(token, options).map_err(|e| e.to_string())?;
        if claims.expires_at.is_none() {
            return Err("the token has no expiry".into());
        }
        Ok(claims)
    }

    pub fn verify_access(&self, token: &str, env: &dyn Env) -> Result<VerifiedAccess, String> {
        let claims = self.verify::<AccessClaims>(token, &self.access_audience, env)?;
        let identity = match (claims.subject, claims.custom.kind) {
            (Some(name), Some(kind)) if !name.is_empty() => Some(Identity {
                name,
                groups: claims.custom.groups,
                kind,
            }),
            _ => None,
        };
        Ok(VerifiedAccess {
            identity,
            access: claims.custom.access,
        })
    }

    /// What a refresh token was issued for; the caller checks that it
    /// still stands.
    pub fn verify_refresh(&self, token: &str, env: &dyn Env) -> Result<RefreshGrant, String> {
        let claims = self.verify::<RefreshClaims>(token, &self.refresh_audience, env)?;
        Ok(RefreshGrant {
            identity: Identity {
                name: claims.subject.ok_or("the refresh token has no subject")?,
                groups: claims.custom.groups,
                kind: claims.custom.kind,
            },
            credential: claims.custom.credential,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::scope::Scope;
    use crate::testing::TestEnv;

    fn keys(env: &TestEnv, algorithm: KeyAlgorithm) -> String {
        new_signing_key(algorithm, env)
    }

    fn set(jwks: &[String]) -> String {
        format!("{{\"keys\":[{}]}}", jwks.join(","))
    }

    fn tokens(text: &str) -> Tokens {
        Tokens::new(TokenKeys::parse(text).unwrap(), "pier", "pier", 300, 3600)
    }

    fn alice() -> Identity {
        Identity {
            name: "alice".into(),
            groups: vec!["dev".into()],
            kind: IdentityKind::User,
        }
    }

    fn pull_a() -> Vec<AccessEntry> {
        vec![AccessEntry::of(&Scope::parse("repository:a:pull").unwrap())]
    }

    #[test]
    fn access_tokens_round_trip_with_both_algorithms() {
        let env = TestEnv::at(1_700_000_000_000);
        for algorithm in [KeyAlgorithm::Es256, KeyAlgorithm::EdDsa] {
            let tokens = tokens(&keys(&env, algorithm));
            let token = tokens.issue_access(Some(&alice()), pull_a(), &env).unwrap();
            let verified = tokens.verify_access(&token, &env).unwrap();
            assert_eq!(verified.identity, Some(alice()));
            assert_eq!(verified.access, pull_a());
            let anonymous = tokens.issue_access(None, vec![], &env).unwrap();
            assert_eq!(tokens.verify_access(&anonymous, &env).unwrap().identity, None);
        }
    }

    #[test]
    fn the_header_names_the_key_and_the_algorithm() {
        let env = TestEnv::at(1_700_000_000_000);
        let jwk = keys(&env, KeyAlgorithm::Es256);
        let kid = serde_json::from_str::<serde_json::Value>(&jwk).unwrap()["kid"]
            .as_str()
            .unwrap()
            .to_string();
        let token = tokens(&jwk).issue_access(None, vec![], &env).unwrap();
        let metadata = Token::decode_metadata(&token).unwrap();
        assert_eq!(metadata.algorithm(), "ES256");
        assert_eq!(metadata.key_id(), Some(kid.as_str()));
    }

    #[test]
    fn rotation_verifies_with_old_keys_and_signs_with_the_first() {
        let env = TestEnv::at(1_700_000_000_000);
        let (old, new) = (keys(&env, KeyAlgorithm::Es256), keys(&env, KeyAlgorithm::EdDsa));
        let before = tokens(&old).issue_access(None, pull_a(), &env).unwrap();
        let rotated = tokens(&set(&[new.clone(), old]));
        assert!(rotated.verify_access(&before, &env).is_ok(), "old tokens stay valid");
        let after = rotated.issue_access(None, pull_a(), &env).unwrap();
        assert_eq!(Token::decode_metadata(&after).unwrap().algorithm(), "EdDSA");
        assert!(
            tokens(&new).verify_access(&before, &env).is_err(),
            "dropped keys verify nothing"
        );
    }

    #[test]
    fn refresh_and_access_tokens_are_not_interchangeable() {
        let env = TestEnv::at(1_700_000_000_000);
        let tokens = tokens(&keys(&env, KeyAlgorithm::Es256));
        let refresh = tokens.issue_refresh(&alice(), "fingerprint", &env).unwrap();
        let grant = tokens.verify_refresh(&refresh, &env).unwrap();
        assert_eq!((grant.identity, grant.credential.as_str()), (alice(), "fingerprint"));
        assert!(tokens.verify_access(&refresh, &env).is_err());
        let access = tokens.issue_access(Some(&alice()), pull_a(), &env).unwrap();
        assert!(tokens.verify_refresh(&access, &env).is_err());
    }

    #[test]
    fn tokens_expire_after_their_lifetime_and_skew() {
        let env = TestEnv::at(1_700_000_000_000);
        let tokens = tokens(&keys(&env, KeyAlgorithm::Es256));
        let token = tokens.issue_access(None, pull_a(), &env).unwrap();
        env.advance_secs(300 + CLOCK_SKEW_SECS);
        assert!(tokens.verify_access(&token, &env).is_ok());
        env.advance_secs(1);
        assert!(tokens.verify_access(&token, &env).is_err());
    }

    #[test]
    fn key_sets_are_checked() {
        let env = TestEnv::at(0);
        let private = keys(&env, KeyAlgorithm::Es256);
        let mut public: serde_json::Value = serde_json::from_str(&private).unwrap();
        public.as_object_mut().unwrap().remove("d");
        let public = public.to_string();
        assert!(
            TokenKeys::parse(&set(&[private.clone(), public.clone()])).is_err(),
            "kid twice"
        );
        assert!(TokenKeys::parse(&public).is_err(), "a public first key cannot sign");
        let mut no_kid: serde_json::Value = serde_json::from_str(&private).unwrap();
        no_kid.as_object_mut().unwrap().remove("kid");
        assert!(TokenKeys::parse(&no_kid.to_string()).is_err());
        assert!(TokenKeys::parse("not json").is_err());
        assert!(
            TokenKeys::parse(r#"{"kty":"oct","kid":"x","k":"c2VjcmV0"}"#).is_err(),
            "no HMAC keys"
        );
    }
}
