//! Inbox errors.

/// Why an [`Inbox`](super::Inbox) operation failed.
///
/// The `Display` text is meant for people and is not part of the API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InboxError {
    /// The subscription or event ID is empty.
    #[error("inbox key has an empty {0}")]
    EmptyKey(&'static str),
    /// The database failed (connection, query or transaction).
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    #[error("inbox database error")]
    Database(#[from] sqlx::Error),
}

pub(crate) fn check_key(subscription: &str, event_id: &str) -> Result<(), InboxError> {
    if subscription.is_empty() {
        return Err(InboxError::EmptyKey("subscription"));
    }
    if event_id.is_empty() {
        return Err(InboxError::EmptyKey("event ID"));
    }
    Ok(())
}
