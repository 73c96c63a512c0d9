//! A saga definition with its context type erased, so one orchestrator runs many saga types.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::definition::{
    BoxFuture, OnInterrupted, Reply, RetryPolicy, Saga, StepContext, StepKind,
};
use crate::error::StepError;
use crate::id::{Phase, SagaId};

pub(crate) type Data = Arc<dyn Any + Send + Sync>;

pub(crate) struct RawCx {
    pub(crate) saga_id: SagaId,
    pub(crate) step: Arc<str>,
    pub(crate) phase: Phase,
    pub(crate) attempt: u32,
    pub(crate) data: Data,
    pub(crate) outputs: Arc<BTreeMap<String, Value>>,
    pub(crate) fencing_token: u64,
}

type RawAction = Arc<dyn Fn(RawCx) -> BoxFuture<Result<Reply, StepError>> + Send + Sync>;
type RawCompensation = Arc<dyn Fn(RawCx) -> BoxFuture<Result<(), StepError>> + Send + Sync>;
type Decode = Arc<dyn Fn(&Value) -> Result<Data, serde_json::Error> + Send + Sync>;

pub(crate) struct PlanStep {
    pub(crate) name: Arc<str>,
    pub(crate) kind: StepKind,
    pub(crate) timeout: Duration,
    pub(crate) retry: RetryPolicy,
    pub(crate) on_interrupted: OnInterrupted,
    pub(crate) action: RawAction,
    pub(crate) compensation: Option<RawCompensation>,
}

pub(crate) struct Plan {
    pub(crate) name: Arc<str>,
    pub(crate) stages: Vec<Vec<PlanStep>>,
    pub(crate) deadline: Option<Duration>,
    pub(crate) compensation_retry: RetryPolicy,
    pub(crate) compensation_timeout: Duration,
    pub(crate) decode: Decode,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn mismatch() -> StepError {
    StepError::terminal("saga context has a different type than the step expects")
}

impl Plan {
    pub(crate) fn from_saga<C>(saga: Saga<C>) -> Self
    where
        C: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        let saga_type = saga.name.clone();
        let stages = saga
            .stages
            .into_iter()
            .map(|stage| {
                stage
                    .into_iter()
                    .map(|step| {
                        let action = step.action.clone();
                        let ty = saga_type.clone();
                        let raw_action: RawAction =
                            Arc::new(move |raw: RawCx| match typed(raw, &ty) {
                                Some(cx) => action(cx),
                                None => Box::pin(async { Err(mismatch()) }),
                            });
                        let raw_compensation = step.compensation.clone().map(|comp| {
                            let ty = saga_type.clone();
                            let f: RawCompensation =
                                Arc::new(move |raw: RawCx| match typed(raw, &ty) {
                                    Some(cx) => comp(cx),
                                    None => Box::pin(async { Err(mismatch()) }),
                                });
                            f
                        });
                        PlanStep {
                            name: step.name,
                            kind: step.kind,
                            timeout: step.timeout,
                            retry: step.retry,
                            on_interrupted: step.on_interrupted,
                            action: raw_action,
                            compensation: raw_compensation,
                        }
                    })
                    .collect()
            })
            .collect();
        Self {
            name: saga.name,
            stages,
            deadline: saga.deadline,
            compensation_retry: saga.compensation_retry,
            compensation_timeout: saga.compensation_timeout,
            decode: Arc::new(|v| {
                let data: C = C::deserialize(v)?;
                Ok(Arc::new(data) as Data)
            }),
        }
    }

    pub(crate) fn steps(&self) -> impl Iterator<Item = &PlanStep> {
        self.stages.iter().flatten()
    }
}

fn typed<C: Send + Sync + 'static>(raw: RawCx, saga_type: &Arc<str>) -> Option<StepContext<C>> {
    let data = raw.data.downcast::<C>().ok()?;
    Some(StepContext {
        saga_id: raw.saga_id,
        saga_type: saga_type.clone(),
        step: raw.step,
        phase: raw.phase,
        attempt: raw.attempt,
        data,
        outputs: raw.outputs,
        fencing_token: raw.fencing_token,
    })
}
