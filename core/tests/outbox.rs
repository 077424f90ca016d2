//! The events outbox over the in-memory store, with a scripted receiver:
//! order within a lane, a failure blocking its lane through the backoff,
//! dead letters after the last attempt and their retry, one drain per lane
//! at a time (leases), a lease whose holder died taken over once expired,
//! records that do not parse, and targets this instance does not know.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::executor::block_on;
use pier_core::events::outbox::{Attempt, Deliverer, Drained, Lane, Outbox, LEASE};
use pier_core::events::{Action, Event};
use pier_core::platform::BoxFuture;
use pier_core::store::memory::MemoryStore;
use pier_core::store::{list_all, PutMode, Store};
use pier_core::testing::TestEnv;

/// A receiver answering from a script (then `Delivered`), recording the ids
/// it was asked to deliver.
#[derive(Default)]
struct Script {
    answers: Mutex<VecDeque<Attempt>>,
    seen: Mutex<Vec<String>>,
}

impl Script {
    fn answering(answers: Vec<Attempt>) -> Script {
        Script {
            answers: Mutex::new(answers.into()),
            seen: Mutex::default(),
        }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl Deliverer for Script {
    fn attempts(&self, target: &str) -> Option<u32> {
        (target == "hook").then_some(3)
    }

    async fn attempt(&self, _target: &str, event: &Event) -> Attempt {
        self.seen.lock().unwrap().push(event.id.clone());
        self.answers.lock().unwrap().pop_front().unwrap_or(Attempt::Delivered)
    }

    /// Attempts here end at once: the heartbeat never has to beat.
    fn sleep(&self, _: Duration) -> BoxFuture<'static, ()> {
        Box::pin(futures::future::pending())
    }
}

fn event(id: &str, repository: &str) -> Event {
    Event {
        id: id.into(),
        action: Action::Push,
        timestamp: "2026-12-06T00:00:00Z".into(),
        repository: repository.into(),
        tag: Some("v1".into()),
        digest: format!("sha256:{}", "0".repeat(64)),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        size: 2,
        actor: "ci".into(),
    }
}

struct Fixture {
    store: Arc<MemoryStore>,
    env: Arc<TestEnv>,
    outbox: Outbox,
}

fn fixture() -> Fixture {
    let store = Arc::new(MemoryStore::new(5 << 20));
    let env = Arc::new(TestEnv::at(1_000_000));
    let outbox = Outbox::new(store.clone(), env.clone());
    Fixture { store, env, outbox }
}

impl Fixture {
    /// Records events one millisecond apart, as requests would.
    fn record(&self, target: &str, events: &[Event]) -> Lane {
        let mut lane = None;
        for event in events {
            lane = Some(block_on(self.outbox.record(target, event)).unwrap());
            self.env.advance_millis(1);
        }
        lane.unwrap()
    }

    fn keys(&self, prefix: &str) -> Vec<String> {
        block_on(list_all(self.store.as_ref(), prefix)).unwrap()
    }
}

#[test]
fn a_lane_is_delivered_in_the_order_it_was_recorded_and_emptied() {
    let f = fixture();
    let lane = f.record("hook", &[event("e1", "a"), event("e2", "a"), event("e3", "a")]);
    let listed = block_on(f.outbox.list(false, 2)).unwrap();
    let ids: Vec<&str> = listed.iter().map(|l| l.delivery.event.id.as_str()).collect();
    assert_eq!(ids, ["e1", "e2"], "the first two, in order");
    let script = Script::default();
    assert_eq!(block_on(f.outbox.drain(&lane, &script)).unwrap(), Drained::Empty);
    assert_eq!(script.seen(), ["e1", "e2", "e3"]);
    assert!(f.keys("events/pending/").is_empty());
    assert!(block_on(f.outbox.lanes()).unwrap().is_empty());
}

#[test]
fn a_failure_blocks_its_lane_until_its_backoff_ends_and_other_lanes_go_on() {
    let f = fixture();
    let blocked = f.record("hook", &[event("a1", "a"), event("a2", "a")]);
    f.record("hook", &[event("b1", "b")]);
    let script = Script::answering(vec![Attempt::Failed("refused".into())]);
    let due = block_on(f.outbox.drain(&blocked, &script)).unwrap();
    let Drained::DueAt(due) = due else { panic!("{due:?}") };
    assert_eq!(script.seen(), ["a1"], "a2 waits behind a1");
    // Before the backoff ends nothing is attempted; the other lane is not held up.
    assert_eq!(
        block_on(f.outbox.drain(&blocked, &script)).unwrap(),
        Drained::DueAt(due)
    );
    assert_eq!(block_on(f.outbox.drain_all(&script)).unwrap(), Some(due));
    assert_eq!(script.seen(), ["a1", "b1"]);
    f.env.advance_millis(due - 1_000_000);
    assert_eq!(block_on(f.outbox.drain_all(&script)).unwrap(), None);
    assert_eq!(script.seen(), ["a1", "b1", "a1", "a2"]);
    let listed = block_on(f.outbox.list(true, usize::MAX)).unwrap();
    assert!(listed.is_empty(), "{listed:?}");
}

#[test]
fn after_the_last_attempt_a_delivery_is_dead_until_retried_and_the_lane_goes_on() {
    let f = fixture();
    let lane = f.record("hook", &[event("e1", "a"), event("e2", "a")]);
    let failing = Script::answering((0..3).map(|n| Attempt::Failed(format!("no {n}"))).collect());
    for _ in 0..3 {
        block_on(f.outbox.drain(&lane, &failing)).unwrap();
        f.env.advance_secs(600);
    }
    assert_eq!(failing.seen(), ["e1", "e1", "e1", "e2"], "e2 goes once e1 is given up");
    let listed = block_on(f.outbox.list(true, usize::MAX)).unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].dead);
    assert_eq!(listed[0].delivery.attempts, 3);
    assert_eq!(listed[0].delivery.last_error.as_deref(), Some("no 2"));

    let lanes = block_on(f.outbox.retry_dead(&["other".into()])).unwrap();
    assert!(lanes.is_empty(), "only the ids asked for");
    let lanes = block_on(f.outbox.retry_dead(&["e1".into()])).unwrap();
    assert_eq!(lanes, std::slice::from_ref(&lane));
    let script = Script::default();
    assert_eq!(block_on(f.outbox.drain(&lane, &script)).unwrap(), Drained::Empty);
    assert_eq!(script.seen(), ["e1"]);
    assert!(block_on(f.outbox.list(true, usize::MAX)).unwrap().is_empty());
}

#[test]
fn one_drain_holds_a_lane_and_a_dead_holders_lease_expires() {
    let f = fixture();
    let lane = f.record("hook", &[event("e1", "a")]);
    // Another instance holds the lane and then dies without letting go.
    let lease_key = format!("events/leases/{}/{}", lane.target, lane.lane);
    let until = 1_000_000 + LEASE.as_millis() as u64;
    let held = format!(r#"{{"holder":"other","until_ms":{until}}}"#);
    block_on(f.store.put(&lease_key, held.into(), PutMode::Overwrite)).unwrap();
    let script = Script::default();
    assert_eq!(block_on(f.outbox.drain(&lane, &script)).unwrap(), Drained::Busy);
    assert!(script.seen().is_empty());
    f.env.advance_millis(LEASE.as_millis() as u64);
    assert_eq!(block_on(f.outbox.drain(&lane, &script)).unwrap(), Drained::Empty);
    assert_eq!(script.seen(), ["e1"]);
}

#[test]
fn a_record_that_does_not_parse_is_buried_and_does_not_block_its_lane() {
    let f = fixture();
    let lane = f.record("hook", &[event("e1", "a")]);
    let torn = format!("events/pending/{}/{}/0000000000000-torn", lane.target, lane.lane);
    block_on(f.store.put(&torn, "{\"event\":".into(), PutMode::Overwrite)).unwrap();
    let script = Script::default();
    assert_eq!(block_on(f.outbox.drain(&lane, &script)).unwrap(), Drained::Empty);
    assert_eq!(script.seen(), ["e1"]);
    let dead = f.keys("events/dead/");
    assert_eq!(dead.len(), 1);
    assert!(dead[0].ends_with("-torn"));
}

#[test]
fn a_target_not_configured_here_keeps_its_deliveries_for_an_instance_that_has_it() {
    let f = fixture();
    let lane = f.record("elsewhere", &[event("e1", "a")]);
    let script = Script::default();
    assert_eq!(block_on(f.outbox.drain(&lane, &script)).unwrap(), Drained::Unknown);
    assert_eq!(block_on(f.outbox.drain_all(&script)).unwrap(), None);
    assert!(script.seen().is_empty());
    assert_eq!(f.keys("events/pending/").len(), 1);
}
