//! The notification service: records order confirmations.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::on;
use crate::bus::{Bus, BusSubscription};

/// A sent notification.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    /// The order.
    pub order_id: String,
    /// The text.
    pub message: String,
}

/// The notification service.
#[derive(Debug, Clone, Default)]
pub struct NotificationService {
    sent: Arc<Mutex<Vec<Notification>>>,
}

impl NotificationService {
    /// No notifications yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every notification sent.
    pub fn sent(&self) -> Vec<Notification> {
        self.sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn push(&self, n: Notification) {
        tracing::info!(order = %n.order_id, "notification sent");
        self.sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(n);
    }

    /// `POST /notifications`, `GET /notifications`, `GET /health`.
    pub fn router(&self) -> Router {
        Router::new()
            .route(
                "/notifications",
                post(
                    |State(s): State<Self>, Json(n): Json<Notification>| async move {
                        s.push(n.clone());
                        (StatusCode::CREATED, Json(n)).into_response()
                    },
                )
                .get(|State(s): State<Self>| async move { Json(s.sent()) }),
            )
            .route(
                "/health",
                get(|| async {
                    Json(serde_json::json!({ "status": "ok", "service": "notification" }))
                }),
            )
            .with_state(self.clone())
    }

    /// The choreography's notification handler: order.completed.
    ///
    /// # Errors
    ///
    /// When the queue cannot be declared.
    pub async fn subscribe(
        &self,
        bus: &Bus,
    ) -> Result<Vec<BusSubscription>, Box<dyn std::error::Error + Send + Sync>> {
        let svc = self.clone();
        let subscription = on(
            bus,
            "notification",
            "saga",
            &["order.completed"],
            move |_, e| {
                let svc = svc.clone();
                async move {
                    svc.push(Notification {
                        order_id: e.order_id,
                        message: "Your order is confirmed".to_owned(),
                    });
                    Ok(())
                }
            },
        )
        .await?;
        Ok(vec![subscription])
    }
}
