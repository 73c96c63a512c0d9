//! A durable process manager in PostgreSQL (features `messaging` and `postgres`).

use std::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sinew_messaging::Event;
use sinew_messaging::inbox::postgres::PgInbox;
use sqlx::{PgConnection, PgPool};

use super::process::{Handled, ProcessError, Transition};

const CREATE: &str = "CREATE TABLE IF NOT EXISTS sinew_saga_processes (\
     name TEXT NOT NULL, correlation TEXT NOT NULL, state TEXT NOT NULL, \
     complete BOOLEAN NOT NULL, touched_at TIMESTAMPTZ NOT NULL DEFAULT now(), \
     PRIMARY KEY (name, correlation))";
const LOAD: &str = "SELECT state FROM sinew_saga_processes \
     WHERE name = $1 AND correlation = $2 FOR UPDATE";
const SAVE: &str = "INSERT INTO sinew_saga_processes (name, correlation, state, complete) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (name, correlation) DO UPDATE SET \
     state = excluded.state, complete = excluded.complete, touched_at = now()";
const EXPIRE: &str = "UPDATE sinew_saga_processes SET complete = TRUE \
     WHERE name = $1 AND NOT complete AND touched_at < now() - make_interval(secs => $2) \
     RETURNING correlation, state";
const STATE: &str = "SELECT state FROM sinew_saga_processes WHERE name = $1 AND correlation = $2";

/// A [`ProcessManager`](super::ProcessManager) whose instances live in PostgreSQL
/// (`sinew_saga_processes`), updated in the caller's transaction together with the inbox
/// record (`PgInbox::record_in`).
///
/// Open a transaction, call [`handle_in`](Self::handle_in), write your own state and the
/// events to publish (into the transactional outbox of `sinew-messaging`) in the same
/// transaction, and commit: the event is then handled exactly once, even across crashes and
/// redeliveries. A rollback forgets all of it, so the redelivered event is handled again.
#[derive(Debug, Clone)]
pub struct PgProcessManager<St> {
    name: String,
    inbox: PgInbox,
    timeout: Option<Duration>,
    _state: PhantomData<fn() -> St>,
}

impl<St: Serialize + DeserializeOwned> PgProcessManager<St> {
    /// A process manager called `name` (its inbox subscription name).
    pub fn new(name: impl Into<String>, inbox: PgInbox) -> Self {
        Self {
            name: name.into(),
            inbox,
            timeout: None,
            _state: PhantomData,
        }
    }

    /// Incomplete instances untouched for `timeout` are reported by
    /// [`expired`](Self::expired).
    pub const fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Creates the process table and the inbox table if missing. Idempotent.
    ///
    /// # Errors
    ///
    /// [`ProcessError::Database`] or [`ProcessError::Inbox`].
    pub async fn migrate(&self, pool: &PgPool) -> Result<(), ProcessError> {
        self.inbox.migrate().await?;
        sqlx::raw_sql(CREATE).execute(pool).await?;
        Ok(())
    }

    /// Handles `event` for instance `correlation` on `conn` (the caller's transaction): a
    /// duplicate is dropped; otherwise the instance row is locked, `f` decides, and the new
    /// state is written.
    ///
    /// # Errors
    ///
    /// [`ProcessError::Inbox`], [`ProcessError::Database`], [`ProcessError::Serde`]; the
    /// caller's transaction is then aborted and must be rolled back.
    pub async fn handle_in<T, F>(
        &self,
        conn: &mut PgConnection,
        event: &Event<T>,
        correlation: &str,
        f: F,
    ) -> Result<Handled<St>, ProcessError>
    where
        F: FnOnce(Option<St>, &Event<T>) -> Transition<St>,
    {
        let event_id = event.event_id().to_string();
        if !self.inbox.record_in(conn, &self.name, &event_id).await? {
            return Ok(Handled::Duplicate);
        }
        let row: Option<(String,)> = sqlx::query_as(LOAD)
            .bind(&self.name)
            .bind(correlation)
            .fetch_optional(&mut *conn)
            .await?;
        let current = row.map(|(s,)| serde_json::from_str(&s)).transpose()?;
        let had = current.is_some();
        let transition = f(current, event);
        let (state, complete, publish) = transition.into_parts();
        if let Some(state) = &state {
            sqlx::query(SAVE)
                .bind(&self.name)
                .bind(correlation)
                .bind(serde_json::to_string(state)?)
                .bind(complete)
                .execute(&mut *conn)
                .await?;
        }
        let state = match state {
            Some(s) => Some(s),
            None if had => self.state_in(conn, correlation).await?,
            None => None,
        };
        Ok(Handled::Applied {
            state,
            complete,
            publish,
        })
    }

    async fn state_in(
        &self,
        conn: &mut PgConnection,
        correlation: &str,
    ) -> Result<Option<St>, ProcessError> {
        let row: Option<(String,)> = sqlx::query_as(STATE)
            .bind(&self.name)
            .bind(correlation)
            .fetch_optional(&mut *conn)
            .await?;
        Ok(row.map(|(s,)| serde_json::from_str(&s)).transpose()?)
    }

    /// The state of instance `correlation`.
    ///
    /// # Errors
    ///
    /// [`ProcessError::Database`], [`ProcessError::Serde`].
    pub async fn state(
        &self,
        pool: &PgPool,
        correlation: &str,
    ) -> Result<Option<St>, ProcessError> {
        let mut conn = pool.acquire().await?;
        self.state_in(&mut conn, correlation).await
    }

    /// Incomplete instances untouched for the timeout, marked complete so each is reported
    /// once (by one process, even when several call this concurrently).
    ///
    /// # Errors
    ///
    /// [`ProcessError::Database`], [`ProcessError::Serde`].
    pub async fn expired(&self, pool: &PgPool) -> Result<Vec<(String, St)>, ProcessError> {
        let Some(timeout) = self.timeout else {
            return Ok(Vec::new());
        };
        let rows: Vec<(String, String)> = sqlx::query_as(EXPIRE)
            .bind(&self.name)
            .bind(timeout.as_secs_f64())
            .fetch_all(pool)
            .await?;
        rows.into_iter()
            .map(|(c, s)| Ok((c, serde_json::from_str(&s)?)))
            .collect()
    }
}
