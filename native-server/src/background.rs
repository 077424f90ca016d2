//! The background-task port on native: core's after-the-response work
//! (webhook deliveries, replication copies) runs as tokio tasks, waits on
//! tokio's timer, and reports to the log.

use std::time::Duration;

use pier_core::platform::{Background, BoxFuture};

pub struct TokioBackground;

impl Background for TokioBackground {
    fn spawn(&self, task: BoxFuture<'static, ()>) {
        tokio::spawn(task);
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(duration))
    }

    fn report(&self, failed: bool, message: &str) {
        if failed {
            tracing::warn!("{message}");
        } else {
            tracing::info!("{message}");
        }
    }
}
