//! The RabbitMQ backend (lapin): confirmed, pipelined publishing to a durable topic exchange,
//! and durable quorum queues per subscription (or classic ones, see [`QueueType`]) with TTL
//! retry tiers and a dead-letter queue.
//!
//! [`RabbitBroker`] opens two connections, one to publish and one to consume, so a slow
//! consumer never holds up publisher confirms. It implements the crate's traits exactly as
//! the [memory backend](crate::memory) does and passes the same
//! [conformance suite](crate::testing):
//!
//! - **Publishing** ([`RabbitPublisher`]): a channel in confirm mode; every message is
//!   published `mandatory` and persistent (`delivery_mode = 2`) with its message ID, content
//!   type, app ID and headers (as AMQP long strings). `publish` resolves on the broker's
//!   `basic.ack`; up to [`confirm_window`](RabbitBrokerBuilder::confirm_window) publishes are
//!   in flight at once (a semaphore), never one at a time. A `basic.return` is
//!   [`PublishError::Unroutable`] for the publish it belongs to (matched by exchange, routing
//!   key and message ID, not by whichever confirm lapin hands it to), a `basic.nack` the
//!   retryable [`PublishError::Nacked`].
//! - **Topology**, declared idempotently by [`Subscriber::declare`] and
//!   [`Subscriber::subscribe`] (again after a consumer reconnects): the durable topic
//!   exchange (at connect); per subscription the quorum queue `{service}.{subscription}`
//!   bound by its routing keys (with `x-delivery-limit`, see below), the quorum queue
//!   `{queue}.dlq` (both classic with the broker's
//!   [`queue_type`](RabbitBrokerBuilder::queue_type), or one subscriber's
//!   [`queue_type`](RabbitSubscriber::queue_type)), and
//!   one classic queue
//!   `{queue}.retry.{n}` per configured delay with `x-message-ttl` = that delay,
//!   `x-dead-letter-exchange = ""` and `x-dead-letter-routing-key = {queue}`, so expired
//!   messages return to the subscription queue without any plugin. A delay a handler asks for
//!   that is not a configured tier gets its own queue `{queue}.retry.{ms}ms`. A queue that
//!   exists with other arguments fails with [`SubscribeError::TopologyMismatch`] naming the
//!   queue and the first differing argument the broker reports. Only what the broker reports
//!   is caught: RabbitMQ 3.10, for one, accepts a retry-tier declaration (classic arguments)
//!   over an existing quorum queue of the same name without a 406.
//! - **Delivery limit**: the subscription queue has `x-delivery-limit`
//!   ([`delivery_limit`](RabbitBrokerBuilder::delivery_limit), 20 by default) and
//!   dead-letters through the default exchange into `{queue}.dlq` (`at-least-once`
//!   dead-lettering, so with `x-overflow = reject-publish`). The crate's retry policy never
//!   requeues a failed message, so only messages that keep coming back unsettled (a handler
//!   that crashes the process, a connection that keeps dropping mid-handler) reach it; they
//!   land in the dead-letter queue with error type `delivery-limit` instead of looping.
//!   The dead-letter queue has no limit of its own: RabbitMQ 4's default limit of 20 on
//!   quorum queues would apply to it, so do not list a dead-letter queue more than that
//!   many times on RabbitMQ 4 without replaying it.
//! - **Consuming** ([`RabbitSubscription`]): `basic.qos(prefetch)` per consumer, at most
//!   `concurrency` handlers at once (or one sequential lane per aggregate-ID hash), and the
//!   shared failure policy. Its settlement is carried out on the channel that received the
//!   delivery: `Ack` acks; `Retry` publishes the message (confirmed) through the default
//!   exchange to its retry tier, then acks; `DeadLetter` publishes it (confirmed) to
//!   `{queue}.dlq`, then acks. If that publish fails, the delivery is rejected with requeue
//!   after a pause of one second (so a persistent failure cannot hot-loop), never acked. The routing key travels in the `messaging-routing-key` header meanwhile and
//!   is restored before the handler sees the message.
//! - **Reconnecting consumers**: when the consume connection drops, each subscription opens
//!   a new one (backoff with jitter, 100 ms doubling to 5 s), re-declares its topology,
//!   re-applies `basic.qos` and consumes again. Unsettled messages come back marked
//!   redelivered; settling a delivery of the dead connection is a no-op.
//! - **Shutdown**: `basic.cancel`, then in-flight handlers get the deadline, then the channel
//!   closes and every unsettled message returns to the queue.
//! - **Dead letters** ([`RabbitDeadLetters`]): listed with `basic.get` (and returned to the
//!   queue), replayed by a confirmed publish to `{queue}` through the default exchange, with
//!   the original routing key kept, then acked.
//!
//! - **Publishing through an outage**: a supervisor task owns the publish connection. When
//!   it drops (or a publish reports its channel broken), the supervisor reconnects with
//!   backoff and jitter (100 ms doubling to 5 s), puts the new channel in confirm mode and
//!   re-declares the exchange. Meanwhile a publish waits, for up to its deadline
//!   ([`publish_deadline`](RabbitBrokerBuilder::publish_deadline), 30 s by default, or per
//!   call: [`RabbitPublisher::deadline`], [`RabbitPublisher::publish_within`]), holding a
//!   place in a bounded buffer ([`outage_buffer`](RabbitBrokerBuilder::outage_buffer),
//!   10 000 by default). Nothing is dropped silently and memory stays bounded: when the
//!   deadline passes the publish fails with [`PublishError::DeadlineExceeded`], when the
//!   buffer is full with [`PublishError::BufferFull`], both retryable. A publish whose
//!   confirm was lost with the connection is published again, with the same message ID, on
//!   the next one, up to ten times (then the retryable [`PublishError::ConnectionLost`]), so
//!   at least once; consumers deduplicate with an
//!   [inbox](crate::inbox). The consume connection has its own watcher and reconnects the
//!   same way, also while no subscription runs.
//!
//! - **Health**: [`RabbitBroker::health`] tells whether each connection is open
//!   ([`Health::is_ready`]: both), how often each was re-established, and how many
//!   publishes were sent again after a lost confirm.
//!
//! Not yet: RabbitMQ 4.3's `x-delayed-retry-*`.
//!
//! ```no_run
//! use std::time::Duration;
//! use sinew_messaging::envelope::Event;
//! use sinew_messaging::publisher::Publisher;
//! use sinew_messaging::rabbitmq::RabbitBroker;
//! use sinew_messaging::subscriber::{
//!     handler_fn, Delivery, Outcome, Subscriber, Subscription, SubscriptionConfig,
//! };
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let broker = RabbitBroker::builder("amqp://guest:guest@127.0.0.1:5672/%2f")
//!     .app_id("email")
//!     .connect()
//!     .await?;
//! let config = SubscriptionConfig::builder("email", "welcome")
//!     .routing_key("user.created")
//!     .build()?;
//! let subscription = broker
//!     .subscriber()
//!     .subscribe(config, handler_fn("welcome-mail", |d: Delivery| async move {
//!         let _user = d.decode::<String>()?;
//!         Ok(Outcome::Ack)
//!     }))
//!     .await?;
//! // Resolves once RabbitMQ has confirmed the message.
//! broker
//!     .publisher()
//!     .publish(Event::new("user.created", "u-1", "ada".to_owned()).to_message("accounts")?)
//!     .await?;
//! subscription.shutdown(Duration::from_secs(30)).await;
//! # Ok(()) }
//! ```

mod consumer;
pub mod error;
mod link;
mod returns;
mod topology;
mod wire;

use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ExchangeDeleteOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::instrument::WithSubscriber;

use self::link::{LinkError, PublishLink, PublishSide, REPLY_SUCCESS, WaitError, connect};
use self::returns::{HandedIn, Outcome, Ticket};

pub use self::error::ConnectError;
pub use self::topology::{QueueType, UnknownQueueType};
use crate::dead_letter::{DeadLetter, DeadLetterError, DeadLetters};
use crate::envelope::Message;
use crate::error::ConfigError;
use crate::metrics::Metrics;
use crate::publisher::{PublishError, Publisher};
use crate::subscriber::{
    Handler, ShutdownReport, SubscribeError, Subscriber, Subscription, SubscriptionConfig,
};
use crate::telemetry::{self, Telemetry};

const DEFAULT_EXCHANGE: &str = "domain-events";
const DEFAULT_APP_ID: &str = "sinew";
const DEFAULT_CONFIRM_WINDOW: usize = 256;
const DEFAULT_PUBLISH_DEADLINE: Duration = Duration::from_secs(30);
const DEFAULT_OUTAGE_BUFFER: usize = 10_000;
const DEFAULT_DELIVERY_LIMIT: u32 = 20;
/// How often one publish is sent again after losing its confirm before it gives up with
/// `ConnectionLost`, so that a publish the client library keeps failing cannot make the
/// supervisor replace the channel over and over until the deadline.
const MAX_REPUBLISHES: u32 = 10;

/// A connection to RabbitMQ: a publish connection and a consume connection.
///
/// # Clone
///
/// Clones share the connections, the confirm window and the record of declared queues.
#[derive(Clone)]
pub struct RabbitBroker {
    inner: Arc<Inner>,
}

impl fmt::Debug for RabbitBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitBroker")
            .field("exchange", &self.inner.exchange)
            .field("app_id", &self.inner.app_id)
            .finish_non_exhaustive()
    }
}

impl RabbitBroker {
    /// A builder for the broker at `uri`, e.g. `amqp://guest:guest@127.0.0.1:5672/%2f`.
    pub fn builder(uri: impl Into<String>) -> RabbitBrokerBuilder {
        RabbitBrokerBuilder {
            uri: uri.into(),
            exchange: DEFAULT_EXCHANGE.to_owned(),
            app_id: DEFAULT_APP_ID.to_owned(),
            confirm_window: DEFAULT_CONFIRM_WINDOW,
            publish_deadline: DEFAULT_PUBLISH_DEADLINE,
            outage_buffer: DEFAULT_OUTAGE_BUFFER,
            delivery_limit: DEFAULT_DELIVERY_LIMIT,
            queue_type: QueueType::default(),
        }
    }

    /// The exchange published to.
    pub fn exchange(&self) -> &str {
        &self.inner.exchange
    }

    /// A publisher to the exchange.
    pub fn publisher(&self) -> RabbitPublisher {
        RabbitPublisher {
            deadline: self.inner.publish_deadline,
            inner: self.inner.clone(),
        }
    }

    /// A subscriber that declares and consumes subscription queues.
    pub fn subscriber(&self) -> RabbitSubscriber {
        RabbitSubscriber {
            queues: self.inner.queues,
            inner: self.inner.clone(),
        }
    }

    /// The dead-letter API.
    pub fn dead_letters(&self) -> RabbitDeadLetters {
        RabbitDeadLetters {
            inner: self.inner.clone(),
        }
    }

    /// How many messages are ready in `queue` (a passive declare); `None` when it does not
    /// exist.
    ///
    /// # Errors
    ///
    /// [`SubscribeError::Connection`] when the broker cannot be asked.
    pub async fn queue_depth(&self, queue: &str) -> Result<Option<u32>, SubscribeError> {
        let channel = self.inner.admin_channel().await?;
        let options = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        match channel
            .queue_declare(queue.into(), options, FieldTable::default())
            .await
        {
            Ok(q) => {
                close(&channel).await;
                Ok(Some(q.message_count()))
            }
            Err(e) if topology::reply_code(&e) == Some(topology::NOT_FOUND) => Ok(None),
            Err(_) => Err(SubscribeError::Connection),
        }
    }

    /// Deletes every queue this broker (and its clones) declared, and the exchange; for tests
    /// and tooling that create throw-away topologies. Returns how many queues it deleted.
    ///
    /// # Errors
    ///
    /// [`SubscribeError::Connection`] when the broker cannot be reached.
    pub async fn delete_topology(&self) -> Result<usize, SubscribeError> {
        let queues: Vec<String> = std::mem::take(&mut *self.inner.declared_lock())
            .into_iter()
            .collect();
        let channel = self.inner.admin_channel().await?;
        for queue in &queues {
            channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await
                .map_err(|_| SubscribeError::Connection)?;
        }
        channel
            .exchange_delete(
                self.inner.exchange.as_str().into(),
                ExchangeDeleteOptions::default(),
            )
            .await
            .map_err(|_| SubscribeError::Connection)?;
        close(&channel).await;
        Ok(queues.len())
    }

    /// The broker's counters: published, confirmed (`basic.ack`), returned (`basic.return`),
    /// consumed, retried, dead-lettered, and reconnects (of consumers, the consume connection
    /// and the publish connection).
    pub fn metrics(&self) -> Metrics {
        let mut metrics = self.inner.telemetry.counters.snapshot();
        metrics.reconnects += self.inner.link.reconnects();
        metrics
    }

    /// Whether the publish and consume connections are up right now, and how often they were
    /// re-established.
    ///
    /// A dropped publish connection is re-opened by the supervisor, a dropped consume
    /// connection by the subscriptions, so a `false` here is transient unless the broker
    /// stays unreachable.
    pub async fn health(&self) -> Health {
        // Locked only while a reconnect is under way: then it is not connected, and a
        // readiness probe must not wait for the reconnect.
        let consume = self
            .inner
            .consume
            .try_lock()
            .is_ok_and(|c| c.status().connected());
        Health {
            publish: self.inner.link.is_up(),
            consume,
            publish_reconnects: self.inner.link.reconnects(),
            consume_reconnects: self.inner.consume_reconnects.load(Ordering::Relaxed),
            republished: self.inner.republished.load(Ordering::Relaxed),
        }
    }

    /// Closes the publish connection, as a network failure would. The supervisor reconnects;
    /// publishes whose confirm was lost are published again (same message ID) on the new
    /// connection. For fault-injection tests.
    pub async fn drop_publish_connection(&self) {
        self.inner.link.drop_connection().await;
    }

    /// Closes the consume connection, as a network failure would. Every subscription
    /// reconnects by itself; unsettled messages are redelivered. For fault-injection tests.
    pub async fn drop_consume_connection(&self) {
        self.inner.drop_consume_connection().await;
    }
}

/// The state of a [`RabbitBroker`]'s connections; see [`RabbitBroker::health`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Health {
    /// The publish connection and its confirm channel are open.
    pub publish: bool,
    /// The consume connection is open.
    pub consume: bool,
    /// How many times the publish connection or channel was re-established.
    pub publish_reconnects: u64,
    /// How many times the consume connection was re-established.
    pub consume_reconnects: u64,
    /// How many publishes were sent again, with the same message ID, because their confirm
    /// was lost with a connection or channel.
    pub republished: u64,
}

impl Health {
    /// Both connections are open: ready to publish and consume.
    pub const fn is_ready(&self) -> bool {
        self.publish && self.consume
    }
}

/// Builder of [`RabbitBroker`].
///
/// # Default
///
/// Exchange `domain-events`, app ID `sinew`, 256 publisher confirms in flight, a publish
/// deadline of 30 s, at most 10 000 publishes waiting out an outage, and quorum subscription
/// queues with a delivery limit of 20.
#[derive(Debug, Clone)]
pub struct RabbitBrokerBuilder {
    uri: String,
    exchange: String,
    app_id: String,
    confirm_window: usize,
    publish_deadline: Duration,
    outage_buffer: usize,
    delivery_limit: u32,
    queue_type: QueueType,
}

impl RabbitBrokerBuilder {
    /// The topic exchange to publish to and bind queues on.
    pub fn exchange(mut self, name: impl Into<String>) -> Self {
        self.exchange = name.into();
        self
    }

    /// The service name, sent as `app_id` and in the connection names.
    pub fn app_id(mut self, app_id: impl Into<String>) -> Self {
        self.app_id = app_id.into();
        self
    }

    /// How many publishes may wait for their confirm at once.
    pub const fn confirm_window(mut self, window: usize) -> Self {
        self.confirm_window = window;
        self
    }

    /// How long a publish may wait, in all, for the broker: for the connection to come back
    /// during an outage, for a place in the confirm window, and for the confirm. After it,
    /// the publish fails with the retryable [`PublishError::DeadlineExceeded`]. Per call:
    /// [`RabbitPublisher::deadline`] and [`RabbitPublisher::publish_within`].
    pub const fn publish_deadline(mut self, deadline: Duration) -> Self {
        self.publish_deadline = deadline;
        self
    }

    /// How many publishes may wait for the publish connection to come back during an outage.
    /// One more fails at once with the retryable [`PublishError::BufferFull`], so an outage
    /// never grows memory without bound. Each waiting publish holds its own message; nothing
    /// is copied.
    pub const fn outage_buffer(mut self, publishes: usize) -> Self {
        self.outage_buffer = publishes;
        self
    }

    /// The `x-delivery-limit` of every subscription queue (quorum): how often the broker
    /// may deliver a message again after it came back unsettled (a consumer crash, a dropped
    /// connection, a requeue) before it dead-letters the message into `{queue}.dlq` by
    /// itself. A second safety net against hot loops, under the crate's own retry policy,
    /// which never requeues a failed message. Queues that exist with another limit are a
    /// [`SubscribeError::TopologyMismatch`] naming `x-delivery-limit`.
    ///
    /// Quorum queues only: a [classic](QueueType::Classic) queue has no delivery limit, and
    /// the setting is not used.
    pub const fn delivery_limit(mut self, redeliveries: u32) -> Self {
        self.delivery_limit = redeliveries;
        self
    }

    /// The type of the subscription queues and their dead-letter queues:
    /// [`QueueType::Quorum`] (the default) or [`QueueType::Classic`]; one subscriber can
    /// pick another with [`RabbitSubscriber::queue_type`]. The retry tiers are classic queues
    /// either way. A queue that already exists with the other type is a
    /// [`SubscribeError::TopologyMismatch`] naming `x-queue-type`.
    pub const fn queue_type(mut self, queue_type: QueueType) -> Self {
        self.queue_type = queue_type;
        self
    }

    /// Connects, puts the publish channel in confirm mode, declares the exchange (durable,
    /// topic) and starts the publish connection's supervisor.
    ///
    /// # Errors
    ///
    /// [`ConnectError::Config`] for an empty exchange or a zero window, deadline or buffer,
    /// [`ConnectError::Connection`] when the broker cannot be reached or refuses.
    pub async fn connect(self) -> Result<RabbitBroker, ConnectError> {
        if self.exchange.is_empty() {
            return Err(ConfigError::Missing { field: "exchange" }.into());
        }
        for (field, zero) in [
            ("confirm_window", self.confirm_window == 0),
            ("publish_deadline", self.publish_deadline.is_zero()),
            ("outage_buffer", self.outage_buffer == 0),
            ("delivery_limit", self.delivery_limit == 0),
        ] {
            if zero {
                return Err(ConfigError::Zero { field }.into());
            }
        }
        let link = PublishLink::start(self.uri.clone(), self.app_id.clone(), self.exchange.clone())
            .await
            .map_err(|(stage, e)| ConnectError::connection(stage, e))?;
        let consume = connect(&self.uri, &self.app_id, "consume")
            .await
            .map_err(|e| ConnectError::connection("consume connection", e))?;
        let telemetry = Telemetry::new("rabbitmq", self.exchange.clone());
        let inner = Arc::new(Inner {
            uri: self.uri,
            exchange: self.exchange,
            app_id: self.app_id,
            link,
            window: Semaphore::new(self.confirm_window),
            window_size: self.confirm_window,
            outage: Semaphore::new(self.outage_buffer),
            outage_buffer: self.outage_buffer,
            publish_deadline: self.publish_deadline,
            queues: topology::Queues {
                queue_type: self.queue_type,
                delivery_limit: self.delivery_limit,
            },
            republished: AtomicU64::new(0),
            consume: tokio::sync::Mutex::new(Arc::new(consume)),
            consume_reconnects: AtomicU64::new(0),
            declared: Mutex::new(BTreeSet::new()),
            telemetry,
        });
        tokio::spawn(watch_consume(Arc::downgrade(&inner)));
        Ok(RabbitBroker { inner })
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The publish link closes its own connection; close the consume one too.
        let connection = self.consume.get_mut().clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = connection
                    .close(REPLY_SUCCESS, "broker dropped".into())
                    .await;
            });
        }
    }
}

/// Re-opens the consume connection when it drops, also while no subscription needs it (so
/// that readiness comes back after an outage), with backoff and jitter. Subscriptions
/// re-open it by themselves too. Stops once the broker is dropped.
async fn watch_consume(inner: std::sync::Weak<Inner>) {
    let mut rng = fastrand::Rng::new();
    let mut backoff = link::MIN_BACKOFF;
    loop {
        tokio::time::sleep(link::POLL).await;
        let Some(broker) = inner.upgrade() else {
            return;
        };
        if broker.consume.lock().await.status().connected() {
            backoff = link::MIN_BACKOFF;
            continue;
        }
        if let Err(e) = broker.consume_connection().await {
            tracing::warn!(exchange = %broker.exchange, error = %e, ?backoff, "consume reconnect failed");
            drop(broker);
            tokio::time::sleep(backoff.mul_f64(0.5 + rng.f64() / 2.0)).await;
            backoff = backoff.saturating_mul(2).min(link::MAX_BACKOFF);
        }
    }
}

async fn close(channel: &Channel) {
    let _ = channel.close(REPLY_SUCCESS, "OK".into()).await;
}

pub(crate) struct Inner {
    uri: String,
    exchange: String,
    app_id: String,
    link: Arc<PublishLink>,
    /// Publishes waiting for their confirm.
    window: Semaphore,
    /// The confirm window's size: how many publishes of a batch are under way at once.
    window_size: usize,
    /// Publishes waiting for the publish connection to come back.
    outage: Semaphore,
    outage_buffer: usize,
    publish_deadline: Duration,
    /// How subscription queues are declared.
    queues: topology::Queues,
    republished: AtomicU64,
    consume: tokio::sync::Mutex<Arc<Connection>>,
    consume_reconnects: AtomicU64,
    declared: Mutex<BTreeSet<String>>,
    telemetry: Telemetry,
}

impl Inner {
    fn declared_lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.declared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A short-lived channel for declarations and `basic.get`, so that a channel error (a
    /// 406 or 404) never closes the publish channel.
    ///
    /// Opened on the publish connection; waits for it up to the publish deadline.
    async fn admin_channel(&self) -> Result<Channel, SubscribeError> {
        let side = match self.link.current() {
            Some(side) => side,
            None => self
                .link
                .wait_up(None, Instant::now() + self.publish_deadline)
                .await
                .map_err(|_| SubscribeError::Connection)?,
        };
        side.connection
            .create_channel()
            .await
            .map_err(|_| SubscribeError::Connection)
    }

    async fn declare(
        &self,
        config: &SubscriptionConfig,
        queues: topology::Queues,
    ) -> Result<(), SubscribeError> {
        let channel = self.admin_channel().await?;
        let names = topology::declare(&channel, &self.exchange, config, queues).await?;
        close(&channel).await;
        self.declared_lock().extend(names);
        Ok(())
    }

    /// The retry queue for `delay`, declared first if it is not a known one.
    async fn retry_queue(
        &self,
        config: &SubscriptionConfig,
        delay: Duration,
    ) -> Result<String, SubscribeError> {
        let name = topology::retry_queue(config, delay);
        if self.declared_lock().contains(&name) {
            return Ok(name);
        }
        let channel = self.admin_channel().await?;
        topology::declare_retry_queue(&channel, config, delay).await?;
        close(&channel).await;
        self.declared_lock().insert(name.clone());
        Ok(name)
    }

    /// Publishes with `mandatory` and waits for the confirm, within the window, for up to
    /// `deadline` in all.
    ///
    /// While the publish connection is down it waits for the supervisor to bring it back,
    /// holding a place in the bounded outage buffer. A publish whose confirm is lost with
    /// the connection or channel is published again, with the same message ID, on the next
    /// one: at least once, or [`PublishError::DeadlineExceeded`].
    async fn publish_to(
        &self,
        exchange: &str,
        routing_key: &str,
        message: &Message,
        deadline: Duration,
    ) -> Result<(), PublishError> {
        let until = Instant::now() + deadline;
        tokio::time::timeout_at(
            until,
            self.publish_by(exchange, routing_key, message, deadline, until),
        )
        .await
        .map_err(|_| PublishError::DeadlineExceeded { deadline })?
    }

    /// [`publish_to`](Self::publish_to) without a timer of its own: the caller stops waiting
    /// at `until` (a batch shares one timer). `deadline` is only reported in errors.
    async fn publish_by(
        &self,
        exchange: &str,
        routing_key: &str,
        message: &Message,
        deadline: Duration,
        until: Instant,
    ) -> Result<(), PublishError> {
        let confirmed = self
            .send_confirmed(exchange, routing_key, message, deadline, until)
            .await?;
        confirmed
            .settle(exchange, routing_key, message.message_id())
            .await
    }

    /// Publishes until the broker confirms (or nacks) the message: the first half of
    /// [`publish_by`](Self::publish_by), up to the point where the confirm window has room
    /// again. The other half, [`Confirmed::settle`], attributes returns.
    async fn send_confirmed(
        &self,
        exchange: &str,
        routing_key: &str,
        message: &Message,
        deadline: Duration,
        until: Instant,
    ) -> Result<Confirmed, PublishError> {
        let late = || PublishError::DeadlineExceeded { deadline };
        // Built once and moved into the first attempt; rebuilt only for a republish.
        let mut properties = Some(wire::properties(message, &self.app_id, exchange.is_empty()));
        let options = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let mut failed_on: Option<u64> = None;
        let mut republishes = 0u32;
        let mut outage_slot = None;
        loop {
            let side = match self
                .link
                .current()
                .filter(|s| failed_on.is_none_or(|g| s.generation > g))
            {
                Some(side) => side,
                None => {
                    if outage_slot.is_none() {
                        outage_slot = Some(self.outage.try_acquire().map_err(|_| {
                            PublishError::BufferFull {
                                capacity: self.outage_buffer,
                            }
                        })?);
                    }
                    self.link
                        .wait_up(failed_on, until)
                        .await
                        .map_err(|e| match e {
                            WaitError::Deadline => late(),
                            WaitError::Closed => PublishError::Closed,
                        })?
                }
            };
            let properties = properties
                .take()
                .unwrap_or_else(|| wire::properties(message, &self.app_id, exchange.is_empty()));
            let handed_in: Option<HandedIn> = async {
                let _permit = self
                    .window
                    .acquire()
                    .await
                    .map_err(|_| PublishError::Closed)?;
                let pending = Pending::new(side.clone());
                let confirm = side
                    .channel
                    .basic_publish(
                        exchange.into(),
                        routing_key.into(),
                        options,
                        message.body(),
                        properties,
                    )
                    .await;
                let Ok(confirm) = confirm else {
                    return Ok(None);
                };
                // The permit drops with the confirm: the window has room again, while this
                // publish waits for the earlier ones' confirms to attribute returns.
                Ok::<_, PublishError>(Confirming::new(pending, confirm).confirmed().await)
            }
            .await?;
            if let Some(handed_in) = handed_in {
                return Ok(Confirmed { side, handed_in });
            }
            // The confirm is lost with the channel or connection: publish again, with the
            // same message ID, once the supervisor has a new one.
            self.link.report_broken(&side);
            failed_on = Some(side.generation);
            republishes += 1;
            if republishes > MAX_REPUBLISHES {
                return Err(PublishError::ConnectionLost);
            }
            self.republished.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One lane of a batch: publishes the batch's messages one after another, taking the
    /// next unclaimed one each time (`next`), each in its producer span, and records each
    /// result as soon as it has one. A batch runs a confirm window's worth of lanes, so its
    /// publish states are made once per lane instead of once per message (each is 2-3 KB).
    ///
    /// A publish leaves the lane as soon as its confirm is in: the lane goes on with the next
    /// message while the confirmed ones wait for the earlier publishes' confirms (return
    /// attribution, about one more round trip), so the window stays full.
    async fn batch_lane(&self, batch: &Batch<'_>) {
        use tracing::Instrument;

        let record = |i: usize, result: Result<(), PublishError>| {
            let mut results = batch.results.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(slot) = results.get_mut(i) {
                *slot = Some(result);
            }
        };
        let mut unsettled: VecDeque<(usize, &Message, Confirmed)> = VecDeque::new();
        loop {
            let i = batch.next.fetch_add(1, Ordering::Relaxed);
            let (Some(message), Some(span)) = (batch.messages.get(i), batch.spans.get(i)) else {
                break;
            };
            let sent = self
                .send_confirmed(
                    &self.exchange,
                    message.routing_key(),
                    message,
                    batch.deadline,
                    batch.until,
                )
                .instrument(span.clone())
                .await;
            match sent {
                Ok(confirmed) => unsettled.push_back((i, message, confirmed)),
                Err(e) => record(i, Err(e)),
            }
            // Those whose earlier publishes have all handed in settle now. A lane hands in
            // its confirms in order, so their bounds only grow: the first that must wait
            // holds back the rest.
            while let Some((i, message, confirmed)) = unsettled.front() {
                let Some(result) = confirmed.try_settle(
                    &self.exchange,
                    message.routing_key(),
                    message.message_id(),
                ) else {
                    break;
                };
                record(*i, result);
                unsettled.pop_front();
            }
        }
        for (i, message, confirmed) in unsettled {
            let result = confirmed
                .settle(&self.exchange, message.routing_key(), message.message_id())
                .await;
            record(i, result);
        }
    }

    /// The consume connection, re-opened first if it is closed.
    async fn consume_connection(&self) -> Result<Arc<Connection>, LinkError> {
        let mut connection = self.consume.lock().await;
        if !connection.status().connected() {
            *connection = Arc::new(connect(&self.uri, &self.app_id, "consume").await?);
            self.consume_reconnects.fetch_add(1, Ordering::Relaxed);
            tracing::info!(exchange = %self.exchange, "consume connection re-established");
        }
        Ok(connection.clone())
    }

    /// A channel on the consume connection, reconnecting first if it is closed.
    async fn consume_channel(&self) -> Result<Channel, LinkError> {
        self.consume_connection()
            .await?
            .create_channel()
            .await
            .map_err(LinkError::Lapin)
    }

    async fn drop_consume_connection(&self) {
        let connection = self.consume.lock().await.clone();
        let _ = connection
            .close(REPLY_SUCCESS, "closed by drop_consume_connection".into())
            .await;
    }
}

/// What the lanes of one `publish_batch` share.
struct Batch<'a> {
    messages: &'a [Message],
    spans: &'a [tracing::Span],
    /// The next message no lane has taken yet.
    next: AtomicUsize,
    results: Mutex<Vec<Option<Result<(), PublishError>>>>,
    deadline: Duration,
    until: Instant,
}

/// A publish the broker confirmed (or nacked), its return not attributed yet.
struct Confirmed {
    side: Arc<PublishSide>,
    handed_in: HandedIn,
}

impl Confirmed {
    /// Waits for every earlier publish on the channel to hand in its confirm, then tells
    /// whether this one was returned (unroutable), nacked or acked.
    async fn settle(
        self,
        exchange: &str,
        routing_key: &str,
        message_id: &str,
    ) -> Result<(), PublishError> {
        let key = (exchange, routing_key, message_id);
        let outcome = self.side.returns.settle(self.handed_in, key).await;
        result_of(outcome, exchange, routing_key)
    }

    /// [`settle`](Self::settle) if every earlier publish has handed in its confirm already;
    /// `None` if it would wait.
    fn try_settle(
        &self,
        exchange: &str,
        routing_key: &str,
        message_id: &str,
    ) -> Option<Result<(), PublishError>> {
        let key = (exchange, routing_key, message_id);
        let outcome = self.side.returns.try_settle(self.handed_in, key)?;
        Some(result_of(outcome, exchange, routing_key))
    }
}

fn result_of(outcome: Outcome, exchange: &str, routing_key: &str) -> Result<(), PublishError> {
    match outcome {
        Outcome::Acked => Ok(()),
        Outcome::Returned => Err(PublishError::Unroutable {
            exchange: exchange.to_owned(),
            routing_key: routing_key.to_owned(),
        }),
        Outcome::Nacked => Err(PublishError::Nacked),
    }
}

/// A publish registered with its channel's return tracker; hands in nothing if dropped before
/// its confirmation, so that no other publish waits for it.
struct Pending {
    side: Arc<PublishSide>,
    ticket: Option<Ticket>,
}

impl Pending {
    fn new(side: Arc<PublishSide>) -> Self {
        let ticket = Some(side.returns.register());
        Self { side, ticket }
    }

    /// Hands in the confirmation; see [`returns::Returns::hand_in`].
    fn hand_in(mut self, confirmation: Option<lapin::Confirmation>) -> Option<HandedIn> {
        let ticket = self.ticket.take()?;
        self.side.returns.hand_in(ticket, confirmation)
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.side.returns.hand_in(ticket, None);
        }
    }
}

/// A publish awaiting its confirm. Awaited in place (no task per publish); if the publish
/// stops waiting (its deadline passed), the rest of the wait moves to a task of its own, so
/// that the confirm, and any return it carries, is still handed in: a later publish may be
/// waiting for it.
struct Confirming {
    pending: Option<Pending>,
    confirm: Option<lapin::PublisherConfirm>,
}

impl Confirming {
    const fn new(pending: Pending, confirm: lapin::PublisherConfirm) -> Self {
        Self {
            pending: Some(pending),
            confirm: Some(confirm),
        }
    }

    /// What the broker said about the publish; `None` when the confirm was lost.
    async fn confirmed(mut self) -> Option<HandedIn> {
        let confirmation = match self.confirm.as_mut() {
            Some(confirm) => confirm.await.ok(),
            None => None,
        };
        self.confirm = None;
        self.pending.take()?.hand_in(confirmation)
    }
}

impl Drop for Confirming {
    fn drop(&mut self) {
        if let (Some(pending), Some(confirm)) = (self.pending.take(), self.confirm.take()) {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(async move {
                        let confirmation = confirm.await.ok();
                        pending.hand_in(confirmation);
                    });
                }
                // No runtime to finish the wait on: `pending` hands in nothing as it drops,
                // so no other publish waits for this one.
                Err(_) => drop((pending, confirm)),
            }
        }
    }
}

/// Publishes to a [`RabbitBroker`]'s exchange with confirms; see the [module docs](self).
///
/// `publish_batch` keeps a confirm window's worth of the batch under way at once, so its
/// confirms are pipelined within the window, under one deadline for the whole batch.
#[derive(Clone)]
pub struct RabbitPublisher {
    inner: Arc<Inner>,
    deadline: Duration,
}

impl RabbitPublisher {
    /// This publisher with another publish deadline (see
    /// [`RabbitBrokerBuilder::publish_deadline`]); a zero deadline is read as 1 ms.
    #[must_use]
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline.max(Duration::from_millis(1));
        self
    }

    /// Publishes one message, waiting for the broker for up to `deadline` instead of this
    /// publisher's deadline.
    ///
    /// # Errors
    ///
    /// As [`Publisher::publish`]; [`PublishError::DeadlineExceeded`] once `deadline` passed.
    pub async fn publish_within(
        &self,
        message: Message,
        deadline: Duration,
    ) -> Result<(), PublishError> {
        let inner = &self.inner;
        telemetry::publish(&inner.telemetry, message, |m| async move {
            inner
                .publish_to(&inner.exchange, m.routing_key(), &m, deadline)
                .await
        })
        .await
    }
}

impl fmt::Debug for RabbitPublisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitPublisher")
            .field("exchange", &self.inner.exchange)
            .finish_non_exhaustive()
    }
}

impl Publisher for RabbitPublisher {
    async fn publish(&self, message: Message) -> Result<(), PublishError> {
        self.publish_within(message, self.deadline).await
    }

    /// Pipelined within the confirm window, under one deadline timer for the whole batch (the
    /// publisher's deadline, from now): a publish still unconfirmed then fails with
    /// [`PublishError::DeadlineExceeded`], its confirm handed in in the background. A
    /// window's worth of lanes each publish one message at a time (the window would hold
    /// back more anyway), so a large batch holds one publish state per window slot, not per
    /// message. A publish leaves its lane as soon as its confirm is in, while it waits for the
    /// earlier publishes' confirms to attribute returns: the window stays full of publishes
    /// waiting for the broker.
    async fn publish_batch(&self, mut messages: Vec<Message>) -> Vec<Result<(), PublishError>> {
        use futures_util::stream::{FuturesUnordered, StreamExt};

        let inner = &*self.inner;
        let deadline = self.deadline;
        let until = Instant::now() + deadline;
        let spans: Vec<tracing::Span> = messages
            .iter_mut()
            .map(|message| telemetry::producer_span(&inner.telemetry, message))
            .collect();
        let batch = Batch {
            messages: &messages,
            spans: &spans,
            next: AtomicUsize::new(0),
            results: Mutex::new(std::iter::repeat_with(|| None).take(spans.len()).collect()),
            deadline,
            until,
        };
        let mut lanes: FuturesUnordered<_> = (0..inner.window_size.clamp(1, messages.len().max(1)))
            .map(|_| inner.batch_lane(&batch))
            .collect();
        let timer = tokio::time::sleep_until(until);
        tokio::pin!(timer);
        loop {
            tokio::select! {
                biased;
                lane = lanes.next() => if lane.is_none() {
                    break;
                },
                () = &mut timer => break,
            }
        }
        drop(lanes);
        let results = batch
            .results
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        results
            .into_iter()
            .zip(&spans)
            .map(|(result, span)| {
                let result = result.unwrap_or(Err(PublishError::DeadlineExceeded { deadline }));
                telemetry::published(&inner.telemetry, span, &result);
                result
            })
            .collect()
    }
}

/// Declares and consumes a [`RabbitBroker`]'s subscription queues, of the broker's
/// [queue type](RabbitBrokerBuilder::queue_type) unless [`queue_type`](Self::queue_type)
/// picks another for this subscriber.
#[derive(Clone)]
pub struct RabbitSubscriber {
    inner: Arc<Inner>,
    queues: topology::Queues,
}

impl fmt::Debug for RabbitSubscriber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitSubscriber")
            .field("exchange", &self.inner.exchange)
            .field("queue_type", &self.queues.queue_type)
            .finish_non_exhaustive()
    }
}

impl RabbitSubscriber {
    /// This subscriber declares its subscription and dead-letter queues as `queue_type`
    /// instead of the broker's, so one broker (one pair of connections) can serve quorum and
    /// classic subscriptions side by side:
    ///
    /// ```no_run
    /// use sinew_messaging::rabbitmq::{QueueType, RabbitBroker};
    ///
    /// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
    /// let broker = RabbitBroker::builder("amqp://guest:guest@127.0.0.1:5672/%2f")
    ///     .connect()
    ///     .await?;
    /// let orders = broker.subscriber(); // quorum queues, the broker's type
    /// let audit = broker.subscriber().queue_type(QueueType::Classic);
    /// # let _ = (orders, audit);
    /// # Ok(())
    /// # }
    /// # fn main() { let _ = example(); }
    /// ```
    ///
    /// A queue that already exists with the other type is still a
    /// [`SubscribeError::TopologyMismatch`] naming `x-queue-type`.
    #[must_use]
    pub const fn queue_type(mut self, queue_type: QueueType) -> Self {
        self.queues.queue_type = queue_type;
        self
    }
}

impl Subscriber for RabbitSubscriber {
    type Subscription = RabbitSubscription;

    async fn declare(&self, config: &SubscriptionConfig) -> Result<(), SubscribeError> {
        self.inner.declare(config, self.queues).await
    }

    async fn subscribe<H: Handler>(
        &self,
        config: SubscriptionConfig,
        handler: H,
    ) -> Result<RabbitSubscription, SubscribeError> {
        self.inner.declare(&config, self.queues).await?;
        let queue = config.queue();
        let (stop, stop_rx) = watch::channel(None);
        let started =
            consumer::start(self.inner.clone(), self.queues, config, handler, stop_rx).await?;
        // The consumer's tasks keep the `tracing` subscriber of the code that subscribed.
        let task = tokio::spawn(started.with_current_subscriber());
        Ok(RabbitSubscription { stop, task, queue })
    }
}

/// A running consumer of a [`RabbitBroker`] queue.
///
/// Dropping it stops the consumer at once, without waiting for its handlers; their messages
/// return to the queue marked redelivered.
#[derive(Debug)]
pub struct RabbitSubscription {
    stop: watch::Sender<Option<Duration>>,
    task: JoinHandle<ShutdownReport>,
    queue: String,
}

impl RabbitSubscription {
    /// The queue consumed.
    pub fn queue(&self) -> &str {
        &self.queue
    }
}

impl Subscription for RabbitSubscription {
    async fn shutdown(self, deadline: Duration) -> ShutdownReport {
        let _ = self.stop.send(Some(deadline));
        self.task.await.unwrap_or(ShutdownReport {
            drained: false,
            requeued: 0,
        })
    }
}

/// Lists and replays a [`RabbitBroker`]'s dead letters (`{queue}.dlq`).
#[derive(Clone)]
pub struct RabbitDeadLetters {
    inner: Arc<Inner>,
}

impl fmt::Debug for RabbitDeadLetters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitDeadLetters").finish_non_exhaustive()
    }
}

impl RabbitDeadLetters {
    /// Looks for the dead letter `message_id` in `{queue}.dlq`, taking messages with
    /// `basic.get` until it appears or the queue is exhausted; acks it, after a confirmed
    /// republish to `queue` when `replay`. Closing the channel returns the others.
    async fn take_one(
        &self,
        queue: &str,
        message_id: &str,
        replay: bool,
    ) -> Result<bool, DeadLetterError> {
        let (channel, _) = self.take(queue, 0).await?;
        let dlq = format!("{queue}.dlq");
        let mut found = None;
        loop {
            match channel
                .basic_get(dlq.as_str().into(), BasicGetOptions::default())
                .await
            {
                Ok(Some(got)) => {
                    let id = got.delivery.properties.message_id().clone();
                    if id.as_ref().map(|id| id.as_str()) == Some(message_id) {
                        found = Some(got);
                        break;
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    close(&channel).await;
                    return Err(DeadLetterError::Connection);
                }
            }
        }
        let result = match found {
            None => Ok(false),
            Some(got) => {
                let mut forwarded = Ok(());
                if replay {
                    let mut message = wire::message(&got.delivery);
                    message
                        .headers_mut()
                        .retain(|name, _| !name.starts_with("messaging-"));
                    let deadline = self.inner.publish_deadline;
                    forwarded = self.inner.publish_to("", queue, &message, deadline).await;
                }
                match forwarded {
                    Ok(()) => got
                        .delivery
                        .acker
                        .ack(lapin::options::BasicAckOptions::default())
                        .await
                        .map_err(|_| DeadLetterError::Connection),
                    Err(_) => Err(DeadLetterError::Connection),
                }
            }
        };
        close(&channel).await;
        result
    }

    /// Takes up to `limit` messages from `{queue}.dlq` with `basic.get`, unacked, on a fresh
    /// channel.
    async fn take(
        &self,
        queue: &str,
        limit: usize,
    ) -> Result<(Channel, Vec<lapin::message::BasicGetMessage>), DeadLetterError> {
        let dlq = format!("{queue}.dlq");
        let channel = self
            .inner
            .admin_channel()
            .await
            .map_err(|_| DeadLetterError::Connection)?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        if let Err(e) = channel
            .queue_declare(dlq.as_str().into(), passive, FieldTable::default())
            .await
        {
            return Err(if topology::reply_code(&e) == Some(topology::NOT_FOUND) {
                DeadLetterError::UnknownQueue {
                    queue: queue.to_owned(),
                }
            } else {
                DeadLetterError::Connection
            });
        }
        let mut taken = Vec::new();
        while taken.len() < limit {
            match channel
                .basic_get(dlq.as_str().into(), BasicGetOptions::default())
                .await
            {
                Ok(Some(m)) => taken.push(m),
                Ok(None) => break,
                Err(_) => return Err(DeadLetterError::Connection),
            }
        }
        Ok((channel, taken))
    }
}

impl DeadLetters for RabbitDeadLetters {
    async fn list(&self, queue: &str, limit: usize) -> Result<Vec<DeadLetter>, DeadLetterError> {
        let (channel, taken) = self.take(queue, limit).await?;
        let letters = taken
            .iter()
            .map(|m| DeadLetter {
                message: wire::dead_letter(&m.delivery),
            })
            .collect();
        // Closing the channel returns the unacked messages to the queue.
        close(&channel).await;
        Ok(letters)
    }

    async fn replay(&self, queue: &str, limit: usize) -> Result<usize, DeadLetterError> {
        let (channel, taken) = self.take(queue, limit).await?;
        let mut moved = 0;
        for got in taken {
            let mut message = wire::dead_letter(&got.delivery);
            message
                .headers_mut()
                .retain(|name, _| !name.starts_with("messaging-"));
            let deadline = self.inner.publish_deadline;
            if self
                .inner
                .publish_to("", queue, &message, deadline)
                .await
                .is_err()
            {
                break;
            }
            if got
                .delivery
                .acker
                .ack(lapin::options::BasicAckOptions::default())
                .await
                .is_err()
            {
                break;
            }
            moved += 1;
        }
        close(&channel).await;
        Ok(moved)
    }

    async fn replay_message(&self, queue: &str, message_id: &str) -> Result<bool, DeadLetterError> {
        self.take_one(queue, message_id, true).await
    }

    async fn discard_message(
        &self,
        queue: &str,
        message_id: &str,
    ) -> Result<bool, DeadLetterError> {
        self.take_one(queue, message_id, false).await
    }
}
