//! Where everything lives in the store. One layout for every backend, so a
//! bucket written by the native server can be served by the edge Worker and
//! the other way round. See docs/architecture.md for the rationale.
//!
//! ```text
//! blobs/<alg>/<hex>                              blob record: {"size", "object"} (immutable)
//! data/<id>                                      blob bytes, keyed by upload id (immutable)
//! repos/<name>/_layers/<alg>/<hex>               empty: the blob is readable in <name>
//! repos/<name>/_manifests/<alg>/<hex>            manifest bytes (immutable)
//! repos/<name>/_tags/<tag>                       tag record: the digest it points to
//! repos/<name>/_referrers/<alg>/<hex>/<alg>/<hex> descriptor of a manifest whose subject is the first digest
//! uploads/<id>/s/<seq>                           upload session state, one new key per change
//! uploads/<id>/t/<offset>                        upload bytes not yet in a multipart part
//! catalog/<name>/_repo                           marker: the repository exists
//! ```

use crate::digest::Digest;
use crate::names::{RepoName, Tag};

pub fn blob_record(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm().name(), digest.hex())
}

pub const BLOB_RECORDS: &str = "blobs/";

pub fn blob_data(upload_id: &str) -> String {
    format!("data/{upload_id}")
}

pub fn repo_prefix(repo: &RepoName) -> String {
    format!("repos/{repo}/")
}

pub fn layer_link(repo: &RepoName, digest: &Digest) -> String {
    format!("repos/{repo}/_layers/{}/{}", digest.algorithm().name(), digest.hex())
}

pub fn manifest(repo: &RepoName, digest: &Digest) -> String {
    format!("repos/{repo}/_manifests/{}/{}", digest.algorithm().name(), digest.hex())
}

pub fn manifests_prefix(repo: &RepoName) -> String {
    format!("repos/{repo}/_manifests/")
}

pub fn tag(repo: &RepoName, tag: &Tag) -> String {
    format!("repos/{repo}/_tags/{tag}")
}

pub fn tags_prefix(repo: &RepoName) -> String {
    format!("repos/{repo}/_tags/")
}

pub fn referrers_prefix(repo: &RepoName, subject: &Digest) -> String {
    format!(
        "repos/{repo}/_referrers/{}/{}/",
        subject.algorithm().name(),
        subject.hex()
    )
}

pub fn referrer(repo: &RepoName, subject: &Digest, referrer: &Digest) -> String {
    format!(
        "{}{}/{}",
        referrers_prefix(repo, subject),
        referrer.algorithm().name(),
        referrer.hex()
    )
}

pub fn upload_prefix(upload_id: &str) -> String {
    format!("uploads/{upload_id}/")
}

pub fn upload_state(upload_id: &str, seq: u64) -> String {
    format!("uploads/{upload_id}/s/{seq:010}")
}

pub fn upload_tail(upload_id: &str, offset: u64) -> String {
    format!("uploads/{upload_id}/t/{offset:020}")
}

pub const CATALOG: &str = "catalog/";

pub fn catalog_entry(repo: &RepoName) -> String {
    format!("catalog/{repo}/_repo")
}

/// The repository named by a catalog key.
pub fn repo_of_catalog_entry(key: &str) -> Option<&str> {
    key.strip_prefix(CATALOG)?.strip_suffix("/_repo")
}

/// `<alg>/<hex>` at the end of a key, as a digest.
pub fn digest_at_end(key: &str) -> Option<Digest> {
    let mut parts = key.rsplitn(3, '/');
    let hex = parts.next()?;
    let alg = parts.next()?;
    Digest::parse(&format!("{alg}:{hex}")).ok()
}
