//! Idempotent consumers: an [`Inbox`] remembers which events a subscription has handled, keyed
//! by (subscription, event ID), so a redelivered duplicate is acknowledged without running its
//! side effects again.
//!
//! Brokers deliver at least once: a consumer connection that drops while a handler runs gets
//! the message redelivered even though the handler may have finished its work. Two ways to
//! drop such duplicates:
//!
//! - wrap the handler in [`Deduplicate`]: it records the delivery's message ID (the event ID)
//!   before running the handler, acknowledges deliveries it has already recorded, and forgets
//!   the record again when the handler does not acknowledge, so retries still run;
//! - with the `postgres` feature, record the event in the handler's own database transaction
//!   with [`PgInbox::record_in`](postgres::PgInbox::record_in): the inbox row commits or rolls
//!   back together with the handler's writes, which gives effectively-once effects even across
//!   processes and crashes.
//!
//! [`MemoryInbox`] keeps its records in process memory (for tests and single-process
//! applications whose effects are in memory too).
//!
//! ```
//! use sinew_messaging::inbox::{Deduplicate, MemoryInbox};
//! use sinew_messaging::memory::MemoryBroker;
//! use sinew_messaging::subscriber::{handler_fn, Delivery, Outcome, Subscriber, SubscriptionConfig};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let broker = MemoryBroker::new();
//! let config = SubscriptionConfig::builder("email", "welcome").routing_key("user.*").build()?;
//! let handler = handler_fn("welcome-mail", |_d: Delivery| async { Ok(Outcome::Ack) });
//! let inbox = MemoryInbox::new(100_000);
//! let _subscription = broker
//!     .subscriber()
//!     .subscribe(config, Deduplicate::new(handler, inbox))
//!     .await?;
//! # Ok(()) }
//! ```

mod dedup;
mod error;
mod memory;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use self::dedup::Deduplicate;
pub use self::error::InboxError;
pub use self::memory::MemoryInbox;

/// Records which events each subscription has seen.
pub trait Inbox: Send + Sync {
    /// Records `event_id` for `subscription`. Returns `true` the first time the pair is
    /// recorded and `false` for a duplicate.
    ///
    /// # Errors
    ///
    /// [`InboxError`] when the store fails.
    fn record(
        &self,
        subscription: &str,
        event_id: &str,
    ) -> impl Future<Output = Result<bool, InboxError>> + Send;

    /// Removes the record of `event_id` for `subscription`, so that the event counts as new
    /// again; [`Deduplicate`] calls it when the handler did not acknowledge. Returns whether a
    /// record was removed.
    ///
    /// # Errors
    ///
    /// [`InboxError`] when the store fails.
    fn forget(
        &self,
        subscription: &str,
        event_id: &str,
    ) -> impl Future<Output = Result<bool, InboxError>> + Send;

    /// Retention: removes the records older than `age` and returns how many were removed.
    /// A duplicate that arrives after its record was purged is treated as new.
    ///
    /// # Errors
    ///
    /// [`InboxError`] when the store fails.
    fn purge_older_than(
        &self,
        age: Duration,
    ) -> impl Future<Output = Result<u64, InboxError>> + Send;
}

impl<I: Inbox> Inbox for Arc<I> {
    fn record(
        &self,
        subscription: &str,
        event_id: &str,
    ) -> impl Future<Output = Result<bool, InboxError>> + Send {
        (**self).record(subscription, event_id)
    }

    fn forget(
        &self,
        subscription: &str,
        event_id: &str,
    ) -> impl Future<Output = Result<bool, InboxError>> + Send {
        (**self).forget(subscription, event_id)
    }

    fn purge_older_than(
        &self,
        age: Duration,
    ) -> impl Future<Output = Result<u64, InboxError>> + Send {
        (**self).purge_older_than(age)
    }
}
