//! The PostgreSQL inbox: records the event in the same transaction as the handler's writes.
//!
//! Create the table once with [`PgInbox::migrate`]. In the handler, open a transaction, call
//! [`PgInbox::record_in`] on it first, skip the work if it returns `false` (a duplicate), do
//! the work in the same transaction and commit. The commit stores both the effects and the
//! inbox row; a rollback or a crash stores neither, so the redelivered message is handled
//! again. A second delivery of the same event running concurrently waits on the row lock of
//! the first transaction's insert, then sees the duplicate once that commits.
//!
//! ```no_run
//! use sinew_messaging::inbox::postgres::PgInbox;
//! use sinew_messaging::subscriber::{handler_fn, Delivery, HandlerError, Outcome};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = sqlx::PgPool::connect("postgres://postgres@127.0.0.1/app").await?;
//! let inbox = PgInbox::new(pool.clone());
//! inbox.migrate().await?;
//!
//! let handler = handler_fn("welcome-mail", move |delivery: Delivery| {
//!     let (pool, inbox) = (pool.clone(), inbox.clone());
//!     async move {
//!         let event = delivery.decode::<String>()?;
//!         let mut tx = pool.begin().await.map_err(HandlerError::transient)?;
//!         let event_id = event.event_id().to_string();
//!         if !inbox
//!             .record_in(&mut tx, delivery.queue(), &event_id)
//!             .await
//!             .map_err(HandlerError::transient)?
//!         {
//!             return Ok(Outcome::Ack); // handled before: the transaction rolls back on drop
//!         }
//!         sqlx::query("INSERT INTO welcome_mails (user_name) VALUES ($1)")
//!             .bind(event.data())
//!             .execute(&mut *tx)
//!             .await
//!             .map_err(HandlerError::transient)?;
//!         tx.commit().await.map_err(HandlerError::transient)?;
//!         Ok(Outcome::Ack)
//!     }
//! });
//! # let _ = handler;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::time::Duration;

use sqlx::{PgConnection, PgPool};

use super::error::check_key;
use super::{Inbox, InboxError};

const DEFAULT_TABLE: &str = "sinew_inbox";

/// An [`Inbox`] in a PostgreSQL table (`sinew_inbox` by default).
///
/// # Clone
///
/// Clones share the pool.
#[derive(Debug, Clone)]
pub struct PgInbox {
    pool: PgPool,
    table: String,
}

impl PgInbox {
    /// An inbox in the table `sinew_inbox` (resolved through the connection's `search_path`).
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            table: DEFAULT_TABLE.to_owned(),
        }
    }

    /// An inbox in `table` instead, for example `"messaging.inbox"`. The name is used in SQL
    /// as written: pass a trusted, valid (optionally schema-qualified) identifier.
    pub fn with_table(pool: PgPool, table: impl Into<String>) -> Self {
        Self {
            pool,
            table: table.into(),
        }
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The pool.
    pub const fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Creates the table and its retention index if they do not exist. Idempotent.
    ///
    /// # Errors
    ///
    /// [`InboxError::Database`] when the statements fail.
    pub async fn migrate(&self) -> Result<(), InboxError> {
        // An index name takes no schema: it lives in its table's schema.
        let index = format!(
            "{}_received_at",
            self.table.rsplit('.').next().unwrap_or(DEFAULT_TABLE)
        );
        let mut tx = self.pool.begin().await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE IF NOT EXISTS {table} (\
                subscription text NOT NULL, \
                event_id text NOT NULL, \
                received_at timestamptz NOT NULL DEFAULT now(), \
                PRIMARY KEY (subscription, event_id)); \
             CREATE INDEX IF NOT EXISTS {index} ON {table} (received_at);",
            table = self.table,
        )))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records `event_id` for `subscription` on `conn`, typically the handler's open
    /// transaction (`&mut tx`), so the row commits or rolls back with the handler's writes.
    /// Returns `true` the first time and `false` for a duplicate.
    ///
    /// # Errors
    ///
    /// [`InboxError::EmptyKey`] for an empty key; [`InboxError::Database`] when the insert
    /// fails (which aborts the caller's transaction, as any failed statement does).
    pub async fn record_in(
        &self,
        conn: &mut PgConnection,
        subscription: &str,
        event_id: &str,
    ) -> Result<bool, InboxError> {
        check_key(subscription, event_id)?;
        let result = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {} (subscription, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            self.table
        )))
        .bind(subscription)
        .bind(event_id)
        .execute(conn)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn record_own(&self, subscription: &str, event_id: &str) -> Result<bool, InboxError> {
        check_key(subscription, event_id)?;
        let mut conn = self.pool.acquire().await?;
        self.record_in(&mut conn, subscription, event_id).await
    }

    async fn forget_own(&self, subscription: &str, event_id: &str) -> Result<bool, InboxError> {
        check_key(subscription, event_id)?;
        let result = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {} WHERE subscription = $1 AND event_id = $2",
            self.table
        )))
        .bind(subscription)
        .bind(event_id)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn purge_own(&self, age: Duration) -> Result<u64, InboxError> {
        let seconds = age.as_secs_f64();
        let result = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {} WHERE received_at < now() - make_interval(secs => $1)",
            self.table
        )))
        .bind(seconds)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected())
    }
}

/// Each call runs in its own short implicit transaction. Prefer [`PgInbox::record_in`] when
/// the handler writes to the same database.
impl Inbox for PgInbox {
    fn record(
        &self,
        subscription: &str,
        event_id: &str,
    ) -> impl Future<Output = Result<bool, InboxError>> + Send {
        self.record_own(subscription, event_id)
    }

    fn forget(
        &self,
        subscription: &str,
        event_id: &str,
    ) -> impl Future<Output = Result<bool, InboxError>> + Send {
        self.forget_own(subscription, event_id)
    }

    fn purge_older_than(
        &self,
        age: Duration,
    ) -> impl Future<Output = Result<u64, InboxError>> + Send {
        self.purge_own(age)
    }
}
