//! One request across every kind of hop: a client → axum service A → (reqwest) axum service B →
//! (tonic) gRPC service C → (a header map) message consumer. Everything is exported over OTLP
//! into a `FakeCollector`, and logged as JSON into a buffer. All spans must share one trace,
//! every parent link must be right, and the correlation ID must be the same on every hop and
//! on every log line.
#![cfg(all(
    feature = "axum",
    feature = "reqwest",
    feature = "grpc",
    feature = "testing"
))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use sinew_tracing_kit::correlation::{self, CorrelationId};
use sinew_tracing_kit::grpc::{GrpcClientLayer, GrpcServerLayer};
use sinew_tracing_kit::http::{HttpClientLayer, HttpServerLayer};
use sinew_tracing_kit::init::{self, Config, LogFormat, Protocol, Sampler};
use sinew_tracing_kit::messaging::{self, Relation};
use sinew_tracing_kit::testing::{FakeCollector, RecordedSpan};
use tokio::sync::mpsc;
use tower::{ServiceBuilder, ServiceExt};

// ---- the gRPC service, written by hand (no protoc): demo.Orders/Get ----

#[derive(Clone, PartialEq, prost::Message)]
struct GetOrder {
    #[prost(string, tag = "1")]
    id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Order {
    #[prost(string, tag = "1")]
    correlation_id: String,
}

type Headers = HashMap<String, String>;

#[derive(Clone)]
struct Orders {
    outbox: mpsc::UnboundedSender<Headers>,
}

impl tonic::server::NamedService for Orders {
    const NAME: &'static str = "demo.Orders";
}

struct GetHandler(mpsc::UnboundedSender<Headers>);

impl tonic::server::UnaryService<GetOrder> for GetHandler {
    type Response = Order;
    type Future = std::future::Ready<Result<tonic::Response<Order>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<GetOrder>) -> Self::Future {
        let id = correlation::current()
            .map(|c| c.to_string())
            .unwrap_or_default();
        tracing::info!(order = %request.get_ref().id, "service C handles the gRPC call");
        // The message hop: publish the order event with the context in its headers.
        let span = messaging::producer_span("memory", "orders.events");
        let mut headers = Headers::new();
        span.in_scope(|| messaging::inject(&mut headers));
        self.0.send(headers).unwrap();
        std::future::ready(Ok(tonic::Response::new(Order { correlation_id: id })))
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for Orders {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Infallible>> + Send>,
    >;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let handler = GetHandler(self.outbox.clone());
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
            Ok(grpc.unary(handler, req).await)
        })
    }
}

// ---- the two HTTP services ----

#[derive(Clone)]
struct Downstream(String);

async fn service_a(State(Downstream(url)): State<Downstream>) -> String {
    tracing::info!("service A handles the request");
    let client = ServiceBuilder::new()
        .layer(HttpClientLayer::new())
        .service(reqwest::Client::new());
    let request = reqwest::Request::new(reqwest::Method::GET, url.parse().unwrap());
    let response = client.oneshot(request).await.unwrap();
    response.text().await.unwrap()
}

async fn service_b(State(Downstream(grpc)): State<Downstream>) -> String {
    tracing::info!("service B handles the request");
    let channel = tonic::transport::Endpoint::from_shared(grpc)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let channel = ServiceBuilder::new()
        .layer(GrpcClientLayer::new())
        .service(channel);
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await.unwrap();
    let reply: tonic::Response<Order> = client
        .unary(
            tonic::Request::new(GetOrder { id: "42".into() }),
            http::uri::PathAndQuery::from_static("/demo.Orders/Get"),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap();
    reply.into_inner().correlation_id
}

async fn serve_http(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

// ---- log capture ----

#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn lines(&self) -> Vec<serde_json::Value> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn one<'a>(spans: &'a [RecordedSpan], name: &str) -> &'a RecordedSpan {
    let found: Vec<_> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(
        found.len(),
        1,
        "expected one span named {name:?} among {:?}",
        names(spans)
    );
    found[0]
}

fn names(spans: &[RecordedSpan]) -> Vec<&str> {
    spans.iter().map(|s| s.name.as_str()).collect()
}

fn assert_child(spans: &[RecordedSpan], child: &str, parent: &str) {
    let (c, p) = (one(spans, child), one(spans, parent));
    assert_eq!(
        c.parent_span_id.as_deref(),
        Some(p.span_id.as_str()),
        "{child:?} should be a child of {parent:?}"
    );
}

#[tokio::test]
async fn one_trace_and_one_correlation_id_across_http_grpc_and_messaging() {
    let collector = FakeCollector::start().unwrap();
    let logs = Logs::default();
    let writer = logs.clone();
    let guard = init::init_scoped(
        Config::builder()
            .service_name("e2e")
            .endpoint(collector.endpoint())
            .protocol(Protocol::Grpc)
            .sampler(Sampler::AlwaysOn)
            .log_format(LogFormat::Json)
            .filter("info")
            .log_writer(move || writer.clone())
            .build()
            .unwrap(),
    )
    .unwrap();

    // Service C (gRPC) and the message consumer.
    let (outbox, mut inbox) = mpsc::unbounded_channel::<Headers>();
    let (consumed_tx, consumed) = tokio::sync::oneshot::channel::<Option<CorrelationId>>();
    tokio::spawn(async move {
        let headers = inbox.recv().await.unwrap();
        let id = messaging::correlation_id(&headers);
        let span =
            messaging::consumer_span_with("memory", "orders.events", &headers, Relation::Parent);
        correlation::sync_scope(id.clone().unwrap(), || {
            span.in_scope(|| tracing::info!("the consumer handles the event"));
        });
        drop(span);
        consumed_tx.send(id).unwrap();
    });
    let grpc_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc_addr = grpc_listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(GrpcServerLayer::new())
            .add_service(Orders { outbox })
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(grpc_listener)),
    );

    // Services B and A.
    let b = serve_http(
        Router::new()
            .route("/orders/{id}", get(service_b))
            .with_state(Downstream(format!("http://{grpc_addr}")))
            .layer(HttpServerLayer::new()),
    )
    .await;
    let a = serve_http(
        Router::new()
            .route("/checkout/{id}", get(service_a))
            .with_state(Downstream(format!("{b}/orders/42")))
            .layer(HttpServerLayer::new()),
    )
    .await;

    // The client: a root span and a correlation ID of its own.
    let id = CorrelationId::parse("order-flow-7").unwrap();
    let client = ServiceBuilder::new()
        .layer(HttpClientLayer::new())
        .service(reqwest::Client::new());
    let root = tracing::info_span!("client journey");
    let echoed = {
        let request = reqwest::Request::new(
            reqwest::Method::GET,
            format!("{a}/checkout/42").parse().unwrap(),
        );
        let fut = correlation::scope(id.clone(), async {
            tracing::info!("the client starts");
            client.oneshot(request).await.unwrap().text().await.unwrap()
        });
        tracing::Instrument::instrument(fut, root.clone()).await
    };
    assert_eq!(
        echoed,
        id.as_str(),
        "service C saw the client's correlation id"
    );
    assert_eq!(
        consumed.await.unwrap(),
        Some(id.clone()),
        "the consumer too"
    );
    drop(root);

    assert!(guard.shutdown().is_flushed());
    let spans = collector.spans(9, Duration::from_secs(10)).await;

    // One trace.
    let trace = &one(&spans, "client journey").trace_id;
    for s in &spans {
        assert_eq!(&s.trace_id, trace, "span {:?} is in another trace", s.name);
    }
    // The parent chain, hop by hop.
    let journey = one(&spans, "client journey");
    let client_spans: Vec<_> = spans.iter().filter(|s| s.name == "GET").collect();
    assert_eq!(
        client_spans.len(),
        2,
        "two reqwest client spans: {:?}",
        names(&spans)
    );
    let client_to_a = client_spans
        .iter()
        .find(|s| s.parent_span_id.as_deref() == Some(journey.span_id.as_str()))
        .expect("the client's span is a child of the journey");
    let a_server = one(&spans, "GET /checkout/{id}");
    assert_eq!(
        a_server.parent_span_id.as_deref(),
        Some(client_to_a.span_id.as_str())
    );
    let b_server = one(&spans, "GET /orders/{id}");
    let a_to_b = client_spans
        .iter()
        .find(|s| s.parent_span_id.as_deref() == Some(a_server.span_id.as_str()))
        .expect("A's client span is a child of A's server span");
    assert_eq!(
        b_server.parent_span_id.as_deref(),
        Some(a_to_b.span_id.as_str())
    );
    let grpc_spans: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "demo.Orders/Get")
        .collect();
    assert_eq!(
        grpc_spans.len(),
        2,
        "a gRPC client and server span: {:?}",
        names(&spans)
    );
    let grpc_client = grpc_spans
        .iter()
        .find(|s| s.parent_span_id.as_deref() == Some(b_server.span_id.as_str()))
        .expect("the gRPC client span is a child of B's server span");
    let grpc_server = grpc_spans
        .iter()
        .find(|s| s.parent_span_id.as_deref() == Some(grpc_client.span_id.as_str()))
        .expect("the gRPC server span is a child of the gRPC client span");
    assert_eq!(grpc_server.attribute("rpc.system"), Some("grpc"));
    assert_eq!(grpc_server.attribute("rpc.grpc.status_code"), Some("0"));
    let producer = one(&spans, "send orders.events");
    assert_eq!(
        producer.parent_span_id.as_deref(),
        Some(grpc_server.span_id.as_str())
    );
    assert_child(&spans, "process orders.events", "send orders.events");

    // One correlation ID: on every server span, and on every log line.
    for s in [a_server, b_server, *grpc_server] {
        assert_eq!(
            s.attribute("correlation_id"),
            Some(id.as_str()),
            "span {:?}",
            s.name
        );
    }
    let lines = logs.lines();
    let messages = [
        "the client starts",
        "service A handles the request",
        "service B handles the request",
        "service C handles the gRPC call",
        "the consumer handles the event",
    ];
    for message in messages {
        let line = lines
            .iter()
            .find(|l| l.to_string().contains(message))
            .unwrap_or_else(|| panic!("no log line {message:?} in {lines:?}"));
        let text = line.to_string();
        assert!(
            text.contains(id.as_str()),
            "log line without the correlation id: {text}"
        );
        assert!(
            text.contains(trace.as_str()),
            "log line without the trace id: {text}"
        );
    }
}
