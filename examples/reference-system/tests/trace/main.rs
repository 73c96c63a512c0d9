#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! One trace from the gateway to the email service. In a test binary of its own: the span
//! capture is thread-local and tracing caches callsite interest per process, so a concurrent
//! test without a subscriber could make it drop spans.

use std::time::Duration;

use serde_json::{Value, json};
use sinew_reference_system::system::{System, SystemConfig};

/// A request through the gateway is one trace down to the email service: the gateway's
/// server span, the user service's server span and the email service's consumer share one
/// trace ID, which the welcome email records; the outbox relay's publish span links to it.
#[tokio::test(flavor = "current_thread")]
async fn one_trace_from_gateway_to_email() {
    let (_guard, spans) = sinew_tracing_kit::testing::capture();
    let system = System::start(SystemConfig::embedded()).await.unwrap();
    let http = reqwest::Client::new();
    let base = system.gateway.url();
    let token: Value = http
        .post(format!("{base}/auth/token"))
        .json(&json!({ "username": "demo", "password": "sinew-demo" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let response = http
        .post(format!("{base}/api/users"))
        .bearer_auth(token["token"].as_str().unwrap())
        .header("x-correlation-id", "trace-test-1")
        .json(&json!({ "email": "grace@example.com", "name": "Grace", "password": "12345678abc" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let mut mail = None;
    for _ in 0..250 {
        mail = system
            .email
            .sent()
            .into_iter()
            .find(|m| m.to == "grace@example.com");
        if mail.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mail = mail.expect("welcome email");
    assert_eq!(mail.correlation_id.as_deref(), Some("trace-test-1"));
    let trace_id = mail.trace_id.expect("the email handler ran inside a trace");

    // A server span ends when its connection task finishes the response, which can be a
    // moment after the client has read it.
    for _ in 0..250 {
        let names = spans.names();
        if [
            "POST /api/users",
            "POST /users",
            "publish domain-events:user.created",
            "process domain-events:user.created:email.welcome",
        ]
        .iter()
        .all(|n| names.iter().any(|m| m == n))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all = spans.spans();
    let gateway = all
        .iter()
        .find(|s| s.name == "POST /api/users")
        .unwrap_or_else(|| panic!("no gateway span in {:?}", spans.names()));
    assert_eq!(gateway.trace_id, trace_id, "gateway and email in one trace");
    // The user service enqueues `user.created` in its outbox with the request's context; the
    // relay's publish span (a trace of its own) links to that context, which travels in the
    // headers, so the consumer is a child of the request's trace.
    let publish = all
        .iter()
        .find(|s| s.name == "publish domain-events:user.created")
        .unwrap_or_else(|| panic!("no publish span in {:?}", spans.names()));
    assert!(
        publish.links.iter().any(|l| l.trace_id == trace_id),
        "the relay's publish span links to the gateway's trace: {:?}",
        publish.links
    );
    for name in [
        "POST /users",
        "process domain-events:user.created:email.welcome",
    ] {
        let span = all
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no span {name} in {:?}", spans.names()));
        assert_eq!(span.trace_id, trace_id, "{name} is in the gateway's trace");
    }
    system.shutdown().await;
}
