//! Outbox errors.

use crate::envelope::EncodeError;

/// Why an outbox operation failed.
///
/// The `Display` text is meant for people and is not part of the API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// The event's payload does not serialize; nothing was written.
    #[error("the event cannot be encoded")]
    Encode(#[from] EncodeError),
    /// The database failed (connection, statement or transaction). An `enqueue` that fails
    /// aborts the caller's transaction, as any failed statement does: roll it back.
    #[error("outbox database error")]
    Database(#[from] sqlx::Error),
    /// A stored row's headers are not a JSON object of strings (the row was edited by hand).
    #[error("outbox row {id} has malformed headers")]
    MalformedRow {
        /// The row ID.
        id: i64,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
}
