use std::fmt;

use futures_util::StreamExt;
use tokio::task::JoinHandle;
use tonic::transport::channel::Change as TonicChange;
use tonic::transport::{Channel, Endpoint};
use tower::discover::Change;

use super::ServiceDiscover;
use crate::instance::{Instance, InstanceId};
use crate::registry::Watch;

/// Keeps a tonic balanced [`Channel`]'s endpoints in sync with a [`Watch`]; the sync stops
/// when this handle is dropped.
#[must_use = "the endpoints stop following the registry when this handle is dropped"]
pub struct TonicSync {
    task: JoinHandle<()>,
}

impl Drop for TonicSync {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for TonicSync {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TonicSync")
            .field("running", &!self.task.is_finished())
            .finish()
    }
}

/// A tonic [`Channel`] balanced over the instances of `watch`, with a task (owned by the
/// returned [`TonicSync`]) that inserts and removes endpoints as the instances change.
///
/// `make_endpoint` builds each instance's [`Endpoint`] (scheme, TLS, timeouts); an instance
/// whose endpoint cannot be built is skipped with a warning. The task sends changes from its
/// own loop, so they are delivered even when the channel carries no requests (unlike driving
/// the sender from request paths; grpc/grpc-rust#1581). Must be called inside a tokio runtime.
///
/// ```
/// use sinew_discovery::balance::sync_tonic_channel;
/// use sinew_discovery::memory::StaticRegistry;
/// use sinew_discovery::{Discovery, Instance};
/// use tonic::transport::Endpoint;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let registry = StaticRegistry::from_instances([Instance::new("a", "users", "10.0.0.1", 50051)]);
/// let discovery = Discovery::new(registry);
/// let (channel, _sync) = sync_tonic_channel(&discovery.watch("users"), |instance: &Instance| {
///     Endpoint::from_shared(instance.url("http"))
/// });
/// // `channel` goes into a generated client: UsersClient::new(channel)
/// # drop(channel);
/// # }
/// ```
pub fn sync_tonic_channel<M>(watch: &Watch, mut make_endpoint: M) -> (Channel, TonicSync)
where
    M: FnMut(&Instance) -> Result<Endpoint, tonic::transport::Error> + Send + 'static,
{
    let capacity = watch.current().map_or(0, |s| s.len()).max(8) * 2;
    let (channel, sender) = Channel::balance_channel::<InstanceId>(capacity);
    let service = watch.service().to_owned();
    let mut discover = ServiceDiscover::new(watch, move |instance: &Instance| {
        make_endpoint(instance).map_err(|e| e.to_string())
    });
    let task = tokio::spawn(async move {
        while let Some(Ok(change)) = discover.next().await {
            let change = match change {
                Change::Insert(id, Ok(endpoint)) => TonicChange::Insert(id, endpoint),
                Change::Insert(id, Err(error)) => {
                    tracing::warn!(service, instance = %id, %error, "cannot build a tonic endpoint; instance skipped");
                    continue;
                }
                Change::Remove(id) => TonicChange::Remove(id),
            };
            if sender.send(change).await.is_err() {
                tracing::debug!(service, "tonic channel dropped; endpoint sync stopped");
                return;
            }
        }
    });
    (channel, TonicSync { task })
}
