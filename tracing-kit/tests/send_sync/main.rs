//! Every public layer, service, future and guard is `Send` (and `Sync` where it is cloneable).
#![cfg(all(
    feature = "http",
    feature = "grpc",
    feature = "reqwest",
    feature = "testing"
))]
#![allow(dead_code)]

use std::future::Ready;

use sinew_tracing_kit::correlation::CorrelationId;
use sinew_tracing_kit::grpc::{GrpcClient, GrpcClientLayer, GrpcServer, GrpcServerLayer};
use sinew_tracing_kit::http::{
    HttpClient, HttpClientLayer, HttpClientMiddleware, HttpServer, HttpServerLayer,
};
use sinew_tracing_kit::init::{Config, Guard};
use sinew_tracing_kit::propagation::TraceContext;
use sinew_tracing_kit::testing::{FakeCollector, SpanRecorder};

fn send<T: Send>() {}
fn send_sync<T: Send + Sync>() {}

type Svc = tower::util::ServiceFn<
    fn(http::Request<String>) -> Ready<Result<http::Response<String>, std::io::Error>>,
>;

#[test]
fn public_types_are_send_and_sync() {
    send_sync::<CorrelationId>();
    send_sync::<TraceContext>();
    send_sync::<Config>();
    send_sync::<Guard>();
    send_sync::<HttpServerLayer>();
    send_sync::<HttpServer<Svc>>();
    send_sync::<HttpClientLayer>();
    send_sync::<HttpClient<Svc>>();
    send_sync::<HttpClientMiddleware>();
    send_sync::<GrpcServerLayer>();
    send_sync::<GrpcServer<Svc>>();
    send_sync::<GrpcClientLayer>();
    send_sync::<GrpcClient<Svc>>();
    send::<
        sinew_tracing_kit::http::future::ResponseFuture<
            Ready<Result<http::Response<String>, std::io::Error>>,
        >,
    >();
    send::<
        sinew_tracing_kit::grpc::future::ResponseFuture<
            Ready<Result<http::Response<String>, std::io::Error>>,
        >,
    >();
    send_sync::<SpanRecorder>();
    send_sync::<FakeCollector>();
}
