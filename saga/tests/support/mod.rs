//! Shared test participants: each step appends to a journal, and a script decides failures.
#![allow(dead_code, unreachable_pub)]

pub mod cases;
#[cfg(feature = "postgres")]
pub mod pg;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sinew_saga::{IdempotencyKey, Phase, Saga, SagaBuilder, Step, StepContext, StepError};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Order {
    pub id: u64,
    pub amount: u64,
}

/// What a participant does on a given attempt.
#[derive(Clone, Debug)]
pub enum Behaviour {
    Ok,
    /// Fail with this error on the first `n` attempts, then succeed.
    FailTimes(u32, StepError),
    /// Always fail with this error.
    Fail(StepError),
    /// Sleep this long, then succeed.
    Sleep(Duration),
    /// Sleep this long, then fail with this error.
    SleepThenFail(Duration, StepError),
    /// Never return.
    Hang,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub step: String,
    pub phase: Phase,
    pub attempt: u32,
    pub key: IdempotencyKey,
    pub token: u64,
    pub done: bool,
}

/// The journal of participant calls and the failure script.
#[derive(Clone, Default)]
pub struct Journal {
    calls: Arc<Mutex<Vec<Call>>>,
    script: Arc<Mutex<HashMap<(String, Phase), Behaviour>>>,
}

impl Journal {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set(&self, step: &str, phase: Phase, behaviour: Behaviour) {
        self.script
            .lock()
            .unwrap()
            .insert((step.to_owned(), phase), behaviour);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// Steps whose `phase` call completed successfully, in completion order.
    pub fn done(&self, phase: Phase) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| c.phase == phase && c.done)
            .map(|c| c.step)
            .collect()
    }

    /// Steps whose `phase` was invoked at least once, in first-invocation order.
    pub fn invoked(&self, phase: Phase) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for c in self.calls() {
            if c.phase == phase && !out.contains(&c.step) {
                out.push(c.step);
            }
        }
        out
    }

    pub async fn call<C>(&self, cx: &StepContext<C>) -> Result<(), StepError> {
        let behaviour = self
            .script
            .lock()
            .unwrap()
            .get(&(cx.step().to_owned(), cx.phase()))
            .cloned()
            .unwrap_or(Behaviour::Ok);
        let entry = |done| Call {
            step: cx.step().to_owned(),
            phase: cx.phase(),
            attempt: cx.attempt(),
            key: cx.idempotency_key(),
            token: cx.fencing_token(),
            done,
        };
        let result = match behaviour {
            Behaviour::Ok => Ok(()),
            Behaviour::FailTimes(n, e) if cx.attempt() <= n => Err(e),
            Behaviour::FailTimes(..) => Ok(()),
            Behaviour::Fail(e) => Err(e),
            Behaviour::Sleep(d) => {
                self.calls.lock().unwrap().push(entry(false));
                tokio::time::sleep(d).await;
                self.calls.lock().unwrap().push(entry(true));
                return Ok(());
            }
            Behaviour::SleepThenFail(d, e) => {
                self.calls.lock().unwrap().push(entry(false));
                tokio::time::sleep(d).await;
                return Err(e);
            }
            Behaviour::Hang => {
                self.calls.lock().unwrap().push(entry(false));
                std::future::pending::<()>().await;
                unreachable!()
            }
        };
        self.calls.lock().unwrap().push(entry(result.is_ok()));
        result
    }

    pub fn compensatable(&self, name: &str) -> Step<Order> {
        let (a, b) = (self.clone(), self.clone());
        Step::compensatable(
            name,
            move |cx: StepContext<Order>| {
                let j = a.clone();
                async move {
                    j.call(&cx).await?;
                    Ok(format!("{}-of-{}", cx.step(), cx.data().id))
                }
            },
            move |cx: StepContext<Order>| {
                let j = b.clone();
                async move { j.call(&cx).await }
            },
        )
    }

    pub fn pivot(&self, name: &str) -> Step<Order> {
        let a = self.clone();
        Step::pivot(name, move |cx: StepContext<Order>| {
            let j = a.clone();
            async move {
                j.call(&cx).await?;
                Ok(cx.data().amount)
            }
        })
    }

    pub fn retriable(&self, name: &str) -> Step<Order> {
        let a = self.clone();
        Step::retriable(name, move |cx: StepContext<Order>| {
            let j = a.clone();
            async move {
                j.call(&cx).await?;
                Ok(())
            }
        })
    }

    /// create-order → reserve-inventory → process-payment (pivot) → send-notification.
    pub fn order_saga(&self) -> SagaBuilder<Order> {
        Saga::builder("order-creation")
            .step(self.compensatable("create-order"))
            .step(self.compensatable("reserve-inventory"))
            .step(self.pivot("process-payment"))
            .step(self.retriable("send-notification"))
    }
}

pub const ORDER: Order = Order {
    id: 42,
    amount: 100,
};

pub fn trace_init() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "sinew_saga=debug".into()),
        )
        .with_test_writer()
        .try_init();
}
