//! Errors of publishing.
//!
//! The `Display` text of these errors is meant for people and is not part of the API.

use std::time::Duration;

use thiserror::Error;

/// Why a publish failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PublishError {
    /// No binding matches the routing key (RabbitMQ: `basic.return` 312 `NO_ROUTE`).
    #[error("no queue is bound to routing key `{routing_key}` on exchange `{exchange}`")]
    Unroutable {
        /// The exchange.
        exchange: String,
        /// The routing key.
        routing_key: String,
    },
    /// The backend refused the message (RabbitMQ: `basic.nack`); publishing again may work.
    #[error("the broker refused the message")]
    Nacked,
    /// The connection was lost before the backend confirmed the message; it may or may not
    /// have been accepted, so publish it again with the same message ID.
    #[error("connection lost before the message was confirmed")]
    ConnectionLost,
    /// A bound queue is at its length limit; publishing again later may work.
    #[error("queue `{queue}` is full")]
    QueueFull {
        /// The full queue.
        queue: String,
    },
    /// The broker stayed unreachable, or did not confirm the message, until the publish
    /// deadline passed. The message may or may not have been accepted: publish it again with
    /// the same message ID (consumers deduplicate by it), or raise the deadline.
    #[error("the broker did not confirm the message within {deadline:?}; publish it again")]
    DeadlineExceeded {
        /// The deadline that passed.
        deadline: Duration,
    },
    /// The broker is unreachable and the bounded buffer of publishes waiting for it is full;
    /// nothing was sent. Publish again later, or raise the buffer size.
    #[error("{capacity} publishes already wait for the broker to come back; try again later")]
    BufferFull {
        /// The buffer's capacity.
        capacity: usize,
    },
    /// The publisher was closed.
    #[error("the publisher is closed")]
    Closed,
}

impl PublishError {
    /// Whether publishing the same message again may succeed.
    pub const fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Nacked
                | Self::ConnectionLost
                | Self::QueueFull { .. }
                | Self::DeadlineExceeded { .. }
                | Self::BufferFull { .. }
        )
    }
}
