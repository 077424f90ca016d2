//! Namespace policy: who may pull, push and delete where.
//!
//! Rules name repositories by glob. For a repository, the most specific
//! matching rule alone decides (so `prod/**` can be stricter than `**`); when
//! no rule matches, nothing is allowed. Admins may do everything everywhere.

use std::cmp::Ordering;

use super::config::RuleConfig;
use super::identity::Identity;
use crate::glob::Glob;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    Pull,
    Push,
    Delete,
}

impl Action {
    pub const ALL: [Action; 3] = [Action::Pull, Action::Push, Action::Delete];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }

    pub fn parse(text: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == text)
    }
}

/// Whom a rule grants an action.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Subject {
    /// Anyone, with or without credentials.
    Anonymous,
    /// Anyone with valid credentials.
    Authenticated,
    Group(String),
    Identity(String),
}

impl Subject {
    fn parse(text: &str) -> Result<Subject, String> {
        Ok(match text {
            "anonymous" => Subject::Anonymous,
            "authenticated" => Subject::Authenticated,
            _ => match text.strip_prefix("group:") {
                Some("") => return Err("`group:` needs a group name".into()),
                Some(group) => Subject::Group(group.to_string()),
                None if text.is_empty() || text.contains(':') => {
                    return Err(format!(
                        "subject {text:?} is not `anonymous`, `authenticated`, `group:<name>` or an identity name"
                    ))
                }
                None => Subject::Identity(text.to_string()),
            },
        })
    }

    fn includes(&self, caller: Option<&Identity>) -> bool {
        match (self, caller) {
            (Subject::Anonymous, _) => true,
            (_, None) => false,
            (Subject::Authenticated, Some(_)) => true,
            (Subject::Group(group), Some(identity)) => identity.groups.contains(group),
            (Subject::Identity(name), Some(identity)) => &identity.name == name,
        }
    }
}

fn parse_subjects(texts: &[String]) -> Result<Vec<Subject>, String> {
    texts.iter().map(|t| Subject::parse(t)).collect()
}

struct Rule {
    repositories: Glob,
    pull: Vec<Subject>,
    push: Vec<Subject>,
    delete: Vec<Subject>,
}

impl Rule {
    fn subjects(&self, action: Action) -> &[Subject] {
        match action {
            Action::Pull => &self.pull,
            Action::Push => &self.push,
            Action::Delete => &self.delete,
        }
    }
}

pub struct Policy {
    rules: Vec<Rule>,
    admins: Vec<Subject>,
    /// Who besides admins may read the native server's `/metrics`.
    metrics_readers: Vec<Subject>,
}

impl Policy {
    pub fn new(rules: &[RuleConfig], admins: &[String]) -> Result<Policy, String> {
        let admins = parse_subjects(admins).map_err(|e| format!("admins: {e}"))?;
        if admins.contains(&Subject::Anonymous) {
            return Err("admins: `anonymous` would make everyone an admin".into());
        }
        let rules = rules
            .iter()
            .map(|rule| {
                let context = |e: String| format!("rule for {:?}: {e}", rule.repositories);
                Ok(Rule {
                    repositories: Glob::new(&rule.repositories).map_err(context)?,
                    pull: parse_subjects(&rule.pull).map_err(context)?,
                    push: parse_subjects(&rule.push).map_err(context)?,
                    delete: parse_subjects(&rule.delete).map_err(context)?,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        for (i, rule) in rules.iter().enumerate() {
            if rules.iter().take(i).any(|r| r.repositories == rule.repositories) {
                return Err(format!("two rules for {:?}", rule.repositories.as_str()));
            }
        }
        Ok(Policy {
            rules,
            admins,
            metrics_readers: Vec::new(),
        })
    }

    /// Lets `subjects` read `/metrics` besides the admins (e.g. a robot
    /// Prometheus scrapes with, or `anonymous` to leave it open).
    pub fn with_metrics_readers(mut self, subjects: &[String]) -> Result<Policy, String> {
        self.metrics_readers = parse_subjects(subjects).map_err(|e| format!("metrics_readers: {e}"))?;
        Ok(self)
    }

    pub fn may_read_metrics(&self, caller: Option<&Identity>) -> bool {
        self.is_admin(caller) || self.metrics_readers.iter().any(|s| s.includes(caller))
    }

    /// The rule that decides for `repo`: the most specific match; among
    /// equally specific ones, the first configured.
    fn rule_for(&self, repo: &str) -> Option<&Rule> {
        self.rules
            .iter()
            .filter(|rule| rule.repositories.matches(repo))
            .fold(None, |best: Option<&Rule>, rule| match best {
                Some(best) if rule.repositories.specificity(&best.repositories) != Ordering::Greater => Some(best),
                _ => Some(rule),
            })
    }

    pub fn is_admin(&self, caller: Option<&Identity>) -> bool {
        caller.is_some() && self.admins.iter().any(|s| s.includes(caller))
    }

    pub fn allows(&self, caller: Option<&Identity>, repo: &str, action: Action) -> bool {
        if self.is_admin(caller) {
            return true;
        }
        self.rule_for(repo)
            .is_some_and(|rule| rule.subjects(action).iter().any(|s| s.includes(caller)))
    }

    /// Of `wanted`, the actions `caller` may take on `repo`.
    pub fn granted(&self, caller: Option<&Identity>, repo: &str, wanted: &[Action]) -> Vec<Action> {
        wanted
            .iter()
            .copied()
            .filter(|&action| self.allows(caller, repo, action))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::identity::IdentityKind;

    fn rule(repositories: &str, pull: &[&str], push: &[&str], delete: &[&str]) -> RuleConfig {
        let list = |s: &[&str]| s.iter().map(|x| x.to_string()).collect();
        RuleConfig {
            repositories: repositories.into(),
            pull: list(pull),
            push: list(push),
            delete: list(delete),
        }
    }

    fn who(name: &str, groups: &[&str]) -> Identity {
        Identity {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            kind: IdentityKind::User,
        }
    }

    /// The layout of docs/auth.md.
    fn layout() -> Policy {
        Policy::new(
            &[
                rule("sandbox/**", &["authenticated"], &["authenticated"], &["authenticated"]),
                rule("ci/**", &["anonymous"], &["group:ci"], &["group:ci"]),
                rule("prod/**", &["group:production", "promoter"], &["promoter"], &[]),
                rule("public/**", &["anonymous"], &["promoter"], &[]),
            ],
            &["group:admins".into()],
        )
        .unwrap()
    }

    #[test]
    fn no_matching_rule_denies_everything() {
        let policy = layout();
        let alice = who("alice", &["dev"]);
        for action in Action::ALL {
            assert!(!policy.allows(Some(&alice), "elsewhere/app", action));
            assert!(!policy.allows(None, "elsewhere/app", action));
        }
        assert!(
            !policy.allows(Some(&alice), "sandbox", Action::Pull),
            "sandbox/** needs a component after sandbox/"
        );
    }

    #[test]
    fn anonymous_means_anyone_and_authenticated_means_any_identity() {
        let policy = layout();
        let alice = who("alice", &[]);
        assert!(policy.allows(None, "ci/app", Action::Pull));
        assert!(policy.allows(Some(&alice), "ci/app", Action::Pull));
        assert!(!policy.allows(None, "sandbox/x", Action::Pull));
        assert!(policy.allows(Some(&alice), "sandbox/x/y", Action::Push));
        assert!(policy.allows(Some(&alice), "sandbox/x", Action::Delete));
    }

    #[test]
    fn groups_and_names_grant_only_their_members() {
        let policy = layout();
        let ci = who("builder", &["ci"]);
        let alice = who("alice", &["dev"]);
        let promoter = who("promoter", &[]);
        let prod_node = who("node-1", &["production"]);
        assert!(policy.allows(Some(&ci), "ci/app", Action::Push));
        assert!(!policy.allows(Some(&alice), "ci/app", Action::Push));
        assert!(policy.allows(Some(&promoter), "prod/app", Action::Push));
        assert!(!policy.allows(Some(&ci), "prod/app", Action::Push));
        assert!(policy.allows(Some(&prod_node), "prod/app", Action::Pull));
        assert!(!policy.allows(Some(&prod_node), "prod/app", Action::Push));
        assert!(!policy.allows(Some(&alice), "prod/app", Action::Pull));
        assert!(
            !policy.allows(Some(&promoter), "prod/app", Action::Delete),
            "nobody deletes in prod/"
        );
    }

    #[test]
    fn the_most_specific_rule_wins_even_when_stricter() {
        let policy = Policy::new(
            &[
                rule("**", &["authenticated"], &["authenticated"], &[]),
                rule("team/*", &["group:team"], &["group:team"], &[]),
                rule("team/shared", &["anonymous"], &[], &[]),
            ],
            &[],
        )
        .unwrap();
        let outsider = who("o", &[]);
        let member = who("m", &["team"]);
        assert!(policy.allows(Some(&outsider), "other/app", Action::Push));
        assert!(
            !policy.allows(Some(&outsider), "team/app", Action::Pull),
            "team/* overrides **"
        );
        assert!(policy.allows(Some(&member), "team/app", Action::Push));
        assert!(
            policy.allows(Some(&outsider), "team/app/deeper", Action::Push),
            "team/* does not cover deeper"
        );
        assert!(policy.allows(None, "team/shared", Action::Pull));
        assert!(
            !policy.allows(Some(&member), "team/shared", Action::Push),
            "the exact rule grants no push"
        );
    }

    #[test]
    fn admins_may_do_everything_but_anonymous_cannot_be_admin() {
        let policy = layout();
        let admin = who("root", &["admins"]);
        for action in Action::ALL {
            assert!(policy.allows(Some(&admin), "prod/app", action));
            assert!(policy.allows(Some(&admin), "unmatched", action));
        }
        assert!(!policy.is_admin(None));
        assert!(Policy::new(&[], &["anonymous".into()]).is_err());
    }

    #[test]
    fn granted_keeps_only_allowed_actions() {
        let policy = layout();
        let ci = who("builder", &["ci"]);
        assert_eq!(
            policy.granted(Some(&ci), "ci/app", &Action::ALL),
            [Action::Pull, Action::Push, Action::Delete]
        );
        assert_eq!(policy.granted(None, "ci/app", &Action::ALL), [Action::Pull]);
        assert!(policy.granted(None, "prod/app", &Action::ALL).is_empty());
    }

    #[test]
    fn bad_rules_are_refused() {
        assert!(Policy::new(&[rule("", &[], &[], &[])], &[]).is_err());
        assert!(Policy::new(&[rule("a/**", &["user:x"], &[], &[])], &[]).is_err());
        assert!(Policy::new(&[rule("a/**", &["group:"], &[], &[])], &[]).is_err());
        assert!(Policy::new(&[rule("a/**", &[], &[], &[]), rule("a/**", &[], &[], &[])], &[]).is_err());
    }
}
