//! Broker restart under load: 20 000 events published by several tasks while the broker
//! goes away twice; every event is received at least once. Shared by the `rabbitmq` test
//! binary (the outage closes only this test's connections) and the `broker_restart` binary
//! (the outage is `rabbitmqctl stop_app` / `start_app`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sinew_messaging::envelope::Event;
use sinew_messaging::rabbitmq::RabbitBroker;
use sinew_messaging::subscriber::{Delivery, Outcome, Subscription, handler_fn};
use sinew_messaging::{Message, Publisher, Subscriber, SubscriptionConfig};
use tokio::sync::mpsc;
use tokio::time::timeout;
use uuid::Uuid;

pub(crate) const EVENTS: usize = 20_000;
const PUBLISHERS: usize = 4;
const CHUNK: usize = 100;
/// A pause between a publisher's chunks, so publishing lasts long enough to span both
/// outages (about 7 s without them).
const PACE: Duration = Duration::from_millis(140);
/// Longest a run may take in all; a broker restart takes a few seconds.
const OVERALL: Duration = Duration::from_secs(300);

/// Runs the load against the broker at `uri` with connections named after `app_id`, calling
/// `outage(1)` once a fifth of the events are published and `outage(2)` past half, while the
/// publishers and the consumer keep going.
pub(crate) async fn restart_under_load<F, Fut>(uri: &str, app_id: &str, mut outage: F)
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = ()>,
{
    let broker = RabbitBroker::builder(uri)
        .exchange(format!("sinew-restart-{}", Uuid::now_v7().simple()))
        .app_id(app_id)
        .publish_deadline(Duration::from_secs(120))
        .outage_buffer(EVENTS)
        .connect()
        .await
        .unwrap();
    let key = format!("t{}.created", Uuid::now_v7().simple());
    let cfg = SubscriptionConfig::builder(format!("t{}", Uuid::now_v7().simple()), "restart")
        .routing_key(key.clone())
        .prefetch(256)
        .concurrency(64)
        .build()
        .unwrap();
    let received = Arc::new(AtomicUsize::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let handler = {
        let received = received.clone();
        handler_fn("collects", move |d: Delivery| {
            let tx = tx.clone();
            received.fetch_add(1, Ordering::Relaxed);
            async move {
                let _ = tx.send(d.message().message_id().to_owned());
                Ok(Outcome::Ack)
            }
        })
    };
    let sub = broker.subscriber().subscribe(cfg, handler).await.unwrap();

    let messages: Vec<Message> = (0..EVENTS)
        .map(|n| {
            Event::new(key.clone(), format!("agg-{}", n % 97), n)
                .to_message("restart-test")
                .unwrap()
        })
        .collect();
    let want: BTreeSet<String> = messages.iter().map(|m| m.message_id().to_owned()).collect();
    let published = Arc::new(AtomicUsize::new(0));
    let mut publishers = Vec::new();
    for part in messages.chunks(EVENTS / PUBLISHERS) {
        let publisher = broker.publisher();
        let part = part.to_vec();
        let published = published.clone();
        publishers.push(tokio::spawn(async move {
            let mut retried = 0usize;
            for chunk in part.chunks(CHUNK) {
                tokio::time::sleep(PACE).await;
                let results = publisher.publish_batch(chunk.to_vec()).await;
                for (m, r) in chunk.iter().zip(results) {
                    let mut result = r;
                    // A broker nack while a queue recovers is retryable: publish again, same ID.
                    while let Err(e) = result {
                        assert!(e.is_retryable(), "a publish failed for good: {e:?}");
                        retried += 1;
                        assert!(retried < 10_000, "publishing does not recover: {e:?}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        result = publisher.publish(m.clone()).await;
                    }
                }
                published.fetch_add(chunk.len(), Ordering::Relaxed);
            }
            retried
        }));
    }

    let outages = async {
        let mut during = Vec::new();
        for (round, threshold) in [(1, EVENTS / 5), (2, EVENTS / 2)] {
            while published.load(Ordering::Relaxed) < threshold {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            during.push(published.load(Ordering::Relaxed));
            outage(round).await;
        }
        during
    };
    let collect = async {
        let mut seen = BTreeSet::new();
        let mut deliveries = 0usize;
        while seen.len() < EVENTS {
            let id = rx.recv().await.unwrap();
            deliveries += 1;
            seen.insert(id);
        }
        (seen, deliveries)
    };
    let (during, (seen, deliveries)) = timeout(OVERALL, async { tokio::join!(outages, collect) })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "received {} deliveries, not every event",
                received.load(Ordering::Relaxed)
            )
        });
    let mut retried = 0;
    for p in publishers {
        retried += p.await.unwrap();
    }
    assert_eq!(seen, want, "every event arrived at least once");
    // Both connections come back by themselves.
    timeout(Duration::from_secs(30), async {
        while !broker.health().await.is_ready() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("ready after the outages");
    let health = broker.health().await;
    eprintln!(
        "restart under load: {EVENTS} events, {deliveries} deliveries, published when each outage began: {during:?}, {retried} publishes retried by the caller, {health:?}"
    );
    assert!(
        during.iter().all(|n| *n < EVENTS),
        "both outages happened while publishing: {during:?}"
    );
    assert!(health.publish_reconnects >= 2, "{health:?}");
    assert!(health.consume_reconnects >= 2, "{health:?}");
    assert!(sub.shutdown(Duration::from_secs(30)).await.drained());
    broker.delete_topology().await.unwrap();
}
