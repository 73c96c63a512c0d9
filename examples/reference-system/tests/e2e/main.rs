#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! End to end in one process, on the embedded defaults: every demo step.

use sinew_reference_system::demo;
use sinew_reference_system::system::{System, SystemConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_passes_every_step() {
    let mut system = System::start(SystemConfig::embedded()).await.unwrap();
    // `demo::run` checks every expectation of each step and fails at the first unmet one.
    let report = demo::run(&mut system).await.unwrap();
    let numbers: Vec<usize> = report.steps.iter().map(|s| s.number).collect();
    assert_eq!(numbers, [1, 2, 3, 4, 5, 6, 7, 8]);
    assert!(
        report.to_string().contains("Compensated") || report.to_string().contains("compensated")
    );
    system.shutdown().await;
}

/// The email service is idempotent through the inbox: the same `user.created` delivered
/// twice (same event ID) sends one email.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicated_user_created_sends_one_email() {
    let system = System::start(SystemConfig::embedded()).await.unwrap();
    let event = sinew_messaging::Event::new(
        "user.created",
        "user-dup",
        serde_json::json!({ "id": "user-dup", "email": "dup@example.com", "name": "Dup" }),
    );
    let message = event.to_message("test").unwrap();
    system.bus.publish_message(message.clone()).await.unwrap();
    system.bus.publish_message(message).await.unwrap();
    let queue = system.bus.queue("email", "welcome");
    for _ in 0..250 {
        if system
            .email
            .sent()
            .iter()
            .any(|m| m.to == "dup@example.com")
            && system.bus.is_settled(&queue) == Some(true)
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        system.bus.is_settled(&queue),
        Some(true),
        "both copies were settled"
    );
    let sent = system.email.sent();
    assert_eq!(
        sent.iter().filter(|m| m.to == "dup@example.com").count(),
        1,
        "{sent:?}"
    );
    system.shutdown().await;
}

/// `user.created` goes through the user store's SQLite outbox: a created user's event is
/// published once and its row marked sent; a create that fails (email taken) leaves nothing
/// in the outbox and sends no email.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_created_goes_through_the_outbox_once() {
    use sinew_reference_system::user::UserService;
    use sinew_reference_system::user::store::{StoreError, UserOutbox};

    let system = System::start(SystemConfig::embedded()).await.unwrap();
    let Some(UserOutbox::Sqlite(outbox)) = system.user_store.outbox() else {
        panic!("the embedded default has a SQLite outbox");
    };
    let service = UserService::new(system.user_store.clone(), system.bus.clone(), "test");
    service
        .create("outbox@example.com", "Out", "long enough password")
        .await
        .unwrap();
    let again = service
        .create("outbox@example.com", "Again", "long enough password")
        .await;
    assert!(matches!(again, Err(StoreError::Conflict)), "{again:?}");
    let mut sent = 0;
    for _ in 0..250 {
        let stats = outbox.stats().await.unwrap();
        let mails = system
            .email
            .sent()
            .iter()
            .filter(|m| m.to == "outbox@example.com")
            .count();
        if stats.sent >= 1 && stats.pending == 0 && mails >= 1 {
            sent = mails;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let stats = outbox.stats().await.unwrap();
    assert_eq!((stats.pending, stats.failed, stats.sent), (0, 0, 1));
    assert_eq!(sent, 1, "one welcome email");
    system.shutdown().await;
}
