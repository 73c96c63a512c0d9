//! Sagas per second for a 4-step order saga (two compensatable steps, a pivot, a retriable
//! step; every participant returns at once) on the memory, SQLite and PostgreSQL stores,
//! next to calling the same four step functions directly. The per-step overhead of the
//! orchestrator is `(saga time - direct time) / 4`.
//!
//! Run with
//! `cargo bench -p sinew-saga --features postgres --bench saga -- --warm-up-time 1 --measurement-time 5`.
//! PostgreSQL at `127.0.0.1:5432` (`SINEW_TEST_DATABASE_URL` overrides) is used when
//! reachable, in a schema of its own, dropped afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde::{Deserialize, Serialize};
use sinew_saga::store::SqliteStore;
use sinew_saga::{
    MemoryStore, Orchestrator, Saga, SagaStatus, SagaStore, Step, StepContext, StepError,
};

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Order {
    id: u64,
    amount: u64,
}

// The participants' work, shared by the direct calls and the saga steps.
async fn create_order(o: &Order) -> Result<u64, StepError> {
    Ok(black_box(o.id))
}
async fn reserve_inventory(o: &Order) -> Result<u64, StepError> {
    Ok(black_box(o.amount))
}
async fn process_payment(o: &Order) -> Result<u64, StepError> {
    Ok(black_box(o.amount + 1))
}
async fn send_notification(o: &Order) -> Result<(), StepError> {
    black_box(o);
    Ok(())
}

async fn create(cx: StepContext<Order>) -> Result<u64, StepError> {
    create_order(cx.data()).await
}
async fn reserve(cx: StepContext<Order>) -> Result<u64, StepError> {
    reserve_inventory(cx.data()).await
}
async fn pay(cx: StepContext<Order>) -> Result<u64, StepError> {
    process_payment(cx.data()).await
}
async fn notify(cx: StepContext<Order>) -> Result<(), StepError> {
    send_notification(cx.data()).await
}
async fn undo(_cx: StepContext<Order>) -> Result<(), StepError> {
    Ok(())
}

fn saga() -> Saga<Order> {
    Saga::builder("order")
        .step(Step::compensatable("create-order", create, undo))
        .step(Step::compensatable("reserve-inventory", reserve, undo))
        .step(Step::pivot("process-payment", pay))
        .step(Step::retriable("send-notification", notify))
        .build()
        .unwrap()
}

fn orchestrator<S: SagaStore>(store: S) -> Orchestrator<S> {
    Orchestrator::builder(store)
        .register(saga())
        .build()
        .unwrap()
}

const ORDER: Order = Order { id: 7, amount: 100 };

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("saga_4_steps");
    g.throughput(Throughput::Elements(1));

    // The four participants called directly, in order, without a saga.
    let memory = orchestrator(MemoryStore::new());
    g.bench_function("direct_calls", |b| {
        b.to_async(&rt).iter(|| async {
            let order = black_box(ORDER);
            let a = create_order(&order).await.unwrap();
            let r = reserve_inventory(&order).await.unwrap();
            let p = process_payment(&order).await.unwrap();
            send_notification(&order).await.unwrap();
            black_box((a, r, p));
        });
    });
    g.bench_function("memory_store", |b| {
        b.to_async(&rt).iter(|| async {
            let (_, s) = memory.execute("order", &ORDER).await.unwrap();
            assert_eq!(s, SagaStatus::Completed);
        });
    });

    let dir = std::env::temp_dir().join(format!("sinew-saga-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sqlite = orchestrator(
        rt.block_on(SqliteStore::open(dir.join("bench.db")))
            .unwrap(),
    );
    g.bench_function("sqlite_store", |b| {
        b.to_async(&rt).iter(|| async {
            let (_, s) = sqlite.execute("order", &ORDER).await.unwrap();
            assert_eq!(s, SagaStatus::Completed);
        });
    });

    #[cfg(feature = "postgres")]
    {
        let url = std::env::var("SINEW_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let schema = format!("saga_bench_{}", std::process::id());
        let pool = rt.block_on(async {
            use sqlx::AssertSqlSafe;
            let admin = sqlx::PgPool::connect(&url).await.ok()?;
            sqlx::raw_sql(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                .execute(&admin)
                .await
                .ok()?;
            let search_path = schema.clone();
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(4)
                .after_connect(move |conn, _| {
                    let sp = search_path.clone();
                    Box::pin(async move {
                        sqlx::raw_sql(AssertSqlSafe(format!("SET search_path TO {sp}")))
                            .execute(conn)
                            .await
                            .map(|_| ())
                    })
                })
                .connect(&url)
                .await
                .ok()
                .map(|p| (p, admin))
        });
        if let Some((pool, admin)) = pool {
            let store = sinew_saga::store::PgStore::new(pool.clone());
            rt.block_on(store.migrate()).unwrap();
            let pg = orchestrator(store);
            g.bench_function("postgres_store", |b| {
                b.to_async(&rt).iter(|| async {
                    let (_, s) = pg.execute("order", &ORDER).await.unwrap();
                    assert_eq!(s, SagaStatus::Completed);
                });
            });
            rt.block_on(async {
                pool.close().await;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                    .execute(&admin)
                    .await
                    .unwrap();
            });
        }
    }
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
