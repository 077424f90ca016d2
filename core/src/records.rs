//! The records pier keeps in a store, as they are read back: a blob's
//! record, a tag's record, and a manifest with its reference. Every layer
//! above the store speaks of these; they live here so that none of them has
//! to reach up into the layer that writes them.

use std::borrow::Cow;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::names::Tag;

/// A manifest reference: a tag or a digest.
#[derive(Clone, Debug, PartialEq)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

impl Reference {
    /// The tag, when it is one.
    pub fn tag(&self) -> Option<&Tag> {
        match self {
            Reference::Tag(tag) => Some(tag),
            Reference::Digest(_) => None,
        }
    }
}

/// A manifest as read back.
pub struct StoredManifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
}

/// The record that makes a blob exist: its size and where its bytes are.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BlobRecord {
    pub size: u64,
    pub object: String,
    /// When the record was written; records of older builds read as 0 (old).
    #[serde(default)]
    pub created_ms: u64,
    /// The bytes are in the archive store, under the same `object` key
    /// (`crate::archive`); absent (false) in records of the main store.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub archived: bool,
}

/// What a repository's link to a blob holds: when it was written. An upload
/// writes a new link at the same time as the blob's record, so the collector
/// spares a link younger than its grace window even when it finds no record
/// (docs/gc.md, "Links written beside their record"). Links of older builds
/// are empty: they read as written at 0 (as old as can be). Only the
/// collector reads the time, from the store itself; a cached copy may hold an
/// older one.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct LayerLink {
    #[serde(default)]
    pub created_ms: u64,
}

impl LayerLink {
    pub fn parse(bytes: &[u8]) -> LayerLink {
        serde_json::from_slice(bytes).unwrap_or_default()
    }

    pub fn to_bytes(&self) -> Bytes {
        Bytes::from(format!("{{\"created_ms\":{}}}", self.created_ms))
    }
}

/// What a tag record holds: `{"digest", "tagged_ms"}`, and `checked_ms` in
/// a pull-through cache. Older builds wrote the digest as plain text; those
/// read with `tagged_ms` 0 (as old as can be).
#[derive(Clone, Debug, PartialEq)]
pub struct TagRecord {
    pub digest: Digest,
    pub tagged_ms: u64,
    /// When upstream last confirmed the tag (pull-through caches); 0 for
    /// tags pushed here.
    pub checked_ms: u64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct TagRecordJson<'a> {
    /// Borrowed: read on every manifest GET by tag.
    #[serde(borrow)]
    digest: Cow<'a, str>,
    #[serde(default)]
    tagged_ms: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    checked_ms: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl TagRecord {
    pub fn parse(bytes: &[u8]) -> Option<TagRecord> {
        let (digest, tagged_ms, checked_ms) = match serde_json::from_slice::<TagRecordJson>(bytes) {
            Ok(json) => (json.digest, json.tagged_ms, json.checked_ms),
            Err(_) => (Cow::Borrowed(std::str::from_utf8(bytes).ok()?.trim()), 0, 0),
        };
        Some(TagRecord {
            digest: Digest::parse(&digest).ok()?,
            tagged_ms,
            checked_ms,
        })
    }

    pub fn to_bytes(&self) -> Bytes {
        let json = TagRecordJson {
            digest: Cow::Borrowed(self.digest.as_str()),
            tagged_ms: self.tagged_ms,
            checked_ms: self.checked_ms,
        };
        // A struct of a string and numbers: its JSON cannot fail.
        #[allow(clippy::expect_used)]
        let bytes = serde_json::to_vec(&json).expect("a string and numbers serialize");
        bytes.into()
    }
}
