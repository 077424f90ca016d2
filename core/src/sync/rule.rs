//! One `[[sync]]` table as configured ([`SyncConfig`]) and as checked at
//! start ([`SyncRule`]): its name is a store key component, its upstream a
//! registry client with the credentials and token realms it may use, its
//! repositories names or globs, its tag filter and local namespace parsed.
//! A table that cannot work is refused here, naming the rule, so a mistake
//! shows when the deployment starts and not at the first pass.

use std::sync::Arc;

use serde::Deserialize;

use crate::digest::{Algorithm, Digest};
use crate::glob::Glob;
use crate::mirror::namespace_prefix;
use crate::names::RepoName;
use crate::platform::Env;
use crate::remote::copy::Referrers;
use crate::remote::http::HttpClient;
use crate::remote::{Credentials, RegistryClient};

fn every_tag() -> String {
    "*".into()
}

/// One rule, as configured (`[[sync]]` natively, an entry of `PIER_SYNC`
/// on the Worker).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    /// Names the rule in logs, `pier sync NAME` and its state keys
    /// (`sync/<name>/...`): `[a-z0-9-]+`, unique.
    pub name: String,
    /// The registry pulled from: `https://host[:port]`.
    pub upstream: String,
    /// Upstream repositories: names, or globs (`team/*`, `**`), which are
    /// resolved through the upstream's `/v2/_catalog`.
    pub repositories: Vec<String>,
    /// Which tags: a glob (`v*`). Default: every tag.
    #[serde(default = "every_tag")]
    pub tags: String,
    /// The local namespace (`site/**`) the upstream names go under;
    /// default: the same names.
    pub to_namespace: Option<String>,
    /// Seconds from the end of one pass to the start of the next; 0 runs
    /// passes only on demand (`pier sync`).
    #[serde(default)]
    pub interval_secs: u64,
    /// Delete local tags (matching `tags`, in the repositories this rule
    /// writes) that upstream no longer has. Off by default.
    #[serde(default)]
    pub delete: bool,
    /// The artifact types (globs, e.g. `application/vnd.dev.cosign.*`) of the
    /// referrers carried with an image; none by default.
    #[serde(default)]
    pub referrers: Vec<String>,
    /// Credentials for the upstream (both or neither).
    pub username: Option<String>,
    pub password: Option<String>,
    /// Origins (`https://host[:port]`) besides the upstream's own where its
    /// token endpoint may be (`remote::token::TokenRealms`).
    #[serde(default)]
    pub token_realms: Vec<String>,
}

/// Which upstream repositories a rule takes.
#[derive(Clone, Debug, PartialEq)]
pub enum RepositoryPattern {
    Name(RepoName),
    /// Resolved against the upstream's catalog when a pass starts.
    Glob(Glob),
}

/// A checked rule.
pub struct SyncRule {
    pub(super) name: String,
    pub(super) client: Arc<RegistryClient>,
    pub(super) repositories: Vec<RepositoryPattern>,
    pub(super) tags: Glob,
    /// Put before every upstream name to make the local one ("" for the same names).
    pub(super) target_prefix: String,
    pub(super) interval_ms: u64,
    pub(super) delete: bool,
    pub(super) referrers: Referrers,
    /// Changes when what the rule copies changes, so that a pass begun
    /// under other settings is not resumed.
    pub(super) fingerprint: String,
}

/// Longest rule name: it is a component of store keys.
const MAX_NAME_LEN: usize = 64;

impl SyncRule {
    pub fn new(config: &SyncConfig, http: Arc<dyn HttpClient>, env: Arc<dyn Env>) -> Result<SyncRule, String> {
        let at = |why: String| format!("sync rule {:?}: {why}", config.name);
        check_name(&config.name).map_err(at)?;
        if config.repositories.is_empty() {
            return Err(at(
                "repositories is empty: list upstream repositories (names or globs)".into()
            ));
        }
        let repositories = config
            .repositories
            .iter()
            .map(|text| repository_pattern(text).map_err(at))
            .collect::<Result<Vec<_>, _>>()?;
        let target_prefix = match &config.to_namespace {
            Some(namespace) => namespace_prefix(namespace).map_err(|why| at(format!("to_namespace: {why}")))?,
            None => String::new(),
        };
        let credentials = Credentials::from_config(&config.username, &config.password).map_err(at)?;
        let client = RegistryClient::new(http, env, &config.upstream, credentials, &config.token_realms)
            .map_err(|why| at(format!("upstream: {why}")))?;
        let referrer_types = config
            .referrers
            .iter()
            .map(|t| Glob::new(t).map_err(|why| at(format!("referrers: {why}"))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SyncRule {
            name: config.name.clone(),
            client: Arc::new(client),
            repositories,
            tags: Glob::new(&config.tags).map_err(|why| at(format!("tags: {why}")))?,
            fingerprint: fingerprint(config, &target_prefix),
            target_prefix,
            interval_ms: config.interval_secs.saturating_mul(1000),
            delete: config.delete,
            referrers: Referrers::OfTypes(referrer_types),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn upstream(&self) -> &str {
        self.client.base()
    }

    /// Time from the end of a pass to the next; `None`: on demand only.
    pub fn interval(&self) -> Option<std::time::Duration> {
        (self.interval_ms > 0).then(|| std::time::Duration::from_millis(self.interval_ms))
    }

    /// The local repository an upstream one goes to.
    pub(super) fn target(&self, upstream: &RepoName) -> Option<RepoName> {
        RepoName::parse(&format!("{}{upstream}", self.target_prefix))
    }

    /// Whether `repo` (an upstream name) is one this rule takes.
    pub(super) fn takes(&self, repo: &str) -> bool {
        self.repositories.iter().any(|pattern| match pattern {
            RepositoryPattern::Name(name) => name.as_str() == repo,
            RepositoryPattern::Glob(glob) => glob.matches(repo),
        })
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    match valid {
        true => Ok(()),
        false => Err(format!("name must be 1 to {MAX_NAME_LEN} of [a-z0-9-]")),
    }
}

/// A repository name, or a glob when it has a wildcard.
fn repository_pattern(text: &str) -> Result<RepositoryPattern, String> {
    if text.contains(['*', '?']) {
        return Glob::new(text)
            .map(RepositoryPattern::Glob)
            .map_err(|why| format!("repositories: {why}"));
    }
    RepoName::parse(text)
        .map(RepositoryPattern::Name)
        .ok_or_else(|| format!("repositories: {text:?} is neither a repository name nor a glob"))
}

/// A short digest of what decides which tags a pass copies where.
fn fingerprint(config: &SyncConfig, target_prefix: &str) -> String {
    let text = format!(
        "{}\n{}\n{}\n{target_prefix}\n{}\n{}",
        config.upstream,
        config.repositories.join("\n"),
        config.tags,
        config.delete,
        config.referrers.join("\n")
    );
    let digest = Digest::of(Algorithm::Sha256, text.as_bytes());
    digest.hex().chars().take(16).collect()
}

/// Every rule of `configs`, checked, with unique names.
pub fn rules(
    configs: &[SyncConfig],
    http: Arc<dyn HttpClient>,
    env: Arc<dyn Env>,
) -> Result<Vec<Arc<SyncRule>>, String> {
    let mut rules: Vec<Arc<SyncRule>> = Vec::with_capacity(configs.len());
    for config in configs {
        if rules.iter().any(|rule| rule.name == config.name) {
            return Err(format!("sync rule {:?}: two rules have this name", config.name));
        }
        rules.push(Arc::new(SyncRule::new(config, http.clone(), env.clone())?));
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{NoNetwork, TestEnv};

    fn parse(text: &str) -> Result<Vec<Arc<SyncRule>>, String> {
        let configs: Vec<SyncConfig> = serde_json::from_str(text).map_err(|e| e.to_string())?;
        rules(&configs, Arc::new(NoNetwork), Arc::new(TestEnv::at(0)))
    }

    fn name(text: &str) -> RepoName {
        RepoName::parse(text).unwrap()
    }

    #[test]
    fn names_globs_and_namespaces() {
        let rules = parse(
            r#"[{"name": "factory", "upstream": "https://ci.example", "repositories": ["team/*", "base/os"],
                 "to_namespace": "site/**", "interval_secs": 60}]"#,
        )
        .unwrap();
        let rule = &rules[0];
        assert!(rule.takes("team/app") && rule.takes("base/os"));
        assert!(!rule.takes("team/app/x") && !rule.takes("base/os2"));
        assert_eq!(rule.target(&name("team/app")), Some(name("site/team/app")));
        assert_eq!(rule.interval(), Some(std::time::Duration::from_secs(60)));
        assert!(rule.tags.matches("anything"));
        let same = parse(r#"[{"name": "a", "upstream": "http://u:5000", "repositories": ["**"]}]"#).unwrap();
        assert_eq!(same[0].target(&name("x/y")), Some(name("x/y")));
        assert_eq!(same[0].interval(), None);
    }

    #[test]
    fn bad_tables_are_refused_naming_the_rule() {
        for (bad, why) in [
            (
                r#"[{"name": "Bad", "upstream": "https://u", "repositories": ["a"]}]"#,
                "name must be",
            ),
            (
                r#"[{"name": "", "upstream": "https://u", "repositories": ["a"]}]"#,
                "name must be",
            ),
            (
                r#"[{"name": "x", "upstream": "https://u", "repositories": []}]"#,
                "repositories is empty",
            ),
            (
                r#"[{"name": "x", "upstream": "https://u", "repositories": ["A/B"]}]"#,
                "neither",
            ),
            (
                r#"[{"name": "x", "upstream": "https://u", "repositories": ["a/***"]}]"#,
                "repositories",
            ),
            (
                r#"[{"name": "x", "upstream": "ftp://u", "repositories": ["a"]}]"#,
                "upstream",
            ),
            (
                r#"[{"name": "x", "upstream": "https://u", "repositories": ["a"], "to_namespace": "site"}]"#,
                "to_namespace",
            ),
            (
                r#"[{"name": "x", "upstream": "https://u", "repositories": ["a"], "username": "u"}]"#,
                "go together",
            ),
            (
                r#"[{"name": "x", "upstream": "https://u", "repositories": ["a"], "tags": ""}]"#,
                "tags",
            ),
            (
                r#"[{"name": "x", "upstream": "https://u", "repositories": ["a"], "referrers": [""]}]"#,
                "referrers",
            ),
            (
                r#"[{"name": "x", "upstream": "https://u", "repositories": ["a"], "token_realms": ["http://t"]}]"#,
                "upstream",
            ),
            (
                r#"[{"name": "x", "upstream": "https://u", "repositories": ["a"]},
                    {"name": "x", "upstream": "https://v", "repositories": ["b"]}]"#,
                "two rules",
            ),
        ] {
            let err = parse(bad).err().unwrap_or_else(|| panic!("accepted: {bad}"));
            assert!(err.contains(why), "{bad}: {err}");
            assert!(err.starts_with("sync rule "), "{bad}: {err}");
        }
        let unknown: Result<Vec<SyncConfig>, _> =
            serde_json::from_str(r#"[{"name": "x", "upstream": "https://u", "repositories": ["a"], "intervl": 1}]"#);
        assert!(unknown.is_err());
    }

    #[test]
    fn the_fingerprint_follows_what_is_copied_not_when() {
        let at = |extra: &str| {
            let text = format!(r#"[{{"name": "x", "upstream": "https://u", "repositories": ["a"]{extra}}}]"#);
            parse(&text).unwrap()[0].fingerprint.clone()
        };
        assert_eq!(at(""), at(r#", "interval_secs": 5"#));
        assert_ne!(at(""), at(r#", "tags": "v*""#));
        assert_ne!(at(""), at(r#", "to_namespace": "s/**""#));
    }
}
