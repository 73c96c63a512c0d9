//! Memory-backend specifics that the generic suite does not cover: queue bounds, fault
//! injection, durability without consumers and stale settlements.
#![cfg(feature = "memory")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

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
