//! The broker state: exchange bindings and queues, behind one lock that is never held across
//! an `.await`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;
use tokio::time::Instant;

use super::blocks::Blocks;
use crate::dead_letter::{DeadLetter, DeadLetterError};
use crate::envelope::Message;
use crate::publisher::PublishError;
use crate::subscriber::process::Settlement;
use crate::subscriber::{SubscribeError, SubscriptionConfig};
use crate::telemetry::Telemetry;
use crate::topic;

/// Hashes a delivery tag. Tags are unique and counted up, so one multiplication (Fibonacci
/// hashing) spreads them well; the default SipHash costs more than the rest of a lookup.
#[derive(Debug, Default, Clone, Copy)]
struct TagHasher(u64);

impl Hasher for TagHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` tags are hashed; this keeps any other input correct, if slow.
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// A message delivered or waiting for a retry. The message is shared: the unsettled copy
/// and the handler's deliveries all point at one allocation.
#[derive(Debug)]
pub(super) struct Stored {
    pub(super) message: Arc<Message>,
    pub(super) redelivery_count: u32,
}

/// A message ready in a queue.
#[derive(Debug)]
struct Ready {
    message: Payload,
    redelivery_count: u32,
}

/// A ready message as published to one queue, moved in without an allocation, or shared:
/// fanned out to several queues, or back from a consumer.
#[derive(Debug)]
enum Payload {
    Owned(Message),
    Shared(Arc<Message>),
}

impl Payload {
    fn get(&self) -> &Message {
        match self {
            Self::Owned(m) => m,
            Self::Shared(m) => m,
        }
    }

    fn get_mut(&mut self) -> &mut Message {
        match self {
            Self::Owned(m) => m,
            Self::Shared(m) => Arc::make_mut(m),
        }
    }

    fn share(self) -> Arc<Message> {
        match self {
            Self::Owned(m) => Arc::new(m),
            Self::Shared(m) => m,
        }
    }
}

impl From<Stored> for Ready {
    fn from(stored: Stored) -> Self {
        Self {
            message: Payload::Shared(stored.message),
            redelivery_count: stored.redelivery_count,
        }
    }
}

impl Ready {
    const fn new(message: Payload) -> Self {
        Self {
            message,
            redelivery_count: 0,
        }
    }
}

#[derive(Debug, Default)]
struct Queue {
    ready: Blocks<Ready>,
    /// Delayed retries, by (due time, sequence number).
    delayed: BTreeMap<(Instant, u64), Stored>,
    /// Delivered, not yet settled: tag → (consumer, message).
    unacked: HashMap<u64, (u64, Stored), BuildHasherDefault<TagHasher>>,
    /// The consumers and their wake-up signals.
    consumers: Vec<(u64, Arc<Notify>)>,
    /// A consumer found nothing ready with room to take more: the next message wakes the
    /// consumers. Publishing to a queue whose consumers are busy wakes nobody.
    idle: bool,
}

impl Queue {
    fn len(&self) -> usize {
        self.ready.len() + self.delayed.len() + self.unacked.len()
    }

    /// Wakes every consumer of the queue.
    fn wake_all(&self) {
        for (_, notify) in &self.consumers {
            notify.notify_waiters();
        }
    }

    /// If a consumer waits for a message, adds the signal of every consumer to `wake`: each
    /// consumer wakes one of its runners, which wakes another if it leaves work behind.
    fn wake_idle(&mut self, wake: &mut Vec<Arc<Notify>>) {
        if std::mem::take(&mut self.idle) {
            wake.extend(self.consumers.iter().map(|(_, notify)| notify.clone()));
        }
    }
}

#[derive(Debug)]
struct Consumer {
    queue: String,
    prefetch: usize,
    unacked: usize,
    notify: Arc<Notify>,
    cancelled: bool,
    /// A take was held back by the prefetch: the next settlement wakes the consumer.
    wants_room: bool,
}

#[derive(Debug, Default)]
struct State {
    bindings: Vec<(String, String)>,
    queues: HashMap<String, Queue>,
    consumers: HashMap<u64, Consumer>,
    fail_next_publishes: usize,
    next_id: u64,
}

/// Counts of one queue's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct QueueStats {
    /// Waiting for a consumer.
    pub ready: usize,
    /// Waiting for a delayed retry to come due.
    pub delayed: usize,
    /// Delivered to a consumer and not yet settled.
    pub unacked: usize,
}

/// What a [`Inner::take`] handed out.
pub(super) struct Taken {
    /// How many messages it appended.
    pub(super) count: usize,
    /// When the earliest delayed retry of the queue comes due.
    pub(super) next_due: Option<Instant>,
    /// Whether messages are left that the consumer's prefetch would allow: a runner that
    /// took all it could hands them on to another runner.
    pub(super) more: bool,
    /// Emptied blocks of the queue, freed when this is dropped, after the lock.
    _emptied: Vec<VecDeque<Ready>>,
}

/// The queues a routing key goes to, kept for a run of messages with that key in one
/// locked batch.
#[derive(Default)]
struct Route {
    queues: Vec<String>,
}

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) exchange: String,
    pub(super) telemetry: Telemetry,
    pub(super) max_queue_length: usize,
    state: Mutex<State>,
}

impl Inner {
    pub(super) fn new(exchange: String, max_queue_length: usize) -> Self {
        Self {
            telemetry: Telemetry::new("memory", exchange.clone()),
            exchange,
            max_queue_length,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // No code path panics while holding the lock; recover the data if one ever did.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn declare(&self, config: &SubscriptionConfig) -> Result<(), SubscribeError> {
        let queue = config.queue();
        let mut st = self.lock();
        st.queues.entry(queue.clone()).or_default();
        st.queues.entry(config.dead_letter_queue()).or_default();
        for key in config.routing_keys() {
            if !st.bindings.iter().any(|(p, q)| p == key && *q == queue) {
                st.bindings.push((key.clone(), queue.clone()));
            }
        }
        Ok(())
    }

    pub(super) fn publish(&self, message: Message) -> Result<(), PublishError> {
        let mut wake = Vec::new();
        let result = self.publish_locked(&mut self.lock(), &mut None, message, &mut wake);
        notify_one(wake);
        result
    }

    /// Publishes `messages` under one lock, each as [`publish`](Self::publish) would, and
    /// appends their results to `results` in order. Each message comes with whether its
    /// routing key is the previous one's: comparing keys before taking the lock keeps the
    /// reads of the messages out of the time the lock is held.
    pub(super) fn publish_all(
        &self,
        messages: impl Iterator<Item = (Message, bool)>,
        results: &mut Vec<Result<(), PublishError>>,
    ) {
        let mut wake = Vec::new();
        let mut st = self.lock();
        let mut route = None;
        for (message, same_key) in messages {
            if !same_key {
                route = None;
            }
            results.push(self.publish_locked(&mut st, &mut route, message, &mut wake));
        }
        drop(st);
        notify_one(wake);
    }

    /// Publishes `message` to the queues of `route`, first finding them when `route` is
    /// `None`, and adds the consumers to wake once the lock is released to `wake`.
    fn publish_locked(
        &self,
        st: &mut State,
        route: &mut Option<Route>,
        message: Message,
        wake: &mut Vec<Arc<Notify>>,
    ) -> Result<(), PublishError> {
        if st.fail_next_publishes > 0 {
            st.fail_next_publishes -= 1;
            return Err(PublishError::ConnectionLost);
        }
        let route = route.get_or_insert_with(|| {
            let mut route = Route::default();
            route.queues.extend(
                st.bindings
                    .iter()
                    .filter(|(p, _)| topic::matches(p, message.routing_key()))
                    .map(|(_, q)| q.clone()),
            );
            route.queues.sort_unstable();
            route.queues.dedup();
            route
        });
        if route.queues.is_empty() {
            return Err(PublishError::Unroutable {
                exchange: self.exchange.clone(),
                routing_key: message.routing_key().to_owned(),
            });
        }
        // All or nothing: refuse before enqueueing anywhere.
        for q in &route.queues {
            if st
                .queues
                .get(q)
                .is_some_and(|q| q.len() >= self.max_queue_length)
            {
                return Err(PublishError::QueueFull { queue: q.clone() });
            }
        }
        // One queue takes the message itself; several share it.
        let mut payload = match route.queues.len() {
            1 => Some(Payload::Owned(message)),
            _ => Some(Payload::Shared(Arc::new(message))),
        };
        for q in &route.queues {
            if let Some(queue) = st.queues.get_mut(q) {
                let message = match &payload {
                    Some(Payload::Shared(m)) => Payload::Shared(m.clone()),
                    _ => match payload.take() {
                        Some(message) => message,
                        None => continue,
                    },
                };
                queue.ready.push_back(Ready::new(message));
                queue.wake_idle(wake);
            }
        }
        Ok(())
    }

    pub(super) fn add_consumer(&self, queue: &str, prefetch: usize) -> (u64, Arc<Notify>) {
        let mut st = self.lock();
        st.next_id += 1;
        let id = st.next_id;
        let notify = Arc::new(Notify::new());
        st.consumers.insert(
            id,
            Consumer {
                queue: queue.to_owned(),
                prefetch,
                unacked: 0,
                notify: notify.clone(),
                cancelled: false,
                wants_room: false,
            },
        );
        st.queues
            .entry(queue.to_owned())
            .or_default()
            .consumers
            .push((id, notify.clone()));
        (id, notify)
    }

    /// Appends to `out` up to `max` messages for `consumer`, as many as its prefetch allows,
    /// after moving due delayed retries to the back of the queue.
    ///
    /// When it leaves the queue empty, or hands out fewer than `max` for the prefetch, it
    /// records that, so that the next message or settlement wakes one of the consumer's
    /// runners: create the [`Notify::notified`] future *before* calling this, and wait on it
    /// afterwards.
    pub(super) fn take(&self, consumer: u64, max: usize, out: &mut Vec<(u64, Stored)>) -> Taken {
        let now = Instant::now();
        let mut st = self.lock();
        let State {
            queues,
            consumers,
            next_id,
            ..
        } = &mut *st;
        let nothing = Taken {
            count: 0,
            next_due: None,
            more: false,
            _emptied: Vec::new(),
        };
        let Some(c) = consumers.get_mut(&consumer) else {
            return nothing;
        };
        let Some(queue) = queues.get_mut(&c.queue) else {
            return nothing;
        };
        while let Some(entry) = queue.delayed.first_entry() {
            if entry.key().0 > now {
                break;
            }
            queue.ready.push_back(entry.remove().into());
        }
        let next_due = queue.delayed.keys().next().map(|k| k.0);
        if c.cancelled {
            return Taken {
                next_due,
                ..nothing
            };
        }
        let n = max
            .min(c.prefetch.saturating_sub(c.unacked))
            .min(queue.ready.len());
        for _ in 0..n {
            let Some(ready) = queue.ready.pop_front() else {
                break;
            };
            *next_id += 1;
            let tag = *next_id;
            let stored = Stored {
                message: ready.message.share(),
                redelivery_count: ready.redelivery_count,
            };
            let copy = Stored {
                message: stored.message.clone(),
                redelivery_count: stored.redelivery_count,
            };
            queue.unacked.insert(tag, (consumer, copy));
            out.push((tag, stored));
        }
        c.unacked += n;
        // Even when this runner is now full, another may be waiting.
        if queue.ready.is_empty() {
            queue.idle = true;
        }
        if n < max && c.unacked >= c.prefetch {
            c.wants_room = true;
        }
        Taken {
            count: n,
            next_due,
            more: !queue.ready.is_empty() && c.unacked < c.prefetch,
            _emptied: queue.ready.take_emptied(),
        }
    }

    /// Carries out the settlements in `settled` (tag, settlement), emptying it. A stale tag
    /// (the message was already requeued because its connection dropped) is ignored: the
    /// requeued copy is the live one. The messages acknowledged go to `released`, for the
    /// caller to drop after the lock is released.
    pub(super) fn settle(
        &self,
        consumer: u64,
        settled: &mut Vec<(u64, Settlement)>,
        released: &mut Vec<Stored>,
    ) {
        let mut st = self.lock();
        let State {
            queues,
            consumers,
            next_id,
            ..
        } = &mut *st;
        let Some(c) = consumers.get_mut(&consumer) else {
            settled.clear();
            return;
        };
        let Some(queue) = queues.get_mut(&c.queue) else {
            settled.clear();
            return;
        };
        let now = Instant::now();
        let mut freed = 0;
        let mut retried = false;
        // Dead letters stay in `settled` for the second pass, which holds the DLQ instead.
        settled.retain_mut(|(tag, settlement)| {
            let Some((_, stored)) = queue.unacked.remove(tag) else {
                return false;
            };
            freed += 1;
            released.push(stored);
            match std::mem::replace(settlement, Settlement::Ack) {
                Settlement::Ack => false,
                Settlement::Retry { delay, message } => {
                    retried = true;
                    *next_id += 1;
                    queue.delayed.insert(
                        (now + delay, *next_id),
                        Stored {
                            message: Arc::new(message),
                            redelivery_count: 0,
                        },
                    );
                    false
                }
                dead_letter @ Settlement::DeadLetter { .. } => {
                    *settlement = dead_letter;
                    true
                }
            }
        });
        c.unacked = c.unacked.saturating_sub(freed);
        if retried {
            // A new due time: a consumer waiting may need to wake earlier.
            queue.wake_all();
        }
        if freed > 0 && std::mem::take(&mut c.wants_room) {
            c.notify.notify_one();
        }
        if settled.is_empty() {
            return;
        }
        let dlq = queues.entry(format!("{}.dlq", c.queue)).or_default();
        for (_, settlement) in settled.drain(..) {
            if let Settlement::DeadLetter { mut message } = settlement {
                message.headers_mut().insert(
                    crate::dead_letter::headers::ORIGINAL_EXCHANGE.to_owned(),
                    self.exchange.clone(),
                );
                dlq.ready.push_back(Ready::new(Payload::Owned(message)));
            }
        }
        if std::mem::take(&mut dlq.idle) {
            dlq.wake_all();
        }
    }

    /// Requeues every message delivered to `consumer` and not settled, at the head of its
    /// queue in delivery order, marked redelivered.
    fn requeue_unacked(queue: &mut Queue, consumer: Option<u64>) -> usize {
        let mut tags: Vec<u64> = queue
            .unacked
            .iter()
            .filter(|(_, (c, _))| consumer.is_none_or(|id| id == *c))
            .map(|(t, _)| *t)
            .collect();
        // Tags grow with every delivery: their order is the delivery order.
        tags.sort_unstable();
        for tag in tags.iter().rev() {
            if let Some((_, mut stored)) = queue.unacked.remove(tag) {
                stored.redelivery_count = stored.redelivery_count.saturating_add(1);
                queue.ready.push_front(stored.into());
            }
        }
        tags.len()
    }

    pub(super) fn cancel_consumer(&self, consumer: u64) {
        if let Some(c) = self.lock().consumers.get_mut(&consumer) {
            c.cancelled = true;
        }
    }

    /// Removes a consumer and requeues what it had not settled.
    pub(super) fn remove_consumer(&self, consumer: u64) -> usize {
        let mut st = self.lock();
        let Some(c) = st.consumers.remove(&consumer) else {
            return 0;
        };
        let Some(queue) = st.queues.get_mut(&c.queue) else {
            return 0;
        };
        queue.consumers.retain(|(id, _)| *id != consumer);
        let n = Self::requeue_unacked(queue, Some(consumer));
        if n > 0 {
            queue.wake_all();
        }
        n
    }

    /// Simulates every connection dropping: all unsettled messages go back to their queues,
    /// marked redelivered; later settlements of them are ignored. Consumers reconnect at once.
    pub(super) fn drop_connections(&self) -> usize {
        let mut st = self.lock();
        let mut n = 0;
        for queue in st.queues.values_mut() {
            n += Self::requeue_unacked(queue, None);
        }
        for c in st.consumers.values_mut() {
            c.unacked = 0;
            c.wants_room = false;
            c.notify.notify_waiters();
            self.telemetry.counters.reconnected();
        }
        n
    }

    pub(super) fn fail_next_publishes(&self, n: usize) {
        self.lock().fail_next_publishes = n;
    }

    pub(super) fn stats(&self, queue: &str) -> Option<QueueStats> {
        self.lock().queues.get(queue).map(|q| QueueStats {
            ready: q.ready.len(),
            delayed: q.delayed.len(),
            unacked: q.unacked.len(),
        })
    }

    pub(super) fn list_dead_letters(
        &self,
        queue: &str,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, DeadLetterError> {
        let st = self.lock();
        let dlq = st
            .queues
            .get(&format!("{queue}.dlq"))
            .filter(|_| st.queues.contains_key(queue))
            .ok_or_else(|| DeadLetterError::UnknownQueue {
                queue: queue.to_owned(),
            })?;
        Ok(dlq
            .ready
            .iter()
            .take(limit)
            .map(|r| DeadLetter {
                message: r.message.get().clone(),
            })
            .collect())
    }

    pub(super) fn replay_dead_letters(
        &self,
        queue: &str,
        limit: usize,
    ) -> Result<usize, DeadLetterError> {
        let mut st = self.lock();
        let unknown = || DeadLetterError::UnknownQueue {
            queue: queue.to_owned(),
        };
        if !st.queues.contains_key(queue) {
            return Err(unknown());
        }
        let dlq = st
            .queues
            .get_mut(&format!("{queue}.dlq"))
            .ok_or_else(unknown)?;
        let n = limit.min(dlq.ready.len());
        let moved: Vec<Ready> = std::iter::from_fn(|| dlq.ready.pop_front())
            .take(n)
            .collect();
        let target = st.queues.get_mut(queue).ok_or_else(unknown)?;
        for mut ready in moved {
            ready
                .message
                .get_mut()
                .headers_mut()
                .retain(|k, _| !k.starts_with("messaging-"));
            target.ready.push_back(ready);
        }
        target.wake_all();
        Ok(n)
    }
}

impl Inner {
    /// Removes the dead letter `message_id` of `queue`; when `replay`, puts it back in
    /// `queue` without its `messaging-*` headers.
    pub(super) fn take_dead_letter(
        &self,
        queue: &str,
        message_id: &str,
        replay: bool,
    ) -> Result<bool, DeadLetterError> {
        let mut st = self.lock();
        let unknown = || DeadLetterError::UnknownQueue {
            queue: queue.to_owned(),
        };
        if !st.queues.contains_key(queue) {
            return Err(unknown());
        }
        let dlq = st
            .queues
            .get_mut(&format!("{queue}.dlq"))
            .ok_or_else(unknown)?;
        let Some(at) = dlq
            .ready
            .iter()
            .position(|r| r.message.get().message_id() == message_id)
        else {
            return Ok(false);
        };
        let Some(mut ready) = dlq.ready.remove(at) else {
            return Ok(false);
        };
        if replay {
            ready
                .message
                .get_mut()
                .headers_mut()
                .retain(|k, _| !k.starts_with("messaging-"));
            let target = st.queues.get_mut(queue).ok_or_else(unknown)?;
            target.ready.push_back(ready);
            target.wake_all();
        }
        Ok(true)
    }
}

/// Wakes one runner of each consumer in `wake`.
fn notify_one(wake: Vec<Arc<Notify>>) {
    for notify in wake {
        notify.notify_one();
    }
}
