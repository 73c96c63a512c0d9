use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sinew_messaging::inbox::{Inbox, InboxError};
use sinew_messaging::{Event, Message};
use thiserror::Error;
use tokio::time::Instant;

/// A process manager failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// The inbox failed; the event was not handled (let the broker redeliver it).
    #[error("process manager inbox failed")]
    Inbox(#[from] InboxError),
}

/// What a handler decided for one event.
#[derive(Debug)]
pub struct Transition<St> {
    state: Option<St>,
    complete: bool,
    publish: Vec<Message>,
}

impl<St> Transition<St> {
    /// Move to `state` and keep waiting for events (the timeout restarts).
    pub fn next(state: St) -> Self {
        Self {
            state: Some(state),
            complete: false,
            publish: Vec::new(),
        }
    }

    /// Move to `state` and end the instance (it no longer times out).
    pub fn complete(state: St) -> Self {
        Self {
            state: Some(state),
            complete: true,
            publish: Vec::new(),
        }
    }

    /// Leave the state as it is (an event that does not apply).
    pub fn ignore() -> Self {
        Self {
            state: None,
            complete: false,
            publish: Vec::new(),
        }
    }

    /// Messages to publish as a result (returned in [`Handled::Applied`]; hand them to the
    /// outbox in the transaction that stores your state).
    pub fn publish(mut self, message: Message) -> Self {
        self.publish.push(message);
        self
    }
}

/// The result of [`ProcessManager::handle`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Handled<St> {
    /// The inbox had seen the event: nothing was done.
    Duplicate,
    /// The handler ran.
    Applied {
        /// The instance's state afterwards (`None` if it has none).
        state: Option<St>,
        /// Whether the instance is complete.
        complete: bool,
        /// Messages to publish.
        publish: Vec<Message>,
    },
}

impl<St> Handled<St> {
    /// Whether the event was a duplicate.
    pub const fn is_duplicate(&self) -> bool {
        matches!(self, Self::Duplicate)
    }

    /// The state after handling.
    pub const fn state(&self) -> Option<&St> {
        match self {
            Self::Applied { state, .. } => state.as_ref(),
            Self::Duplicate => None,
        }
    }
}

struct Entry<St> {
    state: St,
    complete: bool,
    touched: Instant,
}

/// A process manager: one state machine instance per correlation value (an order ID, a saga
/// ID), fed by events, deduplicated through an [`Inbox`], with a timeout per instance.
///
/// The state lives in process memory: for state that must survive a crash, keep it in your
/// database and record the event with `PgInbox::record_in` in the same transaction.
///
/// # Clone
///
/// Clones share the instances and the inbox.
pub struct ProcessManager<St, I> {
    name: Arc<str>,
    inbox: Arc<I>,
    timeout: Option<Duration>,
    instances: Arc<Mutex<HashMap<String, Entry<St>>>>,
}

impl<St, I> Clone for ProcessManager<St, I> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            inbox: self.inbox.clone(),
            timeout: self.timeout,
            instances: self.instances.clone(),
        }
    }
}

impl<St, I> fmt::Debug for ProcessManager<St, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessManager")
            .field("name", &self.name)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl<St: Clone + Send, I: Inbox> ProcessManager<St, I> {
    /// A process manager called `name` (its inbox subscription name) over `inbox`.
    pub fn new(name: &str, inbox: I) -> Self {
        Self {
            name: Arc::from(name),
            inbox: Arc::new(inbox),
            timeout: None,
            instances: Arc::default(),
        }
    }

    /// Instances that receive no event for `timeout` while not complete are reported by
    /// [`expired`](Self::expired).
    pub const fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry<St>>> {
        // Entries are replaced whole; a poisoned map is still consistent.
        self.instances.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Handles `event` for the instance keyed by `correlation`: a duplicate (by event ID) is
    /// dropped; otherwise `f` gets the current state (`None` for a new instance) and decides.
    ///
    /// # Errors
    ///
    /// [`ProcessError::Inbox`] when the inbox fails.
    pub async fn handle<T, F>(
        &self,
        event: &Event<T>,
        correlation: &str,
        f: F,
    ) -> Result<Handled<St>, ProcessError>
    where
        F: FnOnce(Option<St>, &Event<T>) -> Transition<St>,
    {
        let event_id = event.event_id().to_string();
        if !self.inbox.record(&self.name, &event_id).await? {
            tracing::debug!(process = %self.name, correlation, event_id, "duplicate event dropped");
            return Ok(Handled::Duplicate);
        }
        let current = self.lock().get(correlation).map(|e| e.state.clone());
        let transition = f(current, event);
        let mut map = self.lock();
        let (state, complete) = match transition.state {
            Some(state) => {
                map.insert(
                    correlation.to_owned(),
                    Entry {
                        state: state.clone(),
                        complete: transition.complete,
                        touched: Instant::now(),
                    },
                );
                (Some(state), transition.complete)
            }
            None => map
                .get(correlation)
                .map_or((None, false), |e| (Some(e.state.clone()), e.complete)),
        };
        tracing::debug!(process = %self.name, correlation, event_type = event.event_type(), complete, "event applied");
        Ok(Handled::Applied {
            state,
            complete,
            publish: transition.publish,
        })
    }

    /// The state of instance `correlation`.
    pub fn state(&self, correlation: &str) -> Option<St> {
        self.lock().get(correlation).map(|e| e.state.clone())
    }

    /// Incomplete instances that received no event within the timeout, with their state; the
    /// caller decides (publish a cancellation, compensate). Each is reported once: it is
    /// marked complete.
    pub fn expired(&self) -> Vec<(String, St)> {
        let Some(timeout) = self.timeout else {
            return Vec::new();
        };
        let mut map = self.lock();
        let mut out = Vec::new();
        for (key, entry) in map.iter_mut() {
            if !entry.complete && entry.touched.elapsed() >= timeout {
                entry.complete = true;
                out.push((key.clone(), entry.state.clone()));
            }
        }
        if !out.is_empty() {
            tracing::warn!(process = %self.name, count = out.len(), "process instances timed out");
        }
        out
    }
}
