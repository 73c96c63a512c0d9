//! The breaker against a small reference model of the state machine, over random sequences of
//! outcomes and time steps (count-based window, fixed wait, rate-based half-open decision).

use std::collections::VecDeque;
use std::time::Duration;

use proptest::prelude::*;
use sinew_resilience::circuit_breaker::{
    AfterHalfOpenTimeout, Config, Handle, OpenWait, SlidingWindow, State,
};
use sinew_resilience::classify::Outcome;

#[derive(Debug, Clone, Copy)]
enum Op {
    Call(Outcome),
    Advance(u64), // milliseconds
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Call(Outcome::Success)),
        4 => Just(Op::Call(Outcome::Failure)),
        1 => Just(Op::Call(Outcome::Ignored)),
        2 => (0u64..8_000).prop_map(Op::Advance),
    ]
}

#[derive(Debug)]
enum ModelState {
    Closed,
    Open { until: u64 },
    HalfOpen { deadline: u64, results: Vec<bool> },
}

struct Model {
    size: usize,
    min: usize,
    threshold: f64,
    permits: usize,
    wait: u64,
    max_wait: u64,
    now: u64,
    window: VecDeque<bool>,
    state: ModelState,
}

impl Model {
    fn tripped(&self, failures: usize, calls: usize, min: usize) -> bool {
        calls > 0 && calls >= min && failures as f64 * 100.0 / calls as f64 >= self.threshold
    }

    /// Returns whether the call was permitted.
    fn call(&mut self, outcome: Outcome) -> bool {
        loop {
            match &mut self.state {
                ModelState::Closed => {
                    if outcome == Outcome::Ignored {
                        return true;
                    }
                    self.window.push_back(outcome == Outcome::Failure);
                    if self.window.len() > self.size {
                        self.window.pop_front();
                    }
                    let failures = self.window.iter().filter(|f| **f).count();
                    if self.tripped(failures, self.window.len(), self.min.min(self.size)) {
                        self.state = ModelState::Open {
                            until: self.now + self.wait,
                        };
                    }
                    return true;
                }
                ModelState::Open { until } => {
                    if self.now < *until {
                        return false;
                    }
                    self.state = ModelState::HalfOpen {
                        deadline: self.now + self.max_wait,
                        results: Vec::new(),
                    };
                }
                ModelState::HalfOpen { deadline, results } => {
                    if self.now >= *deadline {
                        self.state = ModelState::Open {
                            until: self.now + self.wait,
                        };
                        continue;
                    }
                    if outcome == Outcome::Ignored {
                        return true;
                    }
                    results.push(outcome == Outcome::Failure);
                    if results.len() == self.permits {
                        let failures = results.iter().filter(|f| **f).count();
                        let calls = results.len();
                        if self.tripped(failures, calls, self.permits) {
                            self.state = ModelState::Open {
                                until: self.now + self.wait,
                            };
                        } else {
                            self.window.clear();
                            self.state = ModelState::Closed;
                        }
                    }
                    return true;
                }
            }
        }
    }

    fn state(&self) -> State {
        match self.state {
            ModelState::Closed => State::Closed,
            ModelState::Open { .. } => State::Open,
            ModelState::HalfOpen { .. } => State::HalfOpen,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn breaker_follows_the_reference_model(
        size in 1usize..12,
        min in 1usize..15,
        threshold in 1u32..=100,
        permits in 1usize..5,
        ops in proptest::collection::vec(op(), 1..200),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async move {
            let wait = 5_000;
            let max_wait = 3_000;
            let handle = Handle::new(
                Config::builder()
                    .sliding_window(SlidingWindow::CountBased { size: size as u32 })
                    .minimum_calls(min as u32)
                    .failure_rate_threshold(f64::from(threshold))
                    .half_open_permits(permits as u32)
                    .open_wait(OpenWait::Fixed(Duration::from_millis(wait)))
                    .half_open_max_wait(Some(Duration::from_millis(max_wait)), AfterHalfOpenTimeout::Open)
                    .build()
                    .unwrap(),
            );
            let mut model = Model {
                size, min, threshold: f64::from(threshold), permits, wait, max_wait,
                now: 0, window: VecDeque::new(), state: ModelState::Closed,
            };
            for (i, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Advance(ms) => {
                        tokio::time::advance(Duration::from_millis(ms)).await;
                        model.now += ms;
                    }
                    Op::Call(outcome) => {
                        let expected = model.call(outcome);
                        let actual = match handle.try_acquire() {
                            Ok(permit) => { permit.record(outcome); true }
                            Err(_) => false,
                        };
                        prop_assert_eq!(actual, expected, "permitted at op {}", i);
                    }
                }
                prop_assert_eq!(handle.state(), model.state(), "state after op {} ({:?})", i, op);
            }
            Ok(())
        })?;
    }
}
