//! Signature-gated namespaces: where a namespace policy has
//! `require_signature`, a manifest is pulled (GET/HEAD) or promoted into it
//! only when a cosign signature by one of the listed keys is found beside
//! it. The same code runs natively and on the Worker (pure-Rust ECDSA and
//! Ed25519, no clock or I/O of its own: the registry's store and `Env`).
//!
//! How a manifest is checked (`SignatureGate::verify`): its signatures are
//! looked for in the repository it is in, both ways cosign stores them
//! (`cosign`); for each, the payload blob is read (at most 64 KiB, its
//! digest checked), the signature checked against each key, and only then
//! the payload's claims: an image signature naming this manifest's digest.
//! One valid signature by any listed key is enough. At most
//! [`MAX_SIGNATURES`] signatures are examined, so a repository stuffed with
//! junk signatures costs a bounded number of reads.
//!
//! What passes without a signature, because clients must read it to verify
//! anything, and no runtime starts it: referrers that are artifacts (a
//! `subject`, and a config that is not an image's: cosign's referrer
//! signatures, SBOMs and attestations attached with oras or cosign), and
//! manifests whose layers are all signatures, attestations or SBOMs
//! (cosign's tag-mode `sha256-<hex>.sig`, `.att`, `.sbom`). Not exempt: an
//! image that merely has a `subject`, or one pushed under a `.sig` tag: what
//! is exempt is told by what it is, never by its name. An index's children
//! are manifests like any other: each must be signed itself (`cosign sign
//! --recursive`), since a child pulled by digest comes with no word of the
//! index it was reached from.
//!
//! Verdicts are cached per instance: a manifest found signed stays
//! pullable for [`VERDICT_TTL_MS`] without a new check, so a deleted
//! signature stops granting pulls within that time. Refusals are not
//! cached: a signature pushed after the image counts at the next pull.

pub mod cosign;
pub mod keys;

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use serde_json::json;

use crate::digest::Digest;
use crate::error::{ErrorCode, RegistryError, Result};
use crate::manifest;
use crate::names::RepoName;
use crate::namespace_policy::{describe, NamespacePolicies, PolicyConfig};
use crate::records::{Reference, StoredManifest};
use crate::registry::Registry;
use keys::PublicKey;

/// Signatures examined at most per check (tag-mode layers and referrers).
pub const MAX_SIGNATURES: usize = 32;
/// How long a manifest found signed is taken as signed without a new check.
pub const VERDICT_TTL_MS: u64 = 60_000;
/// Verdicts kept at most per instance (about 100 bytes each).
const MAX_VERDICTS: usize = 10_000;

/// What a check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Signed by the key of this name.
    Signed(String),
    /// Not signed by any listed key, and why (for the refusal's message).
    Unsigned(String),
}

/// What a verdict holds for: a policy (by index), a repository, a digest.
type VerdictKey = (usize, String, String);

/// The keys one namespace policy requires.
pub struct Requirement<'a> {
    index: usize,
    policy: &'a PolicyConfig,
    keys: &'a [PublicKey],
}

impl Requirement<'_> {
    /// The namespace whose policy it is (`prod/**`).
    pub fn namespace(&self) -> &str {
        &self.policy.namespace
    }

    fn key_names(&self) -> String {
        let names: Vec<&str> = self.keys.iter().map(PublicKey::name).collect();
        names.join(", ")
    }
}

/// The namespace policies with their keys read, and the verdicts found.
pub struct SignatureGate {
    policies: NamespacePolicies,
    /// The keys of each policy, by the policy's index.
    keys: Vec<Vec<PublicKey>>,
    /// Manifests found signed: until when they count as signed (ms), and
    /// by which key.
    verdicts: Mutex<HashMap<VerdictKey, (u64, String)>>,
}

impl SignatureGate {
    /// Reads every policy's keys; `None` when no policy requires a
    /// signature. An error names the policy and the key at fault.
    pub fn new(policies: &NamespacePolicies) -> std::result::Result<Option<SignatureGate>, String> {
        let keys = policies
            .all()
            .map(|policy| {
                policy
                    .require_signature
                    .iter()
                    .enumerate()
                    .map(|(at, pem)| {
                        PublicKey::from_pem(pem)
                            .map_err(|why| describe(policy, &format!("require_signature[{at}]: {why}")))
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        if keys.iter().all(Vec::is_empty) {
            return Ok(None);
        }
        Ok(Some(SignatureGate {
            policies: policies.clone(),
            keys,
            verdicts: Mutex::default(),
        }))
    }

    /// The keys `repo`'s policy requires; `None` when it requires none.
    pub fn requirement(&self, repo: &RepoName) -> Option<Requirement<'_>> {
        let (index, policy) = self.policies.policy_for(repo.as_str())?;
        let keys = self.keys.get(index).filter(|keys| !keys.is_empty())?;
        Some(Requirement { index, policy, keys })
    }

    /// Refuses the pull of `manifest` from `repo` when its namespace
    /// requires a signature it lacks: 403 `DENIED`, naming the digest and
    /// the namespace's policy.
    pub async fn check_pull(&self, registry: &Registry, repo: &RepoName, manifest: &StoredManifest) -> Result<()> {
        let Some(requirement) = self.requirement(repo) else {
            return Ok(());
        };
        if is_exempt(&manifest.bytes) {
            return Ok(());
        }
        match self.verify(registry, repo, &manifest.digest, &requirement).await? {
            Verdict::Signed(_) => Ok(()),
            Verdict::Unsigned(why) => Err(RegistryError::new(
                ErrorCode::Denied,
                format!(
                    "manifest {} in {repo} is not pulled: the namespace policy {:?} requires a cosign signature \
                     by one of its keys ({}), and {why}",
                    manifest.digest,
                    requirement.namespace(),
                    requirement.key_names(),
                ),
            )
            .with_detail(json!({
                "digest": manifest.digest.as_str(),
                "namespace": requirement.namespace(),
            }))),
        }
    }

    /// Whether `digest` in `repo` is signed by one of `requirement`'s keys
    /// (a cached positive verdict, else a check).
    pub async fn verify(
        &self,
        registry: &Registry,
        repo: &RepoName,
        digest: &Digest,
        requirement: &Requirement<'_>,
    ) -> Result<Verdict> {
        let now = registry.env().now_millis();
        let cache_key = (requirement.index, repo.to_string(), digest.to_string());
        if let Some(key) = self.cached(&cache_key, now) {
            return Ok(Verdict::Signed(key));
        }
        let verdict = check(registry, repo, digest, requirement.keys).await?;
        if let Verdict::Signed(key) = &verdict {
            let mut verdicts = self.verdicts.lock().unwrap_or_else(PoisonError::into_inner);
            if verdicts.len() >= MAX_VERDICTS {
                verdicts.retain(|_, (until, _)| *until > now);
                if verdicts.len() >= MAX_VERDICTS {
                    verdicts.clear();
                }
            }
            verdicts.insert(cache_key, (now.saturating_add(VERDICT_TTL_MS), key.clone()));
        }
        Ok(verdict)
    }

    /// The key a cached, unexpired verdict found.
    fn cached(&self, key: &VerdictKey, now: u64) -> Option<String> {
        let verdicts = self.verdicts.lock().unwrap_or_else(PoisonError::into_inner);
        verdicts
            .get(key)
            .filter(|(until, _)| *until > now)
            .map(|(_, by)| by.clone())
    }
}

/// Whether a manifest is read to verify others rather than run: a
/// referrer that is an artifact, or a manifest of signatures, attestations
/// or SBOMs only.
pub fn is_exempt(bytes: &[u8]) -> bool {
    let artifact_referrer = manifest::parse_stored(bytes).is_ok_and(|parsed| {
        parsed.subject.is_some()
            && parsed.children.is_empty()
            && !parsed
                .config_media_type
                .as_deref()
                .is_some_and(cosign::is_runnable_config)
    });
    artifact_referrer || cosign::is_attachment(bytes)
}

/// The signature manifests of `digest` in `repo`: its tag-mode `.sig`
/// manifest and its signature referrers, at most [`MAX_SIGNATURES`].
async fn signature_manifests(registry: &Registry, repo: &RepoName, digest: &Digest) -> Result<Vec<StoredManifest>> {
    let mut found = Vec::new();
    if let Some(tag) = cosign::signature_tag(digest) {
        match registry.manifest(repo, &Reference::Tag(tag)).await {
            Ok(manifest) => found.push(manifest),
            Err(err) if err.code == ErrorCode::ManifestUnknown => {}
            Err(err) => return Err(err),
        }
    }
    let referrers = registry
        .referrers_page(
            repo,
            digest,
            Some(cosign::SIGNATURE_ARTIFACT_TYPE),
            None,
            MAX_SIGNATURES,
        )
        .await?;
    for entry in referrers.manifests {
        let Some(referrer) = entry.get("digest").and_then(|d| Digest::parse(d.as_str()?).ok()) else {
            continue;
        };
        match registry.manifest(repo, &Reference::Digest(referrer)).await {
            Ok(manifest) => found.push(manifest),
            // Deleted since it was listed.
            Err(err) if err.code == ErrorCode::ManifestUnknown => {}
            Err(err) => return Err(err),
        }
    }
    Ok(found)
}

/// The check itself, uncached.
async fn check(registry: &Registry, repo: &RepoName, digest: &Digest, keys: &[PublicKey]) -> Result<Verdict> {
    let manifests = signature_manifests(registry, repo, digest).await?;
    let layers: Vec<cosign::SignatureLayer> = manifests
        .iter()
        .flat_map(|m| cosign::signature_layers(&m.bytes))
        .take(MAX_SIGNATURES)
        .collect();
    if layers.is_empty() {
        let tag = cosign::signature_tag(digest).map(|t| t.to_string()).unwrap_or_default();
        return Ok(Verdict::Unsigned(format!(
            "it has no cosign signature in {repo} (no tag {tag}, no referrer of type {})",
            cosign::SIGNATURE_ARTIFACT_TYPE
        )));
    }
    // The most telling reason among the signatures that failed.
    let mut wrong_claims: Option<String> = None;
    for layer in &layers {
        let Some(payload) = read_payload(registry, repo, layer).await? else {
            continue;
        };
        let Some(key) = keys.iter().find(|key| key.verifies(&payload, &layer.signature)) else {
            continue;
        };
        match cosign::payload_signs(&payload, digest) {
            Ok(()) => return Ok(Verdict::Signed(key.name().to_string())),
            Err(why) => wrong_claims = Some(format!("the signature by {} is not of it: {why}", key.name())),
        }
    }
    Ok(Verdict::Unsigned(wrong_claims.unwrap_or_else(|| {
        format!(
            "none of its {} cosign signatures verifies with those keys (signed by another key, or altered)",
            layers.len()
        )
    })))
}

/// The payload blob of a signature, when it is in `repo`, small, and what
/// its descriptor names.
async fn read_payload(registry: &Registry, repo: &RepoName, layer: &cosign::SignatureLayer) -> Result<Option<Vec<u8>>> {
    if layer.size > cosign::MAX_PAYLOAD_BYTES {
        return Ok(None);
    }
    let record = match registry.blob(repo, &layer.payload).await {
        Ok(record) => record,
        Err(err) if err.code == ErrorCode::BlobUnknown => return Ok(None),
        Err(err) => return Err(err),
    };
    if record.size > cosign::MAX_PAYLOAD_BYTES {
        return Ok(None);
    }
    let bytes = registry.open_blob(&layer.payload, &record, None).await?.bytes().await?;
    Ok(cosign::is_blob(&bytes, &layer.payload).then(|| bytes.to_vec()))
}

#[cfg(test)]
mod tests {
    //! The vectors in `testdata/` were made by cosign 2.6.5
    //! (tests/signing/make-vectors.sh): one image signed in tag mode by an
    //! ECDSA P-256 key and by an Ed25519 key; `other.pub` signed nothing.

    use std::sync::Arc;

    use ct_codecs::{Base64, Decoder};
    use http::{Request, StatusCode};

    use super::*;
    use crate::api::{self, Service};
    use crate::body::{empty_body, full_body};
    use crate::registry::RegistryOptions;
    use crate::store::memory::MemoryStore;
    use crate::testing::TestEnv;

    const ECDSA_PUB: &str = include_str!("testdata/ecdsa.pub");
    const ED25519_PUB: &str = include_str!("testdata/ed25519.pub");
    const OTHER_PUB: &str = include_str!("testdata/other.pub");
    const PAYLOAD: &[u8] = include_bytes!("testdata/payload.json");
    const SIGNATURES: &str = include_str!("testdata/signatures.json");
    const IMAGE: &[u8] = include_bytes!("testdata/image.json");

    fn signature(file: &str) -> Vec<u8> {
        Base64::decode_to_vec(file.trim(), None).unwrap()
    }

    fn signed_digest() -> Digest {
        Digest::parse(include_str!("testdata/digest.txt").trim()).unwrap()
    }

    #[test]
    fn cosign_signatures_verify_with_their_own_key_only() {
        let ecdsa = PublicKey::from_pem(ECDSA_PUB).unwrap();
        let ed25519 = PublicKey::from_pem(ED25519_PUB).unwrap();
        let other = PublicKey::from_pem(OTHER_PUB).unwrap();
        let by_ecdsa = signature(include_str!("testdata/ecdsa.sig"));
        let by_ed25519 = signature(include_str!("testdata/ed25519.sig"));
        assert!(ecdsa.name().starts_with("ecdsa-p256:") && ed25519.name().starts_with("ed25519:"));
        assert!(ecdsa.verifies(PAYLOAD, &by_ecdsa));
        assert!(ed25519.verifies(PAYLOAD, &by_ed25519), "cosign 2 signs Ed25519ph");
        for (key, signature) in [(&other, &by_ecdsa), (&ecdsa, &by_ed25519), (&ed25519, &by_ecdsa)] {
            assert!(!key.verifies(PAYLOAD, signature), "{}", key.name());
        }
        // One byte of the payload changed: no key verifies it.
        let mut tampered = PAYLOAD.to_vec();
        if let Some(byte) = tampered.iter_mut().find(|b| **b == b'1') {
            *byte = b'2';
        }
        assert!(!ecdsa.verifies(&tampered, &by_ecdsa));
        assert!(!ed25519.verifies(&tampered, &by_ed25519));
    }

    #[test]
    fn the_payload_names_the_signed_manifest() {
        assert_eq!(cosign::payload_signs(PAYLOAD, &signed_digest()), Ok(()));
        let another = Digest::of(crate::digest::Algorithm::Sha256, b"another");
        assert!(cosign::payload_signs(PAYLOAD, &another)
            .unwrap_err()
            .contains("another manifest"));
        let retyped = String::from_utf8(PAYLOAD.to_vec())
            .unwrap()
            .replace("container image", "blob");
        assert!(cosign::payload_signs(retyped.as_bytes(), &signed_digest()).is_err());
        let layers = cosign::signature_layers(SIGNATURES.as_bytes());
        assert_eq!(layers.len(), 2);
        assert!(cosign::is_attachment(SIGNATURES.as_bytes()));
        let tag = cosign::signature_tag(&signed_digest()).unwrap();
        assert_eq!(
            cosign::attachment_tag_subject(tag.as_str()),
            Some((signed_digest(), true))
        );
        assert_eq!(cosign::attachment_tag_subject("v1.sig"), None);
    }

    #[test]
    fn what_is_exempt_is_told_by_what_it_is() {
        let subject = r#""subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}"#;
        let with_config = |config: &str, layer: &str, subject: &str| {
            format!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"{config}","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}},"layers":[{{"mediaType":"{layer}","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}}]{subject}}}"#
            )
        };
        let image_config = "application/vnd.oci.image.config.v1+json";
        let tar = "application/vnd.oci.image.layer.v1.tar";
        let sbom = with_config(
            "application/vnd.oci.empty.v1+json",
            "text/spdx+json",
            &format!(",{subject}"),
        );
        assert!(is_exempt(sbom.as_bytes()), "an SBOM attached as a referrer");
        assert!(is_exempt(SIGNATURES.as_bytes()), "a tag-mode signature manifest");
        assert!(!is_exempt(IMAGE), "an image");
        let image_with_subject = with_config(image_config, tar, &format!(",{subject}"));
        assert!(
            !is_exempt(image_with_subject.as_bytes()),
            "an image with a subject is still an image"
        );
        assert!(!is_exempt(with_config(image_config, tar, "").as_bytes()));
    }

    #[test]
    fn keys_that_are_not_public_keys_are_refused_with_a_reason() {
        let private =
            "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----";
        assert!(PublicKey::from_pem(private)
            .unwrap_err()
            .contains("never the private key"));
        assert!(PublicKey::from_pem("/etc/cosign.pub").unwrap_err().contains("not PEM"));
        let corrupt = ECDSA_PUB.replacen('M', "N", 2);
        assert!(PublicKey::from_pem(&corrupt).is_err());
    }

    fn gate(keys: &[&str]) -> SignatureGate {
        let config = PolicyConfig {
            namespace: "prod/**".into(),
            require_signature: keys.iter().map(|k| k.to_string()).collect(),
            tag_cache_secs: 0,
        };
        let policies = NamespacePolicies::new(&[config]).unwrap();
        SignatureGate::new(&policies).unwrap().unwrap()
    }

    /// A registry holding the signed image's tag-mode signatures in
    /// `prod/app` (the image itself and the signature manifest's config
    /// are left out: sparse manifests are allowed).
    fn registry_with_signatures(env: Arc<TestEnv>) -> Registry {
        let options = RegistryOptions {
            allow_sparse_manifests: true,
            ..RegistryOptions::default()
        };
        let registry = Registry::new(Arc::new(MemoryStore::new(64)), env, options);
        let payload = Digest::of(crate::digest::Algorithm::Sha256, PAYLOAD);
        let blob = Request::post(format!("/v2/prod/app/blobs/uploads/?digest={payload}"))
            .body(full_body(PAYLOAD))
            .unwrap();
        assert_eq!(crate::testing::send(&registry, blob).status(), StatusCode::CREATED);
        let tag = cosign::signature_tag(&signed_digest()).unwrap();
        let manifest = Request::put(format!("/v2/prod/app/manifests/{tag}"))
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(full_body(SIGNATURES.trim().as_bytes().to_vec()))
            .unwrap();
        assert_eq!(crate::testing::send(&registry, manifest).status(), StatusCode::CREATED);
        registry
    }

    fn verdict(gate: &SignatureGate, registry: &Registry, digest: &Digest) -> Verdict {
        let repo = RepoName::parse("prod/app").unwrap();
        let requirement = gate.requirement(&repo).unwrap();
        futures::executor::block_on(gate.verify(registry, &repo, digest, &requirement)).unwrap()
    }

    #[test]
    fn a_manifest_is_signed_when_one_signature_verifies_with_a_listed_key() {
        let registry = registry_with_signatures(Arc::new(TestEnv::at(0)));
        let digest = signed_digest();
        assert!(matches!(
            verdict(&gate(&[ECDSA_PUB]), &registry, &digest),
            Verdict::Signed(_)
        ));
        assert!(matches!(
            verdict(&gate(&[OTHER_PUB, ED25519_PUB]), &registry, &digest),
            Verdict::Signed(_)
        ));
        let Verdict::Unsigned(why) = verdict(&gate(&[OTHER_PUB]), &registry, &digest) else {
            panic!("signed by another key only")
        };
        assert!(why.contains("none of its 2 cosign signatures verifies"), "{why}");
        let unsigned = Digest::of(crate::digest::Algorithm::Sha256, b"unsigned");
        let Verdict::Unsigned(why) = verdict(&gate(&[ECDSA_PUB]), &registry, &unsigned) else {
            panic!("nothing signs it")
        };
        assert!(why.contains("no cosign signature"), "{why}");
    }

    /// The pull gate through the API: refused with DENIED while unsigned,
    /// allowed once signed, and a deleted signature stops counting once the
    /// cached verdict has expired.
    #[test]
    fn pulls_are_gated_and_a_deleted_signature_stops_counting_after_the_ttl() {
        let env = Arc::new(TestEnv::at(1_000));
        let registry = registry_with_signatures(env.clone());
        let gate = gate(&[ECDSA_PUB]);
        let send = |request: Request<crate::body::RequestBody>| {
            let service = Service {
                signatures: Some(&gate),
                ..Service::open(&registry)
            };
            futures::executor::block_on(api::handle(service, request))
        };
        let get = |reference: &str| {
            let request = Request::get(format!("/v2/prod/app/manifests/{reference}"))
                .body(empty_body())
                .unwrap();
            send(request).status()
        };
        let push = |manifest: &[u8]| {
            let digest = Digest::of(crate::digest::Algorithm::Sha256, manifest);
            let request = Request::put(format!("/v2/prod/app/manifests/{digest}"))
                .header("content-type", manifest::media_type_of(manifest))
                .body(full_body(manifest.to_vec()))
                .unwrap();
            assert_eq!(send(request).status(), StatusCode::CREATED, "pushes are not gated");
            digest
        };
        // The signed image (sparse: its blobs are left out), and another.
        assert_eq!(push(IMAGE), signed_digest());
        let unsigned = push(br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#);
        assert_eq!(get(signed_digest().as_str()), StatusCode::OK);
        assert_eq!(get(unsigned.as_str()), StatusCode::FORBIDDEN);
        let tag = cosign::signature_tag(&signed_digest()).unwrap();
        assert_eq!(get(tag.as_str()), StatusCode::OK, "signatures stay pullable");

        let repo = RepoName::parse("prod/app").unwrap();
        let requirement = gate.requirement(&repo).unwrap();
        let check = || futures::executor::block_on(gate.verify(&registry, &repo, &signed_digest(), &requirement));
        assert!(matches!(check().unwrap(), Verdict::Signed(_)));
        let delete = Request::delete(format!("/v2/prod/app/manifests/{tag}"))
            .body(empty_body())
            .unwrap();
        assert_eq!(send(delete).status(), StatusCode::ACCEPTED);
        env.advance_millis(VERDICT_TTL_MS - 1);
        assert!(matches!(check().unwrap(), Verdict::Signed(_)), "cached within the TTL");
        env.advance_millis(1);
        assert!(matches!(check().unwrap(), Verdict::Unsigned(_)), "re-checked after it");
    }
}
