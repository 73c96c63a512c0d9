//! The rows of the `http_server` bench under mimalloc instead of the system allocator (glibc
//! malloc on Linux). With the batch span processor, every span is freed on the SDK's export
//! thread; under glibc that thread and the request thread contend for the same malloc arena
//! (`layer_sampled_batch` against `layer_sampled`), a thread-caching allocator does not.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

include!("http_server_rows/rows.rs");
