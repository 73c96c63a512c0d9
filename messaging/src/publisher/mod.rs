//! Publishing messages.
//!
//! A [`Publisher`] resolves [`publish`](Publisher::publish) only once the backend has durably
//! accepted the message (a RabbitMQ backend: the broker's publisher confirm, pipelined; the
//! memory backend: the message sits in every bound queue). A message that matches no binding
//! is an error ([`PublishError::Unroutable`]), never a silent drop.
//!
//! ```
//! use sinew_messaging::envelope::Event;
//! use sinew_messaging::memory::MemoryBroker;
//! use sinew_messaging::publisher::{PublishError, Publisher};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let broker = MemoryBroker::new();
//! let message = Event::new("order.placed", "order-1", 42).to_message("shop").unwrap();
//! // Nobody has bound a queue to `order.placed` yet.
//! let err = broker.publisher().publish(message).await.unwrap_err();
//! assert!(matches!(err, PublishError::Unroutable { .. }));
//! # }
//! ```

pub mod error;

use std::future::Future;

use futures_util::future::join_all;

pub use self::error::PublishError;
use crate::envelope::Message;

/// Sends messages to a topic exchange.
///
/// A RabbitMQ implementation publishes with `mandatory` and persistent delivery on a channel in
/// confirm mode, with a bounded window of confirms in flight, and maps `basic.return` to
/// [`PublishError::Unroutable`] and a `basic.nack` or lost confirm to a retryable error.
pub trait Publisher: Send + Sync {
    /// Publishes one message; resolves once the backend has durably accepted it.
    ///
    /// # Errors
    ///
    /// [`PublishError`]; [`PublishError::is_retryable`] tells whether publishing the same
    /// message again (same message ID) may succeed.
    fn publish(&self, message: Message) -> impl Future<Output = Result<(), PublishError>> + Send;

    /// Publishes many messages, pipelined, and reports each one's result in order.
    ///
    /// The default publishes them all concurrently with [`publish`](Publisher::publish).
    fn publish_batch(
        &self,
        messages: Vec<Message>,
    ) -> impl Future<Output = Vec<Result<(), PublishError>>> + Send {
        join_all(messages.into_iter().map(|m| self.publish(m)))
    }
}
