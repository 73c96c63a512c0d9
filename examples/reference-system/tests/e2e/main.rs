#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! End to end in one process, on the embedded defaults: every demo step.

use sinew_reference_system::demo;
use sinew_reference_system::system::{System, SystemConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_passes_every_step() {
    let mut system = System::start(SystemConfig::embedded()).await.unwrap();
    // `demo::run` checks every expectation of each step and fails at the first unmet one.
    let report = demo::run(&mut system).await.unwrap();
    let numbers: Vec<usize> = report.steps.iter().map(|s| s.number).collect();
    assert_eq!(numbers, [1, 2, 3, 4, 5, 6, 7, 8]);
    assert!(
        report.to_string().contains("Compensated") || report.to_string().contains("compensated")
    );
    system.shutdown().await;
}
