//! A small saga orchestrator.
//!
//! SEAM: replaced by `sinew-saga` once it lands. Steps run in order; when one fails, the
//! completed ones are compensated in reverse order, each compensation retried a few times.
//! The log is kept in memory, so an orchestrator that dies mid-saga does not resume.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::Serialize;

type StepFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
type StepFn = Box<dyn Fn() -> StepFuture + Send + Sync>;

/// One step: an action and its compensation.
pub struct Step {
    name: &'static str,
    execute: StepFn,
    compensate: Option<StepFn>,
}

impl std::fmt::Debug for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Step")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Step {
    /// A step named `name` running `execute`.
    pub fn new<F, Fut>(name: &'static str, execute: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        Self {
            name,
            execute: Box::new(move || Box::pin(execute())),
            compensate: None,
        }
    }

    /// Adds the compensation.
    #[must_use]
    pub fn compensate<F, Fut>(mut self, compensate: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.compensate = Some(Box::new(move || Box::pin(compensate())));
        self
    }
}

/// How a saga ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SagaStatus {
    /// Every step completed.
    Completed,
    /// A step failed and every completed step was compensated.
    Compensated,
    /// A step failed and a compensation failed too: needs a person.
    Failed,
}

/// What a saga did, in order.
#[derive(Debug, Clone, Serialize)]
pub struct SagaReport {
    /// The outcome.
    pub status: SagaStatus,
    /// Completed steps, in order.
    pub completed: Vec<String>,
    /// The step that failed, and why.
    pub failed: Option<(String, String)>,
    /// Compensated steps, in the order they were compensated (the reverse of `completed`).
    pub compensated: Vec<String>,
}

/// Runs `steps`.
pub async fn run(name: &str, steps: Vec<Step>) -> SagaReport {
    let mut completed: Vec<&Step> = Vec::new();
    let mut report = SagaReport {
        status: SagaStatus::Completed,
        completed: Vec::new(),
        failed: None,
        compensated: Vec::new(),
    };
    for step in &steps {
        match (step.execute)().await {
            Ok(()) => {
                tracing::info!(saga = name, step = step.name, "saga step completed");
                report.completed.push(step.name.to_owned());
                completed.push(step);
            }
            Err(error) => {
                tracing::warn!(saga = name, step = step.name, %error, "saga step failed; compensating");
                report.failed = Some((step.name.to_owned(), error));
                report.status = SagaStatus::Compensated;
                break;
            }
        }
    }
    if report.failed.is_some() {
        for step in completed.iter().rev() {
            let Some(compensate) = &step.compensate else {
                continue;
            };
            let mut done = false;
            for attempt in 0..3u32 {
                match compensate().await {
                    Ok(()) => {
                        done = true;
                        break;
                    }
                    Err(error) => {
                        tracing::warn!(saga = name, step = step.name, attempt, %error, "compensation failed");
                        tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                    }
                }
            }
            if done {
                tracing::info!(saga = name, step = step.name, "saga step compensated");
                report.compensated.push(step.name.to_owned());
            } else {
                report.status = SagaStatus::Failed;
            }
        }
    }
    report
}
