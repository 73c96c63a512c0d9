//! Choreography helpers: envelopes, deduplication and timeouts of the process manager.
#![cfg(feature = "messaging")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use sinew_messaging::inbox::MemoryInbox;
use sinew_messaging::{Event, Message};
use sinew_saga::SagaId;
use sinew_saga::choreography::{Handled, ProcessManager, SAGA_ID, SagaEnvelope, Transition};

#[derive(Clone, Debug, PartialEq)]
enum Flow {
    Reserved,
    Paid,
}

#[test]
fn envelopes_carry_saga_correlation_causation_and_trace() {
    let id = SagaId::new();
    let first = SagaEnvelope::start(id)
        .traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .stamp(Event::new("order.created", "o-1", 1));
    assert_eq!(first.headers().get(SAGA_ID), Some(id.to_string().as_str()));
    assert_eq!(
        first.headers().correlation_id(),
        Some(id.to_string().as_str())
    );
    let reply = SagaEnvelope::caused_by(&first).stamp(Event::new("stock.reserved", "o-1", 2));
    let env = SagaEnvelope::from_event(&reply);
    assert_eq!(env.saga_id(), Some(id));
    assert_eq!(env.correlation(), Some(id.to_string().as_str()));
    assert_eq!(env.causation(), Some(first.event_id().to_string().as_str()));
    assert_eq!(env.trace(), first.headers().traceparent());
    // The headers survive the wire format.
    let message = reply.to_message("inventory").unwrap();
    let decoded = Event::<i32>::from_message(&message).unwrap();
    assert_eq!(SagaEnvelope::from_event(&decoded), env);
}

#[tokio::test(start_paused = true)]
async fn the_process_manager_deduplicates_keys_by_correlation_and_times_out() {
    let pm = ProcessManager::<Flow, _>::new("orders", MemoryInbox::new(100))
        .timeout(Duration::from_secs(30));
    let a = Event::new("stock.reserved", "o-1", ());
    let b = Event::new("stock.reserved", "o-2", ());
    let h = pm
        .handle(&a, "o-1", |s, _| {
            assert_eq!(s, None);
            Transition::next(Flow::Reserved)
                .publish(Message::new("payment.requested", "o-1".as_bytes().to_vec()))
        })
        .await
        .unwrap();
    let Handled::Applied { publish, .. } = h else {
        panic!("applied")
    };
    assert_eq!(publish.len(), 1);
    pm.handle(&b, "o-2", |_, _| Transition::next(Flow::Reserved))
        .await
        .unwrap();
    // Redelivery of `a`: the handler does not run.
    let dup = pm
        .handle(&a, "o-1", |_, _| panic!("duplicate handled"))
        .await
        .unwrap();
    assert!(dup.is_duplicate());
    // o-1 is paid and complete; o-2 never hears back.
    let paid = Event::new("payment.completed", "o-1", ());
    let h = pm
        .handle(&paid, "o-1", |s, _| {
            assert_eq!(s, Some(Flow::Reserved));
            Transition::complete(Flow::Paid)
        })
        .await
        .unwrap();
    assert_eq!(h.state(), Some(&Flow::Paid));
    let ignored = Event::new("noise", "o-1", ());
    let h = pm
        .handle(&ignored, "o-1", |_, _| Transition::ignore())
        .await
        .unwrap();
    assert_eq!(h.state(), Some(&Flow::Paid));
    assert!(pm.expired().is_empty());
    tokio::time::advance(Duration::from_secs(31)).await;
    assert_eq!(pm.expired(), vec![("o-2".to_owned(), Flow::Reserved)]);
    assert!(pm.expired().is_empty(), "reported once");
    assert_eq!(pm.state("o-1"), Some(Flow::Paid));
}
