//! The bound on background work: every event may start deliveries and
//! copies (a pull event, even an anonymous pull's), so without a bound a
//! flood of requests against a receiver that never answers would pile up
//! tasks, connections and memory without end. At most [`MAX_RUNNING`] tasks
//! run at once per process (per isolate on the Worker), at most
//! [`MAX_WAITING`] more wait for a turn; any further one is dropped, counted
//! and reported, and never blocks or fails the request that caused it.
//!
//! A waiting task looks for a free turn on the platform's clock rather than
//! being woken by the task that finishes: on the Worker that task belongs to
//! another request, and work resumed from there would run in the wrong
//! request's context. A turn held longer than [`LEASE`] stops counting: the
//! Worker's runtime may end work after a response without the task ever
//! finishing, and its turn must come back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::platform::{Background, BoxFuture, Env};

/// Deliveries and copies running at once.
pub const MAX_RUNNING: usize = 16;
/// Deliveries and copies waiting for a turn.
pub const MAX_WAITING: usize = 256;
/// How long a turn counts at most (running or waiting).
pub const LEASE: Duration = Duration::from_secs(5 * 60);
/// How often a waiting task looks for a free turn.
const WAIT_POLL: Duration = Duration::from_millis(250);

#[derive(Default)]
struct Turns {
    next_id: u64,
    /// Task id -> when it was admitted, for each running task.
    running: HashMap<u64, u64>,
    /// The same for each waiting task.
    waiting: HashMap<u64, u64>,
}

impl Turns {
    /// Forgets turns held past the lease.
    fn expire(&mut self, now: u64) {
        let lease = LEASE.as_millis() as u64;
        self.running.retain(|_, since| now.saturating_sub(*since) < lease);
        self.waiting.retain(|_, since| now.saturating_sub(*since) < lease);
    }
}

/// The bound on one process's (or isolate's) background tasks.
pub struct TaskLimit {
    max_running: usize,
    max_waiting: usize,
    env: Arc<dyn Env>,
    turns: Mutex<Turns>,
    dropped: AtomicU64,
}

/// Where a task admitted under the bound stands.
enum Admitted {
    Running(u64),
    Waiting(u64),
}

impl TaskLimit {
    pub fn new(max_running: usize, max_waiting: usize, env: Arc<dyn Env>) -> TaskLimit {
        TaskLimit {
            max_running: max_running.max(1),
            max_waiting,
            env,
            turns: Mutex::new(Turns::default()),
            dropped: AtomicU64::new(0),
        }
    }

    /// Tasks dropped over the bound since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Tasks running and waiting now.
    pub fn load(&self) -> (usize, usize) {
        let mut turns = self.turns.lock().unwrap_or_else(PoisonError::into_inner);
        turns.expire(self.env.now_millis());
        (turns.running.len(), turns.waiting.len())
    }

    /// Starts `task` (described by `what`) on `background` under the bound:
    /// at once, after a wait for a turn, or not at all (then counted and
    /// reported, now and then, to spare the log under a flood).
    pub fn spawn(self: &Arc<Self>, background: &Arc<dyn Background>, what: &str, task: BoxFuture<'static, ()>) {
        let admitted = {
            let mut turns = self.turns.lock().unwrap_or_else(PoisonError::into_inner);
            let now = self.env.now_millis();
            turns.expire(now);
            let id = turns.next_id;
            if turns.running.len() < self.max_running && turns.waiting.is_empty() {
                turns.next_id += 1;
                turns.running.insert(id, now);
                Some(Admitted::Running(id))
            } else if turns.waiting.len() < self.max_waiting {
                turns.next_id += 1;
                turns.waiting.insert(id, now);
                Some(Admitted::Waiting(id))
            } else {
                None
            }
        };
        let Some(admitted) = admitted else {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() || dropped.is_multiple_of(1000) {
                background.report(
                    true,
                    &format!(
                        "background work over its bound ({} running, {} waiting): {what} dropped; \
                         {dropped} dropped since start",
                        self.max_running, self.max_waiting
                    ),
                );
            }
            return;
        };
        let limit = self.clone();
        let clock = background.clone();
        background.spawn(Box::pin(async move {
            let mut turn = match admitted {
                Admitted::Running(id) => Turn {
                    limit: &limit,
                    id,
                    running: true,
                },
                Admitted::Waiting(id) => Turn {
                    limit: &limit,
                    id,
                    running: false,
                },
            };
            while !turn.running {
                if limit.take_turn(turn.id) {
                    turn.running = true;
                } else {
                    clock.sleep(WAIT_POLL).await;
                }
            }
            task.await;
            drop(turn);
        }));
    }

    /// Moves waiting task `id` to running if a turn is free; `true` then.
    /// (A task whose wait outlived the lease takes a turn as a new one.)
    fn take_turn(&self, id: u64) -> bool {
        let mut turns = self.turns.lock().unwrap_or_else(PoisonError::into_inner);
        let now = self.env.now_millis();
        turns.expire(now);
        if turns.running.len() >= self.max_running {
            return false;
        }
        turns.waiting.remove(&id);
        turns.running.insert(id, now);
        true
    }
}

/// Pull events recorded per second per process (per isolate) at most:
/// each is a write to the store, and anyone who may pull makes them.
pub const MAX_PULL_EVENTS_PER_SEC: u32 = 100;

/// A bound on how many events of a kind are recorded per second; the rest
/// are dropped, counted and reported now and then.
pub struct RateLimit {
    per_sec: u32,
    /// The current second and what was admitted in it.
    window: Mutex<(u64, u32)>,
    dropped: AtomicU64,
}

impl RateLimit {
    pub fn new(per_sec: u32) -> RateLimit {
        RateLimit {
            per_sec,
            window: Mutex::new((0, 0)),
            dropped: AtomicU64::new(0),
        }
    }

    /// Whether one more may go at `now_ms`; when not, the drop is counted
    /// and, at the 1st, 2nd, 4th... and every 1000th, reported.
    pub fn admit(&self, now_ms: u64, background: &dyn Background, what: &str) -> bool {
        {
            let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
            let second = now_ms / 1000;
            if window.0 != second {
                *window = (second, 0);
            }
            if window.1 < self.per_sec {
                window.1 += 1;
                return true;
            }
        }
        let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        if dropped.is_power_of_two() || dropped.is_multiple_of(1000) {
            background.report(
                true,
                &format!(
                    "{what} over their bound ({} a second): dropped; {dropped} dropped since start",
                    self.per_sec
                ),
            );
        }
        false
    }
}

/// A task's turn, given back when the task ends or is dropped.
struct Turn<'a> {
    limit: &'a TaskLimit,
    id: u64,
    running: bool,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut turns = self.limit.turns.lock().unwrap_or_else(PoisonError::into_inner);
        if self.running {
            turns.running.remove(&self.id);
        } else {
            turns.waiting.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::task::{Context, Poll};

    use futures::channel::oneshot;

    use super::*;
    use crate::testing::TestEnv;

    /// Tasks kept to be polled by the test; sleeps end when the test says.
    #[derive(Default)]
    struct Manual {
        spawned: Mutex<Vec<BoxFuture<'static, ()>>>,
        reports: Mutex<Vec<String>>,
        sleepers: Mutex<Vec<oneshot::Sender<()>>>,
    }

    impl Background for Manual {
        fn spawn(&self, task: BoxFuture<'static, ()>) {
            self.spawned.lock().unwrap().push(task);
        }
        fn sleep(&self, _: Duration) -> BoxFuture<'static, ()> {
            let (wake, slept) = oneshot::channel();
            self.sleepers.lock().unwrap().push(wake);
            Box::pin(async move {
                let _ = slept.await;
            })
        }
        fn report(&self, _failed: bool, message: &str) {
            self.reports.lock().unwrap().push(message.to_string());
        }
    }

    impl Manual {
        /// Polls every task until none moves (a few rounds do).
        fn settle(&self, tasks: &mut Vec<BoxFuture<'static, ()>>) {
            let waker = futures::task::noop_waker();
            let mut cx = Context::from_waker(&waker);
            for _ in 0..5 {
                tasks.append(&mut self.spawned.lock().unwrap());
                tasks.retain_mut(|task| task.as_mut().poll(&mut cx) == Poll::Pending);
            }
        }

        fn wake_sleepers(&self) {
            for wake in self.sleepers.lock().unwrap().drain(..) {
                let _ = wake.send(());
            }
        }
    }

    #[test]
    fn at_most_the_bound_runs_the_next_wait_and_the_rest_are_dropped_and_counted() {
        let env = Arc::new(TestEnv::at(1_000_000));
        let limit = Arc::new(TaskLimit::new(2, 3, env.clone()));
        let manual = Arc::new(Manual::default());
        let background: Arc<dyn Background> = manual.clone();
        let started = Arc::new(Mutex::new(Vec::new()));
        let mut finish = Vec::new();
        for n in 0..10 {
            let (done, wait) = oneshot::channel::<()>();
            finish.push(done);
            let started = started.clone();
            let task = async move {
                started.lock().unwrap().push(n);
                let _ = wait.await;
            };
            limit.spawn(&background, &format!("task {n}"), Box::pin(task));
        }
        let mut tasks = Vec::new();
        manual.settle(&mut tasks);
        assert_eq!(*started.lock().unwrap(), [0, 1], "two run");
        assert_eq!(limit.load(), (2, 3), "three wait");
        assert_eq!(limit.dropped(), 5, "the rest are dropped");
        assert_eq!(tasks.len(), 5, "and never spawned");
        let reports = manual.reports.lock().unwrap().clone();
        assert_eq!(reports.len(), 3, "reported at the 1st, 2nd and 4th drop: {reports:?}");
        assert!(
            reports[0].contains("task 5 dropped; 1 dropped since start"),
            "{reports:?}"
        );

        // One ends: a waiting one takes its turn at its next look.
        let _ = finish.remove(0).send(());
        manual.settle(&mut tasks);
        assert_eq!(limit.load(), (1, 3));
        manual.wake_sleepers();
        manual.settle(&mut tasks);
        assert_eq!(started.lock().unwrap().len(), 3);
        assert_eq!(limit.load(), (2, 2));

        // A task dropped while it waits gives its place back.
        tasks.pop();
        assert_eq!(limit.load(), (2, 1));

        // A turn held past the lease (work the runtime ended silently) comes back.
        env.advance_secs(LEASE.as_secs() + 1);
        assert_eq!(limit.load(), (0, 0));
    }
}
