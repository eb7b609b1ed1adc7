//! Tolerable checkpoint failures: consecutive counted failures, reset on success, and reasons
//! that never count (Flink's FLINK-12364 semantics).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use weir::engine::checkpoint::encode_state;
use weir::engine::CheckpointError;
use weir::prelude::*;

use crate::common::join_within;

/// Declines every checkpoint while `fail` is set.
struct FlakySnapshot {
    fail: Arc<AtomicBool>,
}

impl Operator for FlakySnapshot {
    type In = u64;
    type Out = u64;
    fn process_element(&mut self, x: u64, ctx: &mut Context<'_, u64>) -> Result<(), UserError> {
        ctx.emit(x);
        Ok(())
    }
    fn snapshot_state(&mut self, _id: u64) -> Result<Option<Vec<u8>>, UserError> {
        if self.fail.load(Ordering::Relaxed) {
            return Err("disk on fire".into());
        }
        Ok(Some(encode_state(&0u64)?))
    }
}

fn dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("weir-tolerable-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn flaky_job(root: &std::path::Path, limit: usize, fail: &Arc<AtomicBool>) -> JobHandle {
    let env = StreamEnv::new();
    env.configure(|c| {
        c.checkpoint_dir = root.display().to_string();
        c.tolerable_failed_checkpoints = limit;
        c.checkpoint_timeout = Duration::from_secs(10); // a regression fails fast, not in 10 min
    });
    let f = fail.clone();
    env.generate(Generator::new(|i| i).rate_limited(5_000.0))
        .rebalance()
        .transform("Flaky", move |_| FlakySnapshot { fail: f.clone() })
        .set_parallelism(2)
        .discard();
    env.start().unwrap()
}

fn declined(r: Result<weir::state::checkpoint::CompletedCheckpoint, CheckpointError>) -> bool {
    matches!(r, Err(CheckpointError::Declined { ref reason, .. }) if reason.contains("disk on fire"))
}

#[test]
fn limit_three_survives_three_failures_and_fails_at_the_fourth() {
    let root = dir("limit");
    let fail = Arc::new(AtomicBool::new(true));
    let handle = flaky_job(&root, 3, &fail);
    for _ in 0..3 {
        assert!(declined(handle.trigger_checkpoint()));
    }
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        !handle.is_finished(),
        "3 consecutive failures are tolerated"
    );
    assert!(declined(handle.trigger_checkpoint()));
    match join_within(handle, Duration::from_secs(20)) {
        Err(JobError::CheckpointFailures {
            failed,
            tolerable,
            last,
        }) => {
            assert_eq!((failed, tolerable), (4, 3));
            assert!(last.contains("disk on fire"), "{last}");
        }
        other => panic!("expected the job to fail, got {other:?}"),
    }
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn a_success_resets_the_count() {
    let root = dir("reset");
    let fail = Arc::new(AtomicBool::new(true));
    let handle = flaky_job(&root, 3, &fail);
    for _ in 0..3 {
        assert!(declined(handle.trigger_checkpoint()));
    }
    fail.store(false, Ordering::Relaxed);
    handle
        .trigger_checkpoint()
        .expect("a successful checkpoint");
    fail.store(true, Ordering::Relaxed);
    for _ in 0..3 {
        assert!(declined(handle.trigger_checkpoint()));
    }
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        !handle.is_finished(),
        "the count started again after the success"
    );
    handle.cancel();
    assert_eq!(
        join_within(handle, Duration::from_secs(20)).unwrap().status,
        JobStatus::Cancelled
    );
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn expired_checkpoints_count() {
    let root = dir("expired");
    let env = StreamEnv::new();
    env.configure(|c| {
        c.checkpoint_dir = root.display().to_string();
        c.checkpoint_timeout = Duration::from_millis(30);
        c.max_records_per_buffer = 64;
    });
    env.generate(Generator::new(|i| i))
        .rebalance()
        .sink("Slow", |_| crate::common::SlowSink {
            cost: Duration::from_millis(1),
            consumed: Default::default(),
        });
    let handle = env.start().unwrap();
    std::thread::sleep(Duration::from_millis(500)); // backpressure: aligned barriers wait
    assert!(matches!(
        handle.trigger_checkpoint(),
        Err(CheckpointError::Expired { .. })
    ));
    let err = join_within(handle, Duration::from_secs(20)).unwrap_err();
    assert!(
        err.to_string().contains("tolerable failure threshold"),
        "{err}"
    );
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn uncounted_reasons_never_fail_the_job() {
    let root = dir("uncounted");
    let env = StreamEnv::new();
    env.configure(|c| c.checkpoint_dir = root.display().to_string());
    env.from_iter(0..4u64)
        .rebalance()
        .sink("Slow", |_| crate::common::SlowSink {
            cost: Duration::from_millis(150),
            consumed: Default::default(),
        });
    let handle = env.start().unwrap();
    std::thread::sleep(Duration::from_millis(150)); // the source has finished
    for _ in 0..3 {
        assert_eq!(
            handle.trigger_checkpoint().unwrap_err(),
            CheckpointError::TasksFinished
        );
    }
    let result = join_within(handle, Duration::from_secs(20)).expect("limit 0, yet not failed");
    assert_eq!(result.status, JobStatus::Finished);
    std::fs::remove_dir_all(&root).ok();
}
