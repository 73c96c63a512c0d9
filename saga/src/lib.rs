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

#[cfg(test)]
mod tests {
    use super::*;

    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: &T) {}

    #[test]
    fn public_types_and_futures_are_send() {
        let orchestrator = Orchestrator::builder(MemoryStore::new())
            .build()
            .expect("valid");
        send_sync(&orchestrator);
        send_sync(&MemoryStore::new());
        send_sync(&SagaId::new());
        send(&orchestrator.run(SagaId::new()));
        send(&orchestrator.execute("t", &()));
        send(&orchestrator.recover());
        send(&orchestrator.cancel(SagaId::new()));
        send(&orchestrator.resume(SagaId::new()));
        let saga = Saga::<()>::builder("s")
            .step(Step::pivot("p", |_cx| async { Ok::<_, StepError>(()) }))
            .build()
            .expect("valid");
        send_sync(&saga);
    }
}
