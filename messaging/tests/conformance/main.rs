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

sinew_messaging::for_each_conformance_case!(cases);
