#![allow(dead_code, unreachable_pub)]

use std::sync::{Arc, Mutex};

/// Installs a test-writer subscriber once, so `tracing` output shows up only for failing tests.
pub fn trace_init() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "sinew_resilience=debug".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Collects values (events) pushed from listeners.
#[derive(Debug, Clone)]
pub struct Recorder<T>(Arc<Mutex<Vec<T>>>);

impl<T> Default for Recorder<T> {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(Vec::new())))
    }
}

impl<T: Clone> Recorder<T> {
    pub fn push(&self, value: T) {
        self.0.lock().unwrap().push(value);
    }

    pub fn take(&self) -> Vec<T> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }

    pub fn snapshot(&self) -> Vec<T> {
        self.0.lock().unwrap().clone()
    }
}
