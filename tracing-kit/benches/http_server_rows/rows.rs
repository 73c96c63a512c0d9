// The rows of the `http_server` benches (`include!`d by each, so that one of them can run
// under another global allocator).

use std::hint::black_box;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use sinew_tracing_kit::http::HttpServerLayer;
use tower::ServiceExt;
use tracing_subscriber::layer::SubscriberExt;

fn router(layered: bool) -> Router {
    let r = plain_router();
    if layered {
        r.layer(HttpServerLayer::new())
    } else {
        r
    }
}

fn plain_router() -> Router {
    Router::new().route("/users/{id}", get(|| async { "ok" }))
}

fn subscriber(sampler: Sampler) -> (impl tracing::Subscriber + Send + Sync, SdkTracerProvider) {
    // Sampled spans go through the simple processor to an exporter that drops them.
    let provider = SdkTracerProvider::builder()
        .with_sampler(sampler)
        .with_simple_exporter(NullExporter)
        .build();
    let tracer = provider.tracer("bench");
    let sub = tracing_subscriber::registry().with(
        // The same layer settings as `init` installs.
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_tracked_inactivity(false)
            .with_threads(false),
    );
    (sub, provider)
}

#[derive(Debug)]
struct NullExporter;

impl opentelemetry_sdk::trace::SpanExporter for NullExporter {
    async fn export(
        &self,
        batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        black_box(batch);
        Ok(())
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("http_server");
    let request = || {
        Request::get("/users/42")
            .header(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .body(Body::empty())
            .unwrap()
    };

    for (name, layered, sampler) in [
        ("bare_handler", false, Sampler::AlwaysOn),
        ("layer_sampled", true, Sampler::AlwaysOn),
        ("layer_unsampled", true, Sampler::AlwaysOff),
    ] {
        let (sub, _provider) = subscriber(sampler.clone());
        // What `init` does for its own provider.
        sinew_tracing_kit::init::declare_sampler(match name {
            "layer_unsampled" => sinew_tracing_kit::init::Sampler::AlwaysOff,
            _ => sinew_tracing_kit::init::Sampler::AlwaysOn,
        });
        let _guard = tracing::subscriber::set_default(sub);
        let app = router(layered);
        group.bench_function(name, |b| {
            b.iter(|| {
                let resp = rt.block_on(app.clone().oneshot(request())).unwrap();
                black_box(resp);
            });
        });
        // The peer, on the same router: a layer that does nothing next to the bare handler,
        // tower-http's `TraceLayer` next to ours.
        let (peer_name, peer_app) = match name {
            "bare_handler" => (
                "noop_layer",
                plain_router().layer(tower::layer::layer_fn(|route| route)),
            ),
            "layer_sampled" => (
                "tower_http_trace_sampled",
                plain_router().layer(tower_http::trace::TraceLayer::new_for_http()),
            ),
            _ => (
                "tower_http_trace_unsampled",
                plain_router().layer(tower_http::trace::TraceLayer::new_for_http()),
            ),
        };
        group.bench_function(peer_name, |b| {
            b.iter(|| black_box(rt.block_on(peer_app.clone().oneshot(request())).unwrap()));
        });
        // The same around a plain tower service (no router): the layer's own cost, without
        // axum's routing in the figures.
        let plain = tower::service_fn(|_req: Request<Body>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(Body::from("ok")))
        });
        let plain_name = format!("tower_{name}");
        if layered {
            let svc = tower::Layer::layer(&HttpServerLayer::new(), plain);
            group.bench_function(&plain_name, |b| {
                b.iter(|| black_box(rt.block_on(svc.clone().oneshot(request())).unwrap()));
            });
        } else {
            group.bench_function(&plain_name, |b| {
                b.iter(|| black_box(rt.block_on(plain.oneshot(request())).unwrap()));
            });
        }
        // Not sampled and no incoming trace context (traffic from outside, at the edge):
        // nothing to parse and no remote context to make current.
        if name == "layer_unsampled" {
            let no_parent = || Request::get("/users/42").body(Body::empty()).unwrap();
            group.bench_function("layer_unsampled_no_parent", |b| {
                b.iter(|| black_box(rt.block_on(app.clone().oneshot(no_parent())).unwrap()));
            });
            group.bench_function("bare_handler_no_parent", |b| {
                let bare = plain_router();
                b.iter(|| black_box(rt.block_on(bare.clone().oneshot(no_parent())).unwrap()));
            });
            let svc = tower::Layer::layer(&HttpServerLayer::new(), plain);
            group.bench_function("tower_layer_unsampled_no_parent", |b| {
                b.iter(|| black_box(rt.block_on(svc.clone().oneshot(no_parent())).unwrap()));
            });
            group.bench_function("tower_bare_handler_no_parent", |b| {
                b.iter(|| black_box(rt.block_on(plain.oneshot(no_parent())).unwrap()));
            });
        }
    }
    // Sampled, with the batch span processor `init` installs when it has an endpoint (spans
    // handed to the SDK's export thread, which drops them), instead of the simple processor.
    {
        let provider = SdkTracerProvider::builder()
            .with_sampler(Sampler::AlwaysOn)
            .with_batch_exporter(NullExporter)
            .build();
        let sub = tracing_subscriber::registry().with(
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("bench"))
                .with_tracked_inactivity(false)
                .with_threads(false),
        );
        sinew_tracing_kit::init::declare_sampler(sinew_tracing_kit::init::Sampler::AlwaysOn);
        let _guard = tracing::subscriber::set_default(sub);
        let app = router(true);
        group.bench_function("layer_sampled_batch", |b| {
            b.iter(|| black_box(rt.block_on(app.clone().oneshot(request())).unwrap()));
        });
        let _ = provider.shutdown();
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
