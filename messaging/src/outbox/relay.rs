//! The relay: claims committed outbox rows, publishes them and marks them sent.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::future::join_all;
#[cfg(feature = "postgres")]
use sqlx::postgres::PgListener;
use sqlx::{AssertSqlSafe, Row};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::instrument::WithSubscriber;

#[cfg(feature = "postgres")]
use super::PgOutbox;
#[cfg(feature = "sqlite")]
use super::SqliteOutbox;
use super::{OutboxError, OutboxRow, message_of};
use crate::error::ConfigError;
use crate::publisher::Publisher;

const DEFAULT_BATCH_SIZE: u32 = 100;
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
const DEFAULT_PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_MAX_ATTEMPTS: u32 = 10;
const DEFAULT_MIN_BACKOFF: Duration = Duration::from_millis(500);
const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(300);
const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
const DEFAULT_CLEANUP_INTERVAL: Duration = Duration::from_secs(60);
const CLEANUP_LIMIT: u32 = 10_000;

/// The outbox a [`Relay`] works on: a [`PgOutbox`](super::PgOutbox) (feature `postgres`) or
/// a [`SqliteOutbox`](super::SqliteOutbox) (feature `sqlite`); both convert into it.
#[derive(Debug, Clone)]
pub struct RelayOutbox(Store);

#[derive(Debug, Clone)]
enum Store {
    #[cfg(feature = "postgres")]
    Pg(PgOutbox),
    #[cfg(feature = "sqlite")]
    Sqlite(SqliteOutbox),
}

#[cfg(feature = "postgres")]
impl From<PgOutbox> for RelayOutbox {
    fn from(outbox: PgOutbox) -> Self {
        Self(Store::Pg(outbox))
    }
}

#[cfg(feature = "sqlite")]
impl From<SqliteOutbox> for RelayOutbox {
    fn from(outbox: SqliteOutbox) -> Self {
        Self(Store::Sqlite(outbox))
    }
}

impl RelayOutbox {
    /// The table name.
    pub fn table(&self) -> &str {
        match &self.0 {
            #[cfg(feature = "postgres")]
            Store::Pg(o) => o.table(),
            #[cfg(feature = "sqlite")]
            Store::Sqlite(o) => o.table(),
        }
    }

    async fn purge_sent_older_than(&self, age: Duration, limit: u32) -> Result<u64, OutboxError> {
        match &self.0 {
            #[cfg(feature = "postgres")]
            Store::Pg(o) => o.purge_sent_older_than(age, limit).await,
            #[cfg(feature = "sqlite")]
            Store::Sqlite(o) => o.purge_sent_older_than(age, limit).await,
        }
    }
}

/// Publishes an outbox's committed rows; see the [module docs](super).
///
/// Run it with [`start`](Relay::start) (a background task with `LISTEN`/`NOTIFY` and
/// polling on PostgreSQL, polling and [`SqliteOutbox::wake`](super::SqliteOutbox::wake) on
/// SQLite), or drive it yourself with [`run_once`](Relay::run_once). Any number of relays,
/// in any number of processes, may work on one PostgreSQL outbox; a SQLite outbox takes
/// exactly one relay.
pub struct Relay<P> {
    outbox: RelayOutbox,
    publisher: P,
    config: RelayConfig,
    rng: Mutex<fastrand::Rng>,
}

impl<P> fmt::Debug for Relay<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Relay")
            .field("outbox", &self.outbox)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
struct RelayConfig {
    batch_size: u32,
    poll_interval: Duration,
    publish_timeout: Duration,
    max_attempts: u32,
    min_backoff: Duration,
    max_backoff: Duration,
    retention: Duration,
    cleanup_interval: Duration,
}

/// Builder of [`Relay`].
///
/// # Default
///
/// - batches of up to 100 rows; a poll every second when no `NOTIFY` arrives;
/// - each publish may take 30 s before it counts as failed;
/// - a failed row is retried after 0.5 s, doubling up to 5 min, each wait scaled by a random
///   factor in `[0.5, 1.0)`; after 10 failed attempts it is parked as failed;
/// - sent rows are deleted after 7 days, checked every minute.
#[derive(Debug)]
pub struct RelayBuilder<P> {
    outbox: RelayOutbox,
    publisher: P,
    config: RelayConfig,
    jitter_seed: Option<u64>,
}

impl<P> RelayBuilder<P> {
    /// The most rows one batch claims (and one transaction holds).
    pub const fn batch_size(mut self, n: u32) -> Self {
        self.config.batch_size = n;
        self
    }

    /// How long the relay sleeps when no notification arrives.
    pub const fn poll_interval(mut self, d: Duration) -> Self {
        self.config.poll_interval = d;
        self
    }

    /// How long one publish may take before it counts as failed.
    pub const fn publish_timeout(mut self, d: Duration) -> Self {
        self.config.publish_timeout = d;
        self
    }

    /// How many failed publishes park a row as failed.
    pub const fn max_attempts(mut self, n: u32) -> Self {
        self.config.max_attempts = n;
        self
    }

    /// The wait before the first retry of a failed row, and the most it grows to.
    pub const fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.config.min_backoff = min;
        self.config.max_backoff = max;
        self
    }

    /// How long sent rows are kept.
    pub const fn retention(mut self, d: Duration) -> Self {
        self.config.retention = d;
        self
    }

    /// How often the relay deletes sent rows past retention.
    pub const fn cleanup_interval(mut self, d: Duration) -> Self {
        self.config.cleanup_interval = d;
        self
    }

    /// A seed for the backoff jitter, for reproducible tests.
    pub const fn jitter_seed(mut self, seed: u64) -> Self {
        self.jitter_seed = Some(seed);
        self
    }

    /// The relay.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Zero`] for a zero batch size, attempt count, poll interval, publish
    /// timeout or cleanup interval; [`ConfigError::Exceeds`] when the minimum backoff
    /// exceeds the maximum.
    pub fn build(self) -> Result<Relay<P>, ConfigError> {
        let c = &self.config;
        for (zero, field) in [
            (c.batch_size == 0, "batch_size"),
            (c.max_attempts == 0, "max_attempts"),
            (c.poll_interval.is_zero(), "poll_interval"),
            (c.publish_timeout.is_zero(), "publish_timeout"),
            (c.cleanup_interval.is_zero(), "cleanup_interval"),
        ] {
            if zero {
                return Err(ConfigError::Zero { field });
            }
        }
        if c.min_backoff > c.max_backoff {
            return Err(ConfigError::Exceeds {
                field: "min_backoff",
                limit: "max_backoff",
            });
        }
        let rng = self
            .jitter_seed
            .map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed);
        Ok(Relay {
            outbox: self.outbox,
            publisher: self.publisher,
            config: self.config,
            rng: Mutex::new(rng),
        })
    }
}

/// What one [`Relay::run_once`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct BatchReport {
    /// Rows read for publishing (the heads of their aggregates and the rows after them).
    pub claimed: usize,
    /// Rows published and marked sent.
    pub published: usize,
    /// Rows whose publish failed (they will be retried, or were parked).
    pub failed: usize,
    /// Rows parked as failed by this batch.
    pub parked: usize,
}

/// Totals of a relay task; see [`RelayHandle::shutdown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RelayReport {
    /// Batches run.
    pub batches: u64,
    /// Rows published and marked sent.
    pub published: u64,
    /// Failed publishes.
    pub failed: u64,
    /// Sent rows deleted by retention.
    pub purged: u64,
    /// Whether the batch in progress finished before the shutdown deadline.
    pub drained: bool,
}

#[derive(Debug, Default)]
struct Totals {
    batches: AtomicU64,
    published: AtomicU64,
    failed: AtomicU64,
    purged: AtomicU64,
}

impl Totals {
    fn report(&self, drained: bool) -> RelayReport {
        RelayReport {
            batches: self.batches.load(Ordering::Relaxed),
            published: self.published.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            purged: self.purged.load(Ordering::Relaxed),
            drained,
        }
    }
}

/// A running relay task; see [`Relay::start`].
///
/// Dropping it stops the relay at once, like a zero-deadline shutdown: a batch in progress
/// rolls back and its rows are published again later (at least once).
#[derive(Debug)]
pub struct RelayHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    totals: Arc<Totals>,
}

impl RelayHandle {
    /// The totals so far (`drained` is `false`: only [`shutdown`](Self::shutdown) knows).
    pub fn report(&self) -> RelayReport {
        self.totals.report(false)
    }

    /// Stops claiming new batches, lets the batch in progress finish (its publishes resolve
    /// and its rows are marked) for up to `deadline`, then stops. A batch cut off at the
    /// deadline rolls back: its rows stay unsent and are published again later.
    pub async fn shutdown(mut self, deadline: Duration) -> RelayReport {
        let _ = self.stop.send(true);
        let drained = tokio::time::timeout(deadline, &mut self.task).await.is_ok();
        if !drained {
            self.task.abort();
            let _ = (&mut self.task).await;
        }
        self.totals.report(drained)
    }
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<P> Relay<P> {
    /// A builder of a relay for `outbox` (a [`PgOutbox`](super::PgOutbox) or a
    /// [`SqliteOutbox`](super::SqliteOutbox)) that publishes through `publisher`.
    pub fn builder(outbox: impl Into<RelayOutbox>, publisher: P) -> RelayBuilder<P> {
        RelayBuilder {
            outbox: outbox.into(),
            publisher,
            config: RelayConfig {
                batch_size: DEFAULT_BATCH_SIZE,
                poll_interval: DEFAULT_POLL_INTERVAL,
                publish_timeout: DEFAULT_PUBLISH_TIMEOUT,
                max_attempts: DEFAULT_MAX_ATTEMPTS,
                min_backoff: DEFAULT_MIN_BACKOFF,
                max_backoff: DEFAULT_MAX_BACKOFF,
                retention: DEFAULT_RETENTION,
                cleanup_interval: DEFAULT_CLEANUP_INTERVAL,
            },
            jitter_seed: None,
        }
    }

    /// The outbox.
    pub const fn outbox(&self) -> &RelayOutbox {
        &self.outbox
    }

    fn backoff(&self, attempts: u32) -> Duration {
        let c = &self.config;
        let base = c
            .min_backoff
            .saturating_mul(1 << attempts.saturating_sub(1).min(20))
            .min(c.max_backoff);
        let factor = 0.5
            + self
                .rng
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .f64()
                / 2.0;
        base.mul_f64(factor)
    }
}

/// One aggregate's rows in a batch, in order.
struct Chain {
    rows: Vec<OutboxRow>,
    cut: bool,
}

/// What publishing one chain did.
struct ChainResult {
    sent: Vec<i64>,
    failed: Option<(i64, i32, String)>,
}

/// Splits claimed rows (in `pos, id` order: every aggregate's first row, then its second,
/// and so on) into one chain per aggregate. A chain starts at the head the caller claimed and
/// stops at the first row that is not due (it waits for a retry, or is parked).
fn chains_of<R>(rows: Vec<R>, head_of: &HashMap<String, i64>) -> Result<Vec<Chain>, OutboxError>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i32: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> &'r str: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let mut chains: Vec<Chain> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for row in rows {
        let id: i64 = row.try_get(0)?;
        let aggregate_id: String = row.try_get(1)?;
        let i = *index.entry(aggregate_id.clone()).or_insert_with(|| {
            chains.push(Chain {
                rows: Vec::new(),
                cut: false,
            });
            chains.len() - 1
        });
        let Some(chain) = chains.get_mut(i) else {
            continue;
        };
        let due: bool = row.try_get(8)?;
        let first = chain.rows.is_empty();
        if chain.cut || (first && head_of.get(&aggregate_id) != Some(&id)) || !due {
            chain.cut = true;
            continue;
        }
        let message = message_of(
            id,
            row.try_get(2)?,
            row.try_get(3)?,
            row.try_get(4)?,
            row.try_get::<&str, _>(5)?,
            row.try_get(6)?,
        )?;
        chain.rows.push(OutboxRow {
            id,
            aggregate_id,
            attempts: row.try_get(7)?,
            due,
            message,
        });
    }
    Ok(chains)
}

impl<P: Publisher> Relay<P> {
    /// Claims one batch, publishes it and marks what was confirmed, in one transaction.
    ///
    /// The batch is the first unsent rows (by `id`) that are due and have no earlier unsent
    /// row of their aggregate, locked with `FOR UPDATE SKIP LOCKED` (rows another relay holds
    /// are skipped), plus the due rows that follow them in their aggregates. Different
    /// aggregates publish concurrently, rows of one aggregate one after the other, each
    /// after the previous one's confirm; a failure stops its aggregate for this batch.
    ///
    /// # Errors
    ///
    /// [`OutboxError::Database`] when claiming or marking fails: the transaction rolls back
    /// and its rows stay unsent (rows already published go out again later, with the same
    /// message ID).
    ///
    /// On SQLite (one relay per file) the batch is read without a lock, published, and then
    /// marked in a short write transaction, so the application's writers are not held up
    /// during the publishes.
    pub async fn run_once(&self) -> Result<BatchReport, OutboxError> {
        match &self.outbox.0 {
            #[cfg(feature = "postgres")]
            Store::Pg(outbox) => self.run_once_pg(outbox).await,
            #[cfg(feature = "sqlite")]
            Store::Sqlite(outbox) => self.run_once_sqlite(outbox).await,
        }
    }

    #[cfg(feature = "postgres")]
    async fn run_once_pg(&self, outbox: &PgOutbox) -> Result<BatchReport, OutboxError> {
        let t = &outbox.table;
        let limit = i64::from(self.config.batch_size);
        let mut tx = outbox.pool.begin().await?;
        let heads = sqlx::query(AssertSqlSafe(format!(
            "SELECT o.id, o.aggregate_id FROM {t} o \
             WHERE o.sent_at IS NULL AND o.failed_at IS NULL AND o.next_attempt_at <= now() \
               AND NOT EXISTS (SELECT 1 FROM {t} e WHERE e.aggregate_id = o.aggregate_id \
                               AND e.sent_at IS NULL AND e.id < o.id) \
             ORDER BY o.id LIMIT $1 FOR UPDATE OF o SKIP LOCKED"
        )))
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        if heads.is_empty() {
            tx.commit().await?;
            return Ok(BatchReport::default());
        }
        let mut head_of: HashMap<String, i64> = HashMap::new();
        for row in &heads {
            head_of.insert(row.try_get(1)?, row.try_get(0)?);
        }
        let aggregates: Vec<String> = head_of.keys().cloned().collect();
        // Nobody else can claim these rows: each waits behind its aggregate's head, which
        // this transaction holds. Heads first, then second rows, and so on.
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT id, aggregate_id, routing_key, message_id, content_type, headers::text, \
                    body, attempts, (failed_at IS NULL AND next_attempt_at <= now()) \
             FROM (SELECT *, row_number() OVER (PARTITION BY aggregate_id ORDER BY id) AS pos \
                   FROM {t} WHERE sent_at IS NULL AND aggregate_id = ANY($1)) c \
             ORDER BY pos, id LIMIT $2"
        )))
        .bind(&aggregates)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let chains = chains_of(rows, &head_of)?;
        let claimed = chains.iter().map(|c| c.rows.len()).sum();
        let results = join_all(chains.into_iter().map(|c| self.publish_chain(c.rows))).await;

        let mut report = BatchReport {
            claimed,
            ..BatchReport::default()
        };
        let sent: Vec<i64> = results.iter().flat_map(|r| r.sent.clone()).collect();
        report.published = sent.len();
        if !sent.is_empty() {
            sqlx::query(AssertSqlSafe(format!(
                "UPDATE {t} SET sent_at = now(), attempts = attempts + 1, last_error = NULL \
                 WHERE id = ANY($1)"
            )))
            .bind(&sent)
            .execute(&mut *tx)
            .await?;
        }
        for (id, attempts, error) in results.into_iter().filter_map(|r| r.failed) {
            let (attempts, park) = self.failed(&mut report, id, attempts, &error);
            let attempts_u = u32::try_from(attempts).unwrap_or(u32::MAX);
            sqlx::query(AssertSqlSafe(format!(
                "UPDATE {t} SET attempts = $2, last_error = $3, \
                     next_attempt_at = now() + make_interval(secs => $4), \
                     failed_at = CASE WHEN $5 THEN now() END \
                 WHERE id = $1"
            )))
            .bind(id)
            .bind(attempts)
            .bind(&error)
            .bind(self.backoff(attempts_u).as_secs_f64())
            .bind(park)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        tracing::debug!(
            table = %t,
            claimed = report.claimed,
            published = report.published,
            failed = report.failed,
            "outbox batch"
        );
        Ok(report)
    }

    #[cfg(feature = "sqlite")]
    async fn run_once_sqlite(&self, outbox: &SqliteOutbox) -> Result<BatchReport, OutboxError> {
        use super::sqlite::NOW;
        let t = &outbox.table;
        let limit = i64::from(self.config.batch_size);
        // One relay per file: nobody else claims rows, so a plain read is the claim. First the
        // due heads (an aggregate's first unsent row), so that aggregates held back by a
        // row waiting for a retry, or parked, never fill the batch and starve the others;
        // then each head's chain, heads first, then second rows, and so on.
        let heads = sqlx::query(AssertSqlSafe(format!(
            "SELECT o.id, o.aggregate_id FROM {t} o \
             WHERE o.sent_at IS NULL AND o.failed_at IS NULL AND o.next_attempt_at <= {NOW} \
               AND NOT EXISTS (SELECT 1 FROM {t} e WHERE e.aggregate_id = o.aggregate_id \
                               AND e.sent_at IS NULL AND e.id < o.id) \
             ORDER BY o.id LIMIT ?"
        )))
        .bind(limit)
        .fetch_all(&outbox.pool)
        .await?;
        if heads.is_empty() {
            return Ok(BatchReport::default());
        }
        let mut head_of: HashMap<String, i64> = HashMap::new();
        for row in &heads {
            head_of.insert(row.try_get(1)?, row.try_get(0)?);
        }
        // At most `batch_size` placeholders, one per aggregate.
        let placeholders = vec!["?"; head_of.len()].join(", ");
        let mut query = sqlx::query(AssertSqlSafe(format!(
            "SELECT id, aggregate_id, routing_key, message_id, content_type, headers, body, \
                    attempts, (failed_at IS NULL AND next_attempt_at <= {NOW}) \
             FROM (SELECT *, row_number() OVER (PARTITION BY aggregate_id ORDER BY id) AS pos \
                   FROM {t} WHERE sent_at IS NULL AND aggregate_id IN ({placeholders})) \
             ORDER BY pos, id LIMIT ?"
        )));
        for aggregate in head_of.keys() {
            query = query.bind(aggregate.as_str());
        }
        let rows = query.bind(limit).fetch_all(&outbox.pool).await?;
        let chains = chains_of(rows, &head_of)?;
        let claimed = chains.iter().map(|c| c.rows.len()).sum();
        if claimed == 0 {
            return Ok(BatchReport::default());
        }
        let results = join_all(chains.into_iter().map(|c| self.publish_chain(c.rows))).await;
        let mut report = BatchReport {
            claimed,
            ..BatchReport::default()
        };
        // Marked only now that the publishes resolved, in one short write transaction.
        let mut tx = outbox.pool.begin().await?;
        for id in results.iter().flat_map(|r| r.sent.iter().copied()) {
            sqlx::query(AssertSqlSafe(format!(
                "UPDATE {t} SET sent_at = {NOW}, attempts = attempts + 1, last_error = NULL \
                 WHERE id = ?"
            )))
            .bind(id)
            .execute(&mut *tx)
            .await?;
            report.published += 1;
        }
        for (id, attempts, error) in results.into_iter().filter_map(|r| r.failed) {
            let (attempts, park) = self.failed(&mut report, id, attempts, &error);
            sqlx::query(AssertSqlSafe(format!(
                "UPDATE {t} SET attempts = ?2, last_error = ?3, next_attempt_at = {NOW} + ?4, \
                     failed_at = CASE WHEN ?5 THEN {NOW} END \
                 WHERE id = ?1"
            )))
            .bind(id)
            .bind(attempts)
            .bind(&error)
            .bind(
                self.backoff(u32::try_from(attempts).unwrap_or(u32::MAX))
                    .as_secs_f64(),
            )
            .bind(park)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        tracing::debug!(
            table = %t,
            claimed = report.claimed,
            published = report.published,
            failed = report.failed,
            "outbox batch"
        );
        Ok(report)
    }

    /// Counts and logs a failed publish; returns the new attempt count and whether the row
    /// is parked.
    fn failed(&self, report: &mut BatchReport, id: i64, attempts: i32, error: &str) -> (i32, bool) {
        let attempts = attempts.saturating_add(1);
        let park = u32::try_from(attempts).unwrap_or(u32::MAX) >= self.config.max_attempts;
        report.failed += 1;
        if park {
            report.parked += 1;
            tracing::error!(id, attempts, %error, "outbox row parked after its last attempt");
        } else {
            tracing::warn!(id, attempts, %error, "outbox publish failed; will retry");
        }
        (attempts, park)
    }

    /// Publishes one aggregate's rows in order, each after the previous one resolved; stops
    /// at the first failure.
    async fn publish_chain(&self, rows: Vec<OutboxRow>) -> ChainResult {
        let mut result = ChainResult {
            sent: Vec::new(),
            failed: None,
        };
        for row in rows {
            debug_assert!(row.due, "only due rows are published");
            let outcome = tokio::time::timeout(
                self.config.publish_timeout,
                self.publisher.publish(row.message),
            )
            .await;
            match outcome {
                Ok(Ok(())) => result.sent.push(row.id),
                Ok(Err(e)) => {
                    result.failed = Some((row.id, row.attempts, e.to_string()));
                    break;
                }
                Err(_) => {
                    result.failed = Some((row.id, row.attempts, "publish timed out".to_owned()));
                    break;
                }
            }
            tracing::trace!(id = row.id, aggregate = %row.aggregate_id, "outbox row published");
        }
        result
    }
}

impl<P: Publisher + 'static> Relay<P> {
    /// Runs the relay on a background task until [`RelayHandle::shutdown`]: a batch, again
    /// at once while batches come back full, else a wait for a `NOTIFY` on the outbox's
    /// channel or the poll interval, whichever comes first; sent rows past retention are
    /// deleted every cleanup interval. Errors are logged and retried after the poll interval.
    pub fn start(self) -> RelayHandle {
        let (stop, stop_rx) = watch::channel(false);
        let totals = Arc::new(Totals::default());
        // The task keeps the `tracing` subscriber of the code that started it.
        let task = tokio::spawn(self.run(stop_rx, totals.clone()).with_current_subscriber());
        RelayHandle { stop, task, totals }
    }

    #[cfg(feature = "postgres")]
    async fn listen(&self) -> Option<PgListener> {
        #[cfg_attr(
            not(feature = "sqlite"),
            allow(irrefutable_let_patterns, reason = "PostgreSQL is the only store")
        )]
        let Store::Pg(outbox) = &self.outbox.0 else {
            return None;
        };
        let mut listener = match PgListener::connect_with(&outbox.pool).await {
            Ok(l) => l,
            Err(error) => {
                tracing::warn!(%error, "outbox relay cannot listen; polling only for now");
                return None;
            }
        };
        match listener.listen(&outbox.channel).await {
            Ok(()) => Some(listener),
            Err(error) => {
                tracing::warn!(%error, "outbox relay cannot listen; polling only for now");
                None
            }
        }
    }

    async fn run(self, mut stop: watch::Receiver<bool>, totals: Arc<Totals>) {
        #[cfg(feature = "postgres")]
        let mut listener = self.listen().await;
        let mut next_cleanup = Instant::now();
        loop {
            if *stop.borrow_and_update() {
                break;
            }
            let mut full = false;
            match self.run_once().await {
                Ok(batch) => {
                    totals.batches.fetch_add(1, Ordering::Relaxed);
                    totals
                        .published
                        .fetch_add(batch.published as u64, Ordering::Relaxed);
                    totals
                        .failed
                        .fetch_add(batch.failed as u64, Ordering::Relaxed);
                    // A full batch with no failure means more rows may be waiting.
                    full = batch.claimed >= self.config.batch_size as usize && batch.failed == 0;
                }
                Err(error) => tracing::warn!(%error, "outbox batch failed; retrying"),
            }
            if Instant::now() >= next_cleanup {
                next_cleanup = Instant::now() + self.config.cleanup_interval;
                match self
                    .outbox
                    .purge_sent_older_than(self.config.retention, CLEANUP_LIMIT)
                    .await
                {
                    Ok(n) => {
                        totals.purged.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(error) => tracing::warn!(%error, "outbox retention cleanup failed"),
                }
            }
            if full {
                continue;
            }
            let poll = self.config.poll_interval;
            #[cfg(feature = "postgres")]
            if listener.is_none() {
                listener = self.listen().await;
            }
            let notified = async {
                match &self.outbox.0 {
                    #[cfg(feature = "postgres")]
                    Store::Pg(_) => match listener.as_mut() {
                        Some(l) => {
                            if let Err(error) = l.recv().await {
                                tracing::debug!(%error, "outbox listener error; polling");
                                tokio::time::sleep(poll).await;
                            }
                        }
                        None => std::future::pending().await,
                    },
                    #[cfg(feature = "sqlite")]
                    Store::Sqlite(outbox) => outbox.wake.notified().await,
                }
            };
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep(poll) => {}
                _ = stop.changed() => break,
            }
        }
        tracing::debug!(table = %self.outbox.table(), "outbox relay stopped");
    }
}
