//! The API gateway (axum): helmet's security headers, a per-client-IP rate limit and Bearer
//! JWT authentication on `/api`, proxies to the user, post, comment and order services
//! (load-balanced, one circuit breaker per upstream instance), the user dashboard
//! aggregation, the aggregated `/health`, a request body limit and the demo token endpoint.

pub mod auth;
pub mod security;

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::time::Duration;

use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router, middleware};
use sinew_resilience::error::{BoxError, RateLimited};
use sinew_resilience::rate_limit::{KeyedRateLimitLayer, RateLimitConfig};
use sinew_tracing_kit::http::HttpServerLayer;
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;

use self::auth::Jwt;
use crate::discovery::Directory;
use crate::http::error_json;
use crate::upstream::Upstreams;

/// The gateway's settings.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The HS256 secret.
    pub jwt_secret: Vec<u8>,
    /// Token lifetime.
    pub token_ttl: Duration,
    /// Requests per client IP per `rate_window` on `/api`.
    pub rate_limit: u32,
    /// The rate-limit window.
    pub rate_window: Duration,
    /// The largest request body, in bytes.
    pub body_limit: usize,
    /// Per-call timeout towards upstreams.
    pub upstream_timeout: Duration,
    /// Per-service timeout of `/health`.
    pub health_timeout: Duration,
}

impl Default for GatewayConfig {
    /// A random secret, 15-minute tokens, 100 requests per 15 minutes, 1 MiB bodies, 5 s
    /// upstream timeout, 2 s health timeout.
    fn default() -> Self {
        Self {
            jwt_secret: (0..32).map(|_| fastrand::u8(..)).collect(),
            token_ttl: Duration::from_secs(15 * 60),
            rate_limit: 100,
            rate_window: Duration::from_secs(15 * 60),
            body_limit: 1024 * 1024,
            upstream_timeout: Duration::from_secs(5),
            health_timeout: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Clone)]
struct Gateway {
    upstreams: Upstreams,
    health: reqwest::Client,
    config: GatewayConfig,
}

/// The gateway's router, serving with `ConnectInfo<SocketAddr>` (see
/// [`Server::from_listener`](crate::http::Server::from_listener)).
///
/// # Errors
///
/// When the rate-limit settings are invalid (zero requests or a zero window).
pub fn router(registry: Directory, config: GatewayConfig) -> Result<Router, BoxError> {
    let jwt = Jwt::new(&config.jwt_secret, config.token_ttl);
    let burst = NonZeroU32::new(config.rate_limit).ok_or("the rate limit must be at least 1")?;
    let period = config
        .rate_window
        .checked_div(config.rate_limit)
        .unwrap_or_default();
    let limit = RateLimitConfig::builder()
        .period(period)
        .burst(burst)
        .build()?;
    let limiter = KeyedRateLimitLayer::new(limit, client_ip);
    {
        // Forget idle clients now and then, so an attacker's many addresses do not pile up.
        let limiter = limiter.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                limiter.retain_recent();
            }
        });
    }
    let state = Gateway {
        upstreams: Upstreams::new(registry, config.upstream_timeout),
        health: reqwest::Client::builder()
            .timeout(config.health_timeout)
            .build()
            .unwrap_or_default(),
        config: config.clone(),
    };

    let api = Router::new()
        .route("/users", any(proxy))
        .route("/users/{*rest}", any(proxy))
        .route("/posts", any(proxy))
        .route("/posts/{*rest}", any(proxy))
        .route("/comments", any(proxy))
        .route("/comments/{*rest}", any(proxy))
        .route("/orders", any(proxy))
        .route("/orders/{*rest}", any(proxy))
        .route("/user-dashboard/{user_id}", get(dashboard))
        .with_state(state.clone())
        .layer(middleware::from_fn_with_state(jwt.clone(), auth::require))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(rate_limited))
                .layer(limiter)
                .map_err(|e: Infallible| -> BoxError { match e {} }),
        );

    Ok(Router::new()
        .nest("/api", api)
        .route("/health", get(health).with_state(state))
        .route("/auth/token", post(auth::token).with_state(jwt))
        .layer(HttpServerLayer::new())
        .layer(RequestBodyLimitLayer::new(config.body_limit))
        .layer(middleware::from_fn(security::headers)))
}

fn client_ip(request: &Request) -> IpAddr {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

async fn rate_limited(error: BoxError) -> Response {
    match error.downcast_ref::<RateLimited>() {
        Some(limited) => {
            let secs = limited.retry_after().as_secs_f64().ceil().max(1.0);
            let mut response = error_json(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests from this IP",
            );
            if let Ok(value) = HeaderValue::from_str(&format!("{secs:.0}")) {
                response
                    .headers_mut()
                    .insert(http::header::RETRY_AFTER, value);
            }
            response
        }
        None => unavailable(),
    }
}

fn unavailable() -> Response {
    error_json(StatusCode::SERVICE_UNAVAILABLE, "Service unavailable")
}

/// Headers never forwarded in either direction (hop-by-hop, and what the gateway consumed).
const SKIP: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "host",
    "content-length",
    "authorization",
];

fn service_of(path: &str) -> Option<&'static str> {
    let first = path.trim_start_matches('/').split('/').next()?;
    match first {
        "users" => Some("user"),
        "posts" => Some("post"),
        "comments" => Some("comment"),
        "orders" => Some("order"),
        _ => None,
    }
}

/// `/api/{users,posts,comments,orders}/*` → the service's `/{users,...}/*`.
async fn proxy(State(gw): State<Gateway>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let Some(service) = service_of(parts.uri.path()) else {
        return error_json(StatusCode::NOT_FOUND, "Not found");
    };
    let Ok(body) = axum::body::to_bytes(body, gw.config.body_limit).await else {
        return error_json(StatusCode::PAYLOAD_TOO_LARGE, "Payload too large");
    };
    let mut headers = HeaderMap::new();
    for (name, value) in &parts.headers {
        if !SKIP.contains(&name.as_str()) {
            headers.append(name.clone(), value.clone());
        }
    }
    match gw
        .upstreams
        .send(service, parts.method, &path_and_query, headers, body)
        .await
    {
        Ok(upstream) if upstream.status.is_server_error() => {
            tracing::warn!(service, status = %upstream.status, "upstream error");
            unavailable()
        }
        Ok(upstream) => {
            let mut response = Response::new(Body::from(upstream.body));
            *response.status_mut() = upstream.status;
            for (name, value) in &upstream.headers {
                if !SKIP.contains(&name.as_str()) {
                    response.headers_mut().append(name.clone(), value.clone());
                }
            }
            if let Ok(value) = HeaderValue::from_str(&upstream.instance) {
                response.headers_mut().insert("x-upstream-instance", value);
            }
            response
        }
        Err(error) => {
            tracing::warn!(service, %error, "upstream unavailable");
            unavailable()
        }
    }
}

/// `GET /api/user-dashboard/{userId}`: the user, their posts and their comments, fetched in
/// parallel.
async fn dashboard(State(gw): State<Gateway>, Path(user_id): Path<String>) -> Response {
    if user_id.is_empty()
        || !user_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return error_json(StatusCode::BAD_REQUEST, "invalid user ID");
    }
    let (user_path, posts_path, comments_path) = (
        format!("/users/{user_id}"),
        format!("/posts?userId={user_id}"),
        format!("/comments?userId={user_id}"),
    );
    let (user, posts, comments) = tokio::join!(
        gw.upstreams.get("user", &user_path),
        gw.upstreams.get("post", &posts_path),
        gw.upstreams.get("comment", &comments_path),
    );
    match (user, posts, comments) {
        (Ok(user), _, _) if user.status == StatusCode::NOT_FOUND => {
            error_json(StatusCode::NOT_FOUND, "User not found")
        }
        (Ok(user), Ok(posts), Ok(comments))
            if user.status.is_success()
                && posts.status.is_success()
                && comments.status.is_success() =>
        {
            Json(serde_json::json!({
                "user": user.json(),
                "posts": posts.json(),
                "comments": comments.json(),
            }))
            .into_response()
        }
        _ => unavailable(),
    }
}

/// `GET /health`: every registered instance's `/health`, each within the health timeout. A
/// service is `healthy` when all its instances are, `degraded` when some are, `unhealthy`
/// when none is; any unhealthy service makes the answer 503.
async fn health(State(gw): State<Gateway>) -> Response {
    let registry = gw.upstreams.registry();
    let checks = registry.services().into_iter().map(|service| {
        let client = gw.health.clone();
        async move {
            let instances = registry.instances(&service).await;
            let probes = instances.iter().map(|i| {
                let client = client.clone();
                let url = format!("{}/health", i.url);
                let id = i.id.clone();
                let breaker = i.breaker.state().as_str();
                async move {
                    let ok = matches!(client.get(&url).send().await, Ok(r) if r.status().is_success());
                    serde_json::json!({ "id": id, "status": if ok { "healthy" } else { "unhealthy" }, "breaker": breaker })
                }
            });
            let results = futures_util::future::join_all(probes).await;
            let up = results.iter().filter(|r| r["status"] == "healthy").count();
            let status = if up == results.len() && up > 0 {
                "healthy"
            } else if up > 0 {
                "degraded"
            } else {
                "unhealthy"
            };
            serde_json::json!({ "name": service, "status": status, "instances": results })
        }
    });
    let services = futures_util::future::join_all(checks).await;
    let code = if services.iter().any(|s| s["status"] == "unhealthy") {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, Json(serde_json::json!({ "services": services }))).into_response()
}
