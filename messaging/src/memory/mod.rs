//! The in-process broker: a topic exchange with durable queues and real delivery semantics.
//!
//! It is the embedded default for applications that run in one process and for tests, and it
//! passes the same [conformance suite](crate::testing) as a RabbitMQ backend:
//!
//! - queues are durable for the broker's lifetime: a message published while no consumer runs
//!   waits for one (declare the queue first with [`Subscriber::declare`]);
//! - a consumer holds at most `prefetch` unsettled messages and runs at most `concurrency`
//!   handlers; messages are acknowledged only after their handler succeeds;
//! - retries wait on `tokio::time`, so they work under paused time in tests;
//! - dead letters go to `{queue}.dlq` with the failure headers;
//! - [`MemoryBroker::drop_connections`] and [`MemoryBroker::fail_next_publishes`] inject
//!   faults: unsettled messages are redelivered, publishes fail as retryable.
//!
//! # Memory use
//!
//! Each queue holds at most `max_queue_length` messages (ready, delayed and unsettled
//! together; [`PublishError::QueueFull`] beyond that, for the whole publish). Dead-letter
//! queues are not capped: they grow only as messages fail, and [`DeadLetters::replay`]
//! empties them. A message published to one queue waits there by value, in blocks of 64
//! that are freed as the queue drains; a message fanned out to several queues is one shared
//! allocation. Once delivered, the message is shared ([`Arc`]) between the unsettled copy
//! kept for redelivery and the handler's [`Delivery`](crate::subscriber::Delivery): it is
//! copied only when a failure writes its headers while a handler still holds it.
//!
//! # How a consumer runs its handlers
//!
//! A subscription's handlers run as futures inside a few runner tasks, one per worker
//! thread of the runtime at most (one on a current-thread runtime), not as a task per
//! message. Each runner has its share of `concurrency` (`concurrency / runners`, the
//! remainder spread one each), takes as many ready messages as it has free slots under one
//! lock, polls their handlers side by side, and settles every handler that finished under
//! one lock. So:
//!
//! - at most `concurrency` handlers of a subscription run at once, as before, and the
//!   consumer takes only messages it can start at once: `queue_stats().unacked` never
//!   exceeds `concurrency` (RabbitMQ prefetches up to `prefetch` to hide the network round
//!   trip; in process there is none to hide);
//! - handlers of one runner share its thread: a handler that blocks the thread (heavy
//!   computation without an `.await`, blocking I/O) holds up the others of its runner, so
//!   move such work to [`tokio::task::spawn_blocking`];
//! - a runner whose handlers never wait still lets its thread's other tasks run after every
//!   1 024 messages;
//! - with [ordered lanes](crate::subscriber::SubscriptionConfigBuilder::ordered_lanes), one
//!   task takes messages (up to `prefetch`) and hands each to its lane's task, which runs them
//!   one at a time within the shared `concurrency`.
//!
//! ```
//! use sinew_messaging::memory::MemoryBroker;
//! use sinew_messaging::subscriber::{Subscriber, SubscriptionConfig};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let broker = MemoryBroker::builder().max_queue_length(10_000).build();
//! let config = SubscriptionConfig::builder("billing", "orders").routing_key("order.#").build()?;
//! broker.subscriber().declare(&config).await?;
//! assert_eq!(broker.queue_stats("billing.orders").map(|s| s.ready), Some(0));
//! # Ok(()) }
//! ```

mod blocks;
mod broker;
mod consumer;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tracing::instrument::WithSubscriber;

use self::broker::Inner;
pub use self::broker::QueueStats;
use self::consumer::Ctx;
use crate::dead_letter::{DeadLetter, DeadLetterError, DeadLetters};
use crate::envelope::Message;
use crate::metrics::Metrics;
use crate::publisher::{PublishError, Publisher};
use crate::subscriber::{
    Handler, ShutdownReport, SubscribeError, Subscriber, Subscription, SubscriptionConfig,
};
use crate::telemetry;

const DEFAULT_EXCHANGE: &str = "domain-events";
const DEFAULT_MAX_QUEUE_LENGTH: usize = 1_000_000;
/// How many messages of a [`MemoryPublisher::publish_batch`] are enqueued under one lock.
const PUBLISH_CHUNK: usize = 128;

/// An in-process topic exchange and its queues.
///
/// # Clone
///
/// Clones share the same exchange and queues.
#[derive(Debug, Clone)]
pub struct MemoryBroker {
    inner: Arc<Inner>,
}

impl Default for MemoryBroker {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBroker {
    /// A broker with the [default settings](MemoryBrokerBuilder#default).
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder.
    pub fn builder() -> MemoryBrokerBuilder {
        MemoryBrokerBuilder {
            exchange: DEFAULT_EXCHANGE.to_owned(),
            max_queue_length: DEFAULT_MAX_QUEUE_LENGTH,
        }
    }

    /// A publisher to this broker's exchange.
    pub fn publisher(&self) -> MemoryPublisher {
        MemoryPublisher {
            inner: self.inner.clone(),
        }
    }

    /// A subscriber to this broker's queues.
    pub fn subscriber(&self) -> MemorySubscriber {
        MemorySubscriber {
            inner: self.inner.clone(),
        }
    }

    /// The dead-letter API of this broker.
    pub fn dead_letters(&self) -> MemoryDeadLetters {
        MemoryDeadLetters {
            inner: self.inner.clone(),
        }
    }

    /// The broker's counters: published, confirmed, returned, consumed, retried,
    /// dead-lettered, and reconnects (consumers re-attached after
    /// [`drop_connections`](Self::drop_connections)).
    pub fn metrics(&self) -> Metrics {
        self.inner.telemetry.counters.snapshot()
    }

    /// The message counts of `queue`, if it exists.
    pub fn queue_stats(&self, queue: &str) -> Option<QueueStats> {
        self.inner.stats(queue)
    }

    /// Fault injection: the next `n` publishes fail with [`PublishError::ConnectionLost`]
    /// and enqueue nothing.
    pub fn fail_next_publishes(&self, n: usize) {
        self.inner.fail_next_publishes(n);
    }

    /// Fault injection: every connection drops. All unsettled messages return to the head of
    /// their queues marked redelivered; settling them afterwards is a no-op; consumers
    /// reconnect at once. Returns how many messages were requeued.
    pub fn drop_connections(&self) -> usize {
        self.inner.drop_connections()
    }
}

/// Builder of [`MemoryBroker`].
///
/// # Default
///
/// Exchange `domain-events`; at most 1 000 000 messages per queue.
#[derive(Debug, Clone)]
pub struct MemoryBrokerBuilder {
    exchange: String,
    max_queue_length: usize,
}

impl MemoryBrokerBuilder {
    /// The exchange name reported in errors and dead-letter headers.
    pub fn exchange(mut self, name: impl Into<String>) -> Self {
        self.exchange = name.into();
        self
    }

    /// The most messages a queue holds; zero is read as one.
    pub const fn max_queue_length(mut self, n: usize) -> Self {
        self.max_queue_length = n;
        self
    }

    /// The broker.
    pub fn build(self) -> MemoryBroker {
        MemoryBroker {
            inner: Arc::new(Inner::new(self.exchange, self.max_queue_length.max(1))),
        }
    }
}

/// Publishes to a [`MemoryBroker`]. `publish` resolves once the message is in every bound
/// queue.
#[derive(Debug, Clone)]
pub struct MemoryPublisher {
    inner: Arc<Inner>,
}

impl Publisher for MemoryPublisher {
    async fn publish(&self, message: Message) -> Result<(), PublishError> {
        let inner = &self.inner;
        telemetry::publish(
            &inner.telemetry,
            message,
            |m| async move { inner.publish(m) },
        )
        .await
    }

    /// Each message gets its own span and result, as with [`publish`](Self::publish), but
    /// they are enqueued 128 at a time under one lock, waking an idle consumer
    /// once per chunk rather than once per message.
    async fn publish_batch(&self, messages: Vec<Message>) -> Vec<Result<(), PublishError>> {
        let telemetry = &self.inner.telemetry;
        let mut results = Vec::with_capacity(messages.len());
        let mut spans = Vec::with_capacity(messages.len().min(PUBLISH_CHUNK));
        let mut chunk = Vec::with_capacity(messages.len().min(PUBLISH_CHUNK));
        let mut messages = messages.into_iter();
        loop {
            for mut m in messages.by_ref().take(PUBLISH_CHUNK) {
                spans.push(telemetry::producer_span(telemetry, &mut m));
                // The first of a chunk finds its route afresh: bindings may have changed.
                let same_key = chunk
                    .last()
                    .is_some_and(|(k, _): &(Message, bool)| k.routing_key() == m.routing_key());
                chunk.push((m, same_key));
            }
            if chunk.is_empty() {
                break;
            }
            let first = results.len();
            self.inner.publish_all(chunk.drain(..), &mut results);
            for (span, result) in spans.drain(..).zip(&results[first..]) {
                telemetry::published(telemetry, &span, result);
            }
        }
        results
    }
}

/// Consumes from a [`MemoryBroker`]'s queues.
#[derive(Debug, Clone)]
pub struct MemorySubscriber {
    inner: Arc<Inner>,
}

impl Subscriber for MemorySubscriber {
    type Subscription = MemorySubscription;

    async fn declare(&self, config: &SubscriptionConfig) -> Result<(), SubscribeError> {
        self.inner.declare(config)
    }

    async fn subscribe<H: Handler>(
        &self,
        config: SubscriptionConfig,
        handler: H,
    ) -> Result<MemorySubscription, SubscribeError> {
        self.inner.declare(&config)?;
        let queue = config.queue();
        let (consumer, notify) = self
            .inner
            .add_consumer(&queue, usize::from(config.prefetch()));
        let ctx = Arc::new(Ctx {
            broker: self.inner.clone(),
            permits: Semaphore::new(config.concurrency()),
            handler,
            config,
            queue: queue.as_str().into(),
            consumer,
            notify,
            stopping: AtomicBool::new(false),
        });
        let (stop, stop_rx) = watch::channel(None);
        // The consumer's tasks keep the `tracing` subscriber of the code that subscribed.
        let task = tokio::spawn(consumer::run(ctx, stop_rx).with_current_subscriber());
        Ok(MemorySubscription { stop, task, queue })
    }
}

/// A running consumer of a [`MemoryBroker`] queue.
///
/// Dropping it stops the consumer without waiting for its handlers; their messages are
/// requeued.
#[derive(Debug)]
pub struct MemorySubscription {
    stop: watch::Sender<Option<Duration>>,
    task: JoinHandle<ShutdownReport>,
    queue: String,
}

impl MemorySubscription {
    /// The queue consumed.
    pub fn queue(&self) -> &str {
        &self.queue
    }
}

impl Subscription for MemorySubscription {
    async fn shutdown(self, deadline: Duration) -> ShutdownReport {
        let _ = self.stop.send(Some(deadline));
        self.task.await.unwrap_or(ShutdownReport {
            drained: false,
            requeued: 0,
        })
    }
}

/// Lists and replays a [`MemoryBroker`]'s dead letters.
#[derive(Debug, Clone)]
pub struct MemoryDeadLetters {
    inner: Arc<Inner>,
}

impl DeadLetters for MemoryDeadLetters {
    async fn list(&self, queue: &str, limit: usize) -> Result<Vec<DeadLetter>, DeadLetterError> {
        self.inner.list_dead_letters(queue, limit)
    }

    async fn replay(&self, queue: &str, limit: usize) -> Result<usize, DeadLetterError> {
        self.inner.replay_dead_letters(queue, limit)
    }

    async fn replay_message(&self, queue: &str, message_id: &str) -> Result<bool, DeadLetterError> {
        self.inner.take_dead_letter(queue, message_id, true)
    }

    async fn discard_message(
        &self,
        queue: &str,
        message_id: &str,
    ) -> Result<bool, DeadLetterError> {
        self.inner.take_dead_letter(queue, message_id, false)
    }
}
