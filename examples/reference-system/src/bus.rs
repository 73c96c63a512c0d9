//! The event bus: the in-memory broker by default, RabbitMQ when `AMQP_URL` is set (feature
//! `rabbitmq`). Tracing comes from `sinew-messaging`'s `opentelemetry` feature: its publish
//! span (a child of the current span) writes `traceparent` into the headers, and each
//! consumer's process span is a child of that context, so one trace runs from the gateway to
//! the last consumer. The bus adds the correlation ID to the headers and puts it back in scope
//! around handlers ([`correlated`]).

use std::time::Duration;

use serde::Serialize;
use sinew_messaging::dead_letter::{DeadLetter, DeadLetterError, DeadLetters};
use sinew_messaging::envelope::CORRELATION_ID;
use sinew_messaging::memory::{MemoryBroker, MemorySubscription};
use sinew_messaging::subscriber::SubscribeError;
use sinew_messaging::{
    Delivery, Event, Handler, HandlerError, Outcome, PublishError, Publisher, Subscriber,
    Subscription, SubscriptionConfig,
};
use sinew_tracing_kit::correlation;

use crate::system::SystemConfig;

/// The exchange every service publishes domain events to.
pub const EXCHANGE: &str = "domain-events";

/// The messaging backend.
#[derive(Clone, Debug)]
enum Backend {
    Memory(MemoryBroker),
    #[cfg(feature = "rabbitmq")]
    Rabbit(sinew_messaging::rabbitmq::RabbitBroker),
}

/// The event bus: a backend and a namespace. The namespace (`BUS_NAMESPACE`, empty by
/// default) prefixes the exchange and every queue, so that several systems (or test runs)
/// can share one RabbitMQ.
#[derive(Clone, Debug)]
pub struct Bus {
    backend: Backend,
    namespace: String,
}

/// A running subscription on either backend.
#[derive(Debug)]
pub enum BusSubscription {
    /// On the memory broker.
    Memory(MemorySubscription),
    /// On RabbitMQ.
    #[cfg(feature = "rabbitmq")]
    Rabbit(sinew_messaging::rabbitmq::RabbitSubscription),
}

/// Why the bus could not start.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// `AMQP_URL` is set but the binary was built without the `rabbitmq` feature.
    #[error(
        "AMQP_URL is set but this binary was built without feature `rabbitmq`; rebuild with `--features rabbitmq`"
    )]
    NoRabbit,
    /// RabbitMQ refused the connection.
    #[cfg(feature = "rabbitmq")]
    #[error("cannot connect to RabbitMQ")]
    Connect(#[source] sinew_messaging::rabbitmq::ConnectError),
    /// Encoding the event failed.
    #[error("cannot encode the event")]
    Encode(#[source] sinew_messaging::envelope::EncodeError),
    /// The broker refused the message.
    #[error("the broker refused the message")]
    Publish(#[source] PublishError),
}

impl Bus {
    /// The in-memory broker, without a namespace.
    pub fn memory() -> Self {
        Self {
            backend: Backend::Memory(MemoryBroker::builder().exchange(EXCHANGE).build()),
            namespace: String::new(),
        }
    }

    /// RabbitMQ at `config.amqp_url` when given (subscription queues of
    /// `config.queue_type`), the memory broker otherwise; `config.bus_namespace` prefixes the
    /// exchange and the queues (characters `[A-Za-z0-9_.-]`).
    ///
    /// # Errors
    ///
    /// [`BusError`] when RabbitMQ cannot be reached or the feature is missing.
    pub async fn connect(config: &SystemConfig, app_id: &str) -> Result<Self, BusError> {
        let namespace = config.bus_namespace.as_str();
        let exchange = format!("{namespace}{EXCHANGE}");
        let backend = match config.amqp_url.as_deref() {
            None => Backend::Memory(MemoryBroker::builder().exchange(exchange).build()),
            #[cfg(feature = "rabbitmq")]
            Some(url) => sinew_messaging::rabbitmq::RabbitBroker::builder(url)
                .exchange(exchange)
                .app_id(app_id)
                .queue_type(config.queue_type)
                .connect()
                .await
                .map(Backend::Rabbit)
                .map_err(BusError::Connect)?,
            #[cfg(not(feature = "rabbitmq"))]
            Some(_) => {
                let _ = (app_id, exchange);
                return Err(BusError::NoRabbit);
            }
        };
        Ok(Self {
            backend,
            namespace: namespace.to_owned(),
        })
    }

    /// The backend's name, as `messaging.system` on spans.
    pub const fn system(&self) -> &'static str {
        match self.backend {
            Backend::Memory(_) => "memory",
            #[cfg(feature = "rabbitmq")]
            Backend::Rabbit(_) => "rabbitmq",
        }
    }

    /// The queue name of subscription `name` of `service`: `{namespace}{service}.{name}`.
    pub fn queue(&self, service: &str, name: &str) -> String {
        format!("{}{service}.{name}", self.namespace)
    }

    /// A subscription configuration with the system's retry policy (three quick attempts,
    /// then the dead-letter queue), for queue [`queue(service, name)`](Self::queue).
    ///
    /// # Errors
    ///
    /// [`sinew_messaging::ConfigError`] when the names are invalid.
    pub fn subscription(
        &self,
        service: &str,
        name: &str,
        routing_keys: &[&str],
    ) -> Result<SubscriptionConfig, sinew_messaging::ConfigError> {
        let mut builder = SubscriptionConfig::builder(format!("{}{service}", self.namespace), name)
            .prefetch(16)
            .in_process_retries(2)
            .in_process_backoff(Duration::from_millis(20))
            .delayed_retries([])
            .max_attempts(3);
        for key in routing_keys {
            builder = builder.routing_key(*key);
        }
        builder.build()
    }

    /// Publishes `event` from `source` (in a producer span of `sinew-messaging` that writes
    /// the trace context into the headers), with the current correlation ID.
    ///
    /// # Errors
    ///
    /// [`BusError`] when the event cannot be encoded or the broker refuses it.
    pub async fn publish<T: Serialize>(
        &self,
        source: &str,
        event: Event<T>,
    ) -> Result<(), BusError> {
        let message = self.message(source, event)?;
        self.publish_message(message).await
    }

    /// `event` as a message from `source`, with the current correlation ID in its headers
    /// (for [`publish_message`](Self::publish_message) or an outbox).
    ///
    /// # Errors
    ///
    /// [`BusError::Encode`] when the event cannot be encoded.
    pub fn message<T: Serialize>(
        &self,
        source: &str,
        event: Event<T>,
    ) -> Result<sinew_messaging::Message, BusError> {
        let mut message = event.to_message(source).map_err(BusError::Encode)?;
        if let Some(id) = correlation::current()
            && message.header(CORRELATION_ID).is_none()
        {
            message = message.with_header(CORRELATION_ID, id.as_str());
        }
        Ok(message)
    }

    /// Publishes a raw message (used for poison events in the demo).
    ///
    /// # Errors
    ///
    /// [`BusError::Publish`] when the broker refuses it.
    pub async fn publish_message(&self, message: sinew_messaging::Message) -> Result<(), BusError> {
        let result = match &self.backend {
            Backend::Memory(b) => b.publisher().publish(message).await,
            #[cfg(feature = "rabbitmq")]
            Backend::Rabbit(b) => b.publisher().publish(message).await,
        };
        result.map_err(BusError::Publish)
    }

    /// Declares the queue without consuming, so events are kept until a consumer starts.
    ///
    /// # Errors
    ///
    /// [`SubscribeError`] when the topology cannot be declared.
    pub async fn declare(&self, config: &SubscriptionConfig) -> Result<(), SubscribeError> {
        match &self.backend {
            Backend::Memory(b) => b.subscriber().declare(config).await,
            #[cfg(feature = "rabbitmq")]
            Backend::Rabbit(b) => b.subscriber().declare(config).await,
        }
    }

    /// Starts consuming with `handler`.
    ///
    /// # Errors
    ///
    /// [`SubscribeError`] when the topology cannot be declared or the consumer not started.
    pub async fn subscribe<H: Handler>(
        &self,
        config: SubscriptionConfig,
        handler: H,
    ) -> Result<BusSubscription, SubscribeError> {
        match &self.backend {
            Backend::Memory(b) => b
                .subscriber()
                .subscribe(config, handler)
                .await
                .map(BusSubscription::Memory),
            #[cfg(feature = "rabbitmq")]
            Backend::Rabbit(b) => b
                .subscriber()
                .subscribe(config, handler)
                .await
                .map(BusSubscription::Rabbit),
        }
    }

    /// Whether `queue` has nothing ready, delayed or unsettled; `None` when the backend
    /// cannot tell cheaply (RabbitMQ) or the queue is unknown. For tests and the demo.
    pub fn is_settled(&self, queue: &str) -> Option<bool> {
        match &self.backend {
            Backend::Memory(b) => b
                .queue_stats(queue)
                .map(|s| s.ready == 0 && s.delayed == 0 && s.unacked == 0),
            #[cfg(feature = "rabbitmq")]
            Backend::Rabbit(_) => None,
        }
    }

    /// Up to `limit` dead letters of subscription queue `queue`.
    ///
    /// # Errors
    ///
    /// [`DeadLetterError`] when the queue is unknown or the broker unreachable.
    pub async fn dead_letters(
        &self,
        queue: &str,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, DeadLetterError> {
        match &self.backend {
            Backend::Memory(b) => b.dead_letters().list(queue, limit).await,
            #[cfg(feature = "rabbitmq")]
            Backend::Rabbit(b) => b.dead_letters().list(queue, limit).await,
        }
    }

    /// Moves up to `limit` dead letters of `queue` back to it; returns how many moved.
    ///
    /// # Errors
    ///
    /// [`DeadLetterError`] when the queue is unknown or the broker unreachable.
    pub async fn replay(&self, queue: &str, limit: usize) -> Result<usize, DeadLetterError> {
        match &self.backend {
            Backend::Memory(b) => b.dead_letters().replay(queue, limit).await,
            #[cfg(feature = "rabbitmq")]
            Backend::Rabbit(b) => b.dead_letters().replay(queue, limit).await,
        }
    }
}

/// The bus publishes through whichever backend it has (the outbox relay uses this).
impl Publisher for Bus {
    async fn publish(&self, message: sinew_messaging::Message) -> Result<(), PublishError> {
        match &self.backend {
            Backend::Memory(b) => b.publisher().publish(message).await,
            #[cfg(feature = "rabbitmq")]
            Backend::Rabbit(b) => b.publisher().publish(message).await,
        }
    }
}

impl BusSubscription {
    /// Stops consuming, letting in-flight handlers finish for up to `deadline`.
    pub async fn shutdown(self, deadline: Duration) {
        match self {
            Self::Memory(s) => {
                s.shutdown(deadline).await;
            }
            #[cfg(feature = "rabbitmq")]
            Self::Rabbit(s) => {
                s.shutdown(deadline).await;
            }
        }
    }
}

/// Wraps a handler so that each delivery runs with the producer's correlation ID in scope
/// (a fresh one when the message carries none). The span around it is `sinew-messaging`'s.
#[derive(Debug, Clone)]
pub struct Correlated<H> {
    inner: H,
}

/// See [`Correlated`].
pub const fn correlated<H>(inner: H) -> Correlated<H> {
    Correlated { inner }
}

impl<H: Handler> Handler for Correlated<H> {
    async fn handle(&self, delivery: Delivery) -> Result<Outcome, HandlerError> {
        let id = delivery
            .message()
            .header(CORRELATION_ID)
            .and_then(|v| correlation::CorrelationId::parse(v).ok())
            .unwrap_or_else(correlation::CorrelationId::generate);
        correlation::scope(id, self.inner.handle(delivery)).await
    }

    fn name(&self) -> &str {
        self.inner.name()
    }
}
