//! The orchestrator: starts, drives, recovers, cancels and administers saga instances.
//!
//! One [`Orchestrator`] holds a [`SagaStore`] and any number of registered [`Saga`]
//! definitions. [`run`](Orchestrator::run) drives one instance to an end (completed,
//! compensated or stuck) holding a lease on it, renewed by heartbeats; every step is written
//! ahead to the store before its participant is called. [`recover`](Orchestrator::recover)
//! picks up instances whose lease expired (their process died) and carries them on.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use sinew_saga::{MemoryStore, Orchestrator, Saga, SagaStatus, Step, StepContext, StepError};
//!
//! #[derive(Clone, Debug, Serialize, Deserialize)]
//! struct Order { id: u64 }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let saga = Saga::<Order>::builder("order-creation")
//!     .step(Step::compensatable(
//!         "reserve-inventory",
//!         |cx: StepContext<Order>| async move {
//!             Ok::<_, StepError>(format!("reservation-{}", cx.data().id))
//!         },
//!         |_cx| async { Ok(()) },
//!     ))
//!     .step(Step::pivot("process-payment", |_cx| async { Ok::<_, StepError>(()) }))
//!     .build()?;
//! let orchestrator = Orchestrator::builder(MemoryStore::new()).register(saga).build()?;
//!
//! let id = orchestrator.start("order-creation", &Order { id: 7 }).await?;
//! assert_eq!(orchestrator.run(id).await?, SagaStatus::Completed);
//!
//! let details = orchestrator.instance(id).await?.expect("stored");
//! assert_eq!(details.records.len(), 2);
//! # Ok(()) }
//! ```

mod driver;
pub mod events;
mod plan;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, broadcast, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use self::events::{Counters, Metrics, SagaEvent};
use self::plan::Plan;
use crate::clock::{Clock, millis};
use crate::definition::Saga;
use crate::error::{ConfigError, SagaError, StepError};
use crate::id::SagaId;
use crate::store::{
    Acquired, Instance, ListQuery, SagaStatus, SagaStore, Snapshot, StepRecord, StepReply,
};

/// Drives saga instances stored in `S`.
///
/// # Clone
///
/// Clones share the store, the registered sagas, the event channel and the counters.
pub struct Orchestrator<S> {
    inner: Arc<Inner<S>>,
}

impl<S> Clone for Orchestrator<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<S> fmt::Debug for Orchestrator<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Orchestrator")
            .field("owner", &self.inner.owner)
            .field("sagas", &self.inner.plans.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

pub(crate) struct Local {
    pub(crate) cancel: watch::Sender<bool>,
    pub(crate) replies: Arc<Notify>,
}

pub(crate) struct Inner<S> {
    pub(crate) store: S,
    pub(crate) plans: HashMap<String, Arc<Plan>>,
    pub(crate) owner: String,
    pub(crate) lease: Duration,
    pub(crate) heartbeat: Duration,
    pub(crate) poll: Duration,
    pub(crate) recovery_batch: u32,
    pub(crate) clock: Clock,
    pub(crate) events: broadcast::Sender<SagaEvent>,
    pub(crate) counters: Counters,
    pub(crate) local: Mutex<HashMap<SagaId, Local>>,
}

impl<S> Inner<S> {
    pub(crate) fn local(&self) -> MutexGuard<'_, HashMap<SagaId, Local>> {
        // Entries are inserted and removed whole; a poisoned map is still consistent.
        self.local.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn emit(&self, event: SagaEvent) {
        // No receiver is fine: events are optional.
        let _ = self.events.send(event);
    }
}

/// Builds an [`Orchestrator`].
///
/// # Default
///
/// Owner ID `"{hostname or 'orchestrator'}-{random}"`, lease 30 s, heartbeat every 10 s
/// (a third of the lease), reply/cancel poll every 1 s, recovery batch 100, event channel of
/// 1024.
pub struct OrchestratorBuilder<S> {
    store: S,
    plans: Vec<Arc<Plan>>,
    owner: Option<String>,
    lease: Duration,
    heartbeat: Option<Duration>,
    poll: Duration,
    recovery_batch: u32,
    event_capacity: usize,
}

impl<S> fmt::Debug for OrchestratorBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrchestratorBuilder")
            .field("owner", &self.owner)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl<S: SagaStore> OrchestratorBuilder<S> {
    /// Registers a saga definition; instances of its type can then be started and recovered.
    pub fn register<C>(mut self, saga: Saga<C>) -> Self
    where
        C: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        self.plans.push(Arc::new(Plan::from_saga(saga)));
        self
    }

    /// This process's lease owner ID (unique per process; shown in the store).
    pub fn owner_id(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }

    /// How long a lease lasts without a heartbeat; recovery takes over an instance this long
    /// after its process died.
    pub const fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How often the lease is renewed (less than the lease).
    pub const fn heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = Some(every);
        self
    }

    /// How often an awaiting step looks for a reply delivered by another process (replies
    /// delivered through this orchestrator wake it at once).
    pub const fn poll_interval(mut self, every: Duration) -> Self {
        self.poll = every;
        self
    }

    /// How many instances one [`recover`](Orchestrator::recover) pass takes at most.
    pub const fn recovery_batch(mut self, batch: u32) -> Self {
        self.recovery_batch = batch;
        self
    }

    /// Capacity of the [`events`](Orchestrator::events) channel (slow receivers lag).
    pub const fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity;
        self
    }

    /// Validates the configuration.
    ///
    /// # Errors
    ///
    /// [`ConfigError::DuplicateSaga`] for two sagas of one type; [`ConfigError::Zero`] for a
    /// zero lease, heartbeat, poll interval, batch or capacity; [`ConfigError::OutOfRange`]
    /// for a heartbeat not shorter than the lease; [`ConfigError::Empty`] for an empty owner.
    pub fn build(self) -> Result<Orchestrator<S>, ConfigError> {
        let mut plans = HashMap::new();
        for plan in self.plans {
            let name = plan.name.to_string();
            if plans.insert(name.clone(), plan).is_some() {
                return Err(ConfigError::DuplicateSaga { saga: name });
            }
        }
        let heartbeat = self.heartbeat.unwrap_or(self.lease / 3);
        for (field, zero) in [
            ("lease", self.lease.is_zero()),
            ("heartbeat", heartbeat.is_zero()),
            ("poll_interval", self.poll.is_zero()),
            ("recovery_batch", self.recovery_batch == 0),
            ("event_capacity", self.event_capacity == 0),
        ] {
            if zero {
                return Err(ConfigError::Zero { field });
            }
        }
        if heartbeat >= self.lease {
            return Err(ConfigError::OutOfRange {
                field: "heartbeat",
                why: "must be shorter than the lease",
            });
        }
        let owner = self.owner.unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "orchestrator".to_owned());
            format!("{host}-{}", uuid::Uuid::now_v7().simple())
        });
        if owner.is_empty() {
            return Err(ConfigError::Empty { field: "owner_id" });
        }
        let (events, _) = broadcast::channel(self.event_capacity);
        Ok(Orchestrator {
            inner: Arc::new(Inner {
                store: self.store,
                plans,
                owner,
                lease: self.lease,
                heartbeat,
                poll: self.poll,
                recovery_batch: self.recovery_batch,
                clock: Clock::new(),
                events,
                counters: Counters::default(),
                local: Mutex::new(HashMap::new()),
            }),
        })
    }
}

/// An instance and its step history, for dashboards and admin tools.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct InstanceDetails {
    /// The instance.
    pub instance: Instance,
    /// Its step records in write order.
    pub records: Vec<StepRecord>,
}

impl<S: SagaStore> Orchestrator<S> {
    /// A builder over `store`.
    pub fn builder(store: S) -> OrchestratorBuilder<S> {
        OrchestratorBuilder {
            store,
            plans: Vec::new(),
            owner: None,
            lease: Duration::from_secs(30),
            heartbeat: None,
            poll: Duration::from_secs(1),
            recovery_batch: 100,
            event_capacity: 1024,
        }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.inner.store
    }

    /// This process's lease owner ID.
    pub fn owner_id(&self) -> &str {
        &self.inner.owner
    }

    /// Stores a new instance of `saga_type` with `data` and a fresh ID; drive it with
    /// [`run`](Self::run). Until then it is leased to this orchestrator, so recovery elsewhere
    /// picks it up only if this process dies first.
    ///
    /// # Errors
    ///
    /// [`SagaError::UnknownSagaType`], [`SagaError::Serde`], [`SagaError::Store`].
    pub async fn start<C: Serialize>(
        &self,
        saga_type: &str,
        data: &C,
    ) -> Result<SagaId, SagaError> {
        let id = SagaId::new();
        self.start_with_id(id, saga_type, data).await?;
        Ok(id)
    }

    /// Like [`start`](Self::start) with a chosen ID (for example derived from an order ID, so
    /// that a duplicate request finds [`StoreError::AlreadyExists`](crate::StoreError)).
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub async fn start_with_id<C: Serialize>(
        &self,
        id: SagaId,
        saga_type: &str,
        data: &C,
    ) -> Result<(), SagaError> {
        let plan = self.plan(saga_type)?;
        let now = self.inner.clock.now();
        let mut instance = Instance::new(id, saga_type, serde_json::to_value(data)?, now);
        instance.deadline = plan.deadline.map(|d| now.saturating_add(millis(d)));
        instance.lease_owner = Some(self.inner.owner.clone());
        instance.lease_until = Some(now.saturating_add(millis(self.inner.lease)));
        self.inner.store.create(&instance).await?;
        Counters::add(&self.inner.counters.started, 1);
        tracing::info!(saga.id = %id, saga.type = saga_type, "saga started");
        Ok(())
    }

    /// Starts an instance and drives it to an end; returns its ID and final status.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start) and [`run`](Self::run).
    pub async fn execute<C: Serialize>(
        &self,
        saga_type: &str,
        data: &C,
    ) -> Result<(SagaId, SagaStatus), SagaError> {
        let id = self.start(saga_type, data).await?;
        let status = self.run(id).await?;
        Ok((id, status))
    }

    /// Drives instance `id` until it is completed, compensated or stuck, and returns that
    /// status (at once for an instance already finished).
    ///
    /// # Errors
    ///
    /// [`SagaError::NotFound`]; [`SagaError::Leased`] when another process (or another task
    /// of this one) drives it; [`SagaError::LeaseLost`] when another process took it over
    /// meanwhile; [`SagaError::UnknownSagaType`]; [`SagaError::Store`] (the instance is then
    /// left for recovery).
    pub async fn run(&self, id: SagaId) -> Result<SagaStatus, SagaError> {
        self.drive(id, None).await
    }

    /// Drives `id` in a new task; see [`run`](Self::run).
    pub fn spawn(&self, id: SagaId) -> JoinHandle<Result<SagaStatus, SagaError>> {
        let this = self.clone();
        tokio::spawn(async move { this.run(id).await })
    }

    /// Delivers the result of an asynchronous step (one that returned
    /// [`Pending`](crate::Pending)). Works from any process sharing the store; a result for a
    /// step that is not awaiting yet is kept until it is.
    ///
    /// # Errors
    ///
    /// [`SagaError::UnknownStep`] when the instance has no open forward record for `step`;
    /// [`SagaError::Serde`]; [`SagaError::Store`].
    pub async fn complete<T: Serialize>(
        &self,
        id: SagaId,
        step: &str,
        result: Result<T, StepError>,
    ) -> Result<(), SagaError> {
        let reply = match result {
            Ok(v) => StepReply::Ok(serde_json::to_value(v)?),
            Err(e) => StepReply::Err(e),
        };
        if !self.inner.store.deliver_reply(id, step, &reply).await? {
            return Err(SagaError::UnknownStep {
                id,
                step: step.to_owned(),
            });
        }
        if let Some(local) = self.inner.local().get(&id) {
            local.replies.notify_one();
        }
        Ok(())
    }

    /// Like [`complete`](Self::complete), finding the step by the correlation key it returned
    /// in [`Pending`](crate::Pending). Returns the instance and step, or `None` when no step
    /// awaits that key.
    ///
    /// # Errors
    ///
    /// As [`complete`](Self::complete).
    pub async fn complete_by_key<T: Serialize>(
        &self,
        correlation_key: &str,
        result: Result<T, StepError>,
    ) -> Result<Option<(SagaId, String)>, SagaError> {
        let Some((id, step)) = self.inner.store.find_awaiting(correlation_key).await? else {
            return Ok(None);
        };
        self.complete(id, &step, result).await?;
        Ok(Some((id, step)))
    }

    /// Cancels instance `id`: its running steps are cancelled and everything that completed
    /// is compensated. The driver notices at once when it runs in this process, at its next
    /// heartbeat otherwise; an instance nobody drives is driven here in a new task.
    ///
    /// # Errors
    ///
    /// [`SagaError::NotFound`]; [`SagaError::InvalidState`] when it is past the pivot (it
    /// can only go forward), stuck or finished; [`SagaError::Store`].
    pub async fn cancel(&self, id: SagaId) -> Result<(), SagaError> {
        let snap = self.load(id).await?;
        let plan = self.plan(&snap.instance.saga_type)?;
        let status = snap.instance.status;
        if status != SagaStatus::Running {
            if status == SagaStatus::Compensating {
                return Ok(());
            }
            return Err(SagaError::InvalidState {
                id,
                status,
                why: "only a running saga can be cancelled",
            });
        }
        if driver::past_commit_point(&plan, &snap) {
            return Err(SagaError::InvalidState {
                id,
                status,
                why: "it is past the pivot and can only go forward",
            });
        }
        self.inner.store.request_cancel(id).await?;
        tracing::info!(saga.id = %id, "saga cancellation requested");
        let local = self
            .inner
            .local()
            .get(&id)
            .map(|l| l.cancel.send_replace(true))
            .is_some();
        let now = self.inner.clock.now();
        let free = snap.instance.lease_until.is_none_or(|t| t < now)
            || snap.instance.lease_owner.as_deref() == Some(self.inner.owner.as_str());
        if !local && free {
            drop(self.spawn(id));
        }
        Ok(())
    }

    /// Takes over every running or compensating instance whose lease has expired (its process
    /// died) and drives them concurrently to an end; returns each one's result. Call it at
    /// start, and periodically (or use [`spawn_recovery`](Self::spawn_recovery)).
    ///
    /// A step found `started` is retried with its idempotency key, or compensated when its
    /// [`OnInterrupted`](crate::OnInterrupted) policy says so; compensating instances carry
    /// on compensating.
    ///
    /// # Errors
    ///
    /// [`SagaError::Store`] when the scan fails; per-instance errors are in the list.
    pub async fn recover(&self) -> Result<Vec<(SagaId, Result<SagaStatus, SagaError>)>, SagaError> {
        let ids = self.recoverable().await?;
        let runs = ids
            .into_iter()
            .map(|id| async move { (id, self.run(id).await) });
        let results = futures_util::future::join_all(runs).await;
        for (id, result) in &results {
            match result {
                Ok(status) => tracing::info!(saga.id = %id, %status, "saga recovered"),
                Err(e) if e.is_leased() => {}
                Err(e) => tracing::warn!(saga.id = %id, error = %e, "saga recovery failed"),
            }
        }
        Ok(results)
    }

    /// Runs a recovery pass every `every` in a background task, driving each instance found
    /// in its own task. Abort the handle to stop.
    pub fn spawn_recovery(&self, every: Duration) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match this.recoverable().await {
                    Ok(ids) => {
                        for id in ids {
                            drop(this.spawn(id));
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "saga recovery scan failed"),
                }
            }
        })
    }

    async fn recoverable(&self) -> Result<Vec<SagaId>, SagaError> {
        let now = self.inner.clock.now();
        let ids = self
            .inner
            .store
            .recoverable(now, self.inner.recovery_batch)
            .await?;
        let local = self.inner.local();
        Ok(ids
            .into_iter()
            .filter(|id| !local.contains_key(id))
            .collect())
    }

    /// Admin: retries a [`Stuck`](SagaStatus::Stuck) instance from where it stopped (the
    /// failed compensation, or the failed post-pivot step) with fresh attempts, and drives it.
    ///
    /// # Errors
    ///
    /// [`SagaError::InvalidState`] unless it is stuck; as [`run`](Self::run).
    pub async fn resume(&self, id: SagaId) -> Result<SagaStatus, SagaError> {
        self.drive(id, Some(Admin::Resume)).await
    }

    /// Admin: marks the step a [`Stuck`](SagaStatus::Stuck) instance stopped at as skipped
    /// (an operator fixed it by hand) and drives on.
    ///
    /// # Errors
    ///
    /// As [`resume`](Self::resume).
    pub async fn skip(&self, id: SagaId) -> Result<SagaStatus, SagaError> {
        self.drive(id, Some(Admin::Skip)).await
    }

    /// Admin: declares a stuck or abandoned instance finished
    /// ([`ForceCompleted`](SagaStatus::ForceCompleted)) without running anything more.
    ///
    /// # Errors
    ///
    /// [`SagaError::InvalidState`] when it is already finished; [`SagaError::Leased`] while
    /// another process drives it; as [`run`](Self::run).
    pub async fn force_complete(&self, id: SagaId) -> Result<SagaStatus, SagaError> {
        self.drive(id, Some(Admin::ForceComplete)).await
    }

    /// Query API: instances matching `query`, newest first.
    ///
    /// # Errors
    ///
    /// [`SagaError::Store`].
    pub async fn instances(&self, query: &ListQuery) -> Result<Vec<Instance>, SagaError> {
        Ok(self.inner.store.list(query).await?)
    }

    /// Query API: one instance with its step history.
    ///
    /// # Errors
    ///
    /// [`SagaError::Store`].
    pub async fn instance(&self, id: SagaId) -> Result<Option<InstanceDetails>, SagaError> {
        Ok(self.inner.store.load(id).await?.map(|s| InstanceDetails {
            instance: s.instance,
            records: s.records,
        }))
    }

    /// A receiver of [`SagaEvent`]s from this orchestrator.
    pub fn events(&self) -> broadcast::Receiver<SagaEvent> {
        self.inner.events.subscribe()
    }

    /// The counters so far.
    pub fn metrics(&self) -> Metrics {
        self.inner.counters.snapshot()
    }

    fn plan(&self, saga_type: &str) -> Result<Arc<Plan>, SagaError> {
        self.inner
            .plans
            .get(saga_type)
            .cloned()
            .ok_or_else(|| SagaError::UnknownSagaType {
                saga: saga_type.to_owned(),
            })
    }

    async fn load(&self, id: SagaId) -> Result<Snapshot, SagaError> {
        self.inner
            .store
            .load(id)
            .await?
            .ok_or(SagaError::NotFound { id })
    }

    async fn drive(&self, id: SagaId, admin: Option<Admin>) -> Result<SagaStatus, SagaError> {
        let (cancel_tx, cancel_rx) = watch::channel(false);
        let replies = Arc::new(Notify::new());
        {
            let mut local = self.inner.local();
            if local.contains_key(&id) {
                return Err(SagaError::Leased {
                    id,
                    owner: self.inner.owner.clone(),
                });
            }
            local.insert(
                id,
                Local {
                    cancel: cancel_tx,
                    replies: replies.clone(),
                },
            );
        }
        Counters::add(&self.inner.counters.driving, 1);
        let span = tracing::info_span!("saga", saga.id = %id, saga.type = tracing::field::Empty);
        let result = self
            .drive_leased(id, admin, cancel_rx, replies)
            .instrument(span)
            .await;
        self.inner.counters.driving.fetch_sub(1, Ordering::Relaxed);
        self.inner.local().remove(&id);
        result
    }

    async fn drive_leased(
        &self,
        id: SagaId,
        admin: Option<Admin>,
        cancel: watch::Receiver<bool>,
        replies: Arc<Notify>,
    ) -> Result<SagaStatus, SagaError> {
        let now = self.inner.clock.now();
        let lease_until = now.saturating_add(millis(self.inner.lease));
        let snap = match self
            .inner
            .store
            .acquire(id, &self.inner.owner, now, lease_until)
            .await?
        {
            Acquired::Yes(snap) => snap,
            Acquired::Held { owner } => return Err(SagaError::Leased { id, owner }),
            Acquired::NotFound => return Err(SagaError::NotFound { id }),
            #[allow(unreachable_patterns)]
            _ => return Err(SagaError::NotFound { id }),
        };
        tracing::Span::current().record("saga.type", snap.instance.saga_type.as_str());
        let plan = self.plan(&snap.instance.saga_type)?;
        let data = (plan.decode)(&snap.instance.data)?;
        if snap.instance.cancel_requested {
            cancel_watch_set(&self.inner, id);
        }
        let mut driver = driver::Driver {
            inner: self.inner.clone(),
            plan,
            data,
            snap,
            cancel,
            replies,
            polled: HashMap::new(),
        };
        if let Some(op) = admin {
            driver.admin(op).await?;
        }
        driver.drive().await
    }
}

fn cancel_watch_set<S>(inner: &Inner<S>, id: SagaId) {
    if let Some(local) = inner.local().get(&id) {
        local.cancel.send_replace(true);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admin {
    Resume,
    Skip,
    ForceComplete,
}
