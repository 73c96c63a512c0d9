//! The transactional outbox against the real PostgreSQL at `127.0.0.1:5432` (user `postgres`,
//! database `test`; `SINEW_TEST_DATABASE_URL` overrides), publishing to the memory broker and
//! (feature `rabbitmq`) to the real RabbitMQ at `127.0.0.1:5672`. Each test works on its own
//! schema, table and `NOTIFY` channel, dropped at the end. Without a server the tests fail
//! under `CI=true` and are skipped otherwise.
#![cfg(all(feature = "postgres", feature = "memory"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sinew_messaging::envelope::Event;
use sinew_messaging::memory::{MemoryBroker, MemoryPublisher};
use sinew_messaging::outbox::{PgOutbox, Relay};
use sinew_messaging::subscriber::{Delivery, Outcome, Subscription, handler_fn};
use sinew_messaging::{Message, PublishError, Publisher, Subscriber, SubscriptionConfig};
use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, PgPool};
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout};

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// Bound of every wait for something that must happen (never a timing assertion).
const WAIT: Duration = Duration::from_secs(30);

struct Db {
    pool: PgPool,
    schema: String,
}

impl Db {
    /// A fresh schema, or why there is none (the test skips; under `CI=true` it fails).
    async fn new() -> Option<Self> {
        let url =
            std::env::var("SINEW_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned());
        let pool = match PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(10))
            .connect(&url)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "CI=true and PostgreSQL at {url} is unreachable: {e}"
                );
                eprintln!("skipped: PostgreSQL at {url} is unreachable: {e}");
                return None;
            }
        };
        let schema = format!("outbox_{}", uuid::Uuid::now_v7().simple());
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&pool)
            .await
            .unwrap();
        Some(Self { pool, schema })
    }

    /// An outbox in this schema, migrated; its channel is the qualified table name, unique.
    async fn outbox(&self) -> PgOutbox {
        let outbox = PgOutbox::builder(self.pool.clone())
            .table(format!("{}.sinew_outbox", self.schema))
            .source("outbox-tests")
            .build()
            .unwrap();
        outbox.migrate().await.unwrap();
        outbox.migrate().await.unwrap(); // idempotent
        outbox
    }

    async fn drop(self) {
        sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP SCHEMA {} CASCADE",
            self.schema
        )))
        .execute(&self.pool)
        .await
        .unwrap();
        self.pool.close().await;
    }
}

macro_rules! db_or_skip {
    () => {
        match Db::new().await {
            Some(db) => db,
            None => return,
        }
    };
}

fn unique() -> String {
    format!("t{}", uuid::Uuid::now_v7().simple())
}

/// Enqueues `events` in one committed transaction.
async fn enqueue_committed(outbox: &PgOutbox, events: &[Event<u32>]) {
    let mut tx = outbox.pool().begin().await.unwrap();
    for e in events {
        outbox.enqueue(&mut tx, e).await.unwrap();
    }
    tx.commit().await.unwrap();
}

/// A subscription that reports each delivery's (aggregate, n, message ID).
async fn collect(
    broker: &MemoryBroker,
    key: &str,
) -> (
    mpsc::UnboundedReceiver<(String, u32, String)>,
    impl Subscription,
) {
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

async fn recv_n(
    rx: &mut mpsc::UnboundedReceiver<(String, u32, String)>,
    n: usize,
) -> Vec<(String, u32, String)> {
    let mut got = Vec::new();
    while got.len() < n {
        match timeout(WAIT, rx.recv()).await {
            Ok(Some(x)) => got.push(x),
            _ => panic!("received {} of {n}", got.len()),
        }
    }
    got
}

#[tokio::test]
async fn a_rolled_back_transaction_enqueues_nothing() {
    let db = db_or_skip!();
    let outbox = db.outbox().await;
    let broker = MemoryBroker::new();
    let key = format!("{}.created", unique());
    let (mut rx, sub) = collect(&broker, &key).await;

    let mut tx = outbox.pool().begin().await.unwrap();
    let id = outbox
        .enqueue(&mut tx, &Event::new(key.clone(), "a", 1u32))
        .await
        .unwrap();
    assert!(id > 0);
    tx.rollback().await.unwrap();

    let relay = Relay::builder(outbox.clone(), broker.publisher())
        .build()
        .unwrap();
    assert_eq!(relay.run_once().await.unwrap().claimed, 0);
    assert_eq!(outbox.stats().await.unwrap().pending, 0);
    assert!(rx.try_recv().is_err(), "nothing was published");
    sub.shutdown(WAIT).await;
    db.drop().await;
}

#[tokio::test]
async fn a_committed_event_is_published_exactly_once_and_marked_sent() {
    let db = db_or_skip!();
    let outbox = db.outbox().await;
    let broker = MemoryBroker::new();
    let key = format!("{}.created", unique());
    let (mut rx, sub) = collect(&broker, &key).await;
    let events: Vec<Event<u32>> = (0..30)
        .map(|n| Event::new(key.clone(), format!("agg-{}", n % 4), n))
        .collect();
    enqueue_committed(&outbox, &events).await;
    assert_eq!(outbox.stats().await.unwrap().pending, 30);

    let relay = Relay::builder(outbox.clone(), broker.publisher())
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
    assert_eq!(ids.len(), 30, "each event once");
    let want: HashSet<String> = events.iter().map(|e| e.event_id().to_string()).collect();
    assert_eq!(ids, want.iter().map(String::as_str).collect::<HashSet<_>>());
    // Per-aggregate order.
    let mut per: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for (agg, n, _) in &got {
        per.entry(agg).or_default().push(*n);
    }
    for (agg, seq) in per {
        let mut sorted = seq.clone();
        sorted.sort_unstable();
        assert_eq!(seq, sorted, "order of {agg}");
    }
    let stats = outbox.stats().await.unwrap();
    assert_eq!((stats.pending, stats.sent, stats.failed), (0, 30, 0));
    // Nothing is published twice.
    assert_eq!(relay.run_once().await.unwrap().claimed, 0);
    sleep(Duration::from_millis(200)).await;
    assert!(rx.try_recv().is_err());
    // Retention deletes sent rows.
    sleep(Duration::from_millis(20)).await;
    assert_eq!(
        outbox
            .purge_sent_older_than(Duration::from_millis(1), 1000)
            .await
            .unwrap(),
        30
    );
    sub.shutdown(WAIT).await;
    db.drop().await;
}

#[tokio::test]
async fn a_failed_publish_leaves_the_row_and_holds_back_its_aggregate_until_retried() {
    let db = db_or_skip!();
    let outbox = db.outbox().await;
    let broker = MemoryBroker::new();
    let key = format!("{}.created", unique());
    let (mut rx, sub) = collect(&broker, &key).await;
    // Two aggregates; the first publish of the batch (a's head) fails.
    enqueue_committed(
        &outbox,
        &[
            Event::new(key.clone(), "a", 1u32),
            Event::new(key.clone(), "a", 2u32),
            Event::new(key.clone(), "b", 1u32),
        ],
    )
    .await;
    let relay = Relay::builder(outbox.clone(), broker.publisher())
        .backoff(Duration::from_millis(50), Duration::from_millis(50))
        .build()
        .unwrap();
    broker.fail_next_publishes(1);
    let first = relay.run_once().await.unwrap();
    assert_eq!(first.failed, 1);
    // a:1 failed, a:2 waits behind it; b:1 (its own aggregate) went out.
    let got = recv_n(&mut rx, first.published).await;
    assert!(got.iter().all(|(agg, _, _)| agg != "a"), "{got:?}");
    let stats = outbox.stats().await.unwrap();
    assert_eq!(stats.pending, 2, "the failed row and the one behind it");
    let (attempts, error): (i32, Option<String>) = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT attempts, last_error FROM {} WHERE sent_at IS NULL ORDER BY id LIMIT 1",
        outbox.table()
    )))
    .fetch_one(outbox.pool())
    .await
    .unwrap();
    assert_eq!(attempts, 1);
    assert!(error.is_some_and(|e| e.contains("connection lost")));

    // After the backoff the row is retried, then the one behind it, in order.
    let mut rest = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while outbox.stats().await.unwrap().pending > 0 {
        assert!(tokio::time::Instant::now() < deadline, "retry never came");
        relay.run_once().await.unwrap();
        sleep(Duration::from_millis(20)).await;
    }
    rest.extend(recv_n(&mut rx, 3 - got.len()).await);
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
    let db = db_or_skip!();
    let outbox = db.outbox().await;
    let broker = MemoryBroker::new();
    let key = format!("{}.created", unique());
    // Nobody is bound yet: every publish is unroutable.
    enqueue_committed(&outbox, &[Event::new(key.clone(), "a", 1u32)]).await;
    let relay = Relay::builder(outbox.clone(), broker.publisher())
        .max_attempts(2)
        .backoff(Duration::from_millis(1), Duration::from_millis(1))
        .build()
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while outbox.stats().await.unwrap().failed == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never parked");
        relay.run_once().await.unwrap();
        sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        relay.run_once().await.unwrap().claimed,
        0,
        "parked rows wait"
    );
    let (mut rx, sub) = collect(&broker, &key).await;
    assert_eq!(outbox.retry_failed().await.unwrap(), 1);
    assert_eq!(relay.run_once().await.unwrap().published, 1);
    recv_n(&mut rx, 1).await;
    sub.shutdown(WAIT).await;
    db.drop().await;
}

/// A publisher that records, per aggregate, the order of publishes and whether two of one
/// aggregate (or two of one row) were ever in flight at once.
#[derive(Clone)]
struct Watch {
    inner: MemoryPublisher,
    state: Arc<Mutex<WatchState>>,
}

#[derive(Default)]
struct WatchState {
    in_flight: HashSet<String>,
    overlaps: Vec<String>,
    order: BTreeMap<String, Vec<u32>>,
    ids: Vec<String>,
}

impl Publisher for Watch {
    async fn publish(&self, message: Message) -> Result<(), PublishError> {
        let agg = message.aggregate_id().unwrap_or_default().to_owned();
        {
            let mut st = self.state.lock().unwrap();
            if !st.in_flight.insert(agg.clone()) {
                st.overlaps.push(agg.clone());
            }
        }
        // Uneven publish times, so that two relays interleave.
        sleep(Duration::from_millis(u64::from(fastrand::u8(..5)))).await;
        let n = Event::<u32>::from_message(&message).unwrap().into_data();
        let result = self.inner.publish(message.clone()).await;
        let mut st = self.state.lock().unwrap();
        st.in_flight.remove(&agg);
        if result.is_ok() {
            st.order.entry(agg).or_default().push(n);
            st.ids.push(message.message_id().to_owned());
        }
        result
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_relays_never_publish_a_row_twice_and_keep_per_aggregate_order() {
    let db = db_or_skip!();
    let outbox = db.outbox().await;
    let broker = MemoryBroker::new();
    let key = format!("{}.created", unique());
    let (mut rx, sub) = collect(&broker, &key).await;
    let watch = Watch {
        inner: broker.publisher(),
        state: Arc::default(),
    };
    let relays: Vec<_> = (0..2)
        .map(|_| {
            Relay::builder(outbox.clone(), watch.clone())
                .batch_size(7)
                .poll_interval(Duration::from_millis(50))
                .build()
                .unwrap()
                .start()
        })
        .collect();
    // Enqueue while the relays run: 10 aggregates, 20 events each, in 20 transactions.
    let mut all = 0;
    for round in 0..20u32 {
        let events: Vec<Event<u32>> = (0..10)
            .map(|a| Event::new(key.clone(), format!("agg-{a}"), round))
            .collect();
        all += events.len();
        enqueue_committed(&outbox, &events).await;
    }
    let got = recv_n(&mut rx, all).await;
    for relay in relays {
        assert!(relay.shutdown(WAIT).await.drained);
    }
    {
        let st = watch.state.lock().unwrap();
        assert!(
            st.overlaps.is_empty(),
            "two publishes of one aggregate in flight at once: {:?}",
            st.overlaps
        );
        let unique_ids: HashSet<&String> = st.ids.iter().collect();
        assert_eq!(unique_ids.len(), st.ids.len(), "a row was published twice");
        assert_eq!(st.ids.len(), all);
        for (agg, seq) in &st.order {
            assert_eq!(seq, &(0..20).collect::<Vec<_>>(), "publish order of {agg}");
        }
    }
    let delivered: HashSet<&str> = got.iter().map(|g| g.2.as_str()).collect();
    assert_eq!(delivered.len(), all);
    assert_eq!(outbox.stats().await.unwrap().pending, 0);
    sub.shutdown(WAIT).await;
    db.drop().await;
}

#[tokio::test]
async fn notify_wakes_an_idle_relay() {
    let db = db_or_skip!();
    let outbox = db.outbox().await;
    let broker = MemoryBroker::new();
    let key = format!("{}.created", unique());
    let (mut rx, sub) = collect(&broker, &key).await;
    // The relay would not poll again for an hour: only a NOTIFY can wake it.
    let relay = Relay::builder(outbox.clone(), broker.publisher())
        .poll_interval(Duration::from_secs(3600))
        .build()
        .unwrap()
        .start();
    // Wait until it ran its first (empty) batch and went to sleep listening.
    let deadline = tokio::time::Instant::now() + WAIT;
    while relay.report().batches == 0 {
        assert!(tokio::time::Instant::now() < deadline, "relay never ran");
        sleep(Duration::from_millis(10)).await;
    }
    sleep(Duration::from_millis(200)).await;
    for round in 0..3u32 {
        enqueue_committed(&outbox, &[Event::new(key.clone(), "a", round)]).await;
        let got = recv_n(&mut rx, 1).await;
        assert_eq!(got[0].1, round);
    }
    let report = relay.shutdown(WAIT).await;
    assert!(report.drained);
    assert_eq!(report.published, 3);
    sub.shutdown(WAIT).await;
    db.drop().await;
}

#[tokio::test]
async fn the_relay_deletes_sent_rows_after_retention_and_shuts_down_gracefully() {
    let db = db_or_skip!();
    let outbox = db.outbox().await;
    let broker = MemoryBroker::new();
    let key = format!("{}.created", unique());
    let (mut rx, sub) = collect(&broker, &key).await;
    enqueue_committed(
        &outbox,
        &(0..5)
            .map(|n| Event::new(key.clone(), "a", n))
            .collect::<Vec<_>>(),
    )
    .await;
    let relay = Relay::builder(outbox.clone(), broker.publisher())
        .retention(Duration::ZERO)
        .cleanup_interval(Duration::from_millis(50))
        .poll_interval(Duration::from_millis(50))
        .build()
        .unwrap()
        .start();
    recv_n(&mut rx, 5).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stats = outbox.stats().await.unwrap();
        if stats.sent == 0 && stats.pending == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never purged: {stats:?}"
        );
        sleep(Duration::from_millis(20)).await;
    }
    let report = relay.shutdown(WAIT).await;
    assert!(report.drained);
    assert_eq!(report.published, 5);
    assert_eq!(report.purged, 5);
    sub.shutdown(WAIT).await;
    db.drop().await;
}

/// A publisher whose publishes never resolve, as with a broker that stopped answering.
#[derive(Clone)]
struct Stuck {
    entered: Arc<tokio::sync::Notify>,
}

impl Publisher for Stuck {
    async fn publish(&self, _message: Message) -> Result<(), PublishError> {
        self.entered.notify_one();
        std::future::pending().await
    }
}

#[tokio::test]
async fn a_batch_cut_off_at_the_shutdown_deadline_rolls_back_and_is_published_later() {
    let db = db_or_skip!();
    let outbox = db.outbox().await;
    let key = format!("{}.created", unique());
    enqueue_committed(&outbox, &[Event::new(key.clone(), "a", 1u32)]).await;
    let stuck = Stuck {
        entered: Arc::default(),
    };
    let relay = Relay::builder(outbox.clone(), stuck.clone())
        .build()
        .unwrap()
        .start();
    timeout(WAIT, stuck.entered.notified())
        .await
        .expect("the relay publishes");
    let report = relay.shutdown(Duration::from_millis(100)).await;
    assert!(!report.drained, "the stuck batch was cut off");
    assert_eq!(report.published, 0);
    assert_eq!(
        outbox.stats().await.unwrap().pending,
        1,
        "rolled back, still unsent"
    );

    let broker = MemoryBroker::new();
    let (mut rx, sub) = collect(&broker, &key).await;
    let relay = Relay::builder(outbox.clone(), broker.publisher())
        .build()
        .unwrap();
    // The aborted batch's transaction may take a moment to roll back and release its lock.
    let deadline = tokio::time::Instant::now() + WAIT;
    while relay.run_once().await.unwrap().published == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the row stayed locked"
        );
        sleep(Duration::from_millis(20)).await;
    }
    recv_n(&mut rx, 1).await;
    sub.shutdown(WAIT).await;
    db.drop().await;
}

#[tokio::test]
async fn invalid_configuration_is_rejected() {
    let db = db_or_skip!();
    for bad in ["1table", "a.b.c", "x; DROP TABLE y", ""] {
        assert!(
            PgOutbox::builder(db.pool.clone())
                .table(bad)
                .build()
                .is_err(),
            "{bad}"
        );
    }
    let outbox = PgOutbox::new(db.pool.clone());
    assert!(
        Relay::builder(outbox.clone(), MemoryBroker::new().publisher())
            .batch_size(0)
            .build()
            .is_err()
    );
    assert!(
        Relay::builder(outbox, MemoryBroker::new().publisher())
            .backoff(Duration::from_secs(2), Duration::from_secs(1))
            .build()
            .is_err()
    );
    db.drop().await;
}

/// The same guarantees with the RabbitMQ publisher: the relay marks rows sent only once the
/// broker confirmed them.
#[cfg(feature = "rabbitmq")]
mod rabbitmq {
    use sinew_messaging::rabbitmq::RabbitBroker;

    use super::*;

    const URI: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

    async fn broker_or_skip() -> Option<RabbitBroker> {
        match RabbitBroker::builder(URI)
            .exchange(format!("sinew-test-{}", unique()))
            .app_id("outbox-tests")
            .connect()
            .await
        {
            Ok(b) => Some(b),
            Err(e) => {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "CI=true and RabbitMQ is unreachable: {e}"
                );
                eprintln!("skipped: RabbitMQ is unreachable: {e}");
                None
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rollback_nothing_commit_once_failure_retried_through_rabbitmq() {
        let db = db_or_skip!();
        let Some(broker) = broker_or_skip().await else {
            db.drop().await;
            return;
        };
        let outbox = db.outbox().await;
        let key = format!("{}.created", unique());
        let relay = Relay::builder(outbox.clone(), broker.publisher())
            .backoff(Duration::from_millis(10), Duration::from_millis(10))
            .build()
            .unwrap();

        // Nobody bound yet: the confirmed publish is unroutable, the row stays.
        enqueue_committed(&outbox, &[Event::new(key.clone(), "a", 0u32)]).await;
        let batch = relay.run_once().await.unwrap();
        assert_eq!((batch.published, batch.failed), (0, 1));
        assert_eq!(outbox.stats().await.unwrap().pending, 1);

        // A rolled-back event never appears.
        let mut tx = outbox.pool().begin().await.unwrap();
        outbox
            .enqueue(&mut tx, &Event::new(key.clone(), "a", 99u32))
            .await
            .unwrap();
        tx.rollback().await.unwrap();

        let cfg = SubscriptionConfig::builder(unique(), "outbox")
            .routing_key(&key)
            .build()
            .unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
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
        enqueue_committed(
            &outbox,
            &(1..=20)
                .map(|n| Event::new(key.clone(), format!("agg-{}", n % 3), n))
                .collect::<Vec<_>>(),
        )
        .await;
        let relay = relay.start();
        let got = recv_n(&mut rx, 21).await;
        let report = relay.shutdown(WAIT).await;
        assert!(report.drained);
        let ids: HashSet<&str> = got.iter().map(|g| g.2.as_str()).collect();
        assert_eq!(ids.len(), 21, "each committed event exactly once");
        assert!(got.iter().all(|g| g.1 != 99), "the rolled-back event");
        let stats = outbox.stats().await.unwrap();
        assert_eq!((stats.pending, stats.sent), (0, 21));
        sleep(Duration::from_millis(300)).await;
        assert!(rx.try_recv().is_err(), "no duplicate");
        sub.shutdown(WAIT).await;
        broker.delete_topology().await.unwrap();
        db.drop().await;
    }
}

/// With the `opentelemetry` feature, `enqueue` stores the enqueuing span's context in the row;
/// the relay's producer span and the consumer's span both link to it.
#[cfg(feature = "opentelemetry")]
#[tokio::test]
async fn the_enqueuing_span_is_the_creation_context_of_the_published_event() {
    use sinew_tracing_kit::testing::{SpanKind, capture};
    use tracing::Instrument;

    let (_guard, spans) = capture();
    tracing::callsite::rebuild_interest_cache();
    let db = db_or_skip!();
    let outbox = db.outbox().await;
    let broker = MemoryBroker::new();
    let key = format!("{}.created", unique());
    let (mut rx, sub) = collect(&broker, &key).await;
    let event = Event::new(key.clone(), "a", 1u32);
    // Call sites registered by tests running beside this one while `capture` was installed may
    // have cached "nobody listens".
    tracing::callsite::rebuild_interest_cache();
    async {
        let mut tx = outbox.pool().begin().await.unwrap();
        outbox.enqueue(&mut tx, &event).await.unwrap();
        tx.commit().await.unwrap();
    }
    .instrument(tracing::info_span!("create-user"))
    .await;
    let relay = Relay::builder(outbox.clone(), broker.publisher())
        .build()
        .unwrap();
    assert_eq!(relay.run_once().await.unwrap().published, 1);
    recv_n(&mut rx, 1).await;
    sub.shutdown(WAIT).await;

    let request = spans.span("create-user");
    let id = event.event_id().to_string();
    for kind in [SpanKind::Producer, SpanKind::Consumer] {
        let span = spans
            .spans()
            .into_iter()
            .find(|s| s.kind == kind && s.attribute("messaging.message.id") == Some(id.as_str()))
            .unwrap_or_else(|| panic!("no {kind:?} span: {:?}", spans.names()));
        assert!(
            span.links
                .iter()
                .any(|l| l.trace_id == request.trace_id && l.span_id == request.span_id),
            "{kind:?} span links to the enqueuing span"
        );
    }
    db.drop().await;
}
