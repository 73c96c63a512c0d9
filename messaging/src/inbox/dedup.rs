//! The deduplicating handler wrapper.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use super::Inbox;
use crate::subscriber::{Delivery, Handler, HandlerError, Outcome};

type Key = (String, String);

/// A [`Handler`] that runs its inner handler at most once per (queue, message ID) as far as
/// its [`Inbox`] remembers, and acknowledges duplicates without calling it.
///
/// For each delivery it:
///
/// 1. answers [`Outcome::Retry`] if the same key is being handled right now by this wrapper
///    (a redelivery that overtook the original after a dropped connection): the running copy
///    decides, and the retried one finds its record or not;
/// 2. records the key; a duplicate is acknowledged at once;
/// 3. runs the inner handler, and [forgets](Inbox::forget) the key again unless it answered
///    [`Outcome::Ack`], so retries and dead-lettering work as without the wrapper.
///
/// The key is the delivery's [queue](Delivery::queue) (one per subscription) and the
/// message's [ID](crate::Message::message_id), which publishers set to the event ID. A
/// message without an ID is handled without deduplication. An inbox failure is a transient
/// [`HandlerError`], so the delivery is retried. If the inner handler panics or is cancelled
/// (a shutdown deadline), the record is forgotten on a spawned task.
///
/// The record and the handler's effects are not atomic: if the process dies between them,
/// a durable inbox keeps a record of work that never happened. When the effects live in
/// PostgreSQL, record the event inside the handler's transaction with
/// [`PgInbox::record_in`](super::postgres::PgInbox::record_in) instead (feature `postgres`).
pub struct Deduplicate<H, I> {
    inner: H,
    inbox: Arc<I>,
    in_flight: Arc<Mutex<HashSet<Key>>>,
}

impl<H: fmt::Debug, I: fmt::Debug> fmt::Debug for Deduplicate<H, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deduplicate")
            .field("inner", &self.inner)
            .field("inbox", &self.inbox)
            .finish_non_exhaustive()
    }
}

impl<H, I> Deduplicate<H, I> {
    /// Wraps `inner`, remembering handled messages in `inbox`.
    pub fn new(inner: H, inbox: I) -> Self {
        Self {
            inner,
            inbox: Arc::new(inbox),
            in_flight: Arc::default(),
        }
    }

    /// The wrapped handler.
    pub const fn inner(&self) -> &H {
        &self.inner
    }

    /// The inbox.
    pub fn inbox(&self) -> &I {
        &self.inbox
    }
}

/// Forgets the record if the handler never finished: it panicked or its future was dropped
/// (a shutdown deadline). The forget runs on a spawned task, as `Drop` cannot wait.
struct Unfinished<I: Inbox + 'static> {
    inbox: Option<Arc<I>>,
    key: Key,
}

impl<I: Inbox + 'static> Drop for Unfinished<I> {
    fn drop(&mut self) {
        let Some(inbox) = self.inbox.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (subscription, event_id) = std::mem::take(&mut self.key);
        runtime.spawn(async move {
            if let Err(error) = inbox.forget(&subscription, &event_id).await {
                tracing::warn!(%subscription, %event_id, %error, "inbox record of an unfinished handler not forgotten");
            }
        });
    }
}

/// Removes its key from the in-flight set when dropped (also on panic or cancellation).
struct InFlight {
    set: Arc<Mutex<HashSet<Key>>>,
    key: Key,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
    }
}

impl<H: Handler, I: Inbox + 'static> Handler for Deduplicate<H, I> {
    async fn handle(&self, delivery: Delivery) -> Result<Outcome, HandlerError> {
        let event_id = delivery.message().message_id().to_owned();
        if event_id.is_empty() {
            return self.inner.handle(delivery).await;
        }
        let subscription = delivery.queue().to_owned();
        let key = (subscription, event_id);
        {
            let mut set = self
                .in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if !set.insert(key.clone()) {
                return Ok(Outcome::Retry { after: None });
            }
        }
        let guard = InFlight {
            set: self.in_flight.clone(),
            key,
        };
        let (subscription, event_id) = (&guard.key.0, &guard.key.1);
        if !self
            .inbox
            .record(subscription, event_id)
            .await
            .map_err(HandlerError::transient)?
        {
            tracing::debug!(%subscription, %event_id, "duplicate delivery acknowledged");
            return Ok(Outcome::Ack);
        }
        let mut unfinished = Unfinished {
            inbox: Some(self.inbox.clone()),
            key: guard.key.clone(),
        };
        let result = self.inner.handle(delivery).await;
        unfinished.inbox = None;
        if !matches!(result, Ok(Outcome::Ack)) {
            self.inbox
                .forget(subscription, event_id)
                .await
                .map_err(HandlerError::transient)?;
        }
        drop(guard);
        result
    }

    fn name(&self) -> &str {
        self.inner.name()
    }
}
