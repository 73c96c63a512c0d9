#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Gateway security: authentication, rate limit, body limit, security headers, dead and
//! open-circuit upstreams, aggregated health; and a proptest fuzzing paths and headers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::routing::{any, get};
use axum::{Json, Router};
use http::HeaderMap;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sinew_reference_system::discovery::Directory;
use sinew_reference_system::gateway::auth::Claims;
use sinew_reference_system::gateway::security::HEADERS;
use sinew_reference_system::gateway::{self, GatewayConfig};
use sinew_reference_system::http::Server;
use tokio::net::TcpListener;

const SECRET: &[u8] = b"test-secret-of-enough-length-123";

fn local() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn config() -> GatewayConfig {
    GatewayConfig {
        jwt_secret: SECRET.to_vec(),
        rate_limit: 1000,
        body_limit: 1024,
        upstream_timeout: Duration::from_millis(300),
        ..GatewayConfig::default()
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token_with(alg: Algorithm, secret: &[u8], exp: u64) -> String {
    let claims = Claims {
        sub: "alice".to_owned(),
        role: "admin".to_owned(),
        exp,
        iat: now(),
    };
    jsonwebtoken::encode(
        &Header::new(alg),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

/// Unpadded base64url, for hand-made tokens.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

fn token() -> String {
    token_with(Algorithm::HS256, SECRET, now() + 600)
}

/// An upstream that echoes the headers it received, counting calls.
async fn echo(calls: Arc<AtomicUsize>) -> Server {
    let router = Router::new()
        .route(
            "/{*rest}",
            any(move |headers: HeaderMap| {
                let calls = Arc::clone(&calls);
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    let headers: serde_json::Map<String, Value> = headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or_default())))
                        .collect();
                    Json(json!({ "headers": headers }))
                }
            }),
        )
        .route("/health", get(|| async { Json(json!({ "status": "ok" })) }));
    Server::start(local(), router).await.unwrap()
}

/// An address nothing listens on.
async fn dead_url() -> String {
    let listener = TcpListener::bind(local()).await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    url
}

struct Fixture {
    gateway: Server,
    registry: Directory,
    calls: Arc<AtomicUsize>,
    upstreams: Vec<Server>,
    http: reqwest::Client,
}

impl Fixture {
    async fn new(config: GatewayConfig) -> Self {
        let calls = Arc::new(AtomicUsize::new(0));
        let registry = Directory::new();
        let mut upstreams = Vec::new();
        for service in ["user", "post", "comment"] {
            let server = echo(Arc::clone(&calls)).await;
            registry.register(service, &format!("{service}-1"), &server.url());
            upstreams.push(server);
        }
        let listener = TcpListener::bind(local()).await.unwrap();
        let gateway =
            Server::from_listener(listener, gateway::router(registry.clone(), config).unwrap())
                .unwrap();
        Self {
            gateway,
            registry,
            calls,
            upstreams,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gateway.url())
    }

    async fn get(&self, path: &str, auth: Option<&str>) -> reqwest::Response {
        let mut request = self.http.get(self.url(path));
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        request.send().await.unwrap()
    }
}

async fn error_of(response: reqwest::Response) -> String {
    let body: Value = response.json().await.unwrap();
    body["error"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn missing_and_bad_tokens_are_401() {
    let f = Fixture::new(config()).await;
    for auth in [None, Some(""), Some("Bearer "), Some("Bearer    ")] {
        let r = f.get("/api/users/1", auth).await;
        assert_eq!(r.status(), 401, "{auth:?}");
        assert_eq!(error_of(r).await, "No token provided", "{auth:?}");
    }
    let expired = token_with(Algorithm::HS256, SECRET, now() - 10);
    let wrong_signature = token_with(
        Algorithm::HS256,
        b"another-secret-another-secret-12",
        now() + 600,
    );
    let other_alg = token_with(Algorithm::HS512, SECRET, now() + 600);
    // alg none: header and claims, no signature.
    let b64 = |v: Value| base64url(&serde_json::to_vec(&v).unwrap());
    let none = format!(
        "{}.{}.",
        b64(json!({ "alg": "none", "typ": "JWT" })),
        b64(json!({ "sub": "alice", "role": "admin", "exp": now() + 600, "iat": now() }))
    );
    let valid = token();
    let mut tampered = valid.clone();
    tampered.pop();
    tampered.push(if valid.ends_with('A') { 'B' } else { 'A' });
    for (what, auth) in [
        ("malformed", "Bearer not.a.jwt".to_owned()),
        ("garbage", "Bearer abc".to_owned()),
        ("basic", "Basic YWxpY2U6c2VjcmV0".to_owned()),
        ("expired", format!("Bearer {expired}")),
        ("wrong signature", format!("Bearer {wrong_signature}")),
        ("tampered", format!("Bearer {tampered}")),
        ("HS512", format!("Bearer {other_alg}")),
        ("alg none", format!("Bearer {none}")),
    ] {
        let r = f.get("/api/users/1", Some(&auth)).await;
        assert_eq!(r.status(), 401, "{what}");
        assert_eq!(error_of(r).await, "Invalid token", "{what}");
    }
    assert_eq!(
        f.calls.load(Ordering::SeqCst),
        0,
        "no bad request reached an upstream"
    );
}

#[tokio::test]
async fn a_valid_token_forwards_identity_and_correlation() {
    let f = Fixture::new(config()).await;
    let r = f
        .http
        .get(f.url("/api/users/42?x=1"))
        .bearer_auth(token())
        .header("x-user-id", "mallory")
        .header("x-user-role", "root")
        .header("x-correlation-id", "corr-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-correlation-id"], "corr-123");
    let body: Value = r.json().await.unwrap();
    let headers = &body["headers"];
    assert_eq!(
        headers["x-user-id"], "alice",
        "the client's X-User-ID is replaced"
    );
    assert_eq!(headers["x-user-role"], "admin");
    assert_eq!(headers["x-correlation-id"], "corr-123");
    assert!(
        headers.get("authorization").is_none(),
        "the token stays at the gateway"
    );
}

#[tokio::test]
async fn the_rate_limit_answers_429_with_retry_after() {
    let f = Fixture::new(GatewayConfig {
        rate_limit: 3,
        ..config()
    })
    .await;
    let auth = format!("Bearer {}", token());
    for _ in 0..3 {
        assert_eq!(f.get("/api/users/1", Some(&auth)).await.status(), 200);
    }
    let r = f.get("/api/users/1", Some(&auth)).await;
    assert_eq!(r.status(), 429);
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=15 * 60).contains(&retry_after), "{retry_after}");
    for (name, _) in HEADERS {
        assert!(r.headers().contains_key(name), "{name} on a 429");
    }
    // Unauthenticated floods count too, and the limit is on /api only.
    assert_eq!(f.get("/api/users/1", None).await.status(), 429);
    assert_eq!(f.get("/health", None).await.status(), 200);
}

#[tokio::test]
async fn an_oversized_body_is_413() {
    let f = Fixture::new(config()).await;
    let r = f
        .http
        .post(f.url("/api/users"))
        .bearer_auth(token())
        .body(vec![b'a'; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let ok = f
        .http
        .post(f.url("/api/users"))
        .bearer_auth(token())
        .body(vec![b'a'; 512])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn every_security_header_is_on_every_response() {
    let f = Fixture::new(config()).await;
    let auth = format!("Bearer {}", token());
    for r in [
        f.get("/health", None).await,
        f.get("/api/users/1", None).await,
        f.get("/api/users/1", Some(&auth)).await,
        f.get("/nowhere", None).await,
    ] {
        for (name, value) in HEADERS {
            assert_eq!(
                r.headers().get(name).map(|v| v.to_str().unwrap()),
                Some(value),
                "{name} on {}",
                r.url()
            );
        }
        assert!(!r.headers().contains_key("x-powered-by"));
    }
}

#[tokio::test]
async fn a_dead_upstream_is_503_within_the_timeout() {
    let f = Fixture::new(config()).await;
    f.registry.deregister("user", "user-1");
    f.registry.register("user", "user-dead", &dead_url().await);
    // A client timeout far above the gateway's 300 ms upstream timeout: the 503 comes from
    // the gateway, not from giving up.
    let r = f
        .get("/api/users/1", Some(&format!("Bearer {}", token())))
        .await;
    assert_eq!(r.status(), 503);
    assert_eq!(error_of(r).await, "Service unavailable");

    // An upstream that accepts but never answers is cut off by the upstream timeout.
    let hanging = TcpListener::bind(local()).await.unwrap();
    let url = format!("http://{}", hanging.local_addr().unwrap());
    f.registry.register("post", "post-hanging", &url);
    f.registry.deregister("post", "post-1");
    let r = f
        .get("/api/posts", Some(&format!("Bearer {}", token())))
        .await;
    assert_eq!(r.status(), 503);
    drop(hanging);
}

#[tokio::test]
async fn an_open_circuit_is_503_without_calling_the_upstream() {
    let f = Fixture::new(config()).await;
    let instance = f.registry.instances("user").await.pop().unwrap();
    instance.breaker.force_open();
    let r = f
        .get("/api/users/1", Some(&format!("Bearer {}", token())))
        .await;
    assert_eq!(r.status(), 503);
    assert_eq!(error_of(r).await, "Service unavailable");
    assert_eq!(f.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn health_is_503_when_one_service_is_down() {
    let mut f = Fixture::new(config()).await;
    let r = f.get("/health", None).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["services"].as_array().unwrap().len(), 3);

    let post = f.upstreams.remove(1);
    post.stop().await;
    let r = f.get("/health", None).await;
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    let states: Vec<(String, String)> = body["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_owned(),
                s["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        states.contains(&("post".to_owned(), "unhealthy".to_owned())),
        "{states:?}"
    );
    assert!(
        states.contains(&("user".to_owned(), "healthy".to_owned())),
        "{states:?}"
    );
}

mod fuzz {
    use std::net::SocketAddr;

    use axum::body::Body;
    use axum::extract::ConnectInfo;
    use proptest::prelude::*;
    use tower::ServiceExt as _;

    use super::*;

    fn header_name() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("authorization".to_owned()),
            Just("x-user-id".to_owned()),
            Just("x-correlation-id".to_owned()),
            Just("traceparent".to_owned()),
            Just("baggage".to_owned()),
            Just("content-type".to_owned()),
            Just("content-length".to_owned()),
            Just("host".to_owned()),
            "[a-z][a-z0-9-]{0,20}",
        ]
    }

    fn header_value() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(b"Bearer ".to_vec()),
            "Bearer [A-Za-z0-9._-]{0,80}".prop_map(String::into_bytes),
            proptest::collection::vec(0x20u8..0x7f, 0..120),
            proptest::collection::vec(proptest::arbitrary::any::<u8>(), 0..40),
        ]
    }

    fn path() -> impl Strategy<Value = String> {
        let segment = prop_oneof![
            Just("api".to_owned()),
            Just("users".to_owned()),
            Just("posts".to_owned()),
            Just("user-dashboard".to_owned()),
            Just("health".to_owned()),
            Just("auth".to_owned()),
            Just("token".to_owned()),
            Just("..".to_owned()),
            Just("%2e%2e".to_owned()),
            Just("%00".to_owned()),
            "[A-Za-z0-9%._~-]{0,12}",
        ];
        (
            proptest::collection::vec(segment, 0..6),
            "(\\?[a-z=&%0-9]{0,20})?",
        )
            .prop_map(|(segments, query)| format!("/{}{query}", segments.join("/")))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        #[test]
        fn no_path_or_header_gives_a_500(
            method in prop_oneof![Just("GET"), Just("POST"), Just("PUT"), Just("DELETE"), Just("PATCH")],
            path in path(),
            headers in proptest::collection::vec((header_name(), header_value()), 0..6),
            body in proptest::collection::vec(proptest::arbitrary::any::<u8>(), 0..64),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let registry = Directory::new();
                let upstream = echo(Arc::new(AtomicUsize::new(0))).await;
                registry.register("user", "user-1", &upstream.url());
                registry.register("post", "post-1", &dead_url().await);
                let router = gateway::router(registry, config()).unwrap();
                let mut request = http::Request::builder().method(method).uri(&path);
                for (name, value) in &headers {
                    if let (Ok(n), Ok(v)) = (http::HeaderName::try_from(name.as_str()), http::HeaderValue::from_bytes(value)) {
                        request = request.header(n, v);
                    }
                }
                let Ok(mut request) = request.body(Body::from(body.clone())) else { return };
                request.extensions_mut().insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 1], 1234))));
                let response = router.oneshot(request).await.unwrap();
                assert!(
                    !response.status().is_server_error() || response.status() == 503,
                    "{method} {path} {headers:?} -> {}",
                    response.status()
                );
                upstream.stop().await;
            });
        }
    }
}
