//! The RabbitMQ backend against the real broker on 127.0.0.1:5672 (`scripts/test` starts it):
//! the public conformance suite, in real time, plus RabbitMQ specifics (confirms, queue
//! depth, topology mismatch, consumer crash).
//!
//! When the broker is unreachable every test fails under `CI=true` and is skipped otherwise.
//! Each test runs on its own exchange and queue names and deletes them at the end, also when
//! it fails.
#![cfg(all(feature = "rabbitmq", feature = "testing"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod load;
mod proxy;

use std::future::Future;
use std::net::{SocketAddr, TcpStream};
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_util::FutureExt;
use sinew_messaging::envelope::Event;
use sinew_messaging::rabbitmq::{QueueType, RabbitBroker};
use sinew_messaging::subscriber::{
    Delivery, HandlerError, Outcome, SubscribeError, Subscription, handler_fn,
};
use sinew_messaging::testing::{self, BackendFactory, RabbitFactory};
use sinew_messaging::{Message, PublishError, Publisher, Subscriber, SubscriptionConfig};
use tokio::sync::mpsc;
use tokio::time::timeout;
use uuid::Uuid;

const URI: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const WAIT: Duration = Duration::from_secs(30);

/// `Ok(factory)` when RabbitMQ answers; `Err(reason)` to skip. Panics under `CI=true`, where
/// a missing broker is a failure, never a skip.
fn broker_or_skip() -> Result<RabbitFactory, String> {
    let addr: SocketAddr = "127.0.0.1:5672".parse().unwrap();
    match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
        Ok(_) => Ok(RabbitFactory::new(URI)),
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("RabbitMQ is not reachable on {addr} and CI=true: {e}")
        }
        Err(e) => Err(format!(
            "skipped: RabbitMQ is not reachable on {addr} ({e}); run scripts/test to start it"
        )),
    }
}

/// Runs `case`, then deletes what it declared, also when it panicked.
async fn with_cleanup<Fut: Future<Output = ()>>(factory: &RabbitFactory, case: Fut) {
    let result = AssertUnwindSafe(case).catch_unwind().await;
    factory.cleanup().await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

// Every case of the public suite runs here, in real time (the memory backend runs them under
// paused time). The suite's delays are short enough for a real broker: its retry tiers are
// 100–200 ms and its longest waits (2 s and 5 s in `delayed_retry_honours_delay`) are the
// delays that case measures.
/// One test per named case, each on a factory from `$factory` (a function returning
/// `Result<RabbitFactory, String>`, the error a reason to skip).
macro_rules! cases_on {
    ($factory:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let factory = match $factory() {
                    Ok(f) => f,
                    Err(reason) => {
                        eprintln!("{reason}");
                        return;
                    }
                };
                with_cleanup(&factory, testing::$name(&factory)).await;
            }
        )*
    };
}

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        cases_on!(broker_or_skip; $($name),*);
    };
}

sinew_messaging::for_each_conformance_case!(cases);

/// The whole suite again with classic subscription queues
/// ([`QueueType::Classic`](sinew_messaging::rabbitmq::QueueType)): the failure policy, dead
/// letters, redelivery and reconnects must not depend on the queue type.
mod classic {
    use sinew_messaging::rabbitmq::QueueType;
    use sinew_messaging::testing::{self, RabbitFactory};

    use super::{broker_or_skip, with_cleanup};

    fn classic() -> Result<RabbitFactory, String> {
        broker_or_skip().map(|f| f.queue_type(QueueType::Classic))
    }

    macro_rules! classic_cases {
        ($($name:ident),* $(,)?) => {
            cases_on!(classic; $($name),*);
        };
    }

    sinew_messaging::for_each_conformance_case!(classic_cases);
}

fn unique() -> String {
    format!("t{}", Uuid::now_v7().simple())
}

fn config(key: &str) -> SubscriptionConfig {
    SubscriptionConfig::builder(unique(), "rabbit")
        .routing_key(key)
        .build()
        .unwrap()
}

fn event(key: &str, n: u32) -> Message {
    Event::new(key, "agg", n)
        .to_message("rabbit-tests")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn publish_resolves_only_on_confirm_and_pipelines() {
    let factory = match broker_or_skip() {
        Ok(f) => f,
        Err(reason) => {
            eprintln!("{reason}");
            return;
        }
    };
    with_cleanup(&factory, async {
        let broker = factory.create().await;
        let key = format!("{}.created", unique());
        let cfg = config(&key);
        broker.subscriber().declare(&cfg).await.unwrap();
        assert_eq!(broker.queue_depth(&cfg.queue()).await.unwrap(), Some(0));

        let batch: Vec<Message> = (0..500).map(|n| event(&key, n)).collect();
        let results = broker.publisher().publish_batch(batch).await;
        assert_eq!(results.len(), 500);
        assert!(results.iter().all(Result::is_ok), "every publish confirmed");
        for n in 0..20 {
            broker.publisher().publish(event(&key, n)).await.unwrap();
        }
        // Confirmed means enqueued: the depth is exact right after the last publish resolved.
        assert_eq!(broker.queue_depth(&cfg.queue()).await.unwrap(), Some(520));
        assert_eq!(
            broker.queue_depth("no-such-queue-anywhere").await.unwrap(),
            None
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unroutable_messages_in_a_batch_fail_alone() {
    let factory = match broker_or_skip() {
        Ok(f) => f,
        Err(reason) => {
            eprintln!("{reason}");
            return;
        }
    };
    with_cleanup(&factory, async {
        let broker = factory.create().await;
        let key = format!("{}.created", unique());
        broker.subscriber().declare(&config(&key)).await.unwrap();
        let lost = format!("{}.nobody", unique());
        let results = broker
            .publisher()
            .publish_batch(vec![event(&key, 1), event(&lost, 2), event(&key, 3)])
            .await;
        assert!(results[0].is_ok());
        assert!(
            matches!(&results[1], Err(PublishError::Unroutable { routing_key, exchange })
                if *routing_key == lost && exchange == broker.exchange()),
            "got {:?}",
            results[1]
        );
        assert!(results[2].is_ok());
    })
    .await;
}

/// Whether a publish's result is the one its message deserves: `Ok` when it was routable,
/// `Unroutable` under the unbound key `lost` when it was not.
fn attributed_right(result: &Result<(), PublishError>, routable: bool, lost: &str) -> bool {
    match result {
        Ok(()) => routable,
        Err(PublishError::Unroutable { routing_key, .. }) => !routable && routing_key == lost,
        Err(_) => false,
    }
}

/// A broker ack covering several delivery tags must not hand one publish's `basic.return` to
/// another: with hundreds of concurrent publishes, half unroutable, every unroutable one is
/// `Unroutable` and every routable one `Ok`, and exactly the routable ones are enqueued.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_returns_go_to_the_publish_that_was_returned() {
    let factory = match broker_or_skip() {
        Ok(f) => f,
        Err(reason) => {
            eprintln!("{reason}");
            return;
        }
    };
    with_cleanup(&factory, async {
        let broker = factory.create().await;
        let key = format!("{}.created", unique());
        let cfg = config(&key);
        broker.subscriber().declare(&cfg).await.unwrap();
        let lost = format!("{}.nobody", unique());
        const RUNS: u32 = 5;
        const PER_RUN: u32 = 400;
        for run in 0..RUNS {
            let tasks: Vec<_> = (0..PER_RUN)
                .map(|n| {
                    let publisher = broker.publisher();
                    let routable = n % 2 == 0;
                    let message = event(if routable { &key } else { &lost }, run * PER_RUN + n);
                    tokio::spawn(async move { (routable, publisher.publish(message).await) })
                })
                .collect();
            let mut wrong = Vec::new();
            for task in tasks {
                let (routable, result) = task.await.unwrap();
                if !attributed_right(&result, routable, &lost) {
                    wrong.push((routable, result));
                }
            }
            assert!(
                wrong.is_empty(),
                "run {run}: {} of {PER_RUN} publishes misattributed: {wrong:?}",
                wrong.len()
            );
        }
        assert_eq!(
            broker.queue_depth(&cfg.queue()).await.unwrap(),
            Some(RUNS * PER_RUN / 2),
            "exactly the routable publishes were enqueued"
        );
    })
    .await;
}

/// The same through `publish_batch`, whose publishes leave their window slot when their
/// confirm arrives and attribute returns afterwards: two large batches at once, every other
/// message unroutable, each result in its own place.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn returns_in_large_concurrent_batches_go_to_the_publish_that_was_returned() {
    let factory = match broker_or_skip() {
        Ok(f) => f,
        Err(reason) => {
            eprintln!("{reason}");
            return;
        }
    };
    with_cleanup(&factory, async {
        let broker = factory.create().await;
        let key = format!("{}.created", unique());
        let cfg = config(&key);
        broker.subscriber().declare(&cfg).await.unwrap();
        let lost = format!("{}.nobody", unique());
        const PER_BATCH: u32 = 1_000;
        let batches: Vec<_> = (0..2)
            .map(|b| {
                let publisher = broker.publisher();
                let messages: Vec<Message> = (0..PER_BATCH)
                    .map(|n| event(if n % 2 == 0 { &key } else { &lost }, b * PER_BATCH + n))
                    .collect();
                tokio::spawn(async move { publisher.publish_batch(messages).await })
            })
            .collect();
        for batch in batches {
            let results = batch.await.unwrap();
            assert_eq!(results.len(), PER_BATCH as usize);
            for (n, result) in results.iter().enumerate() {
                assert!(
                    attributed_right(result, n % 2 == 0, &lost),
                    "message {n}: {result:?}"
                );
            }
        }
        assert_eq!(
            broker.queue_depth(&cfg.queue()).await.unwrap(),
            Some(PER_BATCH),
            "exactly the routable publishes were enqueued"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_queue_of_the_other_type_is_a_typed_startup_error() {
    let quorum_factory = match broker_or_skip() {
        Ok(f) => f,
        Err(reason) => {
            eprintln!("{reason}");
            return;
        }
    };
    let classic_factory = RabbitFactory::new(URI).queue_type(QueueType::Classic);
    let case = async {
        let quorum = quorum_factory.create().await;
        let classic = classic_factory.create().await;
        for (first, second) in [(&quorum, &classic), (&classic, &quorum)] {
            let config = config("order.*");
            first.subscriber().declare(&config).await.unwrap();
            // Declaring it again with the same type is fine.
            first.subscriber().declare(&config).await.unwrap();
            let err = second.subscriber().declare(&config).await.unwrap_err();
            // The dead-letter queue is declared first, so it is the one named.
            assert_eq!(
                err,
                SubscribeError::TopologyMismatch {
                    queue: config.dead_letter_queue(),
                    argument: "x-queue-type".to_owned(),
                },
            );
        }
    };
    with_cleanup(&classic_factory, with_cleanup(&quorum_factory, case)).await;
}

/// `RabbitSubscriber::queue_type` overrides the broker's type for one subscriber: one broker
/// consumes a quorum and a classic subscription side by side, and each queue really is of
/// its type (declaring it as the other is refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_broker_serves_quorum_and_classic_subscriptions() {
    let factory = match broker_or_skip() {
        Ok(f) => f,
        Err(reason) => {
            eprintln!("{reason}");
            return;
        }
    };
    with_cleanup(&factory, async {
        let broker = factory.create().await;
        let quorum = broker.subscriber();
        let classic = broker.subscriber().queue_type(QueueType::Classic);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut running = Vec::new();
        let mut configs = Vec::new();
        for (subscriber, name) in [(&quorum, "quorum"), (&classic, "classic")] {
            let key = format!("{}.{name}", unique());
            let cfg = config(&key);
            let tx = tx.clone();
            let handler = handler_fn("records", move |d: Delivery| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send((name, d.message().message_id().to_owned()));
                    Ok(Outcome::Ack)
                }
            });
            running.push(subscriber.subscribe(cfg.clone(), handler).await.unwrap());
            let m = event(&key, 1);
            broker.publisher().publish(m.clone()).await.unwrap();
            let (got, id) = timeout(WAIT, rx.recv()).await.unwrap().unwrap();
            assert_eq!((got, id.as_str()), (name, m.message_id()));
            configs.push(cfg);
        }
        for sub in running {
            assert!(sub.shutdown(WAIT).await.drained());
        }
        for (cfg, other) in configs.iter().zip([&classic, &quorum]) {
            assert_eq!(
                other.declare(cfg).await.unwrap_err(),
                SubscribeError::TopologyMismatch {
                    queue: cfg.dead_letter_queue(),
                    argument: "x-queue-type".to_owned(),
                },
            );
        }
        // The broker's own subscribers keep its type.
        broker.subscriber().declare(&configs[0]).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_queue_with_other_arguments_is_a_typed_startup_error() {
    let factory = match broker_or_skip() {
        Ok(f) => f,
        Err(reason) => {
            eprintln!("{reason}");
            return;
        }
    };
    with_cleanup(&factory, async {
        let broker = factory.create().await;
        let service = unique();
        let first = SubscriptionConfig::builder(service.clone(), "orders")
            .routing_key("order.*")
            .delayed_retries([Duration::from_secs(1)])
            .build()
            .unwrap();
        broker.subscriber().declare(&first).await.unwrap();
        // Declaring the same topology again is fine.
        broker.subscriber().declare(&first).await.unwrap();

        let changed = SubscriptionConfig::builder(service.clone(), "orders")
            .routing_key("order.*")
            .delayed_retries([Duration::from_secs(2)])
            .build()
            .unwrap();
        let handler = handler_fn("never", |_: Delivery| async { Ok(Outcome::Ack) });
        let err = broker
            .subscriber()
            .subscribe(changed, handler)
            .await
            .expect_err("a changed retry tier does not match the existing queue");
        assert_eq!(
            err,
            SubscribeError::TopologyMismatch {
                queue: format!("{service}.orders.retry.0"),
                argument: "x-message-ttl".to_owned(),
            }
        );
        // A subscription whose queue name is taken by a classic queue (here the retry tier
        // `{service}.orders.retry.0`) cannot become a quorum queue.
        let clash = SubscriptionConfig::builder(service.clone(), "orders.retry.0")
            .routing_key("order.*")
            .build()
            .unwrap();
        // The broker names the first argument it finds different (3.10: `x-message-ttl`).
        let err = broker.subscriber().declare(&clash).await.unwrap_err();
        let SubscribeError::TopologyMismatch { queue, argument } = err else {
            panic!("expected a topology mismatch, got {err:?}");
        };
        assert_eq!(queue, format!("{service}.orders.retry.0"));
        assert!(
            [
                "x-queue-type",
                "x-message-ttl",
                "x-dead-letter-exchange",
                "x-dead-letter-routing-key"
            ]
            .contains(&argument.as_str()),
            "names a differing argument: {argument}"
        );
        // The broker stays usable after the refused declarations.
        broker.subscriber().declare(&first).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_survives_a_consumer_crash() {
    let factory = match broker_or_skip() {
        Ok(f) => f,
        Err(reason) => {
            eprintln!("{reason}");
            return;
        }
    };
    with_cleanup(&factory, async {
        let broker = factory.create().await;
        let key = format!("{}.created", unique());
        let cfg = config(&key);
        let (entered_tx, mut entered) = mpsc::unbounded_channel();
        let crashing = handler_fn("hangs", move |d: Delivery| {
            let tx = entered_tx.clone();
            async move {
                let _ = tx.send(d.redelivered());
                std::future::pending::<Result<Outcome, HandlerError>>().await
            }
        });
        let sub = broker
            .subscriber()
            .subscribe(cfg.clone(), crashing)
            .await
            .unwrap();
        let m = event(&key, 7);
        broker.publisher().publish(m.clone()).await.unwrap();
        let first = timeout(WAIT, entered.recv()).await.unwrap().unwrap();
        assert!(!first, "the first delivery is not a redelivery");
        // The consumer dies without settling: no shutdown, no ack.
        drop(sub);

        let (tx, mut rx) = mpsc::unbounded_channel();
        let healthy = handler_fn("acks", move |d: Delivery| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(d);
                Ok(Outcome::Ack)
            }
        });
        let sub = broker
            .subscriber()
            .subscribe(cfg.clone(), healthy)
            .await
            .unwrap();
        let d = timeout(WAIT, rx.recv()).await.unwrap().unwrap();
        assert_eq!(d.message().message_id(), m.message_id());
        assert!(d.redelivered(), "the broker marks it redelivered");
        assert!(d.redelivery_count() >= 1);
        assert_eq!(d.attempt(), 1, "a crash is not a handler failure");
        assert!(sub.shutdown(WAIT).await.drained());
        assert_eq!(broker.queue_depth(&cfg.queue()).await.unwrap(), Some(0));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn publishing_recovers_after_the_publish_connection_drops() {
    let factory = match broker_or_skip() {
        Ok(f) => f,
        Err(reason) => {
            eprintln!("{reason}");
            return;
        }
    };
    with_cleanup(&factory, async {
        let broker = factory.create().await;
        let key = format!("{}.created", unique());
        let cfg = config(&key);
        broker.subscriber().declare(&cfg).await.unwrap();
        let messages: Vec<Message> = (0..2000).map(|n| event(&key, n)).collect();
        let publisher = broker.publisher();
        let batch = tokio::spawn({
            let messages = messages.clone();
            async move { publisher.publish_batch(messages).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        broker.drop_publish_connection().await;
        let results = batch.await.unwrap();

        // Publishes whose confirm was lost with the connection were published again, with
        // the same message ID, on the connection the supervisor opened: all succeed.
        for result in &results {
            assert_eq!(result, &Ok(()));
        }
        broker.publisher().publish(event(&key, 2000)).await.unwrap();
        let health = broker.health().await;
        assert!(health.publish_reconnects >= 1, "{health:?}");
        // Nothing is lost; a message whose confirm was lost may be there twice.
        let depth = broker.queue_depth(&cfg.queue()).await.unwrap().unwrap();
        let republished = u32::try_from(health.republished).unwrap();
        assert!(
            (2001..=2001 + republished).contains(&depth),
            "depth {depth} with {republished} republished"
        );
    })
    .await;
}

/// The pids of the broker's connections whose client properties mention `app_id` (our
/// connection names are `{app_id}-publish` and `{app_id}-consume`), or `None` when
/// `rabbitmqctl` cannot be run here.
fn connection_pids(app_id: &str) -> Option<Vec<String>> {
    let out = std::process::Command::new("rabbitmqctl")
        .args(["list_connections", "--no-table-headers", "--quiet"])
        .args(["pid", "client_properties"])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    Some(
        text.lines()
            .filter(|l| l.contains(app_id))
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_killed_by_the_broker_lose_nothing() {
    if let Err(reason) = broker_or_skip() {
        eprintln!("{reason}");
        return;
    }
    let app_id = unique();
    let Some(pids) = connection_pids(&app_id) else {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "rabbitmqctl cannot be run and CI=true"
        );
        eprintln!("skipped: rabbitmqctl cannot be run here");
        return;
    };
    assert!(pids.is_empty());
    let broker = RabbitBroker::builder(URI)
        .exchange(format!("sinew-test-{}", unique()))
        .app_id(app_id.clone())
        .connect()
        .await
        .unwrap();
    let run = AssertUnwindSafe(async {
        let key = format!("{}.created", unique());
        let (tx, mut rx) = mpsc::unbounded_channel();
        let handler = handler_fn("collects", move |d: Delivery| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(d.message().message_id().to_owned());
                Ok(Outcome::Ack)
            }
        });
        let sub = broker
            .subscriber()
            .subscribe(config(&key), handler)
            .await
            .unwrap();
        let messages: Vec<Message> = (0..100).map(|n| event(&key, n)).collect();
        let publish = |batch: Vec<Message>| {
            let publisher = broker.publisher();
            async move {
                for m in batch {
                    // A publish whose confirm was lost is retried with the same message ID.
                    let mut tries = 0;
                    while let Err(e) = publisher.publish(m.clone()).await {
                        assert!(e.is_retryable(), "{e:?}");
                        tries += 1;
                        assert!(tries < 50, "publishing does not recover");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        };
        publish(messages[..50].to_vec()).await;
        let mut seen = std::collections::BTreeSet::new();
        while seen.len() < 10 {
            seen.insert(timeout(WAIT, rx.recv()).await.unwrap().unwrap());
        }

        let pids = connection_pids(&app_id).unwrap();
        assert_eq!(
            pids.len(),
            2,
            "a publish and a consume connection: {pids:?}"
        );
        for pid in &pids {
            let status = std::process::Command::new("rabbitmqctl")
                .args(["close_connection", pid, "killed by test", "--quiet"])
                .status()
                .unwrap();
            assert!(status.success());
        }

        publish(messages[50..].to_vec()).await;
        while seen.len() < messages.len() {
            seen.insert(timeout(WAIT, rx.recv()).await.unwrap().unwrap());
        }
        let want: std::collections::BTreeSet<String> =
            messages.iter().map(|m| m.message_id().to_owned()).collect();
        assert_eq!(seen, want);
        assert!(sub.shutdown(WAIT).await.drained());
    })
    .catch_unwind()
    .await;
    broker.delete_topology().await.unwrap();
    if let Err(panic) = run {
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_follows_the_connections() {
    let factory = match broker_or_skip() {
        Ok(f) => f,
        Err(reason) => {
            eprintln!("{reason}");
            return;
        }
    };
    with_cleanup(&factory, async {
        let broker = factory.create().await;
        assert!(broker.health().await.is_ready());

        broker.drop_publish_connection().await;
        let health = broker.health().await;
        assert!(!health.publish && health.consume && !health.is_ready());
        let key = format!("{}.created", unique());
        let cfg = config(&key);
        broker.subscriber().declare(&cfg).await.unwrap();
        broker.publisher().publish(event(&key, 1)).await.unwrap();
        assert!(broker.health().await.is_ready(), "publishing re-opened it");

        broker.drop_consume_connection().await;
        let health = broker.health().await;
        assert!(health.publish && !health.consume);
        let handler = handler_fn("acks", |_: Delivery| async { Ok(Outcome::Ack) });
        let sub = broker.subscriber().subscribe(cfg, handler).await.unwrap();
        assert!(
            broker.health().await.is_ready(),
            "a new consumer re-opened it"
        );
        assert!(sub.shutdown(WAIT).await.drained());
    })
    .await;
}

/// Connects through `proxy` on a throw-away exchange.
async fn broker_via(proxy: &proxy::Proxy, buffer: usize) -> RabbitBroker {
    RabbitBroker::builder(proxy.uri())
        .exchange(format!("sinew-test-{}", unique()))
        .app_id(unique())
        .outage_buffer(buffer)
        .connect()
        .await
        .unwrap()
}

/// Waits until the broker reports its publish connection `up` (or not).
async fn until_publish_up(broker: &RabbitBroker, up: bool) {
    timeout(WAIT, async {
        while broker.health().await.publish != up {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the publish connection changes state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn publishes_wait_out_an_outage() {
    if let Err(reason) = broker_or_skip() {
        eprintln!("{reason}");
        return;
    }
    let proxy = proxy::Proxy::start().await;
    let broker = broker_via(&proxy, 1000).await;
    let run = AssertUnwindSafe(async {
        let key = format!("{}.created", unique());
        let cfg = config(&key);
        broker.subscriber().declare(&cfg).await.unwrap();
        proxy.down();
        until_publish_up(&broker, false).await;

        let messages: Vec<Message> = (0..50).map(|n| event(&key, n)).collect();
        let publisher = broker.publisher().deadline(Duration::from_secs(60));
        let waiting = tokio::spawn(async move { publisher.publish_batch(messages).await });
        // While the broker is unreachable, the publishes wait; none fails.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished(), "publishes wait for the broker");
        assert!(!broker.health().await.is_ready());

        proxy.up();
        let results = timeout(WAIT, waiting).await.unwrap().unwrap();
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        // Both connections come back by themselves, without a subscription asking.
        timeout(WAIT, async {
            while !broker.health().await.is_ready() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("ready again");
        let health = broker.health().await;
        assert!(health.publish_reconnects >= 1, "{health:?}");
        assert!(health.consume_reconnects >= 1, "{health:?}");
        assert_eq!(broker.queue_depth(&cfg.queue()).await.unwrap(), Some(50));
    })
    .catch_unwind()
    .await;
    proxy.up();
    broker.delete_topology().await.unwrap();
    if let Err(panic) = run {
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_outage_longer_than_the_deadline_or_the_buffer_is_a_typed_error() {
    if let Err(reason) = broker_or_skip() {
        eprintln!("{reason}");
        return;
    }
    let proxy = proxy::Proxy::start().await;
    let broker = broker_via(&proxy, 4).await;
    let run = AssertUnwindSafe(async {
        let key = format!("{}.created", unique());
        let cfg = config(&key);
        broker.subscriber().declare(&cfg).await.unwrap();
        proxy.down();
        until_publish_up(&broker, false).await;

        // The deadline passes: a retryable, typed error, nothing sent.
        let err = broker
            .publisher()
            .publish_within(event(&key, 0), Duration::from_millis(300))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            PublishError::DeadlineExceeded {
                deadline: Duration::from_millis(300)
            }
        );
        assert!(err.is_retryable());

        // A batch shares one deadline: every publish still waiting then fails the same way,
        // and gives its place in the buffer back.
        let results = broker
            .publisher()
            .deadline(Duration::from_millis(300))
            .publish_batch((0..3).map(|n| event(&key, 100 + n)).collect())
            .await;
        assert_eq!(results.len(), 3);
        for result in results {
            assert_eq!(
                result,
                Err(PublishError::DeadlineExceeded {
                    deadline: Duration::from_millis(300)
                })
            );
        }

        // Four publishes fill the buffer; the fifth fails at once. Polling each publish once
        // makes it take its place in the buffer.
        let publisher = broker.publisher().deadline(Duration::from_secs(60));
        let mut waiting = Vec::new();
        for n in 1..=4 {
            let mut publish = Box::pin(publisher.publish(event(&key, n)));
            let first =
                std::future::poll_fn(|cx| std::task::Poll::Ready(publish.as_mut().poll(cx))).await;
            assert!(first.is_pending(), "waits for the broker: {first:?}");
            waiting.push(publish);
        }
        let err = publisher.publish(event(&key, 99)).await.unwrap_err();
        assert_eq!(err, PublishError::BufferFull { capacity: 4 });
        assert!(err.is_retryable());

        proxy.up();
        for w in waiting {
            timeout(WAIT, w).await.unwrap().unwrap();
        }
        assert_eq!(broker.queue_depth(&cfg.queue()).await.unwrap(), Some(4));
    })
    .catch_unwind()
    .await;
    proxy.up();
    broker.delete_topology().await.unwrap();
    if let Err(panic) = run {
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_that_keeps_coming_back_unsettled_stops_at_the_delivery_limit() {
    if let Err(reason) = broker_or_skip() {
        eprintln!("{reason}");
        return;
    }
    let broker = RabbitBroker::builder(URI)
        .exchange(format!("sinew-test-{}", unique()))
        .app_id(unique())
        .delivery_limit(2)
        .connect()
        .await
        .unwrap();
    let run = AssertUnwindSafe(async {
        let key = format!("{}.created", unique());
        let cfg = config(&key);
        let (entered_tx, mut entered) = mpsc::unbounded_channel();
        // A handler that never settles, on a connection that keeps dropping: without the
        // limit the message would come back forever.
        let hangs = handler_fn("hangs", move |d: Delivery| {
            let tx = entered_tx.clone();
            async move {
                let _ = tx.send(d.redelivery_count());
                std::future::pending::<Result<Outcome, HandlerError>>().await
            }
        });
        let sub = broker
            .subscriber()
            .subscribe(cfg.clone(), hangs)
            .await
            .unwrap();
        let m = event(&key, 1);
        broker.publisher().publish(m.clone()).await.unwrap();
        // The first delivery and two redeliveries; then the broker dead-letters it.
        for _ in 0..3 {
            timeout(WAIT, entered.recv()).await.unwrap().unwrap();
            broker.drop_consume_connection().await;
        }
        let dlq = cfg.dead_letter_queue();
        timeout(WAIT, async {
            while broker.queue_depth(&dlq).await.unwrap() != Some(1) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("the broker dead-letters the message");
        let dead = sinew_messaging::dead_letter::DeadLetters::list(
            &broker.dead_letters(),
            &cfg.queue(),
            10,
        )
        .await
        .unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].message().message_id(), m.message_id());
        assert_eq!(dead[0].error_type(), Some("delivery-limit"));
        assert_eq!(dead[0].original_routing_key(), Some(key.as_str()));
        assert_eq!(dead[0].message().routing_key(), key);
        sub.shutdown(Duration::ZERO).await;
    })
    .catch_unwind()
    .await;
    broker.delete_topology().await.unwrap();
    if let Err(panic) = run {
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_delivery_limit_is_a_mismatch_naming_the_queue_and_argument() {
    let factory = match broker_or_skip() {
        Ok(f) => f,
        Err(reason) => {
            eprintln!("{reason}");
            return;
        }
    };
    with_cleanup(&factory, async {
        let broker = factory.create().await;
        let cfg = config(&format!("{}.created", unique()));
        broker.subscriber().declare(&cfg).await.unwrap();
        let other = RabbitBroker::builder(URI)
            .exchange(broker.exchange())
            .app_id(unique())
            .delivery_limit(5)
            .connect()
            .await
            .unwrap();
        let err = other.subscriber().declare(&cfg).await.unwrap_err();
        assert_eq!(
            err,
            SubscribeError::TopologyMismatch {
                queue: cfg.queue(),
                argument: "x-delivery-limit".to_owned(),
            }
        );
        assert!(err.to_string().contains("x-delivery-limit"), "{err}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_thousand_events_survive_our_connections_killed_twice_under_load() {
    if let Err(reason) = broker_or_skip() {
        eprintln!("{reason}");
        return;
    }
    let app_id = unique();
    if connection_pids(&app_id).is_none() {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "rabbitmqctl cannot be run and CI=true"
        );
        eprintln!("skipped: rabbitmqctl cannot be run here");
        return;
    }
    let id = app_id.clone();
    load::restart_under_load(URI, &app_id, move |round| {
        let id = id.clone();
        async move {
            // Only this test's connections (named `{app_id}-publish`/`-consume`) go down.
            let pids = tokio::task::spawn_blocking(move || connection_pids(&id).unwrap())
                .await
                .unwrap();
            assert!(
                !pids.is_empty(),
                "outage {round}: our connections are listed"
            );
            for pid in pids {
                let status = tokio::process::Command::new("rabbitmqctl")
                    .args(["close_connection", &pid, "outage by test", "--quiet"])
                    .status()
                    .await
                    .unwrap();
                assert!(status.success());
            }
        }
    })
    .await;
}

#[tokio::test]
async fn zero_deadline_buffer_window_or_delivery_limit_is_a_config_error() {
    use sinew_messaging::ConfigError;
    use sinew_messaging::rabbitmq::ConnectError;
    // Checked before connecting, so no broker is needed.
    let cases: [(&str, fn(_) -> _); 4] = [
        (
            "confirm_window",
            |b: sinew_messaging::rabbitmq::RabbitBrokerBuilder| b.confirm_window(0),
        ),
        ("publish_deadline", |b| b.publish_deadline(Duration::ZERO)),
        ("outage_buffer", |b| b.outage_buffer(0)),
        ("delivery_limit", |b| b.delivery_limit(0)),
    ];
    for (field, set) in cases {
        let err = set(RabbitBroker::builder("amqp://127.0.0.1:1/%2f"))
            .connect()
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ConnectError::Config(ConfigError::Zero { field: f }) if *f == field),
            "{field}: {err:?}"
        );
    }
}
