//! The outbox table in SQLite (feature `sqlite`).

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sqlx::{AssertSqlSafe, Row, SqliteConnection, SqlitePool};
use tokio::sync::Notify;

use super::{DEFAULT_SOURCE, DEFAULT_TABLE, OutboxError, OutboxStats};
use crate::envelope::{Event, Message};
use crate::error::ConfigError;

pub(super) const SCHEMA: &str = include_str!("schema_sqlite.sql");
/// The current time as Unix seconds, in SQL.
pub(super) const NOW: &str = "((julianday('now') - 2440587.5) * 86400.0)";

/// The outbox table in a SQLite database: the embedded counterpart of
/// [`PgOutbox`](super::PgOutbox), with the same [`Relay`](super::Relay).
///
/// SQLite has one writer at a time, so ids are commit order and per-aggregate order needs no
/// lock. It has neither `SKIP LOCKED` nor `LISTEN`/`NOTIFY`: run **one relay per database
/// file**; it polls, and [`wake`](Self::wake) (call it after the commit) wakes it at once in
/// the same process.
///
/// # Clone
///
/// Clones share the pool and the wake-up.
#[derive(Debug, Clone)]
pub struct SqliteOutbox {
    pub(super) pool: SqlitePool,
    pub(super) table: String,
    source: String,
    pub(super) wake: Arc<Notify>,
}

/// Builder of [`SqliteOutbox`].
///
/// # Default
///
/// Table `sinew_outbox`, CloudEvents source `sinew`.
#[derive(Debug, Clone)]
pub struct SqliteOutboxBuilder {
    pool: SqlitePool,
    table: String,
    source: String,
}

impl SqliteOutboxBuilder {
    /// The table (`[A-Za-z_][A-Za-z0-9_]*`, at most 63 bytes).
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// The producer's name: the `cloudEvents_source` of events enqueued with
    /// [`SqliteOutbox::enqueue`].
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }

    /// The outbox.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidIdentifier`] for a table that is not a plain identifier;
    /// [`ConfigError::Missing`] for an empty source.
    pub fn build(self) -> Result<SqliteOutbox, ConfigError> {
        if !super::is_identifier(&self.table) || self.table.contains('.') {
            return Err(ConfigError::InvalidIdentifier { field: "table" });
        }
        if self.source.is_empty() {
            return Err(ConfigError::Missing { field: "source" });
        }
        Ok(SqliteOutbox {
            pool: self.pool,
            table: self.table,
            source: self.source,
            wake: Arc::default(),
        })
    }
}

impl SqliteOutbox {
    /// An outbox with the [default settings](SqliteOutboxBuilder#default).
    pub fn new(pool: SqlitePool) -> Self {
        Self {
            pool,
            table: DEFAULT_TABLE.to_owned(),
            source: DEFAULT_SOURCE.to_owned(),
            wake: Arc::default(),
        }
    }

    /// A builder.
    pub fn builder(pool: SqlitePool) -> SqliteOutboxBuilder {
        SqliteOutboxBuilder {
            pool,
            table: DEFAULT_TABLE.to_owned(),
            source: DEFAULT_SOURCE.to_owned(),
        }
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The pool.
    pub const fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The statements that create the table and its indexes (idempotent: `IF NOT EXISTS`).
    /// The crate ships them for the default table name as
    /// `migrations/sqlite/0001_sinew_outbox.sql`.
    pub fn ddl(&self) -> String {
        SCHEMA.replace("{table}", &self.table)
    }

    /// Runs [`ddl`](Self::ddl) in one transaction.
    ///
    /// # Errors
    ///
    /// [`OutboxError::Database`] when the statements fail.
    pub async fn migrate(&self) -> Result<(), OutboxError> {
        let mut tx = self.pool.begin().await?;
        sqlx::raw_sql(AssertSqlSafe(self.ddl()))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Writes `event` to the outbox on `conn`, the caller's open transaction (`&mut tx`):
    /// it is published once the transaction commits, and never if it rolls back. Returns the
    /// row ID. Call [`wake`](Self::wake) after the commit for an immediate publish; otherwise
    /// the relay finds the row at its next poll.
    ///
    /// With the `opentelemetry` feature, the current span's context is stored as its
    /// `traceparent` unless the event carries one.
    ///
    /// # Errors
    ///
    /// [`OutboxError::Encode`] when the payload does not serialize (nothing is written);
    /// [`OutboxError::Database`] when the insert fails: roll the transaction back.
    pub async fn enqueue<T: Serialize>(
        &self,
        conn: &mut SqliteConnection,
        event: &Event<T>,
    ) -> Result<i64, OutboxError> {
        let message = event.to_message(&self.source)?;
        self.enqueue_message(conn, &message).await
    }

    /// Writes a prepared message to the outbox on `conn` (see [`enqueue`](Self::enqueue)).
    /// Its aggregate, for ordering, is [`Message::aggregate_id`], or its message ID when it
    /// has none.
    ///
    /// # Errors
    ///
    /// [`OutboxError::Database`] when the insert fails.
    pub async fn enqueue_message(
        &self,
        conn: &mut SqliteConnection,
        message: &Message,
    ) -> Result<i64, OutboxError> {
        let headers = super::row_headers(message);
        let aggregate = message.aggregate_id().unwrap_or(message.message_id());
        let id: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "INSERT INTO {} (aggregate_id, routing_key, message_id, content_type, headers, body) \
             VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
            self.table
        )))
        .bind(aggregate)
        .bind(message.routing_key())
        .bind(message.message_id())
        .bind(message.content_type())
        .bind(headers)
        .bind(message.body().as_ref())
        .fetch_one(conn)
        .await?;
        Ok(id)
    }

    /// Wakes the relay of this outbox in this process (call it after committing enqueued
    /// rows). Without it the relay publishes them at its next poll.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// How many rows are pending, parked as failed, and sent.
    ///
    /// # Errors
    ///
    /// [`OutboxError::Database`] when the query fails.
    pub async fn stats(&self) -> Result<OutboxStats, OutboxError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT coalesce(sum(sent_at IS NULL AND failed_at IS NULL), 0), \
                    coalesce(sum(sent_at IS NULL AND failed_at IS NOT NULL), 0), \
                    coalesce(sum(sent_at IS NOT NULL), 0) FROM {}",
            self.table
        )))
        .fetch_one(&self.pool)
        .await?;
        let n = |i: usize| -> Result<u64, sqlx::Error> {
            Ok(u64::try_from(row.try_get::<i64, _>(i)?).unwrap_or(0))
        };
        Ok(OutboxStats {
            pending: n(0)?,
            failed: n(1)?,
            sent: n(2)?,
        })
    }

    /// Un-parks every failed row, with a fresh set of attempts, and wakes the relay. Returns
    /// how many rows it un-parked.
    ///
    /// # Errors
    ///
    /// [`OutboxError::Database`] when the statement fails.
    pub async fn retry_failed(&self) -> Result<u64, OutboxError> {
        let n = sqlx::query(AssertSqlSafe(format!(
            "UPDATE {} SET failed_at = NULL, attempts = 0, next_attempt_at = {NOW} \
             WHERE sent_at IS NULL AND failed_at IS NOT NULL",
            self.table
        )))
        .execute(&self.pool)
        .await?
        .rows_affected();
        self.wake();
        Ok(n)
    }

    /// Retention: deletes up to `limit` sent rows older than `age`; returns how many.
    ///
    /// # Errors
    ///
    /// [`OutboxError::Database`] when the statement fails.
    pub async fn purge_sent_older_than(
        &self,
        age: Duration,
        limit: u32,
    ) -> Result<u64, OutboxError> {
        let result = sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM {t} WHERE id IN (SELECT id FROM {t} \
             WHERE sent_at IS NOT NULL AND sent_at < {NOW} - ? LIMIT ?)",
            t = self.table
        )))
        .bind(age.as_secs_f64())
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected())
    }
}
