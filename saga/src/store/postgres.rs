//! The PostgreSQL store: several orchestrator processes share one database.
//!
//! Leases are taken with a conditional `UPDATE` (row-locked, so two processes racing for an
//! expired lease cannot both win), and every commit checks the version and owner. Migrations
//! (`migrations/postgres/*.sql`, tracked in `sinew_saga_schema`) run under an advisory lock,
//! so processes starting together do not trip over each other. Tables are created in the
//! connection's `search_path`.
//!
//! ```no_run
//! use sinew_saga::store::PgStore;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = PgStore::connect("postgres://postgres@127.0.0.1/app").await?;
//! # drop(store);
//! # Ok(()) }
//! ```

use sqlx::PgPool;

use super::sql::{
    ACQUIRE, CANCEL, COMMIT_INSTANCE, DELIVER_REPLY, FIND_AWAITING, HEARTBEAT, HOLDER,
    INSERT_INSTANCE, INSTANCE_COLUMNS, InstanceRow, RECOVERABLE, REPLY, STEP_COLUMNS, StepRow,
    UPSERT_STEP, error_out, i64_of, impl_sql_store, json_out, parse_id, parse_reply, reply_out,
};
use super::{Acquired, Commit, Instance, ListQuery, Millis, SagaStore, Snapshot, StepReply};
use crate::error::StoreError;
use crate::id::SagaId;

const MIGRATIONS: &[(i64, &str)] = &[(1, include_str!("../../migrations/postgres/0001_init.sql"))];

/// An arbitrary constant naming this crate's migration advisory lock.
const MIGRATION_LOCK: i64 = 0x5349_4e45_5753_4147; // "SINEWSAG"

/// A [`SagaStore`] in a PostgreSQL database.
///
/// # Clone
///
/// Clones share the pool.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to `url` and migrates.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`].
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let store = Self::new(PgPool::connect(url).await?);
        store.migrate().await?;
        Ok(store)
    }

    /// A store over an existing pool; call [`migrate`](Self::migrate) once.
    pub const fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The pool.
    pub const fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies the migrations not applied yet, under an advisory lock. Idempotent.
    ///
    /// # Errors
    ///
    /// [`StoreError::Database`].
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await?;
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS sinew_saga_schema (version BIGINT PRIMARY KEY, \
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
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
                sqlx::query("INSERT INTO sinew_saga_schema (version) VALUES ($1)")
                    .bind(version)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

impl_sql_store!(PgStore, sqlx::Postgres);
