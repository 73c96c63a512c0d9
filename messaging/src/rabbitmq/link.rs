//! The publish connection and its supervisor.
//!
//! A [`PublishLink`] holds the current publish connection and its confirm channel (a
//! [`PublishSide`]) behind a `watch` channel. A supervisor task watches it: when the channel or
//! the connection goes down (seen by polling, or reported by a publish that failed on it), it
//! marks the link down, reconnects with exponential backoff and jitter, puts the new channel
//! in confirm mode, re-declares the exchange, and publishes the new side. Publishes wait for
//! a side newer than the one that failed them, so none of them spins on a dead connection.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use lapin::options::{ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::{FieldTable, LongString};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

/// `connection.close` reply code for a normal close.
pub(super) const REPLY_SUCCESS: u16 = 200;
pub(super) const MIN_BACKOFF: Duration = Duration::from_millis(100);
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often the supervisor looks at a connection nobody reported broken.
pub(super) const POLL: Duration = Duration::from_millis(250);
/// The longest a connection attempt may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a connection named `{app_id}-{role}`, within [`CONNECT_TIMEOUT`].
pub(super) async fn connect(uri: &str, app_id: &str, role: &str) -> Result<Connection, LinkError> {
    let properties = ConnectionProperties::default()
        .with_connection_name(LongString::from(format!("{app_id}-{role}")));
    match tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(uri, properties)).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(e)) => Err(LinkError::Lapin(e)),
        Err(_) => Err(LinkError::Timeout),
    }
}

/// Why the publish side could not be opened.
#[derive(Debug)]
pub(super) enum LinkError {
    /// The client library's error.
    Lapin(lapin::Error),
    /// The broker did not answer within [`CONNECT_TIMEOUT`].
    Timeout,
}

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Lapin(e) => e.fmt(f),
            Self::Timeout => write!(f, "no answer within {CONNECT_TIMEOUT:?}"),
        }
    }
}

impl std::error::Error for LinkError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Lapin(e) => Some(e),
            Self::Timeout => None,
        }
    }
}

/// The publish connection and its channel in confirm mode.
pub(super) struct PublishSide {
    pub(super) connection: Arc<Connection>,
    pub(super) channel: Channel,
    /// Counts up with every new side, so a publish can wait for one newer than the side that
    /// failed it.
    pub(super) generation: u64,
    /// Attributes the channel's `basic.return`s to their publishes.
    pub(super) returns: super::returns::Returns,
}

impl PublishSide {
    /// Opens a channel on `connection`, puts it in confirm mode and declares the exchange
    /// (durable, topic); on failure, says which of these failed.
    pub(super) async fn open(
        connection: Arc<Connection>,
        exchange: &str,
        generation: u64,
    ) -> Result<Self, (&'static str, lapin::Error)> {
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| ("publish connection", e))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| ("confirm mode", e))?;
        let options = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        channel
            .exchange_declare(
                exchange.into(),
                ExchangeKind::Topic,
                options,
                FieldTable::default(),
            )
            .await
            .map_err(|e| ("exchange declaration", e))?;
        Ok(Self {
            connection,
            channel,
            generation,
            returns: super::returns::Returns::default(),
        })
    }

    /// Whether both the connection and the channel are open.
    pub(super) fn is_up(&self) -> bool {
        self.connection.status().connected() && self.channel.status().connected()
    }
}

/// The publish side as the supervisor last left it.
pub(super) enum LinkState {
    /// Open; publishes go here.
    Up(Arc<PublishSide>),
    /// Reconnecting.
    Down,
    /// The broker was dropped; nothing will reconnect.
    Closed,
}

/// Why a publish stopped waiting for the publish side.
pub(super) enum WaitError {
    /// The deadline passed first.
    Deadline,
    /// The link is closed.
    Closed,
}

/// The publish connection, shared by every publish, and its supervisor's inputs.
pub(super) struct PublishLink {
    uri: String,
    app_id: String,
    exchange: String,
    state: watch::Sender<LinkState>,
    broken: Notify,
    /// One more than the newest generation a publish reported broken (0: none).
    reported: AtomicU64,
    reconnects: AtomicU64,
}

impl PublishLink {
    /// Connects, and starts the supervisor (which stops once the link is dropped).
    pub(super) async fn start(
        uri: String,
        app_id: String,
        exchange: String,
    ) -> Result<Arc<Self>, (&'static str, LinkError)> {
        let connection = Arc::new(
            connect(&uri, &app_id, "publish")
                .await
                .map_err(|e| ("publish connection", e))?,
        );
        let side = PublishSide::open(connection, &exchange, 0)
            .await
            .map_err(|(stage, e)| (stage, LinkError::Lapin(e)))?;
        let link = Arc::new(Self {
            uri,
            app_id,
            exchange,
            state: watch::Sender::new(LinkState::Up(Arc::new(side))),
            broken: Notify::new(),
            reported: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
        });
        tokio::spawn(supervise(Arc::downgrade(&link)));
        Ok(link)
    }

    /// The open side, if the link is up right now.
    pub(super) fn current(&self) -> Option<Arc<PublishSide>> {
        match &*self.state.borrow() {
            LinkState::Up(side) if side.is_up() => Some(side.clone()),
            _ => None,
        }
    }

    /// Whether the publish connection and channel are open.
    pub(super) fn is_up(&self) -> bool {
        self.current().is_some()
    }

    /// How many times the supervisor replaced the publish connection or channel.
    pub(super) fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    /// Tells the supervisor that a publish failed on `side`.
    pub(super) fn report_broken(&self, side: &PublishSide) {
        tracing::debug!(generation = side.generation, "publish side reported broken");
        self.reported
            .fetch_max(side.generation.saturating_add(1), Ordering::AcqRel);
        self.broken.notify_one();
    }

    /// Waits until the link is up on a side newer than `after` (any side when `None`), until
    /// `until`.
    pub(super) async fn wait_up(
        &self,
        after: Option<u64>,
        until: Instant,
    ) -> Result<Arc<PublishSide>, WaitError> {
        let mut rx = self.state.subscribe();
        let wait = rx.wait_for(|state| match state {
            LinkState::Up(side) => after.is_none_or(|g| side.generation > g) && side.is_up(),
            LinkState::Closed => true,
            LinkState::Down => false,
        });
        match tokio::time::timeout_at(until, wait).await {
            Err(_) => Err(WaitError::Deadline),
            Ok(Err(_)) => Err(WaitError::Closed),
            Ok(Ok(state)) => match &*state {
                LinkState::Up(side) => Ok(side.clone()),
                _ => Err(WaitError::Closed),
            },
        }
    }

    /// Closes the current connection, as a network failure would (fault injection).
    pub(super) async fn drop_connection(&self) {
        let side = match &*self.state.borrow() {
            LinkState::Up(side) => side.clone(),
            _ => return,
        };
        let _ = side
            .connection
            .close(REPLY_SUCCESS, "closed by drop_publish_connection".into())
            .await;
        self.broken.notify_one();
    }

    /// Whether `side` is down, or a publish reported it broken.
    fn is_broken(&self, side: &PublishSide) -> bool {
        !side.is_up() || self.reported.load(Ordering::Acquire) > side.generation
    }

    /// One attempt at a new side: a new channel on the old connection if that is still
    /// open, else a new connection.
    async fn reopen(
        &self,
        old: Option<&Arc<Connection>>,
        generation: u64,
    ) -> Result<PublishSide, LinkError> {
        let connection = match old {
            Some(c) if c.status().connected() => c.clone(),
            _ => Arc::new(connect(&self.uri, &self.app_id, "publish").await?),
        };
        PublishSide::open(connection, &self.exchange, generation)
            .await
            .map_err(|(_, e)| LinkError::Lapin(e))
    }
}

/// The supervisor: waits for the side to go down, then reconnects with backoff and jitter
/// until it is up again. Stops (closing the connection) once the link is dropped.
async fn supervise(link: Weak<PublishLink>) {
    let mut rng = fastrand::Rng::new();
    loop {
        let Some(l) = link.upgrade() else { return };
        let side = match &*l.state.borrow() {
            LinkState::Up(side) => side.clone(),
            _ => return,
        };
        if !l.is_broken(&side) {
            // Holding the link only for one poll, so that dropping the broker stops us.
            tokio::select! {
                () = l.broken.notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
            if !l.is_broken(&side) {
                continue;
            }
        }
        let generation = side.generation;
        if side.channel.status().connected() {
            // Reported broken on an open channel: replace the channel too.
            let _ = side.channel.close(REPLY_SUCCESS, "replaced".into()).await;
        }
        l.state.send_replace(LinkState::Down);
        tracing::warn!(exchange = %l.exchange, "publish connection lost; reconnecting");
        let mut old = Some(side.connection.clone());
        drop((side, l));
        let mut backoff = MIN_BACKOFF;
        loop {
            let Some(l) = link.upgrade() else {
                if let Some(c) = old {
                    let _ = c.close(REPLY_SUCCESS, "broker dropped".into()).await;
                }
                return;
            };
            match l.reopen(old.as_ref(), generation + 1).await {
                Ok(side) => {
                    l.reconnects.fetch_add(1, Ordering::Relaxed);
                    l.state.send_replace(LinkState::Up(Arc::new(side)));
                    tracing::info!(exchange = %l.exchange, "publish connection re-established");
                    break;
                }
                Err(e) => {
                    tracing::warn!(exchange = %l.exchange, error = %e, ?backoff, "publish reconnect failed");
                    if old.as_ref().is_some_and(|c| !c.status().connected()) {
                        old = None;
                    }
                }
            }
            drop(l);
            tokio::time::sleep(backoff.mul_f64(0.5 + rng.f64() / 2.0)).await;
            backoff = backoff.saturating_mul(2).min(MAX_BACKOFF);
        }
    }
}

impl Drop for PublishLink {
    fn drop(&mut self) {
        // Wakes publishes still waiting; the supervisor sees the dropped link and stops.
        let state = self.state.send_replace(LinkState::Closed);
        if let LinkState::Up(side) = state {
            let connection = side.connection.clone();
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    let _ = connection
                        .close(REPLY_SUCCESS, "broker dropped".into())
                        .await;
                });
            }
        }
    }
}
