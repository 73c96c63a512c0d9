//! tower adapters: a [`Discover`](tower::discover::Discover) stream over a [`Watch`], and a
//! power-of-two-choices balancer that fails fast when a service has no instance.
//!
//! [`ServiceDiscover`] turns each change of a watch into
//! [`Change::Insert`](tower::discover::Change::Insert) and
//! [`Change::Remove`](tower::discover::Change::Remove) by diffing snapshots: a new instance is
//! inserted, a vanished one removed, and one whose address changed is removed then inserted. It
//! never yields an error (an error is fatal to [`Balance`]) and never ends.
//!
//! [`Balance`] waits forever when its set is empty. [`FailFastWhenEmpty`] wraps it and fails
//! `poll_ready` with [`error::NoInstances`] as soon as the watch's snapshot is empty, so callers
//! get an error instead of a hang. It also latches readiness until `call`, which keeps a stale
//! ready index out of `Balance` (tower-rs/tower#856) when `poll_ready` is polled twice.
//!
//! ```
//! use std::convert::Infallible;
//! use sinew_discovery::balance;
//! use sinew_discovery::memory::StaticRegistry;
//! use sinew_discovery::{Discovery, Instance};
//! use tower::{service_fn, Service, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let registry = StaticRegistry::from_instances([
//!     Instance::new("a", "users", "10.0.0.1", 80),
//!     Instance::new("b", "users", "10.0.0.2", 80),
//! ]);
//! let discovery = Discovery::new(registry.clone());
//! let watch = discovery.watch("users");
//!
//! // One tower service per instance; here a stub that answers with the instance's address.
//! let mut users = balance::p2c(&watch, |instance: &Instance| {
//!     let authority = instance.authority();
//!     service_fn(move |_req: ()| {
//!         let authority = authority.clone();
//!         async move { Ok::<_, Infallible>(authority) }
//!     })
//! });
//! let answer = users.ready().await?.call(()).await?;
//! assert!(answer.starts_with("10.0.0."));
//!
//! registry.set("users", []);
//! let err = users.ready().await.unwrap_err();
//! assert!(err.is::<balance::error::NoInstances>());
//! # Ok(())
//! # }
//! ```

pub mod error;
mod fail_fast;
pub mod future;
mod stream;
#[cfg(feature = "tonic")]
mod tonic;

use tower::balance::p2c::Balance;
use tower::load::{CompleteOnResponse, PendingRequestsDiscover};

pub use self::fail_fast::FailFastWhenEmpty;
pub use self::stream::ServiceDiscover;
#[cfg(feature = "tonic")]
pub use self::tonic::{TonicSync, sync_tonic_channel};

use crate::instance::Instance;
use crate::registry::Watch;

/// The balancer [`p2c`] builds.
pub type P2cBalance<M, S, Req> = FailFastWhenEmpty<
    Balance<PendingRequestsDiscover<ServiceDiscover<M, S>, CompleteOnResponse>, Req>,
>;

/// A power-of-two-choices balancer (by pending requests) over the instances of `watch`, making
/// one service per instance with `make`, failing fast when the set is empty.
///
/// Build it after the watch has loaded (for example after
/// [`Discovery::discover`](crate::Discovery::discover)); before that, `poll_ready` waits for the
/// first snapshot.
pub fn p2c<M, S, Req>(watch: &Watch, make: M) -> P2cBalance<M, S, Req>
where
    M: FnMut(&Instance) -> S,
    S: tower_service::Service<Req>,
    S::Error: Into<tower::BoxError>,
{
    let discover = PendingRequestsDiscover::new(
        ServiceDiscover::new(watch, make),
        CompleteOnResponse::default(),
    );
    FailFastWhenEmpty::new(Balance::new(discover), watch.clone())
}
