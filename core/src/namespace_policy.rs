//! Namespace policies: rules that hold for every repository of a namespace
//! whoever pushes or pulls there (`[[policy]]` tables natively, the JSON
//! array `PIER_POLICY` on the Worker). A policy may require that manifests
//! be signed (`require_signature`, checked by `signing`) and let pull-only
//! clients be served tags from memory (`tag_cache_secs`, `crate::tag_cache`); the
//! table is the place for other per-namespace limits as they come (a quota
//! in bytes), so each is written once per namespace rather than per feature.
//!
//! Which policy applies: a repository gets the one whose namespace glob is
//! the most specific of those matching it (`glob::Glob::specificity`, as
//! for auth rules), never a merge of several. So `prod/legacy/**` without
//! keys exempts that part of a `prod/**` that requires signatures: write the
//! narrower table on purpose.

use serde::Deserialize;

use crate::glob::Glob;

/// The longest `tag_cache_secs` a policy may set: longer is a mirror's
/// job, not a cache's.
pub const MAX_TAG_CACHE_SECS: u64 = 3600;

/// One `[[policy]]` table, as configured.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// The repositories it holds for: a glob (`prod/**`).
    pub namespace: String,
    /// Public keys (PEM text; natively also a path to a PEM file) of which
    /// one must have signed a manifest for it to be pulled or promoted here.
    /// Empty: no signature is required.
    #[serde(default)]
    pub require_signature: Vec<String>,
    /// Seconds a tag read from the store may be served again from an
    /// instance's memory to clients that may not push here (`tag_cache`);
    /// 0, the default: every pull by tag reads the store.
    #[serde(default)]
    pub tag_cache_secs: u64,
}

/// The configured policies, checked, and which applies where.
#[derive(Clone, Debug, Default)]
pub struct NamespacePolicies {
    policies: Vec<(Glob, PolicyConfig)>,
}

impl NamespacePolicies {
    /// Checks the tables: each namespace a glob that can match repository
    /// names, no namespace twice (which of two would hold is a guess).
    pub fn new(configs: &[PolicyConfig]) -> Result<NamespacePolicies, String> {
        let mut policies: Vec<(Glob, PolicyConfig)> = Vec::with_capacity(configs.len());
        for config in configs {
            let glob = namespace_glob(&config.namespace).map_err(|why| describe(config, &why))?;
            if config.tag_cache_secs > MAX_TAG_CACHE_SECS {
                let why = format!("tag_cache_secs is at most {MAX_TAG_CACHE_SECS}");
                return Err(describe(config, &why));
            }
            if policies.iter().any(|(other, _)| other == &glob) {
                return Err(describe(config, "a second table for the same namespace"));
            }
            policies.push((glob, config.clone()));
        }
        Ok(NamespacePolicies { policies })
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// Every policy, in configuration order (its index is its position).
    pub fn all(&self) -> impl Iterator<Item = &PolicyConfig> {
        self.policies.iter().map(|(_, config)| config)
    }

    /// The policy that holds for `repo` and its index: the most specific
    /// match, the first configured among equally specific ones.
    pub fn policy_for(&self, repo: &str) -> Option<(usize, &PolicyConfig)> {
        let mut best: Option<(usize, &Glob, &PolicyConfig)> = None;
        for (index, (glob, config)) in self.policies.iter().enumerate() {
            if !glob.matches(repo) {
                continue;
            }
            let better = best.is_none_or(|(_, held, _)| glob.specificity(held) == std::cmp::Ordering::Greater);
            if better {
                best = Some((index, glob, config));
            }
        }
        best.map(|(index, _, config)| (index, config))
    }
}

/// How errors name a table: by its namespace, as written.
pub fn describe(config: &PolicyConfig, why: &str) -> String {
    format!("namespace policy {:?}: {why}", config.namespace)
}

/// A namespace glob that can match repository names: their characters
/// (lowercase letters, digits, `._-/`) and the glob's `*` and `?`. An
/// uppercase letter or a space would make a policy that silently holds
/// nowhere, which for a policy meant to guard prod is worse than no start.
fn namespace_glob(pattern: &str) -> Result<Glob, String> {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/*?".contains(c);
    if let Some(bad) = pattern.chars().find(|&c| !allowed(c)) {
        return Err(format!(
            "namespace {pattern:?} has {bad:?}, which no repository name has (names are lowercase: a-z 0-9 . _ - /)"
        ));
    }
    if pattern.starts_with('/') || pattern.ends_with('/') || pattern.contains("//") {
        return Err(format!("namespace {pattern:?} has an empty path component"));
    }
    Glob::new(pattern).map_err(|why| format!("namespace: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policies(json: &str) -> Result<NamespacePolicies, String> {
        NamespacePolicies::new(&serde_json::from_str::<Vec<PolicyConfig>>(json).unwrap())
    }

    #[test]
    fn the_most_specific_namespace_holds() {
        let set = policies(
            r#"[{"namespace": "prod/**", "require_signature": ["k"]},
                {"namespace": "prod/legacy/**"},
                {"namespace": "**"}]"#,
        )
        .unwrap();
        assert_eq!(set.policy_for("prod/app").map(|(i, _)| i), Some(0));
        assert_eq!(set.policy_for("prod/legacy/app").map(|(i, _)| i), Some(1));
        assert_eq!(set.policy_for("ci/app").map(|(i, _)| i), Some(2));
        assert!(set
            .policy_for("prod/legacy/app")
            .unwrap()
            .1
            .require_signature
            .is_empty());
        assert!(policies("[]").unwrap().policy_for("prod/app").is_none());
    }

    #[test]
    fn bad_tables_are_refused_by_namespace() {
        for (bad, says) in [
            (r#"[{"namespace": ""}]"#, "empty"),
            (r#"[{"namespace": "Prod/**"}]"#, "'P'"),
            (r#"[{"namespace": "prod/***"}]"#, "***"),
            (r#"[{"namespace": "prod//**"}]"#, "empty path component"),
            (r#"[{"namespace": "prod/**", "tag_cache_secs": 3601}]"#, "at most 3600"),
            (
                r#"[{"namespace": "prod/**"}, {"namespace": "prod/**"}]"#,
                "second table",
            ),
        ] {
            let err = policies(bad).unwrap_err();
            assert!(err.contains("namespace policy") && err.contains(says), "{bad}: {err}");
        }
        let unknown = serde_json::from_str::<Vec<PolicyConfig>>(r#"[{"namespace": "a/**", "require_signatures": []}]"#);
        assert!(unknown.is_err(), "unknown keys are refused");
    }
}
