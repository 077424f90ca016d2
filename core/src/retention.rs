//! Retention rules: which tags and untagged manifests a namespace keeps.
//!
//! Every rule whose `namespace` glob matches a repository applies to it. A tag
//! goes when any applicable rule would drop it (beyond `keep_last` of the
//! tags it covers, or older than `expire_after_days`) and no applicable rule
//! protects it. Untagged manifests are kept forever unless a rule sets
//! `untagged_expire_after_days`. The same rules say where tags are immutable,
//! so one place in the configuration describes a namespace's policy.

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::glob;

const DAY_MS: f64 = 86_400_000.0;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RetentionRule {
    /// Repositories the rule applies to, e.g. `ci/**`.
    pub namespace: String,
    /// Tags `keep_last` and `expire_after_days` apply to; every tag by default.
    #[serde(default = "every_tag")]
    pub tags: String,
    /// Keep only the N most recently pushed of the tags matching `tags`.
    #[serde(default)]
    pub keep_last: Option<usize>,
    /// Delete tags matching `tags` pushed more than D days ago.
    #[serde(default, deserialize_with = "days")]
    pub expire_after_days: Option<f64>,
    /// Delete manifests no tag, index or subject keeps, pushed more than D days ago.
    #[serde(default, deserialize_with = "days")]
    pub untagged_expire_after_days: Option<f64>,
    /// Tags (globs) no rule ever deletes, e.g. `v*`.
    #[serde(default)]
    pub protect: Vec<String>,
    /// Refuse a push that would move an existing tag to another manifest.
    #[serde(default)]
    pub immutable_tags: bool,
}

fn every_tag() -> String {
    "*".to_string()
}

/// A number of days: finite and not negative. A negative or NaN count
/// would turn into an age of 0 ms, so that one typo (`-1`, TOML's `nan`)
/// would delete every tag or untagged manifest at the next collection.
fn days<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
    let days = Option::<f64>::deserialize(deserializer)?;
    match days {
        Some(d) if !d.is_finite() || d < 0.0 => Err(serde::de::Error::custom(format!(
            "{d} is not a number of days (0 or more)"
        ))),
        _ => Ok(days),
    }
}

/// A tag as retention sees it.
#[derive(Clone, Debug)]
pub struct TagInfo {
    pub name: String,
    pub digest: Digest,
    pub tagged_ms: u64,
}

fn applicable<'a>(rules: &'a [RetentionRule], repo: &'a str) -> impl Iterator<Item = &'a RetentionRule> + 'a {
    rules.iter().filter(move |rule| glob::matches(&rule.namespace, repo))
}

/// The tags of `repo` the rules delete at `now_ms`.
pub fn expired_tags<'a>(rules: &[RetentionRule], repo: &str, tags: &'a [TagInfo], now_ms: u64) -> Vec<&'a TagInfo> {
    let rules: Vec<&RetentionRule> = applicable(rules, repo).collect();
    let protected = |tag: &TagInfo| {
        rules
            .iter()
            .any(|rule| rule.protect.iter().any(|pattern| glob::matches(pattern, &tag.name)))
    };
    // Each tag beside whether it goes.
    let mut verdicts: Vec<(&TagInfo, bool)> = tags.iter().map(|tag| (tag, false)).collect();
    for rule in &rules {
        let mut covered: Vec<&mut (&TagInfo, bool)> = verdicts
            .iter_mut()
            .filter(|(tag, _)| glob::matches(&rule.tags, &tag.name))
            .collect();
        if let Some(days) = rule.expire_after_days {
            let max_age = (days * DAY_MS) as u64;
            for (tag, doomed) in covered.iter_mut().map(|entry| &mut **entry) {
                *doomed |= now_ms.saturating_sub(tag.tagged_ms) > max_age;
            }
        }
        if let Some(keep) = rule.keep_last {
            // Newest first; equal times by name, newest name first, so the order is stable.
            covered.sort_by(|(a, _), (b, _)| (b.tagged_ms, &b.name).cmp(&(a.tagged_ms, &a.name)));
            for (_, doomed) in covered.into_iter().skip(keep) {
                *doomed = true;
            }
        }
    }
    let doomed: Vec<bool> = verdicts.into_iter().map(|(_, doomed)| doomed).collect();
    tags.iter()
        .zip(doomed)
        .filter(|(tag, doomed)| *doomed && !protected(tag))
        .map(|(tag, _)| tag)
        .collect()
}

/// How long untagged manifests of `repo` live, `None` for ever.
pub fn untagged_expiry_ms(rules: &[RetentionRule], repo: &str) -> Option<u64> {
    applicable(rules, repo)
        .filter_map(|rule| rule.untagged_expire_after_days)
        .map(|days| (days * DAY_MS) as u64)
        .min()
}

/// Whether a collection may delete tags of `repo` (a rule expires or caps
/// them): a push of such a tag must then check that its tag survived.
pub fn tags_may_expire(rules: &[RetentionRule], repo: &str) -> bool {
    applicable(rules, repo).any(|rule| rule.keep_last.is_some() || rule.expire_after_days.is_some())
}

/// Whether tags of `repo` may not be moved once pushed.
pub fn tags_immutable(rules: &[RetentionRule], repo: &str) -> bool {
    applicable(rules, repo).any(|rule| rule.immutable_tags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Algorithm;

    fn tag(name: &str, tagged_ms: u64) -> TagInfo {
        TagInfo {
            name: name.into(),
            digest: Digest::of(Algorithm::Sha256, name.as_bytes()),
            tagged_ms,
        }
    }

    fn rule(namespace: &str) -> RetentionRule {
        RetentionRule {
            namespace: namespace.into(),
            tags: every_tag(),
            keep_last: None,
            expire_after_days: None,
            untagged_expire_after_days: None,
            protect: Vec::new(),
            immutable_tags: false,
        }
    }

    fn names(tags: Vec<&TagInfo>) -> Vec<&str> {
        let mut names: Vec<&str> = tags.iter().map(|t| t.name.as_str()).collect();
        names.sort();
        names
    }

    #[test]
    fn rules_apply_only_to_their_namespace() {
        let rules = [RetentionRule {
            keep_last: Some(0),
            ..rule("ci/**")
        }];
        let tags = [tag("a", 1)];
        assert_eq!(names(expired_tags(&rules, "ci/app", &tags, 10)), ["a"]);
        assert!(expired_tags(&rules, "prod/app", &tags, 10).is_empty());
    }

    #[test]
    fn protection_wins_over_every_rule() {
        let rules = [
            RetentionRule {
                keep_last: Some(1),
                ..rule("prod/**")
            },
            RetentionRule {
                protect: vec!["v*".into()],
                ..rule("prod/**")
            },
        ];
        let tags = [tag("v1", 1), tag("v2", 2), tag("dev", 0)];
        assert_eq!(names(expired_tags(&rules, "prod/app", &tags, 10)), ["dev"]);
    }

    #[test]
    fn untagged_expiry_is_the_shortest_that_applies() {
        let rules = [
            RetentionRule {
                untagged_expire_after_days: Some(7.0),
                ..rule("**")
            },
            RetentionRule {
                untagged_expire_after_days: Some(1.0),
                ..rule("ci/**")
            },
        ];
        assert_eq!(untagged_expiry_ms(&rules, "ci/x"), Some(86_400_000));
        assert_eq!(untagged_expiry_ms(&rules, "prod/x"), Some(7 * 86_400_000));
        assert_eq!(untagged_expiry_ms(&[], "prod/x"), None);
    }

    /// Found while writing the `config` fuzz target's checks: a negative
    /// (or, in TOML, NaN) day count read as an age of 0 ms, so one typo
    /// deleted every tag at the next collection.
    #[test]
    fn day_counts_must_be_finite_and_not_negative() {
        for bad in ["-1", "-0.5"] {
            for field in ["expire_after_days", "untagged_expire_after_days"] {
                let text = format!(r#"{{"rules":[{{"namespace":"**","{field}":{bad}}}]}}"#);
                let refused = crate::gc::GcConfig::from_json(&text).unwrap_err();
                assert!(refused.contains("not a number of days"), "{refused}");
            }
        }
        let ok = r#"{"rules":[{"namespace":"**","expire_after_days":0,"untagged_expire_after_days":0.5}]}"#;
        assert!(crate::gc::GcConfig::from_json(ok).is_ok());
    }
}
