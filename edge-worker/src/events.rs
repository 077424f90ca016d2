//! The events outbox on the Worker (`pier_core::events::outbox`). A request
//! that records deliveries sends each lane to the `PIER_EVENTS` queue; the
//! queue's consumer (this Worker) drains the lane in an invocation of its
//! own and, while deliveries in it wait for their backoff, has the platform
//! deliver the message again when the first is due. A replication copy
//! that outlasts one invocation's step goes on in the next. The cron
//! drains every lane too, so a lost message (or a Worker deployed without
//! the queue, whose lanes drain under the request's `waitUntil`) delays a
//! delivery by one cron period at most, never loses it.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use pier_core::deployment::Site;
use pier_core::events::outbox::{Drained, Lane};
use pier_core::events::{EventSink, LaneQueue};
use pier_core::platform::{Background, BoxFuture};
use worker::{console_error, Context, Env, MessageBatch, MessageExt, Queue, QueueRetryOptionsBuilder};

use crate::background::WaitUntil;
use crate::config::{EdgeConfig, EVENTS_QUEUE_BINDING};

/// The longest a queue message may be delayed (the platform's limit).
const MAX_DELAY_SECS: u64 = 12 * 3600;
/// The wait before a drain that failed on storage is tried again.
const STORAGE_RETRY_SECS: u32 = 10;

/// The queue as core's `LaneQueue`.
struct QueueLanes(Rc<Queue>);

impl LaneQueue for QueueLanes {
    fn enqueue(&self, lane: Lane) -> BoxFuture<'static, Result<(), String>> {
        let queue = self.0.clone();
        Box::pin(async move { queue.send(lane).await.map_err(|e| e.to_string()) })
    }
}

/// How a request's site hands its new lanes on: to the queue when the
/// Worker has one, else to drains under the request's `waitUntil`, whose
/// copies take steps no longer than the cron budget.
pub fn route_lanes(site: Site, env: &Env, config: &EdgeConfig) -> Site {
    match env.queue(EVENTS_QUEUE_BINDING) {
        // One isolate, one thread: the queue handle need not be Send.
        #[allow(clippy::arc_with_non_send_sync)]
        Ok(queue) => site.with_events(|events| events.with_queue(Arc::new(QueueLanes(Rc::new(queue))))),
        Err(_) => site.with_events(|events| events.with_step_budget(Duration::from_secs(config.gc_budget_secs))),
    }
}

/// The queue consumer: drains each lane named by a message of the batch.
pub async fn consume(batch: MessageBatch<Lane>, env: &Env, context: Context) {
    #[allow(clippy::arc_with_non_send_sync)]
    let background: Arc<dyn Background> = Arc::new(WaitUntil::of_request(Rc::new(context)));
    let (site, config) = match crate::deployment::backend_site(env, background) {
        Ok(built) => built,
        Err(why) => {
            console_error!("pier: events queue: {why}; the messages are retried");
            batch.retry_all();
            return;
        }
    };
    let Some(events) = site.events() else {
        // No webhooks or rules any more: nothing can deliver these lanes.
        batch.ack_all();
        return;
    };
    let events = events
        .clone()
        .with_step_budget(Duration::from_secs(config.replication_step_secs));
    let messages = match batch.messages() {
        Ok(messages) => messages,
        Err(err) => {
            console_error!("pier: events queue: unreadable batch ({err}); the cron drains the outbox");
            batch.ack_all();
            return;
        }
    };
    for message in messages {
        match events.drain(message.body()).await {
            Ok(Drained::DueAt(due)) => {
                let now = pier_core::platform::Env::now_millis(&crate::env::WorkerEnv);
                let secs = due.saturating_sub(now).div_ceil(1000).min(MAX_DELAY_SECS) as u32;
                message.retry_with_options(&QueueRetryOptionsBuilder::new().with_delay_seconds(secs).build());
            }
            Ok(Drained::Empty | Drained::Busy | Drained::Unknown) => message.ack(),
            Err(err) => {
                console_error!("pier: events queue: draining a lane failed: {err}; retried");
                message.retry_with_options(
                    &QueueRetryOptionsBuilder::new()
                        .with_delay_seconds(STORAGE_RETRY_SECS)
                        .build(),
                );
            }
        }
    }
}

/// The cron's part: backfill of new rules, then every lane drained (within
/// the cron's budget for copies).
pub async fn on_cron(env: &Env, background: Arc<dyn Background>) {
    let (site, config) = match crate::deployment::backend_site(env, background) {
        Ok(built) => built,
        Err(why) => {
            console_error!("pier: cron: events: {why}");
            return;
        }
    };
    let Some(events) = site.events() else {
        return;
    };
    let events: EventSink = events
        .clone()
        .with_step_budget(Duration::from_secs(config.gc_budget_secs));
    if let Err(err) = events.backfill_new_rules().await {
        console_error!("pier: cron: backfill of new replication rules: {}", err.message);
    }
    if let Err(err) = events.drain_all().await {
        console_error!("pier: cron: delivering the outbox failed, the next invocation goes on: {err}");
    }
}
