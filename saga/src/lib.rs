#![doc = include_str!("docs/crate.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

#[cfg(feature = "messaging")]
#[cfg_attr(docsrs, doc(cfg(feature = "messaging")))]
pub mod choreography;
mod clock;
pub mod definition;
pub mod error;
pub mod id;
pub mod orchestrator;
pub mod store;

pub use crate::definition::{
    OnInterrupted, Outcome, Pending, RetryPolicy, Saga, SagaBuilder, Step, StepContext, StepKind,
};
pub use crate::error::{ConfigError, ErrorClass, SagaError, StepError, StoreError};
pub use crate::id::{IdempotencyKey, Phase, SagaId};
pub use crate::orchestrator::events::{Metrics, SagaEvent};
pub use crate::orchestrator::{InstanceDetails, Orchestrator, OrchestratorBuilder};
pub use crate::store::{ListQuery, MemoryStore, SagaStatus, SagaStore, StepState};
