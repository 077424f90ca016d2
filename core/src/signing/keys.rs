//! The public keys a namespace policy names, as cosign writes them
//! (`cosign generate-key-pair` makes `cosign.pub`, a PEM `PUBLIC KEY`
//! holding an X.509 SubjectPublicKeyInfo): ECDSA P-256 and Ed25519, and a
//! signature check over a payload's bytes for each.
//!
//! ECDSA signatures are ASN.1 DER over the payload's SHA-256 (cosign's only
//! hash for P-256). For Ed25519 cosign 2 signs with Ed25519ph (the
//! payload's SHA-512, RFC 8032's pre-hashed variant, empty context), older
//! releases with plain Ed25519; both are accepted, and neither can pass for
//! the other (Ed25519ph signs under its own domain prefix).

use ed25519_dalek::pkcs8::DecodePublicKey as _;
use ed25519_dalek::pkcs8::EncodePublicKey as _;
use p256::ecdsa::signature::Verifier as _;
use sha2::{Digest as _, Sha512};

use crate::digest::{Algorithm, Digest};

/// One key a policy trusts, with the name messages give it.
#[derive(Clone, Debug)]
pub struct PublicKey {
    key: KeyKind,
    name: String,
}

#[derive(Clone, Debug)]
enum KeyKind {
    EcdsaP256(p256::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl PublicKey {
    /// Reads a PEM `PUBLIC KEY` of either kind; the error says what the
    /// text was instead (a private key given by mistake, another curve).
    pub fn from_pem(text: &str) -> Result<PublicKey, String> {
        let text = text.trim();
        let label = text
            .lines()
            .next()
            .and_then(|line| line.strip_prefix("-----BEGIN "))
            .and_then(|rest| rest.strip_suffix("-----"));
        match label {
            Some("PUBLIC KEY") => {}
            Some(other) if other.contains("PRIVATE") => {
                return Err(format!(
                    "a {other}, not a public key: give the public half (cosign.pub), never the private key"
                ))
            }
            Some(other) => return Err(format!("a PEM {other}, not a PUBLIC KEY")),
            None => return Err("not PEM text (-----BEGIN PUBLIC KEY----- ...)".into()),
        }
        let (key, der) = if let Ok(key) = p256::ecdsa::VerifyingKey::from_public_key_pem(text) {
            let der = p256::pkcs8::EncodePublicKey::to_public_key_der(&key).map_err(|e| e.to_string())?;
            (KeyKind::EcdsaP256(key), der)
        } else if let Ok(key) = ed25519_dalek::VerifyingKey::from_public_key_pem(text) {
            let der = key.to_public_key_der().map_err(|e| e.to_string())?;
            (KeyKind::Ed25519(key), der)
        } else {
            return Err("a PUBLIC KEY that is neither ECDSA P-256 nor Ed25519 (or is corrupt)".into());
        };
        let kind = match key {
            KeyKind::EcdsaP256(_) => "ecdsa-p256",
            KeyKind::Ed25519(_) => "ed25519",
        };
        // Named by a hash of its SubjectPublicKeyInfo: stable, and short
        // enough for a log line.
        let fingerprint = Digest::of(Algorithm::Sha256, der.as_bytes());
        let short = fingerprint.hex().get(..16).unwrap_or_default();
        Ok(PublicKey {
            key,
            name: format!("{kind}:{short}"),
        })
    }

    /// `ecdsa-p256:<16 hex>` or `ed25519:<16 hex>`: the kind and the start
    /// of the SHA-256 of the key's DER.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether `signature` is this key's over `payload`.
    pub fn verifies(&self, payload: &[u8], signature: &[u8]) -> bool {
        match &self.key {
            KeyKind::EcdsaP256(key) => p256::ecdsa::DerSignature::try_from(signature)
                .is_ok_and(|signature| key.verify(payload, &signature).is_ok()),
            KeyKind::Ed25519(key) => {
                let Ok(signature) = ed25519_dalek::Signature::from_slice(signature) else {
                    return false;
                };
                let prehashed = Sha512::new_with_prefix(payload);
                key.verify_prehashed(prehashed, None, &signature).is_ok()
                    || key.verify_strict(payload, &signature).is_ok()
            }
        }
    }
}
