//! The SQLite store: the embedded default, one file.
//!
//! [`SqliteStore::open`] creates the file if needed, switches it to WAL and applies the
//! migrations shipped with the crate (`migrations/sqlite/*.sql`, tracked in
//! `sinew_saga_schema`). Several processes may open the same file one after another (a
//! restarted process recovers the sagas its predecessor left); for several orchestrator
//! processes at once use the PostgreSQL store.
//!
//! ```
//! use sinew_saga::store::SqliteStore;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = std::env::temp_dir().join(format!("saga-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let store = SqliteStore::open(dir.join("sagas.db")).await?;
//! # drop(store); std::fs::remove_dir_all(&dir)?;
//! # Ok(()) }
//! ```

use std::path::Path;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::sql::{
    ACQUIRE, CANCEL, COMMIT_INSTANCE, DELIVER_REPLY, FIND_AWAITING, HEARTBEAT, HOLDER,
    INSERT_INSTANCE, INSTANCE_COLUMNS, InstanceRow, RECOVERABLE, REPLY, STEP_COLUMNS, StepRow,
    UPSERT_STEP, error_out, i64_of, impl_sql_store, json_out, parse_id, parse_reply, reply_out,
};
use super::{Acquired, Commit, Instance, ListQuery, Millis, SagaStore, Snapshot, StepReply};
use crate::error::StoreError;
use crate::id::SagaId;

/// The migrations, in order: (version, SQL).
const MIGRATIONS: &[(i64, &str)] = &[(1, include_str!("../../migrations/sqlite/0001_init.sql"))];

/// A [`SagaStore`] in a SQLite database.
///
/// # Clone
///
/// Clones share the pool.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating it if needed) the database file at `path` and migrates it.
    ///
    /// The pool has one connection: SQLite has one writer at a time anyway, and one
    /// connection never waits on its own lock. Durability: WAL with `synchronous = FULL`, so
    /// a committed step survives a crash of the process and of the machine.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`] when the file cannot be opened or migrated.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        let store = Self::new(pool);
        store.migrate().await?;
        Ok(store)
    }

    /// A private in-memory database (gone with the store), migrated.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`].
    pub async fn in_memory() -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .in_memory(true)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        let store = Self::new(pool);
        store.migrate().await?;
        Ok(store)
    }

    /// A store over an existing pool; call [`migrate`](Self::migrate) once.
    pub const fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }

    /// The pool (participants may keep their own tables in the same file).
    pub const fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Applies the migrations not applied yet. Idempotent.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`].
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS sinew_saga_schema (version INTEGER PRIMARY KEY, \
             applied_at INTEGER NOT NULL)",
        )
        .execute(&mut *tx)
        .await?;
        for (version, sql) in MIGRATIONS {
            let applied: Option<(i64,)> =
                sqlx::query_as("SELECT version FROM sinew_saga_schema WHERE version = $1")
                    .bind(version)
                    .fetch_optional(&mut *tx)
                    .await?;
            if applied.is_none() {
                sqlx::raw_sql(*sql).execute(&mut *tx).await?;
                sqlx::query(
                    "INSERT INTO sinew_saga_schema (version, applied_at) \
                     VALUES ($1, CAST(strftime('%s', 'now') AS INTEGER))",
                )
                .bind(version)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

impl_sql_store!(SqliteStore, sqlx::Sqlite);
