//! Memory-backend specifics that the generic suite does not cover: queue bounds, fault
//! injection, durability without consumers, stale settlements, and many messages through
//! several runner tasks on a multi-threaded runtime.
#![cfg(feature = "memory")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sinew_messaging::envelope::Event;
use sinew_messaging::memory::MemoryBroker;
use sinew_messaging::subscriber::{Delivery, Outcome, Subscription, handler_fn};
use sinew_messaging::{Message, PublishError, Publisher, Subscriber, SubscriptionConfig};
use tokio::sync::mpsc;

fn msg(key: &str, n: u32) -> Message {
    Event::new(key, "agg", n).to_message("test").unwrap()
}

fn config(sub: &str, key: &str) -> SubscriptionConfig {
    SubscriptionConfig::builder("svc", sub)
        .routing_key(key)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_refuses_the_whole_publish() {
    let broker = MemoryBroker::builder().max_queue_length(2).build();
    let subscriber = broker.subscriber();
    subscriber.declare(&config("small", "k")).await.unwrap();
    subscriber
        .declare(
            &SubscriptionConfig::builder("svc", "big")
                .routing_key("#")
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    let publisher = broker.publisher();
    publisher.publish(msg("k", 1)).await.unwrap();
    publisher.publish(msg("k", 2)).await.unwrap();
    let err = publisher.publish(msg("k", 3)).await.unwrap_err();
    assert_eq!(
        err,
        PublishError::QueueFull {
            queue: "svc.big".to_owned()
        }
    );
    assert!(err.is_retryable());
    // Neither queue received the refused message.
    assert_eq!(broker.queue_stats("svc.small").unwrap().ready, 2);
    assert_eq!(broker.queue_stats("svc.big").unwrap().ready, 2);
}

#[tokio::test(start_paused = true)]
async fn injected_publish_failures_enqueue_nothing() {
    let broker = MemoryBroker::new();
    broker
        .subscriber()
        .declare(&config("q", "k"))
        .await
        .unwrap();
    broker.fail_next_publishes(2);
    let publisher = broker.publisher();
    let results = publisher
        .publish_batch(vec![msg("k", 1), msg("k", 2), msg("k", 3)])
        .await;
    assert_eq!(results[0], Err(PublishError::ConnectionLost));
    assert_eq!(results[1], Err(PublishError::ConnectionLost));
    assert_eq!(results[2], Ok(()));
    assert_eq!(broker.queue_stats("svc.q").unwrap().ready, 1);
}

#[tokio::test(start_paused = true)]
async fn settled_messages_leave_the_queue_and_stale_acks_do_nothing() {
    let broker = MemoryBroker::new();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let sub = broker
        .subscriber()
        .subscribe(
            config("q", "k"),
            handler_fn("slow", move |d: Delivery| {
                let tx = tx.clone();
                async move {
                    if !d.redelivered() {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    tx.send(d.redelivery_count()).unwrap();
                    Ok(Outcome::Ack)
                }
            }),
        )
        .await
        .unwrap();
    broker.publisher().publish(msg("k", 1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(broker.queue_stats("svc.q").unwrap().unacked, 1);
    assert_eq!(broker.drop_connections(), 1);
    assert_eq!(rx.recv().await, Some(1));
    assert_eq!(rx.recv().await, Some(0)); // the stale handler finishes; its ack is ignored
    let stats = broker.queue_stats("svc.q").unwrap();
    assert_eq!((stats.ready, stats.delayed, stats.unacked), (0, 0, 0));
    assert!(sub.shutdown(Duration::from_secs(1)).await.drained());
}

#[tokio::test(start_paused = true)]
async fn dropping_a_subscription_requeues_its_messages() {
    let broker = MemoryBroker::new();
    let sub = broker
        .subscriber()
        .subscribe(
            config("q", "k"),
            handler_fn("stuck", |_d: Delivery| async {
                std::future::pending::<()>().await;
                Ok(Outcome::Ack)
            }),
        )
        .await
        .unwrap();
    broker.publisher().publish(msg("k", 1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(broker.queue_stats("svc.q").unwrap().unacked, 1);
    drop(sub);
    tokio::time::sleep(Duration::from_millis(10)).await;
    let stats = broker.queue_stats("svc.q").unwrap();
    assert_eq!((stats.ready, stats.unacked), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn a_panicking_handler_is_retried_then_dead_lettered() {
    let broker = MemoryBroker::new();
    let config = SubscriptionConfig::builder("svc", "panics")
        .routing_key("k")
        .in_process_retries(1)
        .delayed_retries([Duration::from_secs(1)])
        .build()
        .unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let sub = broker
        .subscriber()
        .subscribe(
            config,
            handler_fn("panicky", move |d: Delivery| {
                let tx = tx.clone();
                async move {
                    tx.send(d.attempt()).unwrap();
                    if d.attempt() < 10 {
                        panic!("handler bug");
                    }
                    Ok(Outcome::Ack)
                }
            }),
        )
        .await
        .unwrap();
    broker.publisher().publish(msg("k", 1)).await.unwrap();
    for want in 1..=3 {
        assert_eq!(rx.recv().await, Some(want));
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(rx.try_recv().is_err(), "no fourth attempt");
    let dead =
        sinew_messaging::dead_letter::DeadLetters::list(&broker.dead_letters(), "svc.panics", 5)
            .await
            .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].error_type(), Some("retries-exhausted"));
    assert_eq!(dead[0].error_message(), Some("handler panicked"));
    assert_eq!(dead[0].handler(), Some("panicky"));
    assert!(sub.shutdown(Duration::from_secs(1)).await.drained());
}

/// What the handlers of one subscription saw.
#[derive(Default)]
struct Probe {
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
    started: AtomicUsize,
}

/// A handler that records each message it handles in `handled` (message ID → times) and
/// `done`, and how many of its runs overlap in `probe`. The first `gate` runs wait for each
/// other, which only finishes if that many run at once; the others yield halfway, so that
/// handlers of one runner interleave.
fn counting(
    name: &str,
    probe: Arc<Probe>,
    handled: Arc<Mutex<HashMap<String, u32>>>,
    gate: usize,
    done: mpsc::UnboundedSender<()>,
) -> impl sinew_messaging::subscriber::Handler {
    let barrier = Arc::new(tokio::sync::Barrier::new(gate));
    handler_fn(name, move |d: Delivery| {
        let (probe, handled, barrier, done) = (
            probe.clone(),
            handled.clone(),
            barrier.clone(),
            done.clone(),
        );
        async move {
            assert_eq!(d.attempt(), 1);
            assert!(!d.redelivered());
            let now = probe.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            probe.most_in_flight.fetch_max(now, Ordering::SeqCst);
            if probe.started.fetch_add(1, Ordering::SeqCst) < gate {
                barrier.wait().await;
            } else {
                tokio::task::yield_now().await;
            }
            *handled
                .lock()
                .unwrap()
                .entry(d.message().message_id().to_owned())
                .or_default() += 1;
            probe.in_flight.fetch_sub(1, Ordering::SeqCst);
            done.send(()).unwrap();
            Ok(Outcome::Ack)
        }
    })
}

/// Publishes `n` messages (most in batches, some one by one) to a queue with two competing
/// subscriptions and to a second queue with one, on four worker threads; every message is
/// handled exactly once per queue and acknowledged, and no subscription runs more than
/// `min(prefetch, concurrency)` handlers at once, and reaches that many.
async fn many_messages(prefetch: u16, concurrency: usize, n: u32) {
    let broker = MemoryBroker::new();
    let config = |sub: &str| {
        SubscriptionConfig::builder("svc", sub)
            .routing_key("many.*")
            .prefetch(prefetch)
            .concurrency(concurrency)
            .build()
            .unwrap()
    };
    let bound = usize::from(prefetch).min(concurrency);
    let (done_tx, mut done) = mpsc::unbounded_channel();
    let mut subs = Vec::new();
    let mut probes = Vec::new();
    let mut handled = Vec::new();
    for (queue, competing) in [("shared", 2), ("single", 1)] {
        let seen = Arc::new(Mutex::new(HashMap::new()));
        for i in 0..competing {
            let probe = Arc::new(Probe::default());
            let handler = counting(
                &format!("{queue}-{i}"),
                probe.clone(),
                seen.clone(),
                bound,
                done_tx.clone(),
            );
            subs.push(
                broker
                    .subscriber()
                    .subscribe(config(queue), handler)
                    .await
                    .unwrap(),
            );
            probes.push(probe);
        }
        handled.push((format!("svc.{queue}"), seen));
    }
    let messages: Vec<Message> = (0..n).map(|i| msg("many.created", i)).collect();
    let publisher = broker.publisher();
    let (one_by_one, batched) = messages.split_at(10);
    for m in one_by_one {
        publisher.publish(m.clone()).await.unwrap();
    }
    for batch in batched.chunks(1000) {
        let results = publisher.publish_batch(batch.to_vec()).await;
        assert!(results.iter().all(Result::is_ok));
    }
    for _ in 0..2 * n {
        tokio::time::timeout(Duration::from_secs(60), done.recv())
            .await
            .expect("every message is handled")
            .unwrap();
    }
    for sub in subs {
        assert!(sub.shutdown(Duration::from_secs(10)).await.drained());
    }
    for (queue, seen) in &handled {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), messages.len(), "{queue}: every message handled");
        assert!(
            messages
                .iter()
                .all(|m| seen.get(m.message_id()) == Some(&1)),
            "{queue}: each message handled once"
        );
        let stats = broker.queue_stats(queue).unwrap();
        assert_eq!((stats.ready, stats.delayed, stats.unacked), (0, 0, 0));
    }
    for probe in &probes {
        let most = probe.most_in_flight.load(Ordering::SeqCst);
        assert!(most <= bound, "{most} handlers at once, more than {bound}");
        assert_eq!(most, bound, "the barrier let {bound} handlers run at once");
    }
    let metrics = broker.metrics();
    assert_eq!(metrics.consumed, 2 * u64::from(n));
    assert_eq!(metrics.confirmed, u64::from(n));
    assert!(
        tokio::time::timeout(Duration::from_millis(50), done.recv())
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_messages_with_concurrency_below_prefetch_are_each_handled_once() {
    many_messages(64, 16, 5_000).await;
}

/// Six handler slots over four runners: two runners get two, two get one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_messages_with_concurrency_split_unevenly_are_each_handled_once() {
    many_messages(6, 6, 5_000).await;
}

/// Ordered lanes on a multi-threaded runtime: the messages of one aggregate are handled one
/// at a time, in publish order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ordered_lanes_keep_each_aggregate_in_order_on_many_threads() {
    let broker = MemoryBroker::new();
    let config = SubscriptionConfig::builder("svc", "lanes")
        .routing_key("lane.*")
        .prefetch(64)
        .concurrency(4)
        .ordered_lanes(8)
        .build()
        .unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let sub = broker
        .subscriber()
        .subscribe(
            config,
            handler_fn("ordered", move |d: Delivery| {
                let tx = tx.clone();
                async move {
                    let event = d.decode::<u32>()?;
                    tokio::task::yield_now().await;
                    let aggregate = d.message().aggregate_id().unwrap_or_default().to_owned();
                    tx.send((aggregate, event.into_data())).unwrap();
                    Ok(Outcome::Ack)
                }
            }),
        )
        .await
        .unwrap();
    let aggregates = 20;
    let per_aggregate = 100;
    let messages: Vec<Message> = (0..per_aggregate)
        .flat_map(|i| {
            (0..aggregates).map(move |a| {
                Event::new("lane.changed", format!("agg-{a}"), i)
                    .to_message("test")
                    .unwrap()
            })
        })
        .collect();
    let results = broker.publisher().publish_batch(messages).await;
    assert!(results.iter().all(Result::is_ok));
    let mut next: HashMap<String, u32> = HashMap::new();
    for _ in 0..aggregates * per_aggregate {
        let (aggregate, i) = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .expect("every message is handled")
            .unwrap();
        let want = next.entry(aggregate.clone()).or_default();
        assert_eq!(i, *want, "{aggregate} out of order");
        *want += 1;
    }
    assert!(sub.shutdown(Duration::from_secs(10)).await.drained());
    let stats = broker.queue_stats("svc.lanes").unwrap();
    assert_eq!((stats.ready, stats.delayed, stats.unacked), (0, 0, 0));
}

/// Handlers that finish at once never make their consumer wait; on a single thread the
/// consumer still lets other tasks run while it works through a long queue.
#[tokio::test(flavor = "current_thread")]
async fn a_long_queue_does_not_starve_other_tasks() {
    let broker = MemoryBroker::new();
    let config = config("long", "k");
    broker.subscriber().declare(&config).await.unwrap();
    let n = 20_000;
    let results = broker
        .publisher()
        .publish_batch((0..n).map(|i| msg("k", i)).collect())
        .await;
    assert!(results.iter().all(Result::is_ok));
    let handled = Arc::new(AtomicUsize::new(0));
    let h = handled.clone();
    let sub = broker
        .subscriber()
        .subscribe(
            config,
            handler_fn("quick", move |_: Delivery| {
                h.fetch_add(1, Ordering::Relaxed);
                async { Ok(Outcome::Ack) }
            }),
        )
        .await
        .unwrap();
    while handled.load(Ordering::Relaxed) == 0 {
        tokio::task::yield_now().await;
    }
    assert!(
        handled.load(Ordering::Relaxed) < n as usize,
        "the consumer handled the whole queue before this task ran again"
    );
    while handled.load(Ordering::Relaxed) < n as usize {
        tokio::task::yield_now().await;
    }
    assert!(sub.shutdown(Duration::from_secs(1)).await.drained());
    assert_eq!(broker.queue_stats("svc.long").unwrap().unacked, 0);
}

#[test]
fn public_types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<MemoryBroker>();
    check::<sinew_messaging::memory::MemoryPublisher>();
    check::<sinew_messaging::memory::MemorySubscriber>();
    check::<sinew_messaging::memory::MemorySubscription>();
    check::<sinew_messaging::memory::MemoryDeadLetters>();
    check::<Event<String>>();
    check::<Message>();
    check::<sinew_messaging::HandlerError>();
}
