//! Restart strategies: a failed job restarts from its latest checkpoint, within its strategy.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir::engine::RestartStrategyKind;
use weir::prelude::*;

use crate::common::join_within;

const N: u64 = 30_000;

fn dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("weir-restart-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Sums per key of 0..N, failing (panicking) at record `fail_at` while `armed` says so.
fn job(
    root: &std::path::Path,
    strategy: RestartStrategyKind,
    fail_at: u64,
    armed: Arc<AtomicBool>,
    once: bool,
) -> (StreamEnv, CollectHandle<(u64, u64)>) {
    job_counting(
        root,
        strategy,
        fail_at,
        armed,
        once,
        Arc::new(AtomicU64::new(0)),
    )
}

/// The same job, counting the records its map processes over every attempt.
fn job_counting(
    root: &std::path::Path,
    strategy: RestartStrategyKind,
    fail_at: u64,
    armed: Arc<AtomicBool>,
    once: bool,
    processed: Arc<AtomicU64>,
) -> (StreamEnv, CollectHandle<(u64, u64)>) {
    let env = StreamEnv::new();
    env.configure(|c| {
        c.checkpoint_dir = root.display().to_string();
        c.checkpoint_interval = Duration::from_millis(40);
        c.restart_strategy = strategy;
        c.restart_fixed_delay_attempts = 2;
        c.restart_fixed_delay = Duration::from_millis(20);
    });
    let out = env
        .generate(Generator::new(|i| i).bounded(N).rate_limited(60_000.0))
        .set_parallelism(2)
        .uid("numbers")
        .map(move |x| {
            processed.fetch_add(1, Ordering::Relaxed);
            if x == fail_at && armed.load(Ordering::Relaxed) {
                if once {
                    armed.store(false, Ordering::Relaxed);
                }
                panic!("injected failure at {x}");
            }
            (x % 10, x)
        })
        .uid("pairs")
        .set_parallelism(2)
        .key_by(|r| r.0)
        .reduce(|(k, a), (_, b)| (k, a + b))
        .uid("sums")
        .set_parallelism(2)
        .collect();
    (env, out)
}

fn final_sums(out: Vec<(u64, u64)>) -> HashMap<u64, u64> {
    let mut m = HashMap::new();
    for (k, s) in out {
        let e = m.entry(k).or_insert(0);
        *e = (*e).max(s);
    }
    m
}

#[test]
fn a_failed_job_restarts_from_its_latest_checkpoint() {
    let root = dir("once");
    let armed = Arc::new(AtomicBool::new(true));
    let (env, out) = job(
        &root,
        RestartStrategyKind::FixedDelay,
        N / 2,
        armed.clone(),
        true,
    );
    let result = join_within(env.start().unwrap(), Duration::from_secs(60)).expect("recovered");
    assert_eq!(result.restarts, 1);
    assert!(!armed.load(Ordering::Relaxed), "the failure happened");
    assert!(result
        .checkpoints
        .iter()
        .any(|c| c.status == weir::engine::checkpoint::CheckpointStatus::Completed));
    let mut want = HashMap::new();
    for x in 0..N {
        *want.entry(x % 10).or_insert(0) += x;
    }
    assert_eq!(final_sums(out.take()), want, "state restored exactly once");
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn without_a_restart_strategy_a_failure_ends_the_job() {
    let root = dir("none");
    let (env, _) = job(
        &root,
        RestartStrategyKind::None,
        100,
        Arc::new(AtomicBool::new(true)),
        true,
    );
    let err = join_within(env.start().unwrap(), Duration::from_secs(30)).unwrap_err();
    assert!(err.to_string().contains("injected failure at 100"), "{err}");
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn fixed_delay_gives_up_after_its_attempts() {
    let root = dir("fixed");
    let (env, _) = job(
        &root,
        RestartStrategyKind::FixedDelay,
        100,
        Arc::new(AtomicBool::new(true)),
        false,
    );
    let handle = env.start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !handle.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        handle.restarts(),
        2,
        "two restarts, then the third failure ends it"
    );
    assert!(join_within(handle, Duration::from_secs(10)).is_err());
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn cancel_during_a_restart_delay_ends_the_job_promptly() {
    let root = dir("cancel");
    let env = StreamEnv::new();
    let failures = Arc::new(AtomicU64::new(0));
    let f = failures.clone();
    env.configure(|c| {
        c.restart_strategy = RestartStrategyKind::FixedDelay;
        c.restart_fixed_delay_attempts = 5;
        c.restart_fixed_delay = Duration::from_secs(30);
    });
    env.from_iter(0..10u64)
        .map(move |x| {
            f.fetch_add(1, Ordering::Relaxed);
            if x == 3 {
                panic!("boom");
            }
            x
        })
        .discard();
    let handle = env.start().unwrap();
    while failures.load(Ordering::Relaxed) < 4 {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(50)); // now in the 30 s delay
    let start = Instant::now();
    handle.cancel();
    let _ = join_within(handle, Duration::from_secs(10));
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "cancel waited for the restart delay"
    );
    std::fs::remove_dir_all(&root).ok();
}
