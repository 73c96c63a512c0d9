#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Picker distributions.

use std::collections::HashMap;

use proptest::prelude::*;
use sinew_discovery::{Instance, P2c, Picker, Random, Rendezvous, RoundRobin, Weighted};

fn instances(weights: &[u32]) -> Vec<Instance> {
    weights
        .iter()
        .enumerate()
        .map(|(i, w)| {
            Instance::new(format!("i{i:03}"), "s", "10.0.0.1", 8000 + i as u16).weight(*w)
        })
        .collect()
}

fn counts(picker: &impl Picker, set: &[Instance], n: usize) -> Vec<usize> {
    let mut counts = vec![0; set.len()];
    for _ in 0..n {
        counts[picker.pick(set, None).unwrap()] += 1;
    }
    counts
}

#[test]
fn every_picker_returns_none_on_an_empty_set() {
    let empty: [Instance; 0] = [];
    assert_eq!(RoundRobin::new().pick(&empty, None), None);
    assert_eq!(Random::with_seed(1).pick(&empty, None), None);
    assert_eq!(Weighted::with_seed(1).pick(&empty, None), None);
    assert_eq!(P2c::with_seed(1).pick(&empty, None), None);
    assert_eq!(Rendezvous::new().pick(&empty, Some(b"k")), None);
}

#[test]
fn round_robin_is_exactly_even() {
    let set = instances(&[1, 1, 1, 1, 1]);
    assert_eq!(counts(&RoundRobin::new(), &set, 1000), vec![200; 5]);
}

#[test]
fn random_is_roughly_uniform() {
    let set = instances(&[1; 10]);
    let c = counts(&Random::with_seed(42), &set, 100_000);
    // Expected 10 000 each; 5 sigma is about 475.
    for n in c {
        assert!((9_500..=10_500).contains(&n), "{n}");
    }
}

#[test]
fn random_with_the_same_seed_repeats() {
    let set = instances(&[1; 7]);
    let a = counts(&Random::with_seed(9), &set, 50);
    let b = counts(&Random::with_seed(9), &set, 50);
    assert_eq!(a, b);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Each instance's share of picks is its share of the total weight, within 5 sigma of the
    /// binomial deviation (plus a small absolute floor).
    #[test]
    fn weighted_proportions_follow_weights(
        weights in proptest::collection::vec(1_u32..50, 1..8),
        seed in any::<u64>(),
    ) {
        let set = instances(&weights);
        let n = 40_000_usize;
        let c = counts(&Weighted::with_seed(seed), &set, n);
        let total: u32 = weights.iter().sum();
        for (i, w) in weights.iter().enumerate() {
            let p = f64::from(*w) / f64::from(total);
            let expected = p * n as f64;
            let sigma = (n as f64 * p * (1.0 - p)).sqrt();
            let diff = (c[i] as f64 - expected).abs();
            prop_assert!(diff <= 5.0 * sigma + 5.0, "instance {i}: {} picks, expected {expected:.0} (sigma {sigma:.1})", c[i]);
        }
    }

    /// Rendezvous: removing one instance moves only the keys it owned.
    #[test]
    fn rendezvous_moves_only_the_removed_instances_keys(
        size in 2_usize..12,
        removed in 0_usize..12,
    ) {
        let removed = removed % size;
        let set = instances(&vec![1; size]);
        let mut smaller = set.clone();
        let gone = smaller.remove(removed);
        let picker = Rendezvous::new();
        for key in 0..300_u32 {
            let key = key.to_be_bytes();
            let before = &set[picker.pick(&set, Some(&key)).unwrap()];
            let after = &smaller[picker.pick(&smaller, Some(&key)).unwrap()];
            if before.id != gone.id {
                prop_assert_eq!(&before.id, &after.id);
            }
        }
    }
}

#[test]
fn rendezvous_spreads_keys_by_weight() {
    let set = instances(&[1, 3]);
    let picker = Rendezvous::new();
    let mut c: HashMap<usize, usize> = HashMap::new();
    for key in 0..20_000_u32 {
        *c.entry(picker.pick(&set, Some(&key.to_be_bytes())).unwrap())
            .or_default() += 1;
    }
    // Expected 5 000 / 15 000.
    let light = c[&0];
    assert!((4_500..=5_500).contains(&light), "{light}");
}

#[test]
fn p2c_avoids_the_loaded_instance() {
    let set = instances(&[1, 1, 1, 1]);
    let p2c = P2c::with_seed(3);
    let _busy: Vec<_> = (0..10).map(|_| p2c.begin(&set[0])).collect();
    let c = counts(&p2c, &set, 10_000);
    // Instance 0 is only chosen when both candidates are... never: it always loses a comparison.
    assert_eq!(c[0], 0, "{c:?}");
    for n in &c[1..] {
        assert!(*n > 2_500, "{c:?}");
    }
}

#[test]
fn p2c_counts_in_flight_and_forgets_absent_instances() {
    let set = instances(&[1, 1]);
    let p2c = P2c::with_seed(3);
    let guard = p2c.begin(&set[1]);
    assert_eq!(p2c.in_flight(&set[1].id), 1);
    p2c.retain(&set[..1]);
    // Still in flight: kept.
    assert_eq!(p2c.in_flight(&set[1].id), 1);
    drop(guard);
    p2c.retain(&set[..1]);
    assert_eq!(p2c.in_flight(&set[1].id), 0);
}
