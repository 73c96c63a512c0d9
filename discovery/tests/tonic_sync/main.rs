#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `sync_tonic_channel` against two real HTTP/2 servers: the balanced channel follows the
//! registry (new instance reached, removed instance no longer called).

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::BodyExt;
use sinew_discovery::Instance;
use sinew_discovery::balance::sync_tonic_channel;
use sinew_discovery::memory::StaticRegistry;
use sinew_discovery::registry::{Query, Registry};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};
use tower::{Service, ServiceExt};

async fn server(name: &'static str) -> SocketAddr {
    let incoming = TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = incoming.local_addr().unwrap();
    let router =
        axum::Router::new().route("/whoami", axum::routing::post(move || async move { name }));
    tokio::spawn(async move {
        Server::builder()
            .add_routes(router.into())
            .serve_with_incoming(incoming)
            .await
            .unwrap();
    });
    addr
}

async fn whoami(channel: &mut Channel) -> String {
    let request = http::Request::post("/whoami")
        .body(tonic::body::Body::empty())
        .unwrap();
    let response = channel.ready().await.unwrap().call(request).await.unwrap();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// Calls until `expected` answers `streak` times in a row (bounded: no timing assertion).
async fn until_only(channel: &mut Channel, expected: &str, streak: usize) {
    let mut in_a_row = 0;
    for _ in 0..400 {
        if whoami(channel).await == expected {
            in_a_row += 1;
            if in_a_row == streak {
                return;
            }
        } else {
            in_a_row = 0;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    panic!("the channel never settled on {expected}");
}

#[tokio::test]
async fn the_channel_follows_the_registry() {
    let a = server("a").await;
    let b = server("b").await;
    let registry =
        StaticRegistry::from_instances([Instance::new("a", "echo", "127.0.0.1", a.port())]);
    let watch = registry.watch(&Query::new("echo"));
    let (mut channel, _sync) =
        sync_tonic_channel(&watch, |i: &Instance| Endpoint::from_shared(i.url("http")));
    until_only(&mut channel, "a", 5).await;

    registry.insert(Instance::new("b", "echo", "127.0.0.1", b.port()));
    registry.remove("echo", "a");
    until_only(&mut channel, "b", 20).await;
}
