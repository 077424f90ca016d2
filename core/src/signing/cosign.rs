//! What cosign stores, read as its specification (sigstore/cosign,
//! specs/SIGNATURE_SPEC.md) describes it. A signature of manifest `D` is a
//! layer of a signature manifest: the layer's blob is the signed payload (a
//! "simple signing" JSON document naming `D`), its annotation
//! `dev.cosignproject.cosign/signature` the base64 signature over that
//! blob's bytes. Signature manifests are found two ways:
//!   - the tag `sha256-<hex of D>.sig` in the same repository (cosign's
//!     default; one manifest holding every signature as a layer);
//!   - referrers of `D` of artifact type
//!     `application/vnd.dev.cosign.artifact.sig.v1+json` (cosign's
//!     `--registry-referrers-mode=oci-1-1`).
//!
//! Nothing here trusts a payload before its signature is checked: the
//! claims are read only from a payload a trusted key signed.

use ct_codecs::{Base64, Decoder};
use serde_json::Value;

use crate::digest::Digest;
use crate::names::Tag;

/// The media type of a signed payload's layer.
pub const SIMPLE_SIGNING_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation holding the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The artifact type of a signature stored as a referrer.
pub const SIGNATURE_ARTIFACT_TYPE: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
/// The payload's `critical.type` for an image signature.
pub const PAYLOAD_TYPE: &str = "cosign container image signature";
/// Layer media types of what cosign attaches to an image: signatures,
/// attestations (DSSE envelopes), SBOMs (`cosign attach sbom`); a manifest
/// of only such layers is an attachment, not an image.
const ATTACHMENT_LAYER_TYPES: &[&str] = &[
    SIMPLE_SIGNING_TYPE,
    "application/vnd.dsse.envelope.v1+json",
    "text/spdx",
    "text/spdx+json",
    "text/spdx+xml",
    "application/vnd.cyclonedx",
    "application/vnd.cyclonedx+json",
    "application/vnd.cyclonedx+xml",
    "application/vnd.syft+json",
];
/// The config media types of images a runtime starts.
const RUNNABLE_CONFIG_TYPES: &[&str] = &[
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];
/// The tag suffixes of cosign's tag-mode attachments: signatures,
/// attestations, SBOMs.
const ATTACHMENT_TAG_SUFFIXES: &[&str] = &[".sig", ".att", ".sbom"];
/// The largest payload read: a simple-signing document is a few hundred
/// bytes, with optional claims a few KiB.
pub const MAX_PAYLOAD_BYTES: u64 = 64 << 10;

/// The tag under which cosign's tag mode keeps the signatures of `digest`.
pub fn signature_tag(digest: &Digest) -> Option<Tag> {
    Tag::parse(&format!("{}-{}.sig", digest.algorithm().name(), digest.hex()))
}

/// The manifest a cosign attachment tag (`sha256-<hex>.sig`, `.att`,
/// `.sbom`) is about, and whether it is a signature (`.sig`).
pub fn attachment_tag_subject(tag: &str) -> Option<(Digest, bool)> {
    let suffix = ATTACHMENT_TAG_SUFFIXES.iter().find(|s| tag.ends_with(*s))?;
    let stem = tag.strip_suffix(suffix)?;
    let (algorithm, hex) = stem.split_once('-')?;
    let digest = Digest::parse(&format!("{algorithm}:{hex}")).ok()?;
    Some((digest, *suffix == ".sig"))
}

/// One signature found in a signature manifest: the payload blob's
/// descriptor and the signature's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureLayer {
    pub payload: Digest,
    pub size: u64,
    pub signature: Vec<u8>,
}

/// The signatures a manifest holds (its simple-signing layers with a
/// signature annotation that decodes).
pub fn signature_layers(manifest: &[u8]) -> Vec<SignatureLayer> {
    let Ok(value) = serde_json::from_slice::<Value>(manifest) else {
        return Vec::new();
    };
    let layers = value.get("layers").and_then(Value::as_array);
    layers
        .into_iter()
        .flatten()
        .filter(|layer| layer.get("mediaType").and_then(Value::as_str) == Some(SIMPLE_SIGNING_TYPE))
        .filter_map(|layer| {
            let payload = Digest::parse(layer.get("digest")?.as_str()?).ok()?;
            let size = layer.get("size")?.as_u64()?;
            let encoded = layer.get("annotations")?.get(SIGNATURE_ANNOTATION)?.as_str()?;
            let signature = Base64::decode_to_vec(encoded, None).ok()?;
            Some(SignatureLayer {
                payload,
                size,
                signature,
            })
        })
        .collect()
}

/// Whether a config media type is that of an image a runtime starts.
pub fn is_runnable_config(media_type: &str) -> bool {
    RUNNABLE_CONFIG_TYPES.contains(&media_type)
}

/// Whether a manifest is one of cosign's tag-mode attachments rather than
/// an image: it has layers and every one is a signature, an attestation or
/// an SBOM.
pub fn is_attachment(manifest: &[u8]) -> bool {
    let Ok(value) = serde_json::from_slice::<Value>(manifest) else {
        return false;
    };
    let Some(layers) = value.get("layers").and_then(Value::as_array) else {
        return false;
    };
    !layers.is_empty()
        && layers.iter().all(|layer| {
            layer
                .get("mediaType")
                .and_then(Value::as_str)
                .is_some_and(|t| ATTACHMENT_LAYER_TYPES.contains(&t))
        })
}

/// Checks a signed payload's claims: it is an image signature
/// (`critical.type`) of `digest` (`critical.image.docker-manifest-digest`).
pub fn payload_signs(payload: &[u8], digest: &Digest) -> Result<(), String> {
    let value: Value = serde_json::from_slice(payload).map_err(|_| "its payload is not JSON".to_string())?;
    let critical = value
        .get("critical")
        .ok_or_else(|| "its payload has no `critical` section".to_string())?;
    let kind = critical.get("type").and_then(Value::as_str);
    if kind != Some(PAYLOAD_TYPE) {
        return Err(format!("its payload's type is {kind:?}, not {PAYLOAD_TYPE:?}"));
    }
    let signed = critical
        .get("image")
        .and_then(|image| image.get("docker-manifest-digest"))
        .and_then(Value::as_str);
    match signed {
        Some(signed) if signed == digest.as_str() => Ok(()),
        Some(signed) => Err(format!("it signs {signed}, another manifest")),
        None => Err("its payload names no critical.image.docker-manifest-digest".into()),
    }
}

/// Whether `bytes` are the blob `digest` names (the store checked them when
/// they were pushed; a check costs a hash of a few hundred bytes).
pub fn is_blob(bytes: &[u8], digest: &Digest) -> bool {
    &Digest::of(digest.algorithm(), bytes) == digest
}
