//! Crash-test driver for `sinew-saga` (feature `crash-test`), run by `tests/crash`.
//!
//! ```text
//! saga-crash run     --db sqlite:PATH|postgres:URL#SCHEMA --sagas N --variant V --kill-at K
//! saga-crash recover --db ... [--kill-at K] [--exclusive] [--lease-ms L]
//! ```
//!
//! `run` starts N order sagas (create order → reserve inventory → process payment (pivot) →
//! send notification) and drives them. Every store commit and every participant call passes
//! numbered kill points (before/after each commit, on entering a participant and after its
//! effect). At point K the process prints `KILL K <label>` and freezes (one thread, blocked)
//! until the test kills it with SIGKILL. Otherwise it prints `DONE points=P`.
//!
//! `recover` runs `Orchestrator::recover` until no instance is running or compensating.
//!
//! Participants record every call in `crash_calls` and apply their effect at most once per
//! idempotency key in `crash_effects`, in the same database. With `--exclusive`, they also
//! check that no other process is inside a participant of the same saga
//! (`crash_active`/`crash_violations`).
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test driver binary: it talks to its parent over stdout and aborts on setup errors"
)]

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sinew_saga::store::{Acquired, Commit, Instance, PgStore, Snapshot, SqliteStore, StepReply};
use sinew_saga::{
    ListQuery, Orchestrator, RetryPolicy, Saga, SagaId, SagaStatus, SagaStore, Step, StepContext,
    StepError, StoreError,
};
use sqlx::AssertSqlSafe;

static POINTS: AtomicU64 = AtomicU64::new(0);
static KILL_AT: AtomicU64 = AtomicU64::new(0);

/// A numbered kill point: at the chosen one, announce it and freeze the process.
fn hit(label: &str) {
    let n = POINTS.fetch_add(1, Ordering::SeqCst) + 1;
    if n == KILL_AT.load(Ordering::SeqCst) {
        let mut out = std::io::stdout().lock();
        writeln!(out, "KILL {n} {label}").unwrap();
        out.flush().unwrap();
        loop {
            // Blocks the runtime's only thread: no heartbeat, no progress, until SIGKILL.
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

/// A store wrapper with kill points around every write.
#[derive(Clone)]
struct KillStore<S>(S);

impl<S: SagaStore> SagaStore for KillStore<S> {
    async fn create(&self, instance: &Instance) -> Result<(), StoreError> {
        hit("before create");
        let r = self.0.create(instance).await;
        hit("after create");
        r
    }
    async fn load(&self, id: SagaId) -> Result<Option<Snapshot>, StoreError> {
        self.0.load(id).await
    }
    async fn acquire(
        &self,
        id: SagaId,
        owner: &str,
        now: i64,
        lease_until: i64,
    ) -> Result<Acquired, StoreError> {
        let r = self.0.acquire(id, owner, now, lease_until).await;
        hit("after acquire");
        r
    }
    async fn commit(
        &self,
        id: SagaId,
        owner: &str,
        expected_version: u64,
        commit: &Commit,
    ) -> Result<u64, StoreError> {
        let what = commit.record.as_ref().map_or_else(
            || format!("status {}", commit.status),
            |r| format!("{}/{} {}", r.step, r.phase, r.state),
        );
        hit(&format!("before commit {what}"));
        let r = self.0.commit(id, owner, expected_version, commit).await;
        hit(&format!("after commit {what}"));
        r
    }
    async fn heartbeat(
        &self,
        id: SagaId,
        owner: &str,
        lease_until: i64,
    ) -> Result<Option<bool>, StoreError> {
        self.0.heartbeat(id, owner, lease_until).await
    }
    async fn request_cancel(&self, id: SagaId) -> Result<bool, StoreError> {
        self.0.request_cancel(id).await
    }
    async fn deliver_reply(
        &self,
        id: SagaId,
        step: &str,
        reply: &StepReply,
    ) -> Result<bool, StoreError> {
        self.0.deliver_reply(id, step, reply).await
    }
    async fn reply(&self, id: SagaId, step: &str) -> Result<Option<StepReply>, StoreError> {
        self.0.reply(id, step).await
    }
    async fn recoverable(&self, now: i64, limit: u32) -> Result<Vec<SagaId>, StoreError> {
        self.0.recoverable(now, limit).await
    }
    async fn list(&self, query: &ListQuery) -> Result<Vec<Instance>, StoreError> {
        self.0.list(query).await
    }
    async fn find_awaiting(
        &self,
        correlation_key: &str,
    ) -> Result<Option<(SagaId, String)>, StoreError> {
        self.0.find_awaiting(correlation_key).await
    }
}

/// The participants' own tables, in the saga store's database.
#[derive(Clone)]
enum Effects {
    Sqlite(sqlx::SqlitePool),
    Pg(sqlx::PgPool),
}

const SIDE_TABLES: &str = "\
    CREATE TABLE IF NOT EXISTS crash_effects (idempotency_key TEXT PRIMARY KEY, \
        saga_id TEXT NOT NULL, step TEXT NOT NULL, phase TEXT NOT NULL); \
    CREATE TABLE IF NOT EXISTS crash_calls (saga_id TEXT NOT NULL, step TEXT NOT NULL, \
        phase TEXT NOT NULL, idempotency_key TEXT NOT NULL, owner TEXT NOT NULL, \
        attempt BIGINT NOT NULL); \
    CREATE TABLE IF NOT EXISTS crash_active (saga_id TEXT PRIMARY KEY, owner TEXT NOT NULL); \
    CREATE TABLE IF NOT EXISTS crash_violations (saga_id TEXT NOT NULL, owner TEXT NOT NULL);";

macro_rules! on_db {
    ($effects:expr, $pool:ident => $body:expr) => {
        match $effects {
            Effects::Sqlite($pool) => $body,
            Effects::Pg($pool) => $body,
        }
    };
}

impl Effects {
    async fn setup(&self) {
        on_db!(self, pool => { sqlx::raw_sql(SIDE_TABLES).execute(pool).await.unwrap(); });
    }

    async fn exec(&self, sql: &'static str, binds: &[String]) -> u64 {
        on_db!(self, pool => {
            let mut q = sqlx::query(sql);
            for b in binds {
                q = q.bind(b.clone());
            }
            q.execute(pool).await.map(|r| r.rows_affected()).map_err(|e| e.to_string())
        })
        .unwrap_or_else(|e| panic!("side table write failed: {e}"))
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct CrashOrder {
    n: u64,
    /// 0: succeeds; 1: payment declined (compensates); 2: notification fails once.
    variant: u8,
}

#[derive(Clone)]
struct Participant {
    effects: Effects,
    owner: String,
    exclusive: bool,
}

impl Participant {
    async fn call(&self, cx: &StepContext<CrashOrder>) -> Result<(), StepError> {
        let label = format!("{}/{}", cx.step(), cx.phase());
        hit(&format!("enter {label}"));
        let saga = cx.saga_id().to_string();
        let key = cx.idempotency_key().to_string();
        if self.exclusive {
            let n = self
                .effects
                .exec(
                    "INSERT INTO crash_active (saga_id, owner) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    &[saga.clone(), self.owner.clone()],
                )
                .await;
            if n == 0 {
                self.effects
                    .exec(
                        "INSERT INTO crash_violations (saga_id, owner) VALUES ($1, $2)",
                        &[saga.clone(), self.owner.clone()],
                    )
                    .await;
            }
        }
        self.effects
            .exec(
                "INSERT INTO crash_calls (saga_id, step, phase, idempotency_key, owner, attempt) \
                 VALUES ($1, $2, $3, $4, $5, CAST($6 AS BIGINT))",
                &[
                    saga.clone(),
                    cx.step().to_owned(),
                    cx.phase().to_string(),
                    key.clone(),
                    self.owner.clone(),
                    cx.attempt().to_string(),
                ],
            )
            .await;
        let data = cx.data();
        let result = if cx.step() == "process-payment" && data.variant == 1 {
            Err(StepError::terminal("card declined"))
        } else if cx.step() == "send-notification" && data.variant == 2 && cx.attempt() == 1 {
            Err(StepError::retryable("smtp busy"))
        } else {
            self.effects
                .exec(
                    "INSERT INTO crash_effects (idempotency_key, saga_id, step, phase) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    &[
                        key,
                        saga.clone(),
                        cx.step().to_owned(),
                        cx.phase().to_string(),
                    ],
                )
                .await;
            Ok(())
        };
        if self.exclusive {
            self.effects
                .exec(
                    "DELETE FROM crash_active WHERE saga_id = $1 AND owner = $2",
                    &[saga, self.owner.clone()],
                )
                .await;
        }
        hit(&format!("effect {label}"));
        result
    }
}

fn saga(p: &Participant) -> Saga<CrashOrder> {
    let retry = RetryPolicy::builder()
        .initial_backoff(Duration::from_millis(10))
        .max_backoff(Duration::from_millis(50))
        .build()
        .unwrap();
    let action = |p: &Participant| {
        let p = p.clone();
        move |cx: StepContext<CrashOrder>| {
            let p = p.clone();
            async move { p.call(&cx).await.map(|()| cx.data().n) }
        }
    };
    let undo = |p: &Participant| {
        let p = p.clone();
        move |cx: StepContext<CrashOrder>| {
            let p = p.clone();
            async move { p.call(&cx).await }
        }
    };
    Saga::builder("crash-order")
        .step(Step::compensatable("create-order", action(p), undo(p)).retry(retry.clone()))
        .step(Step::compensatable("reserve-inventory", action(p), undo(p)).retry(retry.clone()))
        .step(Step::pivot("process-payment", action(p)).retry(retry.clone()))
        .step(Step::retriable("send-notification", action(p)).retry(retry.clone()))
        .compensation_retry(retry)
        .build()
        .unwrap()
}

struct Args {
    mode: String,
    db: String,
    sagas: u64,
    variant: Option<u8>,
    kill_at: u64,
    exclusive: bool,
    first: u64,
    lease_ms: u64,
}

fn args() -> Args {
    let mut it = std::env::args().skip(1);
    let mode = it.next().unwrap_or_default();
    let mut a = Args {
        mode,
        db: String::new(),
        sagas: 1,
        variant: None,
        kill_at: 0,
        exclusive: false,
        first: 0,
        lease_ms: 300,
    };
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--db" => a.db = it.next().unwrap(),
            "--sagas" => a.sagas = it.next().unwrap().parse().unwrap(),
            "--variant" => a.variant = Some(it.next().unwrap().parse().unwrap()),
            "--kill-at" => a.kill_at = it.next().unwrap().parse().unwrap(),
            "--first" => a.first = it.next().unwrap().parse().unwrap(),
            "--exclusive" => a.exclusive = true,
            "--lease-ms" => a.lease_ms = it.next().unwrap().parse().unwrap(),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

async fn pg_pool(spec: &str) -> sqlx::PgPool {
    let (url, schema) = spec.split_once('#').expect("postgres:URL#SCHEMA");
    let schema = schema.to_owned();
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .after_connect(move |conn, _| {
            let schema = schema.clone();
            Box::pin(async move {
                sqlx::raw_sql(AssertSqlSafe(format!(
                    "SET search_path TO {schema}; SET application_name = 'sinew-saga-crash'"
                )))
                .execute(conn)
                .await
                .map(|_| ())
            })
        })
        .connect(url)
        .await
        .unwrap()
}

async fn drive<S: SagaStore + Clone>(store: S, effects: Effects, a: Args) {
    effects.setup().await;
    let owner = format!("{}-{}", a.mode, std::process::id());
    let p = Participant {
        effects,
        owner: owner.clone(),
        exclusive: a.exclusive,
    };
    KILL_AT.store(a.kill_at, Ordering::SeqCst);
    let orch = Orchestrator::builder(KillStore(store))
        .owner_id(owner)
        .lease(Duration::from_millis(a.lease_ms))
        .heartbeat(Duration::from_millis(a.lease_ms / 5))
        .register(saga(&p))
        .build()
        .unwrap();
    match a.mode.as_str() {
        "run" => {
            let mut ids = Vec::new();
            for i in 0..a.sagas {
                let n = a.first + i;
                let variant = a.variant.unwrap_or((n % 3) as u8);
                ids.push(
                    orch.start("crash-order", &CrashOrder { n, variant })
                        .await
                        .unwrap(),
                );
            }
            let runs = ids.iter().map(|id| orch.run(*id));
            for r in futures_util::future::join_all(runs).await {
                r.unwrap();
            }
        }
        "recover" => {
            let give_up = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                for (id, r) in orch.recover().await.unwrap() {
                    if let Err(e) = r
                        && !e.is_leased()
                        && !matches!(e, sinew_saga::SagaError::LeaseLost { .. })
                    {
                        panic!("recovering {id} failed: {e}");
                    }
                }
                let mut active = 0;
                for status in [SagaStatus::Running, SagaStatus::Compensating] {
                    active += orch
                        .instances(&ListQuery::default().status(status).limit(10_000))
                        .await
                        .unwrap()
                        .len();
                }
                if active == 0 {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < give_up,
                    "{active} sagas never finished"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        other => panic!("unknown mode {other}"),
    }
    println!("DONE points={}", POINTS.load(Ordering::SeqCst));
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        if let Some(path) = a.db.strip_prefix("sqlite:") {
            let store = SqliteStore::open(path).await.unwrap();
            let effects = Effects::Sqlite(store.pool().clone());
            drive(store, effects, a).await;
        } else if let Some(spec) = a.db.strip_prefix("postgres:") {
            let pool = pg_pool(spec).await;
            let store = PgStore::new(pool.clone());
            store.migrate().await.unwrap();
            drive(store, Effects::Pg(pool), a).await;
        } else {
            panic!("--db sqlite:PATH or postgres:URL#SCHEMA");
        }
    });
}
