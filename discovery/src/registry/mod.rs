//! The [`Registry`] trait every backend implements, and the in-memory plumbing they share.
//!
//! A backend (the [`StaticRegistry`](crate::memory::StaticRegistry), the Consul watch engine,
//! or your own DNS SRV or Kubernetes source) does one thing: given a [`Query`], it returns a
//! [`Watch`], the receiving end of a [`Feed`] it keeps up to date in the background. Everything
//! else (cache-first reads, first-load waits, staleness, pickers, tower adapters) is written once
//! on top of [`Watch`].
//!
//! # Writing a backend
//!
//! ```
//! use std::sync::Mutex;
//! use std::collections::HashMap;
//! use sinew_discovery::registry::{Feed, Query, Registry, Watch};
//! use sinew_discovery::Instance;
//!
//! /// A backend whose instances come from somewhere else (a DNS SRV lookup, a file...).
//! #[derive(Default)]
//! struct MyBackend {
//!     feeds: Mutex<HashMap<Query, Feed>>,
//! }
//!
//! impl Registry for MyBackend {
//!     fn watch(&self, query: &Query) -> Watch {
//!         let mut feeds = self.feeds.lock().unwrap();
//!         let feed = feeds.entry(query.clone()).or_insert_with(|| {
//!             let feed = Feed::new(query.service());
//!             // A real backend spawns a task here that keeps calling `publish` (or `fail`).
//!             feed.publish(vec![Instance::new("a", query.service(), "10.0.0.1", 80)]);
//!             feed
//!         });
//!         feed.watch()
//!     }
//! }
//!
//! let backend = MyBackend::default();
//! let watch = backend.watch(&Query::new("orders"));
//! assert_eq!(watch.current().unwrap().len(), 1);
//! ```

pub mod error;
mod feed;
mod query;
mod snapshot;

pub use self::feed::{Changes, Feed, Watch, WatchStatus};
pub use self::query::Query;
pub use self::snapshot::Snapshot;

/// A source of service instances: returns a [`Watch`] per [`Query`] and keeps it current.
///
/// Implementations must be cheap to call repeatedly with the same query: return a new
/// receiver of the same shared [`Feed`] rather than starting a second background poll.
/// `watch` must not block; the first result arrives later through the [`Watch`].
pub trait Registry: Send + Sync + 'static {
    /// Starts (or joins) watching `query`.
    fn watch(&self, query: &Query) -> Watch;
}

impl<R: Registry + ?Sized> Registry for std::sync::Arc<R> {
    fn watch(&self, query: &Query) -> Watch {
        (**self).watch(query)
    }
}

impl<R: Registry + ?Sized> Registry for Box<R> {
    fn watch(&self, query: &Query) -> Watch {
        (**self).watch(query)
    }
}
