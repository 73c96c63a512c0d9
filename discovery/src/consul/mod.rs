//! Consul: a typed agent client, a [`RegistrationHandle`] that keeps a registration alive, and
//! [`ConsulRegistry`], the blocking-query watch engine behind [`Discovery`](crate::Discovery).
//!
//! - [`ConsulClient`]: register (`PUT /v1/agent/service/register`), deregister, TTL
//!   pass/warn/fail/update, maintenance, and the health query with `dc`, `tag` and `filter`.
//!   The ACL token travels only in `X-Consul-Token` and prints as `<redacted>`.
//! - [`ServiceRegistration`] and [`Check`]: validated when built (one check kind per check by
//!   construction, intervals and TTLs of at least 1 s, `DeregisterCriticalServiceAfter` of at
//!   least 1 min, explicit check IDs).
//! - [`RegistrationHandle`]: TTL heartbeats, re-registration with backoff after an agent
//!   restart, and a graceful shutdown (maintenance, drain, bounded deregistration), tied to
//!   SIGTERM/Ctrl-C by [`RegistrationHandle::shutdown_on_signal`].
//! - [`ConsulRegistry`]: one shared long poll per query, with Consul's blocking-query rules.
//!
//! Differs from the reference (node `consul`): registrations survive agent restarts, reads
//! never go to Consul per request, and an empty `Service.Address` falls back to tagged
//! addresses and then the node address.

mod client;
mod duration;
mod error;
mod handle;
mod model;
mod registration;
mod signal;
mod watch;

pub use self::client::{
    AclToken, Blocking, ConsulClient, ConsulClientBuilder, MAX_WAIT, QueryMeta,
};
pub use self::error::ConsulError;
pub use self::handle::{RegistrationConfig, RegistrationConfigBuilder, RegistrationHandle};
pub use self::registration::{
    Check, CheckStatus, MIN_CHECK_INTERVAL, MIN_DEREGISTER_CRITICAL_AFTER, ServiceRegistration,
    ServiceRegistrationBuilder,
};
pub use self::signal::shutdown_signal;
pub use self::watch::{ConsulRegistry, WatchConfig, WatchConfigBuilder};

#[cfg(feature = "testing")]
pub(crate) use self::duration::parse as parse_duration;
