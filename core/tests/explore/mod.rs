//! A deterministic scheduler that explores how concurrent requests interleave
//! at the granularity of storage operations.
//!
//! Each task of a scenario (a manifest push, a collection, an upload) reaches
//! the store through its own handle ([`Scheduler::store`]); every storage
//! operation waits until the explorer grants it, so the explorer alone decides
//! the global order of all operations, and a scenario run under one sequence
//! of decisions always does the same thing. [`explore`] runs the scenario
//! again and again, depth first over those decisions, until it has run every
//! schedule with at most `max_preemptions` preemptions (switches away from a
//! task that could have gone on). That is CHESS's preemption bounding: the
//! races that matter need few preemptions (the losses GC once had need two),
//! and the number of schedules grows polynomially with the bound rather than
//! exponentially with the length of the tasks. Concurrent operations of one
//! task (a `join` of reads) run in the order they were asked for unless a
//! preemption reorders them.

#![allow(dead_code)] // each test crate uses its own subset

use std::collections::HashSet;
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use pier_core::store::memory::MemoryStore;
use pier_core::store::{Capabilities, GetResult, ListPage, ObjectMeta, PartRef, PutMode, Store, StoreResult};

/// A task of a scenario: runs to its end and records its outcome itself.
pub type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One run of a scenario: its tasks, and the check of the store once they
/// have all ended (it panics, naming the problem, if an invariant broke).
pub struct Run {
    pub tasks: Vec<Task>,
    pub check: Box<dyn FnOnce()>,
}

/// A storage operation waiting for its turn.
struct Pending {
    ticket: u64,
    task: usize,
    what: String,
}

#[derive(Default)]
struct State {
    next_ticket: u64,
    pending: Vec<Pending>,
    granted: HashSet<u64>,
    /// The operations in the order they ran, for the report of a failure.
    log: Vec<String>,
}

/// Hands out the store handles of one run and holds its waiting operations.
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<MemoryStore>,
    state: Arc<Mutex<State>>,
}

impl Scheduler {
    /// A scheduler over `inner`, a store each run gets afresh.
    pub fn new(inner: Arc<MemoryStore>) -> Scheduler {
        Scheduler {
            inner,
            state: Arc::default(),
        }
    }

    /// The store itself, for a scenario's setup and its final check.
    pub fn memory(&self) -> Arc<MemoryStore> {
        self.inner.clone()
    }

    /// The store as task `task` sees it: the shared memory store, one
    /// scheduled operation at a time.
    pub fn store(&self, task: usize) -> Arc<dyn Store> {
        Arc::new(TaskStore {
            task,
            scheduler: self.clone(),
        })
    }

    /// Waits until the explorer grants this operation.
    async fn turn(&self, task: usize, what: String) {
        let mut ticket = None;
        let mut what = Some(what);
        futures::future::poll_fn(|_| {
            let mut state = self.state.lock().unwrap();
            match ticket {
                None => {
                    let id = state.next_ticket;
                    state.next_ticket += 1;
                    state.pending.push(Pending {
                        ticket: id,
                        task,
                        what: what.take().unwrap_or_default(),
                    });
                    ticket = Some(id);
                    Poll::Pending
                }
                Some(id) if state.granted.remove(&id) => Poll::Ready(()),
                Some(_) => Poll::Pending,
            }
        })
        .await
    }
}

struct TaskStore {
    task: usize,
    scheduler: Scheduler,
}

impl TaskStore {
    async fn turn(&self, what: String) -> &MemoryStore {
        self.scheduler.turn(self.task, what).await;
        &self.scheduler.inner
    }
}

#[async_trait::async_trait]
impl Store for TaskStore {
    async fn head(&self, key: &str) -> StoreResult<Option<ObjectMeta>> {
        self.turn(format!("head {key}")).await.head(key).await
    }
    async fn get(&self, key: &str, range: Option<Range<u64>>) -> StoreResult<Option<GetResult>> {
        self.turn(format!("get {key}")).await.get(key, range).await
    }
    async fn put(&self, key: &str, data: Bytes, mode: PutMode) -> StoreResult<ObjectMeta> {
        self.turn(format!("put {key} ({mode:?})"))
            .await
            .put(key, data, mode)
            .await
    }
    async fn put_volatile(&self, key: &str, data: Bytes, mode: PutMode) -> StoreResult<ObjectMeta> {
        self.turn(format!("put volatile {key} ({mode:?})"))
            .await
            .put_volatile(key, data, mode)
            .await
    }
    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.turn(format!("delete {key}")).await.delete(key).await
    }
    async fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> StoreResult<ListPage> {
        let store = self.turn(format!("list {prefix} after {start_after:?}")).await;
        store.list(prefix, start_after, limit).await
    }
    fn capabilities(&self) -> Capabilities {
        self.scheduler.inner.capabilities()
    }
    async fn create_multipart(&self, key: &str) -> StoreResult<String> {
        self.turn(format!("create multipart {key}"))
            .await
            .create_multipart(key)
            .await
    }
    async fn put_part(&self, key: &str, upload_id: &str, number: u32, data: Bytes) -> StoreResult<PartRef> {
        let store = self.turn(format!("put part {number} of {key}")).await;
        store.put_part(key, upload_id, number, data).await
    }
    async fn complete_multipart(&self, key: &str, upload_id: &str, parts: Vec<PartRef>) -> StoreResult<ObjectMeta> {
        let store = self.turn(format!("complete multipart {key}")).await;
        store.complete_multipart(key, upload_id, parts).await
    }
    async fn abort_multipart(&self, key: &str, upload_id: &str) -> StoreResult<()> {
        let store = self.turn(format!("abort multipart {key}")).await;
        store.abort_multipart(key, upload_id).await
    }
    async fn signed_url(&self, key: &str, expires: std::time::Duration) -> StoreResult<Option<String>> {
        self.scheduler.inner.signed_url(key, expires).await
    }
    async fn forget(&self, key: &str) {
        self.scheduler.inner.forget(key).await
    }
}

/// A point where more than one operation could run next.
struct Decision {
    /// The tasks of the waiting operations, in the order offered: the task
    /// that ran last first (going on with it is no preemption).
    options: Vec<usize>,
    chosen: usize,
    /// Preemptions spent before this decision.
    spent: usize,
    /// The task that ran last, if it still had an operation waiting.
    running: Option<usize>,
}

impl Decision {
    /// Anything but the running task's oldest waiting operation is a
    /// preemption while that task can go on: a switch to another task, or
    /// another order of the task's own concurrent operations.
    fn cost(&self, option: usize) -> usize {
        match self.running {
            Some(_) if option != 0 => 1,
            _ => 0,
        }
    }
}

/// What an exploration covered.
#[derive(Debug)]
pub struct Explored {
    /// Schedules run, each to the end, with the check after it.
    pub schedules: usize,
    /// The most storage operations one schedule ran.
    pub longest: usize,
}

/// Runs `scenario` under every schedule with at most `max_preemptions`
/// preemptions. `scenario` builds a run (its tasks over a scheduler of a
/// fresh store, typically a copy of one set up once); it is called once per
/// schedule. A failed check panics with the schedule that broke it.
pub fn explore(max_preemptions: usize, mut scenario: impl FnMut() -> (Scheduler, Run)) -> Explored {
    let mut prefix: Vec<usize> = Vec::new();
    let mut explored = Explored {
        schedules: 0,
        longest: 0,
    };
    loop {
        let (decisions, ops) = run_one(&mut scenario, &prefix, max_preemptions);
        explored.schedules += 1;
        explored.longest = explored.longest.max(ops);
        assert!(explored.schedules <= 2_000_000, "too many schedules: lower the bound");
        // Backtrack: the deepest decision with an untried option in budget.
        let next = decisions.iter().enumerate().rev().find_map(|(depth, decision)| {
            (decision.chosen + 1..decision.options.len())
                .find(|&option| decision.spent + decision.cost(option) <= max_preemptions)
                .map(|option| (depth, option))
        });
        let Some((depth, option)) = next else {
            return explored;
        };
        prefix = decisions[..depth].iter().map(|d| d.chosen).collect();
        prefix.push(option);
    }
}

/// Runs one schedule: `prefix` decides the first decisions, then every
/// decision goes on with the running task (the option of no preemption).
fn run_one(
    scenario: &mut impl FnMut() -> (Scheduler, Run),
    prefix: &[usize],
    max_preemptions: usize,
) -> (Vec<Decision>, usize) {
    let (scheduler, run) = scenario();
    let mut tasks: Vec<Option<Task>> = run.tasks.into_iter().map(Some).collect();
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let mut poll = |tasks: &mut Vec<Option<Task>>, index: usize| {
        if let Some(task) = tasks[index].as_mut() {
            if task.as_mut().poll(&mut cx).is_ready() {
                tasks[index] = None;
            }
        }
    };
    for index in 0..tasks.len() {
        poll(&mut tasks, index);
    }
    let mut decisions = Vec::new();
    let (mut running, mut spent, mut ops) = (None, 0, 0);
    loop {
        // The waiting operations, grouped by task: the running task first,
        // each task's own in the order they were asked for.
        let waiting: Vec<(usize, u64)> = {
            let state = scheduler.state.lock().unwrap();
            let mut waiting: Vec<(usize, u64)> = state.pending.iter().map(|p| (p.task, p.ticket)).collect();
            waiting.sort_by_key(|&(task, ticket)| (Some(task) != running, task, ticket));
            waiting
        };
        if waiting.is_empty() {
            assert!(
                tasks.iter().all(Option::is_none),
                "a task waits on something other than the store"
            );
            break;
        }
        let still_running = running.filter(|task| waiting.iter().any(|(t, _)| t == task));
        let choice = if waiting.len() == 1 {
            0
        } else {
            let depth = decisions.len();
            let decision = Decision {
                options: waiting.iter().map(|&(task, _)| task).collect(),
                chosen: prefix.get(depth).copied().unwrap_or(0),
                spent,
                running: still_running,
            };
            assert!(
                decision.chosen < decision.options.len(),
                "the scenario is not deterministic"
            );
            let chosen = decision.chosen;
            spent += decision.cost(chosen);
            debug_assert!(spent <= max_preemptions);
            decisions.push(decision);
            chosen
        };
        let (task, ticket) = waiting[choice];
        {
            let mut state = scheduler.state.lock().unwrap();
            let position = state.pending.iter().position(|p| p.ticket == ticket).unwrap();
            let pending = state.pending.remove(position);
            state.log.push(format!("task {}: {}", pending.task, pending.what));
            state.granted.insert(ticket);
        }
        ops += 1;
        running = Some(task);
        poll(&mut tasks, task);
    }
    let log = std::mem::take(&mut scheduler.state.lock().unwrap().log);
    let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run.check));
    if let Err(panic) = checked {
        eprintln!("the schedule that broke the invariant:");
        for line in &log {
            eprintln!("  {line}");
        }
        std::panic::resume_unwind(panic);
    }
    (decisions, ops)
}
