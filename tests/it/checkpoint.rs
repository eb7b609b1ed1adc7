//! Barrier checkpoints: triggering, storage, restore (also into another parallelism).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use weir::engine::checkpoint::{decode_state, encode_state};
use weir::engine::config::ChannelTransport;
use weir::engine::{CheckpointError, CheckpointingMode};
use weir::prelude::*;
use weir::state::checkpoint::CheckpointKind;

use crate::common::{eventually, join_within};

thread_local! {
    /// The channel transport of the jobs this test thread builds: every test runs over
    /// in-process channels, and those in [`over_encoded_channels`] again over channels that
    /// encode every buffer to bytes (the transport seam's second implementation).
    static TRANSPORT: std::cell::Cell<ChannelTransport> =
        const { std::cell::Cell::new(ChannelTransport::Local) };
}

/// A job environment on this test thread's transport.
fn new_env() -> StreamEnv {
    let env = StreamEnv::new();
    let transport = TRANSPORT.with(|t| t.get());
    env.configure(|c| c.channel_transport = transport);
    env
}

fn dir(name: &str) -> PathBuf {
    let transport = match TRANSPORT.with(|t| t.get()) {
        ChannelTransport::Local => "local",
        ChannelTransport::Encoded => "encoded",
    };
    let d = std::env::temp_dir().join(format!("weir-it-{name}-{transport}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

const N: u64 = 40_000;
const KEYS: u64 = 50;

/// How a summing job's input runs.
#[derive(Clone, Copy)]
enum Input {
    /// 40,000 records/s, holding after half of the input until the job is cancelled (serving
    /// barriers meanwhile): a checkpoint taken after 5,000 outputs is midway however slow the
    /// machine, and the job cannot end before the test's checkpoints are taken.
    HeldMidway,
    /// Every record, as fast as it goes (a restored run).
    Full,
}

/// Subtask `i` of `stride` emits `i, i + stride, ...` below N, at most `rate` per second, none
/// from `hold` on (until the job is cancelled). Its state is the next index, as the generator's.
struct Numbers {
    next: u64,
    stride: u64,
    hold: u64,
    rate: Option<f64>,
    started: Option<Instant>,
    emitted: u64,
}

impl Numbers {
    fn new(input: Input, info: &OperatorInfo) -> Self {
        let p = info.parallelism as u64;
        let (hold, rate) = match input {
            Input::HeldMidway => (N / 2, Some(40_000.0 / p as f64)),
            Input::Full => (N, None),
        };
        Numbers {
            next: info.subtask as u64,
            stride: p,
            hold,
            rate,
            started: None,
            emitted: 0,
        }
    }
}

impl Source for Numbers {
    type Out = u64;
    fn poll_next(&mut self, ctx: &mut SourceContext<'_, u64>) -> Result<SourceStatus, UserError> {
        let mut budget = u64::MAX;
        if let Some(rate) = self.rate {
            let started = *self.started.get_or_insert_with(Instant::now);
            let allowed = (started.elapsed().as_secs_f64() * rate) as u64 + 1;
            if self.emitted >= allowed {
                return Ok(SourceStatus::Pending(Duration::from_millis(1)));
            }
            budget = allowed - self.emitted;
        }
        let mut n = 0;
        while n < budget && self.next < self.hold.min(N) && !ctx.should_yield() {
            ctx.emit(self.next);
            self.next += self.stride;
            n += 1;
        }
        self.emitted += n;
        Ok(if self.next >= N {
            SourceStatus::Finished
        } else if self.next >= self.hold {
            SourceStatus::Pending(Duration::from_millis(5))
        } else {
            SourceStatus::MoreAvailable
        })
    }
    fn snapshot_state(&mut self, _: u64) -> Result<Option<Vec<u8>>, UserError> {
        Ok(Some(encode_state(&self.next)?))
    }
    fn restore_state(&mut self, state: &[u8]) -> Result<(), UserError> {
        self.next = decode_state(state)?;
        Ok(())
    }
}

/// numbers 0..N (2 subtasks) -> (key, x) -> key_by -> running sum -> collect.
fn summing_job(
    checkpoints: &Path,
    restore: Option<&str>,
    sum_parallelism: usize,
    mode: CheckpointingMode,
    input: Input,
) -> (StreamEnv, CollectHandle<(u64, u64)>) {
    let env = new_env();
    env.configure(|c| {
        c.checkpoint_dir = checkpoints.display().to_string();
        c.restore_path = restore.unwrap_or("").to_string();
        c.checkpointing_mode = mode;
        c.max_records_per_buffer = 64;
        c.buffer_timeout = Duration::from_millis(5);
    });
    let out = env
        .add_source("numbers", move |info| Numbers::new(input, info))
        .set_parallelism(2)
        .uid("numbers")
        .map(|x| (x % KEYS, x))
        .uid("keyed")
        .set_parallelism(2)
        .key_by(|r| r.0)
        .reduce(|(k, a), (_, b)| (k, a + b))
        .uid("sums")
        .set_parallelism(sum_parallelism)
        .collect();
    (env, out)
}

fn final_sums(outputs: &[Vec<(u64, u64)>]) -> HashMap<u64, u64> {
    // Running sums only grow: the largest value seen per key is its final sum.
    let mut last = HashMap::new();
    for (k, s) in outputs.iter().flatten() {
        let e = last.entry(*k).or_insert(0);
        *e = (*e).max(*s);
    }
    last
}

/// The restored run must start where the checkpoint was taken (at least 5,000 records in),
/// not from scratch, and end with every key's exact sum.
fn assert_resumed(outputs: Vec<(u64, u64)>, exact: bool) {
    let n = outputs.len() as u64;
    assert!(
        n <= N - 5_000,
        "the restored run processed {n} of {N} records: it did not resume"
    );
    let got = final_sums(&[outputs]);
    if exact {
        assert_eq!(got, expected(), "every record counted exactly once");
    } else {
        for (k, want) in expected() {
            assert!(
                got[&k] >= want,
                "key {k}: {} < {want}: a record was lost",
                got[&k]
            );
        }
    }
}

fn expected() -> HashMap<u64, u64> {
    let mut m = HashMap::new();
    for x in 0..N {
        *m.entry(x % KEYS).or_insert(0) += x;
    }
    m
}

/// Runs until a checkpoint of at least 5,000 records was taken, then cancels; returns where.
fn checkpoint_midway(root: &Path, sum_parallelism: usize, mode: CheckpointingMode) -> String {
    let (env, out) = summing_job(root, None, sum_parallelism, mode, Input::HeldMidway);
    let handle = env.start().unwrap();
    assert!(eventually(Duration::from_secs(20), || out.len() > 5_000));
    let checkpoint = handle.trigger_checkpoint().expect("checkpoint");
    assert!(
        out.len() < N as usize,
        "the job must still be running at the checkpoint"
    );
    handle.cancel();
    join_within(handle, Duration::from_secs(20)).unwrap();
    checkpoint.location
}

#[test]
fn a_manual_checkpoint_records_every_operator() {
    let root = dir("manual");
    let (env, _out) = summing_job(
        &root,
        None,
        2,
        CheckpointingMode::ExactlyOnce,
        Input::HeldMidway,
    );
    let handle = env.start().unwrap();
    let first = handle.trigger_checkpoint().unwrap();
    let second = handle.trigger_checkpoint().unwrap();
    handle.cancel();
    join_within(handle, Duration::from_secs(20)).unwrap();
    assert!(
        second.metadata.checkpoint_id > first.metadata.checkpoint_id,
        "ids increase"
    );
    assert!(Path::new(&second.location).join("_metadata").exists());
    assert!(
        !Path::new(&first.location).exists(),
        "subsumed (1 retained)"
    );
    let m = &second.metadata;
    assert_eq!(m.kind, CheckpointKind::Checkpoint);
    let source = m.operator("numbers").expect("source positions");
    assert_eq!(source.parallelism, 2);
    assert!(source.subtasks.iter().all(|s| s.operator.is_some()));
    let sums = m.operator("sums").expect("keyed state");
    assert_eq!(sums.subtasks.len(), 2);
    assert!(sums
        .subtasks
        .iter()
        .all(|s| s.keyed.is_some() && s.key_groups.is_some()));
    assert!(
        m.operator("keyed").is_none(),
        "a stateless map has no entry"
    );
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn without_storage_a_checkpoint_is_refused() {
    let env = new_env();
    env.generate(Generator::new(|i| i).rate_limited(1000.0))
        .discard();
    let handle = env.start().unwrap();
    assert_eq!(
        handle.trigger_checkpoint().unwrap_err(),
        CheckpointError::NoStorage
    );
    handle.cancel();
    join_within(handle, Duration::from_secs(10)).unwrap();
    let env = new_env();
    env.configure(|c| c.checkpoint_interval = Duration::from_secs(1));
    env.generate_sequence(0..10).discard();
    let e = env.start().err().expect("interval without a directory");
    assert!(e.to_string().contains("execution.checkpointing.dir"), "{e}");
}

#[test]
fn periodic_checkpoints_keep_the_newest_n() {
    let root = dir("periodic");
    let env = new_env();
    env.configure(|c| {
        c.checkpoint_dir = root.display().to_string();
        c.checkpoint_interval = Duration::from_millis(30);
        c.retained_checkpoints = 2;
    });
    env.generate(Generator::new(|i| i).rate_limited(50_000.0))
        .key_by(|x| x % 7)
        .reduce(|a, b| a + b)
        .discard();
    let handle = env.start().unwrap();
    let completed = |root: &Path| -> Vec<u64> {
        let mut ids: Vec<u64> = std::fs::read_dir(root)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().join("_metadata").exists())
                    .filter_map(|e| e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    };
    assert!(eventually(Duration::from_secs(20), || completed(&root)
        .last()
        .is_some_and(|id| *id >= 6)));
    handle.cancel();
    join_within(handle, Duration::from_secs(20)).unwrap();
    let ids = completed(&root);
    assert!(ids.len() <= 2, "retained {ids:?}");
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn restore_resumes_exactly_once() {
    let root = dir("restore");
    let location = checkpoint_midway(&root, 2, CheckpointingMode::ExactlyOnce);
    let (env, out) = summing_job(
        &root,
        Some(&location),
        2,
        CheckpointingMode::ExactlyOnce,
        Input::Full,
    );
    let handle = env.start().unwrap();
    assert_eq!(
        handle.restored_from().map(|c| c.location.clone()),
        Some(location)
    );
    join_within(handle, Duration::from_secs(60)).unwrap();
    assert_resumed(out.take(), true);
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn keyed_state_rescales_on_restore() {
    for target in [3usize, 1] {
        let root = dir(&format!("rescale-{target}"));
        let location = checkpoint_midway(&root, 2, CheckpointingMode::ExactlyOnce);
        let (env, out) = summing_job(
            &root,
            Some(&location),
            target,
            CheckpointingMode::ExactlyOnce,
            Input::Full,
        );
        join_within(env.start().unwrap(), Duration::from_secs(60)).unwrap();
        assert_resumed(out.take(), true);
        std::fs::remove_dir_all(&root).ok();
    }
}

#[test]
fn at_least_once_checkpoints_restore_without_loss() {
    let root = dir("alo");
    let location = checkpoint_midway(&root, 2, CheckpointingMode::AtLeastOnce);
    let (env, out) = summing_job(
        &root,
        Some(&location),
        2,
        CheckpointingMode::AtLeastOnce,
        Input::Full,
    );
    join_within(env.start().unwrap(), Duration::from_secs(60)).unwrap();
    assert_resumed(out.take(), false);
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn restore_latest_skips_a_corrupt_checkpoint() {
    let root = dir("corrupt");
    let (env, out) = summing_job(
        &root,
        None,
        2,
        CheckpointingMode::ExactlyOnce,
        Input::HeldMidway,
    );
    env.configure(|c| c.retained_checkpoints = 2);
    let handle = env.start().unwrap();
    assert!(eventually(Duration::from_secs(20), || out.len() > 5_000));
    let older = handle.trigger_checkpoint().unwrap();
    let newer = handle.trigger_checkpoint().unwrap();
    handle.cancel();
    join_within(handle, Duration::from_secs(20)).unwrap();
    // Flip one byte of one state file of the newer checkpoint.
    let victim = std::fs::read_dir(&newer.location)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "keyed"))
        .expect("a keyed state file");
    let mut bytes = std::fs::read(&victim).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&victim, bytes).unwrap();

    let (env, out) = summing_job(
        &root,
        Some("latest"),
        2,
        CheckpointingMode::ExactlyOnce,
        Input::Full,
    );
    let handle = env.start().unwrap();
    assert_eq!(
        handle.restored_from().map(|c| c.metadata.checkpoint_id),
        Some(older.metadata.checkpoint_id)
    );
    join_within(handle, Duration::from_secs(60)).unwrap();
    assert_resumed(out.take(), true);

    // Restoring the corrupt one by path fails with a clear error.
    let (env, _) = summing_job(
        &root,
        Some(&newer.location),
        2,
        CheckpointingMode::ExactlyOnce,
        Input::Full,
    );
    let e = env.start().err().expect("corrupt checkpoint");
    assert!(e.to_string().contains("checksum"), "{e}");
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn restore_errors_are_clear() {
    let root = dir("errors");
    let location = checkpoint_midway(&root, 2, CheckpointingMode::ExactlyOnce);
    // A job without the operator "sums".
    let env = new_env();
    env.configure(|c| c.restore_path = location.clone());
    env.generate(Generator::new(|i| i).bounded(10))
        .set_parallelism(2)
        .uid("numbers")
        .discard();
    let e = env.start().err().expect("unknown uid");
    assert!(
        e.to_string().contains("uid 'keyed'") || e.to_string().contains("uid 'sums'"),
        "{e}"
    );
    // The source's position cannot be split over another parallelism.
    let env = new_env();
    env.configure(|c| c.restore_path = location.clone());
    let s = env
        .generate(Generator::new(|i| i).bounded(10))
        .set_parallelism(3)
        .uid("numbers");
    s.map(|x| (x, x))
        .uid("keyed")
        .key_by(|r| r.0)
        .reduce(|a, _| a)
        .uid("sums")
        .discard();
    let e = env.start().err().expect("operator state rescale");
    assert!(
        e.to_string().contains("parallelism 2") && e.to_string().contains("not supported"),
        "{e}"
    );
    // Nothing at the path.
    let env = new_env();
    env.configure(|c| c.restore_path = root.join("nowhere").display().to_string());
    env.generate_sequence(0..1).discard();
    assert!(env
        .start()
        .err()
        .expect("missing")
        .to_string()
        .contains("no completed checkpoint"));
    std::fs::remove_dir_all(&root).ok();
}

/// Subtask 1 spends 200 µs per record while `slow` is set.
struct Laggard {
    slow: std::sync::Arc<std::sync::atomic::AtomicBool>,
    subtask: usize,
}

impl Operator for Laggard {
    type In = (u64, u64);
    type Out = (u64, u64);
    fn process_element(
        &mut self,
        r: (u64, u64),
        ctx: &mut Context<'_, (u64, u64)>,
    ) -> Result<(), UserError> {
        if self.subtask == 1 && self.slow.load(std::sync::atomic::Ordering::Relaxed) {
            std::thread::sleep(Duration::from_micros(200));
        }
        ctx.emit(r);
        Ok(())
    }
}

fn skewed_job(
    root: &Path,
    restore: Option<&str>,
    mode: CheckpointingMode,
    slow: &std::sync::Arc<std::sync::atomic::AtomicBool>,
    rate: f64,
) -> (StreamEnv, CollectHandle<(u64, u64)>) {
    skewed_job_with(root, restore, mode, false, slow, rate)
}

fn skewed_job_with(
    root: &Path,
    restore: Option<&str>,
    mode: CheckpointingMode,
    unaligned: bool,
    slow: &std::sync::Arc<std::sync::atomic::AtomicBool>,
    rate: f64,
) -> (StreamEnv, CollectHandle<(u64, u64)>) {
    skewed_job_full(root, restore, mode, unaligned, Duration::ZERO, slow, rate)
}

#[allow(clippy::too_many_arguments)]
fn skewed_job_full(
    root: &Path,
    restore: Option<&str>,
    mode: CheckpointingMode,
    unaligned: bool,
    aligned_timeout: Duration,
    slow: &std::sync::Arc<std::sync::atomic::AtomicBool>,
    rate: f64,
) -> (StreamEnv, CollectHandle<(u64, u64)>) {
    let env = new_env();
    env.configure(|c| {
        c.aligned_checkpoint_timeout = aligned_timeout;
        c.checkpoint_dir = root.display().to_string();
        c.restore_path = restore.unwrap_or("").to_string();
        c.checkpointing_mode = mode;
        c.unaligned = unaligned;
        c.max_records_per_buffer = 64;
        c.buffer_timeout = Duration::from_millis(5);
    });
    let slow = slow.clone();
    let out = env
        .generate(Generator::new(|i| i).bounded(N).rate_limited(rate))
        .set_parallelism(2)
        .uid("numbers")
        .map(|x| (x % KEYS, x))
        .set_parallelism(2)
        .uid("keyed")
        .rebalance()
        .transform("Laggard", move |info| Laggard {
            slow: slow.clone(),
            subtask: info.subtask,
        })
        .set_parallelism(2)
        .uid("laggard")
        .key_by(|r| r.0)
        .reduce(|(k, a), (_, b)| (k, a + b))
        .set_parallelism(2)
        .uid("sums")
        .collect();
    (env, out)
}

/// One input of the reduce lags far behind the other when the barrier comes: aligned
/// checkpoints still hold exactly the records before the barrier on every channel.
#[test]
fn alignment_keeps_records_after_a_barrier_out_of_the_snapshot() {
    let root = dir("skew");
    let slow = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (env, out) = skewed_job(&root, None, CheckpointingMode::ExactlyOnce, &slow, 20_000.0);
    let handle = env.start().unwrap();
    assert!(eventually(Duration::from_secs(20), || out.len() > 5_000));
    slow.store(true, std::sync::atomic::Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(300)); // the slow subtask's input fills up
    let checkpoint = handle.trigger_checkpoint().expect("checkpoint");
    slow.store(false, std::sync::atomic::Ordering::Relaxed);
    handle.cancel();
    join_within(handle, Duration::from_secs(20)).unwrap();

    let (env, out) = skewed_job(
        &root,
        Some(&checkpoint.location),
        CheckpointingMode::ExactlyOnce,
        &slow,
        1e9,
    );
    join_within(env.start().unwrap(), Duration::from_secs(60)).unwrap();
    assert_resumed(out.take(), true);
    std::fs::remove_dir_all(&root).ok();
}

/// An unaligned checkpoint taken while one path is backpressured holds in-flight records as
/// channel state, and a restore from it processes every record exactly once.
#[test]
fn unaligned_checkpoints_restore_exactly_once() {
    let root = dir("unaligned");
    let slow = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (env, out) = skewed_job_with(
        &root,
        None,
        CheckpointingMode::ExactlyOnce,
        true,
        &slow,
        20_000.0,
    );
    let handle = env.start().unwrap();
    assert!(eventually(Duration::from_secs(20), || out.len() > 5_000));
    slow.store(true, std::sync::atomic::Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(300));
    let checkpoint = handle.trigger_checkpoint().expect("checkpoint");
    slow.store(false, std::sync::atomic::Ordering::Relaxed);
    handle.cancel();
    join_within(handle, Duration::from_secs(20)).unwrap();
    assert!(checkpoint.metadata.unaligned);
    let in_flight: u64 = checkpoint
        .metadata
        .operators
        .iter()
        .flat_map(|o| &o.subtasks)
        .filter_map(|s| s.channel.as_ref().map(|h| h.size))
        .sum();
    assert!(
        in_flight > 0,
        "in-flight records persisted as channel state"
    );

    let (env, out) = skewed_job_with(
        &root,
        Some(&checkpoint.location),
        CheckpointingMode::ExactlyOnce,
        true,
        &slow,
        1e9,
    );
    join_within(env.start().unwrap(), Duration::from_secs(60)).unwrap();
    assert_resumed(out.take(), true);

    // In-flight records cannot be redistributed: rescaling from it is refused clearly.
    let env = new_env();
    env.configure(|c| {
        c.checkpoint_dir = root.display().to_string();
        c.restore_path = checkpoint.location.clone();
    });
    let slow2 = slow.clone();
    env.generate(Generator::new(|i| i).bounded(N))
        .set_parallelism(2)
        .uid("numbers")
        .map(|x| (x % KEYS, x))
        .set_parallelism(2)
        .uid("keyed")
        .rebalance()
        .transform("Laggard", move |info| Laggard {
            slow: slow2.clone(),
            subtask: info.subtask,
        })
        .set_parallelism(3)
        .uid("laggard")
        .key_by(|r| r.0)
        .reduce(|(k, a), (_, b)| (k, a + b))
        .set_parallelism(2)
        .uid("sums")
        .collect();
    let e = env
        .start()
        .err()
        .expect("rescaling an unaligned checkpoint");
    assert!(
        e.to_string().contains("unaligned") && e.to_string().contains("savepoint"),
        "{e}"
    );
    std::fs::remove_dir_all(&root).ok();
}

/// Under full backpressure (sink 1 ms per record), an unaligned barrier overtakes the queued
/// records, so the checkpoint completes in milliseconds; an aligned one waits for them.
#[test]
fn unaligned_checkpoints_do_not_wait_for_backpressured_data() {
    let mut durations = Vec::new();
    for unaligned in [true, false] {
        let root = dir(&format!("bp-{unaligned}"));
        let env = new_env();
        env.configure(|c| {
            c.checkpoint_dir = root.display().to_string();
            c.unaligned = unaligned;
            c.max_records_per_buffer = 64;
        });
        env.generate(Generator::new(|i| i))
            .set_parallelism(2)
            .key_by(|x| x % 16)
            .reduce(|a, b| a.wrapping_add(b))
            .set_parallelism(2)
            .sink("Slow", |_| crate::common::SlowSink {
                cost: Duration::from_millis(1),
                consumed: Default::default(),
            });
        let handle = env.start().unwrap();
        std::thread::sleep(Duration::from_millis(1500)); // queues fill up
        let start = std::time::Instant::now();
        let cp = handle.trigger_checkpoint().expect("checkpoint");
        let took = start.elapsed();
        let stats = handle.checkpoint_stats();
        let s = stats
            .iter()
            .find(|s| s.id == cp.metadata.checkpoint_id)
            .expect("stats of the checkpoint");
        assert_eq!(
            s.status,
            weir::engine::checkpoint::CheckpointStatus::Completed
        );
        assert_eq!(s.mode, if unaligned { "unaligned" } else { "aligned" });
        assert_eq!(
            s.persisted_inflight_bytes > 0,
            unaligned,
            "in-flight bytes: {}",
            s.persisted_inflight_bytes
        );
        assert!(!s.tasks.is_empty() && s.duration_ms > 0.0);
        if !unaligned {
            assert!(
                s.tasks.iter().any(|t| t.alignment_ms > 100.0),
                "alignment under backpressure took time"
            );
        }
        handle.cancel();
        join_within(handle, Duration::from_secs(30)).unwrap();
        let channel_files = cp
            .metadata
            .operators
            .iter()
            .flat_map(|o| &o.subtasks)
            .filter(|s| s.channel.is_some())
            .count();
        assert_eq!(
            channel_files > 0,
            unaligned,
            "channel state only in unaligned checkpoints"
        );
        durations.push(took);
        std::fs::remove_dir_all(&root).ok();
    }
    let (unaligned, aligned) = (durations[0], durations[1]);
    eprintln!("checkpoint under backpressure: unaligned {unaligned:?}, aligned {aligned:?}");
    assert!(
        unaligned < Duration::from_millis(150),
        "unaligned took {unaligned:?}"
    );
    assert!(
        aligned > unaligned * 5,
        "aligned {aligned:?} vs unaligned {unaligned:?}"
    );
}

/// Aligned checkpoints with a 50 ms alignment timeout, taken while one path lags: the
/// checkpoint switches to unaligned and a restore from it is exactly-once.
#[test]
fn switched_checkpoints_restore_exactly_once() {
    let root = dir("switched");
    let slow = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let timeout = Duration::from_millis(50);
    let (env, out) = skewed_job_full(
        &root,
        None,
        CheckpointingMode::ExactlyOnce,
        true,
        timeout,
        &slow,
        20_000.0,
    );
    let handle = env.start().unwrap();
    assert!(eventually(Duration::from_secs(20), || out.len() > 5_000));
    slow.store(true, std::sync::atomic::Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(300));
    let checkpoint = handle.trigger_checkpoint().expect("checkpoint");
    let stats = handle.checkpoint_stats();
    slow.store(false, std::sync::atomic::Ordering::Relaxed);
    handle.cancel();
    join_within(handle, Duration::from_secs(20)).unwrap();
    let s = stats
        .iter()
        .find(|s| s.id == checkpoint.metadata.checkpoint_id)
        .unwrap();
    assert_eq!(
        s.mode, "switched",
        "the lagging alignment switched to unaligned"
    );
    assert!(s.persisted_inflight_bytes > 0);

    let (env, out) = skewed_job_full(
        &root,
        Some(&checkpoint.location),
        CheckpointingMode::ExactlyOnce,
        true,
        timeout,
        &slow,
        1e9,
    );
    join_within(env.start().unwrap(), Duration::from_secs(60)).unwrap();
    assert_resumed(out.take(), true);
    std::fs::remove_dir_all(&root).ok();
}

/// Under full backpressure, an aligned checkpoint with a 100 ms timeout completes soon after
/// the timeout; without backpressure it stays aligned (no in-flight data persisted).
#[test]
fn aligned_timeout_bounds_checkpoints_under_backpressure() {
    let root = dir("timeout");
    let env = new_env();
    env.configure(|c| {
        c.checkpoint_dir = root.display().to_string();
        c.unaligned = true;
        c.aligned_checkpoint_timeout = Duration::from_millis(100);
        c.max_records_per_buffer = 64;
    });
    env.generate(Generator::new(|i| i))
        .set_parallelism(2)
        .key_by(|x| x % 16)
        .reduce(|a, b| a.wrapping_add(b))
        .set_parallelism(2)
        .sink("Slow", |_| crate::common::SlowSink {
            cost: Duration::from_millis(1),
            consumed: Default::default(),
        });
    let handle = env.start().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let start = std::time::Instant::now();
    let cp = handle.trigger_checkpoint().expect("checkpoint");
    let took = start.elapsed();
    let s = handle
        .checkpoint_stats()
        .into_iter()
        .find(|s| s.id == cp.metadata.checkpoint_id)
        .unwrap();
    handle.cancel();
    join_within(handle, Duration::from_secs(30)).unwrap();
    eprintln!(
        "aligned-timeout=100ms under backpressure: {took:?} ({})",
        s.mode
    );
    for t in &s.tasks {
        eprintln!(
            "  task {} delay {:.1} align {:.1} sync {:.1} unaligned {}",
            t.task, t.start_delay_ms, t.alignment_ms, t.sync_ms, t.unaligned
        );
    }
    assert_eq!(s.mode, "switched");
    assert!(took < Duration::from_millis(400), "took {took:?}");
    assert!(
        took >= Duration::from_millis(90),
        "it waited for the timeout first: {took:?}"
    );

    // No backpressure: the checkpoint aligns within the timeout and persists no in-flight data.
    let env = new_env();
    env.configure(|c| {
        c.checkpoint_dir = root.display().to_string();
        c.unaligned = true;
        c.aligned_checkpoint_timeout = Duration::from_secs(5);
    });
    env.generate(Generator::new(|i| i).rate_limited(10_000.0))
        .set_parallelism(2)
        .key_by(|x| x % 16)
        .reduce(|a, b| a.wrapping_add(b))
        .discard();
    let handle = env.start().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let cp = handle.trigger_checkpoint().expect("checkpoint");
    let s = handle
        .checkpoint_stats()
        .into_iter()
        .find(|s| s.id == cp.metadata.checkpoint_id)
        .unwrap();
    handle.cancel();
    join_within(handle, Duration::from_secs(30)).unwrap();
    assert_eq!((s.mode, s.persisted_inflight_bytes), ("aligned", 0));
    std::fs::remove_dir_all(&root).ok();
}

/// Aligned checkpoints with a timeout, one every 100 ms, behind a consumer that takes less
/// than a buffer per interval: the buffers forced ahead of each barrier are a loan the channel
/// repays before it forces again (a sender still owing one sends its next barrier unaligned),
/// so the gate never holds more than its credit plus one overdraft, and the persisted in-flight
/// data stays flat instead of growing with every checkpoint.
#[test]
fn aligned_timeout_keeps_in_flight_data_bounded_over_many_checkpoints() {
    const RECORDS_PER_BUFFER: usize = 64;
    const MAX_OVERDRAFT: usize = 5;
    let root = dir("timeout-bounded");
    let env = new_env();
    env.configure(|c| {
        c.checkpoint_dir = root.display().to_string();
        c.checkpoint_interval = Duration::from_millis(100);
        c.unaligned = true;
        c.aligned_checkpoint_timeout = Duration::from_millis(20);
        c.max_records_per_buffer = RECORDS_PER_BUFFER;
        c.max_overdraft_buffers = MAX_OVERDRAFT;
    });
    env.generate(Generator::new(|i| i))
        .sink("Slow", |_| crate::common::SlowSink {
            cost: Duration::from_millis(2),
            consumed: Default::default(),
        })
        .disable_chaining();
    let handle = env.start().unwrap();
    let sink = |h: &JobHandle| h.metrics().tasks_named("Slow").next().cloned();
    let start = Instant::now();
    let mut max_queued = 0;
    let mut capacity = 0;
    while start.elapsed() < Duration::from_secs(4) {
        if let Some(m) = sink(&handle) {
            max_queued = max_queued.max(m.input_queued_buffers);
            capacity = m.input_capacity_buffers;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let stats = handle.checkpoint_stats();
    handle.cancel();
    join_within(handle, Duration::from_secs(30)).unwrap();
    std::fs::remove_dir_all(&root).ok();

    let completed: Vec<u64> = stats
        .iter()
        .filter(|s| s.status == weir::engine::checkpoint::CheckpointStatus::Completed)
        .map(|s| s.persisted_inflight_bytes)
        .collect();
    eprintln!(
        "aligned-timeout every 100 ms: gate max {max_queued} buffers (credit {capacity}), \
         persisted in-flight per checkpoint {completed:?}"
    );
    assert!(completed.len() >= 10, "{} completed", completed.len());
    // Credit, one overdraft (the overdraft limit, the sealed partial buffer and the buffer
    // that overran it).
    let bound = capacity + MAX_OVERDRAFT + 2;
    assert!(
        capacity > 0 && max_queued <= bound,
        "gate held {max_queued} buffers, bound {bound}"
    );
    // What a checkpoint persists: at most the gate's bound and the sender's overdraft.
    let bytes_bound = ((bound + MAX_OVERDRAFT + 2) * RECORDS_PER_BUFFER * 8) as u64;
    let late = &completed[completed.len() / 2..];
    assert!(
        late.iter().all(|b| *b <= bytes_bound),
        "in-flight data grew past {bytes_bound} bytes: {late:?}"
    );
}

/// Tags records with the subtask that saw them (a broadcast receiver).
struct Tagged {
    slow: std::sync::Arc<std::sync::atomic::AtomicBool>,
    subtask: usize,
}

impl Operator for Tagged {
    type In = u64;
    type Out = (u64, u64);
    fn process_element(
        &mut self,
        x: u64,
        ctx: &mut Context<'_, (u64, u64)>,
    ) -> Result<(), UserError> {
        if self.subtask == 1 && self.slow.load(std::sync::atomic::Ordering::Relaxed) {
            std::thread::sleep(Duration::from_micros(200));
        }
        ctx.emit((self.subtask as u64 * 100 + x % KEYS, x));
        Ok(())
    }
}

fn broadcast_job(
    root: &Path,
    restore: Option<&str>,
    slow: &std::sync::Arc<std::sync::atomic::AtomicBool>,
    rate: f64,
) -> (StreamEnv, CollectHandle<(u64, u64)>) {
    let env = new_env();
    env.configure(|c| {
        c.checkpoint_dir = root.display().to_string();
        c.restore_path = restore.unwrap_or("").to_string();
        c.unaligned = true;
        c.max_records_per_buffer = 64;
        c.buffer_timeout = Duration::from_millis(5);
    });
    let slow = slow.clone();
    let out = env
        .generate(Generator::new(|i| i).bounded(N).rate_limited(rate))
        .set_parallelism(2)
        .uid("numbers")
        .broadcast()
        .transform("Tagged", move |info| Tagged {
            slow: slow.clone(),
            subtask: info.subtask,
        })
        .set_parallelism(2)
        .uid("tagged")
        .key_by(|r| r.0)
        .reduce(|(k, a), (_, b)| (k, a + b))
        .set_parallelism(2)
        .uid("sums")
        .collect();
    (env, out)
}

/// In-flight records waiting on a broadcast edge are restored onto the channels they waited
/// for: every receiver still sees every record exactly once.
#[test]
fn unaligned_restore_over_a_broadcast_edge_is_exactly_once() {
    let root = dir("broadcast");
    let slow = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (env, out) = broadcast_job(&root, None, &slow, 20_000.0);
    let handle = env.start().unwrap();
    assert!(eventually(Duration::from_secs(20), || out.len() > 10_000));
    slow.store(true, std::sync::atomic::Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(300));
    let checkpoint = handle.trigger_checkpoint().expect("checkpoint");
    slow.store(false, std::sync::atomic::Ordering::Relaxed);
    handle.cancel();
    join_within(handle, Duration::from_secs(20)).unwrap();
    let in_flight = checkpoint
        .metadata
        .operators
        .iter()
        .flat_map(|o| &o.subtasks)
        .filter(|s| s.channel.is_some())
        .count();
    assert!(in_flight > 0, "the checkpoint holds in-flight records");

    let (env, out) = broadcast_job(&root, Some(&checkpoint.location), &slow, 1e9);
    join_within(env.start().unwrap(), Duration::from_secs(60)).unwrap();
    let got = final_sums(&[out.take()]);
    let base = expected();
    for subtask in 0..2u64 {
        for (k, want) in &base {
            assert_eq!(
                got.get(&(subtask * 100 + k)),
                Some(want),
                "receiver {subtask}, key {k}"
            );
        }
    }
    std::fs::remove_dir_all(&root).ok();
}

/// The checkpoint tests of every mode again, over channels that encode each buffer to versioned
/// bytes and decode it on the other side: what the task loop, alignment and unaligned capture
/// do must not depend on the transport behind the channel seam.
mod over_encoded_channels {
    use super::*;

    fn encoded(test: fn()) {
        TRANSPORT.with(|t| t.set(ChannelTransport::Encoded));
        test();
    }

    #[test]
    fn a_manual_checkpoint_records_every_operator() {
        encoded(super::a_manual_checkpoint_records_every_operator);
    }

    #[test]
    fn restore_resumes_exactly_once() {
        encoded(super::restore_resumes_exactly_once);
    }

    #[test]
    fn keyed_state_rescales_on_restore() {
        encoded(super::keyed_state_rescales_on_restore);
    }

    #[test]
    fn at_least_once_checkpoints_restore_without_loss() {
        encoded(super::at_least_once_checkpoints_restore_without_loss);
    }

    #[test]
    fn alignment_keeps_records_after_a_barrier_out_of_the_snapshot() {
        encoded(super::alignment_keeps_records_after_a_barrier_out_of_the_snapshot);
    }

    #[test]
    fn unaligned_checkpoints_restore_exactly_once() {
        encoded(super::unaligned_checkpoints_restore_exactly_once);
    }

    #[test]
    fn unaligned_checkpoints_do_not_wait_for_backpressured_data() {
        encoded(super::unaligned_checkpoints_do_not_wait_for_backpressured_data);
    }

    #[test]
    fn switched_checkpoints_restore_exactly_once() {
        encoded(super::switched_checkpoints_restore_exactly_once);
    }

    #[test]
    fn aligned_timeout_bounds_checkpoints_under_backpressure() {
        encoded(super::aligned_timeout_bounds_checkpoints_under_backpressure);
    }

    #[test]
    fn unaligned_restore_over_a_broadcast_edge_is_exactly_once() {
        encoded(super::unaligned_restore_over_a_broadcast_edge_is_exactly_once);
    }
}
