//! The outbox table in PostgreSQL (feature `postgres`).

use std::time::Duration;

use serde::Serialize;
use sqlx::{AssertSqlSafe, PgConnection, PgPool, Row};

use super::{
    DEFAULT_SOURCE, DEFAULT_TABLE, MAX_IDENTIFIER, OutboxError, OutboxStats, is_identifier,
};
use crate::envelope::{Event, Message};
use crate::error::ConfigError;

pub(super) const SCHEMA: &str = include_str!("schema.sql");

/// The outbox table in a PostgreSQL database.
///
/// # Clone
///
/// Clones share the pool.
#[derive(Debug, Clone)]
pub struct PgOutbox {
    pub(super) pool: PgPool,
    pub(super) table: String,
    pub(super) channel: String,
    source: String,
}

/// Builder of [`PgOutbox`].
///
/// # Default
///
/// Table `sinew_outbox` (resolved through the connection's `search_path`), notification
/// channel = the table name, CloudEvents source `sinew`.
#[derive(Debug, Clone)]
pub struct PgOutboxBuilder {
    pool: PgPool,
    table: String,
    channel: Option<String>,
    source: String,
}

impl PgOutboxBuilder {
    /// The table, optionally schema-qualified (`app.outbox`).
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// The `NOTIFY` channel the relay listens on (at most 63 bytes).
    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        self.channel = Some(channel.into());
        self
    }

    /// The producer's name: the `cloudEvents_source` of events enqueued with
    /// [`PgOutbox::enqueue`].
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }

    /// The outbox.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidIdentifier`] for a table that is not a plain (optionally
    /// schema-qualified) identifier or a channel longer than 63 bytes;
    /// [`ConfigError::Missing`] for an empty source or channel.
    pub fn build(self) -> Result<PgOutbox, ConfigError> {
        if !is_identifier(&self.table) {
            return Err(ConfigError::InvalidIdentifier { field: "table" });
        }
        let channel = self.channel.unwrap_or_else(|| self.table.clone());
        if channel.is_empty() {
            return Err(ConfigError::Missing { field: "channel" });
        }
        if channel.len() > MAX_IDENTIFIER {
            return Err(ConfigError::InvalidIdentifier { field: "channel" });
        }
        if self.source.is_empty() {
            return Err(ConfigError::Missing { field: "source" });
        }
        Ok(PgOutbox {
            pool: self.pool,
            table: self.table,
            channel,
            source: self.source,
        })
    }
}

impl PgOutbox {
    /// An outbox with the [default settings](PgOutboxBuilder#default).
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            table: DEFAULT_TABLE.to_owned(),
            channel: DEFAULT_TABLE.to_owned(),
            source: DEFAULT_SOURCE.to_owned(),
        }
    }

    /// A builder.
    pub fn builder(pool: PgPool) -> PgOutboxBuilder {
        PgOutboxBuilder {
            pool,
            table: DEFAULT_TABLE.to_owned(),
            channel: None,
            source: DEFAULT_SOURCE.to_owned(),
        }
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The `NOTIFY` channel.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The pool.
    pub const fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The statements that create the table and its indexes (idempotent: `IF NOT EXISTS`).
    pub fn ddl(&self) -> String {
        let name = self.table.rsplit('.').next().unwrap_or(DEFAULT_TABLE);
        SCHEMA
            .replace("{table}", &self.table)
            .replace("{name}", name)
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
    /// row ID.
    ///
    /// The message is [`Event::to_message`] with this outbox's source. With the
    /// `opentelemetry` feature, the current span's context is stored as its `traceparent`
    /// unless the event carries one, so the consumer links to the code that enqueued it.
    ///
    /// # Errors
    ///
    /// [`OutboxError::Encode`] when the payload does not serialize (nothing is written);
    /// [`OutboxError::Database`] when the insert fails, which aborts the caller's
    /// transaction.
    pub async fn enqueue<T: Serialize>(
        &self,
        conn: &mut PgConnection,
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
    /// [`OutboxError::Database`] when the insert fails, which aborts the caller's
    /// transaction.
    pub async fn enqueue_message(
        &self,
        conn: &mut PgConnection,
        message: &Message,
    ) -> Result<i64, OutboxError> {
        let headers = super::row_headers(message);
        let aggregate = message.aggregate_id().unwrap_or(message.message_id());
        // The advisory lock serializes enqueuers of one aggregate until they commit, so `id`
        // order is commit order per aggregate. `pg_notify` is delivered on commit only.
        let sql = format!(
            "WITH serialize AS (SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))), \
                  wake AS (SELECT pg_notify($1, '')) \
             INSERT INTO {} (aggregate_id, routing_key, message_id, content_type, headers, body) \
             SELECT $2, $3, $4, $5, $6::text::jsonb, $7 FROM serialize, wake \
             RETURNING id",
            self.table
        );
        let id: i64 = sqlx::query_scalar(AssertSqlSafe(sql))
            .bind(&self.channel)
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

    /// How many rows are pending, parked as failed, and sent.
    ///
    /// # Errors
    ///
    /// [`OutboxError::Database`] when the query fails.
    pub async fn stats(&self) -> Result<OutboxStats, OutboxError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT count(*) FILTER (WHERE sent_at IS NULL AND failed_at IS NULL), \
                    count(*) FILTER (WHERE sent_at IS NULL AND failed_at IS NOT NULL), \
                    count(*) FILTER (WHERE sent_at IS NOT NULL) FROM {}",
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

    /// Un-parks every failed row, with a fresh set of attempts, and wakes the relays. Returns
    /// how many rows it un-parked.
    ///
    /// # Errors
    ///
    /// [`OutboxError::Database`] when the statement fails.
    pub async fn retry_failed(&self) -> Result<u64, OutboxError> {
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query(AssertSqlSafe(format!(
            "UPDATE {} SET failed_at = NULL, attempts = 0, next_attempt_at = now() \
             WHERE sent_at IS NULL AND failed_at IS NOT NULL",
            self.table
        )))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(&self.channel)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
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
             WHERE sent_at IS NOT NULL AND sent_at < now() - make_interval(secs => $1) LIMIT $2)",
            t = self.table
        )))
        .bind(age.as_secs_f64())
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected())
    }
}
