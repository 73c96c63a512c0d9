//! Per-request overhead of `HttpServerLayer`: bare axum handler, layer with sampling on, layer
//! with sampling off, driven in-process with `oneshot` on a current-thread runtime. Beside them:
//! a layer that does nothing (what axum's `Router::layer` itself costs per request, for any
//! layer) and tower-http's `TraceLayer` with its defaults (a span per request, no propagation
//! and no correlation ID), the usual way axum services are traced. The rows are in
//! `http_server_rows/rows.rs`; `http_server_mimalloc` runs the same rows under mimalloc.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

include!("http_server_rows/rows.rs");
