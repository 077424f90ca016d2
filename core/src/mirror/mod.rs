//! The pull-through cache: namespaces whose content comes from an upstream
//! registry (e.g. `hub/**` from Docker Hub). A pull of a manifest or blob the
//! registry lacks fetches it upstream, stores it through the ordinary paths
//! (so retention and GC treat it like anything pushed) and answers it; a blob
//! streams to the first puller while it is stored (`tee`). Tags are asked
//! upstream again once older than their TTL, with a HEAD comparing digests;
//! while upstream cannot answer, the cached copy is served. Pushes into a
//! mirrored namespace are refused: its content is upstream's.
//!
//! Core decides everything here; a platform only supplies the HTTP client
//! port (`remote::http`) the upstream clients use.

pub mod tee;

use std::sync::Arc;

use serde::Deserialize;

use crate::digest::Digest;
use crate::error::{ErrorCode, RegistryError, Result};
use crate::names::{RepoName, Tag};
use crate::platform::Env;
use crate::records::{Reference, StoredManifest};
use crate::registry::Registry;
use crate::remote::http::HttpClient;
use crate::remote::verify::verified;
use crate::remote::{Credentials, RegistryClient, RemoteError};
use crate::store::ByteStream;

/// How long a cached tag is served before upstream is asked again, by default.
pub const DEFAULT_TAG_TTL_SECS: u64 = 300;

fn default_tag_ttl_secs() -> u64 {
    DEFAULT_TAG_TTL_SECS
}

/// One mirrored namespace, as configured (`[[mirror]]` on native).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MirrorConfig {
    /// The local namespace: `prefix/**`, or `**` for every repository.
    pub namespace: String,
    /// The upstream registry's base URL, e.g. `https://registry-1.docker.io`.
    pub upstream: String,
    /// What stands for the namespace's prefix upstream: with `hub/**` and
    /// `""`, `hub/library/alpine` is `library/alpine` upstream; with
    /// `library`, `hub/alpine` is.
    #[serde(default)]
    pub upstream_prefix: String,
    /// Upstream credentials (both or neither); without them pulls are anonymous.
    pub username: Option<String>,
    pub password: Option<String>,
    /// Origins (`https://host[:port]`) besides the upstream's own where its
    /// token endpoint may be (`remote::token::TokenRealms`).
    #[serde(default)]
    pub token_realms: Vec<String>,
    /// Seconds a cached tag is served before upstream is asked again; 0
    /// asks on every pull.
    #[serde(default = "default_tag_ttl_secs")]
    pub tag_ttl_secs: u64,
}

/// An upstream registry and the namespace it fills.
pub struct Upstream {
    /// Local names starting with this come from here (`hub/`, or `` for all).
    local_prefix: String,
    /// What replaces `local_prefix` upstream (`library/`, or ``).
    remote_prefix: String,
    client: RegistryClient,
    tag_ttl_ms: u64,
    /// The registry names containerd gives this upstream in `?ns=`.
    names: Vec<String>,
}

/// Every mirrored namespace of a registry.
pub struct Mirror {
    upstreams: Vec<Upstream>,
}

impl Mirror {
    pub fn new(
        configs: &[MirrorConfig],
        http: Arc<dyn HttpClient>,
        env: Arc<dyn Env>,
    ) -> std::result::Result<Mirror, String> {
        let mut upstreams = Vec::new();
        for config in configs {
            let at = |why: String| format!("mirror of {:?}: {why}", config.namespace);
            let local_prefix = namespace_prefix(&config.namespace).map_err(at)?;
            let remote_prefix = match config.upstream_prefix.trim_matches('/') {
                "" => String::new(),
                prefix => {
                    RepoName::parse(prefix)
                        .ok_or_else(|| at(format!("upstream_prefix {prefix:?} is not a repository name")))?;
                    format!("{prefix}/")
                }
            };
            let credentials = Credentials::from_config(&config.username, &config.password).map_err(at)?;
            if upstreams.iter().any(|u: &Upstream| u.local_prefix == local_prefix) {
                return Err(at("another mirror has the same namespace".into()));
            }
            let client = RegistryClient::new(
                http.clone(),
                env.clone(),
                &config.upstream,
                credentials,
                &config.token_realms,
            )
            .map_err(at)?;
            upstreams.push(Upstream {
                local_prefix,
                remote_prefix,
                names: registry_names(client.base()),
                client,
                tag_ttl_ms: config.tag_ttl_secs.saturating_mul(1000),
            });
        }
        // The longest prefix is the most specific: it is looked at first.
        upstreams.sort_by_key(|u| std::cmp::Reverse(u.local_prefix.len()));
        Ok(Mirror { upstreams })
    }

    /// The upstream `repo` comes from, with its name there.
    pub fn upstream_for(&self, repo: &RepoName) -> Option<(&Upstream, String)> {
        self.upstreams.iter().find_map(|upstream| {
            let rest = repo.as_str().strip_prefix(&upstream.local_prefix)?;
            Some((upstream, format!("{}{rest}", upstream.remote_prefix)))
        })
    }
}

/// Docker Hub's registry answers to these names; containerd calls it `docker.io`.
const DOCKER_HUB_NAMES: [&str; 3] = ["docker.io", "registry-1.docker.io", "index.docker.io"];

/// The names a client may give the registry at `base` (its host, with the
/// port if it has one; every name of Docker Hub for Docker Hub).
fn registry_names(base: &str) -> Vec<String> {
    let authority = base
        .split_once("://")
        .map_or(base, |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match DOCKER_HUB_NAMES.contains(&authority.as_str()) {
        true => DOCKER_HUB_NAMES.iter().map(|name| name.to_string()).collect(),
        false => vec![authority],
    }
}

impl Mirror {
    /// The local name of `remote`, a repository of the registry containerd
    /// names in `?ns=` when it uses this registry as a mirror of it (one
    /// `hosts.toml` entry per upstream, all pointing here): `library/alpine`
    /// with `ns=docker.io` is `hub/library/alpine` under a `hub/**` mirror of
    /// Docker Hub. An `ns` no mirror here has is an error, never a local name.
    pub fn local_name(&self, ns: &str, remote: &RepoName) -> Result<RepoName> {
        let ns = ns.to_ascii_lowercase();
        let unknown = |why: String| {
            RegistryError::new(ErrorCode::NameUnknown, why)
                .with_detail(serde_json::json!({ "ns": ns, "name": remote.as_str() }))
        };
        let upstream = self
            .upstreams
            .iter()
            .find(|u| u.names.contains(&ns))
            .ok_or_else(|| unknown(format!("no pull-through cache here mirrors {ns}")))?;
        let rest = remote.as_str().strip_prefix(&upstream.remote_prefix).ok_or_else(|| {
            unknown(format!(
                "{remote} is outside {}{} that this registry mirrors",
                upstream.url(),
                upstream.remote_prefix
            ))
        })?;
        RepoName::parse(&format!("{}{rest}", upstream.local_prefix))
            .ok_or_else(|| unknown(format!("{ns}/{remote} has no valid name here")))
    }
}

/// `hub/**` -> `hub/`, `**` -> ``.
pub(crate) fn namespace_prefix(namespace: &str) -> std::result::Result<String, String> {
    if namespace == "**" {
        return Ok(String::new());
    }
    let prefix = namespace
        .strip_suffix("/**")
        .filter(|p| RepoName::parse(p).is_some())
        .ok_or_else(|| format!("namespace {namespace:?} must be `<repository prefix>/**` or `**`"))?;
    Ok(format!("{prefix}/"))
}

impl Upstream {
    pub fn url(&self) -> &str {
        self.client.base()
    }

    /// A failure to get something from upstream, as the client sees it:
    /// retryable, and saying which upstream.
    fn failed(&self, error: RemoteError) -> RegistryError {
        RegistryError::new(
            ErrorCode::Unavailable,
            format!("upstream {} of this pull-through cache: {error}", self.url()),
        )
    }
}

/// Refuses a push into a mirrored namespace.
pub fn refuse_push(mirror: &Mirror, repo: &RepoName) -> Result<()> {
    match mirror.upstream_for(repo) {
        None => Ok(()),
        Some((upstream, remote)) => Err(RegistryError::new(
            ErrorCode::Denied,
            format!(
                "{repo} is a pull-through cache of {}{remote}: push there, not here",
                upstream.url()
            ),
        )
        .with_detail(serde_json::json!({ "repository": repo.as_str(), "upstream": upstream.url() }))),
    }
}

fn manifest_unknown(upstream: &Upstream, remote: &str, reference: &Reference) -> RegistryError {
    let reference = match reference {
        Reference::Tag(tag) => tag.as_str().to_string(),
        Reference::Digest(digest) => digest.to_string(),
    };
    RegistryError::new(
        ErrorCode::ManifestUnknown,
        format!("manifest {reference} is not in {}{remote}", upstream.url()),
    )
}

/// The manifest `reference` names in a mirrored repository: from the cache
/// while it is current, else from upstream (and then cached).
pub async fn manifest(
    registry: &Registry,
    upstream: &Upstream,
    remote: &str,
    repo: &RepoName,
    reference: &Reference,
) -> Result<StoredManifest> {
    let tag = match reference {
        Reference::Digest(digest) => {
            if let Some(cached) = cached_manifest(registry, repo, digest).await? {
                return Ok(cached);
            }
            return fetch_manifest(registry, upstream, remote, repo, reference, None).await;
        }
        Reference::Tag(tag) => tag,
    };
    let cached = match registry.tag_record(repo, tag).await? {
        Some(record) => cached_manifest(registry, repo, &record.digest)
            .await?
            .map(|manifest| (record, manifest)),
        None => None,
    };
    let Some((record, manifest)) = cached else {
        return fetch_manifest(registry, upstream, remote, repo, reference, Some(tag)).await;
    };
    if registry.env().now_millis().saturating_sub(record.checked_ms) < upstream.tag_ttl_ms {
        return Ok(manifest);
    }
    match upstream.client.manifest_info(remote, reference).await {
        Ok(Some(info)) if info.digest == record.digest => {
            registry.mark_tag_checked(repo, tag, &record).await?;
            Ok(manifest)
        }
        Ok(Some(info)) => {
            let moved = Reference::Digest(info.digest);
            fetch_manifest(registry, upstream, remote, repo, &moved, Some(tag)).await
        }
        Ok(None) => Err(manifest_unknown(upstream, remote, reference)),
        // Upstream down, refusing us or answering nonsense: the copy we have stands.
        Err(_) => Ok(manifest),
    }
}

async fn cached_manifest(registry: &Registry, repo: &RepoName, digest: &Digest) -> Result<Option<StoredManifest>> {
    match registry.manifest(repo, &Reference::Digest(digest.clone())).await {
        Ok(manifest) => Ok(Some(manifest)),
        Err(e) if e.code == ErrorCode::ManifestUnknown => Ok(None),
        Err(e) => Err(e),
    }
}

/// Fetches `reference` upstream and caches it, under `tag` if given.
async fn fetch_manifest(
    registry: &Registry,
    upstream: &Upstream,
    remote: &str,
    repo: &RepoName,
    reference: &Reference,
    tag: Option<&Tag>,
) -> Result<StoredManifest> {
    let fetched = upstream
        .client
        .manifest(remote, reference)
        .await
        .map_err(|e| upstream.failed(e))?
        .ok_or_else(|| manifest_unknown(upstream, remote, reference))?;
    registry.put_upstream_manifest(repo, &fetched, tag).await?;
    Ok(fetched)
}

/// A blob of a mirrored repository on its way from upstream.
pub struct UpstreamBlob {
    /// Its length, as upstream gave it (and the stream is checked against).
    pub length: u64,
    /// The bytes, checked against the digest while cached (`None` for a HEAD).
    pub body: Option<ByteStream>,
}

/// A blob `repo` does not have yet, from upstream. Only bytes upstream
/// delivers (checked against the digest) are served here, never the
/// registry's own copy on upstream's word: an upstream answering 200 to any
/// HEAD would otherwise open every blob of the registry (a private layer of
/// `prod/`, say) to whoever may pull the mirror. Storing what upstream sent
/// still shares storage with an identical blob already held.
pub async fn blob(
    upstream: &Upstream,
    remote: &str,
    registry: &Registry,
    repo: &RepoName,
    digest: &Digest,
    head: bool,
) -> Result<UpstreamBlob> {
    let unknown = || {
        RegistryError::new(
            ErrorCode::BlobUnknown,
            format!("blob {digest} is not in {}{remote}", upstream.url()),
        )
        .with_detail(serde_json::json!({ "digest": digest.as_str() }))
    };
    if head {
        // Upstream's word on a blob's existence and size, and nothing local.
        let length = upstream
            .client
            .blob_size(remote, digest)
            .await
            .map_err(|e| upstream.failed(e))?
            .ok_or_else(unknown)?;
        return Ok(UpstreamBlob { length, body: None });
    }
    let fetched = upstream
        .client
        .blob(remote, digest)
        .await
        .map_err(|e| upstream.failed(e))?
        .ok_or_else(unknown)?;
    let length = match fetched.length {
        Some(length) => length,
        // A body sent without its length: the size upstream gives on a HEAD
        // (the stream is checked against it and the digest either way).
        None => upstream
            .client
            .blob_size(remote, digest)
            .await
            .map_err(|e| upstream.failed(e))?
            .ok_or_else(unknown)?,
    };
    let body = verified(fetched.body, digest, Some(length));
    let stream = tee::fill_while_streaming(registry.clone(), repo.clone(), digest.clone(), length, body);
    Ok(UpstreamBlob {
        length,
        body: Some(stream),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces() {
        assert_eq!(namespace_prefix("hub/**").unwrap(), "hub/");
        assert_eq!(namespace_prefix("mirrors/ghcr/**").unwrap(), "mirrors/ghcr/");
        assert_eq!(namespace_prefix("**").unwrap(), "");
        for bad in ["hub/*", "hub", "Hub/**", "hub/**/x", "/**", ""] {
            assert!(namespace_prefix(bad).is_err(), "{bad}");
        }
    }

    fn config(namespace: &str, upstream: &str) -> MirrorConfig {
        MirrorConfig {
            namespace: namespace.into(),
            upstream: upstream.into(),
            upstream_prefix: String::new(),
            username: None,
            password: None,
            token_realms: Vec::new(),
            tag_ttl_secs: 0,
        }
    }

    use crate::testing::NoNetwork;

    fn mirror(configs: &[MirrorConfig]) -> std::result::Result<Mirror, String> {
        Mirror::new(configs, Arc::new(NoNetwork), Arc::new(crate::testing::TestEnv::at(0)))
    }

    #[test]
    fn names_map_to_upstream_by_the_most_specific_namespace() {
        let mut library = config("hub/library/**", "https://hub.example");
        library.upstream_prefix = "library".into();
        let mirror = mirror(&[
            config("hub/**", "https://hub.example"),
            library,
            config("**", "https://all.example"),
        ])
        .unwrap();
        let name = |n: &str| RepoName::parse(n).unwrap();
        let (upstream, remote) = mirror.upstream_for(&name("hub/bitnami/redis")).unwrap();
        assert_eq!(
            (upstream.url(), remote.as_str()),
            ("https://hub.example/", "bitnami/redis")
        );
        let (_, remote) = mirror.upstream_for(&name("hub/library/alpine")).unwrap();
        assert_eq!(remote, "library/alpine");
        let (upstream, remote) = mirror.upstream_for(&name("team/app")).unwrap();
        assert_eq!((upstream.url(), remote.as_str()), ("https://all.example/", "team/app"));
        let hub_only = self::mirror(&[config("hub/**", "https://hub.example")]).unwrap();
        assert!(hub_only.upstream_for(&name("hubx/a")).is_none());
    }

    #[test]
    fn containerds_ns_names_the_upstream_whose_namespace_holds_the_repository() {
        let mut library = config("official/**", "https://registry-1.docker.io");
        library.upstream_prefix = "library".into();
        let mirror = mirror(&[
            library,
            config("ghcr/**", "https://GHCR.io:443/"),
            config("local/**", "http://127.0.0.1:5001"),
        ])
        .unwrap();
        let name = |n: &str| RepoName::parse(n).unwrap();
        let local = |ns: &str, remote: &str| mirror.local_name(ns, &name(remote)).map(|r| r.to_string());
        assert_eq!(local("docker.io", "library/alpine").unwrap(), "official/alpine");
        assert_eq!(local("index.docker.io", "library/alpine").unwrap(), "official/alpine");
        assert_eq!(local("ghcr.io", "org/tool").unwrap(), "ghcr/org/tool");
        assert_eq!(local("127.0.0.1:5001", "team/app").unwrap(), "local/team/app");
        // Tried: an upstream no mirror has, a name outside the mirrored prefix,
        // a host without its port, another port.
        for (ns, remote) in [
            ("quay.io", "org/tool"),
            ("docker.io", "bitnami/redis"),
            ("127.0.0.1", "team/app"),
            ("127.0.0.1:5002", "team/app"),
        ] {
            let err = local(ns, remote).unwrap_err();
            assert_eq!(err.code, ErrorCode::NameUnknown, "{ns} {remote}");
        }
    }

    #[test]
    fn tag_records_keep_the_upstream_check_time() {
        use crate::records::TagRecord;
        let digest = Digest::of(crate::digest::Algorithm::Sha256, b"m");
        let checked = TagRecord {
            digest: digest.clone(),
            tagged_ms: 5,
            checked_ms: 9,
        };
        assert_eq!(TagRecord::parse(&checked.to_bytes()), Some(checked));
        let pushed = TagRecord {
            digest: digest.clone(),
            tagged_ms: 5,
            checked_ms: 0,
        };
        assert!(!String::from_utf8(pushed.to_bytes().to_vec())
            .unwrap()
            .contains("checked_ms"));
        assert_eq!(TagRecord::parse(digest.as_str().as_bytes()).unwrap().checked_ms, 0);
    }

    #[test]
    fn bad_configurations_are_refused() {
        let mut half_credentials = config("hub/**", "https://hub.example");
        half_credentials.username = Some("u".into());
        assert!(mirror(&[half_credentials]).err().unwrap().contains("go together"));
        assert!(mirror(&[config("hub/**", "ftp://x")]).is_err());
        assert!(mirror(&[config("hub/*", "https://x")]).is_err());
        let twice = [config("hub/**", "https://a"), config("hub/**", "https://b")];
        assert!(mirror(&twice).err().unwrap().contains("same namespace"));
        let mut bad_prefix = config("hub/**", "https://a");
        bad_prefix.upstream_prefix = "Library".into();
        assert!(mirror(&[bad_prefix]).is_err());
    }
}
