//! The transactional outbox: events written in the caller's PostgreSQL (feature `postgres`)
//! or SQLite (feature `sqlite`, [`SqliteOutbox`]: one relay per database file, polling plus
//! [`SqliteOutbox::wake`]) transaction, and a relay that publishes them with confirms. What
//! follows describes PostgreSQL; `docs/messaging.md` covers the SQLite differences.
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
#[cfg(feature = "postgres")]
mod postgres;
mod relay;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::collections::BTreeMap;

pub use self::error::OutboxError;
#[cfg(feature = "postgres")]
pub use self::postgres::{PgOutbox, PgOutboxBuilder};
pub use self::relay::{BatchReport, Relay, RelayBuilder, RelayHandle, RelayOutbox, RelayReport};
#[cfg(feature = "sqlite")]
pub use self::sqlite::{SqliteOutbox, SqliteOutboxBuilder};
use crate::envelope::Message;

const DEFAULT_TABLE: &str = "sinew_outbox";
const DEFAULT_SOURCE: &str = "sinew";
/// PostgreSQL's identifier limit (NAMEDATALEN - 1), also the limit of a channel name.
const MAX_IDENTIFIER: usize = 63;

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

/// A row as the relay reads it.
#[derive(Debug)]
pub(crate) struct OutboxRow {
    pub(crate) id: i64,
    pub(crate) aggregate_id: String,
    pub(crate) attempts: i32,
    pub(crate) due: bool,
    pub(crate) message: Message,
}

/// The `headers` column of a row: the message's headers as a JSON object, with the current
/// span's context added as the creation context (feature `opentelemetry`) unless the message
/// carries one. [`message_of`] reads it back.
pub(crate) fn row_headers(message: &Message) -> String {
    #[cfg_attr(
        not(feature = "opentelemetry"),
        allow(unused_mut, reason = "only trace propagation adds a header")
    )]
    let mut headers = message.headers().clone();
    #[cfg(feature = "opentelemetry")]
    crate::telemetry::otel::inject_current(&mut headers);
    serde_json::Value::Object(
        headers
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect(),
    )
    .to_string()
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

    #[cfg(feature = "postgres")]
    #[test]
    fn the_shipped_migration_is_the_default_ddl() {
        let ddl = postgres::SCHEMA
            .replace("{table}", DEFAULT_TABLE)
            .replace("{name}", DEFAULT_TABLE);
        assert_eq!(
            ddl,
            include_str!("../../migrations/0001_sinew_outbox.sql"),
            "regenerate migrations/0001_sinew_outbox.sql from src/outbox/schema.sql"
        );
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn the_shipped_sqlite_migration_is_the_default_ddl() {
        assert_eq!(
            sqlite::SCHEMA.replace("{table}", DEFAULT_TABLE),
            include_str!("../../migrations/sqlite/0001_sinew_outbox.sql"),
            "regenerate migrations/sqlite/0001_sinew_outbox.sql from src/outbox/schema_sqlite.sql"
        );
    }
}
