//! The orchestrator on the PostgreSQL store, against a real server at `127.0.0.1:5432` (user
//! `postgres`, database `test`; `SINEW_TEST_DATABASE_URL` overrides). Each test works in its
//! own schema, dropped at the end. Without a server the tests fail under `CI=true` and are
//! skipped otherwise.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../support/mod.rs"]
mod support;

use sinew_saga::store::PgStore;
use support::cases;
use support::pg::{drop_schema, schema_pool};

async fn setup() -> Option<(PgStore, sqlx::PgPool, String)> {
    match schema_pool("saga_test").await {
        Ok((pool, schema)) => {
            let store = PgStore::new(pool.clone());
            store.migrate().await.unwrap();
            store.migrate().await.unwrap();
            Some((store, pool, schema))
        }
        Err(reason) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true and {reason}"
            );
            tracing::warn!("skipped: {reason}");
            None
        }
    }
}

macro_rules! case {
    ($name:ident) => {
        #[tokio::test]
        async fn $name() {
            support::trace_init();
            let Some((store, pool, schema)) = setup().await else {
                return;
            };
            cases::$name(store).await;
            drop_schema(pool, &schema).await;
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
async fn concurrent_acquires_of_an_expired_lease_have_one_winner() {
    use sinew_saga::store::{Acquired, Instance};
    use sinew_saga::{SagaId, SagaStore};
    let Some((store, pool, schema)) = setup().await else {
        return;
    };
    for _ in 0..20 {
        let id = SagaId::new();
        store
            .create(&Instance::new(id, "t", serde_json::json!(null), 0))
            .await
            .unwrap();
        let racers = (0..4).map(|n| {
            let store = store.clone();
            async move {
                store
                    .acquire(id, &format!("p{n}"), 10, 1_000)
                    .await
                    .unwrap()
            }
        });
        let results = futures_util::future::join_all(racers).await;
        let winners = results
            .iter()
            .filter(|r| matches!(r, Acquired::Yes(_)))
            .count();
        assert_eq!(winners, 1);
    }
    drop_schema(pool, &schema).await;
}
