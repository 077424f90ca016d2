//! The durable outbox: every delivery an event calls for (to a webhook, or a
//! replication rule's copy) is a record in the store, written before the
//! request that caused it is answered, and deleted only once delivered. A
//! crash, a restart or a receiver that refuses for an hour loses nothing:
//! whichever instance looks next delivers what is left.
//!
//! Deliveries wait in lanes, one per target and repository, in the order
//! they were recorded (the key starts with the time). One drain at a time
//! works a lane, holding its lease (a conditional write, so N instances
//! over one bucket deliver each event once in the normal case); a lease
//! whose holder died expires, so a delivery is never left for nobody. A
//! failed attempt blocks its lane until its backoff ends, which keeps the
//! order per repository; after its target's last attempt the delivery
//! moves to the dead letters, where `pier events` (or the admin endpoint)
//! shows it and can retry it. Receivers see each event's `id` on every
//! attempt and deduplicate by it: delivery is at least once.

use std::sync::Arc;
use std::time::Duration;

use std::future::Future;

use futures::future::{select, Either};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::retry::backoff;
use super::Event;
use crate::digest::{Algorithm, Digest};
use crate::layout;
use crate::platform::{BoxFuture, Env, MaybeSend, MaybeSync};
use crate::store::{read_small, PutMode, Store, StoreError, StoreResult};

/// How long a lease holds without renewal: how long the deliveries of an
/// instance that died wait for another. A drain renews it before each
/// delivery once half of it has passed, and every third of it while an
/// attempt runs (a long copy).
pub const LEASE: Duration = Duration::from_secs(60);
/// Keys read per listing.
const PAGE: usize = 100;
/// Lanes one pass drains at once.
const LANES_AT_ONCE: usize = 8;

/// One lane: a target (a webhook or a rule, by its id) and a repository
/// (by a hash of its name, so that every lane key has one length).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Lane {
    pub target: String,
    pub lane: String,
}

impl Lane {
    pub fn of(target: &str, repository: &str) -> Lane {
        let digest = Digest::of(Algorithm::Sha256, repository.as_bytes());
        Lane {
            target: target.to_string(),
            lane: digest.hex().get(..16).unwrap_or(digest.hex()).to_string(),
        }
    }

    fn prefix(&self, dead: bool) -> String {
        layout::event_lane(dead, &self.target, &self.lane)
    }

    /// Reads a lane back from a delivery's key.
    fn from_key(key: &str) -> Option<(bool, Lane)> {
        let (dead, rest) = match key.strip_prefix(layout::EVENTS_PENDING) {
            Some(rest) => (false, rest),
            None => (true, key.strip_prefix(layout::EVENTS_DEAD)?),
        };
        let mut parts = rest.split('/');
        let (target, lane, _) = (parts.next()?, parts.next()?, parts.next()?);
        Some((
            dead,
            Lane {
                target: target.to_string(),
                lane: lane.to_string(),
            },
        ))
    }
}

/// One delivery, as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub event: Event,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Not attempted again before this time (ms since the epoch).
    pub next_attempt_ms: u64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

/// What one attempt at a delivery came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Attempt {
    Delivered,
    Failed(String),
    /// Work done, more to do (a copy that ran out of its step's time): the
    /// next step goes on at once and no attempt is counted.
    Unfinished,
    /// Not to be done as things are (a promotion of an unsigned manifest
    /// into a namespace that requires signatures): no retry would change
    /// that, so it is a dead letter at once, with the reason, until
    /// something revives it ([`Outbox::revive`]).
    Refused(String),
}

/// Whoever makes deliveries: the deployment's webhooks and rules.
#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
pub trait Deliverer: MaybeSend + MaybeSync {
    /// How many attempts `target` makes before giving up; `None` when no
    /// such target is configured here (its deliveries wait for an instance
    /// that has it).
    fn attempts(&self, target: &str) -> Option<u32>;

    async fn attempt(&self, target: &str, event: &Event) -> Attempt;

    /// A future that completes after `duration`: the heartbeat of a lease
    /// while an attempt runs.
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()>;
}

/// Where a drain left a lane.
#[derive(Debug, PartialEq, Eq)]
pub enum Drained {
    /// Nothing left to deliver.
    Empty,
    /// Another drain holds the lane; it looks again before it lets go.
    Busy,
    /// Its target is not configured here.
    Unknown,
    /// The next delivery is due at this time (ms since the epoch).
    DueAt(u64),
}

/// A delivery found by [`Outbox::list`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Listed {
    pub key: String,
    pub target: String,
    pub dead: bool,
    #[serde(flatten)]
    pub delivery: Delivery,
}

/// The outbox of one deployment's store.
#[derive(Clone)]
pub struct Outbox {
    store: Arc<dyn Store>,
    env: Arc<dyn Env>,
}

impl Outbox {
    pub fn new(store: Arc<dyn Store>, env: Arc<dyn Env>) -> Outbox {
        Outbox { store, env }
    }

    /// Records that `event` is to be delivered to `target`; durable when it
    /// returns.
    pub async fn record(&self, target: &str, event: &Event) -> StoreResult<Lane> {
        let lane = Lane::of(target, &event.repository);
        let now = self.env.now_millis();
        let key = layout::event_delivery(false, target, &lane.lane, now, &event.id);
        let delivery = Delivery {
            event: event.clone(),
            attempts: 0,
            next_attempt_ms: now,
            last_error: None,
        };
        self.store.put(&key, to_json(&delivery), PutMode::Overwrite).await?;
        Ok(lane)
    }

    /// The lanes with deliveries waiting: one listing per lane, however
    /// many wait in it.
    pub async fn lanes(&self) -> StoreResult<Vec<Lane>> {
        let mut lanes: Vec<Lane> = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self.store.list(layout::EVENTS_PENDING, cursor.as_deref(), 1).await?;
            let Some(key) = page.keys.first() else {
                return Ok(lanes);
            };
            let Some((_, lane)) = Lane::from_key(key) else {
                // A stray key: step over it alone.
                cursor = Some(key.clone());
                continue;
            };
            // `~` sorts after every character of a delivery's name.
            cursor = Some(format!("{}~", lane.prefix(false)));
            lanes.push(lane);
        }
    }

    /// Delivers what is due in `lane`, in order, while holding its lease.
    pub async fn drain(&self, lane: &Lane, deliverer: &dyn Deliverer) -> StoreResult<Drained> {
        let Some(max_attempts) = deliverer.attempts(&lane.target) else {
            return Ok(Drained::Unknown);
        };
        loop {
            let Some(mut lease) = Lease::take(self, lane).await? else {
                return Ok(Drained::Busy);
            };
            let outcome = self.deliver_due(lane, &mut lease, max_attempts, deliverer).await;
            lease.release().await;
            if let Some(due) = outcome? {
                return Ok(Drained::DueAt(due));
            }
            // A delivery recorded after the last look, whose own drain found
            // the lane busy, is this drain's to make.
            let page = self.store.list(&lane.prefix(false), None, 1).await?;
            if page.keys.is_empty() {
                return Ok(Drained::Empty);
            }
        }
    }

    /// Drains every lane, a few at once (one slow receiver does not hold
    /// up the others); the time the earliest delivery left waiting is due.
    pub async fn drain_all(&self, deliverer: &dyn Deliverer) -> StoreResult<Option<u64>> {
        let drains = self
            .lanes()
            .await?
            .into_iter()
            .map(|lane| async move { self.drain(&lane, deliverer).await });
        let outcomes: Vec<StoreResult<Drained>> = futures::stream::iter(drains)
            .buffer_unordered(LANES_AT_ONCE)
            .collect()
            .await;
        let mut next: Option<u64> = None;
        for outcome in outcomes {
            if let Drained::DueAt(due) = outcome? {
                next = Some(next.map_or(due, |n| n.min(due)));
            }
        }
        Ok(next)
    }

    /// `None` when the lane was emptied (or the lease lost); else when its
    /// first delivery is due.
    async fn deliver_due(
        &self,
        lane: &Lane,
        lease: &mut Lease<'_>,
        max_attempts: u32,
        deliverer: &dyn Deliverer,
    ) -> StoreResult<Option<u64>> {
        loop {
            let page = self.store.list(&lane.prefix(false), None, PAGE).await?;
            if page.keys.is_empty() {
                return Ok(None);
            }
            for key in page.keys {
                if !lease.renew().await? {
                    return Ok(None);
                }
                let Some((bytes, meta)) = read_small(self.store.as_ref(), &key).await? else {
                    continue;
                };
                let Ok(mut delivery) = serde_json::from_slice::<Delivery>(&bytes) else {
                    self.bury_unreadable(&key, bytes).await?;
                    continue;
                };
                let now = self.env.now_millis();
                if delivery.next_attempt_ms > now {
                    return Ok(Some(delivery.next_attempt_ms));
                }
                let attempt = deliverer.attempt(&lane.target, &delivery.event);
                match lease.held_during(attempt, deliverer).await? {
                    Attempt::Delivered => self.store.delete(&key).await?,
                    Attempt::Unfinished => return Ok(Some(self.env.now_millis())),
                    Attempt::Refused(why) => {
                        delivery.attempts = delivery.attempts.saturating_add(1);
                        delivery.last_error = Some(why);
                        self.move_delivery(&key, &delivery, true).await?;
                    }
                    Attempt::Failed(why) => {
                        delivery.attempts = delivery.attempts.saturating_add(1);
                        delivery.last_error = Some(why);
                        if delivery.attempts >= max_attempts {
                            self.move_delivery(&key, &delivery, true).await?;
                            continue;
                        }
                        let wait = backoff(delivery.attempts).as_millis() as u64;
                        delivery.next_attempt_ms = self.env.now_millis().saturating_add(wait);
                        match self
                            .store
                            .put(&key, to_json(&delivery), PutMode::Update(meta.etag))
                            .await
                        {
                            // Retried from the dead letters meanwhile: it is due again.
                            Ok(_) | Err(StoreError::PreconditionFailed) => {}
                            Err(err) => return Err(err),
                        }
                        return Ok(Some(delivery.next_attempt_ms));
                    }
                }
            }
        }
    }

    /// Moves a delivery between pending and dead (its record first, so a
    /// crash in between leaves it in both places, never in none).
    async fn move_delivery(&self, key: &str, delivery: &Delivery, to_dead: bool) -> StoreResult<()> {
        let Some((dead, lane)) = Lane::from_key(key) else {
            return Ok(());
        };
        if dead == to_dead {
            return Ok(());
        }
        let name = key.rsplit('/').next().unwrap_or_default();
        let target = format!("{}{name}", lane.prefix(to_dead));
        self.store.put(&target, to_json(delivery), PutMode::Overwrite).await?;
        self.store.delete(key).await
    }

    /// A record that does not parse (written by something else, or torn)
    /// would block its lane for ever: it goes to the dead letters as it is.
    async fn bury_unreadable(&self, key: &str, bytes: bytes::Bytes) -> StoreResult<()> {
        if let Some((false, lane)) = Lane::from_key(key) {
            let name = key.rsplit('/').next().unwrap_or_default();
            let target = format!("{}{name}", lane.prefix(true));
            self.store.put(&target, bytes, PutMode::Overwrite).await?;
        }
        self.store.delete(key).await
    }

    /// The pending deliveries, and with `dead` the dead letters too, the
    /// pending first, at most `limit` of them.
    pub async fn list(&self, dead: bool, limit: usize) -> StoreResult<Vec<Listed>> {
        let mut found = Vec::new();
        let roots: &[&str] = match dead {
            true => &[layout::EVENTS_PENDING, layout::EVENTS_DEAD],
            false => &[layout::EVENTS_PENDING],
        };
        for root in roots {
            for key in crate::store::list_all(self.store.as_ref(), root).await? {
                if found.len() >= limit {
                    return Ok(found);
                }
                let (Some((dead, lane)), Some((bytes, _))) =
                    (Lane::from_key(&key), read_small(self.store.as_ref(), &key).await?)
                else {
                    continue;
                };
                if let Ok(delivery) = serde_json::from_slice::<Delivery>(&bytes) {
                    found.push(Listed {
                        key,
                        target: lane.target,
                        dead,
                        delivery,
                    });
                }
            }
        }
        Ok(found)
    }

    /// Puts the dead deliveries of `lane` whose event `wanted` picks back
    /// in it with fresh attempts (the refused promotions of a manifest a
    /// signature has since arrived for); how many. Reads only that lane's
    /// dead letters.
    pub async fn revive(&self, lane: &Lane, wanted: impl Fn(&Event) -> bool) -> StoreResult<usize> {
        let mut revived = 0;
        for key in crate::store::list_all(self.store.as_ref(), &lane.prefix(true)).await? {
            let Some((bytes, _)) = read_small(self.store.as_ref(), &key).await? else {
                continue;
            };
            let Ok(mut delivery) = serde_json::from_slice::<Delivery>(&bytes) else {
                continue;
            };
            if !wanted(&delivery.event) {
                continue;
            }
            delivery.attempts = 0;
            delivery.next_attempt_ms = self.env.now_millis();
            self.move_delivery(&key, &delivery, false).await?;
            revived += 1;
        }
        Ok(revived)
    }

    /// Puts dead deliveries back in their lanes with fresh attempts: every
    /// one, or those whose event id is in `ids`. Returns the lanes touched.
    pub async fn retry_dead(&self, ids: &[String]) -> StoreResult<Vec<Lane>> {
        let mut lanes: Vec<Lane> = Vec::new();
        for key in crate::store::list_all(self.store.as_ref(), layout::EVENTS_DEAD).await? {
            let (Some((_, lane)), Some((bytes, _))) =
                (Lane::from_key(&key), read_small(self.store.as_ref(), &key).await?)
            else {
                continue;
            };
            let Ok(mut delivery) = serde_json::from_slice::<Delivery>(&bytes) else {
                continue;
            };
            if !ids.is_empty() && !ids.contains(&delivery.event.id) {
                continue;
            }
            delivery.attempts = 0;
            delivery.next_attempt_ms = self.env.now_millis();
            self.move_delivery(&key, &delivery, false).await?;
            if !lanes.contains(&lane) {
                lanes.push(lane);
            }
        }
        Ok(lanes)
    }
}

/// The right to drain a lane, until `until_ms`.
#[derive(Serialize, Deserialize)]
struct LeaseRecord {
    holder: String,
    until_ms: u64,
}

struct Lease<'a> {
    outbox: &'a Outbox,
    key: String,
    holder: String,
    etag: String,
    until_ms: u64,
}

impl<'a> Lease<'a> {
    /// Takes the lane's lease if nobody holds it (or its holder's expired).
    async fn take(outbox: &'a Outbox, lane: &Lane) -> StoreResult<Option<Lease<'a>>> {
        let key = layout::event_lease(&lane.target, &lane.lane);
        let now = outbox.env.now_millis();
        let mode = match read_small(outbox.store.as_ref(), &key).await? {
            None => PutMode::Create,
            Some((bytes, meta)) => match serde_json::from_slice::<LeaseRecord>(&bytes) {
                Ok(held) if held.until_ms > now => return Ok(None),
                // Expired, released, or torn by a crash.
                _ => PutMode::Update(meta.etag),
            },
        };
        let mut lease = Lease {
            outbox,
            key,
            holder: outbox.env.random_id(),
            etag: String::new(),
            until_ms: 0,
        };
        Ok(lease
            .write(now + LEASE.as_millis() as u64, mode)
            .await?
            .then_some(lease))
    }

    /// Extends the lease once half of it has passed; `false` when it was
    /// lost meanwhile (taken by another instance after it expired).
    async fn renew(&mut self) -> StoreResult<bool> {
        let now = self.outbox.env.now_millis();
        let half = LEASE.as_millis() as u64 / 2;
        if self.until_ms.saturating_sub(now) > half {
            return Ok(true);
        }
        let etag = self.etag.clone();
        self.write(now + LEASE.as_millis() as u64, PutMode::Update(etag)).await
    }

    /// Runs `work`, renewing the lease every third of it meanwhile, so that
    /// no other instance takes the lane during a long attempt.
    async fn held_during<T>(&mut self, work: impl Future<Output = T>, deliverer: &dyn Deliverer) -> StoreResult<T> {
        let mut work = std::pin::pin!(work);
        loop {
            let beat = deliverer.sleep(LEASE / 3);
            match select(work.as_mut(), beat).await {
                Either::Left((done, _)) => return Ok(done),
                Either::Right(((), _)) => {
                    let etag = self.etag.clone();
                    let until = self.outbox.env.now_millis() + LEASE.as_millis() as u64;
                    // Lost meanwhile: the attempt finishes all the same (at least once).
                    self.write(until, PutMode::Update(etag)).await?;
                }
            }
        }
    }

    /// Lets go, so the next drain need not wait for the expiry. Best effort:
    /// a lease not let go expires.
    async fn release(&mut self) {
        let etag = self.etag.clone();
        let _ = self.write(0, PutMode::Update(etag)).await;
    }

    async fn write(&mut self, until_ms: u64, mode: PutMode) -> StoreResult<bool> {
        let record = LeaseRecord {
            holder: self.holder.clone(),
            until_ms,
        };
        // A lease lost in a crash only delays the next drain until it expires.
        match self.outbox.store.put_volatile(&self.key, to_json(&record), mode).await {
            Ok(meta) => {
                self.etag = meta.etag;
                self.until_ms = until_ms;
                Ok(true)
            }
            Err(StoreError::AlreadyExists | StoreError::PreconditionFailed) => Ok(false),
            Err(err) => Err(err),
        }
    }
}

fn to_json<T: Serialize>(value: &T) -> bytes::Bytes {
    // Records of strings and numbers: their JSON cannot fail.
    bytes::Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}
