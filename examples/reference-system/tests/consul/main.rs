#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! With `CONSUL_HTTP_ADDR`, `reference-system serve` registers each service in Consul, the
//! gateway finds them there, and SIGTERM deregisters. Consul cannot be installed here, so
//! this runs against `sinew-discovery`'s in-process `FakeConsul` (Consul's documented agent
//! and health API).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use sinew_discovery::testing::FakeConsul;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Kill(Vec<Child>);

impl Drop for Kill {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn serve(consul: &FakeConsul, service: &str, id: &str, port: u16, data: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_reference-system"))
        .args(["serve", service])
        .env("CONSUL_HTTP_ADDR", consul.address())
        .env("SERVICE_HOST", "127.0.0.1")
        .env("INSTANCE_ID", id)
        .env("PORT", port.to_string())
        .env("DATA_DIR", data)
        .env("JWT_SECRET", "consul-test-secret-0123456789abcdef")
        .env("RUST_LOG", "warn")
        .env_remove("AMQP_URL")
        .env_remove("DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..300 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_register_are_found_and_deregister_on_sigterm() {
    let consul = FakeConsul::start().await.unwrap();
    let data = std::env::temp_dir().join(format!("sinew-consul-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&data).unwrap();
    let (post_port, gateway_port) = (free_port(), free_port());
    let mut children = Kill(vec![
        serve(&consul, "post", "post-a", post_port, &data),
        serve(&consul, "gateway", "gateway-a", gateway_port, &data),
    ]);
    eventually("both registrations", || {
        let ids = consul.service_ids();
        ids.contains(&"post-a".to_owned()) && ids.contains(&"gateway-a".to_owned())
    })
    .await;
    let body = consul.registration_body("post-a").unwrap();
    assert_eq!(body["Name"], "post");
    assert_eq!(body["Port"], post_port);

    // The gateway discovers the post service through Consul.
    let http = reqwest::Client::new();
    let gw = format!("http://127.0.0.1:{gateway_port}");
    let mut token = Value::Null;
    for _ in 0..100 {
        if let Ok(r) = http
            .post(format!("{gw}/auth/token"))
            .json(&json!({ "username": "demo", "password": "sinew-demo" }))
            .send()
            .await
        {
            token = r.json().await.unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let token = token["token"].as_str().unwrap().to_owned();
    let r = http
        .post(format!("{gw}/api/posts"))
        .bearer_auth(&token)
        .json(&json!({ "body": "found through Consul" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["x-upstream-instance"], "post-a");

    // SIGTERM: the post service deregisters before it exits.
    let post = children.0.remove(0);
    let status = Command::new("kill")
        .args(["-TERM", &post.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut post = post;
    let exit = tokio::task::spawn_blocking(move || post.wait().unwrap())
        .await
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    assert!(
        !consul.service_ids().contains(&"post-a".to_owned()),
        "{:?}",
        consul.service_ids()
    );

    drop(children);
    let _ = std::fs::remove_dir_all(&data);
}
