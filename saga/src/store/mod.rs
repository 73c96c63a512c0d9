//! The durable saga log: the [`SagaStore`] trait and its implementations.
//!
//! A store keeps one [`Instance`] per saga (status, context, version, lease) and one
//! [`StepRecord`] per (step, phase). The orchestrator writes ahead: the record goes to
//! `started` before the participant is called and to `succeeded` with the output after. Every
//! write is a [`Commit`] checked against the instance's version and lease owner (optimistic
//! concurrency), so a process that lost its lease cannot overwrite its successor's progress.
//!
//! - [`MemoryStore`]: in-process, for tests and single-process use without durability.
//! - `SqliteStore` (feature `sqlite`, default): one file, the embedded default.
//! - `PgStore` (feature `postgres`): several orchestrator processes share one database.

mod memory;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(feature = "sqlite")]
pub mod sqlite;

use std::fmt;
use std::future::Future;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use self::memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use self::postgres::PgStore;
#[cfg(feature = "sqlite")]
pub use self::sqlite::SqliteStore;

use crate::error::{StepError, StoreError};
use crate::id::{IdempotencyKey, Phase, SagaId};

/// Milliseconds since the Unix epoch, as stored.
pub type Millis = i64;

/// Where a saga instance stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SagaStatus {
    /// Running steps forward.
    Running,
    /// Running compensations (backward recovery).
    Compensating,
    /// Parked: a compensation or a post-pivot step ran out of retries (or failed terminally).
    /// Needs an admin operation: `resume`, `skip` or `force_complete`.
    Stuck,
    /// Every step completed.
    Completed,
    /// Every completed step was compensated.
    Compensated,
    /// An operator declared it finished with `force_complete`.
    ForceCompleted,
}

impl SagaStatus {
    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Compensating => "compensating",
            Self::Stuck => "stuck",
            Self::Completed => "completed",
            Self::Compensated => "compensated",
            Self::ForceCompleted => "force_completed",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "running" => Self::Running,
            "compensating" => Self::Compensating,
            "stuck" => Self::Stuck,
            "completed" => Self::Completed,
            "compensated" => Self::Compensated,
            "force_completed" => Self::ForceCompleted,
            _ => return None,
        })
    }

    /// Whether nothing more will happen to the instance.
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Compensated | Self::ForceCompleted
        )
    }

    /// Whether recovery picks the instance up (running or compensating).
    pub const fn is_active(self) -> bool {
        matches!(self, Self::Running | Self::Compensating)
    }
}

impl fmt::Display for SagaStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where one (step, phase) stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StepState {
    /// Written ahead: the participant is being (or was, before a crash) called.
    Started,
    /// Done; the output is stored.
    Succeeded,
    /// An attempt failed; the next one is due at `due_at`.
    Retrying,
    /// The participant accepted the call and will reply under `correlation_key` by `due_at`.
    Awaiting,
    /// Failed for good without effect (not compensated).
    Failed,
    /// Gave up with an unknown outcome (a compensatable step is compensated).
    Unknown,
    /// Skipped by an operator (`skip`).
    Skipped,
}

impl StepState {
    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Succeeded => "succeeded",
            Self::Retrying => "retrying",
            Self::Awaiting => "awaiting",
            Self::Failed => "failed",
            Self::Unknown => "unknown",
            Self::Skipped => "skipped",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "started" => Self::Started,
            "succeeded" => Self::Succeeded,
            "retrying" => Self::Retrying,
            "awaiting" => Self::Awaiting,
            "failed" => Self::Failed,
            "unknown" => Self::Unknown,
            "skipped" => Self::Skipped,
            _ => return None,
        })
    }
}

impl fmt::Display for StepState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One saga instance as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Instance {
    /// The ID.
    pub id: SagaId,
    /// The saga type (builder name).
    pub saga_type: String,
    /// The status.
    pub status: SagaStatus,
    /// The saga's context (the typed data, as JSON).
    pub data: Value,
    /// Bumped by every commit (optimistic concurrency).
    pub version: u64,
    /// The orchestrator process driving it, if any.
    pub lease_owner: Option<String>,
    /// When the lease expires unless renewed by a heartbeat.
    pub lease_until: Option<Millis>,
    /// The saga-level deadline.
    pub deadline: Option<Millis>,
    /// `cancel` was requested.
    pub cancel_requested: bool,
    /// Why it is compensating, stuck or finished (the failure, "cancelled", …).
    pub reason: Option<String>,
    /// Creation time.
    pub created_at: Millis,
    /// Last commit time.
    pub updated_at: Millis,
}

impl Instance {
    /// A fresh running instance.
    pub fn new(id: SagaId, saga_type: &str, data: Value, now: Millis) -> Self {
        Self {
            id,
            saga_type: saga_type.to_owned(),
            status: SagaStatus::Running,
            data,
            version: 0,
            lease_owner: None,
            lease_until: None,
            deadline: None,
            cancel_requested: false,
            reason: None,
            created_at: now,
            updated_at: now,
        }
    }
}

/// One (step, phase) of an instance as stored: the step history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StepRecord {
    /// The step name.
    pub step: String,
    /// Action or compensation.
    pub phase: Phase,
    /// The state.
    pub state: StepState,
    /// Attempts started so far.
    pub attempt: u32,
    /// The idempotency key given to the participant.
    pub idempotency_key: IdempotencyKey,
    /// The output (forward phase, once succeeded).
    pub output: Option<Value>,
    /// The last error.
    pub error: Option<StepError>,
    /// The asynchronous participant's correlation key.
    pub correlation_key: Option<String>,
    /// When the next retry is due, or when an awaited reply times out.
    pub due_at: Option<Millis>,
    /// The instance version of the record's last write (orders completions).
    pub seq: u64,
    /// When the first attempt started.
    pub started_at: Millis,
    /// Last write.
    pub updated_at: Millis,
}

impl StepRecord {
    /// A record in `state` for attempt `attempt`.
    pub fn new(
        saga_id: SagaId,
        step: &str,
        phase: Phase,
        state: StepState,
        attempt: u32,
        now: Millis,
    ) -> Self {
        Self {
            step: step.to_owned(),
            phase,
            state,
            attempt,
            idempotency_key: IdempotencyKey::derive(saga_id, step, phase),
            output: None,
            error: None,
            correlation_key: None,
            due_at: None,
            seq: 0,
            started_at: now,
            updated_at: now,
        }
    }
}

/// An instance with its step records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Snapshot {
    /// The instance.
    pub instance: Instance,
    /// Its step records, in write order (`seq`).
    pub records: Vec<StepRecord>,
}

impl Snapshot {
    /// The record of (`step`, `phase`).
    pub fn record(&self, step: &str, phase: Phase) -> Option<&StepRecord> {
        self.records
            .iter()
            .find(|r| r.step == step && r.phase == phase)
    }
}

/// One atomic write: the instance's new status and lease, and at most one step record.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Commit {
    /// The new status.
    pub status: SagaStatus,
    /// The new reason.
    pub reason: Option<String>,
    /// The new lease expiry; `None` releases the lease.
    pub lease_until: Option<Millis>,
    /// The record to insert or replace; its `seq` is set to the new version.
    pub record: Option<StepRecord>,
    /// Commit time.
    pub now: Millis,
}

impl Commit {
    /// A commit (for store implementors' tests; the orchestrator builds its own).
    pub const fn new(
        status: SagaStatus,
        reason: Option<String>,
        lease_until: Option<Millis>,
        record: Option<StepRecord>,
        now: Millis,
    ) -> Self {
        Self {
            status,
            reason,
            lease_until,
            record,
            now,
        }
    }
}

/// A reply delivered to an awaiting step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum StepReply {
    /// The participant succeeded with this output.
    Ok(Value),
    /// The participant failed.
    Err(StepError),
}

/// The result of [`SagaStore::acquire`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Acquired {
    /// The lease is ours; the instance as it is now (its version already bumped).
    Yes(Snapshot),
    /// Another owner holds an unexpired lease.
    Held {
        /// The owner.
        owner: String,
    },
    /// No such instance.
    NotFound,
}

/// Filters for [`SagaStore::list`].
///
/// # Default
///
/// Every status and type, newest first, at most 100.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListQuery {
    /// Only this status.
    pub status: Option<SagaStatus>,
    /// Only this saga type.
    pub saga_type: Option<String>,
    /// At most this many.
    pub limit: u32,
}

impl Default for ListQuery {
    fn default() -> Self {
        Self {
            status: None,
            saga_type: None,
            limit: 100,
        }
    }
}

impl ListQuery {
    /// Only instances in `status`.
    pub fn status(mut self, status: SagaStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// Only instances of `saga_type`.
    pub fn saga_type(mut self, saga_type: impl Into<String>) -> Self {
        self.saga_type = Some(saga_type.into());
        self
    }

    /// At most `limit` instances.
    pub const fn limit(mut self, limit: u32) -> Self {
        self.limit = limit;
        self
    }
}

/// A durable saga log. Implementations must make each method atomic.
///
/// The orchestrator is the only writer of instances and records (through [`create`],
/// [`acquire`] and [`commit`]); [`request_cancel`] and [`deliver_reply`] are signals that any
/// process may send and that do not bump the version.
///
/// [`create`]: SagaStore::create
/// [`acquire`]: SagaStore::acquire
/// [`commit`]: SagaStore::commit
/// [`request_cancel`]: SagaStore::request_cancel
/// [`deliver_reply`]: SagaStore::deliver_reply
pub trait SagaStore: Send + Sync + 'static {
    /// Inserts a new instance (with its lease set as given).
    ///
    /// # Errors
    ///
    /// [`StoreError::AlreadyExists`] when the ID is taken.
    fn create(&self, instance: &Instance) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Reads an instance and its records.
    fn load(&self, id: SagaId)
    -> impl Future<Output = Result<Option<Snapshot>, StoreError>> + Send;

    /// Takes the lease for `owner` until `lease_until` if it is free, expired (before `now`)
    /// or already `owner`'s; bumps the version so the previous holder's commits fail.
    fn acquire(
        &self,
        id: SagaId,
        owner: &str,
        now: Millis,
        lease_until: Millis,
    ) -> impl Future<Output = Result<Acquired, StoreError>> + Send;

    /// Applies `commit` if the instance is at `expected_version` and leased by `owner`;
    /// returns the new version (`expected_version + 1`).
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] otherwise.
    fn commit(
        &self,
        id: SagaId,
        owner: &str,
        expected_version: u64,
        commit: &Commit,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Extends `owner`'s lease to `lease_until` without bumping the version. Returns
    /// `Some(cancel_requested)` while the lease is `owner`'s, `None` once it is lost.
    fn heartbeat(
        &self,
        id: SagaId,
        owner: &str,
        lease_until: Millis,
    ) -> impl Future<Output = Result<Option<bool>, StoreError>> + Send;

    /// Flags the instance for cancellation. Returns `false` if it does not exist.
    fn request_cancel(&self, id: SagaId) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Stores a reply for the forward record of `step`, unless that record has succeeded.
    /// Returns `false` when there is no such record (or it has succeeded).
    fn deliver_reply(
        &self,
        id: SagaId,
        step: &str,
        reply: &StepReply,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Reads the reply delivered for `step`, if any. A commit of a `started` forward record
    /// clears it (a new attempt waits for a new reply).
    fn reply(
        &self,
        id: SagaId,
        step: &str,
    ) -> impl Future<Output = Result<Option<StepReply>, StoreError>> + Send;

    /// IDs of running or compensating instances whose lease is free or expired at `now`,
    /// oldest first, at most `limit`.
    fn recoverable(
        &self,
        now: Millis,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<SagaId>, StoreError>> + Send;

    /// Instances matching `query`, newest first.
    fn list(
        &self,
        query: &ListQuery,
    ) -> impl Future<Output = Result<Vec<Instance>, StoreError>> + Send;

    /// The ID of the instance with an awaiting step under `correlation_key`, and the step.
    fn find_awaiting(
        &self,
        correlation_key: &str,
    ) -> impl Future<Output = Result<Option<(SagaId, String)>, StoreError>> + Send;
}
