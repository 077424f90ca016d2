//! Upload session ids, and what they say about when they were issued.
//!
//! A POST saves nothing (a push waits for one round trip less): until a
//! request saves its first state, a session exists in its id alone. The id
//! therefore carries the time it was issued, so that a session nothing was
//! sent to yet (no state, a young id) can be told from one whose states are
//! gone (an old id): the collector keeps a session's states until its id is
//! older than [`UNUSED_FOR_MS`], so a young id without states was never
//! used, and never names an object a finished upload made a blob. Ids of
//! older builds (random, without a time) are known by their states alone.
//!
//! The id also names the repository it was issued for (a digest of the
//! rest and the repository's name), so that a session's id used under
//! another repository is unknown there, as it is once the session is saved.
//! No secret is needed: an id a client makes up in this format is no more
//! than a POST it did not send. Every request on it is authorized like any
//! other, and the time it claims bounds its life like that of an id the
//! registry issued.

use crate::digest::{hex, Algorithm, Digest};
use crate::names::RepoName;
use crate::platform::Env;

/// How long a session nothing was sent to stays open, from its POST.
pub const UNUSED_FOR_MS: u64 = 24 * 3600 * 1000;

/// How far instances' clocks may disagree: an id issued that far in the
/// future is still taken, and states are kept that much longer.
const CLOCK_SKEW_MS: u64 = 10 * 60 * 1000;

/// The issue time as 16 hex digits, 16 of random, then 16 of the digest
/// naming the repository.
const TIME_DIGITS: usize = 16;
const RANDOM_DIGITS: usize = 16;
const LEN: usize = 48;

/// A new session's id for `repo`, issued now.
pub fn issue(env: &dyn Env, repo: &RepoName) -> String {
    let mut random = [0u8; RANDOM_DIGITS / 2];
    env.fill_random(&mut random);
    let issued = format!("{:016x}{}", env.now_millis(), hex(&random));
    let check = repo_check(&issued, repo);
    issued + &check
}

/// The digits that tie an id's first part to `repo`.
fn repo_check(issued: &str, repo: &RepoName) -> String {
    let named = format!("{issued}/{repo}");
    let digest = Digest::of(Algorithm::Sha256, named.as_bytes());
    digest.hex()[..LEN - TIME_DIGITS - RANDOM_DIGITS].to_string()
}

/// When `id` was issued; `None` for ids of older builds.
fn issued_ms(id: &str) -> Option<u64> {
    if id.len() != LEN || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(&id[..TIME_DIGITS], 16).ok()
}

/// Whether a session named `id` with no saved state is one nothing was sent
/// to yet, for `repo`, rather than unknown.
pub fn may_be_unused(id: &str, repo: &RepoName, now_ms: u64) -> bool {
    let Some(at) = issued_ms(id) else {
        return false;
    };
    let (issued, check) = id.split_at(TIME_DIGITS + RANDOM_DIGITS);
    let young = at <= now_ms.saturating_add(CLOCK_SKEW_MS) && now_ms.saturating_sub(at) < UNUSED_FOR_MS;
    young && check.eq_ignore_ascii_case(&repo_check(issued, repo))
}

/// Whether the collector may remove the states of session `id`: not while
/// a request, on any instance, could take the session for unused without them.
pub fn states_removable(id: &str, now_ms: u64) -> bool {
    issued_ms(id).is_none_or(|at| now_ms.saturating_sub(at) >= UNUSED_FOR_MS + 2 * CLOCK_SKEW_MS)
}

/// Whether session `id` was issued too recently for upload expiry, after
/// `expiry_ms`, to find it idle or ended that long ago: every time a state
/// records is later than its id's, give or take the clocks' skew. The
/// collector then skips it without reading a state.
pub fn too_young_to_expire(id: &str, expiry_ms: u64, now_ms: u64) -> bool {
    issued_ms(id).is_some_and(|at| now_ms.saturating_sub(at).saturating_add(CLOCK_SKEW_MS) <= expiry_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestEnv;

    fn repo(name: &str) -> RepoName {
        RepoName::parse(name).unwrap()
    }

    #[test]
    fn an_id_is_unused_for_a_day_and_its_states_kept_past_that() {
        let env = TestEnv::default();
        let app = repo("team/app");
        let issued = env.now_millis();
        let id = issue(&env, &app);
        assert_eq!(id.len(), LEN);
        assert!(may_be_unused(&id, &app, issued));
        assert!(!states_removable(&id, issued));
        let last = issued + UNUSED_FOR_MS - 1;
        assert!(may_be_unused(&id, &app, last) && !states_removable(&id, last));
        let after = issued + UNUSED_FOR_MS;
        assert!(!may_be_unused(&id, &app, after) && !states_removable(&id, after));
        assert!(states_removable(&id, after + 2 * CLOCK_SKEW_MS));
        let day = UNUSED_FOR_MS;
        assert!(too_young_to_expire(&id, day, issued + day - CLOCK_SKEW_MS));
        assert!(!too_young_to_expire(&id, day, issued + day - CLOCK_SKEW_MS + 1));
        assert!(!too_young_to_expire(&id, 0, issued), "no expiry: nothing is too young");
        assert!(!too_young_to_expire("0123456789abcdef0123456789abcdef", day, issued));
    }

    #[test]
    fn an_id_is_unused_only_in_its_repository() {
        let env = TestEnv::default();
        let id = issue(&env, &repo("team/app"));
        let now = env.now_millis();
        assert!(!may_be_unused(&id, &repo("team/other"), now));
        let mut other_check = id.clone();
        let last = if id.ends_with('0') { "1" } else { "0" };
        other_check.replace_range(LEN - 1.., last);
        assert!(!may_be_unused(&other_check, &repo("team/app"), now));
    }

    #[test]
    fn ids_of_older_builds_and_other_shapes_are_never_unused() {
        let now = TestEnv::default().now_millis();
        let app = repo("team/app");
        let made = |at: u64| {
            let issued = format!("{at:016x}{}", "0".repeat(RANDOM_DIGITS));
            let check = repo_check(&issued, &app);
            issued + &check
        };
        let (future, old) = (made(now + 2 * CLOCK_SKEW_MS), made(0));
        assert!(may_be_unused(&made(now), &app, now), "the same shape, made now");
        for id in ["0123456789abcdef0123456789abcdef", "", &"g".repeat(LEN), &future, &old] {
            assert!(!may_be_unused(id, &app, now), "{id}");
        }
        assert!(states_removable("0123456789abcdef0123456789abcdef", now));
        assert!(
            !states_removable(&future, now),
            "kept at least as long as it could be taken"
        );
    }
}
