//! The broker state: exchange bindings and queues, behind one lock that is never held across
//! an `.await`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::dead_letter::{DeadLetter, DeadLetterError};
use crate::envelope::Message;
use crate::publisher::PublishError;
use crate::subscriber::process::Settlement;
use crate::subscriber::{SubscribeError, SubscriptionConfig};
use crate::telemetry::Telemetry;
use crate::topic;

#[derive(Debug)]
pub(super) struct Stored {
    pub(super) message: Message,
    pub(super) redelivery_count: u32,
}

#[derive(Debug, Default)]
struct Queue {
    ready: VecDeque<Stored>,
    /// Delayed retries, by (due time, sequence number).
    delayed: BTreeMap<(Instant, u64), Stored>,
    /// Delivered, not yet settled: tag → (consumer, message).
    unacked: BTreeMap<u64, (u64, Stored)>,
    consumers: Vec<u64>,
}

impl Queue {
    fn len(&self) -> usize {
        self.ready.len() + self.delayed.len() + self.unacked.len()
    }
}

#[derive(Debug)]
struct Consumer {
    queue: String,
    prefetch: usize,
    unacked: usize,
    notify: Arc<Notify>,
    cancelled: bool,
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

pub(super) enum Take {
    Message { tag: u64, stored: Stored },
    Wait(Option<Instant>),
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
        let mut st = self.lock();
        if st.fail_next_publishes > 0 {
            st.fail_next_publishes -= 1;
            return Err(PublishError::ConnectionLost);
        }
        let mut targets: Vec<String> = st
            .bindings
            .iter()
            .filter(|(p, _)| topic::matches(p, message.routing_key()))
            .map(|(_, q)| q.clone())
            .collect();
        targets.sort_unstable();
        targets.dedup();
        if targets.is_empty() {
            return Err(PublishError::Unroutable {
                exchange: self.exchange.clone(),
                routing_key: message.routing_key().to_owned(),
            });
        }
        // All or nothing: refuse before enqueueing anywhere.
        for q in &targets {
            if st
                .queues
                .get(q)
                .is_some_and(|q| q.len() >= self.max_queue_length)
            {
                return Err(PublishError::QueueFull { queue: q.clone() });
            }
        }
        let mut to_wake = Vec::new();
        let mut message = Some(message);
        for (i, q) in targets.iter().enumerate() {
            if let Some(queue) = st.queues.get_mut(q) {
                // The last queue takes the message itself; the others a copy.
                let message = if i + 1 == targets.len() {
                    message.take()
                } else {
                    message.clone()
                };
                if let Some(message) = message {
                    queue.ready.push_back(Stored {
                        message,
                        redelivery_count: 0,
                    });
                }
                to_wake.extend(queue.consumers.iter().copied());
            }
        }
        wake(&st, to_wake);
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
            },
        );
        st.queues
            .entry(queue.to_owned())
            .or_default()
            .consumers
            .push(id);
        notify.notify_one();
        (id, notify)
    }

    /// Hands the next message to `consumer` if its prefetch allows, after moving due delayed
    /// retries to the back of the queue.
    pub(super) fn take(&self, consumer: u64) -> Take {
        let now = Instant::now();
        let mut st = self.lock();
        st.next_id += 1;
        let tag = st.next_id;
        let State {
            queues, consumers, ..
        } = &mut *st;
        let Some(c) = consumers.get_mut(&consumer) else {
            return Take::Wait(None);
        };
        let Some(queue) = queues.get_mut(&c.queue) else {
            return Take::Wait(None);
        };
        while let Some(entry) = queue.delayed.first_entry() {
            if entry.key().0 > now {
                break;
            }
            queue.ready.push_back(entry.remove());
        }
        let next_due = queue.delayed.keys().next().map(|k| k.0);
        if c.cancelled || c.unacked >= c.prefetch {
            return Take::Wait(next_due);
        }
        match queue.ready.pop_front() {
            Some(stored) => {
                c.unacked += 1;
                queue.unacked.insert(
                    tag,
                    (
                        consumer,
                        Stored {
                            message: stored.message.clone(),
                            redelivery_count: stored.redelivery_count,
                        },
                    ),
                );
                Take::Message { tag, stored }
            }
            None => Take::Wait(next_due),
        }
    }

    /// Carries out a settlement. A stale tag (the message was already requeued because its
    /// connection dropped) is ignored: the requeued copy is the live one.
    pub(super) fn settle(&self, consumer: u64, tag: u64, settlement: Settlement) -> bool {
        let mut st = self.lock();
        let State {
            queues,
            consumers,
            next_id,
            ..
        } = &mut *st;
        let Some(c) = consumers.get_mut(&consumer) else {
            return false;
        };
        let Some(queue) = queues.get_mut(&c.queue) else {
            return false;
        };
        if queue.unacked.remove(&tag).is_none() {
            return false;
        }
        c.unacked = c.unacked.saturating_sub(1);
        // The settling consumer has room again; nothing else changed for the others.
        let mut wake_list = vec![consumer];
        match settlement {
            Settlement::Ack => {}
            Settlement::Retry { delay, message } => {
                // A new due time: a consumer waiting may need to wake earlier.
                wake_list.clone_from(&queue.consumers);
                *next_id += 1;
                queue.delayed.insert(
                    (Instant::now() + delay, *next_id),
                    Stored {
                        message,
                        redelivery_count: 0,
                    },
                );
            }
            Settlement::DeadLetter { mut message } => {
                message.headers_mut().insert(
                    crate::dead_letter::headers::ORIGINAL_EXCHANGE.to_owned(),
                    self.exchange.clone(),
                );
                let dlq = queues.entry(format!("{}.dlq", c.queue)).or_default();
                wake_list.extend(dlq.consumers.iter().copied());
                dlq.ready.push_back(Stored {
                    message,
                    redelivery_count: 0,
                });
            }
        }
        wake(&st, wake_list);
        true
    }

    /// Requeues every message delivered to `consumer` and not settled, at the head of its
    /// queue in delivery order, marked redelivered.
    fn requeue_unacked(queue: &mut Queue, consumer: Option<u64>) -> usize {
        let tags: Vec<u64> = queue
            .unacked
            .iter()
            .filter(|(_, (c, _))| consumer.is_none_or(|id| id == *c))
            .map(|(t, _)| *t)
            .collect();
        for tag in tags.iter().rev() {
            if let Some((_, mut stored)) = queue.unacked.remove(tag) {
                stored.redelivery_count = stored.redelivery_count.saturating_add(1);
                queue.ready.push_front(stored);
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
        queue.consumers.retain(|id| *id != consumer);
        let n = Self::requeue_unacked(queue, Some(consumer));
        let wake_list = queue.consumers.clone();
        wake(&st, wake_list);
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
            c.notify.notify_one();
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
            .map(|s| DeadLetter {
                message: s.message.clone(),
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
        let moved: Vec<Stored> = dlq.ready.drain(..n).collect();
        let target = st.queues.get_mut(queue).ok_or_else(unknown)?;
        for mut stored in moved {
            stored
                .message
                .headers_mut()
                .retain(|k, _| !k.starts_with("messaging-"));
            target.ready.push_back(stored);
        }
        let wake_list = target.consumers.clone();
        wake(&st, wake_list);
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
            .position(|s| s.message.message_id() == message_id)
        else {
            return Ok(false);
        };
        let Some(mut stored) = dlq.ready.remove(at) else {
            return Ok(false);
        };
        if replay {
            stored
                .message
                .headers_mut()
                .retain(|k, _| !k.starts_with("messaging-"));
            let target = st.queues.get_mut(queue).ok_or_else(unknown)?;
            target.ready.push_back(stored);
            let wake_list = target.consumers.clone();
            wake(&st, wake_list);
        }
        Ok(true)
    }
}

fn wake(st: &State, consumers: Vec<u64>) {
    for id in consumers {
        if let Some(c) = st.consumers.get(&id) {
            c.notify.notify_one();
        }
    }
}
