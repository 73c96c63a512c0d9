//! The deduplicating handler with the memory broker and the memory inbox.
#![cfg(feature = "memory")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sinew_messaging::envelope::Event;
use sinew_messaging::inbox::{Deduplicate, Inbox, MemoryInbox};
use sinew_messaging::memory::MemoryBroker;
use sinew_messaging::subscriber::{Delivery, HandlerError, Outcome, Subscription, handler_fn};
use sinew_messaging::{Publisher, Subscriber, SubscriptionConfig};
use tokio::sync::{Notify, mpsc};

fn config() -> SubscriptionConfig {
    SubscriptionConfig::builder("svc", "dedup")
        .routing_key("k")
        .delayed_retries([Duration::from_secs(1)])
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_connection_dropped_mid_handler_runs_the_side_effect_once() {
    let broker = MemoryBroker::new();
    let effects = Arc::new(AtomicUsize::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Notify::new());
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let handler = {
        let (effects, calls, release) = (effects.clone(), calls.clone(), release.clone());
        handler_fn("effect", move |d: Delivery| {
            let (effects, calls, release) = (effects.clone(), calls.clone(), release.clone());
            let started_tx = started_tx.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                started_tx.send(d.redelivery_count()).unwrap();
                release.notified().await;
                effects.fetch_add(1, Ordering::SeqCst);
                Ok(Outcome::Ack)
            }
        })
    };
    let inbox = MemoryInbox::new(100);
    let sub = broker
        .subscriber()
        .subscribe(config(), Deduplicate::new(handler, inbox.clone()))
        .await
        .unwrap();
    let message = Event::new("k", "agg", 1_u32).to_message("test").unwrap();
    let message_id = message.message_id().to_owned();
    broker.publisher().publish(message).await.unwrap();
    assert_eq!(started.recv().await, Some(0));

    // The connection drops while the handler runs: the message is redelivered.
    assert_eq!(broker.drop_connections(), 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The handler finishes its side effect; its ack is stale.
    release.notify_one();
    tokio::time::sleep(Duration::from_secs(10)).await;

    assert_eq!(effects.load(Ordering::SeqCst), 1);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the duplicate never reached the handler"
    );
    assert!(!inbox.record("svc.dedup", &message_id).await.unwrap());
    let stats = broker.queue_stats("svc.dedup").unwrap();
    assert_eq!((stats.ready, stats.delayed, stats.unacked), (0, 0, 0));
    assert_eq!(
        broker.queue_stats("svc.dedup.dlq").map_or(0, |s| s.ready),
        0
    );
    assert!(sub.shutdown(Duration::from_secs(1)).await.drained());
}

#[tokio::test(start_paused = true)]
async fn a_duplicate_publish_is_acknowledged_without_the_handler() {
    let broker = MemoryBroker::new();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let handler = handler_fn("effect", move |d: Delivery| {
        let tx = tx.clone();
        async move {
            tx.send(d.decode::<u32>()?.into_data()).unwrap();
            Ok(Outcome::Ack)
        }
    });
    let sub = broker
        .subscriber()
        .subscribe(config(), Deduplicate::new(handler, MemoryInbox::new(100)))
        .await
        .unwrap();
    let first = Event::new("k", "agg", 1_u32).to_message("test").unwrap();
    let publisher = broker.publisher();
    publisher.publish(first.clone()).await.unwrap();
    publisher.publish(first).await.unwrap();
    publisher
        .publish(Event::new("k", "agg", 2_u32).to_message("test").unwrap())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(rx.recv().await, Some(1));
    assert_eq!(rx.recv().await, Some(2));
    assert!(rx.try_recv().is_err());
    assert!(sub.shutdown(Duration::from_secs(1)).await.drained());
}

#[tokio::test(start_paused = true)]
async fn a_failed_attempt_is_forgotten_so_the_retry_runs() {
    let broker = MemoryBroker::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let handler = {
        let calls = calls.clone();
        handler_fn("flaky", move |_d: Delivery| {
            let calls = calls.clone();
            async move {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    Err(HandlerError::transient("not yet"))
                } else {
                    Ok(Outcome::Ack)
                }
            }
        })
    };
    let inbox = MemoryInbox::new(100);
    let sub = broker
        .subscriber()
        .subscribe(config(), Deduplicate::new(handler, inbox.clone()))
        .await
        .unwrap();
    broker
        .publisher()
        .publish(Event::new("k", "agg", 1_u32).to_message("test").unwrap())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(inbox.len(), 1);
    let stats = broker.queue_stats("svc.dedup").unwrap();
    assert_eq!((stats.ready, stats.delayed, stats.unacked), (0, 0, 0));
    assert!(sub.shutdown(Duration::from_secs(1)).await.drained());
}
