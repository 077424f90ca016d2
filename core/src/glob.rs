//! Globs over repository names, tags and OIDC claim values, shared by access
//! policies and retention rules: `*` matches within one `/`-separated
//! component, `**` across components (`prod/**` matches `prod/a` and
//! `prod/a/b`, not `prod` itself: a namespace is what is under it), `?` one
//! character. Names are plain lowercase paths, so no classes or escapes: rules
//! are written by people and must stay readable.
//!
//! Policies pick the most specific matching rule, so a glob also knows how
//! specific it is.

use std::cmp::Ordering;

/// Whether `text` matches `pattern` (for patterns kept as plain strings).
pub fn matches(pattern: &str, text: &str) -> bool {
    match_from(pattern.as_bytes(), text.as_bytes())
}

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
        match_from(self.pattern.as_bytes(), text.as_bytes())
    }

    fn literal_chars(&self) -> usize {
        self.pattern.bytes().filter(|&b| b != b'*' && b != b'?').count()
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

fn match_from(pattern: &[u8], text: &[u8]) -> bool {
    match pattern {
        [] => text.is_empty(),
        [b'*', b'*', rest @ ..] => {
            if rest.is_empty() {
                return true;
            }
            let rest = rest.strip_prefix(b"/").unwrap_or(rest);
            // From the start and after each `/`.
            let starts =
                std::iter::once(0).chain(text.iter().enumerate().filter(|(_, &c)| c == b'/').map(|(i, _)| i + 1));
            starts.filter_map(|i| text.get(i..)).any(|tail| match_from(rest, tail))
        }
        [b'*', rest @ ..] => {
            let segment_end = text.iter().position(|&c| c == b'/').unwrap_or(text.len());
            (0..=segment_end)
                .filter_map(|i| text.get(i..))
                .any(|tail| match_from(rest, tail))
        }
        [b'?', rest @ ..] => matches!(text, [c, tail @ ..] if *c != b'/' && match_from(rest, tail)),
        [p, rest @ ..] => matches!(text, [c, tail @ ..] if c == p && match_from(rest, tail)),
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
        assert!(
            !glob("sandbox/**").matches("sandbox"),
            "a namespace is what is under it"
        );
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

    #[test]
    fn stars_stay_in_their_segment_and_double_stars_cross() {
        assert!(matches("v*", "v1.2.3"));
        assert!(!matches("v*", "latest"));
        assert!(matches("*", "anything"));
        assert!(matches("prod/*", "prod/app"));
        assert!(!matches("prod/*", "prod/team/app"));
        assert!(matches("prod/**", "prod/team/app"));
        assert!(!matches("prod/**", "prod"));
        assert!(!matches("prod/**", "production/app"));
        assert!(matches("**/cache", "a/b/cache"));
        assert!(matches("**/cache", "cache"));
        assert!(matches("ci-??", "ci-42"));
        assert!(!matches("ci-??", "ci-420"));
        assert!(matches("**", "x/y"));
    }
}
