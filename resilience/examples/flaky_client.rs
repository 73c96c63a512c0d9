//! A `reqwest::Client` behind the composed resilience policy, calling a flaky local server.
//!
//! ```sh
//! cargo run -p sinew-resilience --example flaky_client --features reqwest
//! ```
//!
//! The server answers normally for a while, then fails every request with 503 for a while,
//! then recovers. Watch the log: the breaker opens after enough failures, rejects calls
//! without reaching the server, half-opens after its wait, and closes once the probes succeed.
//! Set `RUST_LOG=debug` to see every retry.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State as AxumState;
use axum::http::StatusCode;
use axum::routing;
use sinew_resilience::circuit_breaker::{self, Event, OpenWait, SlidingWindow};
use sinew_resilience::{BoxError, Error, Policy};
use tower::{ServiceBuilder, ServiceExt};
use tracing_subscriber::EnvFilter;

#[derive(Default)]
struct Flaky {
    failing: AtomicBool,
    hits: AtomicUsize,
}

async fn handler(AxumState(flaky): AxumState<Arc<Flaky>>) -> (StatusCode, &'static str) {
    flaky.hits.fetch_add(1, Ordering::Relaxed);
    if flaky.failing.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    } else {
        (StatusCode::OK, "hello")
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "flaky_client=info,sinew_resilience=info".into()),
        )
        .init();

    // The flaky server.
    let flaky = Arc::new(Flaky::default());
    let app = Router::new()
        .route("/hello", routing::get(handler))
        .with_state(flaky.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url: reqwest::Url = format!("http://{}/hello", listener.local_addr()?).parse()?;
    tokio::spawn(async move { axum::serve(listener, app).await });

    // The client: three lines for the common case, plus a tighter breaker so the demo is short.
    let policy = Policy::builder()
        .http()
        .name("hello-api")
        .timeout(Duration::from_secs(2))
        .circuit_breaker(
            circuit_breaker::Config::builder()
                .sliding_window(SlidingWindow::CountBased { size: 20 })
                .minimum_calls(10)
                .open_wait(OpenWait::Fixed(Duration::from_secs(1)))
                .half_open_permits(3)
                .on_event(|event| {
                    if let Event::StateTransition {
                        from, to, reason, ..
                    } = event
                    {
                        tracing::info!(%from, %to, ?reason, "breaker state change");
                    }
                }),
        )
        .build()?;
    let client = ServiceBuilder::new()
        .layer(policy.layer())
        .service(reqwest::Client::new());

    // Healthy for 1.5 s, failing for 2.5 s, then healthy again.
    let phases = [(false, 15), (true, 25), (false, 25)];
    for (failing, ticks) in phases {
        flaky.failing.store(failing, Ordering::Relaxed);
        tracing::info!(failing, "server phase");
        let (mut ok, mut failed, mut rejected) = (0, 0, 0);
        for _ in 0..ticks {
            let request = reqwest::Request::new(reqwest::Method::GET, url.clone());
            match client.clone().oneshot(request).await {
                Ok(res) if res.status().is_success() => ok += 1,
                Ok(_) => failed += 1,
                Err(Error::CircuitOpen(open)) => {
                    rejected += 1;
                    tracing::debug!(retry_after = ?open.retry_after(), "rejected by the breaker");
                }
                Err(e) => {
                    failed += 1;
                    tracing::warn!(error = %e, "request failed");
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let m = policy.breaker().metrics();
        tracing::info!(
            ok,
            failed,
            rejected,
            server_hits = flaky.hits.swap(0, Ordering::Relaxed),
            state = %m.state,
            failure_rate = ?m.failure_rate,
            "phase summary"
        );
    }
    Ok(())
}
