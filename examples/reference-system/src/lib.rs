//! The Sinew reference system: the services of the microservices design, wired from
//! `sinew-resilience`, `sinew-tracing-kit` and `sinew-messaging`. See `examples/README.md`.

pub mod bus;
pub mod content;
pub mod demo;
pub mod discovery;
pub mod email;
pub mod gateway;
pub mod http;
pub mod order;
pub mod system;
pub mod upstream;
pub mod user;
