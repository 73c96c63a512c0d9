//! The transactional outbox: events written in the caller's PostgreSQL transaction, and a
//! relay that publishes them with confirms.
//!
//! Publishing an event straight after a database commit loses it when the process dies in
//! between; publishing before the commit announces something that may roll back. The outbox
//! closes that gap: [`PgOutbox::enqueue`] inserts the event into the outbox table **in the
//! caller's transaction**, so it commits or rolls back with the business writes, and a
//! [`Relay`] publishes committed rows through any [`Publisher`](crate::Publisher):
//!
//! - it claims batches with `SELECT … FOR UPDATE SKIP LOCKED`, so several relay instances
//!   (processes) share the work and never publish one row at the same time;
//! - it wakes on `LISTEN`/`NOTIFY` (enqueue notifies on commit) and polls as a fallback;
//! - it marks a row sent only after `publish` resolved, which for a RabbitMQ publisher means
//!   the broker's confirm (ack); a failed publish leaves the row unsent, to be retried with
//!   exponential backoff and jitter, up to `max_attempts`, after which the row is parked as
//!   failed (see [`PgOutbox::stats`] and [`PgOutbox::retry_failed`]);
//! - it keeps **per-aggregate order**, also across relay instances: a row is published only
//!   when no earlier row of its aggregate is unsent, and the rows of one aggregate in a batch
//!   are published one after the other, each after the previous one's confirm. A failed or
//!   parked row holds back the later events of its aggregate (order before availability);
//!   other aggregates keep flowing;
//! - it deletes sent rows after a retention period;
//! - it shuts down gracefully ([`RelayHandle::shutdown`]).
//!
//! Delivery is at least once: a relay that dies after the broker confirmed a row and before
//! its transaction committed leaves the row unsent, and the row is published again, with the
//! same message ID. Consumers drop such duplicates with an [inbox](crate::inbox).
//!
//! # Order
//!
//! Rows are ordered by their `id` (a sequence). [`PgOutbox::enqueue`] takes a transaction-level
//! advisory lock on the aggregate before inserting, so two transactions that enqueue events of
//! one aggregate are serialized: the one that commits first has the smaller `id`. (The lock is
//! held until commit; transactions that change one aggregate usually serialize on its row
//! anyway.)
//!
//! # Schema
//!
//! [`PgOutbox::migrate`] creates the table and its indexes if they do not exist;
//! [`PgOutbox::ddl`] returns the same statements for your own migration tool, and the crate
//! ships them for the default table name as `migrations/0001_sinew_outbox.sql`.
//!
//! ```no_run
//! use std::time::Duration;
//! use sinew_messaging::envelope::Event;
//! use sinew_messaging::memory::MemoryBroker;
//! use sinew_messaging::outbox::{PgOutbox, Relay};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = sqlx::PgPool::connect("postgres://postgres@127.0.0.1/app").await?;
//! let outbox = PgOutbox::builder(pool.clone()).source("accounts").build()?;
//! outbox.migrate().await?;
//!
//! // In the request handler: the user row and the event commit together, or neither does.
//! let mut tx = pool.begin().await?;
//! sqlx::query("INSERT INTO users (id, email) VALUES ($1, $2)")
//!     .bind("u-42")
//!     .bind("ada@example.com")
//!     .execute(&mut *tx)
//!     .await?;
//! outbox
//!     .enqueue(&mut tx, &Event::new("user.created", "u-42", "ada@example.com"))
//!     .await?;
//! tx.commit().await?;
//!
//! // Once per process: the relay publishes committed events.
//! let broker = MemoryBroker::new();
//! let relay = Relay::builder(outbox, broker.publisher()).build()?.start();
//! // … at shutdown:
//! relay.shutdown(Duration::from_secs(10)).await;
//! # Ok(()) }
//! ```

pub mod error;
mod relay;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use sqlx::{AssertSqlSafe, PgConnection, PgPool, Row};

pub use self::error::OutboxError;
pub use self::relay::{BatchReport, Relay, RelayBuilder, RelayHandle, RelayReport};
use crate::envelope::{Event, Message};
use crate::error::ConfigError;

const DEFAULT_TABLE: &str = "sinew_outbox";
const DEFAULT_SOURCE: &str = "sinew";
const SCHEMA: &str = include_str!("schema.sql");
/// PostgreSQL's identifier limit (NAMEDATALEN - 1), also the limit of a channel name.
const MAX_IDENTIFIER: usize = 63;

/// The outbox table in a PostgreSQL database.
///
/// # Clone
///
/// Clones share the pool.
#[derive(Debug, Clone)]
pub struct PgOutbox {
    pool: PgPool,
    table: String,
    channel: String,
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

/// `name` or `schema.name`, each part `[A-Za-z_][A-Za-z0-9_]*` of at most 63 bytes.
fn is_identifier(name: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    parts.len() <= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= MAX_IDENTIFIER
                && !p.starts_with(|c: char| c.is_ascii_digit())
                && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

/// Counts of an outbox's rows; see [`PgOutbox::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct OutboxStats {
    /// Waiting to be published (including rows waiting for a retry).
    pub pending: u64,
    /// Parked after `max_attempts` failed publishes; they hold back their aggregate.
    pub failed: u64,
    /// Published and not yet deleted by retention.
    pub sent: u64,
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
        #[cfg_attr(
            not(feature = "opentelemetry"),
            allow(unused_mut, reason = "only trace propagation adds a header")
        )]
        let mut headers = message.headers().clone();
        #[cfg(feature = "opentelemetry")]
        crate::telemetry::otel::inject_current(&mut headers);
        let headers = serde_json::Value::Object(
            headers
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect(),
        )
        .to_string();
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

/// A row as the relay reads it.
#[derive(Debug)]
pub(crate) struct OutboxRow {
    pub(crate) id: i64,
    pub(crate) aggregate_id: String,
    pub(crate) attempts: i32,
    pub(crate) due: bool,
    pub(crate) message: Message,
}

pub(crate) fn message_of(
    id: i64,
    routing_key: String,
    message_id: String,
    content_type: String,
    headers: &str,
    body: Vec<u8>,
) -> Result<Message, OutboxError> {
    let headers: BTreeMap<String, String> =
        serde_json::from_str(headers).map_err(|source| OutboxError::MalformedRow { id, source })?;
    let mut message = Message::new(routing_key, body)
        .with_message_id(message_id)
        .with_content_type(content_type);
    *message.headers_mut() = headers;
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        for ok in ["sinew_outbox", "app.outbox", "_x", "A1"] {
            assert!(is_identifier(ok), "{ok}");
        }
        for bad in ["", "1x", "a.b.c", "a-b", "a;drop", "a.", &"x".repeat(64)] {
            assert!(!is_identifier(bad), "{bad}");
        }
    }

    #[test]
    fn the_shipped_migration_is_the_default_ddl() {
        let ddl = SCHEMA
            .replace("{table}", DEFAULT_TABLE)
            .replace("{name}", DEFAULT_TABLE);
        assert_eq!(
            ddl,
            include_str!("../../migrations/0001_sinew_outbox.sql"),
            "regenerate migrations/0001_sinew_outbox.sql from src/outbox/schema.sql"
        );
    }
}
