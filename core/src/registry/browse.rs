//! What the web UI's JSON API (`api::browse`) reads that the distribution
//! API does not say in one answer: per tag, the digest and media type, the
//! size (config and layers; per platform for an index), the platforms, when
//! it was pushed and whether a signature of it exists. Every read is bounded
//! (children of an index, config size, referrers examined), so a page costs
//! a known number of store reads whatever was pushed.

use futures::future::try_join_all;
use serde_json::Value;

use crate::digest::Digest;
use crate::error::{ErrorCode, RegistryError, Result};
use crate::layout;
use crate::manifest;
use crate::names::{RepoName, Tag};
use crate::store::read_small;

use super::Registry;

/// Children of an index whose manifests are read for their sizes; the rest
/// are listed with their platform only.
const MAX_CHILDREN_READ: usize = 16;

/// Largest image config read for its platform (configs are a few KiB).
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Referrers examined for a signature.
const MAX_REFERRERS_EXAMINED: usize = 100;

/// Artifact types of signatures: cosign's (the referrer form of `cosign
/// sign`, and its sigstore bundle) and Notary's.
pub const SIGNATURE_ARTIFACT_TYPES: &[&str] = &[
    "application/vnd.dev.cosign.artifact.sig.v1+json",
    "application/vnd.dev.sigstore.bundle.v0.3+json",
    "application/vnd.cncf.notary.signature",
];

/// Config media types that describe a runnable image (and so a platform).
const IMAGE_CONFIG_TYPES: &[&str] = &[
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

/// One tag, summarised.
pub struct TagSummary {
    pub tag: String,
    pub digest: Digest,
    pub media_type: String,
    /// Config and layers; for an index, the sum of its platforms' sizes.
    pub size: u64,
    pub platforms: Vec<PlatformSummary>,
    /// When the tag was last pointed here; 0 if its record predates times.
    pub pushed_ms: u64,
    /// When its manifest was last pulled, if recorded (`crate::pulls`).
    pub pulled_ms: Option<u64>,
    pub signed: bool,
}

/// One platform of a tag: the image itself, or an entry of its index.
pub struct PlatformSummary {
    /// `os/architecture[/variant]`.
    pub platform: String,
    pub digest: Digest,
    /// `None` when the manifest is not here (a sparse index) or was not read.
    pub size: Option<u64>,
}

impl Registry {
    /// Summaries of `tags` of `repo`, in the order given; a tag deleted
    /// meanwhile, or pointing at a manifest no longer there, is left out.
    pub async fn tag_summaries(&self, repo: &RepoName, tags: &[String]) -> Result<Vec<TagSummary>> {
        let summaries = try_join_all(tags.iter().map(|tag| self.tag_summary(repo, tag))).await?;
        Ok(summaries.into_iter().flatten().collect())
    }

    async fn tag_summary(&self, repo: &RepoName, name: &str) -> Result<Option<TagSummary>> {
        let Some(tag) = Tag::parse(name) else {
            return Ok(None);
        };
        let Some(record) = self.tag_record(repo, &tag).await? else {
            return Ok(None);
        };
        let Some((bytes, json)) = self.manifest_json(repo, &record.digest).await? else {
            return Ok(None);
        };
        let (platforms, signed, pulled_ms) = futures::join!(
            self.platforms(repo, &record.digest, &json),
            self.is_signed(repo, &record.digest),
            self.last_pull(repo, &record.digest),
        );
        let platforms = platforms?;
        let size = match json.get("manifests") {
            Some(_) => platforms.iter().filter_map(|p| p.size).sum(),
            None => image_size(&json),
        };
        Ok(Some(TagSummary {
            tag: tag.as_str().to_string(),
            digest: record.digest,
            media_type: manifest::media_type_of(&bytes),
            size,
            platforms,
            pushed_ms: record.tagged_ms,
            pulled_ms: pulled_ms?,
            signed: signed?,
        }))
    }

    /// A manifest of `repo` by digest, its bytes and their JSON; `None` if
    /// it is not here or not JSON.
    async fn manifest_json(&self, repo: &RepoName, digest: &Digest) -> Result<Option<(bytes::Bytes, Value)>> {
        let Some((bytes, _)) = read_small(self.store(), &layout::manifest(repo, digest)).await? else {
            return Ok(None);
        };
        Ok(serde_json::from_slice(&bytes).ok().map(|json| (bytes, json)))
    }

    /// The platforms of an index (from its entries, sized by their
    /// manifests) or of an image (from its config).
    async fn platforms(&self, repo: &RepoName, digest: &Digest, json: &Value) -> Result<Vec<PlatformSummary>> {
        if let Some(children) = json.get("manifests").and_then(Value::as_array) {
            let entries: Vec<(String, Digest)> = children
                .iter()
                .filter_map(|child| {
                    let platform = platform_text(child.get("platform")?)?;
                    let digest = Digest::parse(child.get("digest")?.as_str()?).ok()?;
                    Some((platform, digest))
                })
                .collect();
            let sizes = try_join_all(entries.iter().take(MAX_CHILDREN_READ).map(|(_, child)| async move {
                let child = self.manifest_json(repo, child).await?;
                Ok::<_, RegistryError>(child.map(|(_, json)| image_size(&json)))
            }))
            .await?;
            let sizes = sizes.into_iter().map(Some).chain(std::iter::repeat(None));
            return Ok(entries
                .into_iter()
                .zip(sizes)
                .map(|((platform, digest), size)| PlatformSummary {
                    platform,
                    digest,
                    size: size.flatten(),
                })
                .collect());
        }
        let config = json.get("config");
        let is_image = config
            .and_then(|c| c.get("mediaType"))
            .and_then(Value::as_str)
            .is_some_and(|t| IMAGE_CONFIG_TYPES.contains(&t));
        let config_digest = config
            .and_then(|c| c.get("digest"))
            .and_then(Value::as_str)
            .and_then(|d| Digest::parse(d).ok());
        let (true, Some(config_digest)) = (is_image, config_digest) else {
            return Ok(Vec::new());
        };
        let platform = self.config_platform(repo, &config_digest).await?;
        Ok(platform
            .map(|platform| PlatformSummary {
                platform,
                digest: digest.clone(),
                size: Some(image_size(json)),
            })
            .into_iter()
            .collect())
    }

    /// `os/architecture[/variant]` of an image config readable in `repo`.
    async fn config_platform(&self, repo: &RepoName, digest: &Digest) -> Result<Option<String>> {
        let record = match self.blob(repo, digest).await {
            Ok(record) if record.size <= MAX_CONFIG_BYTES => record,
            Ok(_) => return Ok(None),
            Err(e) if e.code == ErrorCode::BlobUnknown => return Ok(None),
            Err(e) => return Err(e),
        };
        let bytes = match self.open_blob(digest, &record, None).await {
            Ok(found) => found.bytes().await?,
            Err(e) if e.code == ErrorCode::BlobUnknown => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|config| platform_text(&config)))
    }

    /// Whether a signature of `digest` is in `repo`: a referrer of a
    /// signature's artifact type, or cosign's `<alg>-<hex>.sig` tag.
    async fn is_signed(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let signature_tag = Tag::parse(&format!("{}-{}.sig", digest.algorithm().name(), digest.hex()));
        if let Some(tag) = signature_tag {
            if self.store().head(&layout::tag(repo, &tag)).await?.is_some() {
                return Ok(true);
            }
        }
        let referrers = self
            .referrers_page(repo, digest, None, None, MAX_REFERRERS_EXAMINED)
            .await?;
        Ok(referrers.manifests.iter().any(|referrer| {
            referrer
                .get("artifactType")
                .and_then(Value::as_str)
                .is_some_and(|t| SIGNATURE_ARTIFACT_TYPES.contains(&t))
        }))
    }
}

/// Bytes an image manifest's config and layers add up to.
fn image_size(json: &Value) -> u64 {
    let size = |descriptor: &Value| descriptor.get("size").and_then(Value::as_u64).unwrap_or(0);
    let layers: u64 = json
        .get("layers")
        .and_then(Value::as_array)
        .map_or(0, |layers| layers.iter().map(size).sum());
    json.get("config").map_or(0, size).saturating_add(layers)
}

/// `os/architecture[/variant]` of a platform object or an image config;
/// `None` for entries that are no platform (`unknown/unknown`: attestations).
fn platform_text(value: &Value) -> Option<String> {
    let field = |name: &str| value.get(name).and_then(Value::as_str).filter(|s| !s.is_empty());
    let (os, architecture) = (field("os")?, field("architecture")?);
    if os == "unknown" {
        return None;
    }
    Some(match field("variant") {
        Some(variant) => format!("{os}/{architecture}/{variant}"),
        None => format!("{os}/{architecture}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn platforms_are_written_as_clients_write_them() {
        let arm = json!({"os": "linux", "architecture": "arm64", "variant": "v8"});
        assert_eq!(platform_text(&arm).as_deref(), Some("linux/arm64/v8"));
        let amd = json!({"os": "linux", "architecture": "amd64", "variant": ""});
        assert_eq!(platform_text(&amd).as_deref(), Some("linux/amd64"));
        assert_eq!(
            platform_text(&json!({"os": "unknown", "architecture": "unknown"})),
            None
        );
        assert_eq!(platform_text(&json!({"os": "linux"})), None);
    }

    #[test]
    fn an_image_is_its_config_and_layers() {
        let image = json!({"config": {"size": 10}, "layers": [{"size": 100}, {"size": 1000}]});
        assert_eq!(image_size(&image), 1110);
        assert_eq!(image_size(&json!({"layers": "no"})), 0);
    }
}
