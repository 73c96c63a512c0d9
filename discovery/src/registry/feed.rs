use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use futures_util::stream::BoxStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::error::{DiscoveryError, SourceError};
use super::snapshot::Snapshot;
use crate::instance::Instance;

#[derive(Debug, Default)]
struct State {
    snapshot: Option<Arc<Snapshot>>,
    /// Last successful refresh (changed or not).
    refreshed_at: Option<Instant>,
    /// Set while refreshes fail; cleared by the next success.
    error: Option<SourceError>,
    /// Set by [`Feed::close`] and when the feed is dropped.
    closed: bool,
}

/// The sending side of a [`Watch`]: a backend publishes each instance list it fetches, and
/// reports failures, here.
///
/// Publishing an unchanged list only records the refresh time; subscribers are woken only by
/// real changes. A failure keeps the last-known-good snapshot and records the error, which
/// readers see as the snapshot's age and, past their maximum staleness, as
/// [`DiscoveryError::Stale`].
pub struct Feed {
    service: Arc<str>,
    tx: watch::Sender<State>,
}

impl Feed {
    /// A feed for `service` with no data yet.
    pub fn new(service: impl AsRef<str>) -> Self {
        let (tx, _) = watch::channel(State::default());
        Self {
            service: Arc::from(service.as_ref()),
            tx,
        }
    }

    /// A new receiver.
    pub fn watch(&self) -> Watch {
        Watch {
            service: self.service.clone(),
            rx: self.tx.subscribe(),
        }
    }

    /// Publishes a fresh instance list. Returns whether it differs from the previous one
    /// (only then are subscribers woken). Duplicated IDs keep their first occurrence.
    pub fn publish(&self, mut instances: Vec<Instance>) -> bool {
        instances.sort_by(|a, b| a.id.cmp(&b.id));
        instances.dedup_by(|a, b| a.id == b.id);
        let service = self.service.clone();
        self.tx.send_if_modified(move |state| {
            state.refreshed_at = Some(Instant::now());
            state.error = None;
            match &state.snapshot {
                Some(current) if current.same_instances(&instances) => false,
                current => {
                    let version = current.as_ref().map_or(1, |s| s.version() + 1);
                    state.snapshot = Some(Arc::new(Snapshot::new(service, instances, version)));
                    true
                }
            }
        })
    }

    /// Records a failed refresh; the last-known-good snapshot stays.
    pub fn fail(&self, error: impl Into<SourceError>) {
        let error = error.into();
        self.tx.send_if_modified(|state| {
            state.error = Some(error);
            false
        });
    }

    /// Marks the feed finished: readers waiting for a first load stop waiting.
    pub fn close(&self) {
        self.tx.send_modify(|state| state.closed = true);
    }

    /// Whether any [`Watch`] is still alive. Backends stop polling when there is none.
    pub fn is_watched(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Resolves once every [`Watch`] of this feed has been dropped.
    pub async fn unwatched(&self) {
        self.tx.closed().await;
    }

    /// The service name.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The current snapshot.
    pub fn current(&self) -> Option<Arc<Snapshot>> {
        self.tx.borrow().snapshot.clone()
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.tx.send_modify(|state| state.closed = true);
    }
}

impl fmt::Debug for Feed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Feed")
            .field("service", &&*self.service)
            .field("watchers", &self.tx.receiver_count())
            .finish()
    }
}

impl From<&str> for SourceError {
    fn from(message: &str) -> Self {
        SourceError::new(message)
    }
}

impl From<String> for SourceError {
    fn from(message: String) -> Self {
        SourceError::new(message)
    }
}

/// The state of a [`Watch`]: whether data arrived, how old it is, and the current error.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WatchStatus {
    /// The snapshot currently served, if any arrived.
    pub snapshot: Option<Arc<Snapshot>>,
    /// Time since the last successful refresh (an unchanged result counts). `None` before the
    /// first one.
    pub age: Option<Duration>,
    /// The last refresh error, while the registry is failing.
    pub error: Option<SourceError>,
}

impl WatchStatus {
    /// Whether the registry is failing and the snapshot is last-known-good.
    pub fn is_stale(&self) -> bool {
        self.error.is_some()
    }
}

/// The receiving side of a registry's background watch of one [`Query`](super::Query): reads
/// are memory reads.
///
/// Cheap to clone; every clone sees the same data. The registry stops the background work once
/// every `Watch` of a query is dropped.
#[derive(Clone)]
pub struct Watch {
    service: Arc<str>,
    rx: watch::Receiver<State>,
}

impl Watch {
    /// The service name.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The current snapshot, from memory, if one has arrived. Ignores staleness.
    pub fn current(&self) -> Option<Arc<Snapshot>> {
        self.rx.borrow().snapshot.clone()
    }

    /// Whether the current snapshot (if any) is empty, read without cloning it.
    pub(crate) fn is_known_empty(&self) -> bool {
        self.rx
            .borrow()
            .snapshot
            .as_ref()
            .is_some_and(|s| s.is_empty())
    }

    /// Data, age and error.
    pub fn status(&self) -> WatchStatus {
        let state = self.rx.borrow();
        WatchStatus {
            snapshot: state.snapshot.clone(),
            age: state.refreshed_at.map(|at| at.elapsed()),
            error: state.error.clone(),
        }
    }

    /// The current snapshot if it may still be served: present, and not older than
    /// `max_staleness` while the registry is failing.
    pub fn fresh(&self, max_staleness: Option<Duration>) -> Result<Arc<Snapshot>, DiscoveryError> {
        let state = self.rx.borrow();
        self.check(&state, max_staleness)
            .unwrap_or_else(|| Err(self.not_loaded(&state, Duration::ZERO)))
    }

    /// Like [`fresh`](Self::fresh), but `None` when no snapshot has arrived yet.
    pub(crate) fn fresh_if_loaded(
        &self,
        max_staleness: Option<Duration>,
    ) -> Option<Result<Arc<Snapshot>, DiscoveryError>> {
        self.check(&self.rx.borrow(), max_staleness)
    }

    fn check(
        &self,
        state: &State,
        max_staleness: Option<Duration>,
    ) -> Option<Result<Arc<Snapshot>, DiscoveryError>> {
        let snapshot = state.snapshot.as_ref()?;
        if let (Some(max), Some(error), Some(at)) =
            (max_staleness, &state.error, state.refreshed_at)
        {
            let age = at.elapsed();
            if age > max {
                return Some(Err(DiscoveryError::Stale {
                    service: self.service.clone(),
                    age,
                    max,
                    source: error.clone(),
                }));
            }
        }
        Some(Ok(snapshot.clone()))
    }

    fn not_loaded(&self, state: &State, waited: Duration) -> DiscoveryError {
        if state.closed && state.snapshot.is_none() {
            return DiscoveryError::Closed {
                service: self.service.clone(),
            };
        }
        DiscoveryError::NotLoaded {
            service: self.service.clone(),
            waited,
            last_error: state.error.clone(),
        }
    }

    /// The current snapshot, waiting up to `timeout` for the first one to arrive.
    pub async fn loaded(
        &self,
        timeout: Duration,
        max_staleness: Option<Duration>,
    ) -> Result<Arc<Snapshot>, DiscoveryError> {
        {
            let state = self.rx.borrow();
            if let Some(result) = self.check(&state, max_staleness) {
                return result;
            }
            if state.closed {
                return Err(self.not_loaded(&state, Duration::ZERO));
            }
        }
        let mut rx = self.rx.clone();
        let wait = rx.wait_for(|state| state.snapshot.is_some() || state.closed);
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(_)) | Ok(Err(_)) => {}
            Err(_elapsed) => {
                let state = self.rx.borrow();
                return Err(self.not_loaded(&state, timeout));
            }
        }
        let state = self.rx.borrow();
        self.check(&state, max_staleness)
            .unwrap_or_else(|| Err(self.not_loaded(&state, timeout)))
    }

    /// A stream of snapshots: the current one first (once loaded), then each change. Ends when
    /// the registry shuts the feed down.
    pub fn changes(&self) -> Changes {
        let mut rx = self.rx.clone();
        rx.mark_changed();
        let stream = futures_util::stream::unfold((rx, 0_u64), |(mut rx, last)| async move {
            loop {
                if rx.changed().await.is_err() {
                    return None;
                }
                let (snapshot, closed) = {
                    let state = rx.borrow_and_update();
                    (state.snapshot.clone(), state.closed)
                };
                match snapshot {
                    Some(s) if s.version() != last => {
                        let version = s.version();
                        return Some((s, (rx, version)));
                    }
                    _ if closed => return None,
                    _ => {}
                }
            }
        });
        Changes {
            inner: Box::pin(stream),
        }
    }
}

impl fmt::Debug for Watch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.rx.borrow();
        f.debug_struct("Watch")
            .field("service", &&*self.service)
            .field("version", &state.snapshot.as_ref().map(|s| s.version()))
            .field("failing", &state.error.is_some())
            .finish()
    }
}

/// A stream of changed snapshots, from [`Watch::changes`].
pub struct Changes {
    inner: BoxStream<'static, Arc<Snapshot>>,
}

impl Stream for Changes {
    type Item = Arc<Snapshot>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl fmt::Debug for Changes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Changes").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn unchanged_lists_do_not_wake_subscribers() {
        let feed = Feed::new("s");
        let mut changes = feed.watch().changes();
        assert!(feed.publish(vec![Instance::new("a", "s", "h", 1)]));
        assert!(!feed.publish(vec![Instance::new("a", "s", "h", 1)]));
        assert!(feed.publish(vec![Instance::new("b", "s", "h", 1)]));
        assert_eq!(changes.next().await.map(|s| s.version()), Some(2));
        assert!(
            tokio::time::timeout(Duration::from_secs(1), changes.next())
                .await
                .is_err()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn stale_only_past_max_while_failing() {
        let feed = Feed::new("s");
        let watch = feed.watch();
        feed.publish(vec![Instance::new("a", "s", "h", 1)]);
        tokio::time::advance(Duration::from_secs(100)).await;
        // Not failing: any age is fine.
        assert!(watch.fresh(Some(Duration::from_secs(10))).is_ok());
        feed.fail("agent down");
        let err = watch.fresh(Some(Duration::from_secs(10))).unwrap_err();
        assert!(matches!(err, DiscoveryError::Stale { .. }));
        assert!(watch.fresh(None).is_ok());
        assert!(watch.status().is_stale());
    }

    #[tokio::test(start_paused = true)]
    async fn first_load_times_out_with_last_error() {
        let feed = Feed::new("s");
        feed.fail("connection refused");
        let err = feed
            .watch()
            .loaded(Duration::from_secs(2), None)
            .await
            .unwrap_err();
        match err {
            DiscoveryError::NotLoaded {
                waited, last_error, ..
            } => {
                assert_eq!(waited, Duration::from_secs(2));
                assert!(last_error.is_some());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
