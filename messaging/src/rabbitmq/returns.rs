//! Attributes `basic.return`s to the publishes they belong to.
//!
//! lapin hands each returned message to whichever publisher confirm it resolves next, and a
//! broker ack covering several delivery tags resolves them in no particular order, so the
//! confirm that carries a return is often not the publish that was returned. This tracker
//! collects every carried return under its message's identity (exchange, routing key,
//! message ID), and a publish decides only once every publish started before its own confirm
//! arrived has handed in what its confirm carried: the broker sends a message's return
//! before its ack, so by then the return, if any, has been collected.

use std::collections::{HashMap, VecDeque};
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

/// A publish's confirmation, handed in: what the broker said, and the publishes that must
/// hand in theirs before its return can be attributed (see [`Returns::settle`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct HandedIn {
    /// `basic.ack` (or else `basic.nack`).
    pub(super) acked: bool,
    /// Every ticket below this one was registered before the confirmation was handed in.
    bound: u64,
}

#[derive(Default)]
struct State {
    /// The next ticket.
    next: u64,
    /// The oldest ticket whose confirm has not been handed in (`next` when there is none).
    oldest: u64,
    /// Whether each ticket from `oldest` up to `next` has been handed in (tickets are
    /// sequential, so a ring instead of a set: no allocation once it has grown to the number
    /// of publishes in flight).
    handed_in: VecDeque<bool>,
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

impl State {
    /// Claims the return of `key` for a publish whose confirm said `acked`, once every
    /// ticket below `bound` has been handed in; `None` while one has not.
    fn try_settle(&mut self, confirmed: HandedIn, key: (&str, &str, &str)) -> Option<Outcome> {
        if self.oldest < confirmed.bound {
            return None;
        }
        // The owned key is built only when some return is waiting to be claimed.
        if !self.returned.is_empty() {
            let owned = (key.0.to_owned(), key.1.to_owned(), Some(key.2.to_owned()));
            if let Some(n) = self.returned.get_mut(&owned) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.returned.remove(&owned);
                }
                return Some(Outcome::Returned);
            }
        }
        Some(if confirmed.acked {
            Outcome::Acked
        } else {
            Outcome::Nacked
        })
    }
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
        state.handed_in.push_back(false);
        Ticket(id)
    }

    /// Hands in what a publish's confirm carried (`None` when it has none: the publish or the
    /// confirm failed). Returns what the broker said (`None` when there was no
    /// confirmation), to [`settle`](Self::settle).
    pub(super) fn hand_in(
        &self,
        ticket: Ticket,
        confirmation: Option<Confirmation>,
    ) -> Option<HandedIn> {
        let (acked, carried) = match confirmation {
            Some(Confirmation::Ack(m)) => (Some(true), m),
            Some(Confirmation::Nack(m)) => (Some(false), m),
            Some(Confirmation::NotRequested) => (Some(false), None),
            None => (None, None),
        };
        let (was_oldest, bound) = {
            let mut state = self.lock();
            let was_oldest = ticket.0 == state.oldest;
            let at = ticket
                .0
                .checked_sub(state.oldest)
                .and_then(|at| usize::try_from(at).ok());
            if let Some(slot) = at.and_then(|at| state.handed_in.get_mut(at)) {
                *slot = true;
            }
            while state.handed_in.front() == Some(&true) {
                state.handed_in.pop_front();
                state.oldest += 1;
            }
            if let Some(message) = carried {
                *state.returned.entry(key_of(&message)).or_default() += 1;
            }
            (was_oldest, state.next)
        };
        // A waiting publish waits for the oldest open ticket to pass its bound: only handing
        // in the oldest can let one go, so the others wake nobody.
        if was_oldest {
            self.handed_in.notify_waiters();
        }
        acked.map(|acked| HandedIn { acked, bound })
    }

    /// [`settle`](Self::settle) if every publish registered before the confirmation was
    /// handed in has handed in its own; `None` if it would wait.
    pub(super) fn try_settle(
        &self,
        confirmed: HandedIn,
        key: (&str, &str, &str),
    ) -> Option<Outcome> {
        self.lock().try_settle(confirmed, key)
    }

    /// Once a publish's confirmation is handed in, waits until every publish registered
    /// before then has handed in its confirm (the broker sends a return before the ack of
    /// its message, and lapin hands it to whichever confirm it resolves next), then claims
    /// the return of `key`, if one was collected.
    pub(super) async fn settle(&self, confirmed: HandedIn, key: (&str, &str, &str)) -> Outcome {
        // Most often the earlier publishes are all in already: no waiter to register.
        if let Some(outcome) = self.try_settle(confirmed, key) {
            return outcome;
        }
        loop {
            let handed_in = self.handed_in.notified();
            tokio::pin!(handed_in);
            handed_in.as_mut().enable();
            if let Some(outcome) = self.lock().try_settle(confirmed, key) {
                return outcome;
            }
            handed_in.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;
    use lapin::Confirmation;

    use super::{Outcome, Returns};

    const KEY: (&str, &str, &str) = ("ex", "a.b", "id-1");

    #[test]
    fn a_publish_settles_once_every_earlier_one_has_handed_in() {
        let returns = Returns::default();
        let first = returns.register();
        let second = returns.register();
        let confirmed = returns
            .hand_in(second, Some(Confirmation::Ack(None)))
            .unwrap();
        // The first publish's confirm may still carry the second one's return.
        let mut settle = Box::pin(returns.settle(confirmed, KEY));
        assert!(settle.as_mut().now_or_never().is_none());
        // A publish registered after the confirm was handed in is not waited for.
        let later = returns.register();
        assert_eq!(returns.hand_in(first, None), None);
        assert_eq!(settle.now_or_never(), Some(Outcome::Acked));
        let nacked = returns
            .hand_in(later, Some(Confirmation::Nack(None)))
            .unwrap();
        assert_eq!(
            returns.settle(nacked, KEY).now_or_never(),
            Some(Outcome::Nacked)
        );
    }

    #[test]
    fn tickets_handed_in_out_of_order_leave_nothing_open() {
        let returns = Returns::default();
        let tickets: Vec<_> = (0..100).map(|_| returns.register()).collect();
        // The odd ones last to first, then the even ones.
        for ticket in tickets.iter().skip(1).step_by(2).rev() {
            let _ = returns.hand_in(*ticket, Some(Confirmation::Ack(None)));
        }
        assert_eq!(returns.lock().oldest, 0);
        for ticket in tickets.iter().step_by(2) {
            let _ = returns.hand_in(*ticket, Some(Confirmation::Ack(None)));
        }
        let state = returns.lock();
        assert_eq!((state.oldest, state.next), (100, 100));
        assert!(state.handed_in.is_empty());
    }
}
