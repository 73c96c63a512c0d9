//! What the orchestrator reports: [`SagaEvent`]s on a broadcast channel and counters in
//! [`Metrics`].
//!
//! Every event is also a `tracing` event (state changes at `info`/`warn`, per-step detail at
//! `debug`) inside the `saga` span (`saga.id`, `saga.type`) and, for steps, the `saga.step`
//! span (`saga.step`, `saga.phase`, `saga.attempt`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error::StepError;
use crate::id::{Phase, SagaId};
use crate::store::SagaStatus;

/// Something that happened to a saga instance.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum SagaEvent {
    /// A step or compensation call is about to be made (the write-ahead is stored).
    StepStarted {
        /// The instance.
        id: SagaId,
        /// The step.
        step: String,
        /// Action or compensation.
        phase: Phase,
        /// The attempt, from 1.
        attempt: u32,
    },
    /// A call succeeded.
    StepSucceeded {
        /// The instance.
        id: SagaId,
        /// The step.
        step: String,
        /// Action or compensation.
        phase: Phase,
        /// How long the call took.
        latency: Duration,
    },
    /// A call failed; `will_retry` tells whether another attempt follows.
    StepFailed {
        /// The instance.
        id: SagaId,
        /// The step.
        step: String,
        /// Action or compensation.
        phase: Phase,
        /// The error.
        error: StepError,
        /// Whether it will be retried.
        will_retry: bool,
    },
    /// The instance changed status (to compensating, stuck, completed, …).
    StatusChanged {
        /// The instance.
        id: SagaId,
        /// The new status.
        status: SagaStatus,
        /// Why.
        reason: Option<String>,
    },
}

/// Counters since the orchestrator was built.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) started: AtomicU64,
    pub(crate) completed: AtomicU64,
    pub(crate) compensating: AtomicU64,
    pub(crate) compensated: AtomicU64,
    pub(crate) stuck: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) steps_succeeded: AtomicU64,
    pub(crate) steps_failed: AtomicU64,
    pub(crate) step_latency_micros: AtomicU64,
    pub(crate) driving: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Metrics {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Metrics {
            started: get(&self.started),
            completed: get(&self.completed),
            compensating: get(&self.compensating),
            compensated: get(&self.compensated),
            stuck: get(&self.stuck),
            retries: get(&self.retries),
            steps_succeeded: get(&self.steps_succeeded),
            steps_failed: get(&self.steps_failed),
            step_latency_total: Duration::from_micros(get(&self.step_latency_micros)),
            driving: get(&self.driving),
        }
    }
}

/// A snapshot of the orchestrator's counters (this process only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metrics {
    /// Instances started.
    pub started: u64,
    /// Instances that completed.
    pub completed: u64,
    /// Instances that began compensating.
    pub compensating: u64,
    /// Instances fully compensated.
    pub compensated: u64,
    /// Instances that became stuck.
    pub stuck: u64,
    /// Retries (of actions and compensations).
    pub retries: u64,
    /// Successful calls.
    pub steps_succeeded: u64,
    /// Failed calls.
    pub steps_failed: u64,
    /// The summed latency of successful calls (divide by `steps_succeeded` for the mean).
    pub step_latency_total: Duration,
    /// Instances being driven right now.
    pub driving: u64,
}
