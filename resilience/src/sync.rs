//! Atomics used by hand-written synchronisation, switched to `loom` under `cfg(sinew_loom)`
//! so that the loom models beside that code can check it.

#[cfg(all(not(sinew_loom), feature = "circuit-breaker"))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU8};
#[cfg(not(sinew_loom))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};

#[cfg(all(sinew_loom, feature = "circuit-breaker"))]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU8};
#[cfg(sinew_loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};
