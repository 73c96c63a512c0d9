//! Errors: configuration, step outcomes, store failures and orchestrator operations.
//!
//! The `Display` text of these errors is meant for people and is not part of the API; match
//! on the variants (or use the `is_*` helpers) instead.

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::id::SagaId;
use crate::store::SagaStatus;

/// A saga definition or orchestrator configuration that `build()` rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required name is empty.
    #[error("`{field}` must be non-empty")]
    Empty {
        /// The field.
        field: &'static str,
    },
    /// A saga has no steps.
    #[error("saga `{saga}` has no steps: add at least one with `.step(..)` or `.parallel(..)`")]
    NoSteps {
        /// The saga type.
        saga: String,
    },
    /// Two steps share a name (names key the step log).
    #[error("step name `{step}` is used twice: step names must be unique within a saga")]
    DuplicateStep {
        /// The step name.
        step: String,
    },
    /// The steps are not in the order compensatable*, at most one pivot, retriable*.
    #[error(
        "step `{step}` ({kind}) comes after a {after} step: order steps as compensatable*, then at most one pivot, then retriable*"
    )]
    StepOrder {
        /// The misplaced step.
        step: String,
        /// Its kind.
        kind: &'static str,
        /// The kind of an earlier step that it may not follow.
        after: &'static str,
    },
    /// A parallel group is empty, mixes kinds, or contains a pivot next to other steps.
    #[error("parallel group starting at `{step}` is invalid: {why}")]
    InvalidGroup {
        /// The group's first step (or the saga type when the group is empty).
        step: String,
        /// What is wrong.
        why: &'static str,
    },
    /// A duration or count that must be positive is zero.
    #[error("`{field}` must be greater than zero")]
    Zero {
        /// The field.
        field: &'static str,
    },
    /// A number is out of its range.
    #[error("`{field}` is out of range: {why}")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// The allowed range.
        why: &'static str,
    },
    /// Two sagas with the same type name were registered.
    #[error("saga type `{saga}` is registered twice")]
    DuplicateSaga {
        /// The saga type.
        saga: String,
    },
}

/// How a participant's failure should be treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorClass {
    /// The call failed without effect and may succeed if repeated (a transient error). Retried
    /// per the step's [`RetryPolicy`](crate::RetryPolicy).
    Retryable,
    /// The call failed for good without effect (a domain refusal: out of stock, card
    /// declined). Not retried: before the pivot the saga compensates.
    Terminal,
    /// The outcome is unknown: the call may or may not have taken effect (a timeout, a lost
    /// connection). Retried with the same idempotency key; if the retries run out, a
    /// compensatable step is compensated too.
    Unknown,
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Retryable => "retryable",
            Self::Terminal => "terminal",
            Self::Unknown => "unknown",
        })
    }
}

/// A failed step or compensation: a class that decides what happens next, and a message.
///
/// ```
/// use sinew_saga::{ErrorClass, StepError};
///
/// let err = StepError::terminal("card declined");
/// assert_eq!(err.class(), ErrorClass::Terminal);
/// assert!(err.is_terminal());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
#[error("{class} step error: {message}")]
pub struct StepError {
    class: ErrorClass,
    message: String,
}

impl StepError {
    /// An error of `class`.
    pub fn new(class: ErrorClass, message: impl fmt::Display) -> Self {
        Self {
            class,
            message: message.to_string(),
        }
    }

    /// A transient failure without effect: retried.
    pub fn retryable(message: impl fmt::Display) -> Self {
        Self::new(ErrorClass::Retryable, message)
    }

    /// A definitive failure without effect: not retried.
    pub fn terminal(message: impl fmt::Display) -> Self {
        Self::new(ErrorClass::Terminal, message)
    }

    /// An uncertain outcome (it may have taken effect): retried with the same key.
    pub fn unknown(message: impl fmt::Display) -> Self {
        Self::new(ErrorClass::Unknown, message)
    }

    /// The class.
    pub const fn class(&self) -> ErrorClass {
        self.class
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether the class is [`ErrorClass::Retryable`].
    pub const fn is_retryable(&self) -> bool {
        matches!(self.class, ErrorClass::Retryable)
    }

    /// Whether the class is [`ErrorClass::Terminal`].
    pub const fn is_terminal(&self) -> bool {
        matches!(self.class, ErrorClass::Terminal)
    }

    /// Whether the class is [`ErrorClass::Unknown`].
    pub const fn is_unknown(&self) -> bool {
        matches!(self.class, ErrorClass::Unknown)
    }
}

/// A saga store failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The instance changed since it was read (optimistic versioning) or its lease is held by
    /// another owner: this orchestrator must stop driving it.
    #[error("saga {id} was changed by another owner (expected version {expected})")]
    Conflict {
        /// The instance.
        id: SagaId,
        /// The version the writer expected.
        expected: u64,
    },
    /// An instance with this ID exists already.
    #[error("saga {id} already exists")]
    AlreadyExists {
        /// The instance.
        id: SagaId,
    },
    /// A stored value could not be decoded.
    #[error("stored saga data is corrupt: {what}")]
    Corrupt {
        /// What could not be read.
        what: String,
    },
    /// The database failed.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    #[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
    #[error("saga store database error")]
    Database(#[from] sqlx::Error),
}

impl StoreError {
    /// Whether this is a [`StoreError::Conflict`].
    pub const fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict { .. })
    }
}

/// An orchestrator operation failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SagaError {
    /// No saga of this type is registered with the orchestrator.
    #[error("saga type `{saga}` is not registered: pass it to `OrchestratorBuilder::register`")]
    UnknownSagaType {
        /// The saga type.
        saga: String,
    },
    /// No instance has this ID.
    #[error("saga {id} does not exist")]
    NotFound {
        /// The instance.
        id: SagaId,
    },
    /// Another orchestrator process holds the instance's lease and drives it.
    #[error("saga {id} is driven by `{owner}`; try again when its lease expires")]
    Leased {
        /// The instance.
        id: SagaId,
        /// The lease owner.
        owner: String,
    },
    /// The lease was lost while driving (another process took the instance over after a
    /// missed heartbeat); this process stopped driving it.
    #[error("lost the lease on saga {id}; another orchestrator drives it now")]
    LeaseLost {
        /// The instance.
        id: SagaId,
    },
    /// The operation does not apply in the instance's current status.
    #[error("saga {id} is {status}: {why}")]
    InvalidState {
        /// The instance.
        id: SagaId,
        /// Its status.
        status: SagaStatus,
        /// Why the operation does not apply.
        why: &'static str,
    },
    /// The saga has no step of this name.
    #[error("saga {id} has no step `{step}`")]
    UnknownStep {
        /// The instance.
        id: SagaId,
        /// The step.
        step: String,
    },
    /// The context or an output could not be (de)serialised.
    #[error("saga data could not be serialised or deserialised")]
    Serde(#[from] serde_json::Error),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SagaError {
    /// Whether this is a [`SagaError::Leased`] (another process drives the instance).
    pub const fn is_leased(&self) -> bool {
        matches!(self, Self::Leased { .. })
    }
}
