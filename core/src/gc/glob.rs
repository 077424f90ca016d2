//! Glob patterns for repository names and tags in retention rules:
//! `*` matches within one path segment, `**` across segments (`prod/**`
//! matches `prod/a` and `prod/a/b`), `?` one character. Tags have no `/`, so
//! for them `*` matches anything. Small on purpose: rules are written by
//! people, and anything richer (regexes) is harder to read in a config file.

/// Whether `text` matches `pattern`.
pub fn matches(pattern: &str, text: &str) -> bool {
    match_from(pattern.as_bytes(), text.as_bytes())
}

fn match_from(pattern: &[u8], text: &[u8]) -> bool {
    match pattern {
        [] => text.is_empty(),
        // `prod/**` also matches `prod` itself.
        [b'/', b'*', b'*'] if text.is_empty() => true,
        [b'*', b'*', rest @ ..] => {
            if rest.is_empty() {
                return true;
            }
            let rest = rest.strip_prefix(b"/").unwrap_or(rest);
            (0..=text.len()).any(|i| (i == 0 || text[i - 1] == b'/') && match_from(rest, &text[i..]))
        }
        [b'*', rest @ ..] => {
            let segment_end = text.iter().position(|&c| c == b'/').unwrap_or(text.len());
            (0..=segment_end).any(|i| match_from(rest, &text[i..]))
        }
        [b'?', rest @ ..] => matches!(text, [c, tail @ ..] if *c != b'/' && match_from(rest, tail)),
        [p, rest @ ..] => matches!(text, [c, tail @ ..] if c == p && match_from(rest, tail)),
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn stars_stay_in_their_segment_and_double_stars_cross() {
        assert!(matches("v*", "v1.2.3"));
        assert!(!matches("v*", "latest"));
        assert!(matches("*", "anything"));
        assert!(matches("prod/*", "prod/app"));
        assert!(!matches("prod/*", "prod/team/app"));
        assert!(matches("prod/**", "prod/team/app"));
        assert!(matches("prod/**", "prod"));
        assert!(!matches("prod/**", "production/app"));
        assert!(matches("**/cache", "a/b/cache"));
        assert!(matches("**/cache", "cache"));
        assert!(matches("ci-??", "ci-42"));
        assert!(!matches("ci-??", "ci-420"));
        assert!(matches("**", "x/y"));
    }
}
