//! Drives one leased instance: forward stages, backward recovery, stuck handling, admin ops.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde_json::Value;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tracing::Instrument;

use super::events::{Counters, SagaEvent};
use super::plan::{Data, Plan, PlanStep, RawCx};
use super::{Admin, Inner};
use crate::clock::millis;
use crate::definition::{BoxFuture, OnInterrupted, Reply, StepKind};
use crate::error::{SagaError, StepError, StoreError};
use crate::id::{Phase, SagaId};
use crate::store::{Commit, SagaStatus, SagaStore, Snapshot, StepRecord, StepReply, StepState};

/// Whether every compensatable and pivot step has succeeded: from here on the saga only goes
/// forward (cancel and the deadline no longer apply).
/// Vacuously true for a saga of retriable steps only: there is nothing to compensate.
pub(crate) fn past_commit_point(plan: &Plan, snap: &Snapshot) -> bool {
    plan.steps()
        .filter(|s| s.kind != StepKind::Retriable)
        .all(|s| {
            snap.record(&s.name, Phase::Forward)
                .is_some_and(|r| matches!(r.state, StepState::Succeeded | StepState::Skipped))
        })
        || pivot_done(plan, snap)
}

fn pivot_done(plan: &Plan, snap: &Snapshot) -> bool {
    plan.steps().any(|s| {
        s.kind == StepKind::Pivot
            && snap
                .record(&s.name, Phase::Forward)
                .is_some_and(|r| matches!(r.state, StepState::Succeeded | StepState::Skipped))
    })
}

enum Ev {
    Call {
        attempt: u32,
        result: Result<Reply, StepError>,
        latency: Duration,
    },
    RetryDue {
        attempt: u32,
    },
    Reply(Result<Value, StepError>),
}

enum StageEnd {
    Done,
    Compensate(String),
    Stuck(String),
}

pub(crate) struct Driver<S> {
    pub(crate) inner: Arc<Inner<S>>,
    pub(crate) plan: Arc<Plan>,
    pub(crate) data: Data,
    pub(crate) snap: Snapshot,
    pub(crate) cancel: watch::Receiver<bool>,
    pub(crate) replies: Arc<Notify>,
    /// Calls of the current stage, by step: whether the call future was ever polled (a call
    /// cancelled before its first poll never reached the participant).
    pub(crate) polled: std::collections::HashMap<Arc<str>, Arc<AtomicBool>>,
}

fn lease_lost(e: StoreError, id: SagaId) -> SagaError {
    if e.is_conflict() {
        SagaError::LeaseLost { id }
    } else {
        SagaError::Store(e)
    }
}

impl<S: SagaStore> Driver<S> {
    fn id(&self) -> SagaId {
        self.snap.instance.id
    }

    fn now(&self) -> i64 {
        self.inner.clock.now()
    }

    /// Writes one commit and mirrors it in the local snapshot.
    async fn commit(
        &mut self,
        status: SagaStatus,
        reason: Option<String>,
        record: Option<StepRecord>,
    ) -> Result<(), SagaError> {
        let now = self.now();
        let lease_until = status
            .is_active()
            .then(|| now.saturating_add(millis(self.inner.lease)));
        let commit = Commit {
            status,
            reason,
            lease_until,
            record,
            now,
        };
        let id = self.id();
        let version = self
            .inner
            .store
            .commit(id, &self.inner.owner, self.snap.instance.version, &commit)
            .await
            .map_err(|e| lease_lost(e, id))?;
        let previous = self.snap.instance.status;
        let instance = &mut self.snap.instance;
        instance.version = version;
        instance.status = status;
        instance.reason.clone_from(&commit.reason);
        instance.updated_at = now;
        instance.lease_until = lease_until;
        if lease_until.is_none() {
            instance.lease_owner = None;
        }
        if let Some(mut record) = commit.record {
            record.seq = version;
            match self
                .snap
                .records
                .iter_mut()
                .find(|r| r.step == record.step && r.phase == record.phase)
            {
                Some(slot) => *slot = record,
                None => self.snap.records.push(record),
            }
        }
        if previous != status {
            self.status_changed(status, commit.reason);
        }
        Ok(())
    }

    fn status_changed(&self, status: SagaStatus, reason: Option<String>) {
        let c = &self.inner.counters;
        let id = self.id();
        match status {
            SagaStatus::Compensating => {
                Counters::add(&c.compensating, 1);
                tracing::warn!(saga.id = %id, reason = reason.as_deref(), "saga compensating");
            }
            SagaStatus::Stuck => {
                Counters::add(&c.stuck, 1);
                tracing::error!(saga.id = %id, reason = reason.as_deref(), "saga stuck: needs resume, skip or force_complete");
            }
            SagaStatus::Completed => {
                Counters::add(&c.completed, 1);
                tracing::info!(saga.id = %id, "saga completed");
            }
            SagaStatus::Compensated => {
                Counters::add(&c.compensated, 1);
                tracing::info!(saga.id = %id, reason = reason.as_deref(), "saga compensated");
            }
            _ => tracing::info!(saga.id = %id, %status, "saga status changed"),
        }
        self.inner
            .emit(SagaEvent::StatusChanged { id, status, reason });
    }

    fn record(&self, step: &str, phase: Phase) -> Option<&StepRecord> {
        self.snap.record(step, phase)
    }

    fn new_record(&self, step: &str, phase: Phase, state: StepState, attempt: u32) -> StepRecord {
        let now = self.now();
        let mut record = StepRecord::new(self.id(), step, phase, state, attempt, now);
        if let Some(old) = self.record(step, phase) {
            record.started_at = old.started_at;
            record.output.clone_from(&old.output);
            record.correlation_key.clone_from(&old.correlation_key);
        }
        record
    }

    fn outputs(&self) -> Arc<BTreeMap<String, Value>> {
        Arc::new(
            self.snap
                .records
                .iter()
                .filter(|r| r.phase == Phase::Forward)
                .filter_map(|r| r.output.clone().map(|o| (r.step.clone(), o)))
                .collect(),
        )
    }

    fn raw(&self, step: &PlanStep, phase: Phase, attempt: u32) -> RawCx {
        RawCx {
            saga_id: self.id(),
            step: step.name.clone(),
            phase,
            attempt,
            data: self.data.clone(),
            outputs: self.outputs(),
            fencing_token: self.snap.instance.version,
        }
    }

    fn step_span(&self, step: &str, phase: Phase, attempt: u32) -> tracing::Span {
        tracing::info_span!(
            "saga.step",
            saga.id = %self.id(),
            saga.type = %self.plan.name,
            saga.step = step,
            saga.phase = phase.as_str(),
            saga.attempt = attempt,
        )
    }

    /// Runs heartbeats beside the drive loop; a lost lease ends the drive.
    pub(crate) async fn drive(mut self) -> Result<SagaStatus, SagaError> {
        let inner = self.inner.clone();
        let id = self.id();
        let heartbeat = async {
            let mut tick = tokio::time::interval(inner.heartbeat);
            tick.tick().await;
            loop {
                tick.tick().await;
                let until = inner.clock.now().saturating_add(millis(inner.lease));
                match inner.store.heartbeat(id, &inner.owner, until).await {
                    Ok(Some(cancel)) => {
                        if cancel {
                            super::cancel_watch_set(&inner, id);
                        }
                    }
                    Ok(None) => return SagaError::LeaseLost { id },
                    Err(e) => tracing::warn!(saga.id = %id, error = %e, "saga heartbeat failed"),
                }
            }
        };
        tokio::select! {
            result = self.drive_loop() => result,
            lost = heartbeat => {
                tracing::warn!(saga.id = %id, "saga lease lost; stopped driving");
                Err(lost)
            }
        }
    }

    async fn drive_loop(&mut self) -> Result<SagaStatus, SagaError> {
        loop {
            match self.snap.instance.status {
                SagaStatus::Running => self.forward().await?,
                SagaStatus::Compensating => self.backward().await?,
                status => {
                    if self.snap.instance.lease_owner.is_some() {
                        // Finished or stuck: give the lease back.
                        let reason = self.snap.instance.reason.clone();
                        self.commit(status, reason, None).await?;
                    }
                    return Ok(status);
                }
            }
        }
    }

    fn cancel_or_deadline(&self) -> Option<String> {
        if *self.cancel.borrow() {
            return Some("cancelled".to_owned());
        }
        if self.snap.instance.deadline.is_some_and(|d| self.now() >= d) {
            return Some("deadline exceeded".to_owned());
        }
        None
    }

    async fn forward(&mut self) -> Result<(), SagaError> {
        let plan = self.plan.clone();
        for (index, stage) in plan.stages.iter().enumerate() {
            let done = stage.iter().all(|s| {
                self.record(&s.name, Phase::Forward)
                    .is_some_and(|r| matches!(r.state, StepState::Succeeded | StepState::Skipped))
            });
            if done {
                continue;
            }
            let kind = stage.first().map_or(StepKind::Retriable, |s| s.kind);
            if kind != StepKind::Retriable
                && !pivot_done(&plan, &self.snap)
                && let Some(reason) = self.cancel_or_deadline()
            {
                self.abort_stage(stage).await?;
                return self
                    .commit(SagaStatus::Compensating, Some(reason), None)
                    .await;
            }
            match self.run_stage(index, stage).await? {
                StageEnd::Done => {}
                StageEnd::Compensate(reason) => {
                    return self
                        .commit(SagaStatus::Compensating, Some(reason), None)
                        .await;
                }
                StageEnd::Stuck(reason) => {
                    return self.commit(SagaStatus::Stuck, Some(reason), None).await;
                }
            }
        }
        self.commit(SagaStatus::Completed, None, None).await
    }

    /// Marks steps of an interrupted stage whose outcome is unknown (in flight, awaiting or
    /// between retries) as `unknown`, so they are compensated.
    async fn abort_stage(&mut self, stage: &[PlanStep]) -> Result<(), SagaError> {
        for step in stage {
            let Some(record) = self.record(&step.name, Phase::Forward) else {
                continue;
            };
            if matches!(
                record.state,
                StepState::Started | StepState::Awaiting | StepState::Retrying
            ) {
                let never_called = record.state == StepState::Started
                    && self
                        .polled
                        .get(&step.name)
                        .is_some_and(|p| !p.load(Ordering::Acquire));
                let mut record = record.clone();
                if never_called && record.attempt <= 1 {
                    record.state = StepState::Failed;
                    record.error = Some(StepError::terminal(
                        "cancelled before the participant was called",
                    ));
                } else {
                    record.state = StepState::Unknown;
                }
                record.updated_at = self.now();
                record.due_at = None;
                self.commit(SagaStatus::Running, None, Some(record)).await?;
            }
        }
        Ok(())
    }

    /// Writes "started" ahead and returns the call.
    async fn start_attempt(
        &mut self,
        index: usize,
        step: &PlanStep,
        attempt: u32,
    ) -> Result<BoxFuture<(usize, Ev)>, SagaError> {
        let record = self.new_record(&step.name, Phase::Forward, StepState::Started, attempt);
        self.commit(SagaStatus::Running, None, Some(record)).await?;
        if attempt > 1 {
            Counters::add(&self.inner.counters.retries, 1);
        }
        self.inner.emit(SagaEvent::StepStarted {
            id: self.id(),
            step: step.name.to_string(),
            phase: Phase::Forward,
            attempt,
        });
        let span = self.step_span(&step.name, Phase::Forward, attempt);
        let call = (step.action)(self.raw(step, Phase::Forward, attempt));
        let timeout = step.timeout;
        let polled = Arc::new(AtomicBool::new(false));
        self.polled.insert(step.name.clone(), polled.clone());
        Ok(Box::pin(
            async move {
                polled.store(true, Ordering::Release);
                tracing::debug!("calling participant");
                let began = Instant::now();
                let result = match tokio::time::timeout(timeout, call).await {
                    Ok(r) => r,
                    Err(_) => Err(StepError::unknown(format!("timed out after {timeout:?}"))),
                };
                (
                    index,
                    Ev::Call {
                        attempt,
                        result,
                        latency: began.elapsed(),
                    },
                )
            }
            .instrument(span),
        ))
    }

    fn retry_after(&self, index: usize, attempt: u32, due: i64) -> BoxFuture<(usize, Ev)> {
        let at = self.inner.clock.instant_at(due);
        Box::pin(async move {
            tokio::time::sleep_until(at).await;
            (
                index,
                Ev::RetryDue {
                    attempt: attempt + 1,
                },
            )
        })
    }

    fn await_reply(&self, index: usize, step: &str, due: i64) -> BoxFuture<(usize, Ev)> {
        let inner = self.inner.clone();
        let replies = self.replies.clone();
        let id = self.id();
        let step = step.to_owned();
        Box::pin(async move {
            loop {
                match inner.store.reply(id, &step).await {
                    Ok(Some(StepReply::Ok(v))) => return (index, Ev::Reply(Ok(v))),
                    Ok(Some(StepReply::Err(e))) => return (index, Ev::Reply(Err(e))),
                    Ok(None) => {}
                    Err(e) => tracing::warn!(saga.id = %id, error = %e, "reading a reply failed"),
                }
                let now = inner.clock.now();
                if now >= due {
                    return (
                        index,
                        Ev::Reply(Err(StepError::unknown("no reply before the timeout"))),
                    );
                }
                let wait =
                    Duration::from_millis(u64::try_from(due - now).unwrap_or(0)).min(inner.poll);
                tokio::select! {
                    () = replies.notified() => {}
                    () = tokio::time::sleep(wait) => {}
                }
            }
        })
    }

    async fn run_stage(
        &mut self,
        _index: usize,
        stage: &[PlanStep],
    ) -> Result<StageEnd, SagaError> {
        self.polled.clear();
        let mut calls: FuturesUnordered<BoxFuture<(usize, Ev)>> = FuturesUnordered::new();
        let mut failure: Option<StageEnd> = None;
        for (i, step) in stage.iter().enumerate() {
            let record = self.record(&step.name, Phase::Forward).cloned();
            let Some(record) = record else {
                let call = self.start_attempt(i, step, 1).await?;
                calls.push(call);
                continue;
            };
            match record.state {
                StepState::Succeeded | StepState::Skipped => {}
                StepState::Started => {
                    // Interrupted by a crash: its outcome is unknown.
                    if step.kind == StepKind::Compensatable
                        && step.on_interrupted == OnInterrupted::Compensate
                    {
                        let mut record = record;
                        record.state = StepState::Unknown;
                        record.error = Some(StepError::unknown("interrupted by a crash"));
                        self.commit(SagaStatus::Running, None, Some(record)).await?;
                        failure = Some(StageEnd::Compensate(format!(
                            "step `{}` was interrupted and its policy is to compensate",
                            step.name
                        )));
                        break;
                    }
                    tracing::info!(saga.step = %step.name, attempt = record.attempt, "retrying an interrupted step with its idempotency key");
                    let call = self.start_attempt(i, step, record.attempt + 1).await?;
                    calls.push(call);
                }
                StepState::Retrying => {
                    let due = record.due_at.unwrap_or_else(|| self.now());
                    calls.push(self.retry_after(i, record.attempt, due));
                }
                StepState::Awaiting => {
                    let due = record.due_at.unwrap_or_else(|| self.now());
                    calls.push(self.await_reply(i, &step.name, due));
                }
                StepState::Failed | StepState::Unknown => {
                    let error = record
                        .error
                        .clone()
                        .unwrap_or_else(|| StepError::unknown("failed"));
                    failure = Some(self.final_failure(step, &record, error).await?);
                    break;
                }
            }
        }
        if failure.is_none() {
            let kind = stage.first().map_or(StepKind::Retriable, |s| s.kind);
            let interruptible = kind == StepKind::Compensatable;
            let deadline = self
                .snap
                .instance
                .deadline
                .filter(|_| interruptible)
                .map(|d| self.inner.clock.instant_at(d));
            let mut cancel = self.cancel.clone();
            loop {
                let next = tokio::select! {
                    biased;
                    Ok(()) = async { cancel.wait_for(|c| *c).await.map(|_| ()) }, if interruptible => {
                        failure = Some(StageEnd::Compensate("cancelled".to_owned()));
                        break;
                    }
                    () = async { match deadline { Some(at) => tokio::time::sleep_until(at).await, None => std::future::pending().await } }, if deadline.is_some() => {
                        failure = Some(StageEnd::Compensate("deadline exceeded".to_owned()));
                        break;
                    }
                    next = calls.next() => next,
                };
                let Some((i, ev)) = next else { break };
                let Some(step) = stage.get(i) else { continue };
                if let Some(end) = self.handle(i, step, ev).await? {
                    match end {
                        Handled::Push(f) => calls.push(f),
                        Handled::End(end) => {
                            failure = Some(end);
                            break;
                        }
                    }
                }
            }
        }
        drop(calls);
        match failure {
            None => Ok(StageEnd::Done),
            Some(end) => {
                if matches!(end, StageEnd::Compensate(_)) {
                    self.abort_stage(stage).await?;
                }
                Ok(end)
            }
        }
    }

    async fn handle(
        &mut self,
        i: usize,
        step: &PlanStep,
        ev: Ev,
    ) -> Result<Option<Handled>, SagaError> {
        let attempt = self
            .record(&step.name, Phase::Forward)
            .map_or(1, |r| r.attempt.max(1));
        let (result, latency) = match ev {
            Ev::RetryDue { attempt } => {
                return Ok(Some(Handled::Push(
                    self.start_attempt(i, step, attempt).await?,
                )));
            }
            Ev::Call {
                result: Ok(Reply::Pending(pending)),
                attempt,
                ..
            } => {
                let timeout = pending.timeout.unwrap_or(step.timeout);
                let mut record =
                    self.new_record(&step.name, Phase::Forward, StepState::Awaiting, attempt);
                let due = self.now().saturating_add(millis(timeout));
                record.due_at = Some(due);
                record.correlation_key = Some(pending.correlation_key);
                self.commit(SagaStatus::Running, None, Some(record)).await?;
                tracing::debug!(saga.step = %step.name, "step awaiting a reply");
                return Ok(Some(Handled::Push(self.await_reply(i, &step.name, due))));
            }
            Ev::Call {
                result: Ok(Reply::Done(v)),
                latency,
                ..
            } => (Ok(v), Some(latency)),
            Ev::Call {
                result: Err(e),
                latency,
                ..
            } => (Err(e), Some(latency)),
            Ev::Reply(r) => (r, None),
        };
        match result {
            Ok(output) => {
                let mut record =
                    self.new_record(&step.name, Phase::Forward, StepState::Succeeded, attempt);
                record.output = Some(output);
                record.due_at = None;
                self.commit(SagaStatus::Running, None, Some(record)).await?;
                self.succeeded(&step.name, Phase::Forward, latency);
                Ok(None)
            }
            Err(error) => {
                let will_retry = !error.is_terminal() && step.retry.allows_retry_after(attempt);
                self.failed(&step.name, Phase::Forward, &error, will_retry);
                if will_retry {
                    let due = self
                        .now()
                        .saturating_add(millis(step.retry.backoff(attempt)));
                    let mut record =
                        self.new_record(&step.name, Phase::Forward, StepState::Retrying, attempt);
                    record.due_at = Some(due);
                    record.error = Some(error);
                    self.commit(SagaStatus::Running, None, Some(record)).await?;
                    return Ok(Some(Handled::Push(self.retry_after(i, attempt, due))));
                }
                let record = self
                    .record(&step.name, Phase::Forward)
                    .cloned()
                    .unwrap_or_else(|| {
                        self.new_record(&step.name, Phase::Forward, StepState::Started, attempt)
                    });
                Ok(Some(Handled::End(
                    self.final_failure(step, &record, error).await?,
                )))
            }
        }
    }

    /// A step failed for good: record it and decide between compensating and getting stuck.
    async fn final_failure(
        &mut self,
        step: &PlanStep,
        record: &StepRecord,
        error: StepError,
    ) -> Result<StageEnd, SagaError> {
        let reason = format!("step `{}` failed: {}", step.name, error);
        let state = match (step.kind, error.is_unknown()) {
            (StepKind::Compensatable, true) | (StepKind::Pivot, true) => StepState::Unknown,
            _ => StepState::Failed,
        };
        if record.state != state || record.error.as_ref() != Some(&error) {
            let mut record = record.clone();
            record.state = state;
            record.due_at = None;
            record.error = Some(error);
            record.updated_at = self.now();
            self.commit(SagaStatus::Running, None, Some(record)).await?;
        }
        Ok(match step.kind {
            StepKind::Compensatable => StageEnd::Compensate(reason),
            // A pivot whose outcome is unknown can be neither compensated nor assumed done.
            StepKind::Pivot if state == StepState::Unknown => StageEnd::Stuck(reason),
            StepKind::Pivot => StageEnd::Compensate(reason),
            _ => StageEnd::Stuck(reason),
        })
    }

    fn succeeded(&self, step: &str, phase: Phase, latency: Option<Duration>) {
        let c = &self.inner.counters;
        Counters::add(&c.steps_succeeded, 1);
        let latency = latency.unwrap_or_default();
        Counters::add(
            &c.step_latency_micros,
            u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
        );
        tracing::debug!(saga.id = %self.id(), saga.step = step, saga.phase = phase.as_str(), latency_us = latency.as_micros() as u64, "step succeeded");
        self.inner.emit(SagaEvent::StepSucceeded {
            id: self.id(),
            step: step.to_owned(),
            phase,
            latency,
        });
    }

    fn failed(&self, step: &str, phase: Phase, error: &StepError, will_retry: bool) {
        Counters::add(&self.inner.counters.steps_failed, 1);
        tracing::warn!(saga.id = %self.id(), saga.step = step, saga.phase = phase.as_str(), error = %error, will_retry, "step failed");
        self.inner.emit(SagaEvent::StepFailed {
            id: self.id(),
            step: step.to_owned(),
            phase,
            error: error.clone(),
            will_retry,
        });
    }

    /// Compensates, latest completion first, every compensatable step that succeeded or whose
    /// outcome is unknown.
    async fn backward(&mut self) -> Result<(), SagaError> {
        let plan = self.plan.clone();
        let mut targets: Vec<(u64, &PlanStep)> = plan
            .steps()
            .filter(|s| s.kind == StepKind::Compensatable && s.compensation.is_some())
            .filter_map(|s| {
                self.record(&s.name, Phase::Forward)
                    .filter(|r| matches!(r.state, StepState::Succeeded | StepState::Unknown))
                    .map(|r| (r.seq, s))
            })
            .collect();
        targets.sort_by_key(|t| std::cmp::Reverse(t.0));
        for (_, step) in targets {
            if !self.compensate(step).await? {
                return Ok(());
            }
        }
        let reason = self.snap.instance.reason.clone();
        self.commit(SagaStatus::Compensated, reason, None).await
    }

    /// Runs one compensation to success; returns `false` when the saga got stuck.
    async fn compensate(&mut self, step: &PlanStep) -> Result<bool, SagaError> {
        let Some(compensation) = step.compensation.clone() else {
            return Ok(true);
        };
        let policy = self.plan.compensation_retry.clone();
        let mut attempt = match self.record(&step.name, Phase::Compensate) {
            Some(r) if matches!(r.state, StepState::Succeeded | StepState::Skipped) => {
                return Ok(true);
            }
            Some(r) if r.state == StepState::Retrying => {
                if let Some(due) = r.due_at {
                    tokio::time::sleep_until(self.inner.clock.instant_at(due)).await;
                }
                r.attempt
            }
            Some(r) => r.attempt,
            None => 0,
        };
        let reason = self.snap.instance.reason.clone();
        loop {
            attempt += 1;
            let record =
                self.new_record(&step.name, Phase::Compensate, StepState::Started, attempt);
            self.commit(SagaStatus::Compensating, reason.clone(), Some(record))
                .await?;
            if attempt > 1 {
                Counters::add(&self.inner.counters.retries, 1);
            }
            self.inner.emit(SagaEvent::StepStarted {
                id: self.id(),
                step: step.name.to_string(),
                phase: Phase::Compensate,
                attempt,
            });
            let span = self.step_span(&step.name, Phase::Compensate, attempt);
            let call = compensation(self.raw(step, Phase::Compensate, attempt));
            let timeout = self.plan.compensation_timeout;
            let began = Instant::now();
            let result = match tokio::time::timeout(timeout, call).instrument(span).await {
                Ok(r) => r,
                Err(_) => Err(StepError::unknown(format!("timed out after {timeout:?}"))),
            };
            let latency = began.elapsed();
            match result {
                Ok(()) => {
                    let record = self.new_record(
                        &step.name,
                        Phase::Compensate,
                        StepState::Succeeded,
                        attempt,
                    );
                    self.commit(SagaStatus::Compensating, reason, Some(record))
                        .await?;
                    self.succeeded(&step.name, Phase::Compensate, Some(latency));
                    return Ok(true);
                }
                Err(error) => {
                    let will_retry = policy.allows_retry_after(attempt);
                    self.failed(&step.name, Phase::Compensate, &error, will_retry);
                    if will_retry {
                        let due = self.now().saturating_add(millis(policy.backoff(attempt)));
                        let mut record = self.new_record(
                            &step.name,
                            Phase::Compensate,
                            StepState::Retrying,
                            attempt,
                        );
                        record.due_at = Some(due);
                        record.error = Some(error);
                        self.commit(SagaStatus::Compensating, reason.clone(), Some(record))
                            .await?;
                        tokio::time::sleep_until(self.inner.clock.instant_at(due)).await;
                        continue;
                    }
                    let why = format!(
                        "compensation of `{}` failed {attempt} times: {error}",
                        step.name
                    );
                    let mut record =
                        self.new_record(&step.name, Phase::Compensate, StepState::Failed, attempt);
                    record.error = Some(error);
                    self.commit(SagaStatus::Stuck, Some(why), Some(record))
                        .await?;
                    return Ok(false);
                }
            }
        }
    }

    /// Applies an admin operation on the freshly acquired instance.
    pub(crate) async fn admin(&mut self, op: Admin) -> Result<(), SagaError> {
        let status = self.snap.instance.status;
        let id = self.id();
        if op == Admin::ForceComplete {
            if status.is_terminal() {
                return Err(SagaError::InvalidState {
                    id,
                    status,
                    why: "it is already finished",
                });
            }
            tracing::warn!(saga.id = %id, %status, "saga force-completed by an operator");
            return self
                .commit(
                    SagaStatus::ForceCompleted,
                    Some(format!("force-completed by an operator (was {status})")),
                    None,
                )
                .await;
        }
        if status != SagaStatus::Stuck {
            // Give the lease back untouched.
            let reason = self.snap.instance.reason.clone();
            self.commit(status, reason, None).await?;
            return Err(SagaError::InvalidState {
                id,
                status,
                why: "resume and skip apply to stuck sagas only",
            });
        }
        // Stuck in compensation: a compensate record that failed; else a forward step.
        let failed_comp = self
            .snap
            .records
            .iter()
            .find(|r| r.phase == Phase::Compensate && r.state == StepState::Failed)
            .cloned();
        let (record, next) = if let Some(record) = failed_comp {
            (record, SagaStatus::Compensating)
        } else if let Some(record) = self
            .snap
            .records
            .iter()
            .find(|r| {
                r.phase == Phase::Forward
                    && matches!(r.state, StepState::Failed | StepState::Unknown)
            })
            .cloned()
        {
            (record, SagaStatus::Running)
        } else {
            let reason = self.snap.instance.reason.clone();
            self.commit(status, reason, None).await?;
            return Err(SagaError::InvalidState {
                id,
                status,
                why: "no failed step to resume or skip",
            });
        };
        let mut record = record;
        record.updated_at = self.now();
        match op {
            Admin::Skip => {
                tracing::warn!(saga.id = %id, saga.step = %record.step, "step skipped by an operator");
                record.state = StepState::Skipped;
            }
            _ => {
                tracing::info!(saga.id = %id, saga.step = %record.step, "saga resumed by an operator");
                record.state = StepState::Retrying;
                record.attempt = 0;
                record.due_at = Some(self.now());
            }
        }
        let reason = self.snap.instance.reason.clone();
        self.commit(next, reason, Some(record)).await
    }
}

enum Handled {
    Push(BoxFuture<(usize, Ev)>),
    End(StageEnd),
}
