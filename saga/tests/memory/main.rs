//! The orchestrator on the in-memory store, with paused time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../support/mod.rs"]
mod support;

use std::time::Duration;

use sinew_saga::{
    ErrorClass, IdempotencyKey, ListQuery, MemoryStore, OnInterrupted, Orchestrator, Pending,
    Phase, RetryPolicy, Saga, SagaError, SagaEvent, SagaStatus, Step, StepContext, StepError,
    StepState,
};
use support::{Behaviour, Journal, ORDER, Order, trace_init};

fn orchestrator(saga: Saga<Order>) -> Orchestrator<MemoryStore> {
    Orchestrator::builder(MemoryStore::new())
        .register(saga)
        .build()
        .unwrap()
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test(start_paused = true)]
async fn success_runs_every_step_in_order_and_stores_outputs() {
    trace_init();
    let j = Journal::new();
    let orch = orchestrator(j.order_saga().build().unwrap());
    let (id, status) = orch.execute("order-creation", &ORDER).await.unwrap();
    assert_eq!(status, SagaStatus::Completed);
    assert_eq!(
        j.done(Phase::Forward),
        strs(&[
            "create-order",
            "reserve-inventory",
            "process-payment",
            "send-notification"
        ])
    );
    assert!(j.done(Phase::Compensate).is_empty());
    let details = orch.instance(id).await.unwrap().unwrap();
    assert_eq!(details.instance.status, SagaStatus::Completed);
    assert_eq!(details.instance.lease_owner, None);
    let create = details
        .records
        .iter()
        .find(|r| r.step == "create-order")
        .unwrap();
    assert_eq!(create.state, StepState::Succeeded);
    assert_eq!(create.output, Some(serde_json::json!("create-order-of-42")));
    assert_eq!(
        create.idempotency_key,
        IdempotencyKey::derive(id, "create-order", Phase::Forward)
    );
    let m = orch.metrics();
    assert_eq!((m.started, m.completed, m.steps_succeeded), (1, 1, 4));
    let listed = orch.instances(&ListQuery::default()).await.unwrap();
    assert_eq!(listed.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_later_step_reads_an_earlier_output() {
    let saga = Saga::<Order>::builder("outputs")
        .step(Step::compensatable(
            "a",
            |cx: StepContext<Order>| async move { Ok::<_, StepError>(cx.data().amount * 2) },
            |_cx| async { Ok(()) },
        ))
        .step(Step::pivot("b", |cx: StepContext<Order>| async move {
            let a: u64 = cx.output("a")?;
            if a == 200 {
                Ok(a + 1)
            } else {
                Err(StepError::terminal("wrong input"))
            }
        }))
        .build()
        .unwrap();
    let orch = orchestrator(saga);
    let (id, status) = orch.execute("outputs", &ORDER).await.unwrap();
    assert_eq!(status, SagaStatus::Completed);
    let d = orch.instance(id).await.unwrap().unwrap();
    let b = d.records.iter().find(|r| r.step == "b").unwrap();
    assert_eq!(b.output, Some(serde_json::json!(201)));
}

#[tokio::test(start_paused = true)]
async fn failure_at_each_step_compensates_completed_steps_in_reverse() {
    let steps = ["create-order", "reserve-inventory", "process-payment"];
    for (i, failing) in steps.iter().enumerate() {
        let j = Journal::new();
        j.set(
            failing,
            Phase::Forward,
            Behaviour::Fail(StepError::terminal("no")),
        );
        let orch = orchestrator(j.order_saga().build().unwrap());
        let (id, status) = orch.execute("order-creation", &ORDER).await.unwrap();
        assert_eq!(status, SagaStatus::Compensated, "failing {failing}");
        let mut expected: Vec<String> = steps[..i]
            .iter()
            .filter(|s| **s != "process-payment")
            .map(|s| (*s).to_owned())
            .collect();
        expected.reverse();
        assert_eq!(j.done(Phase::Compensate), expected, "failing {failing}");
        // The failed step itself had no effect: it is not compensated, nothing after it ran.
        assert!(
            !j.invoked(Phase::Compensate)
                .contains(&(*failing).to_owned())
        );
        assert!(
            !j.invoked(Phase::Forward)
                .contains(&"send-notification".to_owned())
        );
        let d = orch.instance(id).await.unwrap().unwrap();
        assert!(d.instance.reason.unwrap().contains(failing));
    }
}

#[tokio::test(start_paused = true)]
async fn retryable_errors_are_retried_with_backoff_and_the_same_key() {
    let j = Journal::new();
    j.set(
        "reserve-inventory",
        Phase::Forward,
        Behaviour::FailTimes(2, StepError::retryable("busy")),
    );
    let orch = orchestrator(j.order_saga().build().unwrap());
    let (id, status) = orch.execute("order-creation", &ORDER).await.unwrap();
    assert_eq!(status, SagaStatus::Completed);
    let attempts: Vec<_> = j
        .calls()
        .into_iter()
        .filter(|c| c.step == "reserve-inventory")
        .collect();
    assert_eq!(attempts.len(), 3);
    assert!(attempts.iter().all(|c| c.key == attempts[0].key));
    assert_eq!(
        attempts.iter().map(|c| c.attempt).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(orch.metrics().retries, 2);
    let d = orch.instance(id).await.unwrap().unwrap();
    let r = d
        .records
        .iter()
        .find(|r| r.step == "reserve-inventory")
        .unwrap();
    assert_eq!((r.state, r.attempt), (StepState::Succeeded, 3));
}

#[tokio::test(start_paused = true)]
async fn retries_running_out_before_the_pivot_compensate() {
    let j = Journal::new();
    j.set(
        "reserve-inventory",
        Phase::Forward,
        Behaviour::Fail(StepError::retryable("busy")),
    );
    let orch = orchestrator(j.order_saga().build().unwrap());
    let (_, status) = orch.execute("order-creation", &ORDER).await.unwrap();
    assert_eq!(status, SagaStatus::Compensated);
    assert_eq!(
        j.calls()
            .iter()
            .filter(|c| c.step == "reserve-inventory")
            .count(),
        3
    );
    // Retryable failures had no effect: only create-order is compensated.
    assert_eq!(j.done(Phase::Compensate), strs(&["create-order"]));
}

#[tokio::test(start_paused = true)]
async fn after_the_pivot_the_saga_recovers_forward() {
    let j = Journal::new();
    j.set(
        "send-notification",
        Phase::Forward,
        Behaviour::FailTimes(5, StepError::unknown("smtp timeout")),
    );
    let orch = orchestrator(j.order_saga().build().unwrap());
    let (_, status) = orch.execute("order-creation", &ORDER).await.unwrap();
    assert_eq!(status, SagaStatus::Completed);
    assert!(j.done(Phase::Compensate).is_empty());
    assert_eq!(
        j.calls()
            .iter()
            .filter(|c| c.step == "send-notification")
            .count(),
        6
    );
}

#[tokio::test(start_paused = true)]
async fn a_terminal_error_after_the_pivot_is_stuck_then_resume_completes() {
    let j = Journal::new();
    j.set(
        "send-notification",
        Phase::Forward,
        Behaviour::Fail(StepError::terminal("bad address")),
    );
    let orch = orchestrator(j.order_saga().build().unwrap());
    let mut events = orch.events();
    let (id, status) = orch.execute("order-creation", &ORDER).await.unwrap();
    assert_eq!(status, SagaStatus::Stuck);
    assert!(j.done(Phase::Compensate).is_empty());
    let mut saw_stuck = false;
    while let Ok(e) = events.try_recv() {
        if let SagaEvent::StatusChanged {
            status: SagaStatus::Stuck,
            id: eid,
            ..
        } = e
        {
            assert_eq!(eid, id);
            saw_stuck = true;
        }
    }
    assert!(saw_stuck);
    assert_eq!(orch.metrics().stuck, 1);
    // Recovery leaves stuck sagas alone.
    assert!(orch.recover().await.unwrap().is_empty());
    j.set("send-notification", Phase::Forward, Behaviour::Ok);
    assert_eq!(orch.resume(id).await.unwrap(), SagaStatus::Completed);
}

#[tokio::test(start_paused = true)]
async fn a_pivot_with_an_unknown_outcome_is_stuck_not_compensated() {
    let j = Journal::new();
    j.set(
        "process-payment",
        Phase::Forward,
        Behaviour::Fail(StepError::unknown("gateway timeout")),
    );
    let orch = orchestrator(j.order_saga().build().unwrap());
    let (id, status) = orch.execute("order-creation", &ORDER).await.unwrap();
    assert_eq!(status, SagaStatus::Stuck);
    assert!(j.done(Phase::Compensate).is_empty());
    // The operator finds the charge went through and skips the pivot: the saga goes forward.
    assert_eq!(orch.skip(id).await.unwrap(), SagaStatus::Completed);
    assert!(
        j.done(Phase::Forward)
            .contains(&"send-notification".to_owned())
    );
}

#[tokio::test(start_paused = true)]
async fn parallel_group_failure_cancels_siblings_and_compensates_the_succeeded() {
    let j = Journal::new();
    j.set("fast", Phase::Forward, Behaviour::Ok);
    j.set(
        "fails",
        Phase::Forward,
        Behaviour::SleepThenFail(Duration::from_secs(1), StepError::terminal("refused")),
    );
    j.set("slow", Phase::Forward, Behaviour::Hang);
    let saga = Saga::builder("par")
        .step(j.compensatable("first"))
        .parallel([
            j.compensatable("fast"),
            j.compensatable("fails"),
            j.compensatable("slow"),
        ])
        .step(j.pivot("pay"))
        .build()
        .unwrap();
    let orch = orchestrator(saga);
    let (id, status) = orch.execute("par", &ORDER).await.unwrap();
    assert_eq!(status, SagaStatus::Compensated);
    let comp = j.done(Phase::Compensate);
    // `slow` was cancelled mid-call (outcome unknown) and `fast` succeeded: both are
    // compensated before `first`; `fails` had no effect; `pay` never ran.
    assert_eq!(comp.last().unwrap(), "first");
    assert_eq!(comp.len(), 3);
    assert!(comp.contains(&"fast".to_owned()) && comp.contains(&"slow".to_owned()));
    assert!(!j.invoked(Phase::Forward).contains(&"pay".to_owned()));
    let d = orch.instance(id).await.unwrap().unwrap();
    let slow = d
        .records
        .iter()
        .find(|r| r.step == "slow" && r.phase == Phase::Forward);
    assert_eq!(slow.unwrap().state, StepState::Unknown);
}

#[tokio::test(start_paused = true)]
async fn parallel_group_success_runs_steps_concurrently() {
    let j = Journal::new();
    for s in ["a", "b", "c"] {
        j.set(s, Phase::Forward, Behaviour::Sleep(Duration::from_secs(10)));
    }
    let saga = Saga::builder("par-ok")
        .parallel([
            j.compensatable("a"),
            j.compensatable("b"),
            j.compensatable("c"),
        ])
        .build()
        .unwrap();
    let orch = orchestrator(saga);
    let started = tokio::time::Instant::now();
    let (_, status) = orch.execute("par-ok", &ORDER).await.unwrap();
    assert_eq!(status, SagaStatus::Completed);
    // Three 10 s calls in parallel take 10 s of (virtual) time, not 30.
    assert_eq!(started.elapsed().as_secs(), 10);
}

#[tokio::test(start_paused = true)]
async fn a_step_timeout_is_an_unknown_outcome_compensated_after_retries() {
    let j = Journal::new();
    j.set(
        "reserve-inventory",
        Phase::Forward,
        Behaviour::Sleep(Duration::from_secs(60)),
    );
    let saga = Saga::builder("order-creation")
        .step(j.compensatable("create-order"))
        .step(
            j.compensatable("reserve-inventory")
                .timeout(Duration::from_secs(5))
                .retry(RetryPolicy::builder().max_attempts(2).build().unwrap()),
        )
        .step(j.pivot("process-payment"))
        .build()
        .unwrap();
    let orch = orchestrator(saga);
    let (id, status) = orch.execute("order-creation", &ORDER).await.unwrap();
    assert_eq!(status, SagaStatus::Compensated);
    // It may have reserved: it is compensated too, before create-order.
    assert_eq!(
        j.done(Phase::Compensate),
        strs(&["reserve-inventory", "create-order"])
    );
    let d = orch.instance(id).await.unwrap().unwrap();
    let r = d
        .records
        .iter()
        .find(|r| r.step == "reserve-inventory" && r.phase == Phase::Forward)
        .unwrap();
    assert_eq!(r.state, StepState::Unknown);
    assert_eq!(r.error.as_ref().unwrap().class(), ErrorClass::Unknown);
}

#[tokio::test(start_paused = true)]
async fn the_saga_deadline_compensates() {
    let j = Journal::new();
    j.set("reserve-inventory", Phase::Forward, Behaviour::Hang);
    let saga = j
        .order_saga()
        .deadline(Duration::from_secs(3))
        .build()
        .unwrap();
    let orch = orchestrator(saga);
    let (id, status) = orch.execute("order-creation", &ORDER).await.unwrap();
    assert_eq!(status, SagaStatus::Compensated);
    assert_eq!(
        j.done(Phase::Compensate),
        strs(&["reserve-inventory", "create-order"])
    );
    let d = orch.instance(id).await.unwrap().unwrap();
    assert_eq!(d.instance.reason.as_deref(), Some("deadline exceeded"));
}

#[tokio::test(start_paused = true)]
async fn cancel_compensates_a_running_saga() {
    let j = Journal::new();
    j.set("reserve-inventory", Phase::Forward, Behaviour::Hang);
    let orch = orchestrator(j.order_saga().build().unwrap());
    let id = orch.start("order-creation", &ORDER).await.unwrap();
    let run = orch.spawn(id);
    tokio::time::sleep(Duration::from_secs(1)).await;
    orch.cancel(id).await.unwrap();
    assert_eq!(run.await.unwrap().unwrap(), SagaStatus::Compensated);
    assert_eq!(
        j.done(Phase::Compensate),
        strs(&["reserve-inventory", "create-order"])
    );
    // Finished sagas cannot be cancelled.
    assert!(matches!(
        orch.cancel(id).await,
        Err(SagaError::InvalidState { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn cancel_after_the_pivot_is_refused() {
    let j = Journal::new();
    j.set("send-notification", Phase::Forward, Behaviour::Hang);
    let orch = orchestrator(j.order_saga().build().unwrap());
    let id = orch.start("order-creation", &ORDER).await.unwrap();
    let run = orch.spawn(id);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(matches!(
        orch.cancel(id).await,
        Err(SagaError::InvalidState { .. })
    ));
    run.abort();
}

#[tokio::test(start_paused = true)]
async fn cancel_of_an_undriven_saga_drives_its_compensation() {
    let j = Journal::new();
    let orch = orchestrator(j.order_saga().build().unwrap());
    let id = orch.start("order-creation", &ORDER).await.unwrap();
    orch.cancel(id).await.unwrap();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let d = orch.instance(id).await.unwrap().unwrap();
        if d.instance.status.is_terminal() {
            break;
        }
    }
    let d = orch.instance(id).await.unwrap().unwrap();
    assert_eq!(d.instance.status, SagaStatus::Compensated);
    assert!(j.invoked(Phase::Forward).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_failing_compensation_gets_stuck_then_admin_ops_apply() {
    let j = Journal::new();
    j.set(
        "process-payment",
        Phase::Forward,
        Behaviour::Fail(StepError::terminal("declined")),
    );
    j.set(
        "reserve-inventory",
        Phase::Compensate,
        Behaviour::Fail(StepError::retryable("db down")),
    );
    let saga = j
        .order_saga()
        .compensation_retry(RetryPolicy::builder().max_attempts(4).build().unwrap())
        .build()
        .unwrap();
    let orch = orchestrator(saga);
    let (id, status) = orch.execute("order-creation", &ORDER).await.unwrap();
    assert_eq!(status, SagaStatus::Stuck);
    assert_eq!(
        j.calls()
            .iter()
            .filter(|c| c.phase == Phase::Compensate && c.step == "reserve-inventory")
            .count(),
        4
    );
    // create-order's compensation must wait: order matters.
    assert!(
        !j.invoked(Phase::Compensate)
            .contains(&"create-order".to_owned())
    );

    // resume: fresh attempts, still failing → stuck again.
    assert_eq!(orch.resume(id).await.unwrap(), SagaStatus::Stuck);
    // skip: the operator undid it by hand; compensation carries on.
    assert_eq!(orch.skip(id).await.unwrap(), SagaStatus::Compensated);
    assert_eq!(j.done(Phase::Compensate), strs(&["create-order"]));
    let d = orch.instance(id).await.unwrap().unwrap();
    let r = d
        .records
        .iter()
        .find(|r| r.step == "reserve-inventory" && r.phase == Phase::Compensate)
        .unwrap();
    assert_eq!(r.state, StepState::Skipped);
    // Admin ops on a finished saga are refused.
    assert!(matches!(
        orch.force_complete(id).await,
        Err(SagaError::InvalidState { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn stuck_then_resume_succeeds_and_force_complete_ends_another() {
    let j = Journal::new();
    j.set("create-order", Phase::Forward, Behaviour::Ok);
    j.set(
        "reserve-inventory",
        Phase::Forward,
        Behaviour::Fail(StepError::terminal("out of stock")),
    );
    j.set(
        "create-order",
        Phase::Compensate,
        Behaviour::Fail(StepError::retryable("db down")),
    );
    let saga = j
        .order_saga()
        .compensation_retry(RetryPolicy::builder().max_attempts(2).build().unwrap())
        .build()
        .unwrap();
    let orch = orchestrator(saga);
    let (a, status) = orch.execute("order-creation", &ORDER).await.unwrap();
    assert_eq!(status, SagaStatus::Stuck);
    let (b, status) = orch.execute("order-creation", &ORDER).await.unwrap();
    assert_eq!(status, SagaStatus::Stuck);
    let stuck = orch
        .instances(&ListQuery::default().status(SagaStatus::Stuck))
        .await
        .unwrap();
    assert_eq!(stuck.len(), 2);

    j.set("create-order", Phase::Compensate, Behaviour::Ok);
    assert_eq!(orch.resume(a).await.unwrap(), SagaStatus::Compensated);
    assert_eq!(
        orch.force_complete(b).await.unwrap(),
        SagaStatus::ForceCompleted
    );
    // resume on a finished saga is refused
    assert!(matches!(
        orch.resume(a).await,
        Err(SagaError::InvalidState { .. })
    ));
}

fn async_saga() -> Saga<Order> {
    Saga::builder("async")
        .step(Step::compensatable(
            "reserve",
            |cx: StepContext<Order>| async move {
                Ok::<_, StepError>(Pending::new(format!("req-{}", cx.idempotency_key())))
            },
            |_cx| async { Ok(()) },
        ))
        .step(Step::pivot("pay", |_cx| async { Ok::<_, StepError>(()) }))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn an_asynchronous_participant_completes_later() {
    let orch = orchestrator(async_saga());
    let id = orch.start("async", &ORDER).await.unwrap();
    let run = orch.spawn(id);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let d = orch.instance(id).await.unwrap().unwrap();
    let r = d.records.iter().find(|r| r.step == "reserve").unwrap();
    assert_eq!(r.state, StepState::Awaiting);
    let key = r.correlation_key.clone().unwrap();
    let found = orch
        .complete_by_key(&key, Ok::<_, StepError>("reservation-9"))
        .await
        .unwrap();
    assert_eq!(found, Some((id, "reserve".to_owned())));
    assert_eq!(run.await.unwrap().unwrap(), SagaStatus::Completed);
    let d = orch.instance(id).await.unwrap().unwrap();
    let r = d.records.iter().find(|r| r.step == "reserve").unwrap();
    assert_eq!(r.output, Some(serde_json::json!("reservation-9")));
}

#[tokio::test(start_paused = true)]
async fn an_asynchronous_participant_that_never_replies_times_out_and_compensates() {
    let orch = orchestrator(async_saga());
    let (id, status) = orch.execute("async", &ORDER).await.unwrap();
    // Three attempts, each waiting the 30 s step timeout, then the unknown outcome is
    // compensated.
    assert_eq!(status, SagaStatus::Compensated);
    let d = orch.instance(id).await.unwrap().unwrap();
    let r = d
        .records
        .iter()
        .find(|r| r.step == "reserve" && r.phase == Phase::Forward)
        .unwrap();
    assert_eq!((r.state, r.attempt), (StepState::Unknown, 3));
    let c = d
        .records
        .iter()
        .find(|r| r.step == "reserve" && r.phase == Phase::Compensate)
        .unwrap();
    assert_eq!(c.state, StepState::Succeeded);
}

#[tokio::test(start_paused = true)]
async fn a_failure_reply_compensates() {
    let orch = orchestrator(async_saga());
    let id = orch.start("async", &ORDER).await.unwrap();
    let run = orch.spawn(id);
    tokio::time::sleep(Duration::from_secs(1)).await;
    orch.complete::<()>(id, "reserve", Err(StepError::terminal("no stock")))
        .await
        .unwrap();
    assert_eq!(run.await.unwrap().unwrap(), SagaStatus::Compensated);
    assert!(matches!(
        orch.complete(id, "nope", Ok::<_, StepError>(())).await,
        Err(SagaError::UnknownStep { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn recovery_retries_an_interrupted_step_with_the_same_key() {
    let store = MemoryStore::new();
    let j = Journal::new();
    j.set("reserve-inventory", Phase::Forward, Behaviour::Hang);
    let first = Orchestrator::builder(store.clone())
        .owner_id("first")
        .lease(Duration::from_secs(9))
        .register(j.order_saga().build().unwrap())
        .build()
        .unwrap();
    let id = first.start("order-creation", &ORDER).await.unwrap();
    let run = first.spawn(id);
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The "process" dies: no more heartbeats, the write-ahead record stays "started".
    run.abort();
    let _ = run.await;
    j.set("reserve-inventory", Phase::Forward, Behaviour::Ok);

    let second = Orchestrator::builder(store.clone())
        .owner_id("second")
        .lease(Duration::from_secs(9))
        .register(j.order_saga().build().unwrap())
        .build()
        .unwrap();
    // Lease still valid: nothing to recover yet, and running it directly is refused.
    assert!(second.recover().await.unwrap().is_empty());
    assert!(second.run(id).await.unwrap_err().is_leased());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let recovered = second.recover().await.unwrap();
    assert_eq!(recovered.len(), 1);
    assert_eq!(*recovered[0].1.as_ref().unwrap(), SagaStatus::Completed);
    let calls: Vec<_> = j
        .calls()
        .into_iter()
        .filter(|c| c.step == "reserve-inventory")
        .collect();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].key, calls[1].key);
    assert_eq!((calls[0].attempt, calls[1].attempt), (1, 2));
    // The new owner calls with a larger fencing token.
    assert!(calls[1].token > calls[0].token);
    let tokens: Vec<u64> = j.calls().iter().map(|c| c.token).collect();
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "{tokens:?}");
    // create-order ran once: recovery replays stored outputs, it does not re-execute.
    assert_eq!(
        j.calls()
            .iter()
            .filter(|c| c.step == "create-order")
            .count(),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn recovery_compensates_an_interrupted_step_when_its_policy_says_so() {
    let store = MemoryStore::new();
    let j = Journal::new();
    j.set("reserve-inventory", Phase::Forward, Behaviour::Hang);
    let saga = || {
        Saga::builder("order-creation")
            .step(j.compensatable("create-order"))
            .step(
                j.compensatable("reserve-inventory")
                    .on_interrupted(OnInterrupted::Compensate),
            )
            .step(j.pivot("process-payment"))
            .build()
            .unwrap()
    };
    let first = Orchestrator::builder(store.clone())
        .lease(Duration::from_secs(3))
        .register(saga())
        .build()
        .unwrap();
    let id = first.start("order-creation", &ORDER).await.unwrap();
    let run = first.spawn(id);
    tokio::time::sleep(Duration::from_secs(1)).await;
    run.abort();
    let _ = run.await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let second = Orchestrator::builder(store)
        .register(saga())
        .build()
        .unwrap();
    let recovered = second.recover().await.unwrap();
    assert_eq!(*recovered[0].1.as_ref().unwrap(), SagaStatus::Compensated);
    assert_eq!(
        j.done(Phase::Compensate),
        strs(&["reserve-inventory", "create-order"])
    );
    let _ = id;
}

#[tokio::test(start_paused = true)]
async fn a_lost_lease_stops_the_old_driver() {
    let store = MemoryStore::new();
    let j = Journal::new();
    j.set(
        "reserve-inventory",
        Phase::Forward,
        Behaviour::Sleep(Duration::from_secs(20)),
    );
    let first = Orchestrator::builder(store.clone())
        .owner_id("first")
        .lease(Duration::from_secs(3))
        .heartbeat(Duration::from_secs(1))
        .register(j.order_saga().build().unwrap())
        .build()
        .unwrap();
    let id = first.start("order-creation", &ORDER).await.unwrap();
    // Steal the lease as if `first` had stalled past its lease: take it by force with the
    // store API (acquire after expiry) at a time when `first` is not heartbeating.
    let run = first.spawn(id);
    tokio::time::sleep(Duration::from_millis(500)).await;
    use sinew_saga::SagaStore;
    let now_far = i64::MAX / 2;
    let acquired = store
        .acquire(id, "thief", now_far, now_far + 1)
        .await
        .unwrap();
    assert!(matches!(acquired, sinew_saga::store::Acquired::Yes(_)));
    let err = run.await.unwrap().unwrap_err();
    assert!(matches!(err, SagaError::LeaseLost { .. }), "{err:?}");
}

#[tokio::test(start_paused = true)]
async fn unknown_saga_types_and_ids_are_typed_errors() {
    let j = Journal::new();
    let orch = orchestrator(j.order_saga().build().unwrap());
    assert!(matches!(
        orch.start("nope", &ORDER).await,
        Err(SagaError::UnknownSagaType { .. })
    ));
    assert!(matches!(
        orch.run(sinew_saga::SagaId::new()).await,
        Err(SagaError::NotFound { .. })
    ));
}

mod spans {
    use std::sync::{Arc, Mutex};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id};
    use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

    pub(super) type Recorded = Vec<(String, Vec<(String, String)>)>;

    /// Records every span's name and fields.
    #[derive(Clone, Default)]
    pub(super) struct Spans(pub(super) Arc<Mutex<Recorded>>);

    struct Fields(Vec<(String, String)>);
    impl Visit for Fields {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            self.0.push((field.name().to_owned(), format!("{value:?}")));
        }
        fn record_str(&mut self, field: &Field, value: &str) {
            self.0.push((field.name().to_owned(), value.to_owned()));
        }
    }

    impl<S: tracing::Subscriber> Layer<S> for Spans {
        fn on_new_span(&self, attrs: &Attributes<'_>, _id: &Id, _ctx: Context<'_, S>) {
            let mut fields = Fields(Vec::new());
            attrs.record(&mut fields);
            self.0
                .lock()
                .unwrap()
                .push((attrs.metadata().name().to_owned(), fields.0));
        }
    }

    pub(super) fn install() -> (Spans, tracing::subscriber::DefaultGuard) {
        let spans = Spans::default();
        let subscriber = tracing_subscriber::registry().with(spans.clone());
        (spans, tracing::subscriber::set_default(subscriber))
    }
}

#[tokio::test(start_paused = true)]
async fn spans_carry_saga_and_step_fields_and_metrics_count() {
    let (spans, _guard) = spans::install();
    let j = Journal::new();
    j.set(
        "send-notification",
        Phase::Forward,
        Behaviour::FailTimes(1, StepError::retryable("busy")),
    );
    let orch = orchestrator(j.order_saga().build().unwrap());
    let (id, _) = orch.execute("order-creation", &ORDER).await.unwrap();
    let spans = spans.0.lock().unwrap().clone();
    let saga = spans.iter().find(|(n, _)| n == "saga").unwrap();
    assert!(saga.1.contains(&("saga.id".to_owned(), id.to_string())));
    let steps: Vec<_> = spans.iter().filter(|(n, _)| n == "saga.step").collect();
    assert_eq!(steps.len(), 5); // four steps, one retry
    let field = |fields: &Vec<(String, String)>, name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert!(
        steps
            .iter()
            .all(|(_, f)| field(f, "saga.id") == id.to_string()
                && field(f, "saga.type") == "order-creation"
                && field(f, "saga.phase") == "forward")
    );
    assert_eq!(field(&steps[4].1, "saga.step"), "send-notification");
    assert_eq!(field(&steps[4].1, "saga.attempt"), "2");
    let m = orch.metrics();
    assert_eq!((m.retries, m.steps_failed, m.steps_succeeded), (1, 1, 4));
    assert_eq!(m.driving, 0);
}

#[tokio::test(start_paused = true)]
async fn a_saga_of_retriable_steps_only_cannot_be_cancelled() {
    let j = Journal::new();
    j.set("r", Phase::Forward, Behaviour::Hang);
    let orch = orchestrator(
        Saga::builder("r-only")
            .step(j.retriable("r"))
            .build()
            .unwrap(),
    );
    let id = orch.start("r-only", &ORDER).await.unwrap();
    let run = orch.spawn(id);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(matches!(
        orch.cancel(id).await,
        Err(SagaError::InvalidState { .. })
    ));
    run.abort();
}

#[tokio::test(start_paused = true)]
async fn periodic_recovery_finishes_an_abandoned_saga() {
    let store = MemoryStore::new();
    let j = Journal::new();
    j.set("process-payment", Phase::Forward, Behaviour::Hang);
    let first = Orchestrator::builder(store.clone())
        .lease(Duration::from_secs(3))
        .register(j.order_saga().build().unwrap())
        .build()
        .unwrap();
    let id = first.start("order-creation", &ORDER).await.unwrap();
    let run = first.spawn(id);
    tokio::time::sleep(Duration::from_secs(1)).await;
    run.abort();
    let _ = run.await;
    j.set("process-payment", Phase::Forward, Behaviour::Ok);
    let second = Orchestrator::builder(store)
        .register(j.order_saga().build().unwrap())
        .build()
        .unwrap();
    let recovery = second.spawn_recovery(Duration::from_secs(2));
    let mut status = SagaStatus::Running;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        status = second.instance(id).await.unwrap().unwrap().instance.status;
        if status.is_terminal() {
            break;
        }
    }
    recovery.abort();
    assert_eq!(status, SagaStatus::Completed);
    assert_eq!(
        j.calls()
            .iter()
            .filter(|c| c.step == "process-payment")
            .count(),
        2
    );
}
