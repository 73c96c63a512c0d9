//! The conformance suite (`sinew_messaging::testing`) against the memory backend, under
//! paused time.
#![cfg(all(feature = "memory", feature = "testing"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sinew_messaging::testing::{self, MemoryFactory};

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(start_paused = true)]
            async fn $name() {
                testing::$name(&MemoryFactory).await;
            }
        )*
    };
}

cases!(
    publish_before_subscribe,
    competing_consumers,
    topics_are_isolated,
    retry_then_succeed,
    prefetch_bounds_unsettled,
    continue_after_subscriber_close,
    continue_after_errors,
    each_subscription_gets_every_message,
    headers_propagate,
    dead_letter_after_failures_while_others_flow,
    delayed_retry_honours_delay,
    decode_error_goes_straight_to_dead_letters,
    unroutable_publish_is_error,
    per_aggregate_order_with_lanes,
    graceful_drain,
    redelivery_after_connection_drop,
    dead_letter_replay,
);
