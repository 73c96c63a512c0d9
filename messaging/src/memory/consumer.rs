//! One consumer: runner tasks that take messages from the broker in batches and run their
//! handlers side by side, or, with ordered lanes, a dispatcher feeding one sequential task
//! per lane.
//!
//! Free-running handlers are driven by a few runner tasks, one per runtime worker thread at
//! most, each polling up to its share of `concurrency` handler futures at once. A runner
//! takes as many messages as it has free slots (and the prefetch allows) under one lock, and
//! settles every handler that finished in one poll under one lock. This costs no task, no
//! semaphore permit and no cross-thread wake-up per message, and no copy of the message.

use std::collections::hash_map::DefaultHasher;
use std::future::{Future, poll_fn};
use std::hash::{Hash, Hasher};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::instrument::WithSubscriber;

use super::broker::{Inner, Stored};
use crate::subscriber::process::{Settlement, process};
use crate::subscriber::{Handler, ShutdownReport, SubscriptionConfig};

pub(super) struct Ctx<H> {
    pub(super) broker: Arc<Inner>,
    pub(super) handler: H,
    pub(super) config: SubscriptionConfig,
    pub(super) queue: Arc<str>,
    pub(super) consumer: u64,
    /// Wakes one runner (`notify_one`) when a message or room for one may be there, or all
    /// of them (`notify_waiters`) when they must look again: a connection dropped, a retry
    /// came due earlier.
    pub(super) notify: Arc<Notify>,
    /// Set at shutdown: lane tasks skip the messages they have not started (the runners
    /// watch the stop channel instead).
    pub(super) stopping: AtomicBool,
    /// Bounds the handlers of all ordered lanes together.
    pub(super) permits: Semaphore,
}

impl<H: Handler> Ctx<H> {
    /// Runs the failure policy on one message; the settlement is the caller's to carry out.
    /// `queue` is the queue name the deliveries carry.
    async fn handle(&self, queue: &Arc<str>, tag: u64, stored: Stored) -> (u64, Settlement) {
        let settlement = process(
            &self.broker.telemetry,
            &self.handler,
            &self.config,
            queue,
            stored.message,
            stored.redelivery_count,
        )
        .await;
        (tag, settlement)
    }

    /// Carries out `settled`, emptying it, and drops the settled messages after the broker's
    /// lock is released.
    fn settle(&self, settled: &mut Vec<(u64, Settlement)>, released: &mut Vec<Stored>) {
        if !settled.is_empty() {
            self.broker.settle(self.consumer, settled, released);
            released.clear();
        }
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

/// Whether the subscription asked to stop (or was dropped).
fn stop_requested(stop: &mut watch::Receiver<Option<Duration>>) -> bool {
    stop.borrow_and_update().is_some() || stop.has_changed().is_err()
}

/// Sleeps until `due`, or forever.
async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Polls `running` once, starting the handlers just pushed, and moves the outputs of those
/// that finished to `out`.
async fn collect<F: Future>(running: &mut FuturesUnordered<F>, out: &mut Vec<F::Output>) {
    poll_fn(|cx| {
        while let Poll::Ready(Some(done)) = running.poll_next_unpin(cx) {
            out.push(done);
        }
        Poll::Ready(())
    })
    .await;
}

/// How many messages a runner handles at most before it lets the other tasks of its worker
/// thread run.
const YIELD_EVERY: usize = 1024;

/// How many runners share `concurrency`: no more than the runtime has worker threads, and
/// no more than the prefetch can keep busy.
fn runner_count(concurrency: usize, prefetch: usize) -> usize {
    let workers = tokio::runtime::Handle::try_current().map_or(1, |h| h.metrics().num_workers());
    workers.min(concurrency).min(prefetch).max(1)
}

/// Runs up to `share` handlers at a time, taking messages in batches as slots free up, until
/// the subscription stops; then lets the running handlers finish (the caller bounds that by
/// the shutdown deadline).
async fn runner<H: Handler>(
    ctx: Arc<Ctx<H>>,
    share: usize,
    peers: bool,
    mut stop: watch::Receiver<Option<Duration>>,
) {
    let ctx = &*ctx;
    // A copy of its own: every delivery clones the name, and a reference count shared by
    // the runners would bounce between their threads on every message.
    let queue: Arc<str> = Arc::from(&*ctx.queue);
    let queue = &queue;
    let mut running = FuturesUnordered::new();
    let mut taken = Vec::new();
    let mut settled = Vec::new();
    let mut released = Vec::new();
    let mut since_yield = 0;
    while !stop_requested(&mut stop) {
        if since_yield >= YIELD_EVERY {
            // Handlers that finish at once never return `Pending`: without this, a long
            // queue would keep the worker thread from its other tasks and timers.
            since_yield = 0;
            tokio::task::yield_now().await;
        }
        // Registered before looking, so that a message or a settlement arriving after the
        // look wakes this runner.
        let mut notified = pin!(ctx.notify.notified());
        let free = share.saturating_sub(running.len());
        // `Some(next due retry)` when the broker had fewer messages than free slots.
        let mut starved = None;
        if free > 0 {
            let got = ctx.broker.take(ctx.consumer, free, &mut taken);
            for (tag, stored) in taken.drain(..) {
                running.push(ctx.handle(queue, tag, stored));
            }
            if got.count < free {
                starved = Some(got.next_due);
            } else if got.more && peers {
                // Full, with work left: hand the wake-up on to another runner.
                ctx.notify.notify_one();
            }
        }
        collect(&mut running, &mut settled).await;
        if !settled.is_empty() {
            since_yield += settled.len();
            ctx.settle(&mut settled, &mut released);
            continue;
        }
        tokio::select! {
            biased;
            _ = stop.changed() => {}
            Some(done) = running.next(), if !running.is_empty() => {
                settled.push(done);
                collect(&mut running, &mut settled).await;
                since_yield += settled.len();
                ctx.settle(&mut settled, &mut released);
            }
            () = &mut notified, if starved.is_some() => {}
            () = sleep_until(starved.flatten()), if starved.is_some() => {}
        }
    }
    while let Some(done) = running.next().await {
        settled.push(done);
        collect(&mut running, &mut settled).await;
        ctx.settle(&mut settled, &mut released);
    }
}

/// Ordered lanes: takes every message the prefetch allows and hands it to its lane, until
/// the subscription stops.
async fn dispatch<H: Handler>(
    ctx: Arc<Ctx<H>>,
    lanes: Vec<mpsc::UnboundedSender<(u64, Stored)>>,
    mut stop: watch::Receiver<Option<Duration>>,
) {
    let mut taken = Vec::new();
    while !stop_requested(&mut stop) {
        let notified = ctx.notify.notified();
        let got = ctx.broker.take(ctx.consumer, usize::MAX, &mut taken);
        for (tag, stored) in taken.drain(..) {
            let lane = lane_of(&stored, lanes.len());
            // The receiver lives until the lane's task ends, after this; a failed send
            // leaves the message unacked, and shutdown requeues it.
            let _ = lanes[lane].send((tag, stored));
        }
        tokio::select! {
            _ = stop.changed() => {}
            () = notified => {}
            () = sleep_until(got.next_due) => {}
        }
    }
}

/// One ordered lane: its messages one after the other, within the shared concurrency.
async fn lane<H: Handler>(ctx: Arc<Ctx<H>>, mut rx: mpsc::UnboundedReceiver<(u64, Stored)>) {
    let mut settled = Vec::with_capacity(1);
    let mut released = Vec::with_capacity(1);
    while let Some((tag, stored)) = rx.recv().await {
        if ctx.stopping.load(Ordering::Acquire) {
            continue;
        }
        let Ok(_permit) = ctx.permits.acquire().await else {
            continue;
        };
        if ctx.stopping.load(Ordering::Acquire) {
            continue;
        }
        settled.push(ctx.handle(&ctx.queue, tag, stored).await);
        ctx.settle(&mut settled, &mut released);
    }
}

pub(super) async fn run<H: Handler>(
    ctx: Arc<Ctx<H>>,
    mut stop: watch::Receiver<Option<Duration>>,
) -> ShutdownReport {
    let mut tasks = JoinSet::new();
    let concurrency = ctx.config.concurrency();
    if let Some(n) = ctx.config.ordered_lanes() {
        let mut lanes = Vec::with_capacity(n.get());
        for _ in 0..n.get() {
            // Unbounded, but never holds more than `prefetch` messages in all.
            let (tx, rx) = mpsc::unbounded_channel();
            lanes.push(tx);
            tasks.spawn(lane(ctx.clone(), rx).with_current_subscriber());
        }
        tasks.spawn(dispatch(ctx.clone(), lanes, stop.clone()).with_current_subscriber());
    } else {
        let runners = runner_count(concurrency, usize::from(ctx.config.prefetch()));
        for i in 0..runners {
            let share = concurrency / runners + usize::from(i < concurrency % runners);
            let runner = runner(ctx.clone(), share, runners > 1, stop.clone());
            tasks.spawn(runner.with_current_subscriber());
        }
    }
    let deadline = loop {
        if let Some(d) = *stop.borrow_and_update() {
            break d;
        }
        if stop.changed().await.is_err() {
            // The subscription handle was dropped without a shutdown.
            break Duration::ZERO;
        }
    };
    ctx.stopping.store(true, Ordering::Release);
    ctx.broker.cancel_consumer(ctx.consumer);
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
