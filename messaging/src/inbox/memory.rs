//! The in-process inbox.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::error::check_key;
use super::{Inbox, InboxError};

type Key = (Box<str>, Box<str>);

#[derive(Debug, Default)]
struct State {
    /// When each key was recorded.
    seen: HashMap<Key, Instant>,
    /// Keys in recording order (oldest first); may hold keys already forgotten, which are
    /// skipped when they reach the front.
    order: VecDeque<(Key, Instant)>,
}

impl State {
    /// Drops the front of `order` while it is stale (forgotten or re-recorded later).
    fn trim_front(&mut self) {
        while let Some((key, at)) = self.order.front() {
            if self.seen.get(key) == Some(at) {
                break;
            }
            self.order.pop_front();
        }
    }
}

/// An [`Inbox`] in process memory, bounded by a capacity and purged by age.
///
/// # Memory use
///
/// It holds at most `capacity` records. Recording a new key when full evicts the oldest
/// record, so a duplicate of an evicted event counts as new: size the capacity to cover the
/// redelivery window (for example the number of events a subscription handles in an hour).
/// Each record costs its two strings plus about 100 bytes of map and queue overhead.
/// [`purge_older_than`](Inbox::purge_older_than) removes old records earlier. Ages use
/// [`tokio::time::Instant`], so paused time in tests applies.
///
/// # Clone
///
/// Clones share the same records.
#[derive(Debug, Clone)]
pub struct MemoryInbox {
    state: Arc<Mutex<State>>,
    capacity: usize,
}

impl MemoryInbox {
    /// An empty inbox holding at most `capacity` records (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            state: Arc::default(),
            capacity: capacity.max(1),
        }
    }

    /// How many records it holds.
    pub fn len(&self) -> usize {
        self.lock().seen.len()
    }

    /// Whether it holds no records.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Its capacity.
    pub const fn capacity(&self) -> usize {
        self.capacity
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record_now(&self, subscription: &str, event_id: &str) -> Result<bool, InboxError> {
        check_key(subscription, event_id)?;
        let key: Key = (subscription.into(), event_id.into());
        let mut state = self.lock();
        if state.seen.contains_key(&key) {
            return Ok(false);
        }
        while state.seen.len() >= self.capacity {
            state.trim_front();
            match state.order.pop_front() {
                Some((oldest, _)) => {
                    state.seen.remove(&oldest);
                }
                None => break,
            }
        }
        let now = Instant::now();
        state.seen.insert(key.clone(), now);
        state.order.push_back((key, now));
        Ok(true)
    }

    fn forget_now(&self, subscription: &str, event_id: &str) -> Result<bool, InboxError> {
        check_key(subscription, event_id)?;
        let key: Key = (subscription.into(), event_id.into());
        let mut state = self.lock();
        let removed = state.seen.remove(&key).is_some();
        state.trim_front();
        // Forgotten keys in the middle of `order` are skipped later; bound them here.
        if state.order.len() > state.seen.len().saturating_mul(2).max(16) {
            let State { seen, order } = &mut *state;
            order.retain(|(k, at)| seen.get(k) == Some(at));
        }
        Ok(removed)
    }

    fn purge_now(&self, age: Duration) -> u64 {
        let mut state = self.lock();
        let now = Instant::now();
        let mut removed = 0;
        loop {
            state.trim_front();
            match state.order.front() {
                Some((_, at)) if now.saturating_duration_since(*at) > age => {
                    if let Some((key, _)) = state.order.pop_front() {
                        state.seen.remove(&key);
                        removed += 1;
                    }
                }
                _ => break,
            }
        }
        removed
    }
}

impl Inbox for MemoryInbox {
    fn record(
        &self,
        subscription: &str,
        event_id: &str,
    ) -> impl Future<Output = Result<bool, InboxError>> + Send {
        std::future::ready(self.record_now(subscription, event_id))
    }

    fn forget(
        &self,
        subscription: &str,
        event_id: &str,
    ) -> impl Future<Output = Result<bool, InboxError>> + Send {
        std::future::ready(self.forget_now(subscription, event_id))
    }

    fn purge_older_than(
        &self,
        age: Duration,
    ) -> impl Future<Output = Result<u64, InboxError>> + Send {
        std::future::ready(Ok(self.purge_now(age)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn first_record_is_new_then_duplicate() {
        let inbox = MemoryInbox::new(10);
        assert!(inbox.record("a", "e1").await.unwrap());
        assert!(!inbox.record("a", "e1").await.unwrap());
        // The key includes the subscription.
        assert!(inbox.record("b", "e1").await.unwrap());
        assert_eq!(inbox.len(), 2);
    }

    #[tokio::test]
    async fn empty_keys_are_refused() {
        let inbox = MemoryInbox::new(10);
        assert!(matches!(
            inbox.record("", "e").await,
            Err(InboxError::EmptyKey("subscription"))
        ));
        assert!(matches!(
            inbox.record("s", "").await,
            Err(InboxError::EmptyKey("event ID"))
        ));
        assert!(inbox.is_empty());
    }

    #[tokio::test]
    async fn forgotten_records_count_as_new() {
        let inbox = MemoryInbox::new(10);
        assert!(inbox.record("a", "e1").await.unwrap());
        assert!(inbox.forget("a", "e1").await.unwrap());
        assert!(!inbox.forget("a", "e1").await.unwrap());
        assert!(inbox.record("a", "e1").await.unwrap());
        assert_eq!(inbox.len(), 1);
    }

    #[tokio::test]
    async fn a_full_inbox_evicts_the_oldest_record() {
        let inbox = MemoryInbox::new(2);
        assert!(inbox.record("a", "1").await.unwrap());
        assert!(inbox.record("a", "2").await.unwrap());
        assert!(inbox.record("a", "3").await.unwrap());
        assert_eq!(inbox.len(), 2);
        assert!(!inbox.record("a", "3").await.unwrap());
        assert!(!inbox.record("a", "2").await.unwrap());
        assert!(inbox.record("a", "1").await.unwrap()); // evicted, so new again
    }

    #[tokio::test]
    async fn eviction_skips_forgotten_records() {
        let inbox = MemoryInbox::new(2);
        assert!(inbox.record("a", "1").await.unwrap());
        assert!(inbox.forget("a", "1").await.unwrap());
        assert!(inbox.record("a", "2").await.unwrap());
        assert!(inbox.record("a", "3").await.unwrap());
        assert_eq!(inbox.len(), 2);
        assert!(!inbox.record("a", "2").await.unwrap());
        assert!(!inbox.record("a", "3").await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn purge_removes_only_old_records() {
        let inbox = MemoryInbox::new(10);
        assert!(inbox.record("a", "old").await.unwrap());
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(inbox.record("a", "new").await.unwrap());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            inbox
                .purge_older_than(Duration::from_secs(30))
                .await
                .unwrap(),
            1
        );
        assert_eq!(inbox.len(), 1);
        assert!(inbox.record("a", "old").await.unwrap());
        assert!(!inbox.record("a", "new").await.unwrap());
    }
}
