#![doc = include_str!("docs/crate.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

pub mod balance;
mod discovery;
pub mod error;
mod instance;
pub mod memory;
pub mod picker;
pub mod registry;

#[cfg(feature = "consul")]
pub mod consul;
#[cfg(feature = "testing")]
pub mod testing;

pub use crate::discovery::{Discovery, DiscoveryBuilder};
pub use crate::error::ConfigError;
pub use crate::instance::{Health, Instance, InstanceId};
pub use crate::picker::{InFlight, P2c, Picked, Picker, Random, Rendezvous, RoundRobin, Weighted};
pub use crate::registry::error::{DiscoveryError, SourceError};
pub use crate::registry::{Query, Registry, Snapshot, Watch};
