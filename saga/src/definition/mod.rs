//! Saga definitions: [`Saga::builder`], [`Step`]s of three kinds, sequential and parallel.
//!
//! A saga is a list of stages run in order; a stage is one step or a parallel group. The
//! builder checks Richardson's ordering once, in [`SagaBuilder::build`]: compensatable steps
//! first, then at most one pivot, then retriable steps.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use sinew_saga::{Saga, Step, StepContext, StepError};
//!
//! #[derive(Clone, Debug, Serialize, Deserialize)]
//! struct Order { id: u64, amount: u64 }
//!
//! let saga = Saga::<Order>::builder("order-creation")
//!     .step(Step::compensatable(
//!         "create-order",
//!         |cx: StepContext<Order>| async move { Ok::<_, StepError>(cx.data().id) },
//!         |_cx| async { Ok(()) },
//!     ))
//!     .parallel([
//!         Step::compensatable("reserve-inventory", |_cx| async { Ok::<_, StepError>(()) }, |_cx| async { Ok(()) }),
//!         Step::compensatable("reserve-credit", |_cx| async { Ok::<_, StepError>(()) }, |_cx| async { Ok(()) }),
//!     ])
//!     .step(Step::pivot("process-payment", |_cx| async { Ok::<_, StepError>("receipt-1") }))
//!     .step(Step::retriable("send-notification", |_cx| async { Ok::<_, StepError>(()) }))
//!     .build()?;
//! assert_eq!(saga.name(), "order-creation");
//! assert_eq!(saga.step_names().count(), 5);
//! # Ok::<_, sinew_saga::ConfigError>(())
//! ```

mod retry;
mod step;

use std::collections::HashSet;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

pub use self::retry::{RetryPolicy, RetryPolicyBuilder};
pub(crate) use self::step::{BoxFuture, Reply};
pub use self::step::{
    IntoOutcome, OnInterrupted, Outcome, Pending, ReplyValue, Step, StepContext, StepKind,
};

use crate::error::ConfigError;

/// A validated saga definition for context type `C`. Register it with an
/// [`Orchestrator`](crate::Orchestrator) to run instances of it.
///
/// # Clone
///
/// Clones share the step functions.
pub struct Saga<C> {
    pub(crate) name: Arc<str>,
    pub(crate) stages: Vec<Vec<Step<C>>>,
    pub(crate) deadline: Option<Duration>,
    pub(crate) compensation_retry: RetryPolicy,
    pub(crate) compensation_timeout: Duration,
    pub(crate) _context: PhantomData<fn() -> C>,
}

impl<C> Clone for Saga<C> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            stages: self.stages.clone(),
            deadline: self.deadline,
            compensation_retry: self.compensation_retry.clone(),
            compensation_timeout: self.compensation_timeout,
            _context: PhantomData,
        }
    }
}

impl<C> fmt::Debug for Saga<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Saga")
            .field("name", &self.name)
            .field("stages", &self.stages)
            .field("deadline", &self.deadline)
            .field("compensation_retry", &self.compensation_retry)
            .finish_non_exhaustive()
    }
}

impl<C> Saga<C> {
    /// A builder for the saga type `name` (the name is stored with every instance and picks
    /// the definition on recovery, so keep it stable).
    pub fn builder(name: &str) -> SagaBuilder<C> {
        SagaBuilder {
            name: Arc::from(name),
            stages: Vec::new(),
            deadline: None,
            compensation_retry: default_compensation_retry(),
            compensation_timeout: Duration::from_secs(30),
        }
    }

    /// The saga type name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The step names in definition order.
    pub fn step_names(&self) -> impl Iterator<Item = &str> {
        self.stages.iter().flatten().map(|s| &*s.name)
    }
}

fn default_compensation_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: std::num::NonZeroU32::new(10),
        initial_backoff: Duration::from_millis(100),
        multiplier: 2.0,
        max_backoff: Duration::from_secs(30),
    }
}

/// Builds a [`Saga`].
///
/// # Default
///
/// No deadline. Compensations: 30 s timeout per call, 10 attempts (100 ms doubling up to 30 s)
/// before the saga is marked [`Stuck`](crate::SagaStatus::Stuck).
pub struct SagaBuilder<C> {
    name: Arc<str>,
    stages: Vec<Vec<Step<C>>>,
    deadline: Option<Duration>,
    compensation_retry: RetryPolicy,
    compensation_timeout: Duration,
}

impl<C> fmt::Debug for SagaBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SagaBuilder")
            .field("name", &self.name)
            .field("stages", &self.stages)
            .finish_non_exhaustive()
    }
}

impl<C> SagaBuilder<C> {
    /// Appends a step that runs after the previous stage.
    pub fn step(mut self, step: Step<C>) -> Self {
        self.stages.push(vec![step]);
        self
    }

    /// Appends a parallel group: its steps run concurrently after the previous stage. When
    /// one fails, the others are cancelled and those that succeeded (or whose outcome is
    /// unknown) are compensated, latest first. All steps of a group have the same kind; a
    /// pivot cannot share a group.
    pub fn parallel(mut self, steps: impl IntoIterator<Item = Step<C>>) -> Self {
        self.stages.push(steps.into_iter().collect());
        self
    }

    /// A deadline for the whole saga, counted from its start. Passing it before the pivot
    /// cancels the running steps and compensates; after the pivot it is ignored (the saga can
    /// only go forward).
    pub const fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// The retry policy of compensations; when it runs out the saga is
    /// [`Stuck`](crate::SagaStatus::Stuck).
    pub fn compensation_retry(mut self, policy: RetryPolicy) -> Self {
        self.compensation_retry = policy;
        self
    }

    /// The time limit of one compensation call.
    pub const fn compensation_timeout(mut self, timeout: Duration) -> Self {
        self.compensation_timeout = timeout;
        self
    }

    /// Validates the definition.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Empty`] for an empty saga or step name; [`ConfigError::NoSteps`];
    /// [`ConfigError::DuplicateStep`]; [`ConfigError::InvalidGroup`] for an empty or mixed
    /// parallel group or a pivot in a group; [`ConfigError::StepOrder`] when the steps are not
    /// compensatable*, at most one pivot, retriable*; [`ConfigError::Zero`] for a zero
    /// timeout or deadline.
    pub fn build(self) -> Result<Saga<C>, ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::Empty { field: "saga name" });
        }
        if self.stages.is_empty() {
            return Err(ConfigError::NoSteps {
                saga: self.name.to_string(),
            });
        }
        let mut names = HashSet::new();
        let mut last_kind = StepKind::Compensatable;
        for stage in &self.stages {
            let Some(first) = stage.first() else {
                return Err(ConfigError::InvalidGroup {
                    step: self.name.to_string(),
                    why: "a parallel group needs at least one step",
                });
            };
            if stage.iter().any(|s| s.kind != first.kind) {
                return Err(ConfigError::InvalidGroup {
                    step: first.name.to_string(),
                    why: "all steps of a parallel group must have the same kind",
                });
            }
            if first.kind == StepKind::Pivot && stage.len() > 1 {
                return Err(ConfigError::InvalidGroup {
                    step: first.name.to_string(),
                    why: "a pivot cannot run in parallel with other steps",
                });
            }
            for step in stage {
                if step.name.is_empty() {
                    return Err(ConfigError::Empty { field: "step name" });
                }
                if !names.insert(step.name.clone()) {
                    return Err(ConfigError::DuplicateStep {
                        step: step.name.to_string(),
                    });
                }
                if step.timeout.is_zero() {
                    return Err(ConfigError::Zero {
                        field: "step timeout",
                    });
                }
                let order = |k: StepKind| match k {
                    StepKind::Compensatable => 0,
                    StepKind::Pivot => 1,
                    StepKind::Retriable => 2,
                };
                let misplaced = order(step.kind) < order(last_kind)
                    || (step.kind == StepKind::Pivot && last_kind == StepKind::Pivot);
                if misplaced {
                    return Err(ConfigError::StepOrder {
                        step: step.name.to_string(),
                        kind: step.kind.as_str(),
                        after: last_kind.as_str(),
                    });
                }
                last_kind = step.kind;
            }
        }
        if self.deadline.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::Zero { field: "deadline" });
        }
        if self.compensation_timeout.is_zero() {
            return Err(ConfigError::Zero {
                field: "compensation_timeout",
            });
        }
        Ok(Saga {
            name: self.name,
            stages: self.stages,
            deadline: self.deadline,
            compensation_retry: self.compensation_retry,
            compensation_timeout: self.compensation_timeout,
            _context: PhantomData,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::StepError;

    fn comp(name: &str) -> Step<()> {
        Step::compensatable(
            name,
            |_cx| async { Ok::<_, StepError>(()) },
            |_cx| async { Ok(()) },
        )
    }
    fn pivot(name: &str) -> Step<()> {
        Step::pivot(name, |_cx| async { Ok::<_, StepError>(()) })
    }
    fn retriable(name: &str) -> Step<()> {
        Step::retriable(name, |_cx| async { Ok::<_, StepError>(()) })
    }

    #[test]
    fn valid_orders_build() {
        assert!(Saga::builder("s").step(comp("a")).build().is_ok());
        assert!(Saga::builder("s").step(pivot("a")).build().is_ok());
        assert!(Saga::builder("s").step(retriable("a")).build().is_ok());
        assert!(
            Saga::builder("s")
                .step(comp("a"))
                .parallel([comp("b"), comp("c")])
                .step(pivot("p"))
                .parallel([retriable("r1"), retriable("r2")])
                .build()
                .is_ok()
        );
        assert!(
            Saga::builder("s")
                .step(comp("a"))
                .step(retriable("r"))
                .build()
                .is_ok()
        );
    }

    #[test]
    fn invalid_orders_are_rejected() {
        let e = Saga::builder("s")
            .step(pivot("p"))
            .step(comp("a"))
            .build()
            .unwrap_err();
        assert!(matches!(e, ConfigError::StepOrder { ref step, .. } if step == "a"));
        let e = Saga::builder("s")
            .step(pivot("p"))
            .step(pivot("q"))
            .build()
            .unwrap_err();
        assert!(matches!(e, ConfigError::StepOrder { ref step, .. } if step == "q"));
        let e = Saga::builder("s")
            .step(retriable("r"))
            .step(pivot("p"))
            .build()
            .unwrap_err();
        assert!(matches!(e, ConfigError::StepOrder { .. }));
        let e = Saga::builder("s")
            .step(comp("a"))
            .step(comp("a"))
            .build()
            .unwrap_err();
        assert!(matches!(e, ConfigError::DuplicateStep { .. }));
        let e = Saga::<()>::builder("s").build().unwrap_err();
        assert!(matches!(e, ConfigError::NoSteps { .. }));
        let e = Saga::builder("s")
            .parallel([comp("a"), retriable("b")])
            .build()
            .unwrap_err();
        assert!(matches!(e, ConfigError::InvalidGroup { .. }));
        let e = Saga::builder("s")
            .parallel([pivot("a"), pivot("b")])
            .build()
            .unwrap_err();
        assert!(matches!(e, ConfigError::InvalidGroup { .. }));
        let e = Saga::<()>::builder("s").parallel([]).build().unwrap_err();
        assert!(matches!(e, ConfigError::InvalidGroup { .. }));
        let e = Saga::builder("s")
            .step(comp("a").timeout(Duration::ZERO))
            .build()
            .unwrap_err();
        assert!(matches!(e, ConfigError::Zero { .. }));
    }
}
