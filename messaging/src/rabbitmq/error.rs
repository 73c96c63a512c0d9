//! Errors of connecting to RabbitMQ.
//!
//! The `Display` text of these errors is meant for people and is not part of the API.

use std::error::Error as StdError;

use thiserror::Error;

use crate::error::ConfigError;

/// Why [`RabbitBrokerBuilder::connect`](super::RabbitBrokerBuilder::connect) failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The builder's settings are invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The broker could not be reached, or refused the connection or the exchange.
    #[error("cannot connect to RabbitMQ: {stage}")]
    Connection {
        /// What was being done: `publish connection`, `consume connection`, `confirm mode`,
        /// `exchange declaration`.
        stage: &'static str,
        /// The client library's error.
        #[source]
        source: Box<dyn StdError + Send + Sync + 'static>,
    },
}

impl ConnectError {
    pub(super) fn connection(
        stage: &'static str,
        source: impl StdError + Send + Sync + 'static,
    ) -> Self {
        Self::Connection {
            stage,
            source: Box::new(source),
        }
    }
}
