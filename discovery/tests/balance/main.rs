#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Cache-first discovery over the static registry, the tower Discover stream, and a p2c
//! balancer with instances coming and going while requests flow.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use sinew_discovery::balance::{self, ServiceDiscover};
use sinew_discovery::memory::StaticRegistry;
use sinew_discovery::registry::{Feed, Query, Registry, Watch};
use sinew_discovery::{Discovery, DiscoveryError, Instance, InstanceId, RoundRobin};
use tower::discover::Change;
use tower::{Service, ServiceExt, service_fn};

fn inst(id: &str, port: u16) -> Instance {
    Instance::new(id, "users", "127.0.0.1", port)
}

/// A backend whose first result arrives only when the test says so.
struct Slow {
    feed: Arc<Feed>,
}

impl Registry for Slow {
    fn watch(&self, _query: &Query) -> Watch {
        self.feed.watch()
    }
}

#[tokio::test(start_paused = true)]
async fn first_read_waits_for_the_initial_load_up_to_the_timeout() {
    let feed = Arc::new(Feed::new("users"));
    let discovery = Discovery::builder(Slow { feed: feed.clone() })
        .initial_load_timeout(Duration::from_secs(3))
        .build()
        .unwrap();

    let err = discovery.discover("users").await.unwrap_err();
    assert!(matches!(err, DiscoveryError::NotLoaded { .. }), "{err:?}");
    assert!(err.is_unavailable());

    let publisher = feed.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        publisher.publish(vec![inst("a", 1)]);
    });
    let snapshot = discovery.discover("users").await.unwrap();
    assert_eq!(snapshot.len(), 1);
    // Later reads are memory reads.
    assert_eq!(
        discovery
            .try_pick("users", &RoundRobin::new())
            .unwrap()
            .id
            .as_str(),
        "a"
    );
}

#[tokio::test(start_paused = true)]
async fn pick_on_an_empty_service_is_no_instances() {
    let discovery = Discovery::new(StaticRegistry::new());
    let err = discovery
        .pick("nobody", &RoundRobin::new())
        .await
        .unwrap_err();
    assert!(err.is_no_instances(), "{err:?}");
}

#[tokio::test(start_paused = true)]
async fn subscribe_yields_the_current_set_then_each_change() {
    let registry = StaticRegistry::from_instances([inst("a", 1)]);
    let discovery = Discovery::new(registry.clone());
    let mut changes = discovery.subscribe("users");
    assert_eq!(changes.next().await.unwrap().len(), 1);
    registry.insert(inst("b", 2));
    let s = changes.next().await.unwrap();
    assert_eq!(s.len(), 2);
    assert_eq!(s.version(), 2);
    // Re-inserting an identical instance is not a change.
    registry.insert(inst("b", 2));
    registry.remove("users", "a");
    let s = changes.next().await.unwrap();
    assert_eq!(s.version(), 3);
    assert_eq!(s.instances()[0].id.as_str(), "b");
}

fn describe(change: &Change<InstanceId, u16>) -> String {
    match change {
        Change::Insert(id, port) => format!("+{id}:{port}"),
        Change::Remove(id) => format!("-{id}"),
    }
}

#[tokio::test(start_paused = true)]
async fn discover_stream_diffs_snapshots() {
    let registry = StaticRegistry::from_instances([inst("a", 1), inst("b", 2)]);
    let watch = registry.watch(&Query::new("users"));
    let mut discover = ServiceDiscover::new(&watch, |i: &Instance| i.port);
    let mut next = async || describe(&discover.next().await.unwrap().unwrap());
    assert_eq!(next().await, "+a:1");
    assert_eq!(next().await, "+b:2");

    registry.insert(inst("a", 11)); // moved: remove then insert
    assert_eq!(next().await, "-a");
    assert_eq!(next().await, "+a:11");

    registry.insert(inst("b", 2).tag("new")); // metadata only: nothing
    registry.remove("users", "b");
    assert_eq!(next().await, "-b");
    registry.insert(inst("c", 3));
    assert_eq!(next().await, "+c:3");
}

#[tokio::test(start_paused = true)]
async fn p2c_fails_fast_when_empty_and_recovers() {
    let registry = StaticRegistry::from_instances([inst("a", 1)]);
    let watch = registry.watch(&Query::new("users"));
    let mut lb = balance::p2c(&watch, |i: &Instance| {
        let port = i.port;
        service_fn(move |_: ()| async move { Ok::<_, Infallible>(port) })
    });
    assert_eq!(lb.ready().await.unwrap().call(()).await.unwrap(), 1);

    registry.set("users", []);
    let err = lb.ready().await.unwrap_err();
    assert!(err.is::<balance::error::NoInstances>(), "{err}");

    registry.insert(inst("b", 2));
    assert_eq!(lb.ready().await.unwrap().call(()).await.unwrap(), 2);
}

#[derive(Default)]
struct Ledger {
    /// Calls per instance.
    calls: HashMap<String, usize>,
    /// Instances removed from the registry so far.
    removed: HashSet<String>,
    /// Calls that reached an instance after it had been removed.
    after_removal: usize,
}

/// p2c over the discover stream while instances are added and removed between requests: every
/// request succeeds (in-flight requests on a removed, still-healthy instance complete), no
/// request is sent to an instance after its removal, and added instances receive traffic.
#[tokio::test(start_paused = true)]
async fn p2c_balance_loses_nothing_while_instances_come_and_go() {
    let registry = StaticRegistry::from_instances([inst("a", 1), inst("b", 2), inst("c", 3)]);
    let discovery = Discovery::new(registry.clone());
    discovery.discover("users").await.unwrap();
    let watch = discovery.watch("users");
    let ledger = Arc::new(Mutex::new(Ledger::default()));

    let make_ledger = ledger.clone();
    let mut lb = balance::p2c(&watch, move |instance: &Instance| {
        let id = instance.id.to_string();
        let ledger = make_ledger.clone();
        service_fn(move |request: u32| {
            {
                let mut l = ledger.lock().unwrap();
                *l.calls.entry(id.clone()).or_default() += 1;
                if l.removed.contains(&id) {
                    l.after_removal += 1;
                }
            }
            let id = id.clone();
            async move {
                // A slow, healthy backend: requests overlap with membership changes.
                tokio::time::sleep(Duration::from_millis(25)).await;
                Ok::<_, Infallible>((request, id))
            }
        })
    });

    let mut responses = Vec::new();
    for request in 0..400_u32 {
        match request {
            60 => registry.insert(inst("d", 4)),
            120 => {
                ledger.lock().unwrap().removed.insert("a".to_owned());
                registry.remove("users", "a");
            }
            200 => {
                ledger.lock().unwrap().removed.insert("b".to_owned());
                registry.remove("users", "b");
                registry.insert(inst("e", 5));
            }
            300 => {
                // c moves to a new port: the old endpoint is removed, a new one inserted.
                registry.insert(inst("c", 33));
            }
            _ => {}
        }
        let response = lb.ready().await.unwrap().call(request);
        responses.push(tokio::spawn(response));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    let mut answered = HashSet::new();
    for response in responses {
        let (request, _) = response.await.unwrap().unwrap();
        answered.insert(request);
    }
    assert_eq!(answered.len(), 400, "every request answered");

    let l = ledger.lock().unwrap();
    assert_eq!(l.after_removal, 0, "no request sent to a removed instance");
    for added in ["d", "e"] {
        assert!(
            l.calls.get(added).copied().unwrap_or(0) > 0,
            "{added} got traffic: {:?}",
            l.calls
        );
    }
    assert!(l.calls["a"] > 0 && l.calls["b"] > 0);
}

#[tokio::test(start_paused = true)]
async fn readiness_is_latched_until_call() {
    let registry = StaticRegistry::from_instances([inst("a", 1), inst("b", 2)]);
    let watch = registry.watch(&Query::new("users"));
    let mut lb = balance::p2c(&watch, |i: &Instance| {
        let port = i.port;
        service_fn(move |_: ()| async move { Ok::<_, Infallible>(port) })
    });
    lb.ready().await.unwrap();
    // A removal between poll_ready and call must not corrupt the ready index
    // (tower-rs/tower#856): the latch keeps the chosen service until the call.
    registry.remove("users", "b");
    registry.remove("users", "a");
    registry.insert(inst("z", 9));
    lb.ready().await.unwrap();
    let port = lb.call(()).await.unwrap();
    assert!([1, 2].contains(&port));
    assert_eq!(lb.ready().await.unwrap().call(()).await.unwrap(), 9);
}
