//! Trusted external OIDC issuers, e.g. a CI provider's workload identity: a
//! job presents the ID token its provider minted for it (as the password of
//! a login), pier checks it against the issuer's JWKS from the configuration,
//! and maps its claims to an identity. CI then needs no long-lived secret.

use std::collections::HashSet;

use ct_codecs::{Base64UrlSafeNoPadding, Decoder};
use jwt_simple::prelude::*;
use serde_json::{Map, Value};

use super::config::{OidcIdentityConfig, OidcIssuerConfig};
use super::identity::{Identity, IdentityKind};
use crate::glob::Glob;
use crate::platform::Env;

/// Accepted clock difference between the issuer and this registry.
const CLOCK_SKEW_SECS: u64 = 60;

enum IssuerKey {
    Rs256(Box<RS256PublicKey>),
    Es256(ES256PublicKey),
    EdDsa(Ed25519PublicKey),
}

impl IssuerKey {
    /// The key of one JWKS entry; `None` for keys not meant for signatures
    /// or of algorithms pier does not verify.
    fn parse(jwk: &Value) -> Result<Option<(Option<String>, IssuerKey)>, String> {
        let field = |name: &str| jwk.get(name).and_then(Value::as_str);
        if field("use").is_some_and(|u| u != "sig") {
            return Ok(None);
        }
        // Only the members the key needs: JWKS entries often carry
        // certificates (`x5c`, `x5t`) that a strict JWK import refuses.
        let keep = ["kty", "crv", "x", "y", "n", "e", "alg", "kid"];
        let minimal: Map<String, Value> = keep
            .iter()
            .filter_map(|&name| jwk.get(name).map(|v| (name.to_string(), v.clone())))
            .collect();
        let text = Value::Object(minimal).to_string();
        let kid = field("kid").map(str::to_string);
        let invalid = |e: jwt_simple::Error| format!("JWKS key {kid:?}: {e}");
        let key = match (field("kty"), field("alg"), field("crv")) {
            (Some("RSA"), None | Some("RS256"), _) => {
                IssuerKey::Rs256(Box::new(RS256PublicKey::from_jwk(&text).map_err(invalid)?))
            }
            (Some("EC"), None | Some("ES256"), Some("P-256")) => {
                IssuerKey::Es256(ES256PublicKey::from_jwk(&text).map_err(invalid)?)
            }
            (Some("OKP"), None | Some("EdDSA") | Some("Ed25519"), Some("Ed25519")) => {
                IssuerKey::EdDsa(Ed25519PublicKey::from_jwk(&text).map_err(invalid)?)
            }
            _ => return Ok(None),
        };
        Ok(Some((kid, key)))
    }

    fn verify(&self, token: &str, options: VerificationOptions) -> Result<JWTClaims<Map<String, Value>>, String> {
        match self {
            IssuerKey::Rs256(key) => key.verify_token(token, Some(options)),
            IssuerKey::Es256(key) => key.verify_token(token, Some(options)),
            IssuerKey::EdDsa(key) => key.verify_token(token, Some(options)),
        }
        .map_err(|e| e.to_string())
    }
}

/// Which tokens become which identity.
struct Mapping {
    claims: Vec<(String, Glob)>,
    name: String,
    groups: Vec<String>,
}

impl Mapping {
    fn new(config: &OidcIdentityConfig) -> Result<Mapping, String> {
        if config.name.is_empty() {
            return Err("an identity mapping needs a name".into());
        }
        let claims = config
            .claims
            .iter()
            .map(|(claim, pattern)| Ok((claim.clone(), Glob::new(pattern)?)))
            .collect::<Result<_, String>>()?;
        Ok(Mapping {
            claims,
            name: config.name.clone(),
            groups: config.groups.clone(),
        })
    }

    /// The identity's name with `{claim}` filled in; `None` if a claim it
    /// names is missing.
    fn name_for(&self, claims: &Map<String, Value>) -> Option<String> {
        let mut name = String::new();
        let mut rest = self.name.as_str();
        while let Some(open) = rest.find('{') {
            let close = open + rest[open..].find('}')?;
            name.push_str(&rest[..open]);
            name.push_str(&claim_text(claims, &rest[open + 1..close])?);
            rest = &rest[close + 1..];
        }
        name.push_str(rest);
        Some(name)
    }
}

/// A claim as text: strings as they are, numbers and booleans printed.
fn claim_text(claims: &Map<String, Value>, name: &str) -> Option<String> {
    match claims.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

struct Issuer {
    issuer: String,
    audience: String,
    keys: Vec<(Option<String>, IssuerKey)>,
    mappings: Vec<Mapping>,
}

impl Issuer {
    fn new(config: &OidcIssuerConfig) -> Result<Issuer, String> {
        let context = |e: String| format!("oidc issuer {}: {e}", config.issuer);
        let jwks: Value = serde_json::from_str(&config.jwks).map_err(|e| context(format!("jwks is not JSON: {e}")))?;
        let entries = jwks
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| context("jwks needs a `keys` array".into()))?;
        let keys: Vec<_> = entries
            .iter()
            .map(IssuerKey::parse)
            .collect::<Result<Vec<_>, String>>()
            .map_err(context)?
            .into_iter()
            .flatten()
            .collect();
        if keys.is_empty() {
            return Err(context("jwks holds no RS256, ES256 or EdDSA signing key".into()));
        }
        if config.identities.is_empty() {
            return Err(context("no identity mappings: every token would be refused".into()));
        }
        Ok(Issuer {
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            keys,
            mappings: config
                .identities
                .iter()
                .map(Mapping::new)
                .collect::<Result<_, String>>()
                .map_err(context)?,
        })
    }

    fn verify(&self, token: &str, env: &dyn Env) -> Result<Identity, String> {
        let metadata = Token::decode_metadata(token).map_err(|_| "malformed token".to_string())?;
        let options = || VerificationOptions {
            allowed_issuers: Some(HashSet::from([self.issuer.clone()])),
            allowed_audiences: Some(HashSet::from([self.audience.clone()])),
            artificial_time: Some(UnixTimeStamp::from_secs(env.now_millis() / 1000)),
            time_tolerance: Some(Duration::from_secs(CLOCK_SKEW_SECS)),
            ..Default::default()
        };
        let candidates = self
            .keys
            .iter()
            .filter(|(kid, _)| metadata.key_id().is_none() || kid.as_deref() == metadata.key_id());
        let mut last_error = format!("no key of {} matches the token", self.issuer);
        for (_, key) in candidates {
            match key.verify(token, options()) {
                Ok(claims) => return self.identity(claims),
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    fn identity(&self, verified: JWTClaims<Map<String, Value>>) -> Result<Identity, String> {
        if verified.expires_at.is_none() {
            return Err("the token has no expiry".into());
        }
        let mut claims = verified.custom;
        if let Some(subject) = verified.subject {
            claims.insert("sub".into(), Value::String(subject));
        }
        let mapping = self
            .mappings
            .iter()
            .find(|m| {
                m.claims
                    .iter()
                    .all(|(claim, glob)| claim_text(&claims, claim).is_some_and(|value| glob.matches(&value)))
            })
            .ok_or_else(|| format!("no identity mapping of {} accepts this token's claims", self.issuer))?;
        let name = mapping
            .name_for(&claims)
            .ok_or_else(|| format!("the token lacks a claim named in {:?}", mapping.name))?;
        Ok(Identity {
            name,
            groups: mapping.groups.clone(),
            kind: IdentityKind::Oidc,
        })
    }
}

/// The configured issuers.
pub struct TrustedIssuers(Vec<Issuer>);

impl TrustedIssuers {
    pub fn new(configs: &[OidcIssuerConfig]) -> Result<TrustedIssuers, String> {
        configs
            .iter()
            .map(Issuer::new)
            .collect::<Result<_, _>>()
            .map(TrustedIssuers)
    }

    /// `None` if `secret` is not a JWT from a trusted issuer (then it may be
    /// a password); otherwise whether it proves an identity.
    pub fn verify(&self, secret: &str, env: &dyn Env) -> Option<Result<Identity, String>> {
        let claimed = unverified_issuer(secret)?;
        let issuer = self.0.iter().find(|i| i.issuer == claimed)?;
        Some(issuer.verify(secret, env))
    }
}

/// The `iss` a JWT says it has, before anything is checked: only to pick
/// the issuer whose keys will check it.
fn unverified_issuer(token: &str) -> Option<String> {
    let mut parts = token.split('.');
    let (_, payload, _, None) = (parts.next()?, parts.next()?, parts.next()?, parts.next()) else {
        return None;
    };
    let json = Base64UrlSafeNoPadding::decode_to_vec(payload, None).ok()?;
    let claims: Value = serde_json::from_slice(&json).ok()?;
    claims.get("iss")?.as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestEnv;
    use std::collections::BTreeMap;

    const ISSUER: &str = "https://ci.example.test";
    const NOW: u64 = 1_700_000_000;

    struct Provider {
        key: ES256KeyPair,
    }

    impl Provider {
        fn new() -> Provider {
            Provider {
                key: ES256KeyPair::generate().with_key_id("ci-key-1"),
            }
        }

        fn jwks(&self) -> String {
            let mut public: Value = serde_json::from_str(&self.key.public_key().to_jwk()).unwrap();
            // What real JWKS documents carry besides the key.
            public["x5t"] = Value::String("ignored".into());
            public["use"] = Value::String("sig".into());
            serde_json::json!({ "keys": [public] }).to_string()
        }

        fn token(&self, claims: Value, audience: &str, expires_in: i64) -> String {
            let custom: Map<String, Value> = serde_json::from_value(claims).unwrap();
            let now = UnixTimeStamp::from_secs(NOW);
            let expiry = UnixTimeStamp::from_secs((NOW as i64 + expires_in) as u64);
            let claims = JWTClaims {
                issued_at: Some(now),
                expires_at: Some(expiry),
                invalid_before: Some(now),
                audiences: Some(Audiences::AsString(audience.into())),
                issuer: Some(ISSUER.into()),
                jwt_id: None,
                subject: Some("repo:acme/app:ref:refs/heads/main".into()),
                nonce: None,
                custom,
            };
            self.key.sign(claims).unwrap()
        }
    }

    fn trusted(provider: &Provider) -> TrustedIssuers {
        let mapping = |claims: &[(&str, &str)], name: &str, groups: &[&str]| OidcIdentityConfig {
            claims: claims
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        };
        TrustedIssuers::new(&[OidcIssuerConfig {
            issuer: ISSUER.into(),
            audience: "pier".into(),
            jwks: provider.jwks(),
            identities: vec![
                mapping(
                    &[("repository", "acme/release"), ("ref", "refs/heads/main")],
                    "promoter",
                    &[],
                ),
                mapping(&[("repository", "acme/*")], "ci/{repository}", &["ci"]),
            ],
        }])
        .unwrap()
    }

    fn env() -> TestEnv {
        TestEnv::at(NOW * 1000)
    }

    #[test]
    fn claims_pick_the_first_matching_identity() {
        let provider = Provider::new();
        let trusted = trusted(&provider);
        let release = provider.token(
            serde_json::json!({ "repository": "acme/release", "ref": "refs/heads/main" }),
            "pier",
            300,
        );
        let identity = trusted.verify(&release, &env()).unwrap().unwrap();
        assert_eq!(
            (identity.name.as_str(), identity.kind),
            ("promoter", IdentityKind::Oidc)
        );
        let branch = provider.token(
            serde_json::json!({ "repository": "acme/release", "ref": "refs/heads/feature" }),
            "pier",
            300,
        );
        let identity = trusted.verify(&branch, &env()).unwrap().unwrap();
        assert_eq!(identity.name, "ci/acme/release");
        assert_eq!(identity.groups, ["ci"]);
    }

    #[test]
    fn unmatched_claims_expired_tokens_and_other_audiences_are_refused() {
        let provider = Provider::new();
        let trusted = trusted(&provider);
        let outsider = provider.token(serde_json::json!({ "repository": "evil/app" }), "pier", 300);
        assert!(trusted.verify(&outsider, &env()).unwrap().is_err());
        let expired = provider.token(serde_json::json!({ "repository": "acme/app" }), "pier", -3600);
        assert!(trusted.verify(&expired, &env()).unwrap().is_err());
        let elsewhere = provider.token(serde_json::json!({ "repository": "acme/app" }), "other", 300);
        assert!(trusted.verify(&elsewhere, &env()).unwrap().is_err());
    }

    #[test]
    fn tokens_signed_by_another_key_are_refused() {
        let provider = Provider::new();
        let trusted = trusted(&provider);
        let impostor = Provider::new();
        let forged = impostor.token(serde_json::json!({ "repository": "acme/app" }), "pier", 300);
        assert!(trusted.verify(&forged, &env()).unwrap().is_err());
    }

    #[test]
    fn passwords_and_foreign_issuers_are_not_oidc() {
        let trusted = trusted(&Provider::new());
        assert!(trusted.verify("hunter2", &env()).is_none());
        assert!(trusted.verify("a.b.c", &env()).is_none());
    }

    #[test]
    fn configurations_without_keys_or_mappings_are_refused() {
        let config = |jwks: &str, identities: Vec<OidcIdentityConfig>| OidcIssuerConfig {
            issuer: ISSUER.into(),
            audience: "pier".into(),
            jwks: jwks.into(),
            identities,
        };
        let mapping = OidcIdentityConfig {
            claims: BTreeMap::new(),
            name: "x".into(),
            groups: vec![],
        };
        assert!(TrustedIssuers::new(&[config(r#"{"keys":[]}"#, vec![mapping.clone()])]).is_err());
        assert!(TrustedIssuers::new(&[config(&Provider::new().jwks(), vec![])]).is_err());
        assert!(TrustedIssuers::new(&[config("nope", vec![mapping])]).is_err());
    }
}
