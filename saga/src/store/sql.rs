//! The SQL shared by the SQLite and PostgreSQL stores (both accept `$n` placeholders,
//! `ON CONFLICT .. DO UPDATE` and `excluded`), and the row decoding.

use serde_json::Value;

use super::{Instance, SagaStatus, StepRecord, StepReply, StepState};
use crate::error::{StepError, StoreError};
use crate::id::{IdempotencyKey, Phase, SagaId};

pub(super) const INSTANCE_COLUMNS: &str = "id, saga_type, status, data, version, lease_owner, \
     lease_until, deadline, cancel_requested, reason, created_at, updated_at";
pub(super) const STEP_COLUMNS: &str = "step, phase, state, attempt, idempotency_key, output, \
     error, correlation_key, due_at, seq, started_at, updated_at";

pub(super) const INSERT_INSTANCE: &str = "INSERT INTO sinew_saga_instances (id, saga_type, \
     status, data, version, lease_owner, lease_until, deadline, cancel_requested, reason, \
     created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
     ON CONFLICT (id) DO NOTHING";
pub(super) const ACQUIRE: &str = "UPDATE sinew_saga_instances SET lease_owner = $1, \
     lease_until = $2, version = version + 1 WHERE id = $3 AND (lease_owner IS NULL OR \
     lease_owner = $1 OR lease_until IS NULL OR lease_until < $4)";
pub(super) const HOLDER: &str = "SELECT lease_owner FROM sinew_saga_instances WHERE id = $1";
pub(super) const COMMIT_INSTANCE: &str = "UPDATE sinew_saga_instances SET version = version + 1, \
     status = $1, reason = $2, updated_at = $3, lease_owner = $4, lease_until = $5 \
     WHERE id = $6 AND version = $7 AND lease_owner = $8";
pub(super) const UPSERT_STEP: &str = "INSERT INTO sinew_saga_steps (saga_id, step, phase, state, \
     attempt, idempotency_key, output, error, correlation_key, due_at, seq, started_at, \
     updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
     ON CONFLICT (saga_id, step, phase) DO UPDATE SET state = excluded.state, \
     attempt = excluded.attempt, output = excluded.output, error = excluded.error, \
     correlation_key = excluded.correlation_key, due_at = excluded.due_at, seq = excluded.seq, \
     started_at = excluded.started_at, updated_at = excluded.updated_at, \
     reply = CASE WHEN excluded.state = 'started' AND excluded.phase = 'forward' THEN NULL \
     ELSE sinew_saga_steps.reply END";
pub(super) const HEARTBEAT: &str = "UPDATE sinew_saga_instances SET lease_until = $1 \
     WHERE id = $2 AND lease_owner = $3 RETURNING cancel_requested";
pub(super) const CANCEL: &str =
    "UPDATE sinew_saga_instances SET cancel_requested = TRUE WHERE id = $1";
pub(super) const DELIVER_REPLY: &str = "UPDATE sinew_saga_steps SET reply = $1 WHERE saga_id = $2 \
     AND step = $3 AND phase = 'forward' AND state <> 'succeeded'";
pub(super) const REPLY: &str = "SELECT reply FROM sinew_saga_steps WHERE saga_id = $1 \
     AND step = $2 AND phase = 'forward'";
pub(super) const RECOVERABLE: &str = "SELECT id FROM sinew_saga_instances WHERE status IN \
     ('running', 'compensating') AND (lease_until IS NULL OR lease_until < $1) \
     ORDER BY created_at, id LIMIT $2";
pub(super) const FIND_AWAITING: &str = "SELECT saga_id, step FROM sinew_saga_steps \
     WHERE correlation_key = $1 AND state = 'awaiting' LIMIT 1";

pub(super) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what: what.to_string(),
    }
}

pub(super) fn json_out(v: &Value) -> String {
    v.to_string()
}

pub(super) fn parse_json(s: &str, what: &str) -> Result<Value, StoreError> {
    serde_json::from_str(s).map_err(|e| corrupt(format!("{what}: {e}")))
}

pub(super) fn parse_id(s: &str) -> Result<SagaId, StoreError> {
    s.parse()
        .map_err(|e| corrupt(format!("saga id `{s}`: {e}")))
}

pub(super) fn error_out(e: &Option<StepError>) -> Option<String> {
    e.as_ref().and_then(|e| serde_json::to_string(e).ok())
}

pub(super) fn reply_out(r: &StepReply) -> String {
    serde_json::to_string(r).unwrap_or_default()
}

pub(super) fn parse_reply(s: &str) -> Result<StepReply, StoreError> {
    serde_json::from_str(s).map_err(|e| corrupt(format!("reply: {e}")))
}

pub(super) fn u64_of(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| corrupt(format!("{what} is negative")))
}

pub(super) fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The raw columns of an instance row, in [`INSTANCE_COLUMNS`] order.
pub(super) struct InstanceRow {
    pub(super) id: String,
    pub(super) saga_type: String,
    pub(super) status: String,
    pub(super) data: String,
    pub(super) version: i64,
    pub(super) lease_owner: Option<String>,
    pub(super) lease_until: Option<i64>,
    pub(super) deadline: Option<i64>,
    pub(super) cancel_requested: bool,
    pub(super) reason: Option<String>,
    pub(super) created_at: i64,
    pub(super) updated_at: i64,
}

impl InstanceRow {
    pub(super) fn decode(self) -> Result<Instance, StoreError> {
        Ok(Instance {
            id: parse_id(&self.id)?,
            saga_type: self.saga_type,
            status: SagaStatus::parse(&self.status)
                .ok_or_else(|| corrupt(format!("status `{}`", self.status)))?,
            data: parse_json(&self.data, "saga data")?,
            version: u64_of(self.version, "version")?,
            lease_owner: self.lease_owner,
            lease_until: self.lease_until,
            deadline: self.deadline,
            cancel_requested: self.cancel_requested,
            reason: self.reason,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// The raw columns of a step row, in [`STEP_COLUMNS`] order.
pub(super) struct StepRow {
    pub(super) step: String,
    pub(super) phase: String,
    pub(super) state: String,
    pub(super) attempt: i64,
    pub(super) idempotency_key: String,
    pub(super) output: Option<String>,
    pub(super) error: Option<String>,
    pub(super) correlation_key: Option<String>,
    pub(super) due_at: Option<i64>,
    pub(super) seq: i64,
    pub(super) started_at: i64,
    pub(super) updated_at: i64,
}

impl StepRow {
    pub(super) fn decode(self) -> Result<StepRecord, StoreError> {
        Ok(StepRecord {
            phase: Phase::parse(&self.phase)
                .ok_or_else(|| corrupt(format!("phase `{}`", self.phase)))?,
            state: StepState::parse(&self.state)
                .ok_or_else(|| corrupt(format!("step state `{}`", self.state)))?,
            attempt: u32::try_from(self.attempt).map_err(|_| corrupt("attempt"))?,
            idempotency_key: self
                .idempotency_key
                .parse::<uuid::Uuid>()
                .map(IdempotencyKey::from_uuid)
                .map_err(|e| corrupt(format!("idempotency key: {e}")))?,
            output: self
                .output
                .as_deref()
                .map(|s| parse_json(s, "step output"))
                .transpose()?,
            error: self
                .error
                .as_deref()
                .map(|s| serde_json::from_str(s).map_err(|e| corrupt(format!("step error: {e}"))))
                .transpose()?,
            correlation_key: self.correlation_key,
            due_at: self.due_at,
            seq: u64_of(self.seq, "seq")?,
            started_at: self.started_at,
            updated_at: self.updated_at,
            step: self.step,
        })
    }
}

/// Implements [`SagaStore`](super::SagaStore) for a store with a `pool` field of the given
/// sqlx pool type.
macro_rules! impl_sql_store {
    ($store:ty, $db:ty) => {
        impl $store {
            async fn snapshot_in(
                conn: &mut <$db as sqlx::Database>::Connection,
                id: SagaId,
            ) -> Result<Option<Snapshot>, StoreError> {
                use sqlx::Row;
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {INSTANCE_COLUMNS} FROM sinew_saga_instances WHERE id = $1"
                )))
                .bind(id.to_string())
                .fetch_optional(&mut *conn)
                .await?;
                let Some(row) = row else { return Ok(None) };
                let instance = InstanceRow {
                    id: row.try_get(0)?,
                    saga_type: row.try_get(1)?,
                    status: row.try_get(2)?,
                    data: row.try_get(3)?,
                    version: row.try_get(4)?,
                    lease_owner: row.try_get(5)?,
                    lease_until: row.try_get(6)?,
                    deadline: row.try_get(7)?,
                    cancel_requested: row.try_get(8)?,
                    reason: row.try_get(9)?,
                    created_at: row.try_get(10)?,
                    updated_at: row.try_get(11)?,
                }
                .decode()?;
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {STEP_COLUMNS} FROM sinew_saga_steps WHERE saga_id = $1 ORDER BY seq"
                )))
                .bind(id.to_string())
                .fetch_all(&mut *conn)
                .await?;
                let mut records = Vec::with_capacity(rows.len());
                for row in rows {
                    records.push(
                        StepRow {
                            step: row.try_get(0)?,
                            phase: row.try_get(1)?,
                            state: row.try_get(2)?,
                            attempt: row.try_get(3)?,
                            idempotency_key: row.try_get(4)?,
                            output: row.try_get(5)?,
                            error: row.try_get(6)?,
                            correlation_key: row.try_get(7)?,
                            due_at: row.try_get(8)?,
                            seq: row.try_get(9)?,
                            started_at: row.try_get(10)?,
                            updated_at: row.try_get(11)?,
                        }
                        .decode()?,
                    );
                }
                Ok(Some(Snapshot { instance, records }))
            }
        }

        impl SagaStore for $store {
            async fn create(&self, instance: &Instance) -> Result<(), StoreError> {
                let done = sqlx::query(INSERT_INSTANCE)
                    .bind(instance.id.to_string())
                    .bind(&instance.saga_type)
                    .bind(instance.status.as_str())
                    .bind(json_out(&instance.data))
                    .bind(i64_of(instance.version))
                    .bind(&instance.lease_owner)
                    .bind(instance.lease_until)
                    .bind(instance.deadline)
                    .bind(instance.cancel_requested)
                    .bind(&instance.reason)
                    .bind(instance.created_at)
                    .bind(instance.updated_at)
                    .execute(&self.pool)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::AlreadyExists { id: instance.id });
                }
                Ok(())
            }

            async fn load(&self, id: SagaId) -> Result<Option<Snapshot>, StoreError> {
                let mut conn = self.pool.acquire().await?;
                Self::snapshot_in(&mut conn, id).await
            }

            async fn acquire(
                &self,
                id: SagaId,
                owner: &str,
                now: Millis,
                lease_until: Millis,
            ) -> Result<Acquired, StoreError> {
                let mut tx = self.pool.begin().await?;
                let done = sqlx::query(ACQUIRE)
                    .bind(owner)
                    .bind(lease_until)
                    .bind(id.to_string())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() == 1 {
                    let snap = Self::snapshot_in(&mut tx, id).await?;
                    tx.commit().await?;
                    return Ok(snap.map_or(Acquired::NotFound, Acquired::Yes));
                }
                let holder: Option<(Option<String>,)> = sqlx::query_as(HOLDER)
                    .bind(id.to_string())
                    .fetch_optional(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(match holder {
                    None => Acquired::NotFound,
                    Some((owner,)) => Acquired::Held {
                        owner: owner.unwrap_or_default(),
                    },
                })
            }

            async fn commit(
                &self,
                id: SagaId,
                owner: &str,
                expected_version: u64,
                commit: &Commit,
            ) -> Result<u64, StoreError> {
                let mut tx = self.pool.begin().await?;
                let done = sqlx::query(COMMIT_INSTANCE)
                    .bind(commit.status.as_str())
                    .bind(&commit.reason)
                    .bind(commit.now)
                    .bind(commit.lease_until.map(|_| owner))
                    .bind(commit.lease_until)
                    .bind(id.to_string())
                    .bind(i64_of(expected_version))
                    .bind(owner)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() != 1 {
                    return Err(StoreError::Conflict {
                        id,
                        expected: expected_version,
                    });
                }
                let version = expected_version + 1;
                if let Some(r) = &commit.record {
                    sqlx::query(UPSERT_STEP)
                        .bind(id.to_string())
                        .bind(&r.step)
                        .bind(r.phase.as_str())
                        .bind(r.state.as_str())
                        .bind(i64::from(r.attempt))
                        .bind(r.idempotency_key.to_string())
                        .bind(r.output.as_ref().map(json_out))
                        .bind(error_out(&r.error))
                        .bind(&r.correlation_key)
                        .bind(r.due_at)
                        .bind(i64_of(version))
                        .bind(r.started_at)
                        .bind(r.updated_at)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(version)
            }

            async fn heartbeat(
                &self,
                id: SagaId,
                owner: &str,
                lease_until: Millis,
            ) -> Result<Option<bool>, StoreError> {
                let row: Option<(bool,)> = sqlx::query_as(HEARTBEAT)
                    .bind(lease_until)
                    .bind(id.to_string())
                    .bind(owner)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(|(c,)| c))
            }

            async fn request_cancel(&self, id: SagaId) -> Result<bool, StoreError> {
                let done = sqlx::query(CANCEL)
                    .bind(id.to_string())
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn deliver_reply(
                &self,
                id: SagaId,
                step: &str,
                reply: &StepReply,
            ) -> Result<bool, StoreError> {
                let done = sqlx::query(DELIVER_REPLY)
                    .bind(reply_out(reply))
                    .bind(id.to_string())
                    .bind(step)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn reply(&self, id: SagaId, step: &str) -> Result<Option<StepReply>, StoreError> {
                let row: Option<(Option<String>,)> = sqlx::query_as(REPLY)
                    .bind(id.to_string())
                    .bind(step)
                    .fetch_optional(&self.pool)
                    .await?;
                row.and_then(|(r,)| r)
                    .as_deref()
                    .map(parse_reply)
                    .transpose()
            }

            async fn recoverable(
                &self,
                now: Millis,
                limit: u32,
            ) -> Result<Vec<SagaId>, StoreError> {
                let rows: Vec<(String,)> = sqlx::query_as(RECOVERABLE)
                    .bind(now)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(|(id,)| parse_id(id)).collect()
            }

            async fn list(&self, query: &ListQuery) -> Result<Vec<Instance>, StoreError> {
                use sqlx::Row;
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {INSTANCE_COLUMNS} FROM sinew_saga_instances \
                     WHERE ($1 IS NULL OR status = $1) AND ($2 IS NULL OR saga_type = $2) \
                     ORDER BY created_at DESC, id DESC LIMIT $3"
                )))
                .bind(query.status.map(|s| s.as_str()))
                .bind(query.saga_type.as_deref())
                .bind(i64::from(query.limit))
                .fetch_all(&self.pool)
                .await?;
                let mut out = Vec::with_capacity(rows.len());
                for row in rows {
                    out.push(
                        InstanceRow {
                            id: row.try_get(0)?,
                            saga_type: row.try_get(1)?,
                            status: row.try_get(2)?,
                            data: row.try_get(3)?,
                            version: row.try_get(4)?,
                            lease_owner: row.try_get(5)?,
                            lease_until: row.try_get(6)?,
                            deadline: row.try_get(7)?,
                            cancel_requested: row.try_get(8)?,
                            reason: row.try_get(9)?,
                            created_at: row.try_get(10)?,
                            updated_at: row.try_get(11)?,
                        }
                        .decode()?,
                    );
                }
                Ok(out)
            }

            async fn find_awaiting(
                &self,
                correlation_key: &str,
            ) -> Result<Option<(SagaId, String)>, StoreError> {
                let row: Option<(String, String)> = sqlx::query_as(FIND_AWAITING)
                    .bind(correlation_key)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(|(id, step)| Ok((parse_id(&id)?, step))).transpose()
            }
        }
    };
}

pub(super) use impl_sql_store;
