//! The server layer's unsampled path: no span is built, but the correlation ID and the trace
//! context still flow. The sampler declaration is process-wide, so this is its own binary.
#![cfg(all(feature = "axum", feature = "testing"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{HeaderMap, Request};
use sinew_tracing_kit::correlation;
use sinew_tracing_kit::http::{HttpClientLayer, HttpServerLayer};
use sinew_tracing_kit::init::{Sampler, declare_sampler};
use sinew_tracing_kit::testing::capture;
use tower::{ServiceBuilder, ServiceExt};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[tokio::test]
async fn unsampled_requests_build_no_span_but_propagate_context_and_correlation() {
    let (_guard, spans) = capture();
    declare_sampler(Sampler::ParentBasedAlwaysOn);

    // What the handler's outgoing call carries.
    let seen: Arc<Mutex<Option<HeaderMap>>> = Arc::default();
    let sink = seen.clone();
    let app = Router::new()
        .route(
            "/work",
            get(move || {
                let sink = sink.clone();
                async move {
                    let downstream = ServiceBuilder::new().layer(HttpClientLayer::new()).service(
                        tower::service_fn(move |req: Request<String>| {
                            *sink.lock().unwrap() = Some(req.headers().clone());
                            async {
                                Ok::<_, std::convert::Infallible>(
                                    http::Response::new(String::new()),
                                )
                            }
                        }),
                    );
                    let _ = downstream
                        .oneshot(
                            Request::get("http://downstream/x")
                                .body(String::new())
                                .unwrap(),
                        )
                        .await;
                    correlation::current()
                        .map(|c| c.to_string())
                        .unwrap_or_default()
                }
            }),
        )
        .layer(HttpServerLayer::new());

    #[cfg(feature = "grpc")]
    unsampled_grpc_request(&spans).await;

    // The caller did not sample this trace (flags 00): the parent-based sampler drops it.
    let response = app
        .oneshot(
            Request::get("/work")
                .header("traceparent", format!("00-{TRACE}-00f067aa0ba902b7-00"))
                .header("x-correlation-id", "unsampled-1")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.headers()["x-correlation-id"], "unsampled-1");
    let body = axum::body::to_bytes(response.into_body(), 1024)
        .await
        .unwrap();
    assert_eq!(
        &body[..],
        b"unsampled-1",
        "the handler saw the correlation id"
    );

    assert!(
        spans.find("GET /work").is_none(),
        "no server span: {:?}",
        spans.names()
    );
    let headers = seen
        .lock()
        .unwrap()
        .take()
        .expect("the handler called downstream");
    let traceparent = headers["traceparent"].to_str().unwrap();
    assert!(
        traceparent.contains(TRACE),
        "the trace continues downstream: {traceparent}"
    );
    // (Its sampled flag is the client span's own decision: `capture()` samples everything.)
    assert_eq!(headers["x-correlation-id"], "unsampled-1");

    // A sampled caller takes the full path again.
    let app = Router::new()
        .route("/work", get(|| async { "ok" }))
        .layer(HttpServerLayer::new());
    let response = app
        .oneshot(
            Request::get("/work")
                .header("traceparent", format!("00-{TRACE}-00f067aa0ba902b7-01"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert!(
        response.headers().contains_key("x-correlation-id"),
        "a generated id is echoed"
    );
    assert_eq!(spans.span("GET /work").trace_id, TRACE);

    // Always-off: no span even for a sampled caller; a generated id is still echoed.
    declare_sampler(Sampler::AlwaysOff);
    spans.clear();
    let app = Router::new()
        .route("/work", get(|| async { "ok" }))
        .layer(HttpServerLayer::new());
    let response = app
        .oneshot(Request::get("/work").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let id = response.headers()["x-correlation-id"].to_str().unwrap();
    assert!(correlation::CorrelationId::parse(id).is_ok());
    assert!(spans.find("GET /work").is_none());
}

/// The gRPC server layer's unsampled path: no span, but the handler runs inside the remote
/// context and the correlation ID, and both flow into what it sends on.
#[cfg(feature = "grpc")]
async fn unsampled_grpc_request(spans: &sinew_tracing_kit::testing::SpanRecorder) {
    use std::collections::HashMap;
    use tower::Layer;

    let handler = tower::service_fn(|_req: Request<String>| async {
        let mut carrier = HashMap::<String, String>::new();
        sinew_tracing_kit::propagation::inject(&mut carrier);
        let mut response = http::Response::new(String::new());
        let headers = response.headers_mut();
        headers.insert(
            "seen-tp",
            carrier["traceparent"]
                .parse()
                .expect("traceparent injected"),
        );
        headers.insert(
            "seen-corr",
            correlation::current().unwrap().to_string().parse().unwrap(),
        );
        headers.insert("grpc-status", "0".parse().unwrap());
        Ok::<_, std::convert::Infallible>(response)
    });
    let svc = sinew_tracing_kit::grpc::GrpcServerLayer::new().layer(handler);
    let response = svc
        .oneshot(
            Request::post("http://grpc.local/pkg.Users/Get")
                .header("content-type", "application/grpc")
                .header("traceparent", format!("00-{TRACE}-00f067aa0ba902b7-00"))
                .header("x-correlation-id", "unsampled-grpc")
                .body(String::new())
                .unwrap(),
        )
        .await
        .unwrap();
    let seen_tp = response.headers()["seen-tp"].to_str().unwrap();
    assert!(seen_tp.contains(TRACE), "the trace continues: {seen_tp}");
    assert_eq!(response.headers()["seen-corr"], "unsampled-grpc");
    assert_eq!(response.headers()["x-correlation-id"], "unsampled-grpc");
    assert!(
        spans.find("pkg.Users/Get").is_none(),
        "no server span: {:?}",
        spans.names()
    );
}
