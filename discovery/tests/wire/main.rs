#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The exact requests the client sends to Consul, checked with wiremock.

use std::time::Duration;

use serde_json::json;
use sinew_discovery::consul::{
    AclToken, Blocking, Check, CheckStatus, ConsulClient, ServiceRegistration,
};
use sinew_discovery::registry::Query;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn client(server: &MockServer, token: Option<&str>) -> ConsulClient {
    let mut builder = ConsulClient::builder().address(server.uri());
    if let Some(token) = token {
        builder = builder.token(AclToken::new(token));
    }
    builder.build().unwrap()
}

#[tokio::test]
async fn register_sends_the_documented_body() {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path("/v1/agent/service/register"))
        .and(query_param("replace-existing-checks", "true"))
        .and(header("X-Consul-Token", "t0k3n"))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({
            "ID": "orders-7f3a", "Name": "orders", "Tags": ["v1"], "Address": "10.0.0.5",
            "Port": 8080, "Meta": {"version": "1.4.2"}, "EnableTagOverride": false,
            "Weights": {"Passing": 10, "Warning": 1},
            "TaggedAddresses": {"lan": {"Address": "10.0.0.5", "Port": 8080}},
            "Checks": [
                {"CheckID": "orders-7f3a:http", "Name": "http",
                 "HTTP": "http://10.0.0.5:8080/health", "Method": "GET", "Interval": "10s",
                 "Timeout": "2s", "DeregisterCriticalServiceAfter": "300s"},
                {"CheckID": "orders-7f3a:ttl", "Name": "ttl", "TTL": "15s", "Status": "passing"}
            ]
        })))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;

    let registration = ServiceRegistration::builder("orders")
        .id("orders-7f3a")
        .tag("v1")
        .address("10.0.0.5")
        .port(8080)
        .meta("version", "1.4.2")
        .weights(10, 1)
        .tagged_address("lan", "10.0.0.5", 8080)
        .check(
            Check::http("http://10.0.0.5:8080/health", Duration::from_secs(10))
                .method("GET")
                .timeout(Duration::from_secs(2))
                .deregister_critical_service_after(Duration::from_secs(300)),
        )
        .check(Check::ttl(Duration::from_secs(15)).initial_status(CheckStatus::Passing))
        .build()
        .unwrap();
    client(&server, Some("t0k3n"))
        .register(&registration)
        .await
        .unwrap();
}

#[tokio::test]
async fn ttl_maintenance_and_deregister_requests() {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path("/v1/agent/check/pass/orders-1:ttl"))
        .and(query_param("note", "all good"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/v1/agent/check/update/orders-1:ttl"))
        .and(body_json(
            json!({"Status": "warning", "Output": "disk 91%"}),
        ))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/v1/agent/service/maintenance/orders-1"))
        .and(query_param("enable", "true"))
        .and(query_param("reason", "shutting down"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/v1/agent/service/deregister/orders-1"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;

    let client = client(&server, None);
    client
        .ttl_pass("orders-1:ttl", Some("all good"))
        .await
        .unwrap();
    client
        .ttl_update("orders-1:ttl", CheckStatus::Warning, Some("disk 91%"))
        .await
        .unwrap();
    client
        .maintenance("orders-1", true, Some("shutting down"))
        .await
        .unwrap();
    client.deregister("orders-1").await.unwrap();

    // Without a token, no token header is sent at all.
    for request in server.received_requests().await.unwrap() {
        assert!(request.headers.get("X-Consul-Token").is_none());
    }
}

#[tokio::test]
async fn health_query_parameters_and_response_parsing() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/health/service/orders"))
        .and(query_param("passing", "true"))
        .and(query_param("dc", "eu"))
        .and(query_param("tag", "v1"))
        .and(query_param("filter", "Service.Meta.zone == \"a\""))
        .and(query_param("index", "42"))
        .and(query_param("wait", "300s"))
        .and(header("X-Consul-Token", "t"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("X-Consul-Index", "43")
                .insert_header("X-Consul-KnownLeader", "true")
                .insert_header("X-Consul-LastContact", "12")
                .set_body_json(json!([
                    {"Node": {"Node": "n1", "Address": "fd00::9", "Datacenter": "eu"},
                     "Service": {"ID": "orders-1", "Service": "orders", "Address": "", "Port": 8080,
                                 "Tags": ["v1"], "Meta": {"zone": "a"},
                                 "Weights": {"Passing": 5, "Warning": 1}},
                     "Checks": [{"CheckID": "serfHealth", "Status": "passing"},
                                {"CheckID": "orders-1:ttl", "Status": "passing"}]}
                ])),
        )
        .expect(1)
        .mount(&server)
        .await;

    let query = Query::new("orders")
        .datacenter("eu")
        .tag("v1")
        .filter("Service.Meta.zone == \"a\"");
    let (instances, meta) = client(&server, Some("t"))
        .health_service(
            &query,
            Some(Blocking {
                index: 42,
                wait: Duration::from_secs(300),
            }),
        )
        .await
        .unwrap();
    assert_eq!(meta.index, 43);
    assert_eq!(meta.known_leader, Some(true));
    assert_eq!(meta.last_contact, Some(Duration::from_millis(12)));
    assert_eq!(instances.len(), 1);
    let i = &instances[0];
    // Empty Service.Address: the node's IPv6 address, bracketed in the authority.
    assert_eq!(i.authority(), "[fd00::9]:8080");
    assert_eq!(i.weight, 5);
    assert_eq!(i.datacenter.as_deref(), Some("eu"));
    assert_eq!(i.meta["zone"], "a");

    // The token never appears in the URL.
    for request in server.received_requests().await.unwrap() {
        assert!(!request.url.as_str().contains("t0k"));
        assert!(request.url.query_pairs().all(|(k, _)| k != "token"));
    }
}

#[tokio::test]
async fn error_statuses_are_typed() {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path("/v1/agent/check/pass/gone:ttl"))
        .respond_with(
            ResponseTemplate::new(500)
                .set_body_string("CheckID \"gone:ttl\" does not have associated TTL"),
        )
        .mount(&server)
        .await;
    let err = client(&server, None)
        .ttl_pass("gone:ttl", None)
        .await
        .unwrap_err();
    assert!(err.is_unknown_check(), "{err}");
    assert!(!err.is_unreachable());
}
