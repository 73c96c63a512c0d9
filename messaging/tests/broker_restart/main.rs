//! Broker restart under load, for real: 20 000 events published by several tasks while
//! RabbitMQ is stopped and started twice (`rabbitmqctl stop_app` / `start_app`). Every event
//! is received at least once.
//!
//! Stopping the broker disturbs every other test that uses it, so this test is `#[ignore]`d
//! and also needs `SINEW_BROKER_RESTART=1`: `scripts/test` runs it alone, after the other
//! tests, with both. Under `CI=true` a missing broker, `rabbitmqctl` or variable is a failure.
#![cfg(feature = "rabbitmq")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

#[path = "../rabbitmq/load.rs"]
mod load;

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const URI: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

async fn rabbitmqctl(args: &[&str]) {
    let status = tokio::process::Command::new("rabbitmqctl")
        .args(args)
        .status()
        .await
        .unwrap_or_else(|e| panic!("rabbitmqctl {args:?} cannot be run: {e}"));
    assert!(status.success(), "rabbitmqctl {args:?} failed: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "stops the shared broker: scripts/test runs it alone, after the other tests, with SINEW_BROKER_RESTART=1"]
async fn twenty_thousand_events_survive_two_broker_restarts() {
    if std::env::var("SINEW_BROKER_RESTART").as_deref() != Ok("1") {
        assert!(
            !ci(),
            "CI=true: run this test with SINEW_BROKER_RESTART=1 (scripts/test does)"
        );
        eprintln!("skipped: set SINEW_BROKER_RESTART=1 to let this test stop the broker");
        return;
    }
    let addr: SocketAddr = "127.0.0.1:5672".parse().unwrap();
    if let Err(e) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
        assert!(
            !ci(),
            "RabbitMQ is not reachable on {addr} and CI=true: {e}"
        );
        eprintln!("skipped: RabbitMQ is not reachable on {addr} ({e})");
        return;
    }
    let app_id = format!("restart-{}", uuid::Uuid::now_v7().simple());
    load::restart_under_load(URI, &app_id, |round| async move {
        eprintln!("outage {round}: rabbitmqctl stop_app");
        rabbitmqctl(&["stop_app", "--quiet"]).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        rabbitmqctl(&["start_app", "--quiet"]).await;
        rabbitmqctl(&["await_startup", "--quiet"]).await;
        eprintln!("outage {round}: broker back");
    })
    .await;
}
