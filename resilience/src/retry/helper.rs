use std::future::Future;

use super::RetryPolicy;
use super::hint::RetryHint;
use crate::classify::Classify;

/// Runs `op` until it succeeds or `policy` gives up, for code that is not a tower service.
///
/// Each call of `op` is one attempt; it builds the work afresh, so no request replay is
/// involved (the policy's [`Replay`](super::Replay) and idempotency settings are unused).
/// Attempts, backoff, jitter, deadline, hints, budget and classifier behave exactly as in
/// [`Retry`](super::Retry). Returns the last result unchanged.
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use sinew_resilience::retry::{retry, RetryPolicy};
/// use sinew_resilience::BoxError;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let policy = RetryPolicy::default();
/// let calls = AtomicU32::new(0);
/// let result: Result<u32, BoxError> = retry(&policy, || async {
///     match calls.fetch_add(1, Ordering::Relaxed) {
///         0 => Err("flaky".into()),
///         n => Ok(n),
///     }
/// })
/// .await;
/// assert_eq!(result.unwrap(), 1);
/// # }
/// ```
pub async fn retry<C, H, R, F, Fut, T, E>(policy: &RetryPolicy<C, H, R>, mut op: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    C: Classify<T, E>,
    H: RetryHint<T, E>,
{
    let mut attempts = policy.begin();
    loop {
        let result = op().await;
        match policy.decide(&result, &mut attempts, true) {
            None => return result,
            Some(delay) => {
                drop(result);
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}
