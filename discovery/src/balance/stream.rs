use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;
use tower::discover::Change;

use crate::instance::{Instance, InstanceId};
use crate::registry::{Changes, Watch};

/// A [`Discover`](tower::discover::Discover) stream over a [`Watch`]: diffs each new snapshot
/// against the last and yields the [`Change`]s, making one service per new instance with `make`.
///
/// - a new instance: `Insert(id, make(instance))`;
/// - a vanished instance: `Remove(id)`;
/// - an instance whose host or port changed: `Remove(id)` then `Insert(id, ..)`;
/// - a change of tags, metadata or weight only: nothing (the connection stays).
///
/// The error type is [`Infallible`]: a registry failure keeps the last set (it is never an
/// error here, because an error is fatal to [`Balance`](tower::balance::p2c::Balance)). The
/// stream never ends; if the registry shuts down, the last set stays.
pub struct ServiceDiscover<M, S> {
    changes: Changes,
    make: M,
    known: HashMap<InstanceId, Instance>,
    pending: VecDeque<Change<InstanceId, S>>,
    done: bool,
}

// No field is ever pinned: `changes` is a boxed stream and the others are plain data.
impl<M, S> Unpin for ServiceDiscover<M, S> {}

impl<M, S> ServiceDiscover<M, S> {
    /// Discovers the instances of `watch`, making services with `make`.
    pub fn new(watch: &Watch, make: M) -> Self
    where
        M: FnMut(&Instance) -> S,
    {
        Self {
            changes: watch.changes(),
            make,
            known: HashMap::new(),
            pending: VecDeque::new(),
            done: false,
        }
    }

    /// The instances the stream has reported so far.
    pub fn instances(&self) -> impl Iterator<Item = &Instance> {
        self.known.values()
    }
}

impl<M, S> ServiceDiscover<M, S>
where
    M: FnMut(&Instance) -> S,
{
    fn diff(&mut self, instances: &[Instance]) {
        let mut gone: Vec<InstanceId> = self
            .known
            .keys()
            .filter(|id| instances.binary_search_by(|i| i.id.cmp(id)).is_err())
            .cloned()
            .collect();
        gone.sort();
        for id in gone {
            self.known.remove(&id);
            tracing::debug!(instance = %id, "instance removed from balancer");
            self.pending.push_back(Change::Remove(id));
        }
        for instance in instances {
            match self.known.get(&instance.id) {
                Some(old) if old.same_endpoint(instance) => {
                    // Same endpoint: keep the service, remember the new metadata.
                    self.known.insert(instance.id.clone(), instance.clone());
                }
                Some(_) => {
                    tracing::debug!(instance = %instance.id, address = %instance.authority(), "instance moved");
                    self.pending.push_back(Change::Remove(instance.id.clone()));
                    self.insert(instance);
                }
                None => {
                    tracing::debug!(instance = %instance.id, address = %instance.authority(), "instance added to balancer");
                    self.insert(instance);
                }
            }
        }
    }

    fn insert(&mut self, instance: &Instance) {
        let service = (self.make)(instance);
        self.known.insert(instance.id.clone(), instance.clone());
        self.pending
            .push_back(Change::Insert(instance.id.clone(), service));
    }
}

impl<M, S> Stream for ServiceDiscover<M, S>
where
    M: FnMut(&Instance) -> S,
{
    type Item = Result<Change<InstanceId, S>, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(change) = this.pending.pop_front() {
                return Poll::Ready(Some(Ok(change)));
            }
            if this.done {
                return Poll::Pending;
            }
            match Pin::new(&mut this.changes).poll_next(cx) {
                Poll::Ready(Some(snapshot)) => this.diff(snapshot.instances()),
                Poll::Ready(None) => {
                    tracing::debug!("registry feed closed; keeping the last instances");
                    this.done = true;
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<M, S> fmt::Debug for ServiceDiscover<M, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceDiscover")
            .field("known", &self.known.len())
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}
