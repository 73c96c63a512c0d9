//! The order saga, in both forms of the design:
//!
//! - **orchestrated** (`POST /orders`): the order service runs create order → reserve
//!   inventory → process payment → send notification, calling the inventory, payment and
//!   notification services over HTTP, and compensates in reverse order when a step fails;
//! - **choreographed** (`POST /orders` with `"mode": "choreographed"`): order.created →
//!   inventory.reserved → payment.requested → payment.processed / payment.failed →
//!   order.completed, or inventory.release_requested with the order cancelled.

pub mod inventory;
pub mod notification;
pub mod payment;
pub mod saga;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sinew_messaging::{Delivery, Event, HandlerError, Outcome, handler_fn};

use crate::bus::{Bus, BusSubscription, traced};
use crate::http::error_json;
use crate::upstream::Upstreams;

/// A line of an order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OrderItem {
    /// The product.
    pub sku: String,
    /// How many.
    pub quantity: i64,
}

/// An order.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    /// UUIDv7.
    pub id: String,
    /// Who ordered.
    pub customer_id: String,
    /// What.
    pub items: Vec<OrderItem>,
    /// Total, in cents.
    pub amount: i64,
    /// `pending`, `inventory_reserved`, `completed` or `cancelled`.
    pub status: String,
    /// Why it was cancelled.
    pub cancellation_reason: Option<String>,
    /// The payment, once processed.
    pub payment_id: Option<String>,
    /// `orchestrated` or `choreographed`.
    pub mode: String,
}

/// The payload of every order-saga event; each event fills the fields it needs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderEvent {
    /// The order.
    pub order_id: String,
    /// Its lines (order.created).
    #[serde(default)]
    pub items: Vec<OrderItem>,
    /// Its amount.
    #[serde(default)]
    pub amount: i64,
    /// Ask the payment service to decline.
    #[serde(default)]
    pub fail_payment: bool,
    /// The reservation (inventory.reserved).
    pub reservation_id: Option<String>,
    /// The payment (payment.processed).
    pub payment_id: Option<String>,
    /// Why something failed.
    pub reason: Option<String>,
}

/// Publishes `event_type` about `data.order_id`.
pub(crate) async fn emit(
    bus: &Bus,
    source: &str,
    event_type: &str,
    data: OrderEvent,
) -> Result<(), HandlerError> {
    let event = Event::new(event_type, data.order_id.clone(), data);
    bus.publish(source, event)
        .await
        .map_err(HandlerError::transient)
}

/// Subscribes a closure taking the decoded [`OrderEvent`] and its routing key.
pub(crate) async fn on<F, Fut>(
    bus: &Bus,
    service: &str,
    name: &str,
    keys: &[&str],
    f: F,
) -> Result<BusSubscription, Box<dyn std::error::Error + Send + Sync>>
where
    F: Fn(String, OrderEvent) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send,
{
    let config = bus.subscription(service, name, keys)?;
    let f = Arc::new(f);
    let handler = handler_fn(format!("{service}.{name}"), move |delivery: Delivery| {
        let f = Arc::clone(&f);
        async move {
            let key = delivery.routing_key().to_owned();
            let event = delivery.decode::<OrderEvent>()?;
            f(key, event.into_data()).await?;
            Ok(Outcome::Ack)
        }
    });
    Ok(bus.subscribe(config, traced(bus.system(), handler)).await?)
}

/// The order service.
#[derive(Debug, Clone)]
pub struct OrderService {
    orders: Arc<RwLock<BTreeMap<String, Order>>>,
    upstreams: Upstreams,
    bus: Bus,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewOrder {
    customer_id: Option<String>,
    items: Vec<OrderItem>,
    amount: i64,
    #[serde(default)]
    fail_payment: bool,
    #[serde(default)]
    mode: Option<String>,
}

impl OrderService {
    /// The service, calling the others through `upstreams` and publishing on `bus`.
    pub fn new(upstreams: Upstreams, bus: Bus) -> Self {
        Self {
            orders: Arc::default(),
            upstreams,
            bus,
        }
    }

    /// Order `id`.
    pub fn get(&self, id: &str) -> Option<Order> {
        self.orders
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut Order)) -> Option<Order> {
        let mut orders = self
            .orders
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let order = orders.get_mut(id)?;
        f(order);
        Some(order.clone())
    }

    fn insert(&self, order: Order) {
        self.orders
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(order.id.clone(), order);
    }

    /// `POST /orders`, `GET /orders/{id}`, `GET /health`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/orders", post(create))
            .route("/orders/{id}", get(get_one))
            .route(
                "/health",
                get(|| async { Json(serde_json::json!({ "status": "ok", "service": "order" })) }),
            )
            .with_state(self.clone())
    }

    /// The choreography's order-side handlers.
    ///
    /// # Errors
    ///
    /// When a queue cannot be declared.
    pub async fn subscribe(
        &self,
        bus: &Bus,
    ) -> Result<Vec<BusSubscription>, Box<dyn std::error::Error + Send + Sync>> {
        let svc = self.clone();
        let subscription = on(
            bus,
            "order",
            "saga",
            &[
                "inventory.reserved",
                "inventory.failed",
                "payment.processed",
                "payment.failed",
            ],
            move |key, e| {
                let svc = svc.clone();
                async move { svc.on_event(&key, e).await }
            },
        )
        .await?;
        Ok(vec![subscription])
    }

    async fn on_event(&self, key: &str, e: OrderEvent) -> Result<(), HandlerError> {
        match key {
            "inventory.reserved" => {
                let Some(order) = self.update(&e.order_id, |o| {
                    "inventory_reserved".clone_into(&mut o.status)
                }) else {
                    return Ok(());
                };
                emit(
                    &self.bus,
                    "order-service",
                    "payment.requested",
                    OrderEvent {
                        order_id: order.id,
                        amount: order.amount,
                        fail_payment: e.fail_payment,
                        ..OrderEvent::default()
                    },
                )
                .await
            }
            "payment.processed" => {
                self.update(&e.order_id, |o| {
                    "completed".clone_into(&mut o.status);
                    o.payment_id.clone_from(&e.payment_id);
                });
                emit(
                    &self.bus,
                    "order-service",
                    "order.completed",
                    OrderEvent {
                        order_id: e.order_id,
                        ..OrderEvent::default()
                    },
                )
                .await
            }
            "payment.failed" => {
                emit(
                    &self.bus,
                    "order-service",
                    "inventory.release_requested",
                    OrderEvent {
                        order_id: e.order_id.clone(),
                        ..OrderEvent::default()
                    },
                )
                .await?;
                self.update(&e.order_id, |o| {
                    "cancelled".clone_into(&mut o.status);
                    o.cancellation_reason = Some("payment_failed".to_owned());
                });
                Ok(())
            }
            "inventory.failed" => {
                self.update(&e.order_id, |o| {
                    "cancelled".clone_into(&mut o.status);
                    o.cancellation_reason = Some("out_of_stock".to_owned());
                });
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Runs the orchestrated saga for a new order.
    pub async fn orchestrate(&self, order: Order, fail_payment: bool) -> (Order, saga::SagaReport) {
        use saga::Step;
        let id = order.id.clone();
        let reservation: Arc<RwLock<Option<String>>> = Arc::default();
        let payment: Arc<RwLock<Option<String>>> = Arc::default();

        let create = {
            let (svc, order) = (self.clone(), order.clone());
            let (svc2, id2) = (self.clone(), id.clone());
            Step::new("create order", move || {
                let (svc, order) = (svc.clone(), order.clone());
                async move {
                    svc.insert(order);
                    Ok(())
                }
            })
            .compensate(move || {
                let (svc, id) = (svc2.clone(), id2.clone());
                async move {
                    svc.update(&id, |o| {
                        "cancelled".clone_into(&mut o.status);
                        o.cancellation_reason = Some("saga_compensated".to_owned());
                    });
                    Ok(())
                }
            })
        };
        let reserve = {
            let (up, order, slot) = (
                self.upstreams.clone(),
                order.clone(),
                Arc::clone(&reservation),
            );
            let (up2, slot2) = (self.upstreams.clone(), Arc::clone(&reservation));
            Step::new("reserve inventory", move || {
                let (up, order, slot) = (up.clone(), order.clone(), Arc::clone(&slot));
                async move {
                    let body = serde_json::json!({ "orderId": order.id, "items": order.items });
                    let r = call(&up, "inventory", Method::POST, "/reservations", &body).await?;
                    let id = r.get("id").and_then(|v| v.as_str()).map(str::to_owned);
                    *slot
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = id;
                    Ok(())
                }
            })
            .compensate(move || {
                let (up, slot) = (up2.clone(), Arc::clone(&slot2));
                async move {
                    let id = slot
                        .read()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .clone();
                    let Some(id) = id else { return Ok(()) };
                    call(
                        &up,
                        "inventory",
                        Method::POST,
                        &format!("/reservations/{id}/release"),
                        &serde_json::json!({}),
                    )
                    .await
                    .map(drop)
                }
            })
        };
        let pay = {
            let (up, order, slot) = (self.upstreams.clone(), order.clone(), Arc::clone(&payment));
            let (up2, slot2) = (self.upstreams.clone(), Arc::clone(&payment));
            Step::new("process payment", move || {
                let (up, order, slot) = (up.clone(), order.clone(), Arc::clone(&slot));
                async move {
                    let body = serde_json::json!({ "orderId": order.id, "amount": order.amount, "fail": fail_payment });
                    let r = call(&up, "payment", Method::POST, "/payments", &body).await?;
                    let id = r.get("id").and_then(|v| v.as_str()).map(str::to_owned);
                    *slot.write().unwrap_or_else(std::sync::PoisonError::into_inner) = id;
                    Ok(())
                }
            })
            .compensate(move || {
                let (up, slot) = (up2.clone(), Arc::clone(&slot2));
                async move {
                    let id = slot.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
                    let Some(id) = id else { return Ok(()) };
                    call(&up, "payment", Method::POST, &format!("/payments/{id}/refund"), &serde_json::json!({}))
                        .await
                        .map(drop)
                }
            })
        };
        let notify = {
            let (up, id) = (self.upstreams.clone(), id.clone());
            Step::new("send notification", move || {
                let (up, id) = (up.clone(), id.clone());
                async move {
                    let body =
                        serde_json::json!({ "orderId": id, "message": "Your order is confirmed" });
                    call(&up, "notification", Method::POST, "/notifications", &body)
                        .await
                        .map(drop)
                }
            })
        };
        let report = saga::run(&format!("order {id}"), vec![create, reserve, pay, notify]).await;
        if report.status == saga::SagaStatus::Completed {
            let payment_id = payment
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            self.update(&id, |o| {
                "completed".clone_into(&mut o.status);
                o.payment_id = payment_id;
            });
        }
        let order = self.get(&id).unwrap_or(order);
        (order, report)
    }
}

/// Calls another service and returns its JSON body; any non-2xx answer is an error.
async fn call(
    up: &Upstreams,
    service: &str,
    method: Method,
    path: &str,
    body: &serde_json::Value,
) -> Result<serde_json::Value, String> {
    let r = up
        .json(service, method, path, body)
        .await
        .map_err(|e| e.to_string())?;
    let json = r.json().unwrap_or(serde_json::Value::Null);
    if r.status.is_success() {
        Ok(json)
    } else {
        let reason = json
            .get("error")
            .and_then(|v| v.as_str())
            .unwrap_or("failed")
            .to_owned();
        Err(format!(
            "{service} answered {}: {reason}",
            r.status.as_u16()
        ))
    }
}

async fn create(
    State(svc): State<OrderService>,
    headers: HeaderMap,
    Json(body): Json<NewOrder>,
) -> Response {
    let customer_id = headers
        .get("x-user-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(body.customer_id)
        .unwrap_or_default();
    if customer_id.is_empty() {
        return error_json(StatusCode::BAD_REQUEST, "customerId is required");
    }
    if body.items.is_empty()
        || body
            .items
            .iter()
            .any(|i| i.quantity <= 0 || i.sku.is_empty())
        || body.amount <= 0
    {
        return error_json(
            StatusCode::BAD_REQUEST,
            "an order needs items with positive quantities and a positive amount",
        );
    }
    let mode = body.mode.unwrap_or_else(|| "orchestrated".to_owned());
    let order = Order {
        id: uuid::Uuid::now_v7().to_string(),
        customer_id,
        items: body.items,
        amount: body.amount,
        status: "pending".to_owned(),
        cancellation_reason: None,
        payment_id: None,
        mode: mode.clone(),
    };
    match mode.as_str() {
        "orchestrated" => {
            let (order, report) = svc.orchestrate(order, body.fail_payment).await;
            let status = if report.status == saga::SagaStatus::Completed {
                StatusCode::CREATED
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            (
                status,
                Json(serde_json::json!({ "order": order, "saga": report })),
            )
                .into_response()
        }
        "choreographed" => {
            svc.insert(order.clone());
            let event = OrderEvent {
                order_id: order.id.clone(),
                items: order.items.clone(),
                amount: order.amount,
                fail_payment: body.fail_payment,
                ..OrderEvent::default()
            };
            if let Err(error) = emit(&svc.bus, "order-service", "order.created", event).await {
                tracing::error!(%error, "cannot publish order.created");
                return error_json(StatusCode::SERVICE_UNAVAILABLE, "Service unavailable");
            }
            (
                StatusCode::ACCEPTED,
                Json(serde_json::json!({ "order": order })),
            )
                .into_response()
        }
        _ => error_json(
            StatusCode::BAD_REQUEST,
            "mode must be orchestrated or choreographed",
        ),
    }
}

async fn get_one(State(svc): State<OrderService>, Path(id): Path<String>) -> Response {
    match svc.get(&id) {
        Some(order) => Json(order).into_response(),
        None => error_json(StatusCode::NOT_FOUND, "order not found"),
    }
}
