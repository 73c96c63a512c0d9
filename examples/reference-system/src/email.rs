//! The email service: on `user.created` it "sends" a welcome email, recorded in a mailbox
//! (`GET /emails`). The messaging inbox makes it idempotent: a redelivered or duplicated
//! event sends nothing twice.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sinew_messaging::inbox::{Deduplicate, MemoryInbox};
use sinew_messaging::{Delivery, Handler, HandlerError, Outcome};
use sinew_tracing_kit::correlation;

use crate::bus::{Bus, BusSubscription, correlated};

/// The subscription's service and name: queue `{namespace}email.welcome`.
pub const SUBSCRIPTION: (&str, &str) = ("email", "welcome");

/// One sent email.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Email {
    /// The recipient.
    pub to: String,
    /// The subject.
    pub subject: String,
    /// The event that caused it.
    pub event_id: String,
    /// The request's correlation ID, when it had one.
    pub correlation_id: Option<String>,
    /// The trace it was sent in.
    pub trace_id: Option<String>,
}

/// The mailbox and the handler's settings.
#[derive(Debug, Clone, Default)]
pub struct EmailService {
    mailbox: Arc<RwLock<Vec<Email>>>,
    lenient: Arc<AtomicBool>,
}

#[derive(Debug, Deserialize)]
struct Welcome {
    email: String,
    name: Option<String>,
}

impl EmailService {
    /// An empty mailbox, strict about payloads.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every email sent so far.
    pub fn sent(&self) -> Vec<Email> {
        self.mailbox
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The "fixed" handler of the demo: a `user.created` without a `name` is greeted
    /// generically instead of being rejected.
    pub fn set_lenient(&self, lenient: bool) {
        self.lenient.store(lenient, Ordering::Relaxed);
    }

    /// Subscribes to `user.created` on `bus`, deduplicated through a memory inbox and traced.
    ///
    /// # Errors
    ///
    /// [`sinew_messaging::subscriber::SubscribeError`] when the queue cannot be declared.
    pub async fn subscribe(
        &self,
        bus: &Bus,
    ) -> Result<BusSubscription, Box<dyn std::error::Error + Send + Sync>> {
        let config = bus.subscription(SUBSCRIPTION.0, SUBSCRIPTION.1, &["user.created"])?;
        let handler = Deduplicate::new(
            WelcomeHandler(self.clone()),
            Arc::new(MemoryInbox::new(100_000)),
        );
        Ok(bus.subscribe(config, correlated(handler)).await?)
    }

    /// `GET /emails`, `GET /health`.
    pub fn router(&self) -> Router {
        Router::new()
            .route(
                "/emails",
                get(|State(s): State<Self>| async move { Json(s.sent()) }),
            )
            .route(
                "/health",
                get(|| async { Json(serde_json::json!({ "status": "ok", "service": "email" })) }),
            )
            .with_state(self.clone())
    }
}

#[derive(Debug)]
struct WelcomeHandler(EmailService);

impl Handler for WelcomeHandler {
    async fn handle(&self, delivery: Delivery) -> Result<Outcome, HandlerError> {
        let event = delivery.decode::<serde_json::Value>()?;
        let event_id = delivery.message().message_id().to_owned();
        let welcome: Welcome =
            serde_json::from_value(event.data().clone()).map_err(HandlerError::decode)?;
        let name = match welcome.name {
            Some(name) => name,
            None if self.0.lenient.load(Ordering::Relaxed) => "there".to_owned(),
            None => {
                return Ok(Outcome::DeadLetter {
                    reason: "user.created without a name".to_owned(),
                });
            }
        };
        let trace_id = sinew_tracing_kit::propagation::TraceContext::current().trace_id();
        let email = Email {
            to: welcome.email,
            subject: format!("Welcome, {name}!"),
            event_id,
            correlation_id: correlation::current().map(|c| c.as_str().to_owned()),
            trace_id,
        };
        tracing::info!(to = %email.to, "welcome email sent");
        self.0
            .mailbox
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(email);
        Ok(Outcome::Ack)
    }

    fn name(&self) -> &str {
        "welcome-email"
    }
}
