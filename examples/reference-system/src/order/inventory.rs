//! The inventory service: stock per SKU and reservations (REST for the orchestrator, events
//! for the choreography).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{OrderEvent, OrderItem, emit, on};
use crate::bus::{Bus, BusSubscription};
use crate::http::error_json;

/// A reservation of stock for an order.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reservation {
    /// UUIDv7.
    pub id: String,
    /// The order.
    pub order_id: String,
    /// What is held.
    pub items: Vec<OrderItem>,
    /// Whether it was given back.
    pub released: bool,
}

#[derive(Debug, Default)]
struct Stock {
    levels: BTreeMap<String, i64>,
    reservations: BTreeMap<String, Reservation>,
}

/// The inventory service.
#[derive(Debug, Clone)]
pub struct InventoryService {
    stock: Arc<Mutex<Stock>>,
}

impl Default for InventoryService {
    fn default() -> Self {
        Self::new([("widget", 100), ("gadget", 50)])
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Reserve {
    order_id: String,
    items: Vec<OrderItem>,
}

impl InventoryService {
    /// A service with these stock levels.
    pub fn new<'a>(levels: impl IntoIterator<Item = (&'a str, i64)>) -> Self {
        let stock = Stock {
            levels: levels.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            reservations: BTreeMap::new(),
        };
        Self {
            stock: Arc::new(Mutex::new(stock)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Stock> {
        self.stock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The stock level of `sku`.
    pub fn level(&self, sku: &str) -> i64 {
        self.lock().levels.get(sku).copied().unwrap_or(0)
    }

    /// Reserves `items` for `order_id`, all or nothing.
    ///
    /// # Errors
    ///
    /// The SKU that is short.
    pub fn reserve(&self, order_id: &str, items: &[OrderItem]) -> Result<Reservation, String> {
        let mut stock = self.lock();
        if let Some(existing) = stock
            .reservations
            .values()
            .find(|r| r.order_id == order_id && !r.released)
        {
            return Ok(existing.clone()); // idempotent per order
        }
        for item in items {
            if stock.levels.get(&item.sku).copied().unwrap_or(0) < item.quantity {
                return Err(format!("not enough {}", item.sku));
            }
        }
        for item in items {
            if let Some(level) = stock.levels.get_mut(&item.sku) {
                *level -= item.quantity;
            }
        }
        let reservation = Reservation {
            id: uuid::Uuid::now_v7().to_string(),
            order_id: order_id.to_owned(),
            items: items.to_vec(),
            released: false,
        };
        stock
            .reservations
            .insert(reservation.id.clone(), reservation.clone());
        tracing::info!(order = order_id, reservation = %reservation.id, "inventory reserved");
        Ok(reservation)
    }

    /// Gives back reservation `id` (idempotent). Returns false when there is none.
    pub fn release(&self, id: &str) -> bool {
        let mut stock = self.lock();
        let Some(reservation) = stock.reservations.get_mut(id) else {
            return false;
        };
        if reservation.released {
            return true;
        }
        reservation.released = true;
        let items = reservation.items.clone();
        for item in items {
            *stock.levels.entry(item.sku).or_default() += item.quantity;
        }
        tracing::info!(reservation = id, "inventory released");
        true
    }

    fn release_order(&self, order_id: &str) {
        let id = self
            .lock()
            .reservations
            .values()
            .find(|r| r.order_id == order_id)
            .map(|r| r.id.clone());
        if let Some(id) = id {
            self.release(&id);
        }
    }

    /// `POST /reservations`, `POST /reservations/{id}/release`, `GET /inventory`, `GET /health`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/reservations", post(reserve))
            .route("/reservations/{id}/release", post(release))
            .route(
                "/inventory",
                get(|State(s): State<Self>| async move { Json(s.lock().levels.clone()) }),
            )
            .route(
                "/health",
                get(|| async {
                    Json(serde_json::json!({ "status": "ok", "service": "inventory" }))
                }),
            )
            .with_state(self.clone())
    }

    /// The choreography's inventory handlers: order.created and inventory.release_requested.
    ///
    /// # Errors
    ///
    /// When a queue cannot be declared.
    pub async fn subscribe(
        &self,
        bus: &Bus,
    ) -> Result<Vec<BusSubscription>, Box<dyn std::error::Error + Send + Sync>> {
        let (svc, publish) = (self.clone(), bus.clone());
        let subscription = on(
            bus,
            "inventory",
            "saga",
            &["order.created", "inventory.release_requested"],
            move |key, e| {
                let (svc, bus) = (svc.clone(), publish.clone());
                async move {
                    if key == "inventory.release_requested" {
                        svc.release_order(&e.order_id);
                        return Ok(());
                    }
                    match svc.reserve(&e.order_id, &e.items) {
                        Ok(r) => {
                            let next = OrderEvent {
                                reservation_id: Some(r.id),
                                ..e
                            };
                            emit(&bus, "inventory-service", "inventory.reserved", next).await
                        }
                        Err(reason) => {
                            let next = OrderEvent {
                                reason: Some(reason),
                                ..e
                            };
                            emit(&bus, "inventory-service", "inventory.failed", next).await
                        }
                    }
                }
            },
        )
        .await?;
        Ok(vec![subscription])
    }
}

async fn reserve(State(svc): State<InventoryService>, Json(body): Json<Reserve>) -> Response {
    match svc.reserve(&body.order_id, &body.items) {
        Ok(r) => (StatusCode::CREATED, Json(r)).into_response(),
        Err(reason) => error_json(StatusCode::CONFLICT, &reason),
    }
}

async fn release(State(svc): State<InventoryService>, Path(id): Path<String>) -> Response {
    if svc.release(&id) {
        Json(serde_json::json!({ "released": id })).into_response()
    } else {
        error_json(StatusCode::NOT_FOUND, "reservation not found")
    }
}
