#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Compile-time checks: every public handle, service and future is `Send` (and `Sync` where
//! it is shared).

use std::convert::Infallible;

use sinew_discovery::balance::{self, FailFastWhenEmpty, ServiceDiscover};
use sinew_discovery::memory::StaticRegistry;
use sinew_discovery::registry::{Changes, Feed, Query, Registry, Watch};
use sinew_discovery::{
    Discovery, DiscoveryError, Instance, P2c, Picked, Random, Rendezvous, RoundRobin, Snapshot,
    Weighted,
};
use tower::{Service, service_fn};

fn send<T: Send>(_: &T) {}
fn send_sync<T: Send + Sync>() {}

#[test]
fn handles_are_send_and_sync() {
    send_sync::<Discovery>();
    send_sync::<StaticRegistry>();
    send_sync::<Watch>();
    send_sync::<Feed>();
    send_sync::<Snapshot>();
    send_sync::<Picked>();
    send_sync::<Instance>();
    send_sync::<DiscoveryError>();
    send_sync::<RoundRobin>();
    send_sync::<Random>();
    send_sync::<Weighted>();
    send_sync::<P2c>();
    send_sync::<Rendezvous>();
    fn send_only<T: Send>() {}
    send_only::<Changes>();
    #[cfg(feature = "consul")]
    {
        use sinew_discovery::consul::{
            ConsulClient, ConsulError, ConsulRegistry, RegistrationHandle,
        };
        send_sync::<ConsulClient>();
        send_sync::<ConsulRegistry>();
        send_sync::<RegistrationHandle>();
        send_sync::<ConsulError>();
    }
    #[cfg(feature = "testing")]
    send_sync::<sinew_discovery::testing::FakeConsul>();
}

#[tokio::test]
async fn futures_and_services_are_send() {
    let registry = StaticRegistry::from_instances([Instance::new("a", "s", "h", 1)]);
    let discovery = Discovery::new(registry.clone());
    let picker = RoundRobin::new();
    send(&discovery.discover("s"));
    send(&discovery.pick("s", &picker));
    let watch = registry.watch(&Query::new("s"));
    send(&watch.loaded(std::time::Duration::from_secs(1), None));
    let make = |_: &Instance| service_fn(|_: ()| async { Ok::<_, Infallible>(()) });
    let discover = ServiceDiscover::new(&watch, make);
    send(&discover);
    let mut lb = balance::p2c(&watch, make);
    send(&lb);
    let _: &FailFastWhenEmpty<_> = &lb;
    std::future::poll_fn(|cx| lb.poll_ready(cx)).await.unwrap();
    send(&lb.call(()));
    #[cfg(feature = "consul")]
    {
        let client = sinew_discovery::consul::ConsulClient::builder()
            .build()
            .unwrap();
        send(&client.deregister("x"));
        send(&client.health_service(&Query::new("s"), None));
    }
}
