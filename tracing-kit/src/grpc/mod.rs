//! Middleware that traces gRPC servers and clients (tonic, or any HTTP/2 gRPC service).
//!
//! tonic services are tower services over `http::Request<tonic::body::Body>`, so these layers
//! are generic over the request and response bodies and need no tonic types:
//!
//! - [`GrpcServerLayer`] extracts the remote context and correlation ID from the request
//!   metadata (HTTP/2 headers) before opening a `SERVER` span named
//!   `{package.Service}/{Method}`, and echoes the correlation ID in the response metadata.
//! - [`GrpcClientLayer`] opens a `CLIENT` span and injects its context and the current
//!   correlation ID into the request metadata.
//!
//! Both record `rpc.system = grpc`, `rpc.service`, `rpc.method` and `rpc.grpc.status_code`.
//! The status is read from the response headers (trailers-only responses, which is how
//! tonic sends most errors) or, otherwise, from the trailers: the response body is wrapped in
//! [`body::GrpcBody`], which records the status when the trailers frame passes and ends the
//! span when the body ends (so the span covers the whole stream). Per the semantic
//! conventions, a client span is an error for every non-`OK` code, and a server span for
//! `UNKNOWN`, `DEADLINE_EXCEEDED`, `UNIMPLEMENTED`, `INTERNAL`, `UNAVAILABLE` and `DATA_LOSS`.
//!
//! ```
//! use sinew_tracing_kit::grpc::{GrpcClientLayer, GrpcServerLayer};
//! use tower::ServiceBuilder;
//!
//! // Server: tonic::transport::Server::builder().layer(GrpcServerLayer::new())
//! // Client: ServiceBuilder::new().layer(GrpcClientLayer::new()).service(channel)
//! let _server = ServiceBuilder::new().layer(GrpcServerLayer::new());
//! let _client = ServiceBuilder::new().layer(GrpcClientLayer::new());
//! ```

pub mod body;
mod client;
pub mod future;
mod server;

pub use client::{GrpcClient, GrpcClientLayer};
pub use server::{GrpcServer, GrpcServerLayer};

/// `(service, method)` from a gRPC path `/package.Service/Method`.
pub(crate) fn split_path(path: &str) -> (&str, &str) {
    let path = path.strip_prefix('/').unwrap_or(path);
    match path.rsplit_once('/') {
        Some((service, method)) => (service, method),
        None => (path, ""),
    }
}

/// Whether `code` marks a span as an error (semantic conventions for gRPC).
pub(crate) fn is_error(code: i32, server: bool) -> bool {
    if server {
        matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
    } else {
        code != 0
    }
}

/// The `grpc-status` in a header map.
pub(crate) fn grpc_status(headers: &http::HeaderMap) -> Option<i32> {
    headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Records `code` on `span`.
pub(crate) fn record_status(span: &tracing::Span, code: i32, server: bool) {
    span.record("rpc.grpc.status_code", i64::from(code));
    if is_error(code, server) {
        span.record("otel.status_code", "error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_codes() {
        assert_eq!(
            split_path("/helloworld.Greeter/SayHello"),
            ("helloworld.Greeter", "SayHello")
        );
        assert_eq!(split_path("garbage"), ("garbage", ""));
        assert!(!is_error(5, true));
        assert!(is_error(5, false));
        assert!(is_error(13, true));
        assert!(!is_error(0, false));
    }
}
