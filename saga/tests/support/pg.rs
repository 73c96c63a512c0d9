//! A PostgreSQL pool in a fresh schema per test (other suites share the server).
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, PgPool};

pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub fn url() -> String {
    std::env::var("SINEW_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// A pool whose connections use `schema` (created if missing).
pub async fn pool_in(schema: &str, max: u32) -> Result<PgPool, String> {
    let url = url();
    let search_path = schema.to_owned();
    PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(move |conn, _meta| {
            let search_path = search_path.clone();
            Box::pin(async move {
                sqlx::raw_sql(AssertSqlSafe(format!(
                    "SET search_path TO {search_path}; SET application_name = 'sinew-saga-test'"
                )))
                .execute(conn)
                .await
                .map(|_| ())
            })
        })
        .connect(&url)
        .await
        .map_err(|e| format!("PostgreSQL at {url} is unreachable: {e}"))
}

/// A pool in a fresh schema `{prefix}_{uuid}`, or why there is none.
pub async fn schema_pool(prefix: &str) -> Result<(PgPool, String), String> {
    let url = url();
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&url)
        .await
        .map_err(|e| format!("PostgreSQL at {url} is unreachable: {e}"))?;
    let schema = format!("{prefix}_{}", uuid::Uuid::now_v7().simple());
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .map_err(|e| format!("cannot create schema {schema}: {e}"))?;
    admin.close().await;
    Ok((pool_in(&schema, 8).await?, schema))
}

pub async fn drop_schema(pool: PgPool, schema: &str) {
    sqlx::raw_sql(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}
