//! The PostgreSQL inbox against a real server at `127.0.0.1:5432` (user `postgres`, database
//! `test`; `SINEW_TEST_DATABASE_URL` overrides). Each test works in its own schema, dropped at
//! the end, so parallel runs do not clash. Without a server the tests fail under `CI=true` and
//! are skipped otherwise.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use sinew_messaging::inbox::Inbox;
use sinew_messaging::inbox::postgres::PgInbox;
use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, PgPool};

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A pool whose connections use a fresh schema, or why there is none.
async fn schema_pool() -> Result<(PgPool, String), String> {
    let url = std::env::var("SINEW_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned());
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&url)
        .await
        .map_err(|e| format!("PostgreSQL at {url} is unreachable: {e}"))?;
    let schema = format!("inbox_test_{}", uuid::Uuid::now_v7().simple());
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .map_err(|e| format!("cannot create schema {schema}: {e}"))?;
    admin.close().await;
    let search_path = schema.clone();
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .after_connect(move |conn, _meta| {
            let search_path = search_path.clone();
            Box::pin(async move {
                sqlx::raw_sql(AssertSqlSafe(format!("SET search_path TO {search_path}")))
                    .execute(conn)
                    .await
                    .map(|_| ())
            })
        })
        .connect(&url)
        .await
        .map_err(|e| format!("PostgreSQL at {url} is unreachable: {e}"))?;
    Ok((pool, schema))
}

async fn drop_schema(pool: PgPool, schema: &str) {
    sqlx::raw_sql(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

/// Connects and migrates, or returns why not (the test prints it and skips). Under `CI=true`
/// an unreachable server fails the test instead.
async fn setup() -> Result<(PgInbox, PgPool, String), String> {
    match schema_pool().await {
        Ok((pool, schema)) => {
            let inbox = PgInbox::new(pool.clone());
            inbox.migrate().await.unwrap();
            Ok((inbox, pool, schema))
        }
        Err(reason) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true and {reason}"
            );
            Err(reason)
        }
    }
}

#[tokio::test]
async fn record_twice_is_new_then_duplicate_and_migrate_is_idempotent() {
    let (inbox, pool, schema) = match setup().await {
        Ok(v) => v,
        Err(reason) => {
            eprintln!("skipped: {reason}");
            return;
        }
    };
    inbox.migrate().await.unwrap();
    assert!(inbox.record("svc.a", "e1").await.unwrap());
    assert!(!inbox.record("svc.a", "e1").await.unwrap());
    assert!(inbox.record("svc.b", "e1").await.unwrap());
    assert!(inbox.forget("svc.b", "e1").await.unwrap());
    assert!(inbox.record("svc.b", "e1").await.unwrap());
    // Retention: nothing is an hour old; everything is older than zero once time passes.
    assert_eq!(
        inbox
            .purge_older_than(Duration::from_secs(3600))
            .await
            .unwrap(),
        0
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        inbox
            .purge_older_than(Duration::from_millis(1))
            .await
            .unwrap(),
        2
    );
    assert!(inbox.record("svc.a", "e1").await.unwrap());
    drop_schema(pool, &schema).await;
}

#[tokio::test]
async fn the_inbox_row_commits_and_rolls_back_with_the_handler_writes() {
    let (inbox, pool, schema) = match setup().await {
        Ok(v) => v,
        Err(reason) => {
            eprintln!("skipped: {reason}");
            return;
        }
    };
    sqlx::raw_sql("CREATE TABLE effects (event_id text PRIMARY KEY)")
        .execute(&pool)
        .await
        .unwrap();
    let count = |table: &'static str, id: &'static str| {
        let pool = pool.clone();
        async move {
            let sql = format!("SELECT count(*) FROM {table} WHERE event_id = $1");
            sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql))
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };

    // Rollback: neither the effect nor the inbox row.
    let mut tx = pool.begin().await.unwrap();
    assert!(inbox.record_in(&mut tx, "svc.q", "e1").await.unwrap());
    sqlx::query("INSERT INTO effects (event_id) VALUES ($1)")
        .bind("e1")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(count("effects", "e1").await, 0);
    assert_eq!(count("sinew_inbox", "e1").await, 0);

    // Commit: both.
    let mut tx = pool.begin().await.unwrap();
    assert!(inbox.record_in(&mut tx, "svc.q", "e1").await.unwrap());
    sqlx::query("INSERT INTO effects (event_id) VALUES ($1)")
        .bind("e1")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(count("effects", "e1").await, 1);
    assert_eq!(count("sinew_inbox", "e1").await, 1);

    // The redelivery sees the duplicate inside its own transaction.
    let mut tx = pool.begin().await.unwrap();
    assert!(!inbox.record_in(&mut tx, "svc.q", "e1").await.unwrap());
    tx.rollback().await.unwrap();
    drop_schema(pool, &schema).await;
}

#[tokio::test]
async fn concurrent_records_of_one_key_yield_exactly_one_first() {
    let (inbox, pool, schema) = match setup().await {
        Ok(v) => v,
        Err(reason) => {
            eprintln!("skipped: {reason}");
            return;
        }
    };
    for round in 0..20 {
        let id = format!("e{round}");
        // Two open transactions on two connections race for the same key.
        let mut a = pool.begin().await.unwrap();
        let mut b = pool.begin().await.unwrap();
        let first = inbox.record_in(&mut a, "svc.q", &id).await.unwrap();
        let second = {
            let inbox = inbox.clone();
            let id = id.clone();
            tokio::spawn(async move {
                // Blocks on the first transaction's uncommitted row until it commits.
                let new = inbox.record_in(&mut b, "svc.q", &id).await.unwrap();
                b.commit().await.unwrap();
                new
            })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        a.commit().await.unwrap();
        let second = second.await.unwrap();
        assert!(first ^ second, "round {round}: {first} {second}");
        assert!(first);
    }
    // And through the trait, from many tasks at once.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let inbox = inbox.clone();
            tokio::spawn(async move { inbox.record("svc.q", "shared").await.unwrap() })
        })
        .collect();
    let mut firsts = 0;
    for task in tasks {
        firsts += usize::from(task.await.unwrap());
    }
    assert_eq!(firsts, 1);
    drop_schema(pool, &schema).await;
}
