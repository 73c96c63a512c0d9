//! The transactional outbox on SQLite (feature `sqlite`), in a temporary database file per
//! test, publishing to the memory broker.
#![cfg(all(feature = "sqlite", feature = "memory"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use sinew_messaging::envelope::Event;
use sinew_messaging::memory::MemoryBroker;
use sinew_messaging::outbox::{Relay, SqliteOutbox};
use sinew_messaging::subscriber::{Delivery, Outcome, Subscription, handler_fn};
use sinew_messaging::{Subscriber, SubscriptionConfig};
use sqlx::AssertSqlSafe;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout};

/// Bound of every wait for something that must happen (never a timing assertion).
const WAIT: Duration = Duration::from_secs(30);

struct Db {
    outbox: SqliteOutbox,
    path: PathBuf,
}

impl Db {
    async fn new() -> Self {
        let path =
            std::env::temp_dir().join(format!("sinew-outbox-{}.db", uuid::Uuid::now_v7().simple()));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(
                SqliteConnectOptions::new()
                    .filename(&path)
                    .create_if_missing(true)
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .busy_timeout(Duration::from_secs(10)),
            )
            .await
            .unwrap();
        let outbox = SqliteOutbox::builder(pool)
            .source("outbox-tests")
            .build()
            .unwrap();
        outbox.migrate().await.unwrap();
        outbox.migrate().await.unwrap(); // idempotent
        Self { outbox, path }
    }

    async fn drop(self) {
        self.outbox.pool().close().await;
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}

fn unique() -> String {
    format!("t{}", uuid::Uuid::now_v7().simple())
}

async fn enqueue_committed(outbox: &SqliteOutbox, events: &[Event<u32>]) {
    let mut tx = outbox.pool().begin().await.unwrap();
    for e in events {
        outbox.enqueue(&mut tx, e).await.unwrap();
    }
    tx.commit().await.unwrap();
    outbox.wake();
}

type Got = (String, u32, String);

async fn collect(
    broker: &MemoryBroker,
    key: &str,
) -> (mpsc::UnboundedReceiver<Got>, impl Subscription) {
    let cfg = SubscriptionConfig::builder(unique(), "outbox")
        .routing_key(key)
        .build()
        .unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let sub = broker
        .subscriber()
        .subscribe(
            cfg,
            handler_fn("collect", move |d: Delivery| {
                let tx = tx.clone();
                async move {
                    let e = d.decode::<u32>()?;
                    let _ = tx.send((
                        e.aggregate_id().to_owned(),
                        *e.data(),
                        e.event_id().to_string(),
                    ));
                    Ok(Outcome::Ack)
                }
            }),
        )
        .await
        .unwrap();
    (rx, sub)
}

async fn recv_n(rx: &mut mpsc::UnboundedReceiver<Got>, n: usize) -> Vec<Got> {
    let mut got = Vec::new();
    while got.len() < n {
        match timeout(WAIT, rx.recv()).await {
            Ok(Some(x)) => got.push(x),
            _ => panic!("received {} of {n}", got.len()),
        }
    }
    got
}

fn assert_per_aggregate_order(got: &[Got]) {
    let mut per: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for (agg, n, _) in got {
        per.entry(agg).or_default().push(*n);
    }
    for (agg, seq) in per {
        let mut sorted = seq.clone();
        sorted.sort_unstable();
        assert_eq!(seq, sorted, "order of {agg}");
    }
}

#[tokio::test]
async fn a_rolled_back_transaction_enqueues_nothing() {
    let db = Db::new().await;
    let key = format!("{}.created", unique());
    let mut tx = db.outbox.pool().begin().await.unwrap();
    db.outbox
        .enqueue(&mut tx, &Event::new(key.clone(), "a", 1u32))
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    let stats = db.outbox.stats().await.unwrap();
    assert_eq!((stats.pending, stats.sent, stats.failed), (0, 0, 0));
    let broker = MemoryBroker::new();
    let relay = Relay::builder(db.outbox.clone(), broker.publisher())
        .build()
        .unwrap();
    assert_eq!(relay.run_once().await.unwrap().claimed, 0);
    db.drop().await;
}

#[tokio::test]
async fn a_committed_event_is_published_exactly_once_in_per_aggregate_order() {
    let db = Db::new().await;
    let broker = MemoryBroker::new();
    let key = format!("{}.created", unique());
    let (mut rx, sub) = collect(&broker, &key).await;
    let events: Vec<Event<u32>> = (0..30)
        .map(|n| Event::new(key.clone(), format!("agg-{}", n % 4), n))
        .collect();
    enqueue_committed(&db.outbox, &events).await;
    assert_eq!(db.outbox.stats().await.unwrap().pending, 30);
    let relay = Relay::builder(db.outbox.clone(), broker.publisher())
        .batch_size(8)
        .build()
        .unwrap();
    let mut published = 0;
    loop {
        let batch = relay.run_once().await.unwrap();
        if batch.claimed == 0 {
            break;
        }
        assert_eq!(batch.failed, 0);
        published += batch.published;
    }
    assert_eq!(published, 30);
    let got = recv_n(&mut rx, 30).await;
    let ids: HashSet<&str> = got.iter().map(|g| g.2.as_str()).collect();
    let want: HashSet<String> = events.iter().map(|e| e.event_id().to_string()).collect();
    assert_eq!(ids, want.iter().map(String::as_str).collect::<HashSet<_>>());
    assert_eq!(ids.len(), 30, "each event once");
    assert_per_aggregate_order(&got);
    let stats = db.outbox.stats().await.unwrap();
    assert_eq!((stats.pending, stats.sent, stats.failed), (0, 30, 0));
    assert_eq!(relay.run_once().await.unwrap().claimed, 0, "nothing twice");
    sleep(Duration::from_millis(100)).await;
    assert!(rx.try_recv().is_err());
    sleep(Duration::from_millis(20)).await;
    assert_eq!(
        db.outbox
            .purge_sent_older_than(Duration::from_millis(1), 1000)
            .await
            .unwrap(),
        30
    );
    sub.shutdown(WAIT).await;
    db.drop().await;
}

#[tokio::test]
async fn a_failed_publish_is_retried_and_holds_back_its_aggregate() {
    let db = Db::new().await;
    let broker = MemoryBroker::new();
    let key = format!("{}.created", unique());
    let (mut rx, sub) = collect(&broker, &key).await;
    enqueue_committed(
        &db.outbox,
        &[
            Event::new(key.clone(), "a", 1u32),
            Event::new(key.clone(), "a", 2u32),
            Event::new(key.clone(), "b", 1u32),
        ],
    )
    .await;
    let relay = Relay::builder(db.outbox.clone(), broker.publisher())
        .backoff(Duration::from_millis(50), Duration::from_millis(50))
        .build()
        .unwrap();
    broker.fail_next_publishes(1);
    let first = relay.run_once().await.unwrap();
    assert_eq!(first.failed, 1);
    let got = recv_n(&mut rx, first.published).await;
    assert!(got.iter().all(|(agg, _, _)| agg != "a"), "{got:?}");
    assert_eq!(db.outbox.stats().await.unwrap().pending, 2);
    let (attempts, error): (i64, Option<String>) = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT attempts, last_error FROM {} WHERE sent_at IS NULL ORDER BY id LIMIT 1",
        db.outbox.table()
    )))
    .fetch_one(db.outbox.pool())
    .await
    .unwrap();
    assert_eq!(attempts, 1);
    assert!(error.is_some_and(|e| e.contains("connection lost")));

    let deadline = tokio::time::Instant::now() + WAIT;
    while db.outbox.stats().await.unwrap().pending > 0 {
        assert!(tokio::time::Instant::now() < deadline, "retry never came");
        relay.run_once().await.unwrap();
        sleep(Duration::from_millis(20)).await;
    }
    let rest = recv_n(&mut rx, 3 - got.len()).await;
    let a: Vec<u32> = got
        .iter()
        .chain(&rest)
        .filter(|g| g.0 == "a")
        .map(|g| g.1)
        .collect();
    assert_eq!(a, [1, 2]);
    sub.shutdown(WAIT).await;
    db.drop().await;
}

#[tokio::test]
async fn a_row_is_parked_after_max_attempts_and_retry_failed_revives_it() {
    let db = Db::new().await;
    let broker = MemoryBroker::new();
    let key = format!("{}.created", unique());
    let (mut rx, sub) = collect(&broker, &key).await;
    enqueue_committed(&db.outbox, &[Event::new(key.clone(), "a", 1u32)]).await;
    let relay = Relay::builder(db.outbox.clone(), broker.publisher())
        .max_attempts(1)
        .build()
        .unwrap();
    broker.fail_next_publishes(1);
    let report = relay.run_once().await.unwrap();
    assert_eq!((report.failed, report.parked), (1, 1));
    assert_eq!(db.outbox.stats().await.unwrap().failed, 1);
    assert_eq!(
        relay.run_once().await.unwrap().claimed,
        0,
        "parked rows wait"
    );
    assert_eq!(db.outbox.retry_failed().await.unwrap(), 1);
    assert_eq!(relay.run_once().await.unwrap().published, 1);
    assert_eq!(recv_n(&mut rx, 1).await[0].1, 1);
    sub.shutdown(WAIT).await;
    db.drop().await;
}

#[tokio::test]
async fn aggregates_held_back_by_parked_rows_never_starve_the_others() {
    let db = Db::new().await;
    let broker = MemoryBroker::new();
    let key = format!("{}.created", unique());
    let (mut rx, sub) = collect(&broker, &key).await;
    // A batch of two: `a` and `b` are the two oldest aggregates, and their heads get parked.
    enqueue_committed(
        &db.outbox,
        &[
            Event::new(key.clone(), "a", 1u32),
            Event::new(key.clone(), "a", 2u32),
            Event::new(key.clone(), "b", 3u32),
        ],
    )
    .await;
    let relay = Relay::builder(db.outbox.clone(), broker.publisher())
        .batch_size(2)
        .max_attempts(1)
        .build()
        .unwrap();
    broker.fail_next_publishes(2);
    let report = relay.run_once().await.unwrap();
    assert_eq!((report.claimed, report.parked), (2, 2));
    // Newer rows of another aggregate still go out, although the oldest unsent rows (a's two
    // and b's one) fill more than a batch.
    enqueue_committed(&db.outbox, &[Event::new(key.clone(), "c", 4u32)]).await;
    let report = relay.run_once().await.unwrap();
    assert_eq!((report.claimed, report.published), (1, 1));
    assert_eq!(recv_n(&mut rx, 1).await[0].1, 4);
    // Revived, `a` keeps its order.
    assert_eq!(db.outbox.retry_failed().await.unwrap(), 2);
    // Heads `a`1 and `b`3 first, then `a`2.
    assert_eq!(relay.run_once().await.unwrap().published, 2);
    assert_eq!(relay.run_once().await.unwrap().published, 1);
    let got = recv_n(&mut rx, 3).await;
    let a: Vec<u32> = got.iter().filter(|g| g.0 == "a").map(|g| g.1).collect();
    assert_eq!(a, [1, 2]);
    sub.shutdown(WAIT).await;
    db.drop().await;
}

#[tokio::test]
async fn the_started_relay_wakes_on_commit_and_shuts_down_gracefully() {
    let db = Db::new().await;
    let broker = MemoryBroker::new();
    let key = format!("{}.created", unique());
    let (mut rx, sub) = collect(&broker, &key).await;
    // A poll interval far beyond the test's waits: only the wake-up can deliver in time.
    let relay = Relay::builder(db.outbox.clone(), broker.publisher())
        .poll_interval(Duration::from_secs(3600))
        .build()
        .unwrap()
        .start();
    // Let the relay run its first (empty) batch and go to sleep.
    sleep(Duration::from_millis(100)).await;
    let events: Vec<Event<u32>> = (0..10)
        .map(|n| Event::new(key.clone(), format!("agg-{}", n % 3), n))
        .collect();
    enqueue_committed(&db.outbox, &events).await;
    let got = recv_n(&mut rx, 10).await;
    assert_per_aggregate_order(&got);
    let report = relay.shutdown(WAIT).await;
    assert!(report.drained);
    assert_eq!(report.published, 10);
    assert_eq!(db.outbox.stats().await.unwrap().sent, 10);
    sub.shutdown(WAIT).await;
    db.drop().await;
}
