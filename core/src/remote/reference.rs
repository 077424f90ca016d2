//! Image references as people write them: `host[:port]/repo[:tag][@digest]`,
//! optionally prefixed `docker://` (skopeo's transport name). A first
//! component without a dot, colon or `localhost` is a Docker Hub name, as in
//! every other tool (`alpine` is `registry-1.docker.io/library/alpine:latest`).

use std::fmt;

use crate::digest::Digest;
use crate::names::{RepoName, Tag};
use crate::records::Reference;

const DOCKER_HUB: &str = "registry-1.docker.io";

/// A manifest in a repository of a registry.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageRef {
    /// `host[:port]`.
    pub registry: String,
    pub repo: RepoName,
    pub reference: Reference,
}

impl ImageRef {
    pub fn parse(text: &str) -> Result<ImageRef, String> {
        let bad = |why: &str| format!("image reference {text:?}: {why}");
        let rest = text.strip_prefix("docker://").unwrap_or(text);
        let (rest, digest) = match rest.rsplit_once('@') {
            Some((rest, digest)) => (rest, Some(Digest::parse(digest).map_err(|_| bad("invalid digest"))?)),
            None => (rest, None),
        };
        let (name, tag) = match rest.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
            _ => (rest, None),
        };
        let (registry, path) = match name.split_once('/') {
            Some((first, path)) if first.contains(['.', ':']) || first == "localhost" => {
                (first.to_string(), path.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let registry = match registry.as_str() {
            "docker.io" | "index.docker.io" => DOCKER_HUB.to_string(),
            _ => registry,
        };
        let path = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        let repo = RepoName::parse(&path).ok_or_else(|| bad("invalid repository name"))?;
        let reference = match (digest, tag) {
            (Some(digest), _) => Reference::Digest(digest),
            (None, Some(tag)) => Reference::Tag(Tag::parse(tag).ok_or_else(|| bad("invalid tag"))?),
            (None, None) => Reference::Tag(Tag::parse("latest").ok_or_else(|| bad("no default tag"))?),
        };
        Ok(ImageRef {
            registry,
            repo,
            reference,
        })
    }

    /// The registry's base URL, over plain HTTP when asked.
    pub fn base_url(&self, plain_http: bool) -> String {
        format!("{}://{}", if plain_http { "http" } else { "https" }, self.registry)
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reference {
            Reference::Tag(tag) => write!(f, "{}/{}:{}", self.registry, self.repo, tag.as_str()),
            Reference::Digest(digest) => write!(f, "{}/{}@{digest}", self.registry, self.repo),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> String {
        ImageRef::parse(text).unwrap().to_string()
    }

    #[test]
    fn forms_people_write() {
        assert_eq!(parse("127.0.0.1:5000/team/app:v1"), "127.0.0.1:5000/team/app:v1");
        assert_eq!(parse("docker://localhost/app"), "localhost/app:latest");
        assert_eq!(parse("alpine"), "registry-1.docker.io/library/alpine:latest");
        assert_eq!(
            parse("docker.io/bitnami/redis:7"),
            "registry-1.docker.io/bitnami/redis:7"
        );
        assert_eq!(parse("ghcr.io/o/r/x:1.2"), "ghcr.io/o/r/x:1.2");
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            parse(&format!("r.example/a:v1@{digest}")),
            format!("r.example/a@{digest}")
        );
        let plain = ImageRef::parse("localhost:5000/a").unwrap();
        assert_eq!(plain.base_url(true), "http://localhost:5000");
        assert_eq!(plain.base_url(false), "https://localhost:5000");
    }

    #[test]
    fn refuses_what_no_registry_would_take() {
        for bad in [
            "r.example/A",
            "r.example/a:bad tag",
            "r.example/a@sha256:12",
            "r.example/",
            "",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad}");
        }
    }
}
