//! Compiles and runs the examples of the guides (`docs/*.md`) and of the READMEs as doctests
//! (`cargo test -p sinew-doc-tests --doc`), so that the code a reader copies from them
//! builds. This crate has no other content and is not published.
#![doc(test(attr(deny(warnings))))]

/// `docs/resilience.md`.
#[cfg(doctest)]
#[doc = include_str!("../../docs/resilience.md")]
struct ResilienceGuide;

/// `docs/discovery.md`.
#[cfg(doctest)]
#[doc = include_str!("../../docs/discovery.md")]
struct DiscoveryGuide;

/// `docs/saga.md`.
#[cfg(doctest)]
#[doc = include_str!("../../docs/saga.md")]
struct SagaGuide;

/// `docs/tracing-kit.md`.
#[cfg(doctest)]
#[doc = include_str!("../../docs/tracing-kit.md")]
struct TracingKitGuide;

/// `docs/messaging.md` (no Rust examples today; compiled if it gains some).
#[cfg(doctest)]
#[doc = include_str!("../../docs/messaging.md")]
struct MessagingGuide;

/// `README.md`.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct WorkspaceReadme;

/// `resilience/README.md`.
#[cfg(doctest)]
#[doc = include_str!("../../resilience/README.md")]
struct ResilienceReadme;

/// `discovery/README.md`.
#[cfg(doctest)]
#[doc = include_str!("../../discovery/README.md")]
struct DiscoveryReadme;

/// `saga/README.md`.
#[cfg(doctest)]
#[doc = include_str!("../../saga/README.md")]
struct SagaReadme;

/// `tracing-kit/README.md`.
#[cfg(doctest)]
#[doc = include_str!("../../tracing-kit/README.md")]
struct TracingKitReadme;

/// `messaging/README.md`.
#[cfg(doctest)]
#[doc = include_str!("../../messaging/README.md")]
struct MessagingReadme;
