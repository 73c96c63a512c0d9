//! Dead letters: the headers they carry, and listing and replaying them.
//!
//! A dead-lettered message keeps its body, routing key and headers and gains the
//! [`headers`] below (no `x-` prefix, which RabbitMQ maps to AMQP 1.0 annotations).
//! [`DeadLetters::replay`] moves messages from `{queue}.dlq` back to `{queue}` with a fresh
//! attempt count; [`DeadLetters::replay_message`] and [`DeadLetters::discard_message`] act on
//! one dead letter, picked by its message ID (the event ID) from [`DeadLetters::list`]. This is
//! the library side of an operator's "list / replay / discard dead letters" command.
//!
//! ```
//! use std::time::Duration;
//! use sinew_messaging::dead_letter::DeadLetters;
//! use sinew_messaging::memory::MemoryBroker;
//! use sinew_messaging::subscriber::{handler_fn, Delivery, HandlerError, Subscription};
//! use sinew_messaging::{Event, Publisher, Subscriber, SubscriptionConfig};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let broker = MemoryBroker::new();
//! // An unknown queue is an error, not an empty list.
//! assert!(broker.dead_letters().list("email.welcome", 10).await.is_err());
//!
//! let config = SubscriptionConfig::builder("email", "welcome").routing_key("user.created").build()?;
//! let sub = broker
//!     .subscriber()
//!     .subscribe(config, handler_fn("welcome-mail", |_d: Delivery| async {
//!         Err(HandlerError::permanent(std::io::Error::other("no such template")))
//!     }))
//!     .await?;
//! broker.publisher().publish(Event::new("user.created", "u-1", 1).to_message("accounts")?).await?;
//! let dead = broker.dead_letters();
//! # while dead.list("email.welcome", 1).await?.is_empty() { tokio::time::sleep(Duration::from_millis(5)).await; }
//! sub.shutdown(Duration::from_secs(5)).await;
//!
//! // What an operator's `dlq list email.welcome` shows …
//! let letters = dead.list("email.welcome", 100).await?;
//! assert_eq!(letters[0].error_type(), Some("permanent"));
//! assert_eq!(letters[0].handler(), Some("welcome-mail"));
//! // … and `dlq replay email.welcome <id>` (or `dlq discard …`) does.
//! assert!(dead.replay_message("email.welcome", letters[0].message_id()).await?);
//! assert!(dead.list("email.welcome", 100).await?.is_empty());
//! # Ok(()) }
//! ```
//!
//! On RabbitMQ, [`list`](DeadLetters::list) and the `*_message` methods read `{queue}.dlq`
//! with `basic.get` and return what they do not take by closing their channel. RabbitMQ 4's
//! quorum queues count such returns toward `x-delivery-limit` (20 unless set), so a dead
//! letter listed very often could eventually be dropped there; RabbitMQ 3.x (the version
//! tested here) has no default limit.

use std::future::Future;

use thiserror::Error;

use crate::envelope::{Message, Timestamp};

/// The names of the headers written on dead letters and retried messages.
pub mod headers {
    /// Why the message was dead-lettered: `transient`/`retries-exhausted`, `permanent`,
    /// `decode` or `rejected` (the handler returned `Outcome::DeadLetter`).
    pub const ERROR_TYPE: &str = "messaging-error-type";
    /// The error's text, or the handler's reason.
    pub const ERROR_MESSAGE: &str = "messaging-error-message";
    /// The handler's name.
    pub const HANDLER: &str = "messaging-handler";
    /// Handler attempts so far.
    pub const ATTEMPTS: &str = "messaging-attempts";
    /// Delayed retries so far.
    pub const DELAYED_RETRIES: &str = "messaging-delayed-retries";
    /// When the first attempt failed, RFC 3339.
    pub const FIRST_FAILURE: &str = "messaging-first-failure";
    /// The routing key the message was published with.
    pub const ORIGINAL_ROUTING_KEY: &str = "messaging-original-routing-key";
    /// The exchange the message was published to.
    pub const ORIGINAL_EXCHANGE: &str = "messaging-original-exchange";
}

/// A message in a dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub(crate) message: Message,
}

impl DeadLetter {
    /// The message, with its failure headers.
    pub const fn message(&self) -> &Message {
        &self.message
    }

    /// `messaging-error-type`.
    pub fn error_type(&self) -> Option<&str> {
        self.message.header(headers::ERROR_TYPE)
    }

    /// `messaging-error-message`.
    pub fn error_message(&self) -> Option<&str> {
        self.message.header(headers::ERROR_MESSAGE)
    }

    /// `messaging-handler`.
    pub fn handler(&self) -> Option<&str> {
        self.message.header(headers::HANDLER)
    }

    /// `messaging-attempts`.
    pub fn attempts(&self) -> Option<u32> {
        self.message.header(headers::ATTEMPTS)?.parse().ok()
    }

    /// `messaging-original-routing-key`.
    pub fn original_routing_key(&self) -> Option<&str> {
        self.message.header(headers::ORIGINAL_ROUTING_KEY)
    }

    /// `messaging-original-exchange`.
    pub fn original_exchange(&self) -> Option<&str> {
        self.message.header(headers::ORIGINAL_EXCHANGE)
    }

    /// `messaging-first-failure`: when the first attempt failed.
    pub fn first_failure(&self) -> Option<Timestamp> {
        self.message.header(headers::FIRST_FAILURE)?.parse().ok()
    }

    /// `messaging-delayed-retries`: how many delayed retries it went through.
    pub fn delayed_retries(&self) -> Option<u32> {
        self.message.header(headers::DELAYED_RETRIES)?.parse().ok()
    }

    /// The message ID (the event ID), which [`DeadLetters::replay_message`] and
    /// [`DeadLetters::discard_message`] take.
    pub fn message_id(&self) -> &str {
        self.message.message_id()
    }
}

/// Why a dead-letter operation failed.
///
/// The `Display` text is meant for people and is not part of the API.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DeadLetterError {
    /// No such queue has been declared.
    #[error("queue `{queue}` does not exist")]
    UnknownQueue {
        /// The queue.
        queue: String,
    },
    /// The connection to the broker failed.
    #[error("cannot reach the broker")]
    Connection,
}

/// Lists and replays the dead letters of a subscription queue.
pub trait DeadLetters: Send + Sync {
    /// Up to `limit` dead letters of `queue` (the subscription queue, not the `.dlq`), oldest
    /// first, without removing them.
    ///
    /// # Errors
    ///
    /// [`DeadLetterError::UnknownQueue`] when `queue` was never declared.
    fn list(
        &self,
        queue: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<DeadLetter>, DeadLetterError>> + Send;

    /// Moves up to `limit` dead letters of `queue`, oldest first, back to `queue`, clearing
    /// the `messaging-*` headers so they get a full set of attempts. Returns how many moved.
    ///
    /// # Errors
    ///
    /// [`DeadLetterError::UnknownQueue`] when `queue` was never declared.
    fn replay(
        &self,
        queue: &str,
        limit: usize,
    ) -> impl Future<Output = Result<usize, DeadLetterError>> + Send;

    /// Moves the dead letter of `queue` with message ID `message_id` back to `queue`, as
    /// [`replay`](Self::replay) does. Returns whether it was there.
    ///
    /// # Errors
    ///
    /// [`DeadLetterError::UnknownQueue`] when `queue` was never declared.
    fn replay_message(
        &self,
        queue: &str,
        message_id: &str,
    ) -> impl Future<Output = Result<bool, DeadLetterError>> + Send;

    /// Deletes the dead letter of `queue` with message ID `message_id` for good. Returns
    /// whether it was there.
    ///
    /// # Errors
    ///
    /// [`DeadLetterError::UnknownQueue`] when `queue` was never declared.
    fn discard_message(
        &self,
        queue: &str,
        message_id: &str,
    ) -> impl Future<Output = Result<bool, DeadLetterError>> + Send;
}
