//! The payment service. It declines a payment over its limit, or when asked to (`fail`), so
//! that compensation can be seen.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{OrderEvent, emit, on};
use crate::bus::{Bus, BusSubscription};
use crate::http::error_json;

/// A payment.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Payment {
    /// UUIDv7.
    pub id: String,
    /// The order.
    pub order_id: String,
    /// In cents.
    pub amount: i64,
    /// Whether it was refunded.
    pub refunded: bool,
}

/// The payment service.
#[derive(Debug, Clone)]
pub struct PaymentService {
    limit: i64,
    payments: Arc<Mutex<BTreeMap<String, Payment>>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Pay {
    order_id: String,
    amount: i64,
    #[serde(default)]
    fail: bool,
    /// Take this long first (at most 10 s), to let a test kill the caller mid-call.
    #[serde(default)]
    delay_ms: u64,
}

impl PaymentService {
    /// A service that declines amounts over `limit` cents.
    pub fn new(limit: i64) -> Self {
        Self {
            limit,
            payments: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Payment>> {
        self.payments
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every payment.
    pub fn payments(&self) -> Vec<Payment> {
        self.lock().values().cloned().collect()
    }

    /// Charges `amount` for `order_id` (idempotent per order).
    ///
    /// # Errors
    ///
    /// Why it was declined.
    pub fn charge(&self, order_id: &str, amount: i64, fail: bool) -> Result<Payment, String> {
        if fail {
            return Err("payment declined (requested)".to_owned());
        }
        if amount > self.limit {
            return Err(format!(
                "payment declined: {amount} is over the limit of {}",
                self.limit
            ));
        }
        let mut payments = self.lock();
        if let Some(p) = payments
            .values()
            .find(|p| p.order_id == order_id && !p.refunded)
        {
            return Ok(p.clone());
        }
        let payment = Payment {
            id: uuid::Uuid::now_v7().to_string(),
            order_id: order_id.to_owned(),
            amount,
            refunded: false,
        };
        payments.insert(payment.id.clone(), payment.clone());
        tracing::info!(order = order_id, amount, "payment processed");
        Ok(payment)
    }

    /// `POST /payments`, `POST /payments/{id}/refund`, `GET /health`.
    pub fn router(&self) -> Router {
        Router::new()
            .route(
                "/payments",
                post(pay).get(|State(s): State<Self>| async move { Json(s.payments()) }),
            )
            .route("/payments/{id}/refund", post(refund))
            .route(
                "/health",
                get(|| async { Json(serde_json::json!({ "status": "ok", "service": "payment" })) }),
            )
            .with_state(self.clone())
    }

    /// The choreography's payment handler: payment.requested.
    ///
    /// # Errors
    ///
    /// When the queue cannot be declared.
    pub async fn subscribe(
        &self,
        bus: &Bus,
    ) -> Result<Vec<BusSubscription>, Box<dyn std::error::Error + Send + Sync>> {
        let (svc, publish) = (self.clone(), bus.clone());
        let subscription = on(
            bus,
            "payment",
            "saga",
            &["payment.requested"],
            move |_, e| {
                let (svc, bus) = (svc.clone(), publish.clone());
                async move {
                    match svc.charge(&e.order_id, e.amount, e.fail_payment) {
                        Ok(p) => {
                            let next = OrderEvent {
                                payment_id: Some(p.id),
                                ..e
                            };
                            emit(&bus, "payment-service", "payment.processed", next).await
                        }
                        Err(reason) => {
                            tracing::warn!(order = %e.order_id, %reason, "payment failed");
                            let next = OrderEvent {
                                reason: Some(reason),
                                ..e
                            };
                            emit(&bus, "payment-service", "payment.failed", next).await
                        }
                    }
                }
            },
        )
        .await?;
        Ok(vec![subscription])
    }
}

async fn pay(State(svc): State<PaymentService>, Json(body): Json<Pay>) -> Response {
    if body.delay_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(body.delay_ms.min(10_000))).await;
    }
    match svc.charge(&body.order_id, body.amount, body.fail) {
        Ok(p) => (StatusCode::CREATED, Json(p)).into_response(),
        Err(reason) => error_json(StatusCode::PAYMENT_REQUIRED, &reason),
    }
}

async fn refund(State(svc): State<PaymentService>, Path(id): Path<String>) -> Response {
    let mut payments = svc.lock();
    match payments.get_mut(&id) {
        Some(p) => {
            p.refunded = true;
            Json(p.clone()).into_response()
        }
        None => error_json(StatusCode::NOT_FOUND, "payment not found"),
    }
}
