//! One consumer: a dispatcher that takes messages within the prefetch, and handler tasks
//! (free-running or one sequential lane per aggregate-ID hash) bounded by a semaphore.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tracing::instrument::WithSubscriber;

use super::broker::{Inner, Stored, Take};
use crate::subscriber::process::process;
use crate::subscriber::{Handler, ShutdownReport, SubscriptionConfig};

pub(super) struct Ctx<H> {
    pub(super) broker: Arc<Inner>,
    pub(super) handler: H,
    pub(super) config: SubscriptionConfig,
    pub(super) queue: String,
    pub(super) consumer: u64,
    pub(super) stopping: AtomicBool,
    pub(super) permits: Arc<Semaphore>,
}

impl<H: Handler> Ctx<H> {
    async fn run_one(&self, tag: u64, stored: Stored) {
        let settlement = process(
            &self.broker.telemetry,
            &self.handler,
            &self.config,
            &self.queue,
            stored.message,
            stored.redelivery_count,
        )
        .await;
        self.broker.settle(self.consumer, tag, settlement);
    }
}

fn lane_of(stored: &Stored, lanes: usize) -> usize {
    let mut h = DefaultHasher::new();
    stored
        .message
        .aggregate_id()
        .unwrap_or(stored.message.message_id())
        .hash(&mut h);
    // The modulo keeps the value below `lanes`, which is a usize.
    usize::try_from(h.finish() % lanes as u64).unwrap_or(0)
}

pub(super) async fn run<H: Handler>(
    ctx: Arc<Ctx<H>>,
    notify: Arc<Notify>,
    mut stop: watch::Receiver<Option<Duration>>,
) -> ShutdownReport {
    let mut tasks = JoinSet::new();
    let mut lanes = Vec::new();
    for _ in 0..ctx.config.ordered_lanes().map_or(0, |n| n.get()) {
        // Unbounded, but never holds more than `prefetch` messages in all.
        let (tx, mut rx) = mpsc::unbounded_channel::<(u64, Stored)>();
        lanes.push(tx);
        let ctx = ctx.clone();
        tasks.spawn(
            async move {
                while let Some((tag, stored)) = rx.recv().await {
                    if ctx.stopping.load(Ordering::Acquire) {
                        continue;
                    }
                    let Ok(_permit) = ctx.permits.clone().acquire_owned().await else {
                        continue;
                    };
                    if ctx.stopping.load(Ordering::Acquire) {
                        continue;
                    }
                    ctx.run_one(tag, stored).await;
                }
            }
            .with_current_subscriber(),
        );
    }
    let deadline = loop {
        if let Some(d) = *stop.borrow_and_update() {
            break d;
        }
        while tasks.try_join_next().is_some() {}
        let notified = notify.notified();
        match ctx.broker.take(ctx.consumer) {
            Take::Message { tag, stored } => {
                if lanes.is_empty() {
                    let ctx = ctx.clone();
                    tasks.spawn(
                        async move {
                            let Ok(_permit) = ctx.permits.clone().acquire_owned().await else {
                                return;
                            };
                            if !ctx.stopping.load(Ordering::Acquire) {
                                ctx.run_one(tag, stored).await;
                            }
                        }
                        .with_current_subscriber(),
                    );
                } else {
                    let lane = lane_of(&stored, lanes.len());
                    // The receiver lives as long as `tasks`; a failed send leaves the message
                    // unacked, and shutdown requeues it.
                    let _ = lanes[lane].send((tag, stored));
                }
            }
            Take::Wait(due) => {
                let sleep = async {
                    match due {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    () = notified => {}
                    () = sleep => {}
                    changed = stop.changed() => {
                        if changed.is_err() {
                            // The subscription handle was dropped without a shutdown.
                            break Duration::ZERO;
                        }
                    }
                }
            }
        }
    };
    ctx.stopping.store(true, Ordering::Release);
    ctx.broker.cancel_consumer(ctx.consumer);
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
    let requeued = ctx.broker.remove_consumer(ctx.consumer);
    tracing::debug!(queue = %ctx.queue, drained, requeued, "consumer stopped");
    ShutdownReport { drained, requeued }
}
