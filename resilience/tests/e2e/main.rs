//! End to end: an axum server that fails on command, a `reqwest::Client` behind the composed
//! policy, and the breaker seen to open, reject fast, half-open and close.
#![cfg(all(feature = "policy", feature = "reqwest"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State as AxumState;
use axum::http::StatusCode;
use axum::routing;
use sinew_resilience::circuit_breaker::{self, Event, OpenWait, SlidingWindow, State};
use sinew_resilience::{Error, Policy};
use tower::{Service, ServiceBuilder, ServiceExt};

use support::{Recorder, trace_init};

#[derive(Default)]
struct Upstream {
    failing: AtomicBool,
    hits: AtomicUsize,
}

async fn user(AxumState(up): AxumState<Arc<Upstream>>) -> (StatusCode, &'static str) {
    up.hits.fetch_add(1, Ordering::SeqCst);
    if up.failing.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "down")
    } else {
        (StatusCode::OK, "{\"id\":1}")
    }
}

async fn spawn_upstream() -> (String, Arc<Upstream>) {
    let upstream = Arc::new(Upstream::default());
    let app = Router::new()
        .route("/users/1", routing::get(user))
        .with_state(upstream.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/users/1"), upstream)
}

async fn get<S>(client: &S, url: &str) -> Result<reqwest::Response, S::Error>
where
    S: Service<reqwest::Request, Response = reqwest::Response> + Clone,
{
    let req = reqwest::Request::new(reqwest::Method::GET, url.parse().unwrap());
    client.clone().oneshot(req).await
}

#[tokio::test]
async fn breaker_opens_rejects_half_opens_and_closes_over_real_http() {
    trace_init();
    let (url, upstream) = spawn_upstream().await;
    let transitions = Recorder::default();
    let sink = transitions.clone();

    let policy = Policy::builder()
        .http()
        .name("users")
        .timeout(Duration::from_secs(5))
        .retry(|r| r.max_attempts(2).base_delay(Duration::from_millis(1)))
        .circuit_breaker(
            circuit_breaker::Config::builder()
                .sliding_window(SlidingWindow::CountBased { size: 10 })
                .minimum_calls(5)
                .failure_rate_threshold(50.0)
                .half_open_permits(2)
                .open_wait(OpenWait::Fixed(Duration::from_secs(3600)))
                .on_event(move |e| {
                    if let Event::StateTransition { from, to, .. } = e {
                        sink.push((*from, *to));
                    }
                }),
        )
        .build()
        .unwrap();
    let breaker = policy.breaker().clone();
    let client = ServiceBuilder::new()
        .layer(policy.layer())
        .service(reqwest::Client::new());
    // Healthy: three successes.
    for _ in 0..3 {
        let res = get(&client, &url).await.unwrap();
        assert_eq!(res.status(), 200);
    }
    assert_eq!(breaker.state(), State::Closed);

    // Failing: 503s are failures; each request is tried twice until the breaker opens.
    upstream.failing.store(true, Ordering::SeqCst);
    let mut last = None;
    for _ in 0..10 {
        match get(&client, &url).await {
            Ok(res) => assert_eq!(res.status(), 503),
            Err(e) => {
                last = Some(e);
                break;
            }
        }
    }
    assert_eq!(breaker.state(), State::Open);
    let hits_when_open = upstream.hits.load(Ordering::SeqCst);

    // Open: rejected fast, typed, with a retry-after, and the server is not called.
    let err = match last {
        Some(e) => e,
        None => get(&client, &url).await.unwrap_err(),
    };
    let Error::CircuitOpen(open) = err else {
        panic!("expected a circuit-open rejection, got {err:?}");
    };
    assert!(open.retry_after() <= Duration::from_secs(3600));
    for _ in 0..5 {
        assert!(matches!(
            get(&client, &url).await,
            Err(Error::CircuitOpen(_))
        ));
    }
    assert_eq!(upstream.hits.load(Ordering::SeqCst), hits_when_open);

    // The upstream recovers; half-open (by hand, instead of waiting an hour) and probe.
    upstream.failing.store(false, Ordering::SeqCst);
    breaker.half_open().unwrap();
    for _ in 0..2 {
        assert_eq!(get(&client, &url).await.unwrap().status(), 200);
    }
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(
        transitions.snapshot(),
        vec![
            (State::Closed, State::Open),
            (State::Open, State::HalfOpen),
            (State::HalfOpen, State::Closed),
        ]
    );
}

#[tokio::test]
async fn post_is_not_retried_but_get_is() {
    trace_init();
    let (url, upstream) = spawn_upstream().await;
    upstream.failing.store(true, Ordering::SeqCst);
    let policy = Policy::builder()
        .http()
        .retry(|r| r.max_attempts(3).base_delay(Duration::from_millis(1)))
        .build()
        .unwrap();
    let client = ServiceBuilder::new()
        .layer(policy.layer())
        .service(reqwest::Client::new());

    let res = client
        .clone()
        .oneshot(reqwest::Request::new(
            reqwest::Method::GET,
            url.parse().unwrap(),
        ))
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(upstream.hits.swap(0, Ordering::SeqCst), 3);

    // POST to the same route: axum answers 405 (a success for the classifier), once.
    let res = client
        .oneshot(reqwest::Request::new(
            reqwest::Method::POST,
            url.parse().unwrap(),
        ))
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
}
