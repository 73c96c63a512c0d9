//! Throughput of sinew-messaging next to raw lapin doing the same work, against the local
//! RabbitMQ, and of the memory backend.
//!
//! - `publish/{classic,quorum}-{256B,1KB}/{ours,lapin}-inflight-{1,64,512}`: confirmed,
//!   mandatory, persistent publishes of one message, `k` confirms in flight. Ours:
//!   `RabbitBroker::confirm_window(k)` and `publish_batch`. Raw lapin: one confirm channel,
//!   a `k`-permit semaphore, every publish a future awaiting its own confirm, all joined (the
//!   same pipelining). In-flight 1 is the reference design's one-confirm-at-a-time pattern.
//!   The queue is purged after every iteration, untimed, for both, so neither runs next to
//!   the broker's clean-up of the other's messages.
//! - `consume/{quorum,classic}-{256B,1KB}/{ours,lapin}-prefetch-{1,64,256}`: the queue is
//!   filled first (untimed); timed is starting a consumer with that prefetch and receiving
//!   and acking every message. Ours: a subscription whose handler only counts (concurrency =
//!   prefetch), so the time is the crate's (envelope mapping, failure policy, ack per
//!   message). Raw lapin: `basic_qos`, `basic_consume`, each delivery acked by a task of its
//!   own (acking in the loop, awaiting each ack, is 2–3x slower at prefetch 64+). The
//!   queue is declared by ours (quorum by default, `QueueType::Classic` for the classic rows)
//!   and consumed by both sides.
//! - `memory/publish` and `memory/publish_and_consume`: the in-process broker.
//!
//! Run with
//! `cargo bench -p sinew-messaging --features rabbitmq --bench throughput`; the memory rows
//! alone need no feature: `cargo bench -p sinew-messaging --bench throughput -- memory`.
//!
//! For ours / lapin on a machine whose speed drifts (the broker sharing the cores), use
//! `python3 messaging/benches/interleave.py`: it runs each row's pair in rotation over all
//! rows, several times, and prints the median of the per-repetition ratios and their range.
//! Environment: `SINEW_BENCH_LAPIN_FIRST` runs raw lapin before ours in each row (the driver
//! alternates); `SINEW_BENCH_CPU` prints the messages handled and the process's CPU time at
//! the end (client CPU per message of one row, with a filter and `--profile-time`);
//! `SINEW_BENCH_AA` makes the `ours-*` rows run raw lapin's code as well (an A/A run: the
//! spread between two identical sides is the harness's resolution on this machine).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    missing_docs,
    unreachable_pub
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sinew_messaging::envelope::Event;
use sinew_messaging::memory::MemoryBroker;
use sinew_messaging::subscriber::{Delivery, Outcome, Subscription, handler_fn};
use sinew_messaging::{Message, Publisher, Subscriber, SubscriptionConfig};
use tokio::runtime::Runtime;
use tokio::sync::Notify;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn message(key: &str, payload: usize) -> Message {
    Event::new(key, "agg-1", "x".repeat(payload))
        .to_message("bench")
        .unwrap()
}

/// The RabbitMQ rows, against the local broker.
#[cfg(feature = "rabbitmq")]
mod rabbit {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use criterion::{Criterion, SamplingMode, Throughput};
    use futures_util::StreamExt;
    use futures_util::future::join_all;
    use lapin::options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
        ConfirmSelectOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
        QueuePurgeOptions,
    };
    use lapin::types::{AMQPValue, FieldTable, LongString};
    use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
    use sinew_messaging::rabbitmq::{QueueType, RabbitBroker};
    use sinew_messaging::subscriber::{Delivery, Outcome, Subscription, handler_fn};
    use sinew_messaging::{Message, Publisher, Subscriber, SubscriptionConfig};
    use tokio::sync::{Notify, Semaphore};

    use super::{message, runtime};

    const URI: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Side {
        Ours,
        Lapin,
    }

    /// Messages the timed parts handled (consume rows: received, not the untimed fill).
    static MESSAGES: AtomicUsize = AtomicUsize::new(0);

    /// With `SINEW_BENCH_CPU` set, prints the messages the selected rows handled and this
    /// process's CPU time (user + system, from `/proc/self/stat`, Linux), for client CPU per
    /// message of one row, e.g. with `--profile-time 8` and a filter naming one row.
    fn report_cpu() {
        if std::env::var_os("SINEW_BENCH_CPU").is_none() {
            return;
        }
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // Fields after the command name (which is in parentheses): state is field 3, utime
        // and stime are fields 14 and 15, in clock ticks (100 per second on Linux).
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<u64> = after
            .split_whitespace()
            .skip(11)
            .take(2)
            .filter_map(|f| f.parse().ok())
            .collect();
        let cpu = fields.iter().sum::<u64>() as f64 / 100.0;
        let n = MESSAGES.load(Ordering::Relaxed);
        eprintln!(
            "sinew-bench-cpu: messages {n}, client CPU {cpu:.2} s, {:.2} us per message",
            if n == 0 { 0.0 } else { cpu * 1e6 / n as f64 }
        );
    }

    impl Side {
        fn name(self) -> &'static str {
            match self {
                Self::Ours => "ours",
                Self::Lapin => "lapin",
            }
        }
    }

    /// With `SINEW_BENCH_AA` set, the `ours-*` rows run raw lapin's code too: an A/A run, which
    /// shows how far apart two identical sides land in this harness on this machine.
    fn same_on_both() -> bool {
        std::env::var_os("SINEW_BENCH_AA").is_some()
    }

    /// Ours first, or raw lapin first when `SINEW_BENCH_LAPIN_FIRST` is set (`interleave.py`
    /// alternates, so that neither side always runs right after the other's clean-up).
    fn order() -> [Side; 2] {
        if std::env::var_os("SINEW_BENCH_LAPIN_FIRST").is_some() {
            [Side::Lapin, Side::Ours]
        } else {
            [Side::Ours, Side::Lapin]
        }
    }

    /// The properties ours sends for `m`, built once for raw lapin.
    fn properties(m: &Message) -> BasicProperties {
        let mut headers = FieldTable::default();
        for (k, v) in m.headers() {
            headers.insert(
                k.as_str().into(),
                AMQPValue::LongString(LongString::from(v.as_str())),
            );
        }
        BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(m.message_id().into())
            .with_content_type(m.content_type().into())
            .with_app_id("bench".into())
            .with_headers(headers)
    }

    async fn lapin_channel() -> (Connection, Channel) {
        let conn = Connection::connect(
            URI,
            ConnectionProperties::default().with_connection_name("sinew-bench-lapin".into()),
        )
        .await
        .unwrap();
        let ch = conn.create_channel().await.unwrap();
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        (conn, ch)
    }

    async fn declare(ch: &Channel, queue: &str, kind: &str, exchange: &str, key: &str) {
        let mut args = FieldTable::default();
        args.insert("x-queue-type".into(), AMQPValue::LongString(kind.into()));
        let options = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        ch.queue_declare(queue.into(), options, args).await.unwrap();
        ch.queue_bind(
            queue.into(),
            exchange.into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    }

    /// Raw lapin: `n` publishes, `k` confirms in flight.
    async fn lapin_publish(
        ch: &Channel,
        window: &Semaphore,
        exchange: &str,
        m: &Message,
        props: &BasicProperties,
        n: usize,
    ) {
        let options = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        join_all((0..n).map(|_| async {
            let _permit = window.acquire().await.unwrap();
            let confirm = ch
                .basic_publish(
                    exchange.into(),
                    m.routing_key().into(),
                    options,
                    m.body(),
                    props.clone(),
                )
                .await
                .unwrap();
            assert!(matches!(confirm.await.unwrap(), Confirmation::Ack(None)));
        }))
        .await;
    }

    pub fn rabbit(c: &mut Criterion) {
        let rt = runtime();
        let exchange = format!("sinew-bench-{}", uuid::Uuid::now_v7().simple());
        let (brokers, conn, ch) = rt.block_on(async {
            let mut brokers = Vec::new();
            for window in [1, 64, 512] {
                brokers.push(
                    RabbitBroker::builder(URI)
                        .exchange(exchange.clone())
                        .app_id("bench")
                        .confirm_window(window)
                        .connect()
                        .await
                        .unwrap(),
                );
            }
            // brokers[3]: classic subscription queues, for the classic consume rows.
            brokers.push(
                RabbitBroker::builder(URI)
                    .exchange(exchange.clone())
                    .app_id("bench")
                    .queue_type(QueueType::Classic)
                    .connect()
                    .await
                    .unwrap(),
            );
            let (conn, ch) = lapin_channel().await;
            (brokers, conn, ch)
        });
        let mut queues = Vec::new();

        // Publishing.
        for kind in ["classic", "quorum"] {
            for payload in [256, 1024] {
                let label = if payload == 256 { "256B" } else { "1KB" };
                let key = format!("bench.publish.{kind}.{label}");
                let queue = format!("{exchange}.{kind}.{label}");
                rt.block_on(declare(&ch, &queue, kind, &exchange, &key));
                queues.push(queue.clone());
                let m = message(&key, payload);
                let props = properties(&m);
                let mut group = c.benchmark_group(format!("publish/{kind}-{label}"));
                group.sampling_mode(SamplingMode::Flat);
                for (i, window) in [1usize, 64, 512].into_iter().enumerate() {
                    let n = match window {
                        1 => 100,
                        64 => 2_000,
                        _ => 5_000,
                    };
                    group.throughput(Throughput::Elements(n as u64));
                    let publisher = brokers[i].publisher();
                    let purge = || async {
                        ch.queue_purge(queue.as_str().into(), QueuePurgeOptions::default())
                            .await
                            .unwrap();
                    };
                    let sem = Semaphore::new(window);
                    for side in order() {
                        if side == Side::Lapin || same_on_both() {
                            let name = format!("{}-inflight-{window}", side.name());
                            group.bench_function(name, |b| {
                                b.iter_custom(|iters| {
                                    rt.block_on(async {
                                        let mut total = Duration::ZERO;
                                        for _ in 0..iters {
                                            let start = Instant::now();
                                            lapin_publish(&ch, &sem, &exchange, &m, &props, n)
                                                .await;
                                            total += start.elapsed();
                                            MESSAGES.fetch_add(n, Ordering::Relaxed);
                                            purge().await;
                                        }
                                        total
                                    })
                                });
                            });
                            continue;
                        }
                        group.bench_function(format!("ours-inflight-{window}"), |b| {
                            b.iter_custom(|iters| {
                                rt.block_on(async {
                                    let mut total = Duration::ZERO;
                                    for _ in 0..iters {
                                        let batch = vec![m.clone(); n];
                                        let start = Instant::now();
                                        let results = publisher.publish_batch(batch).await;
                                        total += start.elapsed();
                                        MESSAGES.fetch_add(n, Ordering::Relaxed);
                                        assert!(results.iter().all(Result::is_ok));
                                        purge().await;
                                    }
                                    total
                                })
                            });
                        });
                    }
                }
                group.finish();
            }
        }

        // Consuming.
        let fill = Semaphore::new(512);
        for kind in ["quorum", "classic"] {
            for payload in [256, 1024] {
                let label = if payload == 256 { "256B" } else { "1KB" };
                let key = format!("bench.consume.{kind}.{label}");
                let m = message(&key, payload);
                let props = properties(&m);
                let mut group = c.benchmark_group(format!("consume/{kind}-{label}"));
                group.sampling_mode(SamplingMode::Flat);
                for prefetch in [1u16, 64, 256] {
                    let n = match prefetch {
                        1 => 500,
                        64 => 3_000,
                        _ => 5_000,
                    };
                    group.throughput(Throughput::Elements(n as u64));
                    // Ours consumes `{service}.{subscription}`, declared by the subscriber.
                    let cfg = SubscriptionConfig::builder(
                        format!("{exchange}-c{prefetch}"),
                        format!("{kind}-{label}"),
                    )
                    .routing_key(key.clone())
                    .prefetch(prefetch)
                    .concurrency(usize::from(prefetch))
                    .build()
                    .unwrap();
                    let queue = cfg.queue();
                    let broker = if kind == "quorum" {
                        &brokers[0]
                    } else {
                        &brokers[3]
                    };
                    rt.block_on(broker.subscriber().declare(&cfg)).unwrap();
                    queues.push(queue.clone());
                    for side in order() {
                        if side == Side::Ours && !same_on_both() {
                            group.bench_function(format!("ours-prefetch-{prefetch}"), |b| {
                                b.iter_custom(|iters| {
                                    rt.block_on(async {
                                        let mut total = Duration::ZERO;
                                        for _ in 0..iters {
                                            lapin_publish(&ch, &fill, &exchange, &m, &props, n)
                                                .await;
                                            let count =
                                                Arc::new((AtomicUsize::new(0), Notify::new()));
                                            let counter = count.clone();
                                            let handler =
                                                handler_fn("count", move |_: Delivery| {
                                                    let c = counter.clone();
                                                    async move {
                                                        if c.0.fetch_add(1, Ordering::Relaxed) + 1
                                                            == n
                                                        {
                                                            c.1.notify_one();
                                                        }
                                                        Ok(Outcome::Ack)
                                                    }
                                                });
                                            let start = Instant::now();
                                            let sub = broker
                                                .subscriber()
                                                .subscribe(cfg.clone(), handler)
                                                .await
                                                .unwrap();
                                            count.1.notified().await;
                                            total += start.elapsed();
                                            MESSAGES.fetch_add(n, Ordering::Relaxed);
                                            sub.shutdown(Duration::from_secs(10)).await;
                                        }
                                        total
                                    })
                                });
                            });
                            continue;
                        }
                        let name = format!("{}-prefetch-{prefetch}", side.name());
                        group.bench_function(name, |b| {
                            b.iter_custom(|iters| {
                                rt.block_on(async {
                                    let mut total = Duration::ZERO;
                                    for _ in 0..iters {
                                        lapin_publish(&ch, &fill, &exchange, &m, &props, n).await;
                                        let start = Instant::now();
                                        let cch = conn.create_channel().await.unwrap();
                                        cch.basic_qos(prefetch, BasicQosOptions::default())
                                            .await
                                            .unwrap();
                                        let mut consumer = cch
                                            .basic_consume(
                                                queue.as_str().into(),
                                                "bench".into(),
                                                BasicConsumeOptions::default(),
                                                FieldTable::default(),
                                            )
                                            .await
                                            .unwrap();
                                        // Each delivery acked by its own task, as ours hands each one
                                        // to a handler task that acks when it returns.
                                        let mut acks = tokio::task::JoinSet::new();
                                        for _ in 0..n {
                                            let d = consumer.next().await.unwrap().unwrap();
                                            acks.spawn(async move {
                                                d.acker
                                                    .ack(BasicAckOptions::default())
                                                    .await
                                                    .unwrap();
                                            });
                                        }
                                        acks.join_all().await;
                                        total += start.elapsed();
                                        MESSAGES.fetch_add(n, Ordering::Relaxed);
                                        cch.close(200, "OK".into()).await.unwrap();
                                    }
                                    total
                                })
                            });
                        });
                    }
                    // Remove the fill of this group before the next one.
                    rt.block_on(async {
                        ch.queue_purge(queue.as_str().into(), QueuePurgeOptions::default())
                            .await
                            .unwrap();
                    });
                }
                group.finish();
            }
        }

        rt.block_on(async {
            for b in &brokers {
                b.delete_topology().await.unwrap();
            }
            for q in &queues {
                let _ = ch
                    .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                    .await;
            }
            let _ = conn.close(200, "OK".into()).await;
        });
        report_cpu();
    }
}

fn memory(c: &mut Criterion) {
    let rt = runtime();
    const N: usize = 100_000;
    let mut group = c.benchmark_group("memory");
    group.throughput(Throughput::Elements(N as u64));
    let m = message("bench.memory", 256);
    group.bench_function("publish", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let broker = MemoryBroker::new();
                    let cfg = SubscriptionConfig::builder("bench", "memory")
                        .routing_key("bench.*")
                        .build()
                        .unwrap();
                    broker.subscriber().declare(&cfg).await.unwrap();
                    let batch = vec![m.clone(); N];
                    let start = Instant::now();
                    let results = broker.publisher().publish_batch(batch).await;
                    total += start.elapsed();
                    assert!(results.iter().all(Result::is_ok));
                }
                total
            })
        });
    });
    group.bench_function("publish_and_consume", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let broker = MemoryBroker::new();
                    let cfg = SubscriptionConfig::builder("bench", "memory")
                        .routing_key("bench.*")
                        .prefetch(256)
                        .concurrency(256)
                        .build()
                        .unwrap();
                    let count = Arc::new((AtomicUsize::new(0), Notify::new()));
                    let counter = count.clone();
                    let handler = handler_fn("count", move |_: Delivery| {
                        let c = counter.clone();
                        async move {
                            if c.0.fetch_add(1, Ordering::Relaxed) + 1 == N {
                                c.1.notify_one();
                            }
                            Ok(Outcome::Ack)
                        }
                    });
                    let sub = broker.subscriber().subscribe(cfg, handler).await.unwrap();
                    let batch = vec![m.clone(); N];
                    let start = Instant::now();
                    let results = broker.publisher().publish_batch(batch).await;
                    count.1.notified().await;
                    total += start.elapsed();
                    assert!(results.iter().all(Result::is_ok));
                    sub.shutdown(Duration::from_secs(10)).await;
                }
                total
            })
        });
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

#[cfg(feature = "rabbitmq")]
criterion_group! {
    name = benches;
    config = config();
    targets = memory, rabbit::rabbit
}

#[cfg(not(feature = "rabbitmq"))]
criterion_group! {
    name = benches;
    config = config();
    targets = memory
}
criterion_main!(benches);
