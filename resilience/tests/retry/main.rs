//! Integration tests of the retry layer. All timing runs on tokio's paused clock.
#![cfg(feature = "retry")]
#![allow(
    clippy::unwrap_used,
    clippy::type_complexity,
    reason = "test helpers outside #[test] functions"
)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sinew_resilience::BoxError;
use sinew_resilience::classify::{DefaultClassifier, Outcome};
use sinew_resilience::error::{BulkheadFull, Error, RateLimited};
use sinew_resilience::retry::{Jitter, NoHint, Retry, RetryBudget, RetryLayer, RetryPolicy, retry};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt, service_fn};

#[cfg(feature = "http")]
mod http_replay;
mod props;

/// A service that records when it is called and answers from `answer(call_index)`.
fn recording<Res, E, F>(
    answer: F,
) -> (
    impl Service<u32, Response = Res, Error = E, Future: Send> + Clone + Send,
    Arc<Mutex<Vec<Instant>>>,
)
where
    F: Fn(usize) -> Result<Res, E> + Clone + Send + Sync + 'static,
    Res: Send + 'static,
    E: Send + 'static,
{
    let calls = Arc::new(Mutex::new(Vec::new()));
    let svc = service_fn({
        let calls = Arc::clone(&calls);
        move |_req: u32| {
            let n = {
                let mut c = calls.lock().unwrap();
                c.push(Instant::now());
                c.len() - 1
            };
            let out = answer(n);
            async move { out }
        }
    });
    (svc, calls)
}

fn gaps(times: &[Instant]) -> Vec<Duration> {
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

type IoErr = Error<std::io::Error>;

fn io_fail() -> IoErr {
    Error::Inner(std::io::Error::other("down"))
}

#[tokio::test(start_paused = true)]
async fn case31_always_failing_is_called_max_attempts_times_with_jittered_delays() {
    let base = Duration::from_millis(100);
    let build = || {
        RetryPolicy::builder()
            .max_attempts(3)
            .base_delay(base)
            .max_delay(Duration::from_secs(10))
            .jitter(Jitter::Full)
            .seed(31)
            .build()
            .unwrap()
    };
    let (svc, calls) = recording(|_| Err::<(), _>(io_fail()));
    let svc = RetryLayer::new(build()).layer(svc);
    let err = svc.oneshot(1).await.unwrap_err();
    assert!(
        matches!(err, Error::Inner(_)),
        "last error returned unchanged"
    );

    let times = calls.lock().unwrap().clone();
    assert_eq!(times.len(), 3);
    let gaps = gaps(&times);
    // Full jitter: delay n is uniform in 0..=base·2ⁿ (timer granularity adds at most 1 ms).
    assert!(gaps[0] <= base + Duration::from_millis(1), "{gaps:?}");
    assert!(gaps[1] <= base * 2 + Duration::from_millis(1), "{gaps:?}");
    // A policy with the same seed predicts the first request's delays exactly.
    let expected: Vec<Duration> = build().backoff().take(2).collect();
    for (got, want) in gaps.iter().zip(&expected) {
        assert!(
            *got >= *want && *got <= *want + Duration::from_millis(1),
            "{gaps:?} vs {expected:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn case31_success_on_second_attempt_makes_two_calls() {
    let (svc, calls) = recording(|n| if n == 0 { Err(io_fail()) } else { Ok(n) });
    let svc = Retry::new(svc, RetryPolicy::default());
    assert_eq!(svc.oneshot(1).await.unwrap(), 1);
    assert_eq!(calls.lock().unwrap().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn case31_non_retryable_error_makes_one_call() {
    // The default classifier ignores rejections by inner layers: no retry.
    let (svc, calls) = recording(|_| Err::<(), IoErr>(BulkheadFull::new(1).into()));
    let svc = Retry::new(svc, RetryPolicy::default());
    assert!(matches!(svc.oneshot(1).await, Err(Error::BulkheadFull(_))));
    assert_eq!(calls.lock().unwrap().len(), 1);

    // A classifier that calls this error a success: no retry either.
    let policy = RetryPolicy::builder()
        .classifier(|r: &Result<(), IoErr>| {
            if r.is_ok() {
                Outcome::Success
            } else {
                Outcome::Ignored
            }
        })
        .build()
        .unwrap();
    let (svc, calls) = recording(|_| Err::<(), IoErr>(io_fail()));
    let _ = Retry::new(svc, policy).oneshot(1).await;
    assert_eq!(calls.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn max_attempts_one_never_retries() {
    let policy = RetryPolicy::builder().max_attempts(1).build().unwrap();
    let (svc, calls) = recording(|_| Err::<(), _>(io_fail()));
    let _ = Retry::new(svc, policy).oneshot(1).await;
    assert_eq!(calls.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn waits_exactly_the_backoff_before_the_retry() {
    // tower-test mock: the retry is not sent before its delay.
    let policy = RetryPolicy::builder()
        .max_attempts(2)
        .base_delay(Duration::from_millis(100))
        .jitter(Jitter::None)
        .build()
        .unwrap();
    let (mut svc, mut handle) =
        tower_test::mock::spawn_layer::<u32, u32, _>(RetryLayer::new(policy));
    tokio_test::assert_ready_ok!(svc.poll_ready());
    let mut fut = tokio_test::task::spawn(svc.call(7));
    tokio_test::assert_pending!(fut.poll());
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(req, 7);
    send.send_error("boom");
    tokio_test::assert_pending!(fut.poll());
    tokio::time::advance(Duration::from_millis(99)).await;
    tokio_test::assert_pending!(fut.poll());
    assert!(handle.poll_request().is_pending());
    tokio::time::advance(Duration::from_millis(1)).await;
    tokio_test::assert_pending!(fut.poll());
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(req, 7);
    send.send_response(8);
    assert_eq!(tokio_test::assert_ready_ok!(fut.poll()), 8);
}

#[tokio::test(start_paused = true)]
async fn deadline_stops_retries_that_would_end_past_it() {
    let policy = RetryPolicy::builder()
        .max_attempts(10)
        .base_delay(Duration::from_secs(1))
        .jitter(Jitter::None)
        .deadline(Duration::from_millis(2500))
        .build()
        .unwrap();
    let (svc, calls) = recording(|_| Err::<(), _>(io_fail()));
    let start = Instant::now();
    let _ = Retry::new(svc, policy).oneshot(1).await;
    // Calls at 0 s and 1 s; the next would start at 3 s > 2.5 s.
    assert_eq!(calls.lock().unwrap().len(), 2);
    assert!(start.elapsed() < Duration::from_millis(2500));
}

#[tokio::test(start_paused = true)]
async fn case32_budget_caps_retries_at_reserve_plus_percent() {
    let budget = RetryBudget::default();
    let policy = RetryPolicy::builder()
        .max_attempts(3)
        .base_delay(Duration::from_millis(1))
        .max_delay(Duration::from_millis(1))
        .jitter(Jitter::None)
        .budget(budget.clone())
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let svc = service_fn({
        let calls = Arc::clone(&calls);
        move |_: u32| {
            calls.fetch_add(1, Ordering::Relaxed);
            async { Err::<(), IoErr>(io_fail()) }
        }
    });
    let svc = Retry::new(svc, policy);
    let start = Instant::now();
    let all = (0..1000).map(|i| svc.clone().oneshot(i));
    futures_util::future::join_all(all).await;
    assert!(start.elapsed() < Duration::from_secs(1), "inside the ttl");
    let retries = calls.load(Ordering::Relaxed) - 1000;
    // reserve = 10/s · 10 s = 100, plus 20 % of 1000 deposits.
    assert_eq!(retries, 300);
    assert_eq!(budget.remaining(), 0);

    // Once the ttl has passed, the old deposits (and withdrawals) no longer count.
    tokio::time::advance(Duration::from_secs(11)).await;
    assert_eq!(budget.remaining(), 100);
    calls.store(0, Ordering::Relaxed);
    let all = (0..100).map(|i| svc.clone().oneshot(i));
    futures_util::future::join_all(all).await;
    // 100 new deposits: at most 100 + 20 retries, not 300 + ...
    assert_eq!(calls.load(Ordering::Relaxed) - 100, 120);
}

#[tokio::test(start_paused = true)]
async fn case32_budget_counts_directly() {
    let budget = RetryBudget::default();
    for _ in 0..1000 {
        budget.deposit();
    }
    let mut allowed = 0;
    while budget.try_withdraw() {
        allowed += 1;
    }
    assert_eq!(allowed, 300);
    tokio::time::advance(Duration::from_secs(5)).await;
    assert!(!budget.try_withdraw(), "still inside the ttl");
    tokio::time::advance(Duration::from_secs(6)).await;
    assert_eq!(
        budget.remaining(),
        100,
        "deposits older than the ttl no longer count"
    );
}

#[tokio::test(start_paused = true)]
async fn budget_is_shared_across_clones_and_warns_when_empty() {
    let budget = RetryBudget::builder()
        .min_per_sec(0)
        .retry_percent(0.0)
        .build()
        .unwrap();
    let policy = RetryPolicy::builder().budget(budget).build().unwrap();
    let (svc, calls) = recording(|_| Err::<(), _>(io_fail()));
    let svc = Retry::new(svc, policy);
    let _ = svc.clone().oneshot(1).await;
    let _ = svc.oneshot(2).await;
    assert_eq!(
        calls.lock().unwrap().len(),
        2,
        "empty budget: no retries at all"
    );
}

#[tokio::test(start_paused = true)]
async fn error_retry_after_hint_is_honoured() {
    let policy = RetryPolicy::builder()
        .classifier(DefaultClassifier::new().count_rejections(true))
        .base_delay(Duration::from_millis(1))
        .build()
        .unwrap();
    let (svc, calls) = recording(|n| {
        if n == 0 {
            Err::<(), IoErr>(RateLimited::new(Duration::from_secs(2)).into())
        } else {
            Ok(())
        }
    });
    Retry::new(svc, policy).oneshot(1).await.unwrap();
    let gaps = gaps(&calls.lock().unwrap());
    assert!(gaps[0] >= Duration::from_secs(2), "{gaps:?}");
}

#[tokio::test(start_paused = true)]
async fn retry_helper_shares_the_policy() {
    let policy = RetryPolicy::builder()
        .max_attempts(4)
        .classifier(|r: &Result<u32, String>| {
            if r.is_ok() {
                Outcome::Success
            } else {
                Outcome::Failure
            }
        })
        .hint(NoHint::new())
        .seed(1)
        .build()
        .unwrap();
    let calls = AtomicU32::new(0);
    let out = retry(&policy, || async {
        let n = calls.fetch_add(1, Ordering::Relaxed);
        if n < 2 {
            Err(format!("fail {n}"))
        } else {
            Ok(n)
        }
    })
    .await;
    assert_eq!(out, Ok(2));

    calls.store(0, Ordering::Relaxed);
    let out: Result<u32, String> = retry(&policy, || async {
        Err(format!("fail {}", calls.fetch_add(1, Ordering::Relaxed)))
    })
    .await;
    assert_eq!(out, Err("fail 3".to_owned()), "last error, unchanged");
    assert_eq!(calls.load(Ordering::Relaxed), 4);
}

#[tokio::test(start_paused = true)]
async fn each_request_gets_its_own_jitter_stream_and_seeds_repeat() {
    async fn delays(policy: RetryPolicy) -> Vec<Vec<Duration>> {
        let svc_policy = policy.clone();
        let mut out = Vec::new();
        for _ in 0..2 {
            let (svc, calls) = recording(|_| Err::<(), _>(io_fail()));
            let _ = Retry::new(svc, svc_policy.clone()).oneshot(1).await;
            out.push(gaps(&calls.lock().unwrap()));
        }
        out
    }
    let build = |seed| {
        RetryPolicy::builder()
            .max_attempts(4)
            .base_delay(Duration::from_secs(1))
            .max_delay(Duration::from_secs(60))
            .seed(seed)
            .no_budget()
            .build()
            .unwrap()
    };
    let a = delays(build(5)).await;
    assert_ne!(a[0], a[1], "two requests, two different delay sequences");
    assert_eq!(a, delays(build(5)).await, "same seed, same sequences");
    assert_ne!(a, delays(build(6)).await);
}

#[tokio::test(start_paused = true)]
async fn reqwest_requests_replay_with_try_clone() {
    let policy = RetryPolicy::builder()
        .replay(|r: &reqwest::Request| r.try_clone())
        .build()
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let svc = service_fn({
        let seen = Arc::clone(&seen);
        move |req: reqwest::Request| {
            let mut s = seen.lock().unwrap();
            s.push(req.url().to_string());
            let fail = s.len() < 3;
            async move {
                if fail {
                    Err::<u16, BoxError>("reset".into())
                } else {
                    Ok(200)
                }
            }
        }
    });
    let req = reqwest::Request::new(
        reqwest::Method::GET,
        "http://example.test/a".parse().unwrap(),
    );
    assert_eq!(Retry::new(svc, policy).oneshot(req).await.unwrap(), 200);
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[test]
fn public_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    type Svc = tower::util::BoxCloneSyncService<u32, u32, BoxError>;
    send_sync::<RetryPolicy>();
    send_sync::<sinew_resilience::retry::RetryPolicyBuilder>();
    send_sync::<RetryBudget>();
    send_sync::<RetryLayer>();
    send_sync::<Retry<Svc>>();
    send_sync::<sinew_resilience::retry::Backoff>();
    send_sync::<Jitter>();
    send::<
        sinew_resilience::retry::future::ResponseFuture<
            Svc,
            <Svc as Service<u32>>::Future,
            u32,
            RetryPolicy,
        >,
    >();
    #[cfg(feature = "http")]
    {
        use sinew_resilience::classify::HttpClassifier;
        use sinew_resilience::retry::{HttpHint, HttpReplay, ReplayBody};
        send_sync::<RetryPolicy<HttpClassifier, HttpHint, HttpReplay>>();
        use sinew_resilience::retry::future::BufferBodyFuture;
        use sinew_resilience::retry::{BufferBody, ReplayBodyLayer};
        type Body = http_body_util::Full<bytes::Bytes>;
        type HttpSvc = tower::util::BoxCloneSyncService<
            http::Request<ReplayBody<Body>>,
            http::Response<()>,
            BoxError,
        >;
        send_sync::<ReplayBody<Body>>();
        send_sync::<ReplayBodyLayer>();
        send_sync::<BufferBody<HttpSvc>>();
        send::<
            BufferBodyFuture<
                HttpSvc,
                Body,
                <HttpSvc as Service<http::Request<ReplayBody<Body>>>>::Future,
            >,
        >();
        send::<
            sinew_resilience::retry::future::ResponseFuture<
                HttpSvc,
                <HttpSvc as Service<http::Request<ReplayBody<Body>>>>::Future,
                http::Request<ReplayBody<Body>>,
                RetryPolicy<HttpClassifier, HttpHint, HttpReplay>,
            >,
        >();
    }
}

thread_local! {
    /// This thread's captured tracing output, if it is capturing.
    static CAPTURE: std::cell::RefCell<Option<Vec<u8>>> = const { std::cell::RefCell::new(None) };
}

/// Writes into the current thread's capture (or nowhere).
struct ThreadCapture;

impl std::io::Write for ThreadCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|c| {
            if let Some(out) = c.borrow_mut().as_mut() {
                out.extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures this thread's tracing output. A *global* subscriber is used because thread-local
/// ones (`set_default`) can miss events when another test thread hits the same callsite
/// concurrently (tracing caches callsite interest process-wide).
fn capture_tracing() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(|| ThreadCapture)
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
    });
    CAPTURE.with(|c| *c.borrow_mut() = Some(Vec::new()));
}

fn captured() -> String {
    CAPTURE.with(|c| String::from_utf8(c.borrow().clone().unwrap_or_default()).unwrap())
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn emits_debug_per_retry_and_warn_when_budget_is_empty() {
    capture_tracing();
    let budget = RetryBudget::builder()
        .min_per_sec(1)
        .retry_percent(0.0)
        .build()
        .unwrap();
    let policy = RetryPolicy::builder()
        .max_attempts(3)
        .jitter(Jitter::None)
        .budget(budget)
        .build()
        .unwrap();
    let (svc, _calls) = recording(|_| Err::<(), _>(io_fail()));
    let svc = Retry::new(svc, policy);
    // The reserve is 1/s · 10 s = 10 retries; six requests want 12.
    for _ in 0..6 {
        let _ = svc.clone().oneshot(1).await;
    }
    let text = captured();
    let retries = text
        .lines()
        .filter(|l| l.contains("DEBUG") && l.contains("retrying after failed attempt"))
        .count();
    assert_eq!(retries, 10, "{text}");
    assert!(
        text.contains("delay_ms=100") && text.contains("delay_ms=200"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("WARN") && l.contains("retry budget exhausted")),
        "{text}"
    );
}
