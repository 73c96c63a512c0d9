//! The failure policy, shared by every backend: runs a handler with in-process retries and
//! turns its result into a settlement the backend carries out.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tracing::Instrument;

use super::{Delivery, ErrorKind, Handler, Outcome, SubscriptionConfig};
use crate::dead_letter::headers as dl;
use crate::envelope::{Message, Timestamp};
use crate::telemetry::{self, Telemetry};

/// What the backend must do with a message after its handler ran.
#[derive(Debug)]
pub(crate) enum Settlement {
    /// Acknowledge it.
    Ack,
    /// Acknowledge it and deliver `message` (the same message with updated attempt headers)
    /// to this queue again after `delay`. RabbitMQ: confirmed publish to `{queue}.retry.{n}`
    /// via the default exchange, then ack.
    Retry { delay: Duration, message: Message },
    /// Acknowledge it and put `message` (with failure headers) in `{queue}.dlq`.
    DeadLetter { message: Message },
}

fn header_u32(message: &Message, name: &str) -> u32 {
    message
        .header(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Runs `handler` on `message` until it settles, inside a `CONSUMER` span (a child of and
/// linked to the producer's context with the `opentelemetry` feature, or only linked, as
/// [`SubscriptionConfig::consumer_trace`] says), and counts the delivery and its
/// settlement.
///
/// Every attempt's [`Delivery`] shares `message`; it is copied only when a failure must
/// write headers while someone else (the backend's unsettled copy, a handler that kept its
/// delivery) still holds it.
pub(crate) async fn process<H: Handler>(
    telemetry: &Telemetry,
    handler: &H,
    config: &SubscriptionConfig,
    queue: &Arc<str>,
    message: Arc<Message>,
    redelivery_count: u32,
) -> Settlement {
    let span = telemetry::consumer_span(
        telemetry,
        queue,
        &message,
        redelivery_count,
        config.consumer_trace(),
    );
    let settlement = run(handler, config, queue, message, redelivery_count)
        .instrument(span.clone())
        .await;
    telemetry::settled(telemetry, &span, &settlement);
    settlement
}

async fn run<H: Handler>(
    handler: &H,
    config: &SubscriptionConfig,
    queue: &Arc<str>,
    mut message: Arc<Message>,
    redelivery_count: u32,
) -> Settlement {
    let attempts_before = header_u32(&message, dl::ATTEMPTS);
    let mut attempt = attempts_before;
    // The jitter source, made on the first in-process retry: most messages never need it.
    let mut rng = None;
    let mut in_process = 0u32;
    loop {
        attempt = attempt.saturating_add(1);
        let delivery = Delivery {
            message: message.clone(),
            queue: queue.clone(),
            attempt,
            redelivery_count,
        };
        let result = AssertUnwindSafe(handler.handle(delivery))
            .catch_unwind()
            .await;
        let (kind, text, explicit_delay) = match result {
            Ok(Ok(Outcome::Ack)) => return Settlement::Ack,
            Ok(Ok(Outcome::DeadLetter { reason })) => ("rejected", reason, None),
            Ok(Ok(Outcome::Retry { after })) => {
                ("retry", "handler asked to retry".to_owned(), Some(after))
            }
            Ok(Err(e)) => (e.kind().as_str(), e.to_string(), None),
            Err(_) => (
                ErrorKind::Transient.as_str(),
                "handler panicked".to_owned(),
                None,
            ),
        };
        tracing::debug!(queue = &**queue, attempt, kind, error = %text, "handler did not succeed");
        let headers = Arc::make_mut(&mut message).headers_mut();
        headers.insert(dl::ATTEMPTS.to_owned(), attempt.to_string());
        headers
            .entry(dl::FIRST_FAILURE.to_owned())
            .or_insert_with(|| Timestamp::now().to_string());
        let retryable = kind == "retry" || kind == ErrorKind::Transient.as_str();
        let exhausted = attempt >= config.max_attempts();
        if !retryable || exhausted {
            let error_type = if retryable { "retries-exhausted" } else { kind };
            return dead_letter(
                Arc::unwrap_or_clone(message),
                error_type,
                &text,
                handler.name(),
                attempt,
            );
        }
        if explicit_delay.is_none() && in_process < config.in_process_retries() {
            let base = config
                .in_process_backoff()
                .saturating_mul(1 << in_process.min(16));
            in_process += 1;
            let rng = rng.get_or_insert_with(|| match config.jitter_seed() {
                Some(seed) => fastrand::Rng::with_seed(seed ^ u64::from(attempts_before)),
                None => fastrand::Rng::new(),
            });
            // Boxed: a `Sleep` is larger than the rest of this future, which every message
            // moves several times, and only failures reach it.
            Box::pin(tokio::time::sleep(base.mul_f64(0.5 + rng.f64() / 2.0))).await;
            continue;
        }
        let delayed_so_far = header_u32(&message, dl::DELAYED_RETRIES);
        let delays = config.delayed_retries();
        let idx = usize::try_from(delayed_so_far).unwrap_or(usize::MAX);
        let scheduled = delays.get(idx).copied();
        let delay = match explicit_delay {
            Some(Some(after)) => after,
            Some(None) => scheduled
                .or_else(|| delays.last().copied())
                .unwrap_or_default(),
            None => match scheduled {
                Some(d) => d,
                None => {
                    return dead_letter(
                        Arc::unwrap_or_clone(message),
                        "retries-exhausted",
                        &text,
                        handler.name(),
                        attempt,
                    );
                }
            },
        };
        let mut message = Arc::unwrap_or_clone(message);
        message.headers_mut().insert(
            dl::DELAYED_RETRIES.to_owned(),
            delayed_so_far.saturating_add(1).to_string(),
        );
        return Settlement::Retry { delay, message };
    }
}

fn dead_letter(
    mut message: Message,
    error_type: &str,
    error_message: &str,
    handler: &str,
    attempts: u32,
) -> Settlement {
    let routing_key = message.routing_key().to_owned();
    let headers = message.headers_mut();
    for (k, v) in [
        (dl::ERROR_TYPE, error_type),
        (dl::ERROR_MESSAGE, error_message),
        (dl::HANDLER, handler),
        (dl::ORIGINAL_ROUTING_KEY, &routing_key),
    ] {
        headers.insert(k.to_owned(), v.to_owned());
    }
    headers.insert(dl::ATTEMPTS.to_owned(), attempts.to_string());
    Settlement::DeadLetter { message }
}
