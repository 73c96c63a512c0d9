//! The RabbitMQ backend (lapin): confirmed, pipelined publishing to a durable topic exchange,
//! and durable quorum queues per subscription with TTL retry tiers and a dead-letter queue.
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
//!   [`PublishError::Unroutable`], a `basic.nack` the retryable [`PublishError::Nacked`].
//! - **Topology**, declared idempotently by [`Subscriber::declare`] and
//!   [`Subscriber::subscribe`] (again after a consumer reconnects): the durable topic
//!   exchange (at connect); per subscription the quorum queue `{service}.{subscription}`
//!   bound by its routing keys, the quorum queue `{queue}.dlq`, and one classic queue
//!   `{queue}.retry.{n}` per configured delay with `x-message-ttl` = that delay,
//!   `x-dead-letter-exchange = ""` and `x-dead-letter-routing-key = {queue}`, so expired
//!   messages return to the subscription queue without any plugin. A delay a handler asks for
//!   that is not a configured tier gets its own queue `{queue}.retry.{ms}ms`. A queue that
//!   exists with other arguments fails with [`SubscribeError::TopologyMismatch`] naming the
//!   queue and the first differing argument the broker reports. Only what the broker reports
//!   is caught: RabbitMQ 3.10, for one, accepts a retry-tier declaration (classic arguments)
//!   over an existing quorum queue of the same name without a 406.
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
//! - **Reconnecting publishes**: a publish (or declaration) that finds the publish channel
//!   or connection closed opens a new one first (one attempt; when it fails, the publish fails
//!   with the retryable [`PublishError::ConnectionLost`]). Publishes whose confirm was lost
//!   with the old connection fail with `ConnectionLost` too: publish them again with the same
//!   message ID.
//!
//! - **Health**: [`RabbitBroker::health`] tells whether each connection is open
//!   ([`Health::is_ready`]: both).
//!
//! Not yet: waiting out a broker outage up to a caller deadline on a bounded buffer,
//! republishing lost confirms automatically, and RabbitMQ 4.3's
//! `x-delayed-retry-*`.
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
mod topology;
mod wire;

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{FieldTable, LongString};
use lapin::{Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tracing::instrument::WithSubscriber;

pub use self::error::ConnectError;
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
/// `connection.close` reply code for a normal close.
const REPLY_SUCCESS: u16 = 200;

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
        }
    }

    /// The exchange published to.
    pub fn exchange(&self) -> &str {
        &self.inner.exchange
    }

    /// A publisher to the exchange.
    pub fn publisher(&self) -> RabbitPublisher {
        RabbitPublisher {
            inner: self.inner.clone(),
        }
    }

    /// A subscriber that declares and consumes subscription queues.
    pub fn subscriber(&self) -> RabbitSubscriber {
        RabbitSubscriber {
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
    /// consumed, retried, dead-lettered, and reconnects (of consumers and the publish side).
    pub fn metrics(&self) -> Metrics {
        self.inner.telemetry.counters.snapshot()
    }

    /// Whether the publish and consume connections are up right now.
    ///
    /// A dropped connection is re-opened by the next publish or consumer restart, so a
    /// `false` here is transient unless the broker stays unreachable.
    pub async fn health(&self) -> Health {
        let publish = {
            let side = self.inner.publish.lock().await;
            side.connection.status().connected() && side.channel.status().connected()
        };
        let consume = self.inner.consume.lock().await.status().connected();
        Health { publish, consume }
    }

    /// Closes the publish connection, as a network failure would. Publishes waiting for a
    /// confirm fail with the retryable [`PublishError::ConnectionLost`]; the next publish
    /// opens a new connection. For fault-injection tests.
    pub async fn drop_publish_connection(&self) {
        self.inner.drop_publish_connection().await;
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
/// Exchange `domain-events`, app ID `sinew`, 256 publisher confirms in flight.
#[derive(Debug, Clone)]
pub struct RabbitBrokerBuilder {
    uri: String,
    exchange: String,
    app_id: String,
    confirm_window: usize,
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

    /// Connects, puts the publish channel in confirm mode and declares the exchange (durable,
    /// topic).
    ///
    /// # Errors
    ///
    /// [`ConnectError::Config`] for an empty exchange or a zero window,
    /// [`ConnectError::Connection`] when the broker cannot be reached or refuses.
    pub async fn connect(self) -> Result<RabbitBroker, ConnectError> {
        if self.exchange.is_empty() {
            return Err(ConfigError::Missing { field: "exchange" }.into());
        }
        if self.confirm_window == 0 {
            return Err(ConfigError::Zero {
                field: "confirm_window",
            }
            .into());
        }
        let publish = Arc::new(
            connect(&self.uri, &self.app_id, "publish")
                .await
                .map_err(|e| ConnectError::connection("publish connection", e))?,
        );
        let side = PublishSide::open(publish, &self.exchange)
            .await
            .map_err(|(stage, e)| ConnectError::connection(stage, e))?;
        let consume = connect(&self.uri, &self.app_id, "consume")
            .await
            .map_err(|e| ConnectError::connection("consume connection", e))?;
        Ok(RabbitBroker {
            inner: Arc::new(Inner {
                uri: self.uri,
                exchange: self.exchange.clone(),
                app_id: self.app_id,
                publish: tokio::sync::Mutex::new(Arc::new(side)),
                window: Semaphore::new(self.confirm_window),
                consume: tokio::sync::Mutex::new(Arc::new(consume)),
                declared: Mutex::new(BTreeSet::new()),
                telemetry: Telemetry::new("rabbitmq", self.exchange.clone()),
            }),
        })
    }
}

async fn connect(uri: &str, app_id: &str, role: &str) -> Result<Connection, lapin::Error> {
    let properties = ConnectionProperties::default()
        .with_connection_name(LongString::from(format!("{app_id}-{role}")));
    Connection::connect(uri, properties).await
}

/// The publish connection and its channel in confirm mode.
struct PublishSide {
    connection: Arc<Connection>,
    channel: Channel,
}

impl PublishSide {
    /// Opens a channel on `connection`, puts it in confirm mode and declares the exchange
    /// (durable, topic); on failure, says which of these failed.
    async fn open(
        connection: Arc<Connection>,
        exchange: &str,
    ) -> Result<Self, (&'static str, lapin::Error)> {
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| ("publish connection", e))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| ("confirm mode", e))?;
        let options = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        channel
            .exchange_declare(
                exchange.into(),
                ExchangeKind::Topic,
                options,
                FieldTable::default(),
            )
            .await
            .map_err(|e| ("exchange declaration", e))?;
        Ok(Self {
            connection,
            channel,
        })
    }
}

async fn close(channel: &Channel) {
    let _ = channel.close(REPLY_SUCCESS, "OK".into()).await;
}

pub(crate) struct Inner {
    uri: String,
    exchange: String,
    app_id: String,
    publish: tokio::sync::Mutex<Arc<PublishSide>>,
    window: Semaphore,
    consume: tokio::sync::Mutex<Arc<Connection>>,
    declared: Mutex<BTreeSet<String>>,
    telemetry: Telemetry,
}

impl Inner {
    fn declared_lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.declared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A short-lived channel for declarations and `basic.get`, so that a channel error (a
    /// 406 or 404) never closes the publish channel.
    async fn admin_channel(&self) -> Result<Channel, SubscribeError> {
        let side = self
            .publish_side()
            .await
            .map_err(|_| SubscribeError::Connection)?;
        side.connection
            .create_channel()
            .await
            .map_err(|_| SubscribeError::Connection)
    }

    /// The publish side, re-opened first if its connection or channel is closed: a new
    /// channel (confirm mode, exchange re-declared) on a live connection, or a new connection.
    async fn publish_side(&self) -> Result<Arc<PublishSide>, lapin::Error> {
        let mut side = self.publish.lock().await;
        if !side.channel.status().connected() {
            let connection = if side.connection.status().connected() {
                side.connection.clone()
            } else {
                Arc::new(connect(&self.uri, &self.app_id, "publish").await?)
            };
            *side = Arc::new(
                PublishSide::open(connection, &self.exchange)
                    .await
                    .map_err(|(_, e)| e)?,
            );
            tracing::info!(exchange = %self.exchange, "publish channel re-established");
            self.telemetry.counters.reconnected();
        }
        Ok(side.clone())
    }

    async fn drop_publish_connection(&self) {
        let side = self.publish.lock().await.clone();
        let _ = side
            .connection
            .close(REPLY_SUCCESS, "closed by drop_publish_connection".into())
            .await;
    }

    async fn declare(&self, config: &SubscriptionConfig) -> Result<(), SubscribeError> {
        let channel = self.admin_channel().await?;
        let names = topology::declare(&channel, &self.exchange, config).await?;
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

    /// Publishes with `mandatory` and waits for the confirm, within the window.
    async fn publish_to(
        &self,
        exchange: &str,
        routing_key: &str,
        message: &Message,
    ) -> Result<(), PublishError> {
        let _permit = self
            .window
            .acquire()
            .await
            .map_err(|_| PublishError::Closed)?;
        let properties = wire::properties(message, &self.app_id, exchange.is_empty());
        let options = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let side = self
            .publish_side()
            .await
            .map_err(|_| PublishError::ConnectionLost)?;
        let confirm = side
            .channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                options,
                message.body(),
                properties,
            )
            .await
            .map_err(|_| PublishError::ConnectionLost)?;
        match confirm.await.map_err(|_| PublishError::ConnectionLost)? {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(_)) | Confirmation::Nack(Some(_)) => {
                Err(PublishError::Unroutable {
                    exchange: exchange.to_owned(),
                    routing_key: routing_key.to_owned(),
                })
            }
            Confirmation::Nack(None) | Confirmation::NotRequested => Err(PublishError::Nacked),
        }
    }

    /// A channel on the consume connection, reconnecting first if it is closed.
    async fn consume_channel(&self) -> Result<Channel, lapin::Error> {
        let mut connection = self.consume.lock().await;
        if !connection.status().connected() {
            *connection = Arc::new(connect(&self.uri, &self.app_id, "consume").await?);
            tracing::info!(exchange = %self.exchange, "consume connection re-established");
        }
        connection.create_channel().await
    }

    async fn drop_consume_connection(&self) {
        let connection = self.consume.lock().await.clone();
        let _ = connection
            .close(REPLY_SUCCESS, "closed by drop_consume_connection".into())
            .await;
    }
}

/// Publishes to a [`RabbitBroker`]'s exchange with confirms; see the [module docs](self).
///
/// `publish_batch` publishes the whole batch concurrently, so its confirms are pipelined
/// within the window.
#[derive(Clone)]
pub struct RabbitPublisher {
    inner: Arc<Inner>,
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
        let inner = &self.inner;
        telemetry::publish(&inner.telemetry, message, |m| async move {
            inner.publish_to(&inner.exchange, m.routing_key(), &m).await
        })
        .await
    }
}

/// Declares and consumes a [`RabbitBroker`]'s subscription queues.
#[derive(Clone)]
pub struct RabbitSubscriber {
    inner: Arc<Inner>,
}

impl fmt::Debug for RabbitSubscriber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitSubscriber")
            .field("exchange", &self.inner.exchange)
            .finish_non_exhaustive()
    }
}

impl Subscriber for RabbitSubscriber {
    type Subscription = RabbitSubscription;

    async fn declare(&self, config: &SubscriptionConfig) -> Result<(), SubscribeError> {
        self.inner.declare(config).await
    }

    async fn subscribe<H: Handler>(
        &self,
        config: SubscriptionConfig,
        handler: H,
    ) -> Result<RabbitSubscription, SubscribeError> {
        self.inner.declare(&config).await?;
        let queue = config.queue();
        let (stop, stop_rx) = watch::channel(None);
        let started = consumer::start(self.inner.clone(), config, handler, stop_rx).await?;
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
                    forwarded = self.inner.publish_to("", queue, &message).await;
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
                message: wire::message(&m.delivery),
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
            let mut message = wire::message(&got.delivery);
            message
                .headers_mut()
                .retain(|name, _| !name.starts_with("messaging-"));
            if self.inner.publish_to("", queue, &message).await.is_err() {
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
