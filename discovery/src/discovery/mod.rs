//! [`Discovery`]: cache-first reads over any [`Registry`].
//!
//! `discover` and `pick` read memory; the registry keeps that memory current in the background
//! (one shared watch per query). Only the very first read of a service waits, up to
//! [`initial_load_timeout`](DiscoveryBuilder::initial_load_timeout), for the first result. While
//! the registry fails, reads keep returning the last-known-good snapshot until it is older than
//! [`max_staleness`](DiscoveryBuilder::max_staleness), if one is set.
//!
//! This differs from the reference design, which asks Consul on every request: no network
//! round trip per request, and an outage of the registry does not take the callers down.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use crate::error::ConfigError;
use crate::picker::{Picked, Picker};
use crate::registry::error::DiscoveryError;
use crate::registry::{Changes, Query, Registry, Snapshot, Watch, WatchStatus};

/// Cache-first service discovery over a [`Registry`].
///
/// ```
/// use std::time::Duration;
/// use sinew_discovery::memory::StaticRegistry;
/// use sinew_discovery::{Discovery, Instance, Weighted};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let registry = StaticRegistry::from_instances([
///     Instance::new("posts-1", "posts", "10.0.0.7", 3002).weight(3),
/// ]);
/// let discovery = Discovery::builder(registry)
///     .initial_load_timeout(Duration::from_secs(2))
///     .max_staleness(Duration::from_secs(300))
///     .build()?;
/// let instance = discovery.pick("posts", &Weighted::new()).await?;
/// assert_eq!(instance.url("http"), "http://10.0.0.7:3002");
/// # Ok(())
/// # }
/// ```
///
/// # Clone
///
/// Clones share the registry and the table of watches.
#[derive(Clone)]
pub struct Discovery {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Box<dyn Registry>,
    initial_load_timeout: Duration,
    max_staleness: Option<Duration>,
    by_name: RwLock<HashMap<Arc<str>, Watch, BuildFnv>>,
    by_query: RwLock<HashMap<Query, Watch>>,
}

impl Discovery {
    /// Discovery over `registry` with the default settings.
    pub fn new(registry: impl Registry) -> Self {
        Self::from_parts(Box::new(registry), DEFAULT_INITIAL_LOAD_TIMEOUT, None)
    }

    /// A builder for the settings.
    pub fn builder(registry: impl Registry) -> DiscoveryBuilder {
        DiscoveryBuilder {
            registry: Box::new(registry),
            initial_load_timeout: DEFAULT_INITIAL_LOAD_TIMEOUT,
            max_staleness: None,
        }
    }

    fn from_parts(
        registry: Box<dyn Registry>,
        initial_load_timeout: Duration,
        max_staleness: Option<Duration>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                registry,
                initial_load_timeout,
                max_staleness,
                by_name: RwLock::new(HashMap::default()),
                by_query: RwLock::new(HashMap::new()),
            }),
        }
    }

    /// The watch of every passing instance of `service`, started on first use and kept for the
    /// life of this `Discovery`.
    pub fn watch(&self, service: &str) -> Watch {
        if let Some(watch) = self
            .inner
            .by_name
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(service)
        {
            return watch.clone();
        }
        self.start_watch(service)
    }

    /// The hot path: the servable snapshot of an already watched service, without cloning the
    /// watch. `None` when the service is not watched yet or has no snapshot.
    fn cached(&self, service: &str) -> Option<Result<Arc<Snapshot>, DiscoveryError>> {
        let table = self
            .inner
            .by_name
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        table
            .get(service)?
            .fresh_if_loaded(self.inner.max_staleness)
    }

    fn start_watch(&self, service: &str) -> Watch {
        let mut table = self
            .inner
            .by_name
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        table
            .entry(Arc::from(service))
            .or_insert_with(|| self.inner.registry.watch(&Query::new(service)))
            .clone()
    }

    /// The watch of a query with filters, started on first use and kept for the life of this
    /// `Discovery` (so repeated reads do not restart it).
    pub fn watch_query(&self, query: &Query) -> Watch {
        if let Some(watch) = self
            .inner
            .by_query
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(query)
        {
            return watch.clone();
        }
        let mut table = self
            .inner
            .by_query
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        table
            .entry(query.clone())
            .or_insert_with(|| self.inner.registry.watch(query))
            .clone()
    }

    /// The healthy instances of `service`, from memory. The first call waits for the
    /// first result, up to the initial load timeout.
    pub async fn discover(&self, service: &str) -> Result<Arc<Snapshot>, DiscoveryError> {
        if let Some(result) = self.cached(service) {
            return result;
        }
        self.load(self.watch(service)).await
    }

    /// Like [`discover`](Self::discover), for a query with filters.
    pub async fn discover_query(&self, query: &Query) -> Result<Arc<Snapshot>, DiscoveryError> {
        let watch = self.watch_query(query);
        if let Some(result) = watch.fresh_if_loaded(self.inner.max_staleness) {
            return result;
        }
        self.load(watch).await
    }

    /// The slow path (first load), boxed so that the futures of the memory reads stay small:
    /// the first-load wait holds a timer, and moving it around on every read costs more than
    /// the read itself.
    fn load(
        &self,
        watch: Watch,
    ) -> Pin<Box<dyn Future<Output = Result<Arc<Snapshot>, DiscoveryError>> + Send + 'static>> {
        let timeout = self.inner.initial_load_timeout;
        let max_staleness = self.inner.max_staleness;
        Box::pin(async move { watch.loaded(timeout, max_staleness).await })
    }

    /// One instance of `service` chosen by `picker`, from memory.
    pub async fn pick(
        &self,
        service: &str,
        picker: &(impl Picker + ?Sized),
    ) -> Result<Picked, DiscoveryError> {
        let snapshot = self.discover(service).await?;
        choose(snapshot, picker, None)
    }

    /// One instance of `service` chosen by `picker` for an affinity `key` (see
    /// [`Rendezvous`](crate::Rendezvous)).
    pub async fn pick_by_key(
        &self,
        service: &str,
        picker: &(impl Picker + ?Sized),
        key: &[u8],
    ) -> Result<Picked, DiscoveryError> {
        let snapshot = self.discover(service).await?;
        choose(snapshot, picker, Some(key))
    }

    /// Like [`pick`](Self::pick) but never waits: before the first result has arrived it
    /// returns [`DiscoveryError::NotLoaded`] (and starts the watch).
    pub fn try_pick(
        &self,
        service: &str,
        picker: &(impl Picker + ?Sized),
    ) -> Result<Picked, DiscoveryError> {
        let snapshot = match self.cached(service) {
            Some(result) => result?,
            None => self.watch(service).fresh(self.inner.max_staleness)?,
        };
        choose(snapshot, picker, None)
    }

    /// The data, age and error of `service`'s watch.
    pub fn status(&self, service: &str) -> WatchStatus {
        self.watch(service).status()
    }

    /// A stream of `service`'s snapshots: the current one first, then each change.
    pub fn subscribe(&self, service: &str) -> Changes {
        self.watch(service).changes()
    }
}

fn choose(
    snapshot: Arc<Snapshot>,
    picker: &(impl Picker + ?Sized),
    key: Option<&[u8]>,
) -> Result<Picked, DiscoveryError> {
    match picker.pick(snapshot.instances(), key) {
        Some(index) => Picked::new(snapshot, index).map_err(|snapshot| no_instances(&snapshot)),
        None => Err(no_instances(&snapshot)),
    }
}

fn no_instances(snapshot: &Snapshot) -> DiscoveryError {
    DiscoveryError::NoInstances {
        service: Arc::from(snapshot.service()),
    }
}

impl fmt::Debug for Discovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Discovery")
            .field("initial_load_timeout", &self.inner.initial_load_timeout)
            .field("max_staleness", &self.inner.max_staleness)
            .finish_non_exhaustive()
    }
}

/// FNV-1a for the service-name table: service names are short, and SipHash's DoS resistance buys
/// nothing for keys the application chooses. About half the cost of the default hasher here.
#[derive(Clone, Copy, Default)]
struct BuildFnv;

struct Fnv(u64);

impl BuildHasher for BuildFnv {
    type Hasher = Fnv;

    fn build_hasher(&self) -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01B3);
        }
    }
}

const DEFAULT_INITIAL_LOAD_TIMEOUT: Duration = Duration::from_secs(5);

/// Settings of a [`Discovery`].
///
/// # Default
///
/// | setting | default |
/// |---|---|
/// | `initial_load_timeout` | 5 s |
/// | `max_staleness` | none: the last-known-good snapshot is served for as long as the registry fails |
pub struct DiscoveryBuilder {
    registry: Box<dyn Registry>,
    initial_load_timeout: Duration,
    max_staleness: Option<Duration>,
}

impl DiscoveryBuilder {
    /// How long the first read of a service waits for the first result.
    #[must_use]
    pub fn initial_load_timeout(mut self, timeout: Duration) -> Self {
        self.initial_load_timeout = timeout;
        self
    }

    /// How old (since the last successful refresh) a snapshot may get while the registry
    /// fails before reads return [`DiscoveryError::Stale`].
    #[must_use]
    pub fn max_staleness(mut self, max: Duration) -> Self {
        self.max_staleness = Some(max);
        self
    }

    /// Validates the settings.
    ///
    /// # Errors
    ///
    /// A zero `initial_load_timeout` or `max_staleness`.
    pub fn build(self) -> Result<Discovery, ConfigError> {
        if self.initial_load_timeout.is_zero() {
            return Err(ConfigError::Invalid {
                field: "initial_load_timeout",
                reason: "must be greater than zero".to_owned(),
            });
        }
        if self.max_staleness.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::Invalid {
                field: "max_staleness",
                reason: "must be greater than zero".to_owned(),
            });
        }
        Ok(Discovery::from_parts(
            self.registry,
            self.initial_load_timeout,
            self.max_staleness,
        ))
    }
}

impl fmt::Debug for DiscoveryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiscoveryBuilder")
            .field("initial_load_timeout", &self.initial_load_timeout)
            .field("max_staleness", &self.max_staleness)
            .finish_non_exhaustive()
    }
}
