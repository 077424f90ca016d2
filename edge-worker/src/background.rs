//! Work after the response on the Worker: core's webhook deliveries and
//! replication copies run under the request's `waitUntil`, so they go on
//! after the response without delaying it (within the runtime's limit on
//! work after a response: retries far apart may be cut short).

use std::rc::Rc;
use std::time::Duration;

use pier_core::platform::{Background, BoxFuture};
use worker::{console_error, console_log, Context, Delay};

/// Background work of one request, kept alive by its `waitUntil`.
pub struct WaitUntil(pub Rc<Context>);

impl Background for WaitUntil {
    fn spawn(&self, task: BoxFuture<'static, ()>) {
        self.0.wait_until(task);
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(Delay::from(duration))
    }

    fn report(&self, failed: bool, message: &str) {
        if failed {
            console_error!("pier: {message}");
        } else {
            console_log!("pier: {message}");
        }
    }
}
