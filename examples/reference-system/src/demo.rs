//! The scripted demo: eight steps against a running [`System`], each checked, with a short
//! report.

use std::fmt;
use std::time::Duration;

use serde_json::{Value, json};
use sinew_messaging::Message;
use sinew_resilience::circuit_breaker::State;

use crate::email;
use crate::system::{Error, System};

/// One step's outcome.
#[derive(Debug, Clone)]
pub struct Step {
    /// 1 to 8.
    pub number: usize,
    /// What it shows.
    pub title: &'static str,
    /// What happened, one line each.
    pub lines: Vec<String>,
}

/// The demo's report.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The steps, in order.
    pub steps: Vec<Step>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for step in &self.steps {
            writeln!(f, "{}. {}", step.number, step.title)?;
            for line in &step.lines {
                writeln!(f, "   {line}")?;
            }
        }
        Ok(())
    }
}

/// A failed expectation: which step, and what was wrong.
#[derive(Debug, thiserror::Error)]
#[error("step {step}: {message}")]
pub struct StepFailed {
    /// The step.
    pub step: usize,
    /// What was wrong.
    pub message: String,
}

fn check(step: usize, ok: bool, message: impl Into<String>) -> Result<(), StepFailed> {
    if ok {
        Ok(())
    } else {
        Err(StepFailed {
            step,
            message: message.into(),
        })
    }
}

/// Polls `f` every 20 ms for up to `limit`.
async fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value, Option<String>), Error> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let instance = response
            .headers()
            .get("x-upstream-instance")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.json::<Value>().await.unwrap_or(Value::Null);
        Ok((status, body, instance))
    }
}

/// Runs the eight steps against `system`, failing at the first unmet expectation.
///
/// # Errors
///
/// [`StepFailed`] (boxed) or a transport error.
#[allow(
    clippy::too_many_lines,
    reason = "a script: one block per step reads best"
)]
pub async fn run(system: &mut System) -> Result<Report, Error> {
    let mut report = Report::default();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let base = system.gateway.url();

    // 1. A token.
    let r = http
        .post(format!("{base}/auth/token"))
        .json(&json!({ "username": "demo", "password": "sinew-demo" }))
        .send()
        .await?;
    check(
        1,
        r.status().is_success(),
        format!("POST /auth/token answered {}", r.status()),
    )?;
    let token = r.json::<Value>().await?["token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    check(1, token.split('.').count() == 3, "no JWT in the answer")?;
    let api = Api { http, base, token };
    report.steps.push(Step {
        number: 1,
        title: "Get a token",
        lines: vec![format!(
            "POST /auth/token -> 200, HS256 JWT for `demo` ({} chars)",
            api.token.len()
        )],
    });

    // 2. A user, and the welcome email.
    let address = format!("ada+{}@example.com", uuid::Uuid::now_v7().simple());
    let (status, user, instance) = api
        .call(
            reqwest::Method::POST,
            "/api/users",
            Some(json!({ "email": address, "name": "Ada Lovelace", "password": "correct horse battery" })),
        )
        .await?;
    check(
        2,
        status == 201,
        format!("POST /api/users answered {status}: {user}"),
    )?;
    check(
        2,
        user.get("password").is_none() && user.get("passwordHash").is_none(),
        "the password leaked",
    )?;
    let user_id = user["id"].as_str().unwrap_or_default().to_owned();
    let mailbox = system.email.clone();
    let arrived = eventually(Duration::from_secs(5), || {
        mailbox.sent().iter().any(|m| m.to == address)
    })
    .await;
    check(2, arrived, "no welcome email within 5 s")?;
    let mail = mailbox.sent().into_iter().find(|m| m.to == address);
    report.steps.push(Step {
        number: 2,
        title: "Create a user and see the welcome email arrive",
        lines: vec![
            format!(
                "POST /api/users -> 201 id={user_id} (served by {})",
                instance.unwrap_or_default()
            ),
            format!(
                "user.created -> email service: \"{}\" to {address} (correlation {})",
                mail.as_ref()
                    .map(|m| m.subject.as_str())
                    .unwrap_or_default(),
                mail.as_ref()
                    .and_then(|m| m.correlation_id.clone())
                    .unwrap_or_default(),
            ),
        ],
    });

    // 3. The dashboard.
    let (s1, _, _) = api
        .call(
            reqwest::Method::POST,
            "/api/posts",
            Some(
                json!({ "userId": user_id, "title": "Notes", "body": "On the Analytical Engine" }),
            ),
        )
        .await?;
    let (s2, _, _) = api
        .call(
            reqwest::Method::POST,
            "/api/comments",
            Some(json!({ "userId": user_id, "body": "First!" })),
        )
        .await?;
    check(
        3,
        s1 == 201 && s2 == 201,
        format!("creating a post and a comment answered {s1}/{s2}"),
    )?;
    let (status, dash, _) = api
        .call(
            reqwest::Method::GET,
            &format!("/api/user-dashboard/{user_id}"),
            None,
        )
        .await?;
    let posts = dash["posts"].as_array().map_or(0, Vec::len);
    let comments = dash["comments"].as_array().map_or(0, Vec::len);
    check(
        3,
        status == 200 && dash["user"]["id"] == user_id.as_str() && posts == 1 && comments == 1,
        format!("dashboard: {status} {dash}"),
    )?;
    report.steps.push(Step {
        number: 3,
        title: "Load the dashboard",
        lines: vec![format!("GET /api/user-dashboard/{{id}} -> 200: user {}, {posts} post, {comments} comment (fetched in parallel)", dash["user"]["name"])],
    });

    // 4. A completed order, orchestrated then choreographed.
    let stock_before = system.inventory.level("widget");
    let order = json!({ "items": [{ "sku": "widget", "quantity": 2 }], "amount": 2500 });
    let (status, body, _) = api
        .call(reqwest::Method::POST, "/api/orders", Some(order.clone()))
        .await?;
    let steps: Vec<String> =
        serde_json::from_value(body["saga"]["completed"].clone()).unwrap_or_default();
    check(
        4,
        status == 201
            && body["saga"]["status"] == "Completed"
            && body["order"]["status"] == "completed",
        format!("orchestrated order: {status} {body}"),
    )?;
    let mut choreo = order.clone();
    choreo["mode"] = json!("choreographed");
    let (status, body2, _) = api
        .call(reqwest::Method::POST, "/api/orders", Some(choreo))
        .await?;
    check(
        4,
        status == 202,
        format!("choreographed order: {status} {body2}"),
    )?;
    let choreo_id = body2["order"]["id"].as_str().unwrap_or_default().to_owned();
    let orders = system.orders.clone();
    let done = eventually(Duration::from_secs(5), || {
        orders
            .get(&choreo_id)
            .is_some_and(|o| o.status == "completed")
    })
    .await;
    check(4, done, "the choreographed order did not complete")?;
    // order.completed reaches the notification service a moment after the order completes.
    let notifications = system.notifications.clone();
    let orchestrated_id = body["order"]["id"].as_str().unwrap_or_default().to_owned();
    let count = || {
        notifications
            .sent()
            .iter()
            .filter(|n| n.order_id == choreo_id || n.order_id == orchestrated_id)
            .count()
    };
    eventually(Duration::from_secs(5), || count() >= 2).await;
    let notified = count();
    check(
        4,
        notified == 2,
        format!("{notified} notifications instead of 2"),
    )?;
    check(
        4,
        system.inventory.level("widget") == stock_before - 4,
        "stock not taken",
    )?;
    report.steps.push(Step {
        number: 4,
        title: "Complete an order",
        lines: vec![
            format!("orchestrated (sinew-saga, durable step log): {} -> Completed", steps.join(" -> ")),
            "choreographed: order.created -> inventory.reserved -> payment.requested -> payment.processed -> order.completed".to_owned(),
            format!("widget stock {stock_before} -> {}, 2 confirmations sent", system.inventory.level("widget")),
        ],
    });

    // 5. A declined payment, compensated.
    let stock_before = system.inventory.level("widget");
    let mut failing = order.clone();
    failing["failPayment"] = json!(true);
    let (status, body, _) = api
        .call(reqwest::Method::POST, "/api/orders", Some(failing.clone()))
        .await?;
    let compensated: Vec<String> =
        serde_json::from_value(body["saga"]["compensated"].clone()).unwrap_or_default();
    check(
        5,
        status == 422 && body["saga"]["status"] == "Compensated",
        format!("failing order: {status} {body}"),
    )?;
    check(
        5,
        compensated == ["reserve-inventory", "create-order"],
        format!("compensations {compensated:?}"),
    )?;
    check(
        5,
        body["order"]["status"] == "cancelled",
        "order not cancelled",
    )?;
    failing["mode"] = json!("choreographed");
    let (_, body2, _) = api
        .call(reqwest::Method::POST, "/api/orders", Some(failing))
        .await?;
    let choreo_id = body2["order"]["id"].as_str().unwrap_or_default().to_owned();
    let orders = system.orders.clone();
    let cancelled = eventually(Duration::from_secs(5), || {
        orders
            .get(&choreo_id)
            .is_some_and(|o| o.status == "cancelled")
    })
    .await;
    check(5, cancelled, "the choreographed order was not cancelled")?;
    let inventory = system.inventory.clone();
    let restored = eventually(Duration::from_secs(5), || {
        inventory.level("widget") == stock_before
    })
    .await;
    check(5, restored, "stock not released")?;
    report.steps.push(Step {
        number: 5,
        title: "Fail an order's payment and see the compensations in reverse order",
        lines: vec![
            format!("orchestrated: process-payment (the pivot) failed ({}) -> compensated {}", body["saga"]["failed"][1].as_str().unwrap_or_default(), compensated.join(" -> ")),
            "choreographed: payment.failed -> inventory.release_requested, order cancelled (payment_failed)".to_owned(),
            format!("widget stock back to {stock_before}"),
        ],
    });

    // 6. One of three user replicas dies.
    system.kill_user_replica(0).await;
    let dead = system
        .registry
        .instances("user")
        .await
        .into_iter()
        .find(|i| i.id == "user-1");
    let mut served = std::collections::BTreeMap::<String, usize>::new();
    let mut sent = 0;
    while sent < 40 {
        sent += 1;
        let (status, _, instance) = api
            .call(reqwest::Method::GET, &format!("/api/users/{user_id}"), None)
            .await?;
        check(
            6,
            status == 200,
            format!("request {sent} answered {status} with a replica down"),
        )?;
        *served.entry(instance.unwrap_or_default()).or_default() += 1;
        if dead
            .as_ref()
            .is_some_and(|d| d.breaker.state() == State::Open)
            && sent >= 10
        {
            break;
        }
    }
    let state = dead.as_ref().map(|d| d.breaker.state());
    check(
        6,
        state == Some(State::Open),
        format!("user-1's breaker is {state:?}"),
    )?;
    report.steps.push(Step {
        number: 6,
        title: "Stop one of three user-service replicas",
        lines: vec![
            format!("{sent} requests, all 200, served by {served:?}"),
            "user-1's breaker: Open (calls skip it until its 30 s wait ends)".to_owned(),
        ],
    });

    // 7. A poison event.
    let poison = Message::new(
        "user.created",
        serde_json::to_vec(&json!({
            "eventId": uuid::Uuid::now_v7().to_string(),
            "eventType": "user.created",
            "aggregateId": "poison",
            "timestamp": "2026-01-01T00:00:00Z",
            "data": { "id": "poison", "email": "poison@example.com" },
        }))?,
    )
    .with_message_id(uuid::Uuid::now_v7().to_string())
    .with_content_type("application/json");
    system.bus.publish_message(poison).await?;
    let queue = system
        .bus
        .queue(email::SUBSCRIPTION.0, email::SUBSCRIPTION.1);
    let mut letters = Vec::new();
    for _ in 0..250 {
        letters = system.bus.dead_letters(&queue, 10).await?;
        if !letters.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check(
        7,
        letters.len() == 1,
        format!("{} dead letters", letters.len()),
    )?;
    let letter = &letters[0];
    report.steps.push(Step {
        number: 7,
        title: "Send a poison event and see it land in the DLQ",
        lines: vec![format!(
            "user.created without a name -> {queue}.dlq: type={} reason=\"{}\" handler={}",
            letter.error_type().unwrap_or_default(),
            letter.error_message().unwrap_or_default(),
            letter.handler().unwrap_or_default(),
        )],
    });

    // 8. Fix the handler and replay.
    system.email.set_lenient(true);
    let moved = system.bus.replay(&queue, 10).await?;
    check(8, moved == 1, format!("replayed {moved}"))?;
    let mailbox = system.email.clone();
    let delivered = eventually(Duration::from_secs(5), || {
        mailbox.sent().iter().any(|m| m.to == "poison@example.com")
    })
    .await;
    check(8, delivered, "the replayed event was not handled")?;
    let left = system.bus.dead_letters(&queue, 10).await?.len();
    check(8, left == 0, format!("{left} dead letters left"))?;
    report.steps.push(Step {
        number: 8,
        title: "Replay it",
        lines: vec![
            "handler fixed (greets a nameless user generically), `dlq replay email.welcome` -> 1 moved".to_owned(),
            "welcome email sent to poison@example.com; DLQ empty".to_owned(),
        ],
    });
    Ok(report)
}
