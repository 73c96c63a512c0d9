//! loom model of the retry budget's compare-and-swap accounting. Run with
//! `RUSTFLAGS="--cfg sinew_loom" cargo test -p sinew-resilience --release --lib loom`.

use std::time::Duration;

use loom::sync::Arc;
use loom::thread;

use super::budget::RetryBudget;

fn budget() -> RetryBudget {
    RetryBudget::builder()
        .ttl(Duration::from_secs(10))
        .min_per_sec(0)
        .retry_percent(0.5)
        .build()
        .unwrap()
}

#[test]
fn loom_racing_withdrawals_never_overdraw() {
    loom::model(|| {
        let budget = Arc::new(budget());
        budget.deposit();
        budget.deposit(); // 50 % of 2 deposits: exactly one retry allowed
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let b = budget.clone();
                thread::spawn(move || b.try_withdraw())
            })
            .collect();
        let granted = threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .filter(|ok| *ok)
            .count();
        assert_eq!(granted, 1);
        assert_eq!(budget.remaining(), 0);
    });
}

#[test]
fn loom_deposit_racing_a_withdrawal_is_never_lost() {
    loom::model(|| {
        let budget = Arc::new(budget());
        budget.deposit();
        let b = budget.clone();
        let depositor = thread::spawn(move || b.deposit());
        let granted = budget.try_withdraw();
        depositor.join().unwrap();
        // Whether the withdrawal saw one deposit (no retry allowed) or two (one allowed), the
        // final state is consistent with both deposits counted.
        let remaining = budget.remaining();
        assert_eq!(u64::from(!granted), remaining);
    });
}
