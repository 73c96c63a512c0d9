#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The Consul client, the registration handle and the watch engine against
//! `testing::FakeConsul`, under paused time.

use std::num::NonZeroU32;
use std::time::Duration;

use futures_util::StreamExt;
use sinew_discovery::consul::{
    AclToken, Check, ConsulClient, ConsulError, ConsulRegistry, RegistrationConfig,
    RegistrationHandle, ServiceRegistration, WatchConfig,
};
use sinew_discovery::registry::{Query, Registry};
use sinew_discovery::testing::FakeConsul;
use sinew_discovery::{Discovery, DiscoveryError, Health, RoundRobin};

const TTL: Duration = Duration::from_secs(15);

fn registration(id: &str, port: u16) -> ServiceRegistration {
    ServiceRegistration::builder("users")
        .id(id)
        .address("10.0.0.5")
        .port(port)
        .tag("v1")
        .meta("version", "1.4.2")
        .weights(10, 1)
        .check(Check::ttl(TTL).deregister_critical_service_after(Duration::from_secs(120)))
        .build()
        .unwrap()
}

/// Short waits keep virtual time small; the rules are the same at 5 minutes.
fn watch_config() -> WatchConfig {
    WatchConfig::builder()
        .wait(Duration::from_secs(10))
        .rate_limit(NonZeroU32::new(2).unwrap(), Duration::from_secs(1))
        .error_backoff(Duration::from_secs(1), Duration::from_secs(8))
        .build()
        .unwrap()
}

async fn settle(seconds: u64) {
    tokio::time::sleep(Duration::from_secs(seconds)).await;
}

#[tokio::test(start_paused = true)]
async fn registration_round_trip() {
    let consul = FakeConsul::start().await.unwrap();
    let client = consul.client();
    let reg = ServiceRegistration::builder("users")
        .id("users-1")
        .port(3001) // no address: readers fall back to the node address
        .tag("v1")
        .check(Check::ttl(TTL))
        .check(Check::http(
            "http://127.0.0.1:3001/health",
            Duration::from_secs(10),
        ))
        .build()
        .unwrap();
    client.register(&reg).await.unwrap();

    let body = consul.registration_body("users-1").unwrap();
    assert_eq!(body["Name"], "users");
    assert_eq!(body["Checks"][0]["CheckID"], "users-1:ttl");
    assert_eq!(body["Checks"][1]["Interval"], "10s");

    // TTL checks start critical: not served until passed.
    let (instances, _) = client
        .health_service(&Query::new("users"), None)
        .await
        .unwrap();
    assert!(instances.is_empty());
    client.ttl_pass("users-1:ttl", Some("ready")).await.unwrap();
    let (instances, meta) = client
        .health_service(&Query::new("users"), None)
        .await
        .unwrap();
    assert_eq!(instances.len(), 1);
    assert_eq!(instances[0].authority(), "127.0.0.1:3001");
    assert!(meta.index >= 1);

    client.ttl_warn("users-1:ttl", None).await.unwrap();
    let warning = Query::new("users").include_warning(true);
    let (instances, _) = client.health_service(&warning, None).await.unwrap();
    assert_eq!(instances[0].health, Health::Warning);
    client.ttl_fail("users-1:ttl", None).await.unwrap();
    assert!(
        client
            .health_service(&warning, None)
            .await
            .unwrap()
            .0
            .is_empty()
    );

    // A non-TTL check cannot be passed: the agent's exact complaint is recognised.
    let err = client.ttl_pass("users-1:http", None).await.unwrap_err();
    assert!(err.is_unknown_check(), "{err}");

    client.deregister("users-1").await.unwrap();
    assert!(consul.service_ids().is_empty());
    assert!(!client.is_registered("users-1").await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn health_query_sends_tag_dc_and_filter_and_the_token_header() {
    let consul = FakeConsul::start().await.unwrap();
    consul.require_token("secret-token");
    let client = ConsulClient::builder()
        .address(consul.address())
        .token(AclToken::new("secret-token"))
        .build()
        .unwrap();
    for (id, tag, version) in [("a", "v1", "1"), ("b", "v2", "2"), ("c", "v2", "3")] {
        let reg = ServiceRegistration::builder("users")
            .id(id)
            .address("10.0.0.1")
            .port(80)
            .tag(tag)
            .meta("version", version)
            .build()
            .unwrap();
        client.register(&reg).await.unwrap();
    }
    let q = Query::new("users")
        .tag("v2")
        .datacenter("dc1")
        .filter(r#"Service.Meta.version != "2""#);
    let (instances, _) = client.health_service(&q, None).await.unwrap();
    let ids: Vec<_> = instances.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, ["c"]);

    let request = consul
        .requests_to("/v1/health/service/users")
        .pop()
        .unwrap();
    assert_eq!(request.param("tag"), Some("v2"));
    assert_eq!(request.param("dc"), Some("dc1"));
    assert_eq!(request.param("passing"), Some("true"));
    assert_eq!(
        request.param("filter"),
        Some(r#"Service.Meta.version != "2""#)
    );
    // The token travels in the header on every request, never in the query string.
    for r in consul.requests() {
        assert_eq!(r.token.as_deref(), Some("secret-token"));
        assert!(r.param("token").is_none());
    }

    let unknown_dc = client
        .health_service(&Query::new("users").datacenter("mars"), None)
        .await;
    assert!(matches!(
        unknown_dc,
        Err(ConsulError::Status { status: 500, .. })
    ));

    let anonymous = consul.client();
    let err = anonymous
        .health_service(&Query::new("users"), None)
        .await
        .unwrap_err();
    assert!(err.is_forbidden(), "{err}");
}

#[tokio::test(start_paused = true)]
async fn heartbeat_keeps_the_ttl_check_passing() {
    let consul = FakeConsul::start().await.unwrap();
    let handle = RegistrationHandle::register(
        consul.client(),
        registration("users-1", 3001),
        RegistrationConfig::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        consul.check_status("users-1:ttl").as_deref(),
        Some("passing")
    );
    // Ten TTLs later the check is still passing: heartbeats every 10 s (2/3 of 15 s).
    settle(150).await;
    assert_eq!(
        consul.check_status("users-1:ttl").as_deref(),
        Some("passing")
    );
    assert!(handle.heartbeats() >= 14, "{}", handle.heartbeats());
    assert_eq!(handle.reregistrations(), 0);

    // Without the handle the TTL expires: the fake really enforces it.
    handle.shutdown().await.unwrap();
    let reg = registration("users-2", 3002);
    consul.client().register(&reg).await.unwrap();
    consul.client().ttl_pass("users-2:ttl", None).await.unwrap();
    settle(16).await;
    assert_eq!(
        consul.check_status("users-2:ttl").as_deref(),
        Some("critical")
    );
}

#[tokio::test(start_paused = true)]
async fn reregisters_after_the_agent_restarts() {
    let consul = FakeConsul::start().await.unwrap();
    let handle = RegistrationHandle::register(
        consul.client(),
        registration("users-1", 3001),
        RegistrationConfig::default(),
    )
    .await
    .unwrap();
    consul.restart_agent();
    assert!(consul.service_ids().is_empty());
    // The next heartbeat gets "unknown check" and registers again.
    settle(12).await;
    assert_eq!(consul.service_ids(), ["users-1"]);
    assert_eq!(handle.reregistrations(), 1);
    assert_eq!(
        consul.check_status("users-1:ttl").as_deref(),
        Some("passing")
    );
    // The same body as the first time.
    assert_eq!(
        consul.registration_body("users-1").unwrap()["Checks"][0]["TTL"],
        "15s"
    );
    handle.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn reregisters_when_an_unreachable_agent_comes_back_empty() {
    let consul = FakeConsul::start().await.unwrap();
    let addr = consul.socket_addr();
    let client = ConsulClient::builder()
        .address(consul.address())
        .request_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let config = RegistrationConfig::builder()
        .reregister_backoff(Duration::from_secs(1), Duration::from_secs(4))
        .build()
        .unwrap();
    let handle = RegistrationHandle::register(client, registration("users-1", 3001), config)
        .await
        .unwrap();
    drop(consul); // the agent dies
    settle(40).await; // heartbeats time out, re-registration retries with backoff
    let consul = FakeConsul::start_on(addr).await.unwrap(); // back, without state
    settle(10).await;
    assert_eq!(consul.service_ids(), ["users-1"]);
    assert!(handle.reregistrations() >= 1);
    assert_eq!(
        consul.check_status("users-1:ttl").as_deref(),
        Some("passing")
    );
    handle.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn shutdown_sets_maintenance_drains_then_deregisters() {
    let consul = FakeConsul::start().await.unwrap();
    let config = RegistrationConfig::builder()
        .drain_delay(Duration::from_secs(5))
        .build()
        .unwrap();
    let handle =
        RegistrationHandle::register(consul.client(), registration("users-1", 3001), config)
            .await
            .unwrap();
    let shutdown = tokio::spawn(handle.shutdown());
    settle(2).await;
    // Draining: still registered, but in maintenance, so not served.
    assert_eq!(consul.service_ids(), ["users-1"]);
    assert!(consul.in_maintenance("users-1"));
    let (instances, _) = consul
        .client()
        .health_service(&Query::new("users"), None)
        .await
        .unwrap();
    assert!(instances.is_empty());
    shutdown.await.unwrap().unwrap();
    assert!(consul.service_ids().is_empty());
    let maintenance = consul
        .requests_to("/v1/agent/service/maintenance/users-1")
        .pop()
        .unwrap();
    assert_eq!(maintenance.param("enable"), Some("true"));
}

#[tokio::test(start_paused = true)]
async fn shutdown_is_bounded_when_the_agent_hangs() {
    let consul = FakeConsul::start().await.unwrap();
    let config = RegistrationConfig::builder()
        .deregister_timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let handle =
        RegistrationHandle::register(consul.client(), registration("users-1", 3001), config)
            .await
            .unwrap();
    consul.set_delay(Duration::from_secs(3600));
    let err = handle.shutdown().await.unwrap_err();
    assert!(matches!(err, ConsulError::Timeout { .. }), "{err}");
}

#[tokio::test(start_paused = true)]
async fn dropping_the_handle_deregisters_best_effort() {
    let consul = FakeConsul::start().await.unwrap();
    let handle = RegistrationHandle::register(
        consul.client(),
        registration("users-1", 3001),
        RegistrationConfig::default(),
    )
    .await
    .unwrap();
    drop(handle);
    settle(1).await;
    assert!(consul.service_ids().is_empty());
}

/// A registered instance with an HTTP check (passing in the fake; no TTL to expire).
async fn registered(consul: &FakeConsul, id: &str, port: u16) {
    let reg = ServiceRegistration::builder("users")
        .id(id)
        .address("10.0.0.5")
        .port(port)
        .tag("v1")
        .weights(10, 1)
        .check(
            Check::http(
                format!("http://10.0.0.5:{port}/health"),
                Duration::from_secs(10),
            )
            .id(format!("{id}:http")),
        )
        .build()
        .unwrap();
    consul.client().register(&reg).await.unwrap();
}

fn discovery(consul: &FakeConsul) -> (ConsulRegistry, Discovery) {
    let registry = ConsulRegistry::with_config(consul.client(), watch_config());
    let discovery = Discovery::builder(registry.clone())
        .initial_load_timeout(Duration::from_secs(5))
        .max_staleness(Duration::from_secs(60))
        .build()
        .unwrap();
    (registry, discovery)
}

#[tokio::test(start_paused = true)]
async fn watch_delivers_changes_through_blocking_queries() {
    let consul = FakeConsul::start().await.unwrap();
    registered(&consul, "users-1", 3001).await;
    let (_, discovery) = discovery(&consul);
    let first = discovery.discover("users").await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first.instances()[0].weight, 10);

    let mut changes = discovery.subscribe("users");
    assert_eq!(changes.next().await.unwrap().version(), 1);
    registered(&consul, "users-2", 3002).await;
    let second = changes.next().await.unwrap();
    assert_eq!(second.len(), 2);

    // After the first request every one blocks on the last index, with the configured wait.
    let polls = consul.requests_to("/v1/health/service/users");
    assert_eq!(polls[0].param("index"), None);
    for poll in &polls[1..] {
        assert!(poll.param("index").unwrap().parse::<u64>().unwrap() >= 1);
        assert_eq!(poll.param("wait"), Some("10s"));
    }
    // Reads are memory reads: picking 1000 times sends nothing to Consul.
    let before = consul.requests().len();
    let picker = RoundRobin::new();
    for _ in 0..1000 {
        discovery.pick("users", &picker).await.unwrap();
    }
    assert_eq!(consul.requests().len(), before);
}

#[tokio::test(start_paused = true)]
async fn unchanged_results_are_dropped() {
    let consul = FakeConsul::start().await.unwrap();
    registered(&consul, "users-1", 3001).await;
    let (_, discovery) = discovery(&consul);
    let v1 = discovery.discover("users").await.unwrap();
    let polls_before = consul.requests_to("/v1/health/service").len();
    // Wake the blocking query without changing the result, several times.
    for _ in 0..3 {
        consul.set_check_status("users-1:http", "passing");
        settle(2).await;
    }
    assert!(consul.requests_to("/v1/health/service").len() > polls_before);
    let now = discovery.discover("users").await.unwrap();
    assert_eq!(now.version(), v1.version());
    assert!(std::sync::Arc::ptr_eq(&now, &v1));
}

#[tokio::test(start_paused = true)]
async fn watch_resets_when_the_index_goes_backwards() {
    let consul = FakeConsul::start().await.unwrap();
    for i in 0..5 {
        registered(&consul, &format!("users-{i}"), 3000 + i).await;
    }
    let (_, discovery) = discovery(&consul);
    assert_eq!(discovery.discover("users").await.unwrap().len(), 5);
    settle(1).await;

    consul.restore_snapshot(2);
    consul.deregister("users-4");
    // The client's index is now ahead of Consul's: its query blocks for one wait, then the
    // lower index makes it reset to 0 and fetch at once.
    settle(15).await;
    assert_eq!(discovery.discover("users").await.unwrap().len(), 4);
    let indexes: Vec<_> = consul
        .requests_to("/v1/health/service/users")
        .iter()
        .map(|r| r.param("index").map(str::to_owned))
        .collect();
    assert!(
        indexes.iter().skip(1).any(Option::is_none),
        "a reset (a non-blocking request, without index) after the restore: {indexes:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn index_zero_is_clamped_and_rate_limited() {
    let consul = FakeConsul::start().await.unwrap();
    registered(&consul, "users-1", 3001).await;
    let (_, discovery) = discovery(&consul);
    discovery.discover("users").await.unwrap();
    consul.set_index_zero(true);
    let before = consul.requests_to("/v1/health/service").len();
    settle(60).await;
    let polls = consul.requests_to("/v1/health/service");
    let during = polls.len() - before;
    // Consul answers at once with index 0: without the rules this is a busy loop. The token
    // bucket allows its burst of 2 plus one request per second.
    assert!(during <= 2 + 60 + 1, "{during} requests in 60 s");
    assert!(during >= 30, "still polling: {during}");
    // The first 0 is below the previous index, so the client resets once (a request without
    // an index); from then on 0 is clamped to 1.
    assert!(
        polls[before..before + 2]
            .iter()
            .any(|p| p.param("index").is_none())
    );
    for poll in &polls[before + 2..] {
        assert_eq!(poll.param("index"), Some("1"), "clamped to 1");
    }
    // Data is still right.
    registered(&consul, "users-2", 3002).await;
    settle(3).await;
    assert_eq!(discovery.discover("users").await.unwrap().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn errors_back_off_and_the_last_known_good_list_is_served() {
    let consul = FakeConsul::start().await.unwrap();
    registered(&consul, "users-1", 3001).await;
    let (_, discovery) = discovery(&consul);
    discovery.discover("users").await.unwrap();

    consul.set_failing(true);
    consul.set_check_status("users-1:http", "passing"); // wake the blocking query into the outage
    let before = consul.requests_to("/v1/health/service").len();
    settle(30).await;
    let during = consul.requests_to("/v1/health/service").len() - before;
    // Backoff 1, 4, 8, 8, 8 s: a handful of requests, not one per second.
    assert!(during <= 8, "{during} requests during 30 s of 500s");

    // Stale but served, with its age and the error.
    let status = discovery.status("users");
    assert!(status.is_stale());
    assert!(status.age.unwrap() >= Duration::from_secs(29));
    let error = status.error.unwrap();
    assert!(matches!(
        error.get_ref().downcast_ref::<ConsulError>(),
        Some(ConsulError::Status { status: 500, .. })
    ));
    assert_eq!(discovery.discover("users").await.unwrap().len(), 1);
    discovery.pick("users", &RoundRobin::new()).await.unwrap();

    // Past the maximum staleness the list is no longer served.
    settle(40).await;
    let err = discovery.discover("users").await.unwrap_err();
    assert!(matches!(err, DiscoveryError::Stale { .. }), "{err:?}");

    // Recovery.
    consul.set_failing(false);
    settle(10).await;
    assert_eq!(discovery.discover("users").await.unwrap().len(), 1);
    assert!(!discovery.status("users").is_stale());
}

#[tokio::test(start_paused = true)]
async fn slow_responses_are_tolerated() {
    let consul = FakeConsul::start().await.unwrap();
    registered(&consul, "users-1", 3001).await;
    consul.set_delay(Duration::from_secs(4));
    let (_, discovery) = discovery(&consul);
    assert_eq!(discovery.discover("users").await.unwrap().len(), 1);
    registered(&consul, "users-2", 3002).await;
    settle(20).await;
    assert_eq!(discovery.discover("users").await.unwrap().len(), 2);
    assert!(!discovery.status("users").is_stale());
}

#[tokio::test(start_paused = true)]
async fn a_response_slower_than_the_http_timeout_is_an_error_not_a_hang() {
    let consul = FakeConsul::start().await.unwrap();
    registered(&consul, "users-1", 3001).await;
    let client = ConsulClient::builder()
        .address(consul.address())
        .request_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    consul.set_delay(Duration::from_secs(60));
    // wait 10 s: the HTTP timeout is 10 + 10/16 + 2 s, longer than the wait.
    let err = client
        .health_service(
            &Query::new("users"),
            Some(sinew_discovery::consul::Blocking {
                index: 1,
                wait: Duration::from_secs(10),
            }),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, ConsulError::Timeout { after, .. } if after > Duration::from_millis(10_625)),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_revoked_token_does_not_empty_the_list() {
    let consul = FakeConsul::start().await.unwrap();
    registered(&consul, "users-1", 3001).await;
    registered(&consul, "users-2", 3002).await;
    let (_, discovery) = discovery(&consul);
    assert_eq!(discovery.discover("users").await.unwrap().len(), 2);
    consul.revoke_token(true);
    settle(5).await;
    assert_eq!(discovery.discover("users").await.unwrap().len(), 2);
    let error = discovery.status("users").error.unwrap();
    assert!(matches!(
        error.get_ref().downcast_ref::<ConsulError>(),
        Some(ConsulError::AclFiltered { .. })
    ));
    consul.revoke_token(false);
    settle(10).await;
    assert!(!discovery.status("users").is_stale());
}

#[tokio::test(start_paused = true)]
async fn an_agent_restart_empties_the_list_until_reregistration() {
    let consul = FakeConsul::start().await.unwrap();
    let handle = RegistrationHandle::register(
        consul.client(),
        registration("users-1", 3001),
        RegistrationConfig::default(),
    )
    .await
    .unwrap();
    let (_, discovery) = discovery(&consul);
    assert_eq!(discovery.discover("users").await.unwrap().len(), 1);
    let mut changes = discovery.subscribe("users");
    changes.next().await.unwrap();
    consul.restart_agent();
    assert!(changes.next().await.unwrap().is_empty());
    assert_eq!(changes.next().await.unwrap().len(), 1);
    assert_eq!(handle.reregistrations(), 1);
    handle.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn one_shared_poll_per_query_stopped_when_unwatched() {
    let consul = FakeConsul::start().await.unwrap();
    registered(&consul, "users-1", 3001).await;
    let registry = ConsulRegistry::with_config(consul.client(), watch_config());
    let watches: Vec<_> = (0..10)
        .map(|_| registry.watch(&Query::new("users")))
        .collect();
    let tagged = registry.watch(&Query::new("users").tag("v1"));
    assert_eq!(registry.active_watches(), 2);
    settle(1).await;
    for w in &watches {
        assert_eq!(w.current().unwrap().len(), 1);
    }
    assert_eq!(tagged.current().unwrap().len(), 1);
    // Two queries: two initial requests and two blocking polls in flight; not eleven of each.
    let polls = consul.requests_to("/v1/health/service");
    assert_eq!(
        polls.iter().filter(|p| p.param("index").is_none()).count(),
        2
    );
    assert_eq!(polls.len(), 4);

    drop(watches);
    drop(tagged);
    settle(1).await;
    assert_eq!(registry.active_watches(), 0);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(16))]

    /// Whatever mix of graceful shutdowns, drops and agent restarts, everything the handles
    /// registered is deregistered in the end.
    #[test]
    fn deregisters_everything_it_registered(
        plan in proptest::collection::vec((proptest::bool::ANY, proptest::bool::ANY), 1..6),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        let remaining = rt.block_on(async {
            let consul = FakeConsul::start().await.unwrap();
            let mut handles = Vec::new();
            for i in 0..plan.len() {
                let handle = RegistrationHandle::register(
                    consul.client(),
                    registration(&format!("users-{i}"), 3000 + i as u16),
                    RegistrationConfig::default(),
                )
                .await
                .unwrap();
                handles.push(handle);
            }
            for (handle, (graceful, restart_first)) in handles.into_iter().zip(&plan) {
                if *restart_first {
                    consul.restart_agent();
                    settle(12).await; // the handles re-register
                }
                if *graceful {
                    handle.shutdown().await.unwrap();
                } else {
                    drop(handle);
                }
            }
            settle(2).await;
            consul.service_ids()
        });
        proptest::prop_assert!(remaining.is_empty(), "left registered: {remaining:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn filtered_queries_are_watched_once() {
    let consul = FakeConsul::start().await.unwrap();
    registered(&consul, "users-1", 3001).await;
    let (registry, discovery) = discovery(&consul);
    let query = Query::new("users").tag("v1");
    for _ in 0..5 {
        assert_eq!(discovery.discover_query(&query).await.unwrap().len(), 1);
    }
    assert_eq!(registry.active_watches(), 1);
    let initial = consul
        .requests_to("/v1/health/service")
        .iter()
        .filter(|p| p.param("index").is_none())
        .count();
    assert_eq!(initial, 1);
}
