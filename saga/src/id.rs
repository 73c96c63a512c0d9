//! Identifiers: saga IDs, step phases and idempotency keys.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The ID of one saga instance (a UUIDv7, so IDs sort by creation time).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SagaId(Uuid);

impl SagaId {
    /// A fresh UUIDv7 ID.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// Wraps an existing UUID (for example an order ID, to make starting idempotent).
    pub const fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    /// The UUID.
    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl Default for SagaId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for SagaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for SagaId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// Which way a step runs: its action or its compensation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The step's action.
    Forward,
    /// The step's compensation (its semantic undo).
    Compensate,
}

impl Phase {
    /// `"forward"` or `"compensate"`, as stored.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Forward => "forward",
            Self::Compensate => "compensate",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "forward" => Some(Self::Forward),
            "compensate" => Some(Self::Compensate),
            _ => None,
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stable idempotency key for one (saga ID, step, phase): the same on every attempt, after
/// every crash and on every orchestrator process.
///
/// It is a UUIDv5 (SHA-1 name-based) in the saga ID's namespace over `"{step}/{phase}"`.
/// Participants must honour it: a second call with a key they have seen must not repeat the
/// effect (return the first result instead).
///
/// ```
/// use sinew_saga::{IdempotencyKey, Phase, SagaId};
///
/// let id = SagaId::new();
/// assert_eq!(
///     IdempotencyKey::derive(id, "reserve", Phase::Forward),
///     IdempotencyKey::derive(id, "reserve", Phase::Forward),
/// );
/// assert_ne!(
///     IdempotencyKey::derive(id, "reserve", Phase::Forward),
///     IdempotencyKey::derive(id, "reserve", Phase::Compensate),
/// );
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IdempotencyKey(Uuid);

impl IdempotencyKey {
    /// The key of `step` in `phase` of saga `saga_id`.
    pub fn derive(saga_id: SagaId, step: &str, phase: Phase) -> Self {
        let name = format!("{step}/{}", phase.as_str());
        Self(Uuid::new_v5(saga_id.as_uuid(), name.as_bytes()))
    }

    /// The key as a UUID.
    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }

    #[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
    pub(crate) const fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}
