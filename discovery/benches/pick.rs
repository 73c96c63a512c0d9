#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `pick()` from the in-memory cache vs. a round trip to Consul per request (the reference's
//! pattern: `consul.health.service({passing: true})` then a random pick), side by side.
//!
//! ```sh
//! cargo bench -p sinew-discovery --features testing --bench pick
//! ```

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use sinew_discovery::consul::{Check, ConsulRegistry, ServiceRegistration};
use sinew_discovery::registry::Query;
use sinew_discovery::testing::FakeConsul;
use sinew_discovery::{Discovery, P2c, Picker, Random, RoundRobin, Weighted};

const INSTANCES: u16 = 5;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let consul = rt
        .block_on(FakeConsul::start())
        .unwrap_or_else(|e| panic!("fake consul: {e}"));
    for i in 0..INSTANCES {
        let registration = ServiceRegistration::builder("users")
            .id(format!("users-{i}"))
            .address("10.0.0.5")
            .port(3000 + i)
            .weights(u32::from(i) + 1, 1)
            .check(Check::http(
                format!("http://10.0.0.5:{}/health", 3000 + i),
                Duration::from_secs(10),
            ))
            .build()
            .unwrap_or_else(|e| panic!("registration: {e}"));
        consul.register(&registration);
    }
    let client = consul.client();
    let discovery = Discovery::new(ConsulRegistry::new(client.clone()));
    // The first read waits for the initial load; every later one is a memory read.
    rt.block_on(discovery.discover("users"))
        .unwrap_or_else(|e| panic!("discover: {e}"));

    let mut group = c.benchmark_group("pick");
    let round_robin = RoundRobin::new();
    group.bench_function("cache/round_robin_async_pick", |b| {
        b.iter(|| {
            black_box(
                discovery
                    .pick(black_box("users"), &round_robin)
                    .now_or_never(),
            )
        })
    });
    group.bench_function("cache/round_robin_try_pick", |b| {
        b.iter(|| black_box(discovery.try_pick(black_box("users"), &round_robin).ok()))
    });
    let weighted = Weighted::new();
    group.bench_function("cache/weighted", |b| {
        b.iter(|| black_box(discovery.try_pick(black_box("users"), &weighted).ok()))
    });
    let p2c = P2c::new();
    group.bench_function("cache/p2c", |b| {
        b.iter(|| black_box(discovery.try_pick(black_box("users"), &p2c).ok()))
    });
    let random = Random::new();
    let query = Query::new("users");
    group.bench_function("consul_round_trip/random", |b| {
        b.to_async(&rt).iter(|| async {
            let (instances, _) = client
                .health_service(&query, None)
                .await
                .unwrap_or_else(|e| panic!("health: {e}"));
            let at = random.pick(&instances, None);
            black_box(at.map(|at| instances[at].authority()))
        })
    });
    group.finish();
    drop(consul);
}

criterion_group!(benches, bench);
criterion_main!(benches);
