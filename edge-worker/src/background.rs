//! Work after the response on the Worker: core's webhook deliveries,
//! replication copies and drains of the events outbox run under the
//! invocation's `waitUntil` (a request's, the queue consumer's or the
//! cron's), so they go on after the response without delaying it, within
//! the runtime's limit on work after a response; what that limit cuts short
//! waits in the outbox for the next drain.

use std::rc::Rc;
use std::time::Duration;

use pier_core::platform::{Background, BoxFuture};
use worker::{console_error, console_log, Context, Delay, ScheduleContext};

/// Background work of one invocation, kept alive by its `waitUntil`.
pub struct WaitUntil(Rc<dyn Fn(BoxFuture<'static, ()>)>);

impl WaitUntil {
    pub fn of_request(context: Rc<Context>) -> WaitUntil {
        WaitUntil(Rc::new(move |task| context.wait_until(task)))
    }

    pub fn of_cron(context: ScheduleContext) -> WaitUntil {
        WaitUntil(Rc::new(move |task| context.wait_until(task)))
    }
}

impl Background for WaitUntil {
    fn spawn(&self, task: BoxFuture<'static, ()>) {
        (self.0)(task);
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
