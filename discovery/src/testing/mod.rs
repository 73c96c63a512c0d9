//! Test doubles: [`FakeConsul`], an in-process Consul agent.
//!
//! [`FakeConsul`] is an axum server on `127.0.0.1` that implements the part of Consul's HTTP
//! API this crate uses, from Consul's documented API and JSON shapes:
//!
//! - `PUT /v1/agent/service/register` (with `replace-existing-checks`),
//!   `PUT /v1/agent/service/deregister/:id`, `PUT /v1/agent/service/maintenance/:id`,
//!   `GET /v1/agent/service/:id`;
//! - `PUT /v1/agent/check/{pass,warn,fail}/:id` and `PUT /v1/agent/check/update/:id`, with
//!   TTL expiry (an expired TTL check turns critical);
//! - `GET /v1/health/service/:name` with `passing`, `dc`, `tag`, a subset of `filter`
//!   (`<selector> == "v"`, `!=`, `contains`, joined by `and`), and real blocking-query
//!   semantics: `index` and `wait`, a per-service `X-Consul-Index`.
//!
//! It does not run HTTP/TCP/gRPC probes: those checks start `passing` (or their `Status`) and
//! change only through [`FakeConsul::set_check_status`].
//!
//! Fault injection: [`restore_snapshot`](FakeConsul::restore_snapshot) (index going
//! backwards), [`set_index_zero`](FakeConsul::set_index_zero),
//! [`fail_next`](FakeConsul::fail_next) / [`set_failing`](FakeConsul::set_failing) (500s),
//! [`set_delay`](FakeConsul::set_delay) (slow responses),
//! [`revoke_token`](FakeConsul::revoke_token) (empty list filtered by ACLs,
//! hashicorp/consul#20790) and [`restart_agent`](FakeConsul::restart_agent) (forgets every
//! registration).
//!
//! Timers use `tokio::time`, so tests can run it under paused time.
//!
//! ```
//! use std::time::Duration;
//! use sinew_discovery::consul::{Check, ServiceRegistration};
//! use sinew_discovery::testing::FakeConsul;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let consul = FakeConsul::start().await?;
//! let client = consul.client();
//! let registration = ServiceRegistration::builder("orders")
//!     .address("10.0.0.5")
//!     .port(8080)
//!     .check(Check::ttl(Duration::from_secs(15)))
//!     .build()?;
//! client.register(&registration).await?;
//! client.ttl_pass("orders-8080:ttl", None).await?;
//! assert_eq!(consul.check_status("orders-8080:ttl").as_deref(), Some("passing"));
//! # Ok(())
//! # }
//! ```

mod fake_consul;
mod filter;

pub use self::fake_consul::{FakeConsul, RecordedRequest};
