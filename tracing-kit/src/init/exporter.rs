//! The OTLP exporter, and the small runtime the gRPC exporter lives on.

use std::future::poll_fn;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Poll, Waker};

use opentelemetry_otlp::{SpanExporter, WithExportConfig as _};

use super::{Config, InitError, Protocol};

/// A built exporter, and what to run once the provider is shut down.
pub(crate) struct Exporter {
    pub(crate) exporter: SpanExporter,
    pub(crate) after_shutdown: Option<Box<dyn FnOnce() + Send>>,
}

pub(crate) fn build(config: &Config, endpoint: &str) -> Result<Exporter, InitError> {
    match config.protocol {
        Protocol::HttpProtobuf => {
            // `with_endpoint` takes the full signal URL; `OTEL_EXPORTER_OTLP_ENDPOINT` (and our
            // `endpoint`) is the base, so append the path as the specification says.
            let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
            // The blocking reqwest client: the batch processor calls the exporter on its own
            // thread, where the async client panics with "no reactor running".
            let exporter = SpanExporter::builder()
                .with_http()
                .with_endpoint(url)
                .with_timeout(config.export_timeout)
                .build()
                .map_err(|e| InitError::Exporter(Box::new(e)))?;
            Ok(Exporter {
                exporter,
                after_shutdown: None,
            })
        }
        Protocol::Grpc => build_grpc(config, endpoint),
    }
}

/// tonic's channel spawns a task when it is built, so it needs a tokio runtime, and that
/// runtime must keep running while the batch processor exports (and at shutdown). The
/// caller's runtime may be missing, or a current-thread one blocked in `Guard::shutdown`
/// (opentelemetry-rust#2583), so the exporter gets its own current-thread runtime on its own
/// thread, stopped after the provider has shut down.
fn build_grpc(config: &Config, endpoint: &str) -> Result<Exporter, InitError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("sinew-otlp-grpc")
        .build()
        .map_err(InitError::Runtime)?;
    let handle = runtime.handle().clone();
    let stop = Arc::new(Stop::default());
    let stop_on_thread = Arc::clone(&stop);
    std::thread::Builder::new()
        .name("sinew-otlp-grpc".to_owned())
        .spawn(move || {
            runtime.block_on(stop_on_thread.wait());
            // Dropped here, on a plain thread, never in an async context.
            drop(runtime);
        })
        .map_err(InitError::Runtime)?;

    let built = {
        let _enter = handle.enter();
        SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .with_timeout(config.export_timeout)
            .build()
    };
    match built {
        Ok(exporter) => Ok(Exporter {
            exporter,
            after_shutdown: Some(Box::new(move || stop.fire())),
        }),
        Err(e) => {
            stop.fire();
            Err(InitError::Exporter(Box::new(e)))
        }
    }
}

/// A one-shot stop signal that needs no tokio `sync` feature.
#[derive(Default)]
struct Stop {
    state: Mutex<(bool, Option<Waker>)>,
}

impl Stop {
    fn fire(&self) {
        let waker = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.0 = true;
            state.1.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    async fn wait(&self) {
        poll_fn(|cx| {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if state.0 {
                Poll::Ready(())
            } else {
                state.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
    }
}
