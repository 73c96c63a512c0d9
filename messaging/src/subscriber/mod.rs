//! Consuming messages: subscriptions, handlers and their explicit outcomes.
//!
//! A subscription is a durable queue `{service}.{subscription}` bound to the exchange by topic
//! patterns ([`SubscriptionConfig`]). Its [`Handler`] returns an explicit [`Outcome`] or a
//! [`HandlerError`] classified [transient, permanent or decode](ErrorKind). The failure policy
//! is the same on every backend:
//!
//! 1. [`Outcome::Ack`] acknowledges the message (only now: acks follow handler success);
//! 2. a transient error is retried in process a few times with jittered, doubling waits, then
//!    re-delivered after each of the configured delays (RabbitMQ: TTL tier queues);
//! 3. once `max_attempts` is reached, or on a permanent or decode error, or on
//!    [`Outcome::DeadLetter`], the message moves to `{queue}.dlq` with the
//!    [failure headers](crate::dead_letter::headers), and the queue moves on. A poison message
//!    neither blocks the others nor loops.
//!
//! ```
//! use std::time::Duration;
//! use sinew_messaging::envelope::Event;
//! use sinew_messaging::memory::MemoryBroker;
//! use sinew_messaging::publisher::Publisher;
//! use sinew_messaging::subscriber::{
//!     handler_fn, Delivery, HandlerError, Outcome, Subscriber, Subscription, SubscriptionConfig,
//! };
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let broker = MemoryBroker::new();
//! let config = SubscriptionConfig::builder("email", "welcome")
//!     .routing_key("user.*")
//!     .build()?;
//! let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
//! let subscription = broker
//!     .subscriber()
//!     .subscribe(config, handler_fn("welcome-mail", move |d: Delivery| {
//!         let tx = tx.clone();
//!         async move {
//!             let event = d.decode::<String>()?; // a decode error dead-letters at once
//!             tx.send(event.into_data()).map_err(HandlerError::transient)?;
//!             Ok(Outcome::Ack)
//!         }
//!     }))
//!     .await?;
//! broker.publisher().publish(Event::new("user.created", "u-1", "ada".to_owned()).to_message("accounts")?).await?;
//! assert_eq!(rx.recv().await.as_deref(), Some("ada"));
//! let report = subscription.shutdown(Duration::from_secs(5)).await;
//! assert!(report.drained());
//! # Ok(()) }
//! ```

mod config;
mod delivery;
pub mod error;
mod outcome;
#[cfg_attr(
    not(any(feature = "memory", feature = "rabbitmq")),
    allow(
        dead_code,
        reason = "the failure policy is used by the backends, all behind features"
    )
)]
pub(crate) mod process;

use std::fmt;
use std::future::Future;
use std::time::Duration;

pub use self::config::{ConsumerTrace, SubscriptionConfig, SubscriptionConfigBuilder};
pub use self::delivery::Delivery;
pub use self::error::SubscribeError;
pub use self::outcome::{ErrorKind, HandlerError, Outcome};

/// Handles deliveries of one subscription.
pub trait Handler: Send + Sync + 'static {
    /// Handles one delivery. Called again for each retry.
    fn handle(
        &self,
        delivery: Delivery,
    ) -> impl Future<Output = Result<Outcome, HandlerError>> + Send;

    /// The name written to the `messaging-handler` header of dead letters.
    fn name(&self) -> &str {
        std::any::type_name::<Self>()
    }
}

/// A [`Handler`] made of a name and an async closure; see [`handler_fn`].
#[derive(Clone)]
pub struct HandlerFn<F> {
    name: String,
    f: F,
}

impl<F> fmt::Debug for HandlerFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerFn")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Makes a [`Handler`] from a closure `Fn(Delivery) -> impl Future<Output = Result<Outcome,
/// HandlerError>>`.
pub fn handler_fn<F, Fut>(name: impl Into<String>, f: F) -> HandlerFn<F>
where
    F: Fn(Delivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Outcome, HandlerError>> + Send,
{
    HandlerFn {
        name: name.into(),
        f,
    }
}

impl<F, Fut> Handler for HandlerFn<F>
where
    F: Fn(Delivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Outcome, HandlerError>> + Send,
{
    fn handle(
        &self,
        delivery: Delivery,
    ) -> impl Future<Output = Result<Outcome, HandlerError>> + Send {
        (self.f)(delivery)
    }

    fn name(&self) -> &str {
        &self.name
    }
}

/// Declares subscription queues and starts consumers on them.
///
/// A RabbitMQ implementation declares the quorum queue, its bindings, retry tiers and DLQ
/// idempotently (again after every reconnect), applies `basic.qos(prefetch)`, and settles
/// each delivery on the channel that received it as the crate's shared failure policy
/// decides (ack, republish to a retry tier then ack, or dead-letter then ack).
pub trait Subscriber: Send + Sync {
    /// The running consumer's handle.
    type Subscription: Subscription;

    /// Declares the queue, its bindings and its dead-letter queue without consuming, so that
    /// messages published from now on are kept until a consumer starts. Idempotent.
    ///
    /// # Errors
    ///
    /// [`SubscribeError`] when the topology cannot be declared.
    fn declare(
        &self,
        config: &SubscriptionConfig,
    ) -> impl Future<Output = Result<(), SubscribeError>> + Send;

    /// Declares the topology and starts consuming with `handler`. Several subscriptions with
    /// the same configuration are competing consumers of one queue.
    ///
    /// # Errors
    ///
    /// [`SubscribeError`] when the topology cannot be declared or the consumer not started.
    fn subscribe<H: Handler>(
        &self,
        config: SubscriptionConfig,
        handler: H,
    ) -> impl Future<Output = Result<Self::Subscription, SubscribeError>> + Send;
}

/// A running consumer.
pub trait Subscription: Send + 'static {
    /// Stops taking messages, lets in-flight handlers finish for up to `deadline`, then stops
    /// the rest; every message not settled goes back to the queue (marked redelivered).
    fn shutdown(self, deadline: Duration) -> impl Future<Output = ShutdownReport> + Send;
}

/// What a [`Subscription::shutdown`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    pub(crate) drained: bool,
    pub(crate) requeued: usize,
}

impl ShutdownReport {
    /// Whether every in-flight handler finished before the deadline.
    pub const fn drained(&self) -> bool {
        self.drained
    }

    /// How many unsettled messages went back to the queue.
    pub const fn requeued(&self) -> usize {
        self.requeued
    }
}

/// Default deadline callers may use for [`Subscription::shutdown`].
pub const DEFAULT_SHUTDOWN_DEADLINE: Duration = Duration::from_secs(30);
