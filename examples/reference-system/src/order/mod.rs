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
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sinew_messaging::{Delivery, Event, HandlerError, Outcome, handler_fn};

use crate::bus::{Bus, BusSubscription, correlated};
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
    Ok(bus.subscribe(config, correlated(handler)).await?)
}

/// The orders, kept in memory (the saga log, not the orders, is what survives a restart).
#[derive(Debug, Clone, Default)]
pub struct OrderStore {
    orders: Arc<RwLock<BTreeMap<String, Order>>>,
}

impl OrderStore {
    /// Order `id`.
    pub fn get(&self, id: &str) -> Option<Order> {
        self.orders
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    /// Changes order `id`; `None` when there is none.
    pub fn update(&self, id: &str, f: impl FnOnce(&mut Order)) -> Option<Order> {
        let mut orders = self
            .orders
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let order = orders.get_mut(id)?;
        f(order);
        Some(order.clone())
    }

    /// Adds (or replaces) an order.
    pub fn insert(&self, order: Order) {
        self.orders
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(order.id.clone(), order);
    }
}

/// The order service.
#[derive(Debug, Clone)]
pub struct OrderService {
    orders: OrderStore,
    saga: Arc<saga::Orchestrators>,
    bus: Bus,
    _recovery: Arc<saga::AbortOnDrop>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewOrder {
    /// A client-chosen UUID makes the request idempotent: a retry drives the same saga.
    order_id: Option<String>,
    customer_id: Option<String>,
    items: Vec<OrderItem>,
    amount: i64,
    #[serde(default)]
    fail_payment: bool,
    #[serde(default)]
    mode: Option<String>,
    /// Ask the payment service to take this long (at most 10 s).
    #[serde(default)]
    payment_delay_ms: u64,
}

impl OrderService {
    /// The service: the orchestrated saga's log in PostgreSQL (`database_url`) or SQLite in
    /// `data_dir`, calls to the other services through `upstreams`, events on `bus`. Sagas a
    /// previous process left half-done are recovered in the background.
    ///
    /// # Errors
    ///
    /// When the saga store cannot be opened.
    pub async fn new(
        upstreams: Upstreams,
        bus: Bus,
        database_url: Option<&str>,
        data_dir: &std::path::Path,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let orders = OrderStore::default();
        let definition = saga::definition(orders.clone(), upstreams)?;
        let saga = saga::Orchestrators::open(database_url, data_dir, definition).await?;
        let recovery = saga.spawn_recovery(std::time::Duration::from_secs(1));
        Ok(Self {
            orders,
            saga: Arc::new(saga),
            bus,
            _recovery: Arc::new(recovery),
        })
    }

    /// Order `id`.
    pub fn get(&self, id: &str) -> Option<Order> {
        self.orders.get(id)
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut Order)) -> Option<Order> {
        self.orders.update(id, f)
    }

    fn insert(&self, order: Order) {
        self.orders.insert(order);
    }

    /// `POST /orders`, `GET /orders/{id}`, `GET /health`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/orders", post(create))
            .route("/orders/{id}", get(get_one))
            .route("/sagas/{id}", get(get_saga))
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
    ///
    /// # Errors
    ///
    /// When the saga store fails.
    pub async fn orchestrate(
        &self,
        order: Order,
        fail_payment: bool,
        payment_delay_ms: u64,
    ) -> Result<(Order, saga::SagaReport), sinew_saga::SagaError> {
        let data = saga::OrderSaga {
            order: order.clone(),
            fail_payment,
            payment_delay_ms,
        };
        let (id, status) = self.saga.execute(&data).await?;
        if status == sinew_saga::SagaStatus::Completed {
            self.update(&order.id, |o| "completed".clone_into(&mut o.status));
        }
        let report = self
            .saga
            .report(id)
            .await?
            .unwrap_or_else(|| saga::SagaReport {
                id: id.to_string(),
                status: format!("{status:?}"),
                completed: Vec::new(),
                failed: None,
                compensated: Vec::new(),
            });
        Ok((self.get(&order.id).unwrap_or(order), report))
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
    let id = match body.order_id.as_deref().map(uuid::Uuid::parse_str) {
        None => uuid::Uuid::now_v7(),
        Some(Ok(id)) => id,
        Some(Err(_)) => return error_json(StatusCode::BAD_REQUEST, "orderId must be a UUID"),
    };
    let order = Order {
        id: id.to_string(),
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
            let delay = body.payment_delay_ms.min(10_000);
            let (order, report) = match svc.orchestrate(order, body.fail_payment, delay).await {
                Ok(done) => done,
                Err(error) => {
                    tracing::error!(%error, "saga failed to run");
                    return error_json(StatusCode::SERVICE_UNAVAILABLE, "Service unavailable");
                }
            };
            let status = if report.status == "Completed" {
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

async fn get_saga(State(svc): State<OrderService>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<sinew_saga::SagaId>() else {
        return error_json(StatusCode::BAD_REQUEST, "invalid saga ID");
    };
    match svc.saga.report(id).await {
        Ok(Some(report)) => Json(report).into_response(),
        Ok(None) => error_json(StatusCode::NOT_FOUND, "saga not found"),
        Err(error) => {
            tracing::error!(%error, "cannot read the saga");
            error_json(StatusCode::SERVICE_UNAVAILABLE, "Service unavailable")
        }
    }
}

async fn get_one(State(svc): State<OrderService>, Path(id): Path<String>) -> Response {
    match svc.get(&id) {
        Some(order) => Json(order).into_response(),
        None => error_json(StatusCode::NOT_FOUND, "order not found"),
    }
}
