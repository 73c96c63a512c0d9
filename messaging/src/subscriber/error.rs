//! Errors of subscribing.
//!
//! The `Display` text of these errors is meant for people and is not part of the API.

use thiserror::Error;

/// Why a subscription could not be declared or started.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SubscribeError {
    /// The backend is shut down.
    #[error("the broker is closed")]
    Closed,
    /// A queue exists with arguments that differ from the declared ones.
    #[error("queue `{queue}` exists with a different `{argument}`")]
    TopologyMismatch {
        /// The queue.
        queue: String,
        /// The differing argument.
        argument: String,
    },
    /// The connection to the broker failed.
    #[error("cannot reach the broker")]
    Connection,
}
