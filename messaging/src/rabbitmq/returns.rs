//! Attributes `basic.return`s to the publishes they belong to.
//!
//! lapin hands each returned message to whichever publisher confirm it resolves next, and a
//! broker ack covering several delivery tags resolves them in no particular order, so the
//! confirm that carries a return is often not the publish that was returned. This tracker
//! collects every carried return under its message's identity (exchange, routing key,
//! message ID), and a publish decides only once every publish started before its own confirm
//! arrived has handed in what its confirm carried: the broker sends a message's return
//! before its ack, so by then the return, if any, has been collected.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

use lapin::Confirmation;
use lapin::message::BasicReturnMessage;
use tokio::sync::Notify;

/// What identifies a publish to the broker: exchange, routing key and message ID.
pub(super) type Key = (String, String, Option<String>);

/// What the broker said about one publish, with the return attributed to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// `basic.ack` and no return.
    Acked,
    /// `basic.return` (then `basic.ack` or `basic.nack`).
    Returned,
    /// `basic.nack` and no return.
    Nacked,
}

/// Ticket for one publish on a channel; see [`Returns::register`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Ticket(u64);

#[derive(Default)]
struct State {
    next: u64,
    /// Publishes whose confirm has not been handed in yet.
    open: BTreeSet<u64>,
    /// Returns handed in and not yet claimed, by message identity.
    returned: HashMap<Key, usize>,
}

/// The returns of one confirm channel.
#[derive(Default)]
pub(super) struct Returns {
    state: Mutex<State>,
    handed_in: Notify,
}

/// The identity of a returned message.
fn key_of(message: &BasicReturnMessage) -> Key {
    (
        message.delivery.exchange.to_string(),
        message.delivery.routing_key.to_string(),
        message
            .delivery
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.to_string()),
    )
}

impl Returns {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a publish; call before `basic_publish`, and hand the ticket in with
    /// [`hand_in`](Self::hand_in) whatever happens.
    pub(super) fn register(&self) -> Ticket {
        let mut state = self.lock();
        let id = state.next;
        state.next += 1;
        state.open.insert(id);
        Ticket(id)
    }

    /// Hands in what a publish's confirm carried (`None` when it has none: the publish or the
    /// confirm failed). Returns whether the broker acked it (`None` when there was no
    /// confirmation).
    pub(super) fn hand_in(
        &self,
        ticket: Ticket,
        confirmation: Option<Confirmation>,
    ) -> Option<bool> {
        let (acked, carried) = match confirmation {
            Some(Confirmation::Ack(m)) => (Some(true), m),
            Some(Confirmation::Nack(m)) => (Some(false), m),
            Some(Confirmation::NotRequested) => (Some(false), None),
            None => (None, None),
        };
        let oldest = {
            let mut state = self.lock();
            let oldest = state.open.first() == Some(&ticket.0);
            state.open.remove(&ticket.0);
            if let Some(message) = carried {
                *state.returned.entry(key_of(&message)).or_default() += 1;
            }
            oldest
        };
        // A waiting publish waits for the oldest open ticket to pass its bound: only handing
        // in the oldest can let one go, so the others wake nobody.
        if oldest {
            self.handed_in.notify_waiters();
        }
        acked
    }

    /// Once the publish `ticket` has its confirmation (`acked`), waits until every publish
    /// registered before now has handed in its confirm, then claims the return of `key`, if
    /// one was collected.
    pub(super) async fn settle(&self, acked: bool, key: (&str, &str, &str)) -> Outcome {
        let bound = self.lock().next;
        loop {
            let handed_in = self.handed_in.notified();
            tokio::pin!(handed_in);
            handed_in.as_mut().enable();
            {
                let mut state = self.lock();
                if state.open.first().is_none_or(|first| *first >= bound) {
                    // The owned key is built only when some return is waiting to be claimed.
                    let owned = || (key.0.to_owned(), key.1.to_owned(), Some(key.2.to_owned()));
                    if !state.returned.is_empty() {
                        let owned = owned();
                        if let Some(n) = state.returned.get_mut(&owned) {
                            *n = n.saturating_sub(1);
                            if *n == 0 {
                                state.returned.remove(&owned);
                            }
                            return Outcome::Returned;
                        }
                    }
                    return if acked {
                        Outcome::Acked
                    } else {
                        Outcome::Nacked
                    };
                }
            }
            handed_in.await;
        }
    }
}
