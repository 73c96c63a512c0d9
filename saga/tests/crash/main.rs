//! Crash tests: the `saga-crash` binary runs an order saga on SQLite or PostgreSQL and is
//! killed with SIGKILL at every kill point in turn (before and after every store write, on
//! entering every participant, i.e. between each write-ahead and its call, and after every
//! effect); a new process runs `recover()`. Half of the runs also kill that first recovery
//! at some point and recover again. Then, for every saga:
//!
//! - it ended `Completed` or `Compensated` (as its variant demands), none is left running;
//! - every call of a (saga, step, phase) carried the same idempotency key, the derived one;
//! - every completed compensatable step was compensated, and nothing else was;
//! - a completed saga has every forward effect and no compensation.
//!
//! The matrix is 101 kill points per store (29 + 37 + 35 for the three variants: success,
//! payment declined, notification retried). `SINEW_SAGA_CRASH_REPEAT=n` repeats it with
//! other recovery kill points for a larger sweep.
#![cfg(feature = "crash-test")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../support/pg.rs"]
mod pg;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use sinew_saga::{IdempotencyKey, Phase, SagaId};

const BIN: &str = env!("CARGO_BIN_EXE_saga-crash");
const WORKERS: usize = 3;

#[derive(Debug, PartialEq, Eq)]
enum Exit {
    Killed,
    Done(u64),
}

/// Runs the driver; SIGKILLs it when it announces its kill point.
fn child(args: &[String]) -> Exit {
    let mut child = Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if line.starts_with("KILL") {
            child.kill().unwrap(); // SIGKILL on Unix
            child.wait().unwrap();
            return Exit::Killed;
        }
        if let Some(points) = line.strip_prefix("DONE points=") {
            let status = child.wait().unwrap();
            assert!(status.success(), "{args:?} exited with {status}");
            return Exit::Done(points.parse().unwrap());
        }
    }
    let status = child.wait().unwrap();
    panic!("{args:?} ended without DONE/KILL: {status}");
}

fn args(mode: &str, db: &str, extra: &[(&str, String)]) -> Vec<String> {
    let mut v = vec![mode.to_owned(), "--db".to_owned(), db.to_owned()];
    for (k, val) in extra {
        v.push((*k).to_owned());
        if !val.is_empty() {
            v.push(val.clone());
        }
    }
    v
}

/// One run: drive saga `first` of `variant`, killed at `kill_at`; recover (killed at
/// `recover_kill` first, if set); recover to the end.
fn scenario(db: &str, variant: u8, kill_at: u64, recover_kill: Option<u64>, first: u64) {
    let run = child(&args(
        "run",
        db,
        &[
            ("--variant", variant.to_string()),
            ("--kill-at", kill_at.to_string()),
            ("--first", first.to_string()),
        ],
    ));
    // Runs of one saga are deterministic: every kill point up to the dry run's count is hit.
    assert_eq!(
        run,
        Exit::Killed,
        "variant {variant} kill point {kill_at} not reached"
    );
    if let Some(k) = recover_kill {
        child(&args("recover", db, &[("--kill-at", k.to_string())]));
    }
    assert!(matches!(child(&args("recover", db, &[])), Exit::Done(_)));
}

/// What the database says after the runs.
#[derive(Default)]
struct Facts {
    /// saga id → (status, variant)
    sagas: BTreeMap<String, (String, u64)>,
    /// (saga, step, phase, key) of every participant call
    calls: Vec<(String, String, String, String)>,
    /// (saga, step, phase) of every applied effect
    effects: BTreeSet<(String, String, String)>,
}

const SAGAS_SQL: &str = "SELECT id, status, data FROM sinew_saga_instances";
const CALLS_SQL: &str = "SELECT saga_id, step, phase, idempotency_key FROM crash_calls";
const EFFECTS_SQL: &str = "SELECT saga_id, step, phase FROM crash_effects";

macro_rules! facts {
    ($pool:expr) => {{
        let mut f = Facts::default();
        let sagas: Vec<(String, String, String)> =
            sqlx::query_as(SAGAS_SQL).fetch_all($pool).await.unwrap();
        for (id, status, data) in sagas {
            let data: serde_json::Value = serde_json::from_str(&data).unwrap();
            f.sagas
                .insert(id, (status, data["variant"].as_u64().unwrap()));
        }
        f.calls = sqlx::query_as(CALLS_SQL).fetch_all($pool).await.unwrap();
        let effects: Vec<(String, String, String)> =
            sqlx::query_as(EFFECTS_SQL).fetch_all($pool).await.unwrap();
        f.effects = effects.into_iter().collect();
        f
    }};
}

/// Checks every saga; returns how many there are.
fn check(f: &Facts) -> usize {
    let mut keys: BTreeMap<(String, String, String), BTreeSet<String>> = BTreeMap::new();
    for (saga, step, phase, key) in &f.calls {
        keys.entry((saga.clone(), step.clone(), phase.clone()))
            .or_default()
            .insert(key.clone());
    }
    for ((saga, step, phase), ks) in &keys {
        assert_eq!(ks.len(), 1, "{saga} {step}/{phase} ran with keys {ks:?}");
        let id: SagaId = saga.parse().unwrap();
        let phase_v = if phase == "forward" {
            Phase::Forward
        } else {
            Phase::Compensate
        };
        let expected = IdempotencyKey::derive(id, step, phase_v).to_string();
        assert!(ks.contains(&expected), "{saga} {step}/{phase}: wrong key");
    }
    let has = |saga: &str, step: &str, phase: &str| {
        f.effects
            .contains(&(saga.to_owned(), step.to_owned(), phase.to_owned()))
    };
    for (saga, (status, variant)) in &f.sagas {
        let expected = if *variant == 1 {
            "compensated"
        } else {
            "completed"
        };
        assert_eq!(status, expected, "saga {saga} (variant {variant})");
        for step in ["create-order", "reserve-inventory"] {
            if status == "completed" {
                assert!(has(saga, step, "forward"), "{saga}: {step} missing");
                assert!(!has(saga, step, "compensate"), "{saga}: {step} compensated");
            } else {
                assert_eq!(
                    has(saga, step, "forward"),
                    has(saga, step, "compensate"),
                    "{saga}: {step} forward/compensation mismatch"
                );
            }
        }
        assert_eq!(
            has(saga, "process-payment", "forward"),
            status == "completed",
            "{saga}: payment"
        );
        assert_eq!(
            has(saga, "send-notification", "forward"),
            status == "completed",
            "{saga}: notification"
        );
    }
    f.sagas.len()
}

/// The kill-point matrix: (variant, kill point, recovery kill point).
fn matrix(points: [u64; 3]) -> Vec<(u8, u64, Option<u64>)> {
    let repeat: u64 = std::env::var("SINEW_SAGA_CRASH_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let mut runs = Vec::new();
    for round in 0..repeat {
        for (variant, max) in points.iter().enumerate() {
            for k in 1..=*max {
                let rk = (k + round) % 2 == 0;
                let rk = rk.then(|| 1 + (k * 7 + round * 13) % 24);
                runs.push((variant as u8, k, rk));
            }
        }
    }
    runs
}

/// Runs `work` over `runs` on a few threads (the runs mostly wait for leases to expire).
fn parallel<T: Sync>(runs: &[T], work: impl Fn(usize, &T) + Sync) {
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for w in 0..WORKERS {
            let (next, work) = (&next, &work);
            s.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(run) = runs.get(i) else { break };
                    let _ = w;
                    work(i, run);
                }
            });
        }
    });
}

#[test]
fn sqlite_survives_sigkill_at_every_point() {
    let dir = std::env::temp_dir().join(format!("sinew-saga-crash-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = |name: &str| format!("sqlite:{}", dir.join(name).display());
    // Dry runs: count the kill points of each variant (and check an uncrashed run).
    let mut points = [0; 3];
    for v in 0..3u8 {
        let Exit::Done(p) = child(&args("run", &db("dry.db"), &[("--variant", v.to_string())]))
        else {
            panic!("dry run killed")
        };
        points[v as usize] = p;
    }
    let runs = matrix(points);
    assert!(runs.len() >= 100, "{} runs", runs.len());
    parallel(&runs, |i, &(variant, k, rk)| {
        scenario(&db(&format!("run{i}.db")), variant, k, rk, i as u64);
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sagas = rt.block_on(async {
        let mut sagas = 0;
        for name in std::iter::once("dry.db".to_owned())
            .chain((0..runs.len()).map(|i| format!("run{i}.db")))
        {
            let store = sinew_saga::store::SqliteStore::open(dir.join(&name))
                .await
                .unwrap();
            sagas += check(&facts!(store.pool()));
        }
        sagas
    });
    // Three dry-run sagas, plus one per run except those killed before the first write.
    let expected = 3 + runs.iter().filter(|r| r.1 > 1).count();
    assert_eq!(sagas, expected, "{} runs", runs.len());
    let _ = std::fs::remove_dir_all(&dir);
}

fn pg_or_skip() -> Option<tokio::runtime::Runtime> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let reachable = rt.block_on(async {
        sqlx::PgPool::connect(&pg::url())
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    });
    match reachable {
        Ok(()) => Some(rt),
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true and PostgreSQL is unreachable: {e}"
            );
            None
        }
    }
}

async fn new_schema(prefix: &str) -> (sqlx::PgPool, String) {
    pg::schema_pool(prefix).await.unwrap()
}

#[test]
fn postgres_survives_sigkill_at_every_point() {
    let Some(rt) = pg_or_skip() else { return };
    // One schema per worker thread: runs in one schema follow each other.
    let schemas: Vec<(sqlx::PgPool, String)> = rt.block_on(async {
        let mut v = Vec::new();
        for _ in 0..WORKERS {
            v.push(new_schema("saga_crash").await);
        }
        v
    });
    let db = |schema: &str| format!("postgres:{}#{schema}", pg::url());
    let mut points = [0; 3];
    for v in 0..3u8 {
        let Exit::Done(p) = child(&args(
            "run",
            &db(&schemas[0].1),
            &[
                ("--variant", v.to_string()),
                ("--first", (1_000 + u64::from(v)).to_string()),
            ],
        )) else {
            panic!("dry run killed")
        };
        points[v as usize] = p;
    }
    let runs = matrix(points);
    let lanes: Vec<Mutex<()>> = (0..WORKERS).map(|_| Mutex::new(())).collect();
    parallel(&runs, |i, &(variant, k, rk)| {
        let lane = i % WORKERS;
        let _guard = lanes[lane].lock().unwrap();
        scenario(&db(&schemas[lane].1), variant, k, rk, i as u64);
    });
    let sagas = rt.block_on(async {
        let mut sagas = 0;
        for (pool, schema) in schemas {
            sagas += check(&facts!(&pool));
            pg::drop_schema(pool, &schema).await;
        }
        sagas
    });
    let expected = 3 + runs.iter().filter(|r| r.1 > 1).count();
    assert_eq!(sagas, expected, "{} runs", runs.len());
}

#[test]
fn two_orchestrators_racing_recovery_on_postgres_never_share_an_instance() {
    let Some(rt) = pg_or_skip() else { return };
    let (pool, schema) = rt.block_on(new_schema("saga_race"));
    let db = format!("postgres:{}#{schema}", pg::url());
    for round in 0..4u64 {
        // Twelve sagas driven concurrently, killed part-way (or finishing, for late points).
        child(&args(
            "run",
            &db,
            &[
                ("--sagas", "12".to_owned()),
                ("--first", (round * 100).to_string()),
                ("--kill-at", (40 + round * 61).to_string()),
                ("--lease-ms", "1500".to_owned()),
            ],
        ));
        // Two recovery processes race for the expired leases.
        let recover = || {
            let db = db.clone();
            std::thread::spawn(move || {
                child(&args(
                    "recover",
                    &db,
                    &[
                        ("--exclusive", String::new()),
                        ("--lease-ms", "1500".to_owned()),
                    ],
                ))
            })
        };
        let (a, b) = (recover(), recover());
        assert!(matches!(a.join().unwrap(), Exit::Done(_)));
        assert!(matches!(b.join().unwrap(), Exit::Done(_)));
    }
    rt.block_on(async {
        let f = facts!(&pool);
        assert_eq!(f.sagas.len(), 48);
        check(&f);
        let violations: Vec<(String, String)> =
            sqlx::query_as("SELECT saga_id, owner FROM crash_violations")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert!(violations.is_empty(), "two drivers at once: {violations:?}");
        let active: Vec<(String, String)> =
            sqlx::query_as("SELECT saga_id, owner FROM crash_active")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert!(active.is_empty());
        pg::drop_schema(pool, &schema).await;
    });
}
