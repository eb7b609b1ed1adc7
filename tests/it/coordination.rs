//! Operator coordinators: the split source, call order, events and barriers, failures, state,
//! and the coordinator store.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use weir::engine::checkpoint::{decode_state, encode_state, CheckpointStatus};
use weir::engine::coordination::{
    Coordinator, CoordinatorContext, EventError, OperatorEvent, SubtaskGateway,
};
use weir::engine::RestartStrategyKind;
use weir::operators::{directory_splits, sequence_splits, LinesReader, RangeReader};
use weir::prelude::*;
use weir::state::checkpoint::format::FileKind;
use weir::state::checkpoint::{CheckpointStorage, LocalCheckpointStorage};

use crate::common::{eventually, join_within};

fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("weir-coord-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn a_split_source_reads_every_split_once() {
    let env = StreamEnv::new();
    let out = env
        .split_source("ranges", sequence_splits(5_000, 97), RangeReader::default)
        .set_parallelism(3)
        .collect();
    env.execute().unwrap();
    let by_subtask = out.take_by_subtask();
    let mut all: Vec<u64> = by_subtask.into_iter().flatten().collect();
    all.sort();
    assert_eq!(all, (0..5_000).collect::<Vec<_>>());
}

#[test]
fn a_split_source_reads_the_files_of_a_directory() {
    let dir = temp_dir("files");
    std::fs::create_dir_all(&dir).unwrap();
    for f in 0..7 {
        let lines: String = (0..50).map(|l| format!("{f}-{l}\n")).collect();
        std::fs::write(dir.join(format!("part-{f}.txt")), lines).unwrap();
    }
    let env = StreamEnv::new();
    let out = env
        .split_source(
            "files",
            directory_splits(&dir).unwrap(),
            LinesReader::default,
        )
        .set_parallelism(2)
        .collect();
    env.execute().unwrap();
    let mut got = out.take();
    got.sort();
    let mut expected: Vec<String> = (0..7)
        .flat_map(|f| (0..50).map(move |l| format!("{f}-{l}")))
        .collect();
    expected.sort();
    assert_eq!(got, expected);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Records every call, and sends one number per request.
struct Recorder {
    log: Arc<Mutex<Vec<String>>>,
    gateways: Vec<Option<SubtaskGateway<u64>>>,
    old: Vec<SubtaskGateway<u64>>,
    next: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Tick;

impl Coordinator for Recorder {
    type ToSubtask = u64;
    type FromSubtask = Tick;
    fn start(&mut self, _: &CoordinatorContext) -> Result<(), UserError> {
        self.log.lock().push("start".into());
        Ok(())
    }
    fn handle_event(
        &mut self,
        subtask: usize,
        _attempt: u32,
        _event: Tick,
        _: &CoordinatorContext,
    ) -> Result<(), UserError> {
        if let Some(Some(g)) = self.gateways.get(subtask) {
            // A subtask that finished (its last records asked too) takes no more numbers.
            if g.send(self.next).is_ok() {
                self.next += 1;
            }
        }
        Ok(())
    }
    fn checkpoint(&mut self, id: u64, _: &CoordinatorContext) -> Result<Vec<u8>, UserError> {
        self.log.lock().push(format!("checkpoint {id}"));
        encode_state(&self.next)
    }
    fn reset_to_checkpoint(
        &mut self,
        id: Option<u64>,
        state: Option<&[u8]>,
        _: &CoordinatorContext,
    ) -> Result<(), UserError> {
        self.next = match state {
            Some(b) => decode_state(b)?,
            None => 0,
        };
        self.log
            .lock()
            .push(format!("reset {id:?} next={}", self.next));
        Ok(())
    }
    fn subtask_reset(
        &mut self,
        subtask: usize,
        id: Option<u64>,
        _: &CoordinatorContext,
    ) -> Result<(), UserError> {
        self.log
            .lock()
            .push(format!("subtask_reset {subtask} {id:?}"));
        Ok(())
    }
    fn attempt_failed(
        &mut self,
        subtask: usize,
        attempt: u32,
        reason: &str,
        _: &CoordinatorContext,
    ) -> Result<(), UserError> {
        // The gateway of the failed attempt refuses events now.
        let refused = self
            .old
            .iter()
            .find(|g| g.subtask() == subtask && g.attempt() == attempt)
            .map(|g| matches!(g.send(0), Err(EventError::SubtaskNotRunning { .. })));
        self.log.lock().push(format!(
            "failed {subtask} {attempt} refused={refused:?} because {reason}"
        ));
        if let Some(g) = self.gateways.get_mut(subtask) {
            *g = None;
        }
        Ok(())
    }
    fn attempt_ready(
        &mut self,
        subtask: usize,
        attempt: u32,
        gateway: SubtaskGateway<u64>,
        _: &CoordinatorContext,
    ) -> Result<(), UserError> {
        self.log.lock().push(format!("ready {subtask} {attempt}"));
        if self.gateways.len() <= subtask {
            self.gateways.resize(subtask + 1, None);
        }
        self.gateways[subtask] = Some(gateway.clone());
        self.old.push(gateway);
        Ok(())
    }
    fn close(&mut self, _: &CoordinatorContext) -> Result<(), UserError> {
        self.log.lock().push("close".into());
        Ok(())
    }
}

/// Asks for a number per record and emits every number it receives; fails once when asked.
struct Receiver {
    received: u64,
    fail_at: Arc<AtomicU64>,
    /// The first event received after (re)start must be this one.
    expect_first: Option<u64>,
}

impl Operator for Receiver {
    type In = u64;
    type Out = u64;
    fn process_element(&mut self, x: u64, ctx: &mut Context<'_, u64>) -> Result<(), UserError> {
        if self.fail_at.load(Ordering::SeqCst) == x {
            self.fail_at.store(u64::MAX, Ordering::SeqCst);
            return Err(format!("planned failure at {x}").into());
        }
        ctx.send_to_coordinator(Tick)
    }
    fn handle_operator_event(
        &mut self,
        event: OperatorEvent,
        ctx: &mut Context<'_, u64>,
    ) -> Result<(), UserError> {
        let n: u64 = event.downcast()?;
        // Numbers come in order, without gaps, also across a restore.
        if n != self.received {
            return Err(format!("received {n}, expected {}", self.received).into());
        }
        self.received += 1;
        ctx.emit(n);
        Ok(())
    }
    fn snapshot_state(&mut self, _: u64) -> Result<Option<Vec<u8>>, UserError> {
        Ok(Some(encode_state(&self.received)?))
    }
    fn restore_state(&mut self, state: &[u8]) -> Result<(), UserError> {
        self.received = decode_state(state)?;
        self.expect_first = Some(self.received);
        Ok(())
    }
}

struct Job {
    env: StreamEnv,
    out: CollectHandle<u64>,
}

fn receiver_job(
    dir: &std::path::Path,
    log: Arc<Mutex<Vec<String>>>,
    fail_at: Arc<AtomicU64>,
    records: u64,
    restore: Option<String>,
) -> Job {
    let env = StreamEnv::new();
    env.configure(|c| {
        c.checkpoint_dir = dir.display().to_string();
        c.checkpoint_interval = Duration::from_millis(30);
        c.retained_checkpoints = 1000;
        c.restart_strategy = RestartStrategyKind::FixedDelay;
        c.restart_fixed_delay = Duration::from_millis(10);
        c.restart_fixed_delay_attempts = 3;
        c.buffer_timeout = Duration::from_millis(1);
        if let Some(r) = &restore {
            c.restore_path = r.clone();
        }
    });
    let out = env
        .generate(Generator::new(|i| i).bounded(records).rate_limited(4_000.0))
        .uid("numbers")
        .rebalance()
        .transform("receiver", move |_| Receiver {
            received: 0,
            fail_at: fail_at.clone(),
            expect_first: None,
        })
        .uid("receiver")
        .coordinated_by(move |_| Recorder {
            log,
            gateways: Vec::new(),
            old: Vec::new(),
            next: 0,
        })
        .collect();
    Job { env, out }
}

#[test]
fn calls_come_in_order_and_a_restart_resets_the_coordinator_to_its_checkpoint() {
    let dir = temp_dir("order");
    let log = Arc::new(Mutex::new(Vec::new()));
    let fail_at = Arc::new(AtomicU64::new(1_500));
    let job = receiver_job(&dir, log.clone(), fail_at, 3_000, None);
    let result = join_within(job.env.start().unwrap(), Duration::from_secs(60)).unwrap();
    let log = log.lock().clone();
    assert_eq!(result.restarts, 1, "{log:#?}");
    let interesting: Vec<&String> = log
        .iter()
        .filter(|l| !l.starts_with("checkpoint"))
        .collect();
    assert_eq!(interesting[0], "start");
    assert_eq!(interesting[1], "ready 0 0");
    assert!(
        interesting[2].starts_with("failed 0 0 refused=Some(true) because")
            && interesting[2].contains("planned failure at 1500"),
        "{interesting:?}"
    );
    assert!(interesting[3].starts_with("reset Some("), "{interesting:?}");
    assert!(
        interesting[4].starts_with("subtask_reset 0 Some("),
        "{interesting:?}"
    );
    assert_eq!(interesting[5], "ready 0 1");
    assert_eq!(interesting[6], "close");
    assert_eq!(interesting.len(), 7);
    // The coordinator was reset to its state of the restored checkpoint, which matches the
    // receiver's: every number arrives exactly once in order (the receiver checks), and the
    // numbers emitted after the restore continue the restored count.
    let mut got = job.out.take();
    got.sort();
    got.dedup();
    let max = *got.last().unwrap();
    assert_eq!(got, (0..=max).collect::<Vec<_>>());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Reads a completed checkpoint's coordinator state and the receiver's state.
fn states(storage: &LocalCheckpointStorage, id: u64) -> (u64, u64) {
    let c = storage
        .load(
            &storage
                .root()
                .join(format!("chk-{id}"))
                .display()
                .to_string(),
        )
        .unwrap();
    let h = &c.metadata.extra["coordinator/receiver"];
    let coordinator: u64 =
        decode_state(&storage.read_state(&c, h, FileKind::OperatorState).unwrap()).unwrap();
    let op = c.metadata.operator("receiver").unwrap();
    let h = op.subtasks[0].operator.as_ref().unwrap();
    let receiver: u64 =
        decode_state(&storage.read_state(&c, h, FileKind::OperatorState).unwrap()).unwrap();
    (coordinator, receiver)
}

/// Every number the coordinator sent before its checkpoint result reached the receiver before
/// the barrier, and none after: in every checkpoint, the coordinator's next number equals the
/// count the receiver had. Then a restore from the latest continues without gap or duplicate.
#[test]
fn events_land_on_the_right_side_of_the_barrier() {
    let dir = temp_dir("barrier");
    let log = Arc::new(Mutex::new(Vec::new()));
    let never = Arc::new(AtomicU64::new(u64::MAX));
    let job = receiver_job(&dir, log.clone(), never.clone(), u64::MAX, None);
    let handle = job.env.start().unwrap();
    let completed = |h: &JobHandle| {
        h.checkpoint_stats()
            .into_iter()
            .filter(|s| s.status == CheckpointStatus::Completed)
            .map(|s| s.id)
            .collect::<Vec<_>>()
    };
    assert!(eventually(Duration::from_secs(30), || completed(&handle)
        .len()
        >= 20));
    let ids = completed(&handle);
    handle.cancel();
    let _ = join_within(handle, Duration::from_secs(10));
    let storage = LocalCheckpointStorage::new(&dir);
    let mut nonzero = 0;
    for id in &ids {
        let (coordinator, receiver) = states(&storage, *id);
        assert_eq!(
            coordinator, receiver,
            "checkpoint {id}: the coordinator had sent {coordinator} numbers, the receiver had {receiver} before the barrier"
        );
        nonzero += usize::from(receiver > 0);
    }
    assert!(nonzero >= 10, "numbers flowed during the checkpoints");
    let first_run = job.out.take();

    // Restore from the latest checkpoint: the numbers continue from the restored count.
    let latest = storage.latest().unwrap().unwrap();
    let (restored_next, _) = states(&storage, latest.metadata.checkpoint_id);
    let job = receiver_job(
        &dir,
        Arc::new(Mutex::new(Vec::new())),
        never,
        0, // the generator's restored position is past this: it ends at once
        Some(latest.location.clone()),
    );
    let _ = join_within(job.env.start().unwrap(), Duration::from_secs(30)).unwrap();
    assert!(first_run.len() as u64 >= restored_next);
    let _ = std::fs::remove_dir_all(&dir);
}

/// An operator that cannot take its coordinator's event fails; its coordinator hears the
/// failure; the restarted job finishes.
#[test]
fn an_undeliverable_event_fails_the_subtask_and_the_coordinator_hears_it() {
    struct Deaf;
    impl Operator for Deaf {
        type In = u64;
        type Out = u64;
        fn process_element(&mut self, x: u64, ctx: &mut Context<'_, u64>) -> Result<(), UserError> {
            if x == 10 {
                ctx.send_to_coordinator(Tick)?;
            }
            ctx.emit(x);
            Ok(())
        }
        // No handle_operator_event: the default refuses events.
    }
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    let env = StreamEnv::new();
    env.configure(|c| {
        c.restart_strategy = RestartStrategyKind::FixedDelay;
        c.restart_fixed_delay = Duration::from_millis(10);
        c.restart_fixed_delay_attempts = 1;
    });
    // Only the first attempt's request is answered.
    struct Once(Arc<Mutex<Vec<String>>>, Vec<SubtaskGateway<u64>>, bool);
    impl Coordinator for Once {
        type ToSubtask = u64;
        type FromSubtask = Tick;
        fn handle_event(
            &mut self,
            s: usize,
            _: u32,
            _: Tick,
            _: &CoordinatorContext,
        ) -> Result<(), UserError> {
            if !self.2 {
                self.2 = true;
                self.1[s].send(7)?;
            }
            Ok(())
        }
        fn checkpoint(&mut self, _: u64, _: &CoordinatorContext) -> Result<Vec<u8>, UserError> {
            Ok(Vec::new())
        }
        fn reset_to_checkpoint(
            &mut self,
            _: Option<u64>,
            _: Option<&[u8]>,
            _: &CoordinatorContext,
        ) -> Result<(), UserError> {
            self.0.lock().push("reset".into());
            self.1.clear();
            Ok(())
        }
        fn attempt_failed(
            &mut self,
            s: usize,
            a: u32,
            reason: &str,
            _: &CoordinatorContext,
        ) -> Result<(), UserError> {
            self.0.lock().push(format!("failed {s} {a}: {reason}"));
            Ok(())
        }
        fn attempt_ready(
            &mut self,
            _: usize,
            _: u32,
            g: SubtaskGateway<u64>,
            _: &CoordinatorContext,
        ) -> Result<(), UserError> {
            self.1.push(g);
            Ok(())
        }
    }
    let out = env
        .generate(Generator::new(|i| i).bounded(100).rate_limited(1_000.0))
        .transform("deaf", |_| Deaf)
        .coordinated_by(move |_| Once(l, Vec::new(), false))
        .collect();
    let result = join_within(env.start().unwrap(), Duration::from_secs(30)).unwrap();
    assert_eq!(result.restarts, 1);
    let log = log.lock().clone();
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(
        log[0].starts_with("failed 0 0:") && log[0].contains("does not handle events"),
        "{log:?}"
    );
    assert_eq!(log[1], "reset");
    // The restarted attempt emitted everything (the first one part of it).
    let mut got = out.take();
    assert!(got.len() > 100);
    got.sort();
    got.dedup();
    assert_eq!(got, (0..100).collect::<Vec<_>>());
}

/// Four operators' coordinators count events in the store concurrently: no update is lost,
/// and exactly one of them wins a put-if-absent.
#[test]
fn coordinators_agree_through_the_store() {
    struct Counting;
    impl Coordinator for Counting {
        type ToSubtask = ();
        type FromSubtask = u64;
        fn start(&mut self, ctx: &CoordinatorContext) -> Result<(), UserError> {
            let me = ctx.info().name.clone();
            if ctx.store().put_if_absent("leader", me.clone())? == me {
                ctx.store()
                    .compute::<u64>("leaders", |v| Some(v.unwrap_or(0) + 1))?;
            }
            Ok(())
        }
        fn handle_event(
            &mut self,
            _: usize,
            _: u32,
            n: u64,
            ctx: &CoordinatorContext,
        ) -> Result<(), UserError> {
            ctx.store()
                .compute::<u64>("total", |v| Some(v.unwrap_or(0) + n))?;
            Ok(())
        }
        fn checkpoint(&mut self, _: u64, _: &CoordinatorContext) -> Result<Vec<u8>, UserError> {
            Ok(Vec::new())
        }
        fn reset_to_checkpoint(
            &mut self,
            _: Option<u64>,
            _: Option<&[u8]>,
            _: &CoordinatorContext,
        ) -> Result<(), UserError> {
            Ok(())
        }
        fn attempt_ready(
            &mut self,
            _: usize,
            _: u32,
            _: SubtaskGateway<()>,
            _: &CoordinatorContext,
        ) -> Result<(), UserError> {
            Ok(())
        }
        fn close(&mut self, ctx: &CoordinatorContext) -> Result<(), UserError> {
            let total = ctx.store().get::<u64>("total")?.unwrap_or(0);
            let leaders = ctx.store().get::<u64>("leaders")?.unwrap_or(0);
            RESULT.lock().push((total, leaders));
            Ok(())
        }
    }
    static RESULT: Mutex<Vec<(u64, u64)>> = Mutex::new(Vec::new());
    struct Report;
    impl Operator for Report {
        type In = u64;
        type Out = u64;
        fn process_element(&mut self, x: u64, ctx: &mut Context<'_, u64>) -> Result<(), UserError> {
            ctx.send_to_coordinator(1u64)?;
            ctx.emit(x);
            Ok(())
        }
    }
    let env = StreamEnv::new();
    let mut s = env.generate_sequence(0..20_000).set_parallelism(2);
    for i in 0..4 {
        s = s
            .transform(&format!("report-{i}"), |_| Report)
            .set_parallelism(2)
            .coordinated_by(|_| Counting);
    }
    s.sink("discard", |_| {
        weir::operators::DiscardSink::<u64>::default()
    });
    env.execute().unwrap();
    let results = RESULT.lock().clone();
    assert_eq!(results.len(), 4);
    // The last coordinator to close saw every event; none saw more.
    let max = results.iter().map(|r| r.0).max().unwrap();
    assert_eq!(max, 4 * 20_000);
    assert!(results.iter().all(|r| r.1 == 1), "{results:?}");
}

#[test]
fn a_coordinator_only_attaches_to_sources_and_operators() {
    let env = StreamEnv::new();
    let _ = env
        .generate_sequence(0..10)
        .key_by(|x| *x)
        .reduce(|a, b| a + b)
        .coordinated_by(|_| weir::operators::SplitEnumerator::<u64>::new(Vec::new()));
    let e = env.execute().unwrap_err().to_string();
    assert!(e.contains("coordinator") && e.contains("keyed"), "{e}");
}

/// A coordinator failing in `start` (before any attempt runs) fails the job.
/// A coordinator that fails in `start` (after waiting up to `wait` for the operator's first
/// element, which never comes when coordinators start before the tasks run), or in
/// `attempt_ready` (after the operator saw its last element, so the failure comes while the
/// tasks end).
struct FailsIn {
    start: bool,
    seen: Arc<AtomicU64>,
    wait: Duration,
    until: u64,
}

impl FailsIn {
    /// Waits until the operator saw `until` elements or `wait` passed.
    fn wait_for_elements(&self) {
        let deadline = std::time::Instant::now() + self.wait;
        while self.seen.load(Ordering::SeqCst) < self.until && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Coordinator for FailsIn {
    type ToSubtask = ();
    type FromSubtask = ();
    fn start(&mut self, _: &CoordinatorContext) -> Result<(), UserError> {
        if self.start {
            self.wait_for_elements();
            return Err("cannot reach the catalog".into());
        }
        Ok(())
    }
    fn handle_event(
        &mut self,
        _: usize,
        _: u32,
        _: (),
        _: &CoordinatorContext,
    ) -> Result<(), UserError> {
        Ok(())
    }
    fn checkpoint(&mut self, _: u64, _: &CoordinatorContext) -> Result<Vec<u8>, UserError> {
        Ok(Vec::new())
    }
    fn reset_to_checkpoint(
        &mut self,
        _: Option<u64>,
        _: Option<&[u8]>,
        _: &CoordinatorContext,
    ) -> Result<(), UserError> {
        Ok(())
    }
    fn attempt_ready(
        &mut self,
        _: usize,
        _: u32,
        _: SubtaskGateway<()>,
        _: &CoordinatorContext,
    ) -> Result<(), UserError> {
        if !self.start {
            self.wait_for_elements();
            return Err("the committer's lock is gone".into());
        }
        Ok(())
    }
}

/// A coordinator failing in `start` fails the job before any task of its operator ran: the
/// coordinator starts before the tasks, so the operator never sees an element (without that
/// order the tasks run meanwhile, and the failure could even come after they all finished and
/// be lost: the job ended as Finished).
#[test]
fn a_coordinator_failing_before_the_first_attempt_fails_the_job() {
    let seen = Arc::new(AtomicU64::new(0));
    let env = StreamEnv::new();
    let (s, coordinator_seen) = (seen.clone(), seen.clone());
    env.generate_sequence(0..10)
        .map(move |x| {
            s.fetch_add(1, Ordering::SeqCst);
            x
        })
        .coordinated_by(move |_| FailsIn {
            start: true,
            seen: coordinator_seen.clone(),
            wait: Duration::from_secs(2),
            until: 1,
        })
        .collect();
    let e = match env.start() {
        Err(e) => e,
        Ok(handle) => join_within(handle, Duration::from_secs(30)).unwrap_err(),
    }
    .to_string();
    assert!(e.contains("cannot reach the catalog"), "{e}");
    assert_eq!(
        seen.load(Ordering::SeqCst),
        0,
        "a task ran before its coordinator started"
    );
}

/// A coordinator failing in `attempt_ready` after its operator saw every element (so while the
/// tasks finish) fails the job: the job's end waits for every call queued to its coordinators.
#[test]
fn a_coordinator_failing_while_the_tasks_finish_fails_the_job() {
    let seen = Arc::new(AtomicU64::new(0));
    let env = StreamEnv::new();
    let (s, coordinator_seen) = (seen.clone(), seen.clone());
    env.generate_sequence(0..10)
        .map(move |x| {
            s.fetch_add(1, Ordering::SeqCst);
            x
        })
        .coordinated_by(move |_| FailsIn {
            start: false,
            seen: coordinator_seen.clone(),
            wait: Duration::from_secs(20),
            until: 10,
        })
        .collect();
    let e = join_within(env.start().unwrap(), Duration::from_secs(60))
        .unwrap_err()
        .to_string();
    assert!(e.contains("the committer's lock is gone"), "{e}");
    assert_eq!(seen.load(Ordering::SeqCst), 10);
}

/// Every event the gateway accepted is handled, also while the subtask finishes; after its
/// input ended the gateway refuses events (the coordinator learns it at once).
#[test]
fn no_accepted_event_is_dropped_when_a_subtask_finishes() {
    let sent_ok = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let handled = Arc::new(AtomicU64::new(0));
    /// Answers a tick 20 ms later with three events (the subtask is finishing by then).
    struct Answer(Arc<AtomicU64>, Arc<AtomicU64>, Option<SubtaskGateway<u64>>);
    impl Coordinator for Answer {
        type ToSubtask = u64;
        type FromSubtask = Tick;
        fn handle_event(
            &mut self,
            _: usize,
            _: u32,
            _: Tick,
            _: &CoordinatorContext,
        ) -> Result<(), UserError> {
            std::thread::sleep(Duration::from_millis(20));
            if let Some(g) = &self.2 {
                for n in 0..3 {
                    match g.send(n) {
                        Ok(()) => self.0.fetch_add(1, Ordering::SeqCst),
                        Err(_) => self.1.fetch_add(1, Ordering::SeqCst),
                    };
                }
            }
            Ok(())
        }
        fn checkpoint(&mut self, _: u64, _: &CoordinatorContext) -> Result<Vec<u8>, UserError> {
            Ok(Vec::new())
        }
        fn reset_to_checkpoint(
            &mut self,
            _: Option<u64>,
            _: Option<&[u8]>,
            _: &CoordinatorContext,
        ) -> Result<(), UserError> {
            Ok(())
        }
        fn attempt_ready(
            &mut self,
            _: usize,
            _: u32,
            g: SubtaskGateway<u64>,
            _: &CoordinatorContext,
        ) -> Result<(), UserError> {
            self.2 = Some(g);
            Ok(())
        }
    }
    /// Ticks on its last record, then takes 100 ms to finish.
    struct Slow(Arc<AtomicU64>);
    impl Operator for Slow {
        type In = u64;
        type Out = u64;
        fn process_element(&mut self, x: u64, ctx: &mut Context<'_, u64>) -> Result<(), UserError> {
            if x == 1_999 {
                ctx.send_to_coordinator(Tick)?;
            }
            ctx.emit(x);
            Ok(())
        }
        fn handle_operator_event(
            &mut self,
            e: OperatorEvent,
            _: &mut Context<'_, u64>,
        ) -> Result<(), UserError> {
            let _: u64 = e.downcast()?;
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        fn finish(&mut self, _: &mut Context<'_, u64>) -> Result<(), UserError> {
            std::thread::sleep(Duration::from_millis(100));
            Ok(())
        }
    }
    let (s, r, h) = (sent_ok.clone(), refused.clone(), handled.clone());
    let env = StreamEnv::new();
    env.generate_sequence(0..2_000)
        .transform("slow", move |_| Slow(h.clone()))
        .coordinated_by(move |_| Answer(s, r, None))
        .collect();
    join_within(env.start().unwrap(), Duration::from_secs(30)).unwrap();
    let (sent, no, got) = (
        sent_ok.load(Ordering::SeqCst),
        refused.load(Ordering::SeqCst),
        handled.load(Ordering::SeqCst),
    );
    assert_eq!(sent + no, 3);
    assert_eq!(
        sent, got,
        "{sent} events accepted, {got} handled, {no} refused"
    );
}
