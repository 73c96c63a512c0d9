//! The orchestrated order saga on `sinew-saga`: create order and reserve inventory are
//! compensatable, process payment is the pivot, send notification is retriable. The step log
//! lives in SQLite (embedded) or PostgreSQL (`DATABASE_URL`), so a restarted order service
//! finishes or compensates the sagas a crash left half-done.

use std::path::Path;
use std::time::Duration;

use http::Method;
use serde::{Deserialize, Serialize};
use sinew_saga::store::{PgStore, SqliteStore};
use sinew_saga::{
    Orchestrator, Phase, RetryPolicy, Saga, SagaError, SagaId, SagaStatus, Step, StepContext,
    StepError, StepState,
};

use super::{Order, OrderStore};
use crate::upstream::Upstreams;

/// The saga type.
pub const SAGA: &str = "order-creation";

/// The saga's data.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderSaga {
    /// The order.
    pub order: Order,
    /// Ask the payment service to decline.
    pub fail_payment: bool,
    /// Ask the payment service to take this long (to kill an orchestrator mid-saga).
    #[serde(default)]
    pub payment_delay_ms: u64,
}

/// What a saga did.
#[derive(Debug, Clone, Serialize)]
pub struct SagaReport {
    /// The saga ID.
    pub id: String,
    /// `Completed`, `Compensated`, `Stuck`, ...
    pub status: String,
    /// Forward steps that succeeded, in order.
    pub completed: Vec<String>,
    /// The step that failed, and why.
    pub failed: Option<(String, String)>,
    /// Compensated steps, in the order they were compensated (the reverse of `completed`).
    pub compensated: Vec<String>,
}

/// An orchestrator over the SQLite or the PostgreSQL store.
#[derive(Clone)]
pub enum Orchestrators {
    /// SQLite: one file.
    Sqlite(Orchestrator<SqliteStore>),
    /// PostgreSQL: several order-service processes share it.
    Postgres(Orchestrator<PgStore>),
}

impl std::fmt::Debug for Orchestrators {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Sqlite(_) => "Orchestrators::Sqlite",
            Self::Postgres(_) => "Orchestrators::Postgres",
        })
    }
}

macro_rules! each {
    ($self:expr, $o:ident => $body:expr) => {
        match $self {
            Self::Sqlite($o) => $body,
            Self::Postgres($o) => $body,
        }
    };
}

fn http_error(service: &str, e: &crate::upstream::UpstreamError) -> StepError {
    StepError::retryable(format!("{service}: {e}"))
}

async fn call(
    up: &Upstreams,
    service: &str,
    method: Method,
    path: &str,
    body: &serde_json::Value,
) -> Result<serde_json::Value, StepError> {
    let r = up
        .json(service, method, path, body)
        .await
        .map_err(|e| http_error(service, &e))?;
    let json = r.json().unwrap_or(serde_json::Value::Null);
    if r.status.is_success() {
        return Ok(json);
    }
    let reason = json
        .get("error")
        .and_then(|v| v.as_str())
        .unwrap_or("failed");
    let message = format!("{service} answered {}: {reason}", r.status.as_u16());
    Err(if r.status.is_client_error() {
        StepError::terminal(message)
    } else {
        StepError::retryable(message)
    })
}

/// The saga definition over `orders` and the other services.
///
/// # Errors
///
/// Never for this shape; the `Result` is the builder's.
pub fn definition(
    orders: OrderStore,
    up: Upstreams,
) -> Result<Saga<OrderSaga>, sinew_saga::ConfigError> {
    let quick = RetryPolicy::builder()
        .max_attempts(3)
        .initial_backoff(Duration::from_millis(50))
        .max_backoff(Duration::from_millis(500))
        .build()?;
    let (o1, o2) = (orders.clone(), orders);
    let (u1, u2, u3, u4) = (up.clone(), up.clone(), up.clone(), up);
    Saga::builder(SAGA)
        .step(Step::compensatable(
            "create-order",
            move |cx: StepContext<OrderSaga>| {
                let orders = o1.clone();
                async move {
                    orders.insert(cx.data().order.clone());
                    Ok::<_, StepError>(())
                }
            },
            move |cx: StepContext<OrderSaga>| {
                let orders = o2.clone();
                async move {
                    orders.update(&cx.data().order.id, |o| {
                        "cancelled".clone_into(&mut o.status);
                        o.cancellation_reason = Some("saga_compensated".to_owned());
                    });
                    Ok(())
                }
            },
        ))
        .step(
            Step::compensatable(
                "reserve-inventory",
                move |cx: StepContext<OrderSaga>| {
                    let up = u1.clone();
                    async move {
                        let order = &cx.data().order;
                        let body = serde_json::json!({ "orderId": order.id, "items": order.items });
                        let r = call(&up, "inventory", Method::POST, "/reservations", &body).await?;
                        Ok::<_, StepError>(r.get("id").and_then(|v| v.as_str()).unwrap_or_default().to_owned())
                    }
                },
                move |cx: StepContext<OrderSaga>| {
                    let up = u2.clone();
                    async move {
                        // The reservation is idempotent per order, so an unknown outcome is
                        // released by order too.
                        let Some(id) = cx.try_output::<String>("reserve-inventory") else {
                            return Ok(());
                        };
                        let path = format!("/reservations/{id}/release");
                        match call(&up, "inventory", Method::POST, &path, &serde_json::json!({})).await {
                            Ok(_) => Ok(()),
                            Err(e) if e.is_terminal() => Ok(()), // nothing to release
                            Err(e) => Err(e),
                        }
                    }
                },
            )
            .retry(quick.clone()),
        )
        .step(
            Step::pivot("process-payment", move |cx: StepContext<OrderSaga>| {
                let up = u3.clone();
                async move {
                    let d = cx.data();
                    let body = serde_json::json!({
                        "orderId": d.order.id,
                        "amount": d.order.amount,
                        "fail": d.fail_payment,
                        "delayMs": d.payment_delay_ms,
                        "idempotencyKey": cx.idempotency_key().to_string(),
                    });
                    let r = call(&up, "payment", Method::POST, "/payments", &body).await?;
                    Ok::<_, StepError>(r.get("id").and_then(|v| v.as_str()).unwrap_or_default().to_owned())
                }
            })
            .retry(quick),
        )
        .step(Step::retriable("send-notification", move |cx: StepContext<OrderSaga>| {
            let up = u4.clone();
            async move {
                let body = serde_json::json!({ "orderId": cx.data().order.id, "message": "Your order is confirmed" });
                call(&up, "notification", Method::POST, "/notifications", &body).await.map(drop)
            }
        }))
        .build()
}

impl Orchestrators {
    /// An orchestrator over PostgreSQL at `database_url`, or SQLite in `data_dir`.
    ///
    /// # Errors
    ///
    /// When the store cannot be opened or migrated.
    pub async fn open(
        database_url: Option<&str>,
        data_dir: &Path,
        saga: Saga<OrderSaga>,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let lease = Duration::from_secs(5);
        Ok(match database_url {
            Some(url) => {
                let store = PgStore::connect(url).await?;
                store.migrate().await?;
                Self::Postgres(
                    Orchestrator::builder(store)
                        .register(saga)
                        .lease(lease)
                        .build()?,
                )
            }
            None => {
                std::fs::create_dir_all(data_dir)?;
                let store = SqliteStore::open(data_dir.join("sagas.db")).await?;
                Self::Sqlite(
                    Orchestrator::builder(store)
                        .register(saga)
                        .lease(lease)
                        .build()?,
                )
            }
        })
    }

    /// Runs a new saga to its end.
    ///
    /// # Errors
    ///
    /// [`SagaError`] from the orchestrator.
    pub async fn execute(&self, data: &OrderSaga) -> Result<(SagaId, SagaStatus), SagaError> {
        // The saga ID is the order ID, so a client retrying the same order finds its saga
        // (and waits for it) instead of starting a second one.
        let id = data
            .order
            .id
            .parse::<SagaId>()
            .unwrap_or_else(|_| SagaId::new());
        let started = each!(self, o => o.start_with_id(id, SAGA, data).await);
        match started {
            Ok(()) => {}
            Err(SagaError::Store(sinew_saga::StoreError::AlreadyExists { .. })) => {
                tracing::info!(saga = %id, "saga exists already; driving it");
            }
            Err(error) => return Err(error),
        }
        let status = each!(self, o => o.run(id).await)?;
        Ok((id, status))
    }

    /// Finishes or compensates, now and then, the sagas whose orchestrator died; the task
    /// stops when the returned guard is dropped.
    pub fn spawn_recovery(&self, every: Duration) -> AbortOnDrop {
        AbortOnDrop(each!(self, o => o.spawn_recovery(every)))
    }

    /// What saga `id` did.
    ///
    /// # Errors
    ///
    /// [`SagaError`] from the store.
    pub async fn report(&self, id: SagaId) -> Result<Option<SagaReport>, SagaError> {
        let Some(details) = each!(self, o => o.instance(id).await?) else {
            return Ok(None);
        };
        let mut report = SagaReport {
            id: id.to_string(),
            status: format!("{:?}", details.instance.status),
            completed: Vec::new(),
            failed: None,
            compensated: Vec::new(),
        };
        for record in &details.records {
            match (record.phase, record.state) {
                (Phase::Forward, StepState::Succeeded) => {
                    report.completed.push(record.step.clone())
                }
                (Phase::Forward, StepState::Failed | StepState::Unknown) => {
                    let reason = record
                        .error
                        .as_ref()
                        .map(|e| e.message().to_owned())
                        .unwrap_or_default();
                    report.failed = Some((record.step.clone(), reason));
                }
                (Phase::Compensate, StepState::Succeeded) => {
                    report.compensated.push(record.step.clone())
                }
                _ => {}
            }
        }
        Ok(Some(report))
    }
}

/// Aborts a background task when dropped.
#[derive(Debug)]
pub struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
