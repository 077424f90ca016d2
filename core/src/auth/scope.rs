//! Scopes in the Docker token protocol: `repository:<name>:<actions>` and
//! `registry:catalog:*` in token requests and challenges, and the `access`
//! claim (`[{"type","name","actions"}]`) of the tokens that grant them.

use serde::{Deserialize, Serialize};

use super::policy::Action;
use crate::names::RepoName;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    Repository {
        name: RepoName,
        actions: Vec<Action>,
    },
    /// Listing `_catalog` (which shows only what the caller may pull).
    Catalog,
}

const CATALOG: &str = "registry:catalog:*";

impl Scope {
    /// One scope; `None` for types and actions pier does not know, which a
    /// token request simply does not get. `*` asks for every action.
    pub fn parse(text: &str) -> Option<Scope> {
        if text == CATALOG {
            return Some(Scope::Catalog);
        }
        let rest = text.strip_prefix("repository:")?;
        let (name, actions) = rest.rsplit_once(':')?;
        let name = RepoName::parse(name)?;
        let mut parsed: Vec<Action> = Vec::new();
        for action in actions.split(',') {
            match action {
                "*" => parsed.extend(Action::ALL),
                other => parsed.push(Action::parse(other)?),
            }
        }
        parsed.sort();
        parsed.dedup();
        Some(Scope::Repository { name, actions: parsed })
    }

    /// Every scope of a request's `scope` parameters, each of which may hold
    /// several separated by spaces.
    pub fn parse_all<'a>(params: impl Iterator<Item = &'a str>) -> Vec<Scope> {
        params
            .flat_map(str::split_whitespace)
            .filter_map(Scope::parse)
            .collect()
    }

    pub fn repository(name: &RepoName, actions: &[Action]) -> Scope {
        Scope::Repository {
            name: name.clone(),
            actions: actions.to_vec(),
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Catalog => f.write_str(CATALOG),
            Scope::Repository { name, actions } => {
                let actions: Vec<&str> = actions.iter().map(|a| a.as_str()).collect();
                write!(f, "repository:{name}:{}", actions.join(","))
            }
        }
    }
}

/// One entry of a token's `access` claim.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessEntry {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

impl AccessEntry {
    pub fn of(scope: &Scope) -> AccessEntry {
        match scope {
            Scope::Catalog => AccessEntry {
                kind: "registry".into(),
                name: "catalog".into(),
                actions: vec!["*".into()],
            },
            Scope::Repository { name, actions } => AccessEntry {
                kind: "repository".into(),
                name: name.to_string(),
                actions: actions.iter().map(|a| a.as_str().to_string()).collect(),
            },
        }
    }
}

/// Whether an `access` claim covers `action` on repository `repo`.
pub fn access_permits(access: &[AccessEntry], repo: &str, action: Action) -> bool {
    access
        .iter()
        .any(|e| e.kind == "repository" && e.name == repo && e.actions.iter().any(|a| a == action.as_str()))
}

/// Whether an `access` claim covers listing the catalog.
pub fn access_permits_catalog(access: &[AccessEntry]) -> bool {
    access.contains(&AccessEntry::of(&Scope::Catalog))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_scopes_parse_and_print_back() {
        let scope = Scope::parse("repository:ci/app:push,pull").unwrap();
        assert_eq!(
            scope,
            Scope::repository(&RepoName::parse("ci/app").unwrap(), &[Action::Pull, Action::Push])
        );
        assert_eq!(scope.to_string(), "repository:ci/app:pull,push");
        assert_eq!(
            Scope::parse("repository:a:*").unwrap().to_string(),
            "repository:a:pull,push,delete"
        );
        assert_eq!(Scope::parse("registry:catalog:*"), Some(Scope::Catalog));
    }

    #[test]
    fn unknown_or_malformed_scopes_are_dropped() {
        for text in [
            "repository:a",
            "repository:A:pull",
            "repository:a:fly",
            "repository(plugin):a:pull",
            "registry:other:*",
            "",
        ] {
            assert_eq!(Scope::parse(text), None, "{text}");
        }
    }

    #[test]
    fn several_scopes_per_parameter_and_several_parameters() {
        let scopes = Scope::parse_all(["repository:a:pull repository:b:push", "registry:catalog:*"].into_iter());
        assert_eq!(scopes.len(), 3);
        assert_eq!(scopes[2], Scope::Catalog);
    }

    #[test]
    fn access_claims_permit_exactly_what_they_list() {
        let access = [AccessEntry::of(&Scope::parse("repository:a/b:pull").unwrap())];
        assert!(access_permits(&access, "a/b", Action::Pull));
        assert!(!access_permits(&access, "a/b", Action::Push));
        assert!(!access_permits(&access, "a/bc", Action::Pull));
        assert!(!access_permits_catalog(&access));
        assert!(access_permits_catalog(&[AccessEntry::of(&Scope::Catalog)]));
    }
}
