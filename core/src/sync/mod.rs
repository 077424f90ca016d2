//! Scheduled, pull-based sync (`[[sync]]`): a site that must pull rather
//! than be pushed to (a factory behind a firewall) copies images from an
//! upstream registry, a pass at a time. A pass lists the upstream tags of
//! the rule's repositories (names, or globs over the upstream's catalog),
//! copies the tags the site lacks or has at another digest (everything that
//! exists upstream: a new rule backfills), and with `delete` removes the
//! site's tags upstream dropped. Its progress is kept in the store, so a
//! pass cut short (a budget, a crash, an upstream outage) resumes where it
//! stopped, and a lease there keeps two instances from running it at once.
//!
//! The copies are `remote::copy`'s from a `RemoteRepo` to a `LocalRepo`
//! (digests checked, blobs streamed), through the same `RegistryClient` as
//! the pull-through cache: credentials go to the upstream and the token
//! realms the rule allows, nowhere else.
//!
//! `rule`: the table and its checks; `plan`: which tags a pass copies and
//! deletes; `progress`: the stored pass and its lease; `pass`: running one.

mod pass;
mod plan;
mod progress;
mod rule;

pub use pass::{Budget, PassError, PassObserver, PassOutcome, SyncPasses, TagOutcome, Unobserved};
pub use progress::{Counts, PassRecord};
pub use rule::{rules, SyncConfig, SyncRule};
