#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! HTTP server and client layers, and two axum services calling each other on loopback.
#![cfg(all(feature = "axum", feature = "reqwest"))]

#[path = "../support/mod.rs"]
mod support;

use std::convert::Infallible;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::routing::get;
use http::{Request, Response, StatusCode};
use opentelemetry::trace::SpanKind;
use sinew_tracing_kit::correlation;
use sinew_tracing_kit::http::{HttpClient, HttpClientLayer, HttpClientMiddleware, HttpServerLayer};
use support::{assert_parent, attr, attr_str, capture, is_error, is_root};
use tower::{ServiceBuilder, ServiceExt};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

fn app() -> Router {
    Router::new()
        .route("/users/{id}", get(|| async { "user" }))
        .route(
            "/fail",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .route("/missing", get(|| async { StatusCode::NOT_FOUND }))
        .route("/health", get(|| async { "ok" }))
        .route(
            "/corr",
            get(|| async {
                correlation::current()
                    .map(|c| c.to_string())
                    .unwrap_or_default()
            }),
        )
        .layer(HttpServerLayer::new())
}

async fn send(req: Request<Body>) -> Response<Body> {
    app().oneshot(req).await.unwrap()
}

async fn body_string(resp: Response<Body>) -> String {
    use http_body_util::BodyExt;
    String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
}

#[tokio::test]
async fn server_and_client_address_come_from_host_and_forwarded_for() {
    support::global_propagator();
    let cap = capture();
    let resp = send(
        Request::get("/users/7")
            .header("host", "api.internal:9000")
            .header("x-forwarded-for", " 203.0.113.9 , 10.0.0.1")
            .header("user-agent", "first")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let span = cap.find("GET /users/{id}");
    assert_eq!(
        attr_str(&span, "server.address").as_deref(),
        Some("api.internal")
    );
    assert_eq!(
        attr(&span, "server.port"),
        Some(opentelemetry::Value::I64(9000))
    );
    assert_eq!(
        attr_str(&span, "client.address").as_deref(),
        Some("203.0.113.9")
    );
    assert_eq!(
        attr_str(&span, "user_agent.original").as_deref(),
        Some("first")
    );
}

#[tokio::test]
async fn server_span_continues_the_remote_trace_with_route_name() {
    support::global_propagator();
    let cap = capture();
    let resp = send(
        Request::get("http://example.com:8080/users/42?x=1")
            .header("traceparent", format!("00-{TRACE}-{PARENT}-01"))
            .header("user-agent", "test-agent")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let span = cap.find("GET /users/{id}");
    assert_eq!(span.span_kind, SpanKind::Server);
    assert_eq!(span.span_context.trace_id().to_string(), TRACE);
    assert_eq!(span.parent_span_id.to_string(), PARENT);
    assert!(span.parent_span_is_remote);
    assert_eq!(
        attr_str(&span, "http.request.method").as_deref(),
        Some("GET")
    );
    assert_eq!(
        attr_str(&span, "http.route").as_deref(),
        Some("/users/{id}")
    );
    assert_eq!(attr_str(&span, "url.path").as_deref(), Some("/users/42"));
    assert_eq!(attr_str(&span, "url.scheme").as_deref(), Some("http"));
    assert_eq!(
        attr_str(&span, "server.address").as_deref(),
        Some("example.com")
    );
    assert_eq!(
        attr_str(&span, "user_agent.original").as_deref(),
        Some("test-agent")
    );
    assert_eq!(
        attr(&span, "http.response.status_code"),
        Some(opentelemetry::Value::I64(200))
    );
    assert!(!is_error(&span));
}

#[tokio::test]
async fn server_errors_only_for_5xx_and_health_is_filtered() {
    let cap = capture();
    send(Request::get("/fail").body(Body::empty()).unwrap()).await;
    send(Request::get("/missing").body(Body::empty()).unwrap()).await;
    send(Request::get("/health").body(Body::empty()).unwrap()).await;
    assert!(is_error(&cap.find("GET /fail")));
    let missing = cap.find("GET /missing");
    assert!(!is_error(&missing));
    assert_eq!(
        attr(&missing, "http.response.status_code"),
        Some(opentelemetry::Value::I64(404))
    );
    assert_eq!(cap.spans().len(), 2, "health must not be traced");
    // Without a traceparent the server span is a root.
    assert!(is_root(&missing));
}

#[tokio::test]
async fn correlation_id_accepted_echoed_generated_never_overwritten() {
    let cap = capture();
    // Accepted from x-correlation-id, scoped for the handler, echoed.
    let resp = send(
        Request::get("/corr")
            .header("x-correlation-id", "abc-123")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(resp.headers()["x-correlation-id"], "abc-123");
    assert_eq!(body_string(resp).await, "abc-123");
    assert_eq!(
        attr_str(&cap.find("GET /corr"), "correlation_id").as_deref(),
        Some("abc-123")
    );

    // Accepted from x-request-id.
    let resp = send(
        Request::get("/corr")
            .header("x-request-id", "req-9")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(resp.headers()["x-correlation-id"], "req-9");

    // From baggage when no header.
    let resp = send(
        Request::get("/corr")
            .header("baggage", "correlation_id=from-baggage")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(body_string(resp).await, "from-baggage");

    // Generated (a UUIDv7) when absent.
    let resp = send(Request::get("/corr").body(Body::empty()).unwrap()).await;
    let echoed = resp.headers()["x-correlation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(echoed.len(), 36);
    assert_eq!(body_string(resp).await, echoed);

    // A handler setting its own header is not overwritten.
    let own = Router::new()
        .route(
            "/own",
            get(|| async { ([("x-correlation-id", "handler-set")], "x") }),
        )
        .layer(HttpServerLayer::new());
    let resp = own
        .oneshot(
            Request::get("/own")
                .header("x-correlation-id", "incoming")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-correlation-id"], "handler-set");
}

#[tokio::test]
async fn correlation_id_extractor_and_optional_request_header() {
    use sinew_tracing_kit::correlation::CorrelationId;
    let _cap = capture();
    // The handler sees the ID through the extractor, and (by default) the request carries
    // no generated header.
    let handler = |id: CorrelationId, req: Request<Body>| async move {
        let header = req
            .headers()
            .get("x-correlation-id")
            .map(|v| v.to_str().unwrap().to_owned());
        format!("{id}|{}", header.unwrap_or_default())
    };
    let default = Router::new()
        .route("/id", get(handler))
        .layer(HttpServerLayer::new());
    let resp = default
        .clone()
        .oneshot(Request::get("/id").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let echoed = resp.headers()["x-correlation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(body_string(resp).await, format!("{echoed}|"));

    // Asked for: the generated ID is also written into the request.
    let with_header = Router::new()
        .route("/id", get(handler))
        .layer(HttpServerLayer::new().request_header(true));
    let resp = with_header
        .oneshot(Request::get("/id").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let echoed = resp.headers()["x-correlation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(body_string(resp).await, format!("{echoed}|{echoed}"));

    // An incoming ID is kept as it is, in the request and for the extractor.
    let resp = default
        .clone()
        .oneshot(
            Request::get("/id")
                .header("x-request-id", "in-1")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-correlation-id"], "in-1");
    assert_eq!(body_string(resp).await, "in-1|");

    // Without the layer: `CorrelationId` is rejected with a 500 naming the fix, and
    // `Option<CorrelationId>` is `None`.
    let bare = Router::new()
        .route(
            "/id",
            get(|id: CorrelationId| async move { id.to_string() }),
        )
        .route(
            "/maybe",
            get(|id: Option<CorrelationId>| async move { format!("{id:?}") }),
        );
    let resp = bare
        .clone()
        .oneshot(Request::get("/id").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body_string(resp).await.contains("HttpServerLayer"));
    let resp = bare
        .oneshot(Request::get("/maybe").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(body_string(resp).await, "None");
}

#[tokio::test]
async fn many_correlation_header_names_are_all_read_in_order() {
    let _cap = capture();
    // More names than the layer's one-pass scan covers: the later ones are looked up.
    let names = ["x-a", "x-b", "x-c", "x-d", "x-e", "x-f"].map(http::HeaderName::from_static);
    let app = Router::new()
        .route(
            "/c",
            get(|| async { correlation::current().unwrap().to_string() }),
        )
        .layer(HttpServerLayer::new().correlation_headers(names));
    for (header, value, expected) in [
        ("x-f", "six", "six"),
        ("x-e", "bad id", ""),
        ("x-b", "two", "two"),
    ] {
        let resp = app
            .clone()
            .oneshot(
                Request::get("/c")
                    .header(header, value)
                    .header("x-f", "last")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let body = body_string(resp).await;
        match (header, expected) {
            // Only x-f (twice: the first value wins).
            ("x-f", _) => assert_eq!(body, "six"),
            // An invalid x-e is skipped; x-f is next.
            ("x-e", _) => assert_eq!(body, "last"),
            _ => assert_eq!(body, expected),
        }
    }
}

#[tokio::test]
async fn invalid_correlation_ids_are_replaced() {
    let _cap = capture();
    let long = "x".repeat(129);
    for bad in ["bad\tid", "with space", long.as_str()] {
        let value = http::HeaderValue::from_bytes(bad.as_bytes()).unwrap();
        let resp = send(
            Request::get("/corr")
                .header("x-correlation-id", value)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        let echoed = resp.headers()["x-correlation-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_ne!(echoed, bad);
        assert!(uuid_like(&echoed), "{echoed}");
    }
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.matches('-').count() == 4
}

#[tokio::test]
async fn client_layer_injects_its_own_span_and_the_correlation_id() {
    support::global_propagator();
    let cap = capture();
    let svc = tower::service_fn(|req: Request<Body>| async move {
        let tp = req.headers()["traceparent"].to_str().unwrap().to_owned();
        let corr = req
            .headers()
            .get("x-correlation-id")
            .map(|v| v.to_str().unwrap().to_owned());
        let baggage = req
            .headers()
            .get("baggage")
            .map(|v| v.to_str().unwrap().to_owned());
        Ok::<_, Infallible>(
            Response::builder()
                .status(503)
                .header("tp", tp)
                .header("corr", corr.unwrap_or_default())
                .header("bg", baggage.unwrap_or_default())
                .body(Body::empty())
                .unwrap(),
        )
    });
    let client = ServiceBuilder::new()
        .layer(HttpClientLayer::new())
        .service(svc);
    let id = correlation::CorrelationId::parse("cli-1").unwrap();
    let resp = correlation::scope(id, async {
        let parent = tracing::info_span!("caller");
        let _e = parent.enter();
        client
            .oneshot(
                Request::get("http://user:pw@api.local:9000/x")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap()
    })
    .await;
    let span = cap.find("GET");
    let caller = cap.find("caller");
    assert_parent(&span, &caller);
    assert_eq!(span.span_kind, SpanKind::Client);
    let tp = resp.headers()["tp"].to_str().unwrap();
    assert_eq!(
        tp,
        format!(
            "00-{}-{}-01",
            span.span_context.trace_id(),
            span.span_context.span_id()
        )
    );
    assert_eq!(resp.headers()["corr"], "cli-1");
    assert_eq!(resp.headers()["bg"], "correlation_id=cli-1");
    assert_eq!(
        attr_str(&span, "url.full").as_deref(),
        Some("http://api.local:9000/x")
    );
    assert_eq!(
        attr_str(&span, "server.address").as_deref(),
        Some("api.local")
    );
    assert_eq!(
        attr(&span, "server.port"),
        Some(opentelemetry::Value::I64(9000))
    );
    assert!(is_error(&span), "503 is an error for a client");
}

#[derive(Clone)]
struct Downstream {
    client: reqwest_middleware::ClientWithMiddleware,
    tower_client: HttpClient<reqwest::Client>,
    url: String,
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test]
async fn two_services_on_loopback_share_one_trace_and_correlation_id() {
    support::global_propagator();
    let cap = capture();

    // Service B: returns the correlation ID it sees.
    let b = Router::new()
        .route(
            "/b/{n}",
            get(|| async {
                tracing::info_span!("b-work").in_scope(|| {});
                correlation::current()
                    .map(|c| c.to_string())
                    .unwrap_or_default()
            }),
        )
        .layer(HttpServerLayer::new());
    let b_url = serve(b).await;

    // Service A: calls B through the middleware and through the tower layer.
    let a = Router::new()
        .route(
            "/a",
            get(|State(d): State<Downstream>| async move {
                let via_mw = d
                    .client
                    .get(format!("{}/b/1", d.url))
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                let req = reqwest::Request::new(
                    reqwest::Method::GET,
                    format!("{}/b/2", d.url).parse().unwrap(),
                );
                let via_layer = d
                    .tower_client
                    .oneshot(req)
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                format!("{via_mw},{via_layer}")
            }),
        )
        .with_state(Downstream {
            client: reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
                .with(HttpClientMiddleware::new())
                .build(),
            tower_client: HttpClientLayer::new().layer_client(),
            url: b_url,
        })
        .layer(HttpServerLayer::new());
    let a_url = serve(a).await;

    let resp = reqwest::Client::new()
        .get(format!("{a_url}/a"))
        .header("x-correlation-id", "e2e-1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-correlation-id"], "e2e-1");
    assert_eq!(resp.text().await.unwrap(), "e2e-1,e2e-1");

    let spans = cap.spans();
    let a_span = cap.find("GET /a");
    assert!(is_root(&a_span));
    let clients: Vec<_> = spans.iter().filter(|s| s.name == "GET").collect();
    let servers: Vec<_> = spans.iter().filter(|s| s.name == "GET /b/{n}").collect();
    assert_eq!(clients.len(), 2);
    assert_eq!(servers.len(), 2);
    for s in &spans {
        assert_eq!(
            s.span_context.trace_id(),
            a_span.span_context.trace_id(),
            "{}",
            s.name
        );
        if s.name.starts_with("GET") {
            assert_eq!(
                attr_str(s, "correlation_id").as_deref(),
                Some("e2e-1"),
                "{}",
                s.name
            );
        }
    }
    for c in &clients {
        assert_parent(c, &a_span);
        let server = servers
            .iter()
            .find(|s| s.parent_span_id == c.span_context.span_id())
            .expect("a server span under each client span");
        assert!(server.parent_span_is_remote);
    }
    for w in spans.iter().filter(|s| s.name == "b-work") {
        assert!(
            servers
                .iter()
                .any(|s| s.span_context.span_id() == w.parent_span_id)
        );
    }
}

trait LayerClient {
    fn layer_client(self) -> HttpClient<reqwest::Client>;
}

impl LayerClient for HttpClientLayer {
    fn layer_client(self) -> HttpClient<reqwest::Client> {
        tower::Layer::layer(&self, reqwest::Client::new())
    }
}
