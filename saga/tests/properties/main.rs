//! Property: for a random saga shape and a random failing step, every step that completed is
//! compensated exactly once, in reverse order, and no step that never ran is compensated.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../support/mod.rs"]
mod support;

use std::collections::HashMap;

use proptest::prelude::*;
use sinew_saga::{MemoryStore, Orchestrator, Phase, Saga, SagaStatus, StepError};
use support::{Behaviour, Journal, ORDER};

#[derive(Clone, Debug)]
struct Shape {
    /// Sizes of the compensatable stages (1 = sequential step, more = parallel group).
    groups: Vec<usize>,
    pivot: bool,
    retriable: usize,
    /// Index into the compensatable steps followed by the pivot; `None` = no failure.
    failing: Option<usize>,
    /// The failure is an unknown outcome (timeout-like) rather than terminal.
    unknown: bool,
}

fn shape() -> impl Strategy<Value = Shape> {
    (
        prop::collection::vec(1usize..=3, 1..=4),
        any::<bool>(),
        0usize..=2,
        any::<prop::sample::Index>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(groups, pivot, retriable, idx, fail, unknown)| {
            let n = groups.iter().sum::<usize>() + usize::from(pivot);
            Shape {
                groups,
                pivot,
                retriable,
                failing: fail.then(|| idx.index(n)),
                unknown,
            }
        })
}

fn run(shape: &Shape) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let j = Journal::new();
        let mut stage_of: HashMap<String, usize> = HashMap::new();
        let mut names = Vec::new();
        let mut builder = Saga::builder("prop");
        for (g, size) in shape.groups.iter().enumerate() {
            let steps: Vec<_> = (0..*size)
                .map(|k| {
                    let name = format!("c{g}.{k}");
                    stage_of.insert(name.clone(), g);
                    names.push(name.clone());
                    j.compensatable(&name)
                })
                .collect();
            builder = builder.parallel(steps);
        }
        if shape.pivot {
            stage_of.insert("pivot".into(), shape.groups.len());
            names.push("pivot".into());
            builder = builder.step(j.pivot("pivot"));
        }
        for r in 0..shape.retriable {
            builder = builder.step(j.retriable(&format!("r{r}")));
        }
        let failing = shape.failing.map(|i| names[i].clone());
        if let Some(name) = &failing {
            let error = if shape.unknown && name != "pivot" {
                StepError::unknown("lost")
            } else {
                StepError::terminal("no")
            };
            j.set(name, Phase::Forward, Behaviour::Fail(error));
        }
        let orch = Orchestrator::builder(MemoryStore::new())
            .register(builder.build().unwrap())
            .build()
            .unwrap();
        let (_, status) = orch.execute("prop", &ORDER).await.unwrap();

        let compensated = j.done(Phase::Compensate);
        let invoked = j.invoked(Phase::Forward);
        let completed: Vec<String> = j
            .done(Phase::Forward)
            .into_iter()
            .filter(|s| s.starts_with('c'))
            .collect();
        match &failing {
            None => {
                prop_assert_eq!(status, SagaStatus::Completed);
                prop_assert!(compensated.is_empty());
            }
            Some(_) => {
                prop_assert_eq!(status, SagaStatus::Compensated);
                // Exactly once each.
                let mut seen = compensated.clone();
                seen.sort();
                seen.dedup();
                prop_assert_eq!(seen.len(), compensated.len(), "twice: {:?}", compensated);
                // Every completed compensatable step is compensated.
                for s in &completed {
                    prop_assert!(compensated.contains(s), "{} not compensated", s);
                }
                // Nothing that never ran is compensated.
                for s in &compensated {
                    prop_assert!(invoked.contains(s), "{} never ran", s);
                }
                // Reverse order: stage indices never increase.
                let stages: Vec<usize> = compensated.iter().map(|s| stage_of[s]).collect();
                prop_assert!(
                    stages.windows(2).all(|w| w[0] >= w[1]),
                    "not reverse: {:?}",
                    compensated
                );
                // Retriable steps never ran (the failure is at or before the pivot).
                prop_assert!(!invoked.iter().any(|s| s.starts_with('r')));
            }
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn completed_steps_are_compensated_once_in_reverse(shape in shape()) {
        run(&shape)?;
    }
}
