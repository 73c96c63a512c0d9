//! Store-generic cases run against every store (real time: sqlx timers must not meet a
//! paused clock, so durations here are short).
#![allow(dead_code)]

use std::time::Duration;

use sinew_saga::store::{Acquired, Commit, Instance, StepRecord, StepReply};
use sinew_saga::{
    ListQuery, Orchestrator, Phase, RetryPolicy, SagaId, SagaStatus, SagaStore, StepError,
    StepState, StoreError,
};

use super::{Behaviour, Journal, ORDER};

fn fast() -> RetryPolicy {
    RetryPolicy::builder()
        .initial_backoff(Duration::from_millis(5))
        .max_backoff(Duration::from_millis(20))
        .max_attempts(3)
        .build()
        .unwrap()
}

fn orch<S: SagaStore + Clone>(store: &S, j: &Journal, owner: &str) -> Orchestrator<S> {
    Orchestrator::builder(store.clone())
        .owner_id(owner)
        .lease(Duration::from_millis(600))
        .heartbeat(Duration::from_millis(150))
        .poll_interval(Duration::from_millis(20))
        .register(j.order_saga().compensation_retry(fast()).build().unwrap())
        .build()
        .unwrap()
}

pub async fn success_and_query<S: SagaStore + Clone>(store: S) {
    let j = Journal::new();
    let o = orch(&store, &j, "a");
    let (id, status) = o.execute("order-creation", &ORDER).await.unwrap();
    assert_eq!(status, SagaStatus::Completed);
    let d = o.instance(id).await.unwrap().unwrap();
    assert_eq!(d.instance.status, SagaStatus::Completed);
    assert_eq!(d.instance.data, serde_json::to_value(ORDER).unwrap());
    assert_eq!(d.records.len(), 4);
    assert!(d.records.iter().all(|r| r.state == StepState::Succeeded));
    assert!(d.records.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(
        d.records[0].output,
        Some(serde_json::json!("create-order-of-42"))
    );
    let listed = o
        .instances(&ListQuery::default().status(SagaStatus::Completed))
        .await
        .unwrap();
    assert!(listed.iter().any(|i| i.id == id));
    assert!(
        o.instances(&ListQuery::default().saga_type("other"))
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn failure_compensates_in_reverse<S: SagaStore + Clone>(store: S) {
    let j = Journal::new();
    j.set(
        "process-payment",
        Phase::Forward,
        Behaviour::Fail(StepError::terminal("declined")),
    );
    let o = orch(&store, &j, "a");
    let (id, status) = o.execute("order-creation", &ORDER).await.unwrap();
    assert_eq!(status, SagaStatus::Compensated);
    assert_eq!(
        j.done(Phase::Compensate),
        ["reserve-inventory", "create-order"]
    );
    let d = o.instance(id).await.unwrap().unwrap();
    let pay = d
        .records
        .iter()
        .find(|r| r.step == "process-payment")
        .unwrap();
    assert_eq!(pay.state, StepState::Failed);
    assert!(pay.error.as_ref().unwrap().is_terminal());
}

pub async fn stuck_then_skip<S: SagaStore + Clone>(store: S) {
    let j = Journal::new();
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
    let o = orch(&store, &j, "a");
    let (id, status) = o.execute("order-creation", &ORDER).await.unwrap();
    assert_eq!(status, SagaStatus::Stuck);
    assert_eq!(o.resume(id).await.unwrap(), SagaStatus::Stuck);
    assert_eq!(o.skip(id).await.unwrap(), SagaStatus::Compensated);
}

pub async fn async_reply_from_another_orchestrator<S: SagaStore + Clone>(store: S) {
    use sinew_saga::{Pending, Saga, Step, StepContext};
    let saga = || {
        Saga::<super::Order>::builder("async")
            .step(Step::compensatable(
                "reserve",
                |cx: StepContext<super::Order>| async move {
                    Ok::<_, StepError>(Pending::new(format!("corr-{}", cx.saga_id())))
                },
                |_cx| async { Ok(()) },
            ))
            .build()
            .unwrap()
    };
    let a = Orchestrator::builder(store.clone())
        .poll_interval(Duration::from_millis(20))
        .register(saga())
        .build()
        .unwrap();
    let b = Orchestrator::builder(store.clone())
        .register(saga())
        .build()
        .unwrap();
    let id = a.start("async", &ORDER).await.unwrap();
    let run = a.spawn(id);
    let corr = format!("corr-{id}");
    let mut found = None;
    for _ in 0..200 {
        found = b
            .complete_by_key(&corr, Ok::<_, StepError>(7))
            .await
            .unwrap();
        if found.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(found, Some((id, "reserve".to_owned())));
    assert_eq!(run.await.unwrap().unwrap(), SagaStatus::Completed);
    let d = a.instance(id).await.unwrap().unwrap();
    assert_eq!(d.records[0].output, Some(serde_json::json!(7)));
}

pub async fn recovery_after_a_dead_driver<S: SagaStore + Clone>(store: S) {
    let j = Journal::new();
    j.set("reserve-inventory", Phase::Forward, Behaviour::Hang);
    let first = orch(&store, &j, "first");
    let id = first.start("order-creation", &ORDER).await.unwrap();
    let run = first.spawn(id);
    tokio::time::sleep(Duration::from_millis(200)).await;
    run.abort();
    let _ = run.await;
    j.set("reserve-inventory", Phase::Forward, Behaviour::Ok);
    let second = orch(&store, &j, "second");
    assert!(second.run(id).await.unwrap_err().is_leased());
    tokio::time::sleep(Duration::from_millis(800)).await;
    let results = second.recover().await.unwrap();
    let mine: Vec<_> = results.into_iter().filter(|(i, _)| *i == id).collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(*mine[0].1.as_ref().unwrap(), SagaStatus::Completed);
    let calls: Vec<_> = j
        .calls()
        .into_iter()
        .filter(|c| c.step == "reserve-inventory")
        .collect();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].key, calls[1].key);
}

pub async fn store_semantics<S: SagaStore>(store: S) {
    let id = SagaId::new();
    let inst = Instance::new(id, "t", serde_json::json!({"x": 1}), 1_000);
    store.create(&inst).await.unwrap();
    assert!(matches!(
        store.create(&inst).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    let Acquired::Yes(snap) = store.acquire(id, "a", 1_000, 2_000).await.unwrap() else {
        panic!("free lease not acquired")
    };
    assert_eq!(snap.instance.version, 1);
    assert_eq!(snap.instance.lease_owner.as_deref(), Some("a"));
    // Held by a until 2000.
    assert!(matches!(
        store.acquire(id, "b", 1_500, 3_000).await.unwrap(),
        Acquired::Held { ref owner } if owner == "a"
    ));
    let mut rec = StepRecord::new(id, "s", Phase::Forward, StepState::Started, 1, 1_100);
    let commit = Commit::new(
        SagaStatus::Running,
        None,
        Some(2_500),
        Some(rec.clone()),
        1_100,
    );
    let v = store.commit(id, "a", 1, &commit).await.unwrap();
    assert_eq!(v, 2);
    // Stale version and wrong owner are conflicts.
    assert!(
        store
            .commit(id, "a", 1, &commit)
            .await
            .unwrap_err()
            .is_conflict()
    );
    assert!(
        store
            .commit(id, "b", 2, &commit)
            .await
            .unwrap_err()
            .is_conflict()
    );
    // A reply for an open step is kept; a new "started" write clears it.
    assert!(
        store
            .deliver_reply(id, "s", &StepReply::Ok(serde_json::json!(5)))
            .await
            .unwrap()
    );
    assert_eq!(
        store.reply(id, "s").await.unwrap(),
        Some(StepReply::Ok(serde_json::json!(5)))
    );
    rec.attempt = 2;
    let v = store
        .commit(
            id,
            "a",
            2,
            &Commit::new(
                SagaStatus::Running,
                None,
                Some(2_500),
                Some(rec.clone()),
                1_100,
            ),
        )
        .await
        .unwrap();
    assert_eq!(store.reply(id, "s").await.unwrap(), None);
    assert!(
        !store
            .deliver_reply(id, "nope", &StepReply::Ok(serde_json::json!(1)))
            .await
            .unwrap()
    );
    // Heartbeat keeps a's lease and reports cancellation.
    assert_eq!(store.heartbeat(id, "a", 4_000).await.unwrap(), Some(false));
    assert!(store.request_cancel(id).await.unwrap());
    assert_eq!(store.heartbeat(id, "a", 4_000).await.unwrap(), Some(true));
    assert_eq!(store.heartbeat(id, "b", 4_000).await.unwrap(), None);
    // Not recoverable while leased; recoverable once expired; taking it over bumps the
    // version so a's next commit fails.
    assert!(!store.recoverable(3_000, 10).await.unwrap().contains(&id));
    assert!(store.recoverable(5_000, 10).await.unwrap().contains(&id));
    let Acquired::Yes(snap) = store.acquire(id, "b", 5_000, 6_000).await.unwrap() else {
        panic!("expired lease not taken over")
    };
    assert_eq!(snap.instance.version, v + 1);
    assert!(snap.instance.cancel_requested);
    assert_eq!(snap.records.len(), 1);
    assert_eq!(snap.records[0].attempt, 2);
    assert!(
        store
            .commit(id, "a", v, &commit)
            .await
            .unwrap_err()
            .is_conflict()
    );
    // Releasing the lease: a terminal commit with no lease.
    store
        .commit(
            id,
            "b",
            v + 1,
            &Commit::new(
                SagaStatus::Completed,
                Some("done".into()),
                None,
                None,
                5_100,
            ),
        )
        .await
        .unwrap();
    let snap = store.load(id).await.unwrap().unwrap();
    assert_eq!(snap.instance.status, SagaStatus::Completed);
    assert_eq!(snap.instance.lease_owner, None);
    assert!(!store.recoverable(9_000, 10).await.unwrap().contains(&id));
    assert!(store.load(SagaId::new()).await.unwrap().is_none());
    assert!(matches!(
        store.acquire(SagaId::new(), "a", 0, 1).await.unwrap(),
        Acquired::NotFound
    ));
}

pub async fn cancel_from_another_process<S: SagaStore + Clone>(store: S) {
    let j = Journal::new();
    j.set("reserve-inventory", Phase::Forward, Behaviour::Hang);
    let driver = orch(&store, &j, "driver");
    let other = orch(&store, &j, "other");
    let id = driver.start("order-creation", &ORDER).await.unwrap();
    let run = driver.spawn(id);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // `other` does not drive it: the driver sees the flag at its next heartbeat.
    other.cancel(id).await.unwrap();
    assert_eq!(run.await.unwrap().unwrap(), SagaStatus::Compensated);
    assert_eq!(
        j.done(Phase::Compensate),
        ["reserve-inventory", "create-order"]
    );
    let d = other.instance(id).await.unwrap().unwrap();
    assert_eq!(d.instance.reason.as_deref(), Some("cancelled"));
    assert!(d.instance.cancel_requested);
}
