#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! gRPC layers over plain HTTP/2-style requests (tonic services are exactly such services).
#![cfg(feature = "grpc")]

#[path = "../support/mod.rs"]
mod support;

use std::convert::Infallible;

use http::{HeaderMap, Request, Response};
use http_body_util::BodyExt;
use opentelemetry::trace::SpanKind;
use sinew_tracing_kit::correlation;
use sinew_tracing_kit::grpc::{GrpcClientLayer, GrpcServerLayer};
use support::{assert_parent, attr, attr_str, capture, is_error};
use tower::{Layer, ServiceExt};

type Full = http_body_util::Full<axum::body::Bytes>;

fn grpc_request(path: &str) -> Request<Full> {
    Request::post(format!("http://grpc.local:50051{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::default())
        .unwrap()
}

/// A server answering with `code` in the headers (trailers-only) or the trailers.
fn server(
    code: u8,
    in_trailers: bool,
) -> impl tower::Service<
    Request<Full>,
    Response = Response<http_body_util::combinators::BoxBody<axum::body::Bytes, Infallible>>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    tower::service_fn(move |req: Request<Full>| async move {
        let seen_corr = correlation::current()
            .map(|c| c.to_string())
            .unwrap_or_default();
        let tp = req
            .headers()
            .get("traceparent")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let mut builder = Response::builder()
            .header("content-type", "application/grpc")
            .header("seen-corr", seen_corr)
            .header("seen-tp", tp);
        let body = if in_trailers {
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", code.to_string().parse().unwrap());
            Frames(
                [
                    http_body::Frame::data(axum::body::Bytes::from_static(b"\0\0\0\0\0")),
                    http_body::Frame::trailers(trailers),
                ]
                .into(),
            )
            .boxed()
        } else {
            builder = builder.header("grpc-status", code.to_string());
            Full::default().boxed()
        };
        Ok::<_, Infallible>(builder.body(body).unwrap())
    })
}

/// A body yielding a data frame then the trailers.
struct Frames(std::collections::VecDeque<http_body::Frame<axum::body::Bytes>>);

impl http_body::Body for Frames {
    type Data = axum::body::Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::task::Poll::Ready(self.0.pop_front().map(Ok))
    }
}

#[tokio::test]
async fn server_span_from_path_with_status_in_headers_and_trailers() {
    let cap = capture();
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    // Trailers-only error response: INTERNAL (13) is a server error.
    let svc = GrpcServerLayer::new().layer(server(13, false));
    let mut req = grpc_request("/shop.v1.Orders/Place");
    req.headers_mut().insert("traceparent", tp.parse().unwrap());
    req.headers_mut()
        .insert("x-correlation-id", "g-1".parse().unwrap());
    let resp = svc.oneshot(req).await.unwrap();
    assert_eq!(resp.headers()["seen-corr"], "g-1");
    assert_eq!(resp.headers()["x-correlation-id"], "g-1");
    drop(resp);
    let span = cap.find("shop.v1.Orders/Place");
    assert_eq!(span.span_kind, SpanKind::Server);
    assert_eq!(
        span.span_context.trace_id().to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(span.parent_span_id.to_string(), "00f067aa0ba902b7");
    assert_eq!(attr_str(&span, "rpc.system").as_deref(), Some("grpc"));
    assert_eq!(
        attr_str(&span, "rpc.service").as_deref(),
        Some("shop.v1.Orders")
    );
    assert_eq!(attr_str(&span, "rpc.method").as_deref(), Some("Place"));
    assert_eq!(
        attr(&span, "rpc.grpc.status_code"),
        Some(opentelemetry::Value::I64(13))
    );
    assert_eq!(attr_str(&span, "correlation_id").as_deref(), Some("g-1"));
    assert!(is_error(&span));

    // NOT_FOUND (5) in trailers: recorded once the body is read, not a server error.
    let svc = GrpcServerLayer::new().layer(server(5, true));
    let resp = svc
        .oneshot(grpc_request("/shop.v1.Orders/Get"))
        .await
        .unwrap();
    assert!(
        cap.spans().iter().all(|s| s.name != "shop.v1.Orders/Get"),
        "span open while body streams"
    );
    let collected = resp.into_body().collect().await.unwrap();
    assert_eq!(collected.trailers().unwrap()["grpc-status"], "5");
    let span = cap.find("shop.v1.Orders/Get");
    assert_eq!(
        attr(&span, "rpc.grpc.status_code"),
        Some(opentelemetry::Value::I64(5))
    );
    assert!(!is_error(&span));

    // Health checks are not traced.
    let svc = GrpcServerLayer::new().layer(server(0, false));
    svc.oneshot(grpc_request("/grpc.health.v1.Health/Check"))
        .await
        .unwrap();
    assert!(cap.spans().iter().all(|s| !s.name.contains("Health")));
}

#[tokio::test]
async fn client_injects_metadata_and_non_ok_is_an_error() {
    support::global_propagator();
    let cap = capture();
    let client = GrpcClientLayer::new().layer(server(5, false));
    let resp = correlation::scope(correlation::CorrelationId::parse("g-2").unwrap(), async {
        let parent = tracing::info_span!("caller");
        let _e = parent.enter();
        client
            .oneshot(grpc_request("/shop.v1.Orders/Get"))
            .await
            .unwrap()
    })
    .await;
    let span = cap.find("shop.v1.Orders/Get");
    assert_parent(&span, &cap.find("caller"));
    assert_eq!(span.span_kind, SpanKind::Client);
    // The in-process fake runs in the caller's task, inside its correlation scope.
    assert_eq!(resp.headers()["seen-corr"], "g-2");
    let tp = resp.headers()["seen-tp"].to_str().unwrap();
    assert!(tp.contains(&span.span_context.span_id().to_string()));
    assert_eq!(attr_str(&span, "correlation_id").as_deref(), Some("g-2"));
    assert_eq!(
        attr_str(&span, "server.address").as_deref(),
        Some("grpc.local")
    );
    assert!(is_error(&span), "NOT_FOUND is an error for a client");
}

#[tokio::test]
async fn client_to_server_hop_is_one_trace() {
    let cap = capture();
    let stack = GrpcClientLayer::new().layer(GrpcServerLayer::new().layer(server(0, true)));
    let resp = correlation::scope(correlation::CorrelationId::parse("g-3").unwrap(), async {
        stack.oneshot(grpc_request("/a.B/C")).await.unwrap()
    })
    .await;
    assert_eq!(resp.headers()["seen-corr"], "g-3");
    resp.into_body().collect().await.unwrap();
    let spans: Vec<_> = cap
        .spans()
        .into_iter()
        .filter(|s| s.name == "a.B/C")
        .collect();
    assert_eq!(spans.len(), 2);
    let client = spans
        .iter()
        .find(|s| s.span_kind == SpanKind::Client)
        .unwrap();
    let server = spans
        .iter()
        .find(|s| s.span_kind == SpanKind::Server)
        .unwrap();
    assert_parent(server, client);
    assert_eq!(
        attr(server, "rpc.grpc.status_code"),
        Some(opentelemetry::Value::I64(0))
    );
    assert!(!is_error(server) && !is_error(client));
}
