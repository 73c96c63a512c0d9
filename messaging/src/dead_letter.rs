//! Dead letters: the headers they carry, and listing and replaying them.
//!
//! A dead-lettered message keeps its body, routing key and headers and gains the
//! [`headers`] below (no `x-` prefix, which RabbitMQ maps to AMQP 1.0 annotations).
//! [`DeadLetters::replay`] moves messages from `{queue}.dlq` back to `{queue}` with a fresh
//! attempt count.
//!
//! ```
//! use sinew_messaging::dead_letter::DeadLetters;
//! use sinew_messaging::memory::MemoryBroker;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let broker = MemoryBroker::new();
//! // An unknown queue is an error, not an empty list.
//! assert!(broker.dead_letters().list("email.welcome", 10).await.is_err());
//! # }
//! ```

use std::future::Future;

use thiserror::Error;

use crate::envelope::Message;

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
}
