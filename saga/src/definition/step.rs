use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::retry::RetryPolicy;
use crate::error::StepError;
use crate::id::{IdempotencyKey, Phase, SagaId};

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
pub(crate) type ActionFn<C> =
    Arc<dyn Fn(StepContext<C>) -> BoxFuture<Result<Reply, StepError>> + Send + Sync>;
pub(crate) type CompensationFn<C> =
    Arc<dyn Fn(StepContext<C>) -> BoxFuture<Result<(), StepError>> + Send + Sync>;

/// What a step is, in Richardson's terms; it decides how failures are recovered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StepKind {
    /// Has a compensation. A failure at or before the pivot compensates it (backward recovery).
    Compensatable,
    /// The go/no-go point: no compensation; once it succeeds the saga only goes forward.
    Pivot,
    /// After the pivot: retried until it succeeds (forward recovery), never compensated.
    Retriable,
}

impl StepKind {
    /// `"compensatable"`, `"pivot"` or `"retriable"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Compensatable => "compensatable",
            Self::Pivot => "pivot",
            Self::Retriable => "retriable",
        }
    }
}

impl fmt::Display for StepKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What recovery does with a step found "started" (the process died during the call, so its
/// outcome is unknown).
///
/// # Default
///
/// [`OnInterrupted::Retry`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnInterrupted {
    /// Call it again with the same idempotency key (the participant must deduplicate).
    #[default]
    Retry,
    /// Give up on it and compensate (compensatable steps only; the compensation must tolerate
    /// "nothing to undo"). Pivot and retriable steps are always retried.
    Compensate,
}

/// An asynchronous participant's answer "accepted, the result comes later".
///
/// The step stays `awaiting` until [`Orchestrator::complete`](crate::Orchestrator::complete)
/// delivers the result, or until the timeout passes, which counts as an
/// [unknown](crate::ErrorClass::Unknown) failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    pub(crate) correlation_key: String,
    pub(crate) timeout: Option<Duration>,
}

impl Pending {
    /// Pending under `correlation_key` (for example the request ID the reply will carry).
    pub fn new(correlation_key: impl Into<String>) -> Self {
        Self {
            correlation_key: correlation_key.into(),
            timeout: None,
        }
    }

    /// How long to wait for the reply; the step's timeout by default.
    pub const fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// What a step action returned: its output now, or [`Pending`].
#[derive(Clone, Debug)]
pub(crate) enum Reply {
    Done(Value),
    Pending(Pending),
}

/// Return types a step action may produce: any serialisable output (stored as the step's
/// output), [`Pending`], or an [`Outcome`] choosing between them at run time.
pub trait IntoOutcome: Send + 'static {
    /// Converts into the stored reply.
    #[doc(hidden)]
    fn into_reply(self) -> Result<ReplyValue, StepError>;
}

/// The erased reply; not part of the API.
#[doc(hidden)]
#[derive(Debug)]
pub struct ReplyValue(pub(crate) Reply);

/// A step result decided at run time: done with an output, or pending.
#[derive(Clone, Debug)]
pub enum Outcome<T> {
    /// Done: the output is stored.
    Done(T),
    /// The result arrives later through [`Orchestrator::complete`](crate::Orchestrator::complete).
    Pending(Pending),
}

impl<T: Serialize + Send + 'static> IntoOutcome for T {
    fn into_reply(self) -> Result<ReplyValue, StepError> {
        serde_json::to_value(&self)
            .map(|v| ReplyValue(Reply::Done(v)))
            .map_err(|e| StepError::terminal(format!("step output is not serialisable: {e}")))
    }
}

impl IntoOutcome for Pending {
    fn into_reply(self) -> Result<ReplyValue, StepError> {
        Ok(ReplyValue(Reply::Pending(self)))
    }
}

impl<T: Serialize + Send + 'static> IntoOutcome for Outcome<T> {
    fn into_reply(self) -> Result<ReplyValue, StepError> {
        match self {
            Self::Done(v) => v.into_reply(),
            Self::Pending(p) => Ok(ReplyValue(Reply::Pending(p))),
        }
    }
}

/// What a step action or compensation receives: the saga's data, earlier steps' outputs and
/// the call's identity (saga ID, step, phase, attempt, idempotency key).
pub struct StepContext<C> {
    pub(crate) saga_id: SagaId,
    pub(crate) saga_type: Arc<str>,
    pub(crate) step: Arc<str>,
    pub(crate) phase: Phase,
    pub(crate) attempt: u32,
    pub(crate) data: Arc<C>,
    pub(crate) outputs: Arc<BTreeMap<String, Value>>,
    pub(crate) fencing_token: u64,
}

impl<C> Clone for StepContext<C> {
    fn clone(&self) -> Self {
        Self {
            saga_id: self.saga_id,
            saga_type: self.saga_type.clone(),
            step: self.step.clone(),
            phase: self.phase,
            attempt: self.attempt,
            data: self.data.clone(),
            outputs: self.outputs.clone(),
            fencing_token: self.fencing_token,
        }
    }
}

impl<C: fmt::Debug> fmt::Debug for StepContext<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StepContext")
            .field("saga_id", &self.saga_id)
            .field("step", &self.step)
            .field("phase", &self.phase)
            .field("attempt", &self.attempt)
            .field("data", &self.data)
            .finish_non_exhaustive()
    }
}

impl<C> StepContext<C> {
    /// The saga's typed data, as given at start.
    pub fn data(&self) -> &C {
        &self.data
    }

    /// The saga instance's ID.
    pub const fn saga_id(&self) -> SagaId {
        self.saga_id
    }

    /// The saga type (its builder name).
    pub fn saga_type(&self) -> &str {
        &self.saga_type
    }

    /// This step's name.
    pub fn step(&self) -> &str {
        &self.step
    }

    /// Whether this is the action or the compensation.
    pub const fn phase(&self) -> Phase {
        self.phase
    }

    /// The attempt number, from 1; it keeps counting across crashes.
    pub const fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The idempotency key of this (saga, step, phase): the same on every attempt. Pass it to
    /// the participant, which must not repeat the effect for a key it has seen.
    pub fn idempotency_key(&self) -> IdempotencyKey {
        IdempotencyKey::derive(self.saga_id, &self.step, self.phase)
    }

    /// A fencing token: the instance version at this call's write-ahead. It only grows, and a
    /// process that took the instance over (after this one's lease expired) calls with a
    /// larger one. A participant that remembers the largest token it has seen per saga and
    /// refuses smaller ones cannot be driven by a stale orchestrator that has not noticed yet
    /// that it lost its lease.
    pub const fn fencing_token(&self) -> u64 {
        self.fencing_token
    }

    /// The stored output of step `step` (in a compensation, the step's own output is
    /// `ctx.output(ctx.step())`).
    ///
    /// # Errors
    ///
    /// A [terminal](StepError::terminal) error when the step has no output (it has not
    /// succeeded) or the output does not deserialise as `T`.
    pub fn output<T: DeserializeOwned>(&self, step: &str) -> Result<T, StepError> {
        let value = self
            .outputs
            .get(step)
            .ok_or_else(|| StepError::terminal(format!("step `{step}` has no output")))?;
        T::deserialize(value).map_err(|e| {
            StepError::terminal(format!("output of step `{step}` does not deserialise: {e}"))
        })
    }

    /// The stored output of step `step`, or `None` when it has none (for example a
    /// compensation of a step whose outcome is unknown).
    pub fn try_output<T: DeserializeOwned>(&self, step: &str) -> Option<T> {
        self.outputs.get(step).and_then(|v| T::deserialize(v).ok())
    }
}

/// One step of a saga: a name, a kind, an action, a compensation (compensatable steps only),
/// a timeout and a retry policy.
///
/// Actions are `Fn(StepContext<C>) -> impl Future<Output = Result<O, StepError>>` where `O` is
/// a serialisable output, [`Pending`] or [`Outcome<T>`].
///
/// # Default
///
/// Timeout 30 s per call. Compensatable and pivot steps use [`RetryPolicy::default`]
/// (3 attempts); retriable steps retry forever (100 ms doubling up to 30 s).
/// [`OnInterrupted::Retry`].
pub struct Step<C> {
    pub(crate) name: Arc<str>,
    pub(crate) kind: StepKind,
    pub(crate) action: ActionFn<C>,
    pub(crate) compensation: Option<CompensationFn<C>>,
    pub(crate) timeout: Duration,
    pub(crate) retry: RetryPolicy,
    pub(crate) on_interrupted: OnInterrupted,
}

impl<C> Clone for Step<C> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            kind: self.kind,
            action: self.action.clone(),
            compensation: self.compensation.clone(),
            timeout: self.timeout,
            retry: self.retry.clone(),
            on_interrupted: self.on_interrupted,
        }
    }
}

impl<C> fmt::Debug for Step<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Step")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("on_interrupted", &self.on_interrupted)
            .finish_non_exhaustive()
    }
}

fn erase_action<C, A, F, O>(action: A) -> ActionFn<C>
where
    C: Send + Sync + 'static,
    A: Fn(StepContext<C>) -> F + Send + Sync + 'static,
    F: Future<Output = Result<O, StepError>> + Send + 'static,
    O: IntoOutcome,
{
    Arc::new(move |cx| {
        let fut = action(cx);
        Box::pin(async move { fut.await.and_then(IntoOutcome::into_reply).map(|r| r.0) })
    })
}

impl<C: Send + Sync + 'static> Step<C> {
    fn with(name: &str, kind: StepKind, action: ActionFn<C>) -> Self {
        let retry = match kind {
            StepKind::Retriable => RetryPolicy {
                max_attempts: None,
                initial_backoff: Duration::from_millis(100),
                multiplier: 2.0,
                max_backoff: Duration::from_secs(30),
            },
            _ => RetryPolicy::default(),
        };
        Self {
            name: Arc::from(name),
            kind,
            action,
            compensation: None,
            timeout: Duration::from_secs(30),
            retry,
            on_interrupted: OnInterrupted::default(),
        }
    }

    /// A compensatable step: `action`, undone by `compensation` when the saga rolls back.
    ///
    /// The compensation gets the same context (with the step's own output when it has one;
    /// it may have none when the action's outcome was unknown) and must tolerate "nothing to
    /// undo".
    pub fn compensatable<A, F, O, K, G>(name: &str, action: A, compensation: K) -> Self
    where
        A: Fn(StepContext<C>) -> F + Send + Sync + 'static,
        F: Future<Output = Result<O, StepError>> + Send + 'static,
        O: IntoOutcome,
        K: Fn(StepContext<C>) -> G + Send + Sync + 'static,
        G: Future<Output = Result<(), StepError>> + Send + 'static,
    {
        let mut step = Self::with(name, StepKind::Compensatable, erase_action(action));
        step.compensation = Some(Arc::new(move |cx| Box::pin(compensation(cx))));
        step
    }

    /// The pivot: no compensation; its success commits the saga to going forward.
    pub fn pivot<A, F, O>(name: &str, action: A) -> Self
    where
        A: Fn(StepContext<C>) -> F + Send + Sync + 'static,
        F: Future<Output = Result<O, StepError>> + Send + 'static,
        O: IntoOutcome,
    {
        Self::with(name, StepKind::Pivot, erase_action(action))
    }

    /// A retriable step after the pivot: retried until it succeeds; a terminal error (or a
    /// bounded retry policy running out) parks the saga as [`Stuck`](crate::SagaStatus::Stuck).
    pub fn retriable<A, F, O>(name: &str, action: A) -> Self
    where
        A: Fn(StepContext<C>) -> F + Send + Sync + 'static,
        F: Future<Output = Result<O, StepError>> + Send + 'static,
        O: IntoOutcome,
    {
        Self::with(name, StepKind::Retriable, erase_action(action))
    }
}

impl<C> Step<C> {
    /// The time limit of one call (greater than zero). A call that overruns is cancelled and
    /// counts as an [unknown](crate::ErrorClass::Unknown) failure.
    pub const fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The retry policy of the action.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// What recovery does with this step when found "started" after a crash.
    pub const fn on_interrupted(mut self, policy: OnInterrupted) -> Self {
        self.on_interrupted = policy;
        self
    }

    /// The step's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The step's kind.
    pub const fn kind(&self) -> StepKind {
        self.kind
    }
}
