//! Case 34 (backoff bounds and medians) and budget properties.

use std::time::Duration;

use proptest::prelude::*;
use sinew_resilience::retry::{Jitter, RetryBudget, RetryPolicy};

fn policy(base: Duration, max: Duration, jitter: Jitter, seed: u64) -> RetryPolicy {
    RetryPolicy::builder()
        .base_delay(base)
        .max_delay(max)
        .jitter(jitter)
        .seed(seed)
        .build()
        .unwrap()
}

/// `min(max, base·2ⁿ)` in seconds.
fn exp(base: Duration, max: Duration, n: u32) -> f64 {
    (base.as_secs_f64() * 2f64.powi(n as i32)).min(max.as_secs_f64())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

const SAMPLES: usize = 10_000;
const TOL: f64 = 1e-9;

fn jitter() -> impl Strategy<Value = Jitter> {
    prop_oneof![
        Just(Jitter::None),
        Just(Jitter::Full),
        Just(Jitter::Decorrelated),
        (0.0..=1.0f64).prop_map(Jitter::Ratio),
    ]
}

proptest! {
    /// Case 34, bounds: no delay ever exceeds `max_delay`, and each lies in its jitter's range:
    /// None = d, Full ∈ [0, d], Ratio(r) ∈ [d(1−r), min(max, d(1+r))],
    /// Decorrelated ∈ [0, min(max, base·2ⁿ⁺¹/1.4)], where d = min(max, base·2ⁿ).
    #[test]
    fn case34_backoff_stays_within_bounds(
        base_ms in 1u64..5_000,
        extra_ms in 0u64..120_000,
        jitter in jitter(),
        seed: u64,
    ) {
        let base = Duration::from_millis(base_ms);
        let max = base + Duration::from_millis(extra_ms);
        let p = policy(base, max, jitter, seed);
        for (n, d) in p.backoff().take(40).enumerate() {
            let n = n as u32;
            prop_assert!(d <= max);
            let (d, e) = (d.as_secs_f64(), exp(base, max, n));
            match jitter {
                Jitter::None => prop_assert!((d - e).abs() < 1e-6),
                Jitter::Full => prop_assert!(d <= e + TOL),
                Jitter::Ratio(r) => prop_assert!(d >= e * (1.0 - r) - 1e-6 && d <= (e * (1.0 + r)).min(max.as_secs_f64()) + TOL),
                Jitter::Decorrelated => {
                    let upper = (base.as_secs_f64() * 2f64.powi(n as i32 + 1) / 1.4).min(max.as_secs_f64());
                    prop_assert!(d <= upper + 1e-6, "n={n} d={d} upper={upper}");
                }
                _ => unreachable!(),
            }
        }
    }

    /// The budget against a model: with time moving in whole slots (ttl/10), a retry is
    /// allowed exactly when withdrawals in the last 10 slots are below
    /// `min_per_sec·ttl + ⌊percent·deposits in the last 10 slots⌋`, so it never allows more.
    #[test]
    fn budget_never_allows_more_than_reserve_plus_percent(
        min_per_sec in 0u32..5,
        percent in 0.0..2.0f64,
        ops in prop::collection::vec((0u8..3, 0u64..4), 1..300),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let budget = RetryBudget::builder()
                .ttl(Duration::from_secs(10))
                .min_per_sec(min_per_sec)
                .retry_percent(percent)
                .build()
                .unwrap();
            let reserve = u64::from(min_per_sec) * 10;
            // (slot, deposits, withdrawals)
            let mut model: Vec<(u64, u64, u64)> = vec![(0, 0, 0)];
            let mut slot = 0u64;
            for (op, advance) in ops {
                match op {
                    0 => model.last_mut().unwrap().1 += 1,
                    1 => {
                        let window = model.iter().filter(|m| m.0 + 10 > slot);
                        let (d, w) = window.fold((0, 0), |(d, w), m| (d + m.1, w + m.2));
                        let allowed = reserve + (percent * d as f64).floor() as u64;
                        let ok = budget.try_withdraw();
                        prop_assert_eq!(ok, w < allowed, "slot {} d {} w {}", slot, d, w);
                        if ok {
                            model.last_mut().unwrap().2 += 1;
                            prop_assert!(w < allowed);
                        }
                        continue;
                    }
                    _ => {
                        tokio::time::advance(Duration::from_secs(advance)).await;
                        slot += advance;
                        if advance > 0 {
                            model.push((slot, 0, 0));
                        }
                        continue;
                    }
                }
                budget.deposit();
            }
            Ok(())
        })?;
    }
}

#[test]
fn case34_full_jitter_medians_are_half_the_exponential_delay() {
    // Property: delay n is uniform in [0, d], d = min(max, base·2ⁿ), so its median is d/2;
    // over 10 000 samples it lies within ±5 % of d/2.
    let base = Duration::from_millis(100);
    let max = Duration::from_secs(30);
    let p = policy(base, max, Jitter::Full, 34);
    for n in 0..8u32 {
        let samples: Vec<f64> = (0..SAMPLES)
            .map(|_| p.backoff().nth(n as usize).unwrap().as_secs_f64())
            .collect();
        let d = exp(base, max, n);
        assert!(samples.iter().all(|s| *s <= d + TOL && *s >= 0.0));
        let m = median(samples);
        assert!((m / (d / 2.0) - 1.0).abs() < 0.05, "n={n} median={m} d={d}");
    }
}

#[test]
fn case34_decorrelated_medians_track_base_times_two_to_the_n() {
    // Property (Polly V2): the total wait up to and including retry n has its median within
    // ±15 % of base·2ⁿ (0.9·base for n = 0), and stays below base·2ⁿ⁺¹/1.4; each single delay is
    // at most base·2ⁿ⁺¹/1.4, and its median is near base·2ⁿ⁻¹ for n ≥ 1.
    let base = Duration::from_millis(100);
    let max = Duration::from_secs(3600);
    let p = policy(base, max, Jitter::Decorrelated, 34);
    let runs: Vec<Vec<f64>> = (0..SAMPLES)
        .map(|_| p.backoff().take(8).map(|d| d.as_secs_f64()).collect())
        .collect();
    let b = base.as_secs_f64();
    for n in 0..8usize {
        let two_n = 2f64.powi(n as i32);
        let totals: Vec<f64> = runs.iter().map(|r| r[..=n].iter().sum()).collect();
        let singles: Vec<f64> = runs.iter().map(|r| r[n]).collect();
        assert!(totals.iter().all(|t| *t <= b * 2.0 * two_n / 1.4 + 1e-6));
        assert!(
            singles
                .iter()
                .all(|s| *s >= 0.0 && *s <= b * 2.0 * two_n / 1.4 + 1e-6)
        );
        let total_ratio = median(totals) / (b * two_n);
        assert!(
            (0.85..=1.15).contains(&total_ratio),
            "n={n} total median ratio {total_ratio}"
        );
        if n >= 1 {
            let single_ratio = median(singles) / (b * two_n / 2.0);
            assert!(
                (0.85..=1.3).contains(&single_ratio),
                "n={n} single median ratio {single_ratio}"
            );
        }
    }
}

#[test]
fn case34_ratio_jitter_median_is_the_exponential_delay() {
    let base = Duration::from_millis(100);
    let max = Duration::from_secs(60);
    let p = policy(base, max, Jitter::GRPC, 34);
    for n in 0..6u32 {
        let samples: Vec<f64> = (0..SAMPLES)
            .map(|_| p.backoff().nth(n as usize).unwrap().as_secs_f64())
            .collect();
        let d = exp(base, max, n);
        assert!(
            samples
                .iter()
                .all(|s| *s >= 0.8 * d - 1e-6 && *s <= 1.2 * d + 1e-6)
        );
        let m = median(samples);
        assert!((m / d - 1.0).abs() < 0.02, "n={n} median={m} d={d}");
    }
}
