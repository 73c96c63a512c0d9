//! HTTP: Retry-After (case 33), gRPC pushback, idempotency, body replay.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use sinew_resilience::BoxError;
use sinew_resilience::retry::{Jitter, ReplayBody, Retry, RetryPolicy, buffer_request};
use tokio::time::Instant;
use tower::{Service, ServiceExt, service_fn};

/// A service answering each call with `statuses[i]` (and `headers[i]`), recording call times.
fn http_svc<B: Send + 'static>(
    answers: Vec<(u16, Option<(&'static str, &'static str)>)>,
) -> (
    impl Service<Request<B>, Response = Response<()>, Error = BoxError, Future: Send> + Clone,
    Arc<Mutex<Vec<Instant>>>,
) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let answers = Arc::new(answers);
    let svc = service_fn({
        let calls = Arc::clone(&calls);
        move |_req: Request<B>| {
            let mut c = calls.lock().unwrap();
            c.push(Instant::now());
            let (status, header) = answers[(c.len() - 1).min(answers.len() - 1)];
            let mut res = Response::builder().status(status);
            if let Some((k, v)) = header {
                res = res.header(k, v);
            }
            let res = res.body(()).unwrap();
            async move { Ok::<_, BoxError>(res) }
        }
    });
    (svc, calls)
}

fn get() -> Request<String> {
    Request::get("http://example.test/")
        .body(String::new())
        .unwrap()
}

fn policy() -> sinew_resilience::retry::RetryPolicyBuilder<
    sinew_resilience::classify::HttpClassifier,
    sinew_resilience::retry::HttpHint,
    sinew_resilience::retry::HttpReplay,
> {
    RetryPolicy::http_builder()
        .base_delay(Duration::from_millis(10))
        .jitter(Jitter::None)
        .seed(33)
}

#[tokio::test(start_paused = true)]
async fn case33_retry_after_seconds_delays_the_next_attempt() {
    let (svc, calls) = http_svc(vec![(503, Some(("retry-after", "3"))), (200, None)]);
    let res = Retry::new(svc, policy().build().unwrap())
        .oneshot(get())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let c = calls.lock().unwrap();
    assert_eq!(c.len(), 2);
    assert!(c[1] - c[0] >= Duration::from_secs(3), "{:?}", c[1] - c[0]);
}

#[tokio::test(start_paused = true)]
async fn case33_retry_after_http_date_is_honoured() {
    // HTTP-dates are wall-clock times with whole seconds: a date 4 s ahead (truncated to the
    // second) waits between 3 and 4 s. The service path is the same as for delay-seconds.
    let at = std::time::SystemTime::now() + Duration::from_secs(4);
    let secs = at.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let date = imf_fixdate(secs);
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::RETRY_AFTER, date.parse().unwrap());
    match sinew_resilience::retry::HttpHint::from_headers(&headers, std::time::SystemTime::now()) {
        sinew_resilience::retry::Hint::After(d) => {
            assert!(
                d >= Duration::from_secs(3) && d <= Duration::from_secs(4),
                "{d:?}"
            );
        }
        other => panic!("unexpected hint {other:?}"),
    }
}

/// Formats seconds since the epoch as an IMF-fixdate.
fn imf_fixdate(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // civil_from_days (Hinnant)
    let z = days as i64 + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    let mon = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(m - 1) as usize];
    format!(
        "{wd}, {d:02} {mon} {y} {:02}:{:02}:{:02} GMT",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[tokio::test(start_paused = true)]
async fn case33_retry_after_beyond_the_cap_gives_up() {
    let (svc, calls) = http_svc(vec![(503, Some(("retry-after", "30"))), (200, None)]);
    let p = policy()
        .max_retry_after(Duration::from_secs(10))
        .build()
        .unwrap();
    let res = Retry::new(svc, p).oneshot(get()).await.unwrap();
    assert_eq!(
        res.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "last result unchanged"
    );
    assert_eq!(calls.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn grpc_pushback_waits_or_stops() {
    let (svc, calls) = http_svc(vec![
        (503, Some(("grpc-retry-pushback-ms", "1500"))),
        (200, None),
    ]);
    let _ = Retry::new(svc, policy().build().unwrap())
        .oneshot(get())
        .await;
    let c = calls.lock().unwrap().clone();
    assert_eq!(c.len(), 2);
    assert!(c[1] - c[0] >= Duration::from_millis(1500));

    for bad in ["-1", "soon"] {
        let (svc, calls) = http_svc(vec![
            (503, Some(("grpc-retry-pushback-ms", bad))),
            (200, None),
        ]);
        let _ = Retry::new(svc, policy().build().unwrap())
            .oneshot(get())
            .await;
        assert_eq!(
            calls.lock().unwrap().len(),
            1,
            "pushback {bad} means do not retry"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn only_idempotent_methods_are_retried_by_default() {
    let failing = || http_svc::<String>(vec![(503, None)]);
    let req = |m: Method| {
        Request::builder()
            .method(m)
            .uri("/")
            .body(String::new())
            .unwrap()
    };

    for (m, want) in [
        (Method::GET, 3),
        (Method::PUT, 3),
        (Method::DELETE, 3),
        (Method::POST, 1),
        (Method::PATCH, 1),
    ] {
        let (svc, calls) = failing();
        let _ = Retry::new(svc, policy().build().unwrap())
            .oneshot(req(m.clone()))
            .await;
        assert_eq!(calls.lock().unwrap().len(), want, "{m}");
    }

    // An Idempotency-Key makes a POST retryable.
    let (svc, calls) = failing();
    let keyed = Request::post("/")
        .header("Idempotency-Key", "k1")
        .body(String::new())
        .unwrap();
    let _ = Retry::new(svc, policy().build().unwrap())
        .oneshot(keyed)
        .await;
    assert_eq!(calls.lock().unwrap().len(), 3);

    // So does opting in.
    let (svc, calls) = failing();
    let p = policy().retry_non_idempotent(true).build().unwrap();
    let _ = Retry::new(svc, p).oneshot(req(Method::POST)).await;
    assert_eq!(calls.lock().unwrap().len(), 3);
}

/// A service that collects each request's body and fails the first `fail` calls with 503.
fn body_svc<B>(
    fail: usize,
) -> (
    impl Service<Request<B>, Response = Response<()>, Error = BoxError> + Clone,
    Arc<Mutex<Vec<Bytes>>>,
)
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: std::fmt::Debug,
{
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let svc = service_fn({
        let bodies = Arc::clone(&bodies);
        move |req: Request<B>| {
            let bodies = Arc::clone(&bodies);
            async move {
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let n = {
                    let mut b = bodies.lock().unwrap();
                    b.push(body);
                    b.len()
                };
                let status = if n <= fail { 503 } else { 200 };
                Ok::<_, BoxError>(Response::builder().status(status).body(()).unwrap())
            }
        }
    });
    (svc, bodies)
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[tokio::test(start_paused = true)]
async fn small_bodies_are_buffered_and_replayed() {
    let data = Bytes::from(payload(10 * 1024));
    let req = Request::post("/")
        .header("Idempotency-Key", "k")
        .body(Full::new(data.clone()))
        .unwrap();
    let req = buffer_request(req, None).await.unwrap();
    assert!(req.body().is_replayable());
    let (svc, bodies) = body_svc::<ReplayBody<Full<Bytes>>>(2);
    let res = Retry::new(svc, policy().build().unwrap())
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let bodies = bodies.lock().unwrap();
    assert_eq!(bodies.len(), 3);
    assert!(
        bodies.iter().all(|b| *b == data),
        "every attempt sends the whole body"
    );
}

type Chunks =
    StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

fn chunked(data: &[u8], chunk: usize) -> Chunks {
    let frames: Vec<_> = data
        .chunks(chunk)
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    StreamBody::new(futures_util::stream::iter(frames))
}

#[tokio::test(start_paused = true)]
async fn large_bodies_are_sent_once_intact_and_not_retried() {
    // 200 KiB in 7 KiB chunks, beyond the 64 KiB cap; the size is not known in advance.
    let data = payload(200 * 1024);
    let req = Request::put("/").body(chunked(&data, 7 * 1024)).unwrap();
    let req = buffer_request(req, None).await.unwrap();
    assert!(!req.body().is_replayable());
    let (svc, bodies) = body_svc::<ReplayBody<Chunks>>(5);
    let res = Retry::new(svc, policy().build().unwrap())
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "not retried, last result returned"
    );
    let bodies = bodies.lock().unwrap();
    assert_eq!(bodies.len(), 1);
    assert_eq!(&bodies[0][..], &data[..], "prefix and rest arrive in order");
}

#[tokio::test(start_paused = true)]
async fn body_exactly_at_the_cap_is_replayable_and_one_byte_more_is_not() {
    let cap = 1000;
    let at = buffer_request(
        Request::put("/").body(chunked(&payload(cap), 300)).unwrap(),
        Some(cap),
    )
    .await
    .unwrap();
    assert!(at.body().is_replayable());
    let over = buffer_request(
        Request::put("/")
            .body(chunked(&payload(cap + 1), 300))
            .unwrap(),
        Some(cap),
    )
    .await
    .unwrap();
    assert!(!over.body().is_replayable());
    let body = over.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], &payload(cap + 1)[..]);
}

#[tokio::test(start_paused = true)]
async fn replay_body_layer_buffers_inside_a_tower_stack() {
    use sinew_resilience::retry::{ReplayBodyLayer, RetryLayer};
    use tower::ServiceBuilder;

    // Small: buffered, retried, the same bytes every time.
    let small = payload(3000);
    let (inner, bodies) = body_svc::<ReplayBody<Chunks>>(2);
    let svc = ServiceBuilder::new()
        .layer(ReplayBodyLayer::new().max_bytes(4096))
        .layer(RetryLayer::new(policy().build().unwrap()))
        .service(inner);
    let res = svc
        .oneshot(Request::put("/").body(chunked(&small, 1000)).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    {
        let b = bodies.lock().unwrap();
        assert_eq!(b.len(), 3);
        assert!(b.iter().all(|b| b[..] == small[..]));
    }

    // Large: sent once, intact, and the 503 comes back unchanged.
    let large = payload(10_000);
    let (inner, bodies) = body_svc::<ReplayBody<Chunks>>(2);
    let svc = ServiceBuilder::new()
        .layer(ReplayBodyLayer::new().max_bytes(4096))
        .layer(RetryLayer::new(policy().build().unwrap()))
        .service(inner);
    let res = svc
        .oneshot(Request::put("/").body(chunked(&large, 1000)).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let b = bodies.lock().unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(&b[0][..], &large[..]);
}

#[tokio::test(start_paused = true)]
async fn body_read_errors_become_service_errors() {
    use sinew_resilience::retry::ReplayBodyLayer;
    use tower::Layer;

    #[derive(Debug)]
    struct Broken;
    impl std::fmt::Display for Broken {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("broken body")
        }
    }
    impl std::error::Error for Broken {}

    let frames: Vec<Result<Frame<Bytes>, Broken>> =
        vec![Ok(Frame::data(Bytes::from_static(b"abc"))), Err(Broken)];
    let body = StreamBody::new(futures_util::stream::iter(frames));
    let called = Arc::new(Mutex::new(0));
    let inner = service_fn({
        let called = Arc::clone(&called);
        move |_req: Request<ReplayBody<_>>| {
            *called.lock().unwrap() += 1;
            async { Ok::<_, BoxError>(()) }
        }
    });
    let err = ReplayBodyLayer::new()
        .layer(inner)
        .oneshot(Request::new(body))
        .await
        .unwrap_err();
    assert!(err.is::<Broken>());
    assert_eq!(*called.lock().unwrap(), 0);
}
