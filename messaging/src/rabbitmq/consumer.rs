//! One consumer of a subscription queue: a dispatcher reading the lapin consumer stream,
//! handler tasks bounded by a semaphore (free-running or one sequential lane per aggregate-ID
//! hash), settlement on the receiving channel, and reconnection when the consume connection
//! drops.

use std::collections::hash_map::DefaultHasher;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions,
};
use lapin::types::FieldTable;
use lapin::{Acker, Channel, Consumer};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tracing::instrument::WithSubscriber;

use super::{Inner, close, topology, wire};
use crate::dead_letter::headers as dl;
use crate::envelope::Message;
use crate::subscriber::process::{Settlement, process};
use crate::subscriber::{Handler, ShutdownReport, SubscribeError, SubscriptionConfig};

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long a handler slot waits before requeueing a message it could not forward.
const FORWARD_FAILURE_PAUSE: Duration = Duration::from_secs(1);
/// The longest an ack or reject may take. On a channel whose connection died with the
/// broker (a restart), lapin may never resolve it; the broker redelivers the message then,
/// so giving up is safe, and it keeps shutdown from waiting for it.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

struct Ctx<H> {
    broker: Arc<Inner>,
    /// How the subscriber declares the queue (again, after a reconnection).
    queues: topology::Queues,
    handler: H,
    config: SubscriptionConfig,
    queue: Arc<str>,
    tag: String,
    permits: Arc<Semaphore>,
    stopping: AtomicBool,
    unsettled: AtomicUsize,
}

/// A delivery to handle: its message, how often the broker redelivered it, and what
/// settles it (the rest of the lapin delivery is dropped on receipt).
struct Job {
    acker: Acker,
    redelivery_count: u32,
    message: Message,
}

impl Job {
    fn new(mut delivery: Delivery) -> Self {
        Self {
            redelivery_count: wire::redelivery_count(&delivery),
            message: wire::take_message(&mut delivery),
            acker: delivery.acker,
        }
    }
}

impl<H: Handler> Ctx<H> {
    /// Runs the failure policy and carries out its settlement; acks only once a retry or
    /// dead letter is confirmed, and rejects with requeue when that publish fails.
    async fn run_one(&self, job: Job) {
        let settlement = process(
            &self.broker.telemetry,
            &self.handler,
            &self.config,
            &self.queue,
            Arc::new(job.message),
            job.redelivery_count,
        )
        .await;
        let forwarded = match settlement {
            Settlement::Ack => Ok(()),
            Settlement::Retry { delay, message } => {
                match self.broker.retry_queue(&self.config, delay).await {
                    Ok(retry) => {
                        let deadline = self.broker.publish_deadline;
                        self.broker.publish_to("", &retry, &message, deadline).await
                    }
                    Err(e) => {
                        tracing::warn!(queue = %self.queue, error = %e, "cannot declare retry queue");
                        Err(crate::publisher::PublishError::ConnectionLost)
                    }
                }
            }
            Settlement::DeadLetter { mut message } => {
                message.headers_mut().insert(
                    dl::ORIGINAL_EXCHANGE.to_owned(),
                    self.broker.exchange.clone(),
                );
                let dlq = self.config.dead_letter_queue();
                let deadline = self.broker.publish_deadline;
                self.broker.publish_to("", &dlq, &message, deadline).await
            }
        };
        let settle = match forwarded {
            Ok(()) => {
                tokio::time::timeout(SETTLE_TIMEOUT, job.acker.ack(BasicAckOptions::default()))
                    .await
            }
            Err(e) => {
                tracing::warn!(queue = %self.queue, error = %e, "cannot forward; requeueing");
                // A pause, so that a broker that keeps refusing the forward (a retry queue
                // with other arguments, say) does not turn the requeue into a hot loop.
                tokio::time::sleep(FORWARD_FAILURE_PAUSE).await;
                tokio::time::timeout(
                    SETTLE_TIMEOUT,
                    job.acker.reject(BasicRejectOptions { requeue: true }),
                )
                .await
            }
        };
        match settle {
            Ok(Ok(_)) => {}
            // The channel is gone; the broker redelivers the message.
            Ok(Err(e)) => {
                tracing::debug!(queue = %self.queue, error = %e, "stale settlement ignored");
            }
            Err(_) => {
                tracing::warn!(queue = %self.queue, "settlement not answered; the broker redelivers");
            }
        }
        self.unsettled.fetch_sub(1, Ordering::AcqRel);
    }

    async fn guarded(self: Arc<Self>, job: Job) {
        if self.stopping.load(Ordering::Acquire) {
            return;
        }
        let Ok(_permit) = self.permits.clone().acquire_owned().await else {
            return;
        };
        if !self.stopping.load(Ordering::Acquire) {
            self.run_one(job).await;
        }
    }
}

/// Opens a channel on the consume connection, applies `basic.qos` and starts consuming.
async fn open<H>(ctx: &Ctx<H>, declare: bool) -> Result<(Channel, Consumer), SubscribeError> {
    let channel = ctx
        .broker
        .consume_channel()
        .await
        .map_err(|_| SubscribeError::Connection)?;
    if declare {
        topology::declare(&channel, &ctx.broker.exchange, &ctx.config, ctx.queues).await?;
    }
    channel
        .basic_qos(ctx.config.prefetch(), BasicQosOptions::default())
        .await
        .map_err(|_| SubscribeError::Connection)?;
    let consumer = channel
        .basic_consume(
            (*ctx.queue).into(),
            ctx.tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|_| SubscribeError::Connection)?;
    Ok((channel, consumer))
}

fn lane_of(message: &Message, lanes: usize) -> usize {
    let mut h = DefaultHasher::new();
    message
        .aggregate_id()
        .unwrap_or(message.message_id())
        .hash(&mut h);
    // The modulo keeps the value below `lanes`, which is a usize.
    usize::try_from(h.finish() % lanes as u64).unwrap_or(0)
}

/// Starts consuming `config`'s queue (declared already); the returned future runs the
/// consumer until the subscription stops.
pub(super) async fn start<H: Handler>(
    broker: Arc<Inner>,
    queues: topology::Queues,
    config: SubscriptionConfig,
    handler: H,
    stop: watch::Receiver<Option<Duration>>,
) -> Result<impl Future<Output = ShutdownReport> + Send + 'static, SubscribeError> {
    let queue: Arc<str> = config.queue().into();
    let ctx = Arc::new(Ctx {
        tag: format!("{}-{}", broker.app_id, uuid::Uuid::now_v7().simple()),
        permits: Arc::new(Semaphore::new(config.concurrency())),
        broker,
        queues,
        handler,
        config,
        queue,
        stopping: AtomicBool::new(false),
        unsettled: AtomicUsize::new(0),
    });
    let (channel, consumer) = open(&ctx, false).await?;
    Ok(run(ctx, channel, consumer, stop))
}

/// Resolves to the shutdown deadline once the subscription stops.
async fn stopped(stop: &mut watch::Receiver<Option<Duration>>) -> Duration {
    loop {
        if let Some(d) = *stop.borrow_and_update() {
            return d;
        }
        if stop.changed().await.is_err() {
            // The subscription handle was dropped without a shutdown.
            return Duration::ZERO;
        }
    }
}

async fn run<H: Handler>(
    ctx: Arc<Ctx<H>>,
    mut channel: Channel,
    mut consumer: Consumer,
    mut stop: watch::Receiver<Option<Duration>>,
) -> ShutdownReport {
    let mut tasks = JoinSet::new();
    let mut lanes = Vec::new();
    for _ in 0..ctx.config.ordered_lanes().map_or(0, |n| n.get()) {
        // Unbounded, but never holds more than `prefetch` messages in all.
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        lanes.push(tx);
        let ctx = ctx.clone();
        tasks.spawn(
            async move {
                while let Some(job) = rx.recv().await {
                    ctx.clone().guarded(job).await;
                }
            }
            .with_current_subscriber(),
        );
    }
    let mut rng = fastrand::Rng::new();
    let mut backoff = MIN_BACKOFF;
    let deadline = 'outer: loop {
        loop {
            while tasks.try_join_next().is_some() {}
            tokio::select! {
                s = stopped(&mut stop) => break 'outer s,
                next = consumer.next() => match next {
                    Some(Ok(delivery)) => {
                        backoff = MIN_BACKOFF;
                        ctx.unsettled.fetch_add(1, Ordering::AcqRel);
                        let job = Job::new(delivery);
                        if lanes.is_empty() {
                            tasks.spawn(ctx.clone().guarded(job).with_current_subscriber());
                        } else {
                            let lane = lane_of(&job.message, lanes.len());
                            // The receiver lives as long as `tasks`; a failed send leaves the
                            // message unacked, and closing the channel requeues it.
                            let _ = lanes[lane].send(job);
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(queue = %ctx.queue, error = %e, "consumer failed; reconnecting");
                        break;
                    }
                    None => {
                        tracing::warn!(queue = %ctx.queue, "consumer ended; reconnecting");
                        break;
                    }
                },
            }
        }
        loop {
            let wait = backoff.mul_f64(0.5 + rng.f64() / 2.0);
            tokio::select! {
                s = stopped(&mut stop) => break 'outer s,
                () = tokio::time::sleep(wait) => {}
            }
            match open(&ctx, true).await {
                Ok((c, k)) => {
                    (channel, consumer) = (c, k);
                    tracing::info!(queue = %ctx.queue, "consumer restarted");
                    ctx.broker.telemetry.counters.reconnected();
                    break;
                }
                Err(e) => {
                    tracing::warn!(queue = %ctx.queue, error = %e, "reconnect failed");
                    backoff = backoff.saturating_mul(2).min(MAX_BACKOFF);
                }
            }
        }
    };
    ctx.stopping.store(true, Ordering::Release);
    let _ = channel
        .basic_cancel(consumer.tag(), BasicCancelOptions::default())
        .await;
    drop(lanes);
    let drained = tokio::time::timeout(deadline, async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .is_ok();
    if !drained {
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    let requeued = ctx.unsettled.load(Ordering::Acquire);
    // Closing the channel returns every unsettled message to the queue, marked redelivered.
    close(&channel).await;
    tracing::debug!(queue = %ctx.queue, drained, requeued, "consumer stopped");
    ShutdownReport { drained, requeued }
}
