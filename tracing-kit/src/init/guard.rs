//! [`Guard`]: flushes and shuts the tracer provider down, with a deadline, on a plain thread.

use std::fmt;
use std::sync::{Mutex, PoisonError, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use opentelemetry_sdk::error::OTelSdkError;
use opentelemetry_sdk::trace::SdkTracerProvider;

/// What [`Guard::shutdown`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShutdownOutcome {
    /// Every finished span was handed to the exporter and the provider is shut down (also
    /// when there was no exporter).
    Flushed,
    /// The deadline passed first. Shutdown goes on in the background, but the caller is no
    /// longer blocked; spans still in flight may be lost.
    TimedOut,
    /// An earlier call (or another guard for the same provider) already shut it down:
    /// nothing was done.
    AlreadyShutDown,
    /// The exporter or a processor reported an error.
    Failed(ShutdownFailure),
}

impl ShutdownOutcome {
    /// Whether everything was flushed.
    pub fn is_flushed(&self) -> bool {
        matches!(self, Self::Flushed)
    }
}

/// Why a shutdown failed (the SDK's message; its text is not part of the API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownFailure {
    message: String,
}

impl fmt::Display for ShutdownFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tracing shutdown failed: {}", self.message)
    }
}

impl std::error::Error for ShutdownFailure {}

/// What the guard shuts down.
pub(crate) struct Pipeline {
    pub(crate) provider: SdkTracerProvider,
    /// Runs after the provider is shut down, on the shutdown thread (stops the exporter's
    /// own runtime, say).
    pub(crate) after: Option<Box<dyn FnOnce() + Send>>,
}

/// Keeps tracing running; flushes and shuts it down when [`shutdown`](Guard::shutdown) is
/// called or when dropped.
///
/// Shutdown runs on a fresh `std::thread` (never on a tokio worker) and the caller waits at
/// most the deadline, so it cannot deadlock a current-thread runtime
/// (opentelemetry-rust#2583). It is idempotent: the second call returns
/// [`ShutdownOutcome::AlreadyShutDown`] at once.
///
/// # Default
///
/// The deadline is the one configured with
/// [`ConfigBuilder::shutdown_deadline`](super::ConfigBuilder::shutdown_deadline), 5 s unless
/// set; `Drop` uses it too.
#[must_use = "dropping the guard shuts tracing down at once; keep it alive until the program ends"]
pub struct Guard {
    pipeline: Mutex<Option<Pipeline>>,
    deadline: Duration,
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let running = self
            .pipeline
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some();
        f.debug_struct("Guard")
            .field("running", &running)
            .field("deadline", &self.deadline)
            .finish()
    }
}

impl Guard {
    pub(crate) fn new(pipeline: Pipeline, deadline: Duration) -> Self {
        Self {
            pipeline: Mutex::new(Some(pipeline)),
            deadline,
        }
    }

    /// The provider, unless shut down.
    pub(crate) fn provider(&self) -> Option<SdkTracerProvider> {
        self.pipeline
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|p| p.provider.clone())
    }

    /// The deadline [`shutdown`](Self::shutdown) and `Drop` use.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Flushes the spans not yet exported and shuts the provider down, waiting at most the
    /// configured deadline. Safe to call from async code on any runtime flavour (it blocks the
    /// calling thread for at most the deadline).
    pub fn shutdown(&self) -> ShutdownOutcome {
        self.shutdown_with_deadline(self.deadline)
    }

    /// As [`shutdown`](Self::shutdown), with this deadline.
    pub fn shutdown_with_deadline(&self, deadline: Duration) -> ShutdownOutcome {
        let taken = self
            .pipeline
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(pipeline) = taken else {
            return ShutdownOutcome::AlreadyShutDown;
        };
        // Before the provider's own clock starts, so an error at its deadline is seen as such.
        let started = Instant::now();
        let (tx, rx) = mpsc::sync_channel(1);
        let spawned = thread::Builder::new()
            .name("sinew-otel-shutdown".to_owned())
            .spawn(move || {
                let Pipeline { provider, after } = pipeline;
                let result = provider.shutdown_with_timeout(deadline);
                // The receiver may have given up (timed out): nothing to do then.
                let _ = tx.send(result);
                drop(provider);
                if let Some(after) = after {
                    after();
                }
            });
        if let Err(error) = spawned {
            return ShutdownOutcome::Failed(ShutdownFailure {
                message: format!("could not spawn the shutdown thread: {error}"),
            });
        }
        let outcome = match rx.recv_timeout(deadline) {
            Ok(Ok(())) => ShutdownOutcome::Flushed,
            // The provider wraps a processor's timeout in `InternalFailure`: an error at the
            // deadline is a timeout.
            Ok(Err(OTelSdkError::InternalFailure(message)))
                if started.elapsed() >= deadline || message.contains("Timeout(") =>
            {
                ShutdownOutcome::TimedOut
            }
            Ok(Err(OTelSdkError::Timeout(_))) | Err(mpsc::RecvTimeoutError::Timeout) => {
                ShutdownOutcome::TimedOut
            }
            Ok(Err(OTelSdkError::AlreadyShutdown)) => ShutdownOutcome::AlreadyShutDown,
            Ok(Err(error)) => ShutdownOutcome::Failed(ShutdownFailure {
                message: error.to_string(),
            }),
            Err(mpsc::RecvTimeoutError::Disconnected) => ShutdownOutcome::Failed(ShutdownFailure {
                message: "the shutdown thread panicked".to_owned(),
            }),
        };
        tracing::debug!(?outcome, ?deadline, "tracing shut down");
        outcome
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// A [`Guard`] whose subscriber is the current thread's default only; see
/// [`init_scoped`](super::init_scoped). Dropping it shuts down, then restores the previous
/// default subscriber. Must be dropped on the thread that created it.
#[must_use = "dropping the guard uninstalls the subscriber at once"]
pub struct ScopedGuard {
    // Field order is drop order: shut down while the subscriber is still installed.
    guard: Guard,
    _default: tracing::subscriber::DefaultGuard,
}

impl fmt::Debug for ScopedGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopedGuard")
            .field("guard", &self.guard)
            .finish_non_exhaustive()
    }
}

impl ScopedGuard {
    pub(crate) fn new(guard: Guard, default: tracing::subscriber::DefaultGuard) -> Self {
        Self {
            guard,
            _default: default,
        }
    }
}

impl std::ops::Deref for ScopedGuard {
    type Target = Guard;

    fn deref(&self) -> &Guard {
        &self.guard
    }
}
