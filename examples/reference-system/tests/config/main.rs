#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The environment the binary reads: a value it cannot use stops it at startup with a message
//! naming the variable, instead of running on a default; `AMQP_QUEUE_TYPE=classic` runs the
//! system on classic queues (against the real RabbitMQ).

use std::process::Command;

/// Runs the binary on the embedded defaults with `args` and one variable set, expecting it
/// to fail at startup; returns its standard error.
fn startup_error(args: &[&str], variable: &str, value: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_reference-system"))
        .args(args)
        .env(variable, value)
        .env("RUST_LOG", "error")
        .env_remove("AMQP_URL")
        .env_remove("DATABASE_URL")
        .env_remove("CONSUL_HTTP_ADDR")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "{variable}={value} was accepted; stderr: {stderr}"
    );
    stderr
}

/// [`startup_error`], whose message names the variable and what it expects.
fn fails_with(args: &[&str], variable: &str, value: &str) -> String {
    let stderr = startup_error(args, variable, value);
    assert!(
        stderr.contains(&format!("{variable}=\"{value}\" is not valid: expected")),
        "{stderr}"
    );
    stderr
}

#[test]
fn a_value_that_does_not_parse_stops_the_binary_and_names_the_variable() {
    let stderr = fails_with(&["up"], "GATEWAY_ADDR", "localhost:http");
    assert!(stderr.contains("a socket address"), "{stderr}");
    fails_with(&["demo"], "GRPC_ADDR", "50051");
    let stderr = fails_with(&["demo"], "RATE_LIMIT", "100/min");
    assert!(stderr.contains("a whole number"), "{stderr}");
    fails_with(&["demo"], "PAYMENT_LIMIT", "1e6");
    let stderr = fails_with(&["serve", "post"], "PORT", "70000");
    assert!(stderr.contains("a TCP port number"), "{stderr}");
}

#[test]
fn a_static_discovery_table_with_a_typo_stops_the_service() {
    let stderr = startup_error(
        &["serve", "order"],
        "SERVICES",
        "inventory=http://127.0.0.1:3005;payment:http://127.0.0.1:3006",
    );
    assert!(
        stderr.contains("SERVICES entry `payment:http://127.0.0.1:3006` is not valid"),
        "{stderr}"
    );
}

#[test]
fn an_unknown_queue_type_stops_the_binary() {
    let stderr = fails_with(&["demo"], "AMQP_QUEUE_TYPE", "stream");
    if cfg!(feature = "rabbitmq") {
        assert!(stderr.contains("`quorum` or `classic`"), "{stderr}");
    } else {
        assert!(stderr.contains("without feature `rabbitmq`"), "{stderr}");
    }
}

#[cfg(feature = "rabbitmq")]
mod rabbitmq {
    use std::time::Duration;

    use sinew_messaging::Subscriber as _;
    use sinew_messaging::rabbitmq::{QueueType, RabbitBroker};
    use sinew_messaging::subscriber::SubscribeError;
    use sinew_reference_system::system::{System, SystemConfig};

    const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

    fn rabbit_up() -> bool {
        std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], 5672).into(), Duration::from_secs(1))
            .is_ok()
    }

    /// The queues `System::start` subscribes, with their routing keys.
    const QUEUES: [(&str, &str); 5] = [
        ("email", "welcome"),
        ("order", "saga"),
        ("inventory", "saga"),
        ("payment", "saga"),
        ("notification", "saga"),
    ];

    async fn broker(exchange: &str, queue_type: QueueType) -> RabbitBroker {
        RabbitBroker::builder(AMQP_URL)
            .exchange(exchange)
            .queue_type(queue_type)
            .connect()
            .await
            .unwrap()
    }

    /// `AMQP_QUEUE_TYPE=classic` (here its field): every subscription queue of the system is
    /// classic, and `user.created` still reaches the email service through one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_system_runs_on_classic_queues() {
        if !rabbit_up() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "RabbitMQ must be up on loopback (CI=true)"
            );
            eprintln!("skipped: RabbitMQ is not running on loopback");
            return;
        }
        let ns = format!("cq{}-", uuid::Uuid::now_v7().simple());
        let mut config = SystemConfig::embedded();
        config.amqp_url = Some(AMQP_URL.to_owned());
        config.queue_type = QueueType::Classic;
        config.bus_namespace.clone_from(&ns);
        let system = System::start(config).await.unwrap();

        let event = sinew_messaging::Event::new(
            "user.created",
            "user-classic",
            serde_json::json!({ "id": "user-classic", "email": "classic@example.com", "name": "C" }),
        );
        system
            .bus
            .publish_message(event.to_message("test").unwrap())
            .await
            .unwrap();
        let mut delivered = false;
        for _ in 0..250 {
            if system
                .email
                .sent()
                .iter()
                .any(|m| m.to == "classic@example.com")
            {
                delivered = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // The queues are classic: declaring one as quorum is refused with a typed error.
        let exchange = format!("{ns}domain-events");
        let quorum = broker(&exchange, QueueType::Quorum).await;
        let email = system.bus.subscription("email", "welcome", &["#"]).unwrap();
        let mismatch = quorum.subscriber().declare(&email).await;
        system.shutdown().await;

        // Clean up before asserting: declared again as classic, then deleted.
        let classic = broker(&exchange, QueueType::Classic).await;
        for (service, name) in QUEUES {
            let config =
                sinew_messaging::SubscriptionConfig::builder(format!("{ns}{service}"), name)
                    .routing_key("#")
                    .build()
                    .unwrap();
            let _ = classic.subscriber().declare(&config).await;
        }
        let _ = classic.delete_topology().await;

        assert!(delivered, "user.created never reached the email service");
        match mismatch {
            Err(SubscribeError::TopologyMismatch { argument, .. }) => {
                assert_eq!(argument, "x-queue-type");
            }
            other => panic!("declaring a classic queue as quorum gave {other:?}"),
        }
    }
}
