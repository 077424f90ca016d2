//! Retention rules: which tags and untagged manifests a namespace keeps.
//!
//! Every rule whose `namespace` glob matches a repository applies to it. A tag
//! goes when any applicable rule would drop it (beyond `keep_last` of the
//! tags it covers, older than `expire_after_days`, or not pulled for
//! `unpulled_for_days`) and no applicable rule protects it. Untagged manifests are kept forever unless a rule sets
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
    /// Delete tags matching `tags` whose manifest nobody pulled for D days
    /// (counted from the tag's push when it was never pulled: `crate::pulls`).
    #[serde(default, deserialize_with = "days")]
    pub unpulled_for_days: Option<f64>,
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
pub fn days<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
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
    /// When its manifest was last pulled, if recorded (read only where a
    /// rule counts pulls).
    pub pulled_ms: Option<u64>,
}

impl TagInfo {
    /// The last time anyone wanted the tag: its last pull, or its push.
    fn last_used_ms(&self) -> u64 {
        self.pulled_ms.unwrap_or(0).max(self.tagged_ms)
    }
}

/// A tag retention deletes, and why (a dry run lists the reason).
#[derive(Debug)]
pub struct Expired<'a> {
    pub tag: &'a TagInfo,
    pub reason: String,
}

fn applicable<'a>(rules: &'a [RetentionRule], repo: &'a str) -> impl Iterator<Item = &'a RetentionRule> + 'a {
    rules.iter().filter(move |rule| glob::matches(&rule.namespace, repo))
}

/// The tags of `repo` the rules delete at `now_ms`, each with the first
/// rule that drops it.
pub fn expired_tags<'a>(rules: &[RetentionRule], repo: &str, tags: &'a [TagInfo], now_ms: u64) -> Vec<Expired<'a>> {
    let rules: Vec<&RetentionRule> = applicable(rules, repo).collect();
    let protected = |tag: &TagInfo| {
        rules
            .iter()
            .any(|rule| rule.protect.iter().any(|pattern| glob::matches(pattern, &tag.name)))
    };
    // Each tag beside why it goes, if it does.
    let mut verdicts: Vec<(&TagInfo, Option<String>)> = tags.iter().map(|tag| (tag, None)).collect();
    for rule in &rules {
        let mut covered: Vec<&mut (&TagInfo, Option<String>)> = verdicts
            .iter_mut()
            .filter(|(tag, _)| glob::matches(&rule.tags, &tag.name))
            .collect();
        let doom = |entry: &mut (&TagInfo, Option<String>), why: String| {
            entry.1.get_or_insert_with(|| format!("{why}; rule {}", rule.namespace));
        };
        if let Some(limit) = rule.expire_after_days {
            for entry in covered.iter_mut() {
                let age = now_ms.saturating_sub(entry.0.tagged_ms);
                if age > (limit * DAY_MS) as u64 {
                    doom(entry, format!("pushed {} ago, expire_after_days {limit}", ago(age)));
                }
            }
        }
        if let Some(limit) = rule.unpulled_for_days {
            for entry in covered.iter_mut() {
                let idle = now_ms.saturating_sub(entry.0.last_used_ms());
                if idle > (limit * DAY_MS) as u64 {
                    let since = match entry.0.pulled_ms {
                        Some(_) => "last pulled",
                        None => "never pulled, pushed",
                    };
                    doom(entry, format!("{since} {} ago, unpulled_for_days {limit}", ago(idle)));
                }
            }
        }
        if let Some(keep) = rule.keep_last {
            // Newest first; equal times by name, newest name first, so the order is stable.
            covered.sort_by(|(a, _), (b, _)| (b.tagged_ms, &b.name).cmp(&(a.tagged_ms, &a.name)));
            for entry in covered.into_iter().skip(keep) {
                doom(entry, format!("older than the newest {keep}, keep_last {keep}"));
            }
        }
    }
    verdicts
        .into_iter()
        .filter(|(tag, _)| !protected(tag))
        .filter_map(|(tag, reason)| Some(Expired { tag, reason: reason? }))
        .collect()
}

/// `days` in milliseconds.
pub fn days_ms(days: f64) -> u64 {
    (days * DAY_MS) as u64
}

/// A duration as a person reads it in a report: `12 s`, `5 min`, `3.2 h`, `31.0 days`.
pub fn ago(ms: u64) -> String {
    let secs = ms / 1000;
    match secs {
        0..=119 => format!("{secs} s"),
        120..=7199 => format!("{} min", secs / 60),
        7200..=172_799 => format!("{:.1} h", secs as f64 / 3600.0),
        _ => format!("{:.1} days", ms as f64 / DAY_MS),
    }
}

/// Whether a collection must read when `repo`'s manifests were last pulled.
pub fn counts_pulls(rules: &[RetentionRule], repo: &str) -> bool {
    applicable(rules, repo).any(|rule| rule.unpulled_for_days.is_some())
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
    applicable(rules, repo)
        .any(|rule| rule.keep_last.is_some() || rule.expire_after_days.is_some() || rule.unpulled_for_days.is_some())
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
            pulled_ms: None,
        }
    }

    fn rule(namespace: &str) -> RetentionRule {
        RetentionRule {
            namespace: namespace.into(),
            tags: every_tag(),
            keep_last: None,
            expire_after_days: None,
            unpulled_for_days: None,
            untagged_expire_after_days: None,
            protect: Vec::new(),
            immutable_tags: false,
        }
    }

    fn names(tags: Vec<Expired<'_>>) -> Vec<&str> {
        let mut names: Vec<&str> = tags.iter().map(|t| t.tag.name.as_str()).collect();
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
    fn unpulled_tags_go_counting_from_their_last_pull_or_push() {
        const DAY: u64 = 86_400_000;
        let rules = [RetentionRule {
            unpulled_for_days: Some(30.0),
            ..rule("ci/**")
        }];
        let now = 100 * DAY;
        let tags = [
            TagInfo {
                pulled_ms: Some(now - 31 * DAY),
                ..tag("pulled-long-ago", now - 90 * DAY)
            },
            TagInfo {
                pulled_ms: Some(now - 2 * DAY),
                ..tag("pulled-lately", now - 90 * DAY)
            },
            tag("never-pulled-old", now - 40 * DAY),
            tag("never-pulled-new", now - 10 * DAY),
        ];
        let expired = expired_tags(&rules, "ci/app", &tags, now);
        let reasons: Vec<(&str, &str)> = expired
            .iter()
            .map(|e| (e.tag.name.as_str(), e.reason.as_str()))
            .collect();
        assert_eq!(
            reasons,
            [
                (
                    "pulled-long-ago",
                    "last pulled 31.0 days ago, unpulled_for_days 30; rule ci/**"
                ),
                (
                    "never-pulled-old",
                    "never pulled, pushed 40.0 days ago, unpulled_for_days 30; rule ci/**"
                ),
            ]
        );
        assert!(counts_pulls(&rules, "ci/app") && !counts_pulls(&rules, "prod/app"));
        assert!(tags_may_expire(&rules, "ci/app"));
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
            for field in ["expire_after_days", "unpulled_for_days", "untagged_expire_after_days"] {
                let text = format!(r#"{{"rules":[{{"namespace":"**","{field}":{bad}}}]}}"#);
                let refused = crate::gc::GcConfig::from_json(&text).unwrap_err();
                assert!(refused.contains("not a number of days"), "{refused}");
            }
        }
        let ok = r#"{"rules":[{"namespace":"**","expire_after_days":0,"untagged_expire_after_days":0.5}]}"#;
        assert!(crate::gc::GcConfig::from_json(ok).is_ok());
    }
}
