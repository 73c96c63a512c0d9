//! Exponential backoff with a choice of jitter.

use std::time::Duration;

use super::rng::SplitMix64;

/// How the exponential delay `d = min(max_delay, base_delay·2ⁿ)` before retry `n` (0 for the
/// first retry) is randomised.
///
/// Every form is capped at `max_delay` after jitter is applied, so no delay ever exceeds it.
///
/// | variant | delay before retry `n` | median |
/// |---|---|---|
/// | [`None`](Jitter::None) | `d` | `d` |
/// | [`Full`](Jitter::Full) | uniform in `0..=d` (AWS "full jitter") | `d/2` |
/// | [`Decorrelated`](Jitter::Decorrelated) | Polly `DecorrelatedJitterBackoffV2`, below | see below |
/// | [`Ratio(r)`](Jitter::Ratio) | uniform in `d·(1−r)..=d·(1+r)`, then capped | `d` (below the cap) |
///
/// `Decorrelated` draws `t = n + u` with `u` uniform in `[0, 1)`, computes
/// `next = 2ᵗ·tanh(√(4t))` and waits `(next − prev)·(1/1.4)·base_delay`, where `prev` is the
/// previous retry's `next` (0 at first). Each delay lies in
/// `0 ≤ delay ≤ min(max_delay, base_delay·2ⁿ⁺¹/1.4)`. The *total* wait up to retry `n`
/// (`next/1.4·base_delay`) has its median near `base_delay·2ⁿ` (0.9× for `n = 0`, within a
/// few per cent after), so a single delay's median is near `base_delay·2ⁿ⁻¹` for `n ≥ 1`:
/// Polly's "retries at times `f·2ⁿ`". The curve is smooth, without the spikes of AWS's
/// decorrelated formula (Polly issue #530).
///
/// gRPC's retry design (A6) uses `Ratio(0.2)`, available as [`Jitter::GRPC`].
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Jitter {
    /// No jitter: exactly `min(max_delay, base_delay·2ⁿ)`.
    None,
    /// Uniform in `0..=d` (AWS full jitter).
    Full,
    /// Polly's decorrelated jitter V2.
    Decorrelated,
    /// Uniform in `d·(1−r)..=d·(1+r)`; `r` must lie in `0.0..=1.0`.
    Ratio(f64),
}

impl Jitter {
    /// gRPC's jitter: ±20 % around the exponential delay.
    pub const GRPC: Self = Self::Ratio(0.2);
}

/// Backoff parameters, validated by the policy builder.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BackoffConfig {
    pub(crate) base: Duration,
    pub(crate) max: Duration,
    pub(crate) jitter: Jitter,
}

/// Polly's scaling factor, putting the decorrelated medians near `base·2ⁿ`.
const RP_SCALING: f64 = 1.0 / 1.4;
/// Polly's smoothing factor for the first delay.
const P_FACTOR: f64 = 4.0;

/// The per-request state of a backoff: its random stream and, for decorrelated jitter, the
/// previous value of the formula.
#[derive(Debug, Clone)]
pub(crate) struct BackoffState {
    rng: SplitMix64,
    prev: f64,
}

impl BackoffState {
    pub(crate) const fn new(rng: SplitMix64) -> Self {
        Self { rng, prev: 0.0 }
    }

    /// The delay before retry `n` (0 for the first retry).
    pub(crate) fn delay(&mut self, cfg: &BackoffConfig, n: u32) -> Duration {
        let base = cfg.base.as_secs_f64();
        let cap = cfg.max.as_secs_f64();
        // `powi` saturates to infinity, which `min` then caps.
        let exp = (base * 2f64.powi(i32::try_from(n).unwrap_or(i32::MAX))).min(cap);
        let secs = match cfg.jitter {
            Jitter::None => exp,
            Jitter::Full => exp * self.unit_inclusive(),
            Jitter::Ratio(r) => exp * (1.0 - r + 2.0 * r * self.unit_inclusive()),
            Jitter::Decorrelated => {
                let t = f64::from(n) + self.rng.next_f64();
                let next = t.exp2() * (P_FACTOR * t).sqrt().tanh();
                let value = (next - self.prev) * RP_SCALING * base;
                self.prev = next;
                if value.is_nan() { cap } else { value }
            }
        };
        clamp(secs, cap, cfg.max)
    }

    /// A uniform sample in `[0, 1]`.
    fn unit_inclusive(&mut self) -> f64 {
        // 53 random bits over 2^53 − 1, so both ends can occur.
        const SCALE: f64 = 1.0 / ((1u64 << 53) - 1) as f64;
        (self.rng.next_u64() >> 11) as f64 * SCALE
    }
}

/// Converts to a `Duration` in `0..=max` without panicking on NaN, infinities or overflow.
fn clamp(secs: f64, cap_secs: f64, max: Duration) -> Duration {
    if secs.is_nan() || secs <= 0.0 {
        Duration::ZERO
    } else if secs >= cap_secs {
        max
    } else {
        Duration::try_from_secs_f64(secs).map_or(max, |d| d.min(max))
    }
}

/// The delays a policy would wait before each retry of one request, ignoring `Retry-After`
/// hints, the deadline and the budget.
///
/// Returned by [`RetryPolicy::backoff`](super::RetryPolicy::backoff); each call takes a fresh
/// random stream, exactly as a new request does. The iterator never ends: item `n` is the delay
/// before retry `n` (the `n+1`-th call), so `take(max_attempts − 1)` gives the delays a request
/// can see.
#[derive(Debug, Clone)]
pub struct Backoff {
    cfg: BackoffConfig,
    state: BackoffState,
    n: u32,
}

impl Backoff {
    pub(crate) const fn new(cfg: BackoffConfig, state: BackoffState) -> Self {
        Self { cfg, state, n: 0 }
    }
}

impl Iterator for Backoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let d = self.state.delay(&self.cfg, self.n);
        self.n = self.n.saturating_add(1);
        Some(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(jitter: Jitter) -> BackoffConfig {
        BackoffConfig {
            base: Duration::from_millis(100),
            max: Duration::from_secs(10),
            jitter,
        }
    }

    #[test]
    fn none_is_exponential_and_capped() {
        let mut s = BackoffState::new(SplitMix64::new(1));
        let c = cfg(Jitter::None);
        let got: Vec<u128> = (0..10).map(|n| s.delay(&c, n).as_millis()).collect();
        assert_eq!(
            got,
            [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000]
        );
        assert_eq!(s.delay(&c, u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn huge_attempts_never_panic_or_exceed_cap() {
        for j in [Jitter::Full, Jitter::Decorrelated, Jitter::Ratio(1.0)] {
            let mut s = BackoffState::new(SplitMix64::new(3));
            for n in (0..2000).chain([u32::MAX - 1, u32::MAX]) {
                assert!(s.delay(&cfg(j), n) <= Duration::from_secs(10));
            }
        }
    }
}
