//! The conformance suite: one set of async test cases, generic over a backend, that every
//! backend must pass.
//!
//! It follows Watermill's `pubsub/tests` (nothing lost, duplicates tolerated) and adds the
//! cases that matter for a failure policy: dead letters after N failures while others keep
//! flowing, delayed retries that honour their delay, decode errors that skip retries,
//! unroutable publishes, per-aggregate order, graceful drain, redelivery after a dropped
//! connection, and dead-letter replay. Each case creates its own backend through a
//! [`BackendFactory`] and uses unique queue names and routing keys, so cases can share a real
//! broker.
//!
//! Cases wait with `tokio::time`, so run them under `#[tokio::test(start_paused = true)]`
//! for the memory backend (instant and deterministic) and in real time for a broker.
//!
//! ```
//! use sinew_messaging::testing::{self, MemoryFactory};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! testing::unroutable_publish_is_error(&MemoryFactory).await;
//! testing::decode_error_goes_straight_to_dead_letters(&MemoryFactory).await;
//! # }
//! ```
//!
//! # Panics
//!
//! Every case panics, like `assert!`, when the backend does not conform.
#![allow(
    clippy::panic,
    clippy::expect_used,
    reason = "test cases report a non-conforming backend by panicking, like assert!"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, timeout};
use uuid::Uuid;

use crate::dead_letter::{DeadLetters, headers as dl};
use crate::envelope::{Event, Message};
use crate::publisher::{PublishError, Publisher};
use crate::subscriber::{
    Delivery, Handler, HandlerError, Outcome, Subscriber, Subscription, SubscriptionConfig,
    SubscriptionConfigBuilder,
};

/// Calls the macro `$m` with the names of every case of the conformance suite, so that a test
/// file can turn each one into a test without keeping its own copy of the list:
///
/// ```
/// # #[cfg(feature = "memory")] mod suite {
/// macro_rules! cases {
///     ($($name:ident),* $(,)?) => {$(
///         #[tokio::test(start_paused = true)]
///         async fn $name() {
///             use sinew_messaging::testing::MemoryFactory;
///             sinew_messaging::testing::$name(&MemoryFactory).await;
///         }
///     )*};
/// }
/// sinew_messaging::for_each_conformance_case!(cases);
/// # }
/// ```
///
/// With the `opentelemetry` feature the list includes
/// `trace_link` (that function exists only with the feature).
#[macro_export]
macro_rules! for_each_conformance_case {
    ($m:ident) => {
        $crate::__with_feature_cases!(
            $m;
            publish_before_subscribe,
            competing_consumers,
            topics_are_isolated,
            retry_then_succeed,
            prefetch_bounds_unsettled,
            continue_after_subscriber_close,
            continue_after_errors,
            each_subscription_gets_every_message,
            headers_propagate,
            dead_letter_after_failures_while_others_flow,
            delayed_retry_honours_delay,
            decode_error_goes_straight_to_dead_letters,
            unroutable_publish_is_error,
            per_aggregate_order_with_lanes,
            graceful_drain,
            redelivery_after_connection_drop,
            prefetch_restored_after_reconnect,
            inbox_drops_redelivered_duplicate,
            dead_letter_replay,
            dead_letter_replay_and_discard_one,
            metrics_count_the_flow,
        );
    };
}

/// Calls `$m` with the given cases plus those that need the `opentelemetry` feature. Not
/// public API: [`for_each_conformance_case!`] holds the list.
#[doc(hidden)]
#[cfg(feature = "opentelemetry")]
#[macro_export]
macro_rules! __with_feature_cases {
    ($m:ident; $($case:ident,)*) => {
        $m!($($case,)* trace_link,);
    };
}

#[doc(hidden)]
#[cfg(not(feature = "opentelemetry"))]
#[macro_export]
macro_rules! __with_feature_cases {
    ($m:ident; $($case:ident,)*) => {
        $m!($($case,)*);
    };
}

/// A backend under test.
pub trait Backend: Send + Sync + 'static {
    /// Its publisher.
    type Publisher: Publisher + Clone + 'static;
    /// Its subscriber.
    type Subscriber: Subscriber + Clone + 'static;
    /// Its dead-letter API.
    type DeadLetters: DeadLetters + 'static;

    /// A publisher.
    fn publisher(&self) -> Self::Publisher;
    /// A subscriber.
    fn subscriber(&self) -> Self::Subscriber;
    /// The dead-letter API.
    fn dead_letters(&self) -> Self::DeadLetters;
    /// Kills every consumer connection; the backend must reconnect by itself.
    fn drop_connections(&self) -> impl Future<Output = ()> + Send;
    /// The backend's counters.
    fn metrics(&self) -> crate::metrics::Metrics;
    /// How many messages of `queue` wait for a consumer (neither delivered nor delayed);
    /// `None` when the queue does not exist.
    fn ready(&self, queue: &str) -> impl Future<Output = Option<usize>> + Send;
}

/// Creates a fresh [`Backend`] for each case.
pub trait BackendFactory: Send + Sync {
    /// The backend.
    type Backend: Backend;
    /// A new backend (a RabbitMQ one connects here).
    fn create(&self) -> impl Future<Output = Self::Backend> + Send;
}

/// The [`MemoryBroker`](crate::memory::MemoryBroker) as a [`BackendFactory`].
#[cfg(feature = "memory")]
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryFactory;

#[cfg(feature = "memory")]
impl BackendFactory for MemoryFactory {
    type Backend = crate::memory::MemoryBroker;

    async fn create(&self) -> Self::Backend {
        crate::memory::MemoryBroker::new()
    }
}

#[cfg(feature = "memory")]
impl Backend for crate::memory::MemoryBroker {
    type Publisher = crate::memory::MemoryPublisher;
    type Subscriber = crate::memory::MemorySubscriber;
    type DeadLetters = crate::memory::MemoryDeadLetters;

    fn publisher(&self) -> Self::Publisher {
        Self::publisher(self)
    }

    fn subscriber(&self) -> Self::Subscriber {
        Self::subscriber(self)
    }

    fn dead_letters(&self) -> Self::DeadLetters {
        Self::dead_letters(self)
    }

    async fn drop_connections(&self) {
        Self::drop_connections(self);
    }

    fn metrics(&self) -> crate::metrics::Metrics {
        Self::metrics(self)
    }

    async fn ready(&self, queue: &str) -> Option<usize> {
        self.queue_stats(queue).map(|s| s.ready)
    }
}

/// A [`BackendFactory`] of [`RabbitBroker`](crate::rabbitmq::RabbitBroker)s, each on its own
/// throw-away exchange `sinew-test-{uuid}`, so cases can share one real broker.
///
/// It remembers every broker it created; [`cleanup`](RabbitFactory::cleanup) deletes their
/// queues and exchanges, so test runs do not accumulate queues.
///
/// # Panics
///
/// [`create`](BackendFactory::create) panics when the broker cannot be reached.
#[cfg(feature = "rabbitmq")]
#[derive(Debug)]
pub struct RabbitFactory {
    uri: String,
    queue_type: crate::rabbitmq::QueueType,
    created: Mutex<Vec<crate::rabbitmq::RabbitBroker>>,
}

#[cfg(feature = "rabbitmq")]
impl RabbitFactory {
    /// A factory for the broker at `uri`.
    pub fn new(uri: impl Into<String>) -> Self {
        Self {
            uri: uri.into(),
            queue_type: crate::rabbitmq::QueueType::default(),
            created: Mutex::new(Vec::new()),
        }
    }

    /// Brokers that declare subscription queues of this type (quorum by default), so the
    /// suite can run against each.
    #[must_use]
    pub fn queue_type(mut self, queue_type: crate::rabbitmq::QueueType) -> Self {
        self.queue_type = queue_type;
        self
    }

    /// Deletes the queues and exchanges of every broker created so far; returns how many
    /// queues it deleted.
    pub async fn cleanup(&self) -> usize {
        let brokers = std::mem::take(&mut *self.created.lock().expect("factory lock"));
        let mut deleted = 0;
        for broker in brokers {
            deleted += broker
                .delete_topology()
                .await
                .expect("test topology is deleted");
        }
        deleted
    }
}

#[cfg(feature = "rabbitmq")]
impl BackendFactory for RabbitFactory {
    type Backend = crate::rabbitmq::RabbitBroker;

    async fn create(&self) -> Self::Backend {
        let broker = crate::rabbitmq::RabbitBroker::builder(self.uri.clone())
            .exchange(format!("sinew-test-{}", Uuid::now_v7().simple()))
            .app_id("sinew-conformance")
            .queue_type(self.queue_type)
            .connect()
            .await
            .expect("RabbitMQ is reachable");
        self.created
            .lock()
            .expect("factory lock")
            .push(broker.clone());
        broker
    }
}

#[cfg(feature = "rabbitmq")]
impl Backend for crate::rabbitmq::RabbitBroker {
    type Publisher = crate::rabbitmq::RabbitPublisher;
    type Subscriber = crate::rabbitmq::RabbitSubscriber;
    type DeadLetters = crate::rabbitmq::RabbitDeadLetters;

    fn publisher(&self) -> Self::Publisher {
        Self::publisher(self)
    }

    fn subscriber(&self) -> Self::Subscriber {
        Self::subscriber(self)
    }

    fn dead_letters(&self) -> Self::DeadLetters {
        Self::dead_letters(self)
    }

    async fn drop_connections(&self) {
        self.drop_consume_connection().await;
    }

    fn metrics(&self) -> crate::metrics::Metrics {
        Self::metrics(self)
    }

    async fn ready(&self, queue: &str) -> Option<usize> {
        self.queue_depth(queue)
            .await
            .expect("RabbitMQ answers")
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
    }
}

const WAIT: Duration = Duration::from_secs(30);
const QUIET: Duration = Duration::from_secs(2);
const DRAIN: Duration = Duration::from_secs(10);

/// A test-unique word for queue names and routing keys.
fn unique() -> String {
    format!("t{}", Uuid::now_v7().simple())
}

/// A handler that reports every delivery and answers with `decide`.
struct Probe<F> {
    tx: mpsc::UnboundedSender<Delivery>,
    decide: F,
}

impl<F, Fut> Handler for Probe<F>
where
    F: Fn(Delivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Outcome, HandlerError>> + Send,
{
    async fn handle(&self, delivery: Delivery) -> Result<Outcome, HandlerError> {
        let result = (self.decide)(delivery.clone()).await;
        // Report after deciding, so a report means "handled".
        let _ = self.tx.send(delivery);
        result
    }

    fn name(&self) -> &str {
        "conformance-probe"
    }
}

fn probe<F, Fut>(decide: F) -> (Probe<F>, mpsc::UnboundedReceiver<Delivery>)
where
    F: Fn(Delivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Outcome, HandlerError>> + Send,
{
    let (tx, rx) = mpsc::unbounded_channel();
    (Probe { tx, decide }, rx)
}

async fn ack(_: Delivery) -> Result<Outcome, HandlerError> {
    Ok(Outcome::Ack)
}

fn config(service: &str, key: &str) -> SubscriptionConfigBuilder {
    SubscriptionConfig::builder(service, "conformance")
        .routing_key(key)
        .jitter_seed(7)
}

fn build(b: SubscriptionConfigBuilder) -> SubscriptionConfig {
    b.build().expect("conformance configuration is valid")
}

fn event(key: &str, aggregate: &str, n: u32) -> Message {
    Event::new(key, aggregate, n)
        .to_message("conformance")
        .expect("a u32 payload encodes")
}

async fn publish_all<P: Publisher>(publisher: &P, messages: Vec<Message>) {
    for m in messages {
        publisher
            .publish(m)
            .await
            .expect("publish to a bound queue succeeds");
    }
}

/// Receives until `want` distinct message IDs arrived (duplicates tolerated).
async fn receive_distinct(
    rx: &mut mpsc::UnboundedReceiver<Delivery>,
    want: usize,
) -> BTreeMap<String, Delivery> {
    let mut seen = BTreeMap::new();
    while seen.len() < want {
        match timeout(WAIT, rx.recv()).await {
            Ok(Some(d)) => {
                seen.entry(d.message().message_id().to_owned()).or_insert(d);
            }
            _ => panic!("received {} of {want} messages", seen.len()),
        }
    }
    seen
}

/// Asserts nothing more arrives for a while.
async fn assert_quiet(rx: &mut mpsc::UnboundedReceiver<Delivery>) {
    if let Ok(Some(d)) = timeout(QUIET, rx.recv()).await {
        panic!(
            "unexpected delivery of {} (attempt {})",
            d.message().message_id(),
            d.attempt()
        );
    }
}

fn ids(messages: &[Message]) -> BTreeSet<String> {
    messages.iter().map(|m| m.message_id().to_owned()).collect()
}

/// Watermill 1: messages published after the queue is declared and before any consumer runs
/// all arrive, with their payloads and headers.
pub async fn publish_before_subscribe<F: BackendFactory>(factory: &F) {
    let backend = factory.create().await;
    let key = format!("{}.created", unique());
    let cfg = build(config(&unique(), &key));
    let subscriber = backend.subscriber();
    subscriber.declare(&cfg).await.expect("declare");
    let messages: Vec<Message> = (0..100)
        .map(|n| event(&key, "a", n).with_header("test", n.to_string()))
        .collect();
    publish_all(&backend.publisher(), messages.clone()).await;

    let (handler, mut rx) = probe(ack);
    let sub = subscriber.subscribe(cfg, handler).await.expect("subscribe");
    let got = receive_distinct(&mut rx, 100).await;
    for m in &messages {
        let d = &got[m.message_id()];
        assert_eq!(d.message().body(), m.body(), "payload round trip");
        assert_eq!(
            d.message().header("test"),
            m.header("test"),
            "header round trip"
        );
        assert_eq!(d.routing_key(), key);
        assert_eq!(d.attempt(), 1);
    }
    assert!(sub.shutdown(DRAIN).await.drained());
}

/// Watermill 2 and 10: several publishers in parallel, one of them with `publish_batch`, and
/// several competing consumers on one queue: every message arrives.
pub async fn competing_consumers<F: BackendFactory>(factory: &F) {
    let backend = factory.create().await;
    let key = format!("{}.created", unique());
    let cfg = build(config(&unique(), &key).prefetch(8).concurrency(4));
    let mut subs = Vec::new();
    let (tx, mut rx) = mpsc::unbounded_channel();
    for _ in 0..5 {
        let handler = Probe {
            tx: tx.clone(),
            decide: ack,
        };
        subs.push(
            backend
                .subscriber()
                .subscribe(cfg.clone(), handler)
                .await
                .expect("subscribe"),
        );
    }
    let mut all = Vec::new();
    let mut tasks = Vec::new();
    for p in 0..10u32 {
        let batch: Vec<Message> = (0..50).map(|n| event(&key, "a", p * 100 + n)).collect();
        all.extend(batch.iter().cloned());
        let publisher = backend.publisher();
        tasks.push(tokio::spawn(async move {
            if p % 2 == 0 {
                for r in publisher.publish_batch(batch).await {
                    r.expect("batch publish succeeds");
                }
            } else {
                publish_all(&publisher, batch).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("publisher task");
    }
    let got = receive_distinct(&mut rx, all.len()).await;
    assert_eq!(got.keys().cloned().collect::<BTreeSet<_>>(), ids(&all));
    for s in subs {
        assert!(s.shutdown(DRAIN).await.drained());
    }
}

/// Watermill 3 and 11: subscriptions see exactly the topics they are bound to; `*` and `#`
/// bindings match as in AMQP.
pub async fn topics_are_isolated<F: BackendFactory>(factory: &F) {
    let backend = factory.create().await;
    let prefix = unique();
    let (users, orders) = (
        format!("{prefix}.user.created"),
        format!("{prefix}.order.placed"),
    );
    let mut rxs = Vec::new();
    let mut subs = Vec::new();
    for pattern in [users.clone(), orders.clone(), format!("{prefix}.#")] {
        let (handler, rx) = probe(ack);
        let cfg = build(config(&unique(), &pattern));
        subs.push(
            backend
                .subscriber()
                .subscribe(cfg, handler)
                .await
                .expect("subscribe"),
        );
        rxs.push(rx);
    }
    let (u, o) = (event(&users, "u", 1), event(&orders, "o", 2));
    publish_all(&backend.publisher(), vec![u.clone(), o.clone()]).await;

    let only_users = receive_distinct(&mut rxs[0], 1).await;
    assert!(only_users.contains_key(u.message_id()));
    let only_orders = receive_distinct(&mut rxs[1], 1).await;
    assert!(only_orders.contains_key(o.message_id()));
    let both = receive_distinct(&mut rxs[2], 2).await;
    assert_eq!(both.len(), 2);
    assert_quiet(&mut rxs[0]).await;
    assert_quiet(&mut rxs[1]).await;
    for s in subs {
        s.shutdown(DRAIN).await;
    }
}

/// Watermill 4: a handler that asks for a retry on the first two attempts still gets every
/// message, with the attempt counter rising.
pub async fn retry_then_succeed<F: BackendFactory>(factory: &F) {
    let backend = factory.create().await;
    let key = format!("{}.created", unique());
    let cfg = build(config(&unique(), &key).max_attempts(5));
    let (handler, mut rx) = probe(|d: Delivery| async move {
        Ok(if d.attempt() <= 2 {
            Outcome::Retry {
                after: Some(Duration::from_millis(10)),
            }
        } else {
            Outcome::Ack
        })
    });
    let sub = backend
        .subscriber()
        .subscribe(cfg, handler)
        .await
        .expect("subscribe");
    let messages: Vec<Message> = (0..20).map(|n| event(&key, "a", n)).collect();
    publish_all(&backend.publisher(), messages.clone()).await;
    let mut attempts: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    while attempts.values().filter(|a| a.contains(&3)).count() < messages.len() {
        let d = timeout(WAIT, rx.recv())
            .await
            .ok()
            .flatten()
            .expect("a delivery");
        attempts
            .entry(d.message().message_id().to_owned())
            .or_default()
            .push(d.attempt());
    }
    for a in attempts.values() {
        assert_eq!(a, &[1, 2, 3], "attempts of one message");
    }
    assert_quiet(&mut rx).await;
    assert!(sub.shutdown(DRAIN).await.drained());
}

/// Watermill 5: a consumer never holds more than `prefetch` unsettled messages: while its
/// handlers are stuck, no further handler starts and a second consumer receives the rest.
pub async fn prefetch_bounds_unsettled<F: BackendFactory>(factory: &F) {
    let backend = factory.create().await;
    let key = format!("{}.created", unique());
    let cfg = build(config(&unique(), &key).prefetch(3).concurrency(3));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let g = gate.clone();
    let (handler, mut rx) = probe(move |d: Delivery| {
        let (g, tx) = (g.clone(), started_tx.clone());
        async move {
            let _ = tx.send(d.message().message_id().to_owned());
            g.acquire().await.map_err(HandlerError::transient)?.forget();
            Ok(Outcome::Ack)
        }
    });
    let stuck = backend
        .subscriber()
        .subscribe(cfg.clone(), handler)
        .await
        .expect("subscribe");
    let messages: Vec<Message> = (0..10).map(|n| event(&key, "a", n)).collect();
    publish_all(&backend.publisher(), messages.clone()).await;
    let mut held = BTreeSet::new();
    for _ in 0..3 {
        held.insert(
            timeout(WAIT, started.recv())
                .await
                .ok()
                .flatten()
                .expect("a handler starts"),
        );
    }
    assert!(
        timeout(QUIET, started.recv()).await.is_err(),
        "a fourth handler started while three messages were unsettled"
    );

    let (handler, mut rest_rx) = probe(ack);
    let other = backend
        .subscriber()
        .subscribe(cfg, handler)
        .await
        .expect("subscribe");
    let rest = receive_distinct(&mut rest_rx, 7).await;
    assert!(
        rest.keys().all(|id| !held.contains(id)),
        "held messages were not delivered twice"
    );
    assert_quiet(&mut rest_rx).await;

    gate.add_permits(3);
    let done = receive_distinct(&mut rx, 3).await;
    assert_eq!(done.keys().cloned().collect::<BTreeSet<_>>(), held);
    let all: BTreeSet<String> = held
        .union(&rest.keys().cloned().collect())
        .cloned()
        .collect();
    assert_eq!(all, ids(&messages));
    assert!(stuck.shutdown(DRAIN).await.drained());
    assert!(other.shutdown(DRAIN).await.drained());
}

/// Watermill 6 and 7: consumers that stop mid-stream, with handlers in flight, lose nothing:
/// the union of what successive consumers handled is everything.
pub async fn continue_after_subscriber_close<F: BackendFactory>(factory: &F) {
    let backend = factory.create().await;
    let key = format!("{}.created", unique());
    let cfg = build(config(&unique(), &key).prefetch(16).concurrency(8));
    backend.subscriber().declare(&cfg).await.expect("declare");
    let messages: Vec<Message> = (0..300).map(|n| event(&key, "a", n)).collect();
    publish_all(&backend.publisher(), messages.clone()).await;
    let mut handled = BTreeSet::new();
    let mut rounds = 0;
    while handled.len() < messages.len() {
        rounds += 1;
        assert!(rounds < 100, "no progress after {rounds} consumers");
        let (handler, mut rx) = probe(|_: Delivery| async {
            sleep(Duration::from_millis(5)).await;
            Ok(Outcome::Ack)
        });
        let sub = backend
            .subscriber()
            .subscribe(cfg.clone(), handler)
            .await
            .expect("subscribe");
        for _ in 0..40 {
            match timeout(QUIET, rx.recv()).await {
                Ok(Some(d)) => {
                    handled.insert(d.message().message_id().to_owned());
                }
                _ => break,
            }
        }
        // Stop at once: in-flight handlers are cut off and their messages requeued.
        sub.shutdown(Duration::ZERO).await;
        while let Ok(d) = rx.try_recv() {
            handled.insert(d.message().message_id().to_owned());
        }
    }
    assert_eq!(handled, ids(&messages));
}

/// Watermill 8 and 13: consumers that keep failing and then close leave every message for
/// the next consumer.
pub async fn continue_after_errors<F: BackendFactory>(factory: &F) {
    let backend = factory.create().await;
    let key = format!("{}.created", unique());
    let cfg = build(
        config(&unique(), &key)
            .in_process_retries(0)
            .max_attempts(1000),
    );
    backend.subscriber().declare(&cfg).await.expect("declare");
    let messages: Vec<Message> = (0..50).map(|n| event(&key, "a", n)).collect();
    publish_all(&backend.publisher(), messages.clone()).await;
    for _ in 0..3 {
        let (handler, mut rx) = probe(|_: Delivery| async {
            Ok(Outcome::Retry {
                after: Some(Duration::from_millis(1)),
            })
        });
        let sub = backend
            .subscriber()
            .subscribe(cfg.clone(), handler)
            .await
            .expect("subscribe");
        for _ in 0..100 {
            timeout(WAIT, rx.recv())
                .await
                .ok()
                .flatten()
                .expect("a failing delivery");
        }
        sub.shutdown(DRAIN).await;
    }
    let (handler, mut rx) = probe(ack);
    let sub = backend
        .subscriber()
        .subscribe(cfg, handler)
        .await
        .expect("subscribe");
    let got = receive_distinct(&mut rx, messages.len()).await;
    assert_eq!(got.keys().cloned().collect::<BTreeSet<_>>(), ids(&messages));
    assert!(sub.shutdown(DRAIN).await.drained());
}

/// Watermill 16: every subscription bound to a key receives every message (fan-out), while
/// consumers of one subscription compete.
pub async fn each_subscription_gets_every_message<F: BackendFactory>(factory: &F) {
    let backend = factory.create().await;
    let key = format!("{}.created", unique());
    let mut rxs = Vec::new();
    let mut subs = Vec::new();
    for _ in 0..2 {
        let (handler, rx) = probe(ack);
        let cfg = build(config(&unique(), &key));
        subs.push(
            backend
                .subscriber()
                .subscribe(cfg, handler)
                .await
                .expect("subscribe"),
        );
        rxs.push(rx);
    }
    let messages: Vec<Message> = (0..50).map(|n| event(&key, "a", n)).collect();
    publish_all(&backend.publisher(), messages.clone()).await;
    for rx in &mut rxs {
        let got = receive_distinct(rx, messages.len()).await;
        assert_eq!(got.keys().cloned().collect::<BTreeSet<_>>(), ids(&messages));
    }
    for s in subs {
        assert!(s.shutdown(DRAIN).await.drained());
    }
}

/// Correlation, causation, W3C trace context and free-form headers reach the handler
/// unchanged, beside the CloudEvents attributes.
pub async fn headers_propagate<F: BackendFactory>(factory: &F) {
    use crate::envelope::{CloudEventAttributes, Headers};

    let backend = factory.create().await;
    let key = format!("{}.created", unique());
    let (handler, mut rx) = probe(ack);
    let sub = backend
        .subscriber()
        .subscribe(build(config(&unique(), &key)), handler)
        .await
        .expect("subscribe");
    let headers = Headers::new()
        .with_correlation_id("req-1")
        .with_causation_id("cmd-9")
        .with_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .with_tracestate("vendor=value")
        .with("tenant", "acme");
    let sent = Event::new(key.clone(), "agg-1", 5u32).with_headers(headers.clone());
    publish_all(
        &backend.publisher(),
        vec![sent.to_message("conformance").expect("encodes")],
    )
    .await;
    let got = receive_distinct(&mut rx, 1).await;
    let delivery = got.values().next().expect("one delivery");
    let received = delivery.decode::<u32>().expect("decodes");
    assert_eq!(received, sent);
    assert_eq!(received.headers(), &headers);
    let ce = CloudEventAttributes::from_headers(delivery.headers()).expect("CloudEvents headers");
    assert_eq!(ce.id, sent.event_id().to_string());
    assert_eq!(ce.subject.as_deref(), Some("agg-1"));
    assert_eq!(ce.source, "conformance");
    assert!(sub.shutdown(DRAIN).await.drained());
}

/// Addition (a): a message that keeps failing is dead-lettered after `max_attempts`, with the
/// failure headers, while the other messages keep flowing; it is never retried again.
pub async fn dead_letter_after_failures_while_others_flow<F: BackendFactory>(factory: &F) {
    let backend = factory.create().await;
    let key = format!("{}.created", unique());
    let cfg = build(
        config(&unique(), &key)
            .in_process_retries(1)
            .in_process_backoff(Duration::from_millis(10))
            .delayed_retries([Duration::from_millis(100), Duration::from_millis(200)])
            .max_attempts(4)
            .prefetch(4)
            .concurrency(2),
    );
    let queue = cfg.queue();
    let (handler, mut rx) = probe(|d: Delivery| async move {
        if d.message().aggregate_id() == Some("poison") {
            Err(HandlerError::transient(std::io::Error::other(
                "database down",
            )))
        } else {
            Ok(Outcome::Ack)
        }
    });
    let sub = backend
        .subscriber()
        .subscribe(cfg, handler)
        .await
        .expect("subscribe");
    let poison = event(&key, "poison", 0);
    let mut messages = vec![poison.clone()];
    messages.extend((1..=20).map(|n| event(&key, "good", n)));
    publish_all(&backend.publisher(), messages).await;

    let mut poison_attempts = Vec::new();
    let mut good = BTreeSet::new();
    while good.len() < 20 || poison_attempts.len() < 4 {
        let d = timeout(WAIT, rx.recv())
            .await
            .ok()
            .flatten()
            .expect("a delivery");
        if d.message().message_id() == poison.message_id() {
            poison_attempts.push(d.attempt());
        } else {
            good.insert(d.message().message_id().to_owned());
        }
    }
    assert_eq!(poison_attempts, [1, 2, 3, 4]);
    assert_quiet(&mut rx).await;
    let dead = backend.dead_letters().list(&queue, 10).await.expect("list");
    assert_eq!(dead.len(), 1);
    let d = &dead[0];
    assert_eq!(d.message().message_id(), poison.message_id());
    assert_eq!(d.error_type(), Some("retries-exhausted"));
    assert!(
        d.error_message()
            .is_some_and(|m| m.contains("database down"))
    );
    assert_eq!(d.handler(), Some("conformance-probe"));
    assert_eq!(d.attempts(), Some(4));
    assert_eq!(d.original_routing_key(), Some(key.as_str()));
    assert!(d.message().header(dl::FIRST_FAILURE).is_some());
    assert!(sub.shutdown(DRAIN).await.drained());
}

/// Addition (b): a delayed retry is not delivered before its delay (explicit, or the next
/// step of the schedule), and not much after.
pub async fn delayed_retry_honours_delay<F: BackendFactory>(factory: &F) {
    let backend = factory.create().await;
    let key = format!("{}.created", unique());
    let cfg = build(
        config(&unique(), &key)
            .in_process_retries(0)
            .delayed_retries([Duration::from_secs(2)]),
    );
    let (handler, mut rx) = probe(|d: Delivery| async move {
        match (d.attempt(), d.message().aggregate_id()) {
            (1, Some("explicit")) => Ok(Outcome::Retry {
                after: Some(Duration::from_secs(5)),
            }),
            (1, _) => Err(HandlerError::transient(std::io::Error::other("later"))),
            _ => Ok(Outcome::Ack),
        }
    });
    let sub = backend
        .subscriber()
        .subscribe(cfg, handler)
        .await
        .expect("subscribe");
    let start = Instant::now();
    let explicit = event(&key, "explicit", 1);
    let scheduled = event(&key, "scheduled", 2);
    publish_all(
        &backend.publisher(),
        vec![explicit.clone(), scheduled.clone()],
    )
    .await;
    let mut seen: BTreeMap<(String, u32), Duration> = BTreeMap::new();
    while seen.len() < 4 {
        let d = timeout(WAIT, rx.recv())
            .await
            .ok()
            .flatten()
            .expect("a delivery");
        seen.insert(
            (d.message().message_id().to_owned(), d.attempt()),
            start.elapsed(),
        );
    }
    // The broker times a TTL in whole milliseconds from when it enqueued the retry, so allow
    // it a few milliseconds of rounding; no upper bound (a loaded machine may deliver late),
    // but the 2 s retry must come back before the 5 s one.
    let slack = Duration::from_millis(50);
    for (m, delay) in [(&explicit, 5), (&scheduled, 2)] {
        let first = seen[&(m.message_id().to_owned(), 1)];
        let second = seen[&(m.message_id().to_owned(), 2)];
        let gap = second - first;
        let want = Duration::from_secs(delay);
        assert!(gap + slack >= want, "retry after {gap:?}, wanted {want:?}");
    }
    assert!(
        seen[&(scheduled.message_id().to_owned(), 2)]
            < seen[&(explicit.message_id().to_owned(), 2)],
        "the 2 s retry came back before the 5 s one: {seen:?}"
    );
    assert!(sub.shutdown(DRAIN).await.drained());
}

/// Addition (c): a body that does not decode goes to the dead-letter queue on the first
/// attempt, without retries.
pub async fn decode_error_goes_straight_to_dead_letters<F: BackendFactory>(factory: &F) {
    let backend = factory.create().await;
    let key = format!("{}.created", unique());
    let cfg = build(config(&unique(), &key));
    let queue = cfg.queue();
    let (handler, mut rx) = probe(|d: Delivery| async move {
        let event = d.decode::<u32>()?;
        assert!(*event.data() < u32::MAX);
        Ok(Outcome::Ack)
    });
    let sub = backend
        .subscriber()
        .subscribe(cfg, handler)
        .await
        .expect("subscribe");
    let garbage = Message::new(key.clone(), &b"not json"[..]);
    publish_all(
        &backend.publisher(),
        vec![garbage.clone(), event(&key, "a", 1)],
    )
    .await;
    receive_distinct(&mut rx, 2).await;
    assert_quiet(&mut rx).await;
    let dead = backend.dead_letters().list(&queue, 10).await.expect("list");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].message().message_id(), garbage.message_id());
    assert_eq!(dead[0].error_type(), Some("decode"));
    assert_eq!(dead[0].attempts(), Some(1));
    assert_eq!(dead[0].message().body(), garbage.body());
    assert!(sub.shutdown(DRAIN).await.drained());
}

/// Addition (d): publishing a routing key that no queue is bound to is a typed error.
pub async fn unroutable_publish_is_error<F: BackendFactory>(factory: &F) {
    let backend = factory.create().await;
    let key = format!("{}.nobody.listens", unique());
    let err = backend
        .publisher()
        .publish(event(&key, "a", 1))
        .await
        .expect_err("an unroutable publish fails");
    assert!(
        matches!(&err, PublishError::Unroutable { routing_key, .. } if *routing_key == key),
        "got {err:?}"
    );
    assert!(!err.is_retryable());
}

/// Addition (i): with ordered lanes, each aggregate's events are handled in publish order
/// even though handlers run concurrently and take different times.
pub async fn per_aggregate_order_with_lanes<F: BackendFactory>(factory: &F) {
    let backend = factory.create().await;
    let key = format!("{}.changed", unique());
    let cfg = build(
        config(&unique(), &key)
            .prefetch(32)
            .concurrency(4)
            .ordered_lanes(4),
    );
    let (handler, mut rx) = probe(|d: Delivery| async move {
        let n = d.decode::<u32>()?.into_data();
        // Uneven work, so that unordered processing would reorder.
        sleep(Duration::from_millis(u64::from((n * 7919) % 13))).await;
        Ok(Outcome::Ack)
    });
    let sub = backend
        .subscriber()
        .subscribe(cfg, handler)
        .await
        .expect("subscribe");
    let mut messages = Vec::new();
    for n in 0..20 {
        for agg in ["a1", "a2", "a3", "a4", "a5"] {
            messages.push(event(&key, agg, n));
        }
    }
    publish_all(&backend.publisher(), messages.clone()).await;
    let mut order: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for _ in 0..messages.len() {
        let d = timeout(WAIT, rx.recv())
            .await
            .ok()
            .flatten()
            .expect("a delivery");
        let n = d.decode::<u32>().expect("decodes").into_data();
        order
            .entry(d.message().aggregate_id().unwrap_or_default().to_owned())
            .or_default()
            .push(n);
    }
    assert_eq!(order.len(), 5);
    for (agg, seq) in &order {
        assert_eq!(seq, &(0..20).collect::<Vec<_>>(), "order of {agg}");
    }
    assert!(sub.shutdown(DRAIN).await.drained());
}

/// Addition (h): shutdown lets in-flight handlers finish within the deadline; nothing is lost
/// or handled twice. Handlers that overrun the deadline are cut off and their messages go
/// back to the queue for the next consumer.
pub async fn graceful_drain<F: BackendFactory>(factory: &F) {
    let backend = factory.create().await;
    let key = format!("{}.created", unique());
    let cfg = build(config(&unique(), &key).prefetch(4).concurrency(4));
    let started = Arc::new(Mutex::new(0usize));
    let s = started.clone();
    let (handler, mut rx) = probe(move |d: Delivery| {
        let s = s.clone();
        async move {
            *s.lock().expect("counter lock") += 1;
            let secs = if d.message().aggregate_id() == Some("slow") {
                60
            } else {
                1
            };
            sleep(Duration::from_secs(secs)).await;
            Ok(Outcome::Ack)
        }
    });
    let sub = backend
        .subscriber()
        .subscribe(cfg.clone(), handler)
        .await
        .expect("subscribe");
    let fast: Vec<Message> = (0..4).map(|n| event(&key, "fast", n)).collect();
    publish_all(&backend.publisher(), fast.clone()).await;
    let deadline = Instant::now() + WAIT;
    while *started.lock().expect("counter lock") < 4 {
        assert!(Instant::now() < deadline, "handlers did not start");
        sleep(Duration::from_millis(10)).await;
    }
    let report = sub.shutdown(Duration::from_secs(5)).await;
    assert!(
        report.drained(),
        "in-flight handlers finish within the deadline"
    );
    assert_eq!(report.requeued(), 0);
    let got = receive_distinct(&mut rx, 4).await;
    assert_eq!(got.keys().cloned().collect::<BTreeSet<_>>(), ids(&fast));

    // An overrunning handler is cut off at the deadline and its message kept.
    let (handler, _slow_rx) = probe(|_: Delivery| async {
        sleep(Duration::from_secs(60)).await;
        Ok(Outcome::Ack)
    });
    let sub = backend
        .subscriber()
        .subscribe(cfg.clone(), handler)
        .await
        .expect("subscribe");
    let slow = event(&key, "slow", 9);
    publish_all(&backend.publisher(), vec![slow.clone()]).await;
    sleep(Duration::from_millis(100)).await;
    let report = sub.shutdown(Duration::from_secs(1)).await;
    assert!(!report.drained());
    let (handler, mut rx) = probe(ack);
    let sub = backend
        .subscriber()
        .subscribe(cfg, handler)
        .await
        .expect("subscribe");
    let got = receive_distinct(&mut rx, 1).await;
    let d = &got[slow.message_id()];
    assert!(
        d.redelivered(),
        "a message cut off at shutdown comes back marked redelivered"
    );
    assert_quiet(&mut rx).await;
    assert!(sub.shutdown(DRAIN).await.drained());
}

/// Addition (f, k): when the connection drops while a handler runs, the message is
/// redelivered with its redelivery count raised; the stale settlement of the first delivery
/// changes nothing, and the message is not delivered a third time.
pub async fn redelivery_after_connection_drop<F: BackendFactory>(factory: &F) {
    let backend = factory.create().await;
    let key = format!("{}.created", unique());
    let cfg = build(config(&unique(), &key));
    let (entered_tx, mut entered) = mpsc::unbounded_channel();
    let (handler, mut rx) = probe(move |d: Delivery| {
        let tx = entered_tx.clone();
        async move {
            let _ = tx.send(());
            if !d.redelivered() {
                sleep(Duration::from_secs(3)).await;
            }
            Ok(Outcome::Ack)
        }
    });
    let sub = backend
        .subscriber()
        .subscribe(cfg, handler)
        .await
        .expect("subscribe");
    let m = event(&key, "a", 1);
    publish_all(&backend.publisher(), vec![m.clone()]).await;
    timeout(WAIT, entered.recv())
        .await
        .ok()
        .flatten()
        .expect("the handler starts");
    backend.drop_connections().await;

    let mut deliveries = Vec::new();
    while deliveries.len() < 2 {
        let d = timeout(WAIT, rx.recv())
            .await
            .ok()
            .flatten()
            .expect("a delivery");
        assert_eq!(d.message().message_id(), m.message_id());
        deliveries.push(d);
    }
    let redelivered: Vec<_> = deliveries.iter().filter(|d| d.redelivered()).collect();
    assert_eq!(redelivered.len(), 1, "exactly one redelivery");
    assert!(redelivered[0].redelivery_count() >= 1);
    assert_quiet(&mut rx).await;
    assert!(sub.shutdown(DRAIN).await.drained());
}

/// Addition (m): the prefetch holds again after the connection drops and the consumer
/// reconnects (lapin does not re-apply `basic.qos` by itself). With handlers that do not
/// finish, a consumer with prefetch 3 takes exactly 3 of 12 messages and leaves 9 ready,
/// before the drop and again after the reconnect; once the handlers finish, every message
/// arrives.
pub async fn prefetch_restored_after_reconnect<F: BackendFactory>(factory: &F) {
    use std::sync::atomic::{AtomicUsize, Ordering};

    let backend = factory.create().await;
    let key = format!("{}.created", unique());
    let cfg = build(config(&unique(), &key).prefetch(3).concurrency(3));
    let queue = cfg.queue();
    // Handlers wait on the gate of the phase they started in: 0 before the drop, 1 after.
    let phase = Arc::new(AtomicUsize::new(0));
    let gates: Arc<[tokio::sync::watch::Sender<bool>; 2]> = Arc::new([
        tokio::sync::watch::Sender::new(false),
        tokio::sync::watch::Sender::new(false),
    ]);
    let (entered_tx, mut entered) = mpsc::unbounded_channel::<String>();
    let handler = {
        let (phase, gates) = (phase.clone(), gates.clone());
        crate::subscriber::handler_fn("prefetch-probe", move |d: Delivery| {
            let _ = entered_tx.send(d.message().message_id().to_owned());
            let mut gate = gates[phase.load(Ordering::SeqCst)].subscribe();
            async move {
                let _ = gate.wait_for(|open| *open).await;
                Ok(Outcome::Ack)
            }
        })
    };
    let sub = backend
        .subscriber()
        .subscribe(cfg, handler)
        .await
        .expect("subscribe");
    let messages: Vec<Message> = (0..12).map(|n| event(&key, "a", n)).collect();
    publish_all(&backend.publisher(), messages.clone()).await;

    let mut seen = BTreeSet::new();
    for stage in ["before the drop", "after the reconnect"] {
        for _ in 0..3 {
            let id = timeout(WAIT, entered.recv())
                .await
                .ok()
                .flatten()
                .unwrap_or_else(|| panic!("a delivery {stage}"));
            seen.insert(id);
        }
        let settled = timeout(WAIT, async {
            while backend.ready(&queue).await != Some(9) {
                sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(
            settled.is_ok(),
            "9 of 12 messages stay ready {stage} with prefetch 3, not {:?}",
            backend.ready(&queue).await
        );
        sleep(QUIET).await;
        assert_eq!(
            backend.ready(&queue).await,
            Some(9),
            "the consumer took more than its prefetch {stage}"
        );
        if stage == "before the drop" {
            phase.store(1, Ordering::SeqCst);
            backend.drop_connections().await;
            // The first handlers finish now; their settlements belong to the dropped
            // connection and change nothing.
            gates[0].send_replace(true);
        }
    }

    gates[1].send_replace(true);
    while seen.len() < messages.len() {
        let id = timeout(WAIT, entered.recv())
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("received {} of {} messages", seen.len(), messages.len()));
        seen.insert(id);
    }
    assert_eq!(seen, ids(&messages));
    assert!(sub.shutdown(DRAIN).await.drained());
}

/// Addition (f), with an inbox: the connection is killed while the handler runs; the message
/// is redelivered, and the [`Deduplicate`](crate::inbox::Deduplicate) wrapper with a
/// [`MemoryInbox`](crate::inbox::MemoryInbox) keeps the side effect to one run. The
/// redelivered copy overtakes the still-running original, is sent to a delayed retry, and once
/// the original has finished (its own ack is stale) is acknowledged as a duplicate without
/// running the handler. Nothing is dead-lettered.
pub async fn inbox_drops_redelivered_duplicate<F: BackendFactory>(factory: &F) {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use crate::inbox::{Deduplicate, Inbox, MemoryInbox};
    use crate::subscriber::handler_fn;

    let backend = factory.create().await;
    let key = format!("{}.created", unique());
    let cfg = build(
        config(&unique(), &key)
            .in_process_retries(0)
            .delayed_retries([Duration::from_millis(200)])
            .max_attempts(1000),
    );
    let queue = cfg.queue();
    let effects = Arc::new(AtomicUsize::new(0));
    let (entered_tx, mut entered) = mpsc::unbounded_channel();
    let effect = {
        let effects = effects.clone();
        handler_fn("effect", move |d: Delivery| {
            let (effects, entered_tx) = (effects.clone(), entered_tx.clone());
            async move {
                let _ = entered_tx.send(());
                effects.fetch_add(1, Ordering::SeqCst);
                if !d.redelivered() && d.attempt() == 1 {
                    // Still running when the connection is killed.
                    sleep(Duration::from_secs(2)).await;
                }
                Ok(Outcome::Ack)
            }
        })
    };
    let inbox = MemoryInbox::new(1000);
    let dedup = Arc::new(Deduplicate::new(effect, inbox.clone()));
    let (handler, mut rx) = probe(move |d: Delivery| {
        let dedup = dedup.clone();
        async move { dedup.handle(d).await }
    });
    let sub = backend
        .subscriber()
        .subscribe(cfg, handler)
        .await
        .expect("subscribe");
    let m = event(&key, "a", 1);
    publish_all(&backend.publisher(), vec![m.clone()]).await;
    timeout(WAIT, entered.recv())
        .await
        .ok()
        .flatten()
        .expect("the handler starts");
    backend.drop_connections().await;

    // Deliveries until the original one has finished, then the duplicate after it.
    let mut saw_redelivery = false;
    let mut original_done = false;
    loop {
        let d = timeout(WAIT, rx.recv())
            .await
            .ok()
            .flatten()
            .expect("a delivery");
        assert_eq!(d.message().message_id(), m.message_id());
        saw_redelivery |= d.redelivered();
        if original_done {
            break;
        }
        original_done = !d.redelivered() && d.attempt() == 1;
    }
    assert!(saw_redelivery, "the killed connection led to a redelivery");
    assert_eq!(
        effects.load(Ordering::SeqCst),
        1,
        "the handler's side effect ran once"
    );
    assert_quiet(&mut rx).await;
    assert_eq!(effects.load(Ordering::SeqCst), 1);
    assert!(
        !inbox
            .record(&queue, m.message_id())
            .await
            .expect("memory inbox"),
        "the inbox remembers the event"
    );
    let dead = backend.dead_letters().list(&queue, 10).await.expect("list");
    assert!(dead.is_empty(), "nothing dead-lettered: {dead:?}");
    assert!(sub.shutdown(DRAIN).await.drained());
}

/// Dead letters can be listed and replayed; a replayed message starts over at attempt 1.
pub async fn dead_letter_replay<F: BackendFactory>(factory: &F) {
    let backend = factory.create().await;
    let key = format!("{}.created", unique());
    let cfg = build(config(&unique(), &key));
    let queue = cfg.queue();
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let f = fail.clone();
    let (handler, mut rx) = probe(move |_: Delivery| {
        let fail = f.load(std::sync::atomic::Ordering::SeqCst);
        async move {
            if fail {
                Err(HandlerError::permanent(std::io::Error::other("bad order")))
            } else {
                Ok(Outcome::Ack)
            }
        }
    });
    let sub = backend
        .subscriber()
        .subscribe(cfg, handler)
        .await
        .expect("subscribe");
    let m = event(&key, "a", 1);
    publish_all(&backend.publisher(), vec![m.clone()]).await;
    let first = receive_distinct(&mut rx, 1).await;
    assert_eq!(first[m.message_id()].attempt(), 1);
    assert_quiet(&mut rx).await;
    let dead = backend.dead_letters();
    let listed = dead.list(&queue, 10).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].error_type(), Some("permanent"));

    fail.store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(dead.replay(&queue, 10).await.expect("replay"), 1);
    let again = receive_distinct(&mut rx, 1).await;
    let d = &again[m.message_id()];
    assert_eq!(
        d.attempt(),
        1,
        "a replayed message gets a full set of attempts"
    );
    assert!(d.message().header(dl::ERROR_TYPE).is_none());
    assert!(dead.list(&queue, 10).await.expect("list").is_empty());
    assert!(sub.shutdown(DRAIN).await.drained());
}

/// Waits until the backend's counters since `before` satisfy `done`, and returns them.
async fn wait_metrics<B: Backend>(
    backend: &B,
    before: &crate::metrics::Metrics,
    done: impl Fn(&crate::metrics::Metrics) -> bool,
) -> crate::metrics::Metrics {
    let deadline = Instant::now() + WAIT;
    loop {
        let delta = backend.metrics().since(before);
        if done(&delta) {
            return delta;
        }
        assert!(Instant::now() < deadline, "counters stuck at {delta:?}");
        sleep(Duration::from_millis(20)).await;
    }
}

/// Observability: the counters count published, confirmed and returned messages, consumed
/// deliveries, retries and dead letters exactly, and reconnects after a dropped connection.
pub async fn metrics_count_the_flow<F: BackendFactory>(factory: &F) {
    let backend = factory.create().await;
    let before = backend.metrics();
    let key = format!("{}.created", unique());
    let cfg = build(
        config(&unique(), &key)
            .in_process_retries(0)
            .delayed_retries([Duration::from_millis(100)])
            .max_attempts(5),
    );
    // First, while nothing else is published on the connection: RabbitMQ's `basic.return`
    // carries no delivery tag, and lapin can pin it on another publish confirmed at the same
    // time (a retry or dead-letter forward).
    let unroutable = format!("{}.nobody", unique());
    assert!(
        backend
            .publisher()
            .publish(event(&unroutable, "x", 4))
            .await
            .is_err()
    );
    let (handler, mut rx) = probe(|d: Delivery| async move {
        match (d.message().aggregate_id(), d.attempt()) {
            (Some("retry"), 1) => Ok(Outcome::Retry { after: None }),
            (Some("dead"), _) => Err(HandlerError::permanent(std::io::Error::other("no"))),
            _ => Ok(Outcome::Ack),
        }
    });
    let sub = backend
        .subscriber()
        .subscribe(cfg, handler)
        .await
        .expect("subscribe");
    publish_all(
        &backend.publisher(),
        vec![
            event(&key, "ack", 1),
            event(&key, "retry", 2),
            event(&key, "dead", 3),
        ],
    )
    .await;
    for _ in 0..4 {
        timeout(WAIT, rx.recv())
            .await
            .ok()
            .flatten()
            .expect("a delivery");
    }
    let delta = wait_metrics(&backend, &before, |m| {
        m.consumed >= 4 && m.retried >= 1 && m.dead_lettered >= 1
    })
    .await;
    assert_eq!(
        (delta.published, delta.confirmed, delta.returned),
        (4, 3, 1),
        "{delta:?}"
    );
    assert_eq!(
        (delta.consumed, delta.retried, delta.dead_lettered),
        (4, 1, 1),
        "{delta:?}"
    );
    backend.drop_connections().await;
    wait_metrics(&backend, &before, |m| m.reconnects >= 1).await;
    assert!(sub.shutdown(DRAIN).await.drained());
}

/// Observability (j): the publish runs in a `PRODUCER` span (child of the caller's span)
/// whose context travels in the `traceparent` header, and the handler runs in a `CONSUMER`
/// span that links to it, both with the OpenTelemetry messaging attributes.
#[cfg(feature = "opentelemetry")]
pub async fn trace_link<F: BackendFactory>(factory: &F) {
    use sinew_tracing_kit::testing::{SpanKind, capture};
    use tracing::Instrument;

    let (_guard, spans) = capture();
    // Other tests of the binary may have cached "nobody listens" for these call sites.
    tracing::callsite::rebuild_interest_cache();
    let backend = factory.create().await;
    let key = format!("{}.created", unique());
    let cfg = build(config(&unique(), &key));
    let queue = cfg.queue();
    let (handler, mut rx) = probe(ack);
    let sub = backend
        .subscriber()
        .subscribe(cfg, handler)
        .await
        .expect("subscribe");
    let m = event(&key, "a", 1);
    // Again, now that the cases running beside this one have registered the call sites: one
    // that registered while `capture` was being installed may have cached "nobody listens".
    tracing::callsite::rebuild_interest_cache();
    backend
        .publisher()
        .publish(m.clone())
        .instrument(tracing::info_span!("conformance-request"))
        .await
        .expect("publish");
    let got = receive_distinct(&mut rx, 1).await;
    let delivery = &got[m.message_id()];
    assert!(sub.shutdown(DRAIN).await.drained());

    let find = |kind: SpanKind| {
        spans
            .spans()
            .into_iter()
            .find(|s| s.kind == kind && s.attribute("messaging.message.id") == Some(m.message_id()))
            .unwrap_or_else(|| panic!("no {kind:?} span; recorded: {:?}", spans.names()))
    };
    let producer = find(SpanKind::Producer);
    let consumer = find(SpanKind::Consumer);
    let request = spans.span("conformance-request");
    assert_eq!(
        producer.parent_span_id.as_deref(),
        Some(request.span_id.as_str()),
        "the producer span is a child of the caller's span"
    );
    assert!(producer.name.starts_with("publish ") && producer.name.ends_with(&format!(":{key}")));
    assert!(
        consumer.name.starts_with("process ")
            && consumer.name.ends_with(&format!(":{key}:{queue}"))
    );
    for (span, operation) in [(&producer, "send"), (&consumer, "process")] {
        assert_eq!(span.attribute("messaging.operation.type"), Some(operation));
        assert!(
            span.attribute("messaging.system")
                .is_some_and(|s| !s.is_empty())
        );
        assert_eq!(
            span.attribute("messaging.rabbitmq.destination.routing_key"),
            Some(key.as_str())
        );
        assert!(span.attribute("messaging.destination.name").is_some());
    }
    assert_eq!(
        consumer.attribute("messaging.destination.subscription.name"),
        Some(queue.as_str())
    );
    assert_eq!(consumer.attribute("messaging.sinew.outcome"), Some("ack"));
    let traceparent = delivery
        .message()
        .header(crate::envelope::TRACEPARENT)
        .expect("the producer injected traceparent");
    assert!(
        traceparent.contains(&producer.trace_id) && traceparent.contains(&producer.span_id),
        "traceparent {traceparent} names the producer span"
    );
    assert!(
        consumer
            .links
            .iter()
            .any(|l| l.trace_id == producer.trace_id && l.span_id == producer.span_id),
        "the consumer span links to the producer span: {:?}",
        consumer.links
    );
}

/// One dead letter, picked by message ID from the list, can be replayed (it reaches the
/// handler again, starting over at attempt 1) or discarded for good; the others stay, and an
/// unknown ID or queue is reported.
pub async fn dead_letter_replay_and_discard_one<F: BackendFactory>(factory: &F) {
    let backend = factory.create().await;
    let key = format!("{}.created", unique());
    let cfg = build(config(&unique(), &key));
    let queue = cfg.queue();
    let healed = Arc::new(Mutex::new(BTreeSet::<String>::new()));
    let h = healed.clone();
    let (handler, mut rx) = probe(move |d: Delivery| {
        let ok = h
            .lock()
            .expect("healed lock")
            .contains(d.message().message_id());
        async move {
            if ok {
                Ok(Outcome::Ack)
            } else {
                Err(HandlerError::permanent(std::io::Error::other("bad order")))
            }
        }
    });
    let sub = backend
        .subscriber()
        .subscribe(cfg, handler)
        .await
        .expect("subscribe");
    let messages: Vec<Message> = (0..3).map(|n| event(&key, "a", n)).collect();
    publish_all(&backend.publisher(), messages.clone()).await;
    receive_distinct(&mut rx, 3).await;
    let dead = backend.dead_letters();
    let deadline = Instant::now() + WAIT;
    let listed = loop {
        let listed = dead.list(&queue, 10).await.expect("list");
        if listed.len() == 3 {
            break listed;
        }
        assert!(Instant::now() < deadline, "{} dead letters", listed.len());
        sleep(Duration::from_millis(20)).await;
    };
    for letter in &listed {
        assert_eq!(letter.error_type(), Some("permanent"));
        assert_eq!(letter.original_routing_key(), Some(key.as_str()));
        assert!(letter.original_exchange().is_some());
        assert!(letter.first_failure().is_some());
    }
    let (replayed, discarded) = (messages[1].message_id(), messages[0].message_id());
    healed
        .lock()
        .expect("healed lock")
        .insert(replayed.to_owned());
    assert!(dead.replay_message(&queue, replayed).await.expect("replay"));
    let again = receive_distinct(&mut rx, 1).await;
    assert_eq!(again[replayed].attempt(), 1);
    assert!(
        dead.discard_message(&queue, discarded)
            .await
            .expect("discard")
    );
    assert!(
        !dead
            .discard_message(&queue, discarded)
            .await
            .expect("discard")
    );
    assert!(
        !dead
            .replay_message(&queue, "no-such-id")
            .await
            .expect("replay")
    );
    let rest = dead.list(&queue, 10).await.expect("list");
    assert_eq!(
        rest.iter()
            .map(|d| d.message_id().to_owned())
            .collect::<Vec<_>>(),
        [messages[2].message_id().to_owned()]
    );
    let unknown = format!("{}.nothing", unique());
    assert!(matches!(
        dead.replay_message(&unknown, replayed).await,
        Err(crate::dead_letter::DeadLetterError::UnknownQueue { .. })
    ));
    assert!(matches!(
        dead.discard_message(&unknown, replayed).await,
        Err(crate::dead_letter::DeadLetterError::UnknownQueue { .. })
    ));
    assert_quiet(&mut rx).await;
    assert!(sub.shutdown(DRAIN).await.drained());
}
