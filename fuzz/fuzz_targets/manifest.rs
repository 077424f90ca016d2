//! Manifest bytes as a client pushes them (and as an upstream serves them),
//! with and without a Content-Type: `manifest::parse` and `media_type_of`
//! must never panic, and what they accept must be self-consistent.
//!
//! Input: one byte choosing the Content-Type, then the manifest bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pier_core::digest::Digest;
use pier_core::manifest::{self, DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};

const CONTENT_TYPES: [Option<&str>; 8] = [
    None,
    Some(OCI_MANIFEST),
    Some(OCI_INDEX),
    Some(DOCKER_MANIFEST),
    Some(DOCKER_LIST),
    Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
    Some("application/vnd.example.artifact+json"),
    Some(""),
];

fuzz_target!(|input: &[u8]| {
    let Some((&choice, bytes)) = input.split_first() else {
        return;
    };
    let content_type = CONTENT_TYPES[choice as usize % CONTENT_TYPES.len()];
    let stored_type = manifest::media_type_of(bytes);
    let Ok(parsed) = manifest::parse(bytes, content_type) else {
        return;
    };
    // A push refuses it (MANIFEST_INVALID); reads of one stored by an older
    // build infer the type instead (media_type_of, checked above not to panic).
    if manifest::check_media_types(&parsed).is_err() {
        return;
    }
    // Its media type is served back as a Content-Type header.
    assert!(
        http::HeaderValue::from_str(&parsed.media_type).is_ok(),
        "{:?}",
        parsed.media_type
    );
    // Every digest it references is one the registry can address.
    for descriptor in parsed.blobs.iter().chain(&parsed.children).chain(&parsed.subject) {
        assert_eq!(
            Digest::parse(descriptor.digest.as_str()).as_ref(),
            Ok(&descriptor.digest)
        );
        assert!(!descriptor.media_type.is_empty());
    }
    // A GET answers with the type the push was accepted as, unless the
    // Content-Type alone named it (a manifest without mediaType or the keys
    // that tell its kind).
    if content_type.is_none() {
        assert_eq!(stored_type, parsed.media_type, "GET would change the media type");
    }
    // A manifest accepted without a Content-Type is accepted under its own type.
    if content_type.is_none() {
        let again = manifest::parse(bytes, Some(&parsed.media_type));
        assert!(again.is_ok(), "refused under its own media type: {:?}", again.err());
    }
});
