//! Atomics used by hand-written synchronisation, switched to `loom` under `cfg(sinew_loom)`
//! so that the loom models beside that code can check it.

#[cfg(not(sinew_loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

#[cfg(sinew_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
