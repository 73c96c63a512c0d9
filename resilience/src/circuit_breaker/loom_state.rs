//! loom models of the breaker's hand-written synchronisation. Run with
//! `RUSTFLAGS="--cfg sinew_loom" cargo test -p sinew-resilience --release --lib loom`.

use loom::sync::Arc;
use loom::thread;

use super::permits::Permits;
use super::window::{CountWindow, encode};

#[test]
fn loom_half_open_admits_exactly_the_permits() {
    loom::model(|| {
        let permits = Arc::new(Permits::new());
        permits.reset(7, 2);
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let p = permits.clone();
                thread::spawn(move || p.try_acquire(7))
            })
            .collect();
        let admitted = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|ok| *ok)
            .count();
        assert_eq!(admitted, 2);
        assert_eq!(permits.remaining(7), 0);
    });
}

#[test]
fn loom_late_release_does_not_leak_into_the_next_cycle() {
    loom::model(|| {
        let permits = Arc::new(Permits::new());
        permits.reset(1, 1);
        assert!(permits.try_acquire(1));
        let p = permits.clone();
        let late = thread::spawn(move || p.release(1));
        permits.reset(2, 1);
        late.join().unwrap();
        // Whatever the interleaving, cycle 2 has at most its own single permit.
        assert!(permits.remaining(2) <= 1);
        let taken = (0..3).filter(|_| permits.try_acquire(2)).count();
        assert!(taken <= 1);
    });
}

#[test]
fn loom_count_window_counters_stay_exact() {
    loom::model(|| {
        let window = Arc::new(CountWindow::new(2));
        let f = encode(true, false);
        let s = encode(false, false);
        let w1 = window.clone();
        let t1 = thread::spawn(move || {
            w1.record(f);
        });
        let w2 = window.clone();
        let t2 = thread::spawn(move || {
            w2.record(f);
        });
        window.record(s);
        t1.join().unwrap();
        t2.join().unwrap();
        let c = window.counts();
        // Three records into a window of two: exactly the two slots' outcomes are counted.
        assert_eq!(c.calls, 2);
        assert!(c.failed == 1 || c.failed == 2, "failed = {}", c.failed);
        assert_eq!(c.slow, 0);
    });
}

#[test]
fn loom_count_window_healthy_fast_path_keeps_failures() {
    loom::model(|| {
        let window = Arc::new(CountWindow::new(2));
        let f = encode(true, false);
        let s = encode(false, false);
        // Full of successes: the next successes take the write-free path.
        window.record(s);
        window.record(s);
        let w1 = window.clone();
        let t1 = thread::spawn(move || {
            w1.record(f);
        });
        let w2 = window.clone();
        let t2 = thread::spawn(move || {
            w2.record(s);
        });
        window.record(s);
        t1.join().unwrap();
        t2.join().unwrap();
        let c = window.counts();
        // The failure either stays (successes ordered before it) or was evicted by the two
        // successes after it; it is never lost while its slot still holds it.
        assert_eq!(c.calls, 2);
        assert!(c.failed <= 1, "failed = {}", c.failed);
        assert_eq!(c.slow, 0);
        // One more success after everything settled: if the failure is still counted, the
        // window must still be able to evict it.
        window.record(s);
        window.record(s);
        assert_eq!(window.counts().failed, 0);
    });
}
