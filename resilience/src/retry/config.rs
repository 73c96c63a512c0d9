//! The retry policy: how many attempts, how long to wait, what to retry.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::backoff::{Backoff, BackoffConfig, BackoffState, Jitter};
use super::budget::RetryBudget;
use super::hint::{ErrorHint, Hint, RetryHint};
use super::replay::{CloneReplay, Replay};
use super::rng::SeedSource;
use crate::classify::{Classify, DefaultClassifier, Outcome};
use crate::error::ConfigError;

/// What to retry and how: attempts, backoff and jitter, deadline, hints, budget, classifier
/// and request replay. Shared by [`Retry`](super::Retry), [`RetryLayer`](super::RetryLayer)
/// and the [`retry`](super::retry()) helper.
///
/// Build one with [`RetryPolicy::builder`] (or [`RetryPolicy::http_builder`] with feature
/// `http`); [`RetryPolicy::default`] gives the defaults below.
///
/// A request is retried only when all of these hold:
///
/// 1. the classifier calls the result [`Outcome::Failure`] (success and ignored stop);
/// 2. fewer than `max_attempts` calls have been made (the first call counts);
/// 3. the request could be replayed ([`Replay::replay`] gave a copy) and is idempotent, or
///    `retry_non_idempotent` is set;
/// 4. the hint reader did not say [`Hint::Stop`], and any hinted wait is at most
///    `max_retry_after` (a longer hint means **give up** and return the result: the server
///    asked for more patience than we are configured to have, and retrying earlier than it
///    asked would only add load);
/// 5. the wait (hinted, else the backoff delay) ends before the deadline, if one is set;
/// 6. the budget, if any, has a token.
///
/// # Default
///
/// 3 attempts (the first call and two retries), base delay 100 ms, max delay 10 s,
/// [`Jitter::Full`], no total deadline, `max_retry_after` 10 s, non-idempotent requests not
/// retried, a random seed, a fresh [`RetryBudget::default`] (20 % + 10/s over 10 s),
/// [`DefaultClassifier`], [`ErrorHint`] and [`CloneReplay`].
///
/// # Clone
///
/// Clones share everything, the budget and the seed counter included (an `Arc`).
pub struct RetryPolicy<C = DefaultClassifier, H = ErrorHint, R = CloneReplay> {
    shared: Arc<Shared<C, H, R>>,
}

struct Shared<C, H, R> {
    settings: Settings,
    seeds: SeedSource,
    budget: Option<RetryBudget>,
    classifier: C,
    hint: H,
    replay: R,
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    max_attempts: u32,
    backoff: BackoffConfig,
    deadline: Option<Duration>,
    max_retry_after: Duration,
    retry_non_idempotent: bool,
}

const DEFAULT_SETTINGS: Settings = Settings {
    max_attempts: 3,
    backoff: BackoffConfig {
        base: Duration::from_millis(100),
        max: Duration::from_secs(10),
        jitter: Jitter::Full,
    },
    deadline: None,
    max_retry_after: Duration::from_secs(10),
    retry_non_idempotent: false,
};

impl<C, H, R> Clone for RetryPolicy<C, H, R> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<C: fmt::Debug, H: fmt::Debug, R: fmt::Debug> fmt::Debug for RetryPolicy<C, H, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &*self.shared;
        f.debug_struct("RetryPolicy")
            .field("max_attempts", &s.settings.max_attempts)
            .field("base_delay", &s.settings.backoff.base)
            .field("max_delay", &s.settings.backoff.max)
            .field("jitter", &s.settings.backoff.jitter)
            .field("deadline", &s.settings.deadline)
            .field("max_retry_after", &s.settings.max_retry_after)
            .field("retry_non_idempotent", &s.settings.retry_non_idempotent)
            .field("budget", &s.budget)
            .field("classifier", &s.classifier)
            .field("hint", &s.hint)
            .field("replay", &s.replay)
            .finish_non_exhaustive()
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            shared: Arc::new(Shared {
                settings: DEFAULT_SETTINGS,
                seeds: SeedSource::random(),
                budget: Some(RetryBudget::default()),
                classifier: DefaultClassifier::new(),
                hint: ErrorHint::new(),
                replay: CloneReplay::new(),
            }),
        }
    }
}

impl RetryPolicy {
    /// A builder with the default settings.
    pub fn builder() -> RetryPolicyBuilder {
        RetryPolicyBuilder::new()
    }
}

impl<C, H, R> RetryPolicy<C, H, R> {
    /// The maximum number of calls per request, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.shared.settings.max_attempts
    }

    /// The budget retries draw from, if any.
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.shared.budget.as_ref()
    }

    /// The backoff delays of one fresh request (see [`Backoff`]); each call takes a new random
    /// stream, as a new request does.
    pub fn backoff(&self) -> Backoff {
        Backoff::new(
            self.shared.settings.backoff,
            BackoffState::new(self.shared.seeds.stream()),
        )
    }

    /// Starts tracking one request: deposits in the budget. The request's random stream is
    /// drawn at its first retry, so the success path does not touch the shared seed counter.
    pub(crate) fn begin(&self) -> Attempts {
        if let Some(b) = &self.shared.budget {
            b.deposit();
        }
        Attempts {
            calls: 1,
            backoff: None,
            started: self.shared.settings.deadline.map(|_| Instant::now()),
        }
    }

    /// `true` when a call with `calls` made so far may still be followed by another.
    pub(crate) fn has_attempts_left(&self, calls: u32) -> bool {
        calls < self.shared.settings.max_attempts
    }

    /// The copy of `req` to keep for a retry, if it may be retried at all.
    pub(crate) fn replay<Req>(&self, req: &Req) -> Option<Req>
    where
        R: Replay<Req>,
    {
        let s = &*self.shared;
        if s.settings.retry_non_idempotent || s.replay.is_idempotent(req) {
            s.replay.replay(req)
        } else {
            None
        }
    }

    /// Decides whether to retry after `result`: the wait before the next call, or `None` to
    /// return `result` as it is. Withdraws from the budget when it says yes.
    pub(crate) fn decide<Res, E>(
        &self,
        result: &Result<Res, E>,
        state: &mut Attempts,
        replayable: bool,
    ) -> Option<Duration>
    where
        C: Classify<Res, E>,
        H: RetryHint<Res, E>,
    {
        let s = &*self.shared;
        if s.classifier.classify(result) != Outcome::Failure {
            return None;
        }
        let attempt = state.calls;
        if attempt >= s.settings.max_attempts {
            tracing::debug!(attempt, "retry: attempts exhausted");
            return None;
        }
        if !replayable {
            tracing::debug!(attempt, "retry: request cannot be replayed");
            return None;
        }
        let delay = match s.hint.hint(result) {
            Hint::Stop => {
                tracing::debug!(attempt, "retry: server asked not to retry");
                return None;
            }
            Hint::After(hint) if hint > s.settings.max_retry_after => {
                tracing::debug!(
                    attempt,
                    hint_ms = hint.as_millis() as u64,
                    cap_ms = s.settings.max_retry_after.as_millis() as u64,
                    "retry: hinted wait exceeds max_retry_after; giving up"
                );
                return None;
            }
            Hint::After(hint) => hint,
            Hint::None => state
                .backoff
                .get_or_insert_with(|| BackoffState::new(s.seeds.stream()))
                .delay(&s.settings.backoff, attempt - 1),
        };
        if let (Some(deadline), Some(started)) = (s.settings.deadline, state.started)
            && started.elapsed().saturating_add(delay) > deadline
        {
            tracing::debug!(attempt, "retry: next attempt would pass the deadline");
            return None;
        }
        if let Some(budget) = &s.budget
            && !budget.try_withdraw()
        {
            tracing::warn!(attempt, "retry budget exhausted; not retrying");
            return None;
        }
        tracing::debug!(
            attempt,
            delay_ms = delay.as_millis() as u64,
            "retrying after failed attempt"
        );
        state.calls += 1;
        Some(delay)
    }
}

/// Per-request retry state.
#[derive(Debug)]
pub(crate) struct Attempts {
    /// Calls made or decided on so far, the first included.
    calls: u32,
    /// The request's own random stream, taken at its first retry.
    backoff: Option<BackoffState>,
    started: Option<Instant>,
}

impl Attempts {
    pub(crate) const fn calls(&self) -> u32 {
        self.calls
    }
}

/// Builds a [`RetryPolicy`]; see there for the defaults.
///
/// Setters take and return the builder; [`build`](Self::build) validates everything once.
#[must_use]
pub struct RetryPolicyBuilder<C = DefaultClassifier, H = ErrorHint, R = CloneReplay> {
    settings: Settings,
    seed: Option<u64>,
    budget: Option<RetryBudget>,
    classifier: C,
    hint: H,
    replay: R,
}

impl<C: fmt::Debug, H: fmt::Debug, R: fmt::Debug> fmt::Debug for RetryPolicyBuilder<C, H, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicyBuilder")
            .field("settings", &self.settings)
            .field("seed", &self.seed)
            .field("budget", &self.budget)
            .field("classifier", &self.classifier)
            .field("hint", &self.hint)
            .field("replay", &self.replay)
            .finish()
    }
}

impl Default for RetryPolicyBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl RetryPolicyBuilder {
    /// A builder with the default settings.
    pub fn new() -> Self {
        Self {
            settings: DEFAULT_SETTINGS,
            seed: None,
            budget: Some(RetryBudget::default()),
            classifier: DefaultClassifier::new(),
            hint: ErrorHint::new(),
            replay: CloneReplay::new(),
        }
    }
}

impl<C, H, R> RetryPolicyBuilder<C, H, R> {
    /// The maximum number of calls per request, the first call included (so 1 never retries).
    /// Must be at least 1.
    pub const fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.settings.max_attempts = max_attempts;
        self
    }

    /// The delay before the first retry; retry `n` waits `base_delay·2ⁿ` before jitter.
    /// Must be non-zero.
    pub const fn base_delay(mut self, base_delay: Duration) -> Self {
        self.settings.backoff.base = base_delay;
        self
    }

    /// The longest backoff delay, jitter included. Must be at least `base_delay`.
    pub const fn max_delay(mut self, max_delay: Duration) -> Self {
        self.settings.backoff.max = max_delay;
        self
    }

    /// How backoff delays are randomised.
    pub const fn jitter(mut self, jitter: Jitter) -> Self {
        self.settings.backoff.jitter = jitter;
        self
    }

    /// A total time limit across all attempts, counted from the first call: no retry is
    /// started whose wait would end past it. It does not cut short an attempt in flight; put a
    /// timeout layer inside the retry layer for that. Must be non-zero.
    pub const fn deadline(mut self, deadline: Duration) -> Self {
        self.settings.deadline = Some(deadline);
        self
    }

    /// The longest `Retry-After` (or other hinted) wait honoured. A longer hint gives up and
    /// returns the result rather than retrying early.
    pub const fn max_retry_after(mut self, max_retry_after: Duration) -> Self {
        self.settings.max_retry_after = max_retry_after;
        self
    }

    /// Retries requests that [`Replay::is_idempotent`] calls non-idempotent (for HTTP: methods
    /// other than GET, HEAD, OPTIONS, TRACE, PUT and DELETE without an `Idempotency-Key`).
    pub const fn retry_non_idempotent(mut self, yes: bool) -> Self {
        self.settings.retry_non_idempotent = yes;
        self
    }

    /// Fixes the base seed of the per-request random streams, for reproducible tests. Requests
    /// still get distinct streams.
    pub const fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The budget retries draw from; pass a clone of one budget to several policies to limit
    /// them together.
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Retries without a budget (only attempts, deadline and hints limit them).
    pub fn no_budget(mut self) -> Self {
        self.budget = None;
        self
    }

    /// Decides which results are failures worth retrying.
    pub fn classifier<C2>(self, classifier: C2) -> RetryPolicyBuilder<C2, H, R> {
        RetryPolicyBuilder {
            settings: self.settings,
            seed: self.seed,
            budget: self.budget,
            classifier,
            hint: self.hint,
            replay: self.replay,
        }
    }

    /// Reads retry hints (`Retry-After` and the like) from failed results.
    pub fn hint<H2>(self, hint: H2) -> RetryPolicyBuilder<C, H2, R> {
        RetryPolicyBuilder {
            settings: self.settings,
            seed: self.seed,
            budget: self.budget,
            classifier: self.classifier,
            hint,
            replay: self.replay,
        }
    }

    /// Makes the copies of requests that retries send.
    pub fn replay<R2>(self, replay: R2) -> RetryPolicyBuilder<C, H, R2> {
        RetryPolicyBuilder {
            settings: self.settings,
            seed: self.seed,
            budget: self.budget,
            classifier: self.classifier,
            hint: self.hint,
            replay,
        }
    }

    /// Validates the settings and builds the policy.
    ///
    /// # Errors
    ///
    /// - [`ConfigError::Zero`] for `max_attempts`, `base_delay`, `max_delay` or `deadline`
    ///   equal to zero;
    /// - [`ConfigError::LessThan`] when `max_delay` is below `base_delay`;
    /// - [`ConfigError::OutOfRange`] for a [`Jitter::Ratio`] outside `0.0..=1.0`.
    pub fn build(self) -> Result<RetryPolicy<C, H, R>, ConfigError> {
        let s = self.settings;
        if s.max_attempts == 0 {
            return Err(ConfigError::Zero {
                field: "max_attempts",
            });
        }
        ConfigError::check_nonzero("base_delay", s.backoff.base)?;
        ConfigError::check_nonzero("max_delay", s.backoff.max)?;
        if s.backoff.max < s.backoff.base {
            return Err(ConfigError::LessThan {
                field: "max_delay",
                value: format!("{:?}", s.backoff.max),
                other: "base_delay",
                other_value: format!("{:?}", s.backoff.base),
            });
        }
        if let Jitter::Ratio(r) = s.backoff.jitter {
            ConfigError::check_range("jitter ratio", r, 0.0, 1.0)?;
        }
        if let Some(deadline) = s.deadline {
            ConfigError::check_nonzero("deadline", deadline)?;
        }
        Ok(RetryPolicy {
            shared: Arc::new(Shared {
                settings: s,
                seeds: self.seed.map_or_else(SeedSource::random, SeedSource::new),
                budget: self.budget,
                classifier: self.classifier,
                hint: self.hint,
                replay: self.replay,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_validates() {
        let b = RetryPolicy::builder;
        assert!(b().build().is_ok());
        assert!(matches!(
            b().max_attempts(0).build(),
            Err(ConfigError::Zero {
                field: "max_attempts"
            })
        ));
        assert!(b().base_delay(Duration::ZERO).build().is_err());
        assert!(matches!(
            b().base_delay(Duration::from_secs(2))
                .max_delay(Duration::from_secs(1))
                .build(),
            Err(ConfigError::LessThan {
                field: "max_delay",
                ..
            })
        ));
        assert!(matches!(
            b().jitter(Jitter::Ratio(1.5)).build(),
            Err(ConfigError::OutOfRange { .. })
        ));
        assert!(b().jitter(Jitter::Ratio(f64::NAN)).build().is_err());
        assert!(b().deadline(Duration::ZERO).build().is_err());
        assert!(b().jitter(Jitter::GRPC).build().is_ok());
    }

    #[test]
    fn seeded_policies_repeat_and_requests_differ() {
        let p = RetryPolicy::builder().seed(42).build().unwrap();
        let q = RetryPolicy::builder().seed(42).build().unwrap();
        let a: Vec<_> = p.backoff().take(5).collect();
        let b: Vec<_> = p.backoff().take(5).collect();
        assert_ne!(a, b);
        assert_eq!(a, q.backoff().take(5).collect::<Vec<_>>());
    }
}
