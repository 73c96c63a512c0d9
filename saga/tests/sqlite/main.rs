//! The orchestrator on the SQLite store (a temporary file per test, real time).
#![cfg(feature = "sqlite")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../support/mod.rs"]
mod support;

use sinew_saga::store::SqliteStore;
use support::cases;

async fn store() -> (SqliteStore, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("sinew-saga-test-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = SqliteStore::open(dir.join("sagas.db")).await.unwrap();
    // Migrating twice is harmless.
    store.migrate().await.unwrap();
    (store, dir)
}

macro_rules! case {
    ($name:ident) => {
        #[tokio::test]
        async fn $name() {
            support::trace_init();
            let (store, dir) = store().await;
            cases::$name(store).await;
            let _ = std::fs::remove_dir_all(dir);
        }
    };
}

case!(success_and_query);
case!(failure_compensates_in_reverse);
case!(stuck_then_skip);
case!(async_reply_from_another_orchestrator);
case!(recovery_after_a_dead_driver);
case!(store_semantics);
case!(cancel_from_another_process);

#[tokio::test]
async fn in_memory_database_works() {
    cases::store_semantics(SqliteStore::in_memory().await.unwrap()).await;
}

#[tokio::test]
async fn data_survives_reopening_the_file() {
    let (store, dir) = store().await;
    cases::success_and_query(store.clone()).await;
    store.pool().close().await;
    let reopened = SqliteStore::open(dir.join("sagas.db")).await.unwrap();
    let all = sinew_saga::SagaStore::list(&reopened, &sinew_saga::ListQuery::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    let _ = std::fs::remove_dir_all(dir);
}
