//! The host services core asks of the native platform: clock, entropy, and
//! threads for CPU-heavy work (password hashes) away from the request
//! threads.

use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use pier_core::platform::{BoxFuture, Env, HeavyWork};
use tokio::sync::Semaphore;

pub struct SystemEnv;

/// Heavy work running at once: one per core. Each password hash holds up to
/// 64 MiB (the cost limit of a configured hash) and a core for tens of
/// milliseconds; more at once would only share the cores and the memory.
fn heavy_work_slots() -> Arc<Semaphore> {
    static SLOTS: OnceLock<Arc<Semaphore>> = OnceLock::new();
    SLOTS
        .get_or_init(|| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            Arc::new(Semaphore::new(cores))
        })
        .clone()
}

impl Env for SystemEnv {
    fn now_millis(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    fn fill_random(&self, buf: &mut [u8]) {
        getrandom::fill(buf).expect("the operating system's entropy source is available");
    }

    /// On tokio's blocking threads, at most [`heavy_work_slots`] at once;
    /// waiting for a slot holds no thread. Outside a runtime (the command
    /// line), in place.
    fn run_heavy(&self, work: HeavyWork) -> BoxFuture<'static, ()> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            work();
            return Box::pin(std::future::ready(()));
        };
        Box::pin(async move {
            // The semaphore is never closed.
            let Ok(slot) = heavy_work_slots().acquire_owned().await else {
                return;
            };
            // The slot goes with the work: a request abandoned meanwhile
            // does not free it while the hash still runs.
            let _ = runtime
                .spawn_blocking(move || {
                    work();
                    drop(slot);
                })
                .await;
        })
    }
}
