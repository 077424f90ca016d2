//! The pure decisions of a pass, apart from the network and the store:
//! which upstream tags a rule takes and in what order (byte order, so a
//! cursor can say "done up to here"), which of them are left after a
//! resumed pass's cursor, and which local tags a rule with `delete` removes.

use std::collections::BTreeSet;

use crate::glob::Glob;
use crate::names::Tag;

/// An upstream repository's tags as a pass sees them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UpstreamTags {
    /// Valid tags the filter takes, in byte order, once each.
    pub taken: Vec<Tag>,
    /// Names upstream listed that are not valid tags (counted as failures).
    pub invalid: Vec<String>,
}

/// The tags of `listed` that `filter` takes.
pub fn upstream_tags(listed: Vec<String>, filter: &Glob) -> UpstreamTags {
    let mut taken = BTreeSet::new();
    let mut invalid = Vec::new();
    for name in listed {
        match Tag::parse(&name) {
            Some(tag) if filter.matches(tag.as_str()) => {
                taken.insert(tag.as_str().to_string());
            }
            Some(_) => {}
            None => invalid.push(name),
        }
    }
    UpstreamTags {
        taken: taken.iter().filter_map(|name| Tag::parse(name)).collect(),
        invalid,
    }
}

/// The tags of `tags` (in byte order) after `cursor`, the last one done.
pub fn after_cursor<'a>(tags: &'a [Tag], cursor: Option<&str>) -> &'a [Tag] {
    let Some(cursor) = cursor else {
        return tags;
    };
    let done = tags.partition_point(|tag| tag.as_str() <= cursor);
    tags.get(done..).unwrap_or_default()
}

/// Local tags to delete: those `filter` takes that upstream no longer has
/// (tags the filter leaves out are not the rule's to delete).
pub fn stale_tags(local: &[String], upstream: &[Tag], filter: &Glob) -> Vec<Tag> {
    let kept: BTreeSet<&str> = upstream.iter().map(Tag::as_str).collect();
    local
        .iter()
        .filter(|name| filter.matches(name) && !kept.contains(name.as_str()))
        .filter_map(|name| Tag::parse(name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(names: &[&str]) -> Vec<Tag> {
        names.iter().map(|n| Tag::parse(n).unwrap()).collect()
    }

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn the_filter_takes_valid_tags_in_byte_order_once() {
        let listed = strings(&["v2", "dev", "v1", "v1", "-bad", "v10", "V3"]);
        let seen = upstream_tags(listed, &Glob::new("v*").unwrap());
        assert_eq!(seen.taken, tags(&["v1", "v10", "v2"]));
        assert_eq!(seen.invalid, strings(&["-bad"]));
        let all = upstream_tags(strings(&["b", "a", "V3"]), &Glob::new("*").unwrap());
        assert_eq!(all.taken, tags(&["V3", "a", "b"]));
    }

    #[test]
    fn a_resumed_pass_goes_on_after_its_cursor() {
        let all = tags(&["a", "b", "c"]);
        assert_eq!(after_cursor(&all, None), &all[..]);
        assert_eq!(after_cursor(&all, Some("a")), &all[1..]);
        assert_eq!(after_cursor(&all, Some("bb")), &all[2..], "a cursor tag deleted since");
        assert!(after_cursor(&all, Some("c")).is_empty());
        assert!(after_cursor(&all, Some("z")).is_empty());
    }

    #[test]
    fn only_filtered_tags_upstream_dropped_are_deleted() {
        let local = strings(&["v1", "v2", "dev", "v3"]);
        let upstream = tags(&["v1", "v3", "v4"]);
        assert_eq!(stale_tags(&local, &upstream, &Glob::new("v*").unwrap()), tags(&["v2"]));
        assert_eq!(
            stale_tags(&local, &upstream, &Glob::new("*").unwrap()),
            tags(&["v2", "dev"])
        );
        assert!(stale_tags(&local, &tags(&[]), &Glob::new("x*").unwrap()).is_empty());
    }
}
