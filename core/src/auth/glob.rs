//! Globs over repository names (and OIDC claim values): `*` matches any run of
//! characters within one `/`-separated component, `**` any run across
//! components. Names are plain lowercase paths, so no classes or escapes.
//!
//! Policies pick the most specific matching rule, so a glob also knows how
//! specific it is.

use std::cmp::Ordering;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
}

impl Glob {
    pub fn new(pattern: &str) -> Result<Glob, String> {
        if pattern.is_empty() {
            return Err("an empty pattern matches nothing".into());
        }
        if pattern.contains("***") {
            return Err(format!("pattern {pattern:?}: use `*` or `**`, not `***`"));
        }
        Ok(Glob {
            pattern: pattern.to_string(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    pub fn matches(&self, text: &str) -> bool {
        matches(self.pattern.as_bytes(), text.as_bytes())
    }

    fn literal_chars(&self) -> usize {
        self.pattern.bytes().filter(|&b| b != b'*').count()
    }

    fn deep_wildcards(&self) -> usize {
        self.pattern.matches("**").count()
    }

    fn single_wildcards(&self) -> usize {
        self.pattern.matches('*').count() - 2 * self.deep_wildcards()
    }

    /// Orders globs from least to most specific: an exact name beats any
    /// wildcard; then more literal characters win; then fewer `**`, then
    /// fewer `*`. So `prod/critical/**` beats `prod/**`, which beats `**`,
    /// and `prod/*` beats `prod/**`.
    pub fn specificity(&self, other: &Glob) -> Ordering {
        let exact = |g: &Glob| !g.pattern.contains('*');
        exact(self)
            .cmp(&exact(other))
            .then(self.literal_chars().cmp(&other.literal_chars()))
            .then(other.deep_wildcards().cmp(&self.deep_wildcards()))
            .then(other.single_wildcards().cmp(&self.single_wildcards()))
    }
}

fn matches(pattern: &[u8], text: &[u8]) -> bool {
    match pattern {
        [] => text.is_empty(),
        [b'*', b'*', rest @ ..] => (0..=text.len()).any(|skip| matches(rest, &text[skip..])),
        [b'*', rest @ ..] => {
            let component_end = text.iter().position(|&b| b == b'/').unwrap_or(text.len());
            (0..=component_end).any(|skip| matches(rest, &text[skip..]))
        }
        [first, rest @ ..] => text.first() == Some(first) && matches(rest, &text[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(p: &str) -> Glob {
        Glob::new(p).unwrap()
    }

    #[test]
    fn single_star_stays_within_a_component() {
        assert!(glob("*").matches("alpine"));
        assert!(!glob("*").matches("library/alpine"));
        assert!(glob("team/*").matches("team/app"));
        assert!(!glob("team/*").matches("team/app/sub"));
        assert!(glob("team/*-dev").matches("team/app-dev"));
        assert!(!glob("team/*-dev").matches("team/app-prod"));
    }

    #[test]
    fn double_star_crosses_components() {
        assert!(glob("sandbox/**").matches("sandbox/a"));
        assert!(glob("sandbox/**").matches("sandbox/a/b/c"));
        assert!(!glob("sandbox/**").matches("sandbox"));
        assert!(!glob("sandbox/**").matches("sandboxes/a"));
        assert!(glob("**").matches("any/thing/at/all"));
        assert!(glob("**/cache").matches("a/b/cache"));
        assert!(!glob("**/cache").matches("a/b/cached"));
    }

    #[test]
    fn literal_patterns_match_only_themselves() {
        assert!(glob("prod/app").matches("prod/app"));
        assert!(!glob("prod/app").matches("prod/app2"));
        assert!(!glob("prod/app").matches("prod"));
    }

    #[test]
    fn specificity_orders_exact_then_literal_length_then_wildcard_kind() {
        let order = ["**", "*", "prod/**", "prod/*", "prod/critical/**", "prod/app"];
        for pair in order.windows(2) {
            assert_eq!(
                glob(pair[0]).specificity(&glob(pair[1])),
                Ordering::Less,
                "{} should be less specific than {}",
                pair[0],
                pair[1]
            );
        }
        assert_eq!(glob("a/*").specificity(&glob("*/b")), Ordering::Equal);
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!(Glob::new("").is_err());
        assert!(Glob::new("a/***").is_err());
    }
}
