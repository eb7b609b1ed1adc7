//! Planning and running a job: validation, chaining, channels, one thread per task (taken from
//! the process's shared task pool, [`crate::pool`]).
//!
//! Planning resolves every operator's parallelism and max parallelism, validates the graph,
//! and groups operators into chains (an operator joins its predecessor's task when it has a
//! single input, the edge is forward, the parallelisms are equal and chaining is enabled).
//! Running creates one input gate per subtask of every chain head with network inputs, the
//! record writers of every network edge, and one thread per task, plus the job's
//! processing-time service thread.
//!
//! Failure: the first task that fails (error or panic) records a [`JobError::TaskFailed`] naming
//! the operator and subtask and cancels every other task; `join` waits for every thread and
//! returns that error. Nothing is left running after `join` returns.

mod checkpoint_coordinator;

use crate::error::panic_message;
use crate::pool::TaskThread;
use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use std::collections::BTreeMap;
use std::sync::mpsc::Sender;

use weir_state::checkpoint::format::FileKind;
use weir_state::checkpoint::{
    CheckpointKind, CheckpointStorage, CompletedCheckpoint, LocalCheckpointStorage,
};
use weir_state::KeyGroupRange;

use crate::checkpoint::messages::{coordinator_state_key, CheckpointMsg};
use crate::checkpoint::{ChannelStateSnapshot, CheckpointStats, RestoreState};
use crate::config::ConfigError;
use crate::coordination::event::RunnerMsg;
use crate::coordination::gateway::{SubtaskChannel, ToCoordinator};
use crate::error::{CheckpointError, JobError, Result, TaskErrorKind, ValidationError};
use crate::graph::{EdgeWiring, Graph, NodeKind, PartitionKind};
use crate::mailbox::env::TaskEnv;
use crate::mailbox::signal::Signal;
use crate::mailbox::timer_service::TimerService;
use crate::mailbox::Mailbox;
use crate::metrics::{JobMetrics, TaskMetricsCell};
use crate::operator::OperatorInfo;
use crate::task::run::{TaskBody, TaskRuntime};
use checkpoint_coordinator::{CheckpointCoordinatorSetup, OperatorDescription};

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    /// Every source ended and every record was processed.
    Finished,
    /// The job was cancelled.
    Cancelled,
}

/// The result of a job that did not fail.
#[derive(Debug, Clone)]
pub struct JobResult {
    /// How it ended.
    pub status: JobStatus,
    /// Wall-clock duration.
    pub duration: Duration,
    /// Final metrics of every task (rates over each task's lifetime).
    pub metrics: JobMetrics,
    /// Statistics of every finished checkpoint.
    pub checkpoints: Vec<CheckpointStats>,
    /// How often the job was restarted after a failure.
    pub restarts: usize,
}

struct JobShared {
    mailboxes: Vec<Arc<Mailbox>>,
    metrics: Vec<Arc<TaskMetricsCell>>,
    failure: Mutex<Option<JobError>>,
    cancelled: AtomicBool,
    running: AtomicUsize,
}

impl JobShared {
    fn metrics(&self) -> JobMetrics {
        JobMetrics {
            tasks: self.metrics.iter().map(|m| m.snapshot()).collect(),
        }
    }
    fn cancel_all(&self) {
        for m in &self.mailboxes {
            m.cancel();
        }
    }
    fn fail(&self, e: JobError) {
        {
            let mut f = self.failure.lock();
            if f.is_none() {
                tracing::error!("{e}");
                *f = Some(e);
            }
        }
        self.cancel_all();
    }
}

/// One run of a job's tasks (a restart makes a new attempt).
struct Attempt {
    shared: Arc<JobShared>,
    threads: Vec<TaskThread<()>>,
    timer_service: Arc<TimerService>,
    timer_thread: Option<TaskThread<()>>,
    coordinator: Option<Sender<CheckpointMsg>>,
    coordinator_thread: Option<TaskThread<()>>,
    checkpoint_stats: Arc<Mutex<Vec<CheckpointStats>>>,
    restored_from: Option<CompletedCheckpoint>,
    started: Instant,
}

impl Attempt {
    /// What the job handle reaches of this attempt.
    fn control(&self) -> AttemptControl {
        AttemptControl {
            shared: self.shared.clone(),
            coordinator: self.coordinator.clone(),
            restored_from: self.restored_from.clone(),
        }
    }

    fn stop_services(&mut self) {
        if let Some(c) = self.coordinator.take() {
            let _ = c.send(CheckpointMsg::Shutdown);
        }
        if let Some(t) = self.coordinator_thread.take() {
            let _ = t.join();
        }
        self.timer_service.shutdown();
        if let Some(t) = self.timer_thread.take() {
            let _ = t.join();
        }
    }
    /// Waits for every task of the attempt and returns how it ended.
    fn wait(mut self) -> Result<JobResult> {
        let mut join_error = None;
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                join_error = Some(JobError::Internal(
                    "a task thread could not be joined".into(),
                ));
            }
        }
        self.stop_services();
        if let Some(e) = self.shared.failure.lock().take() {
            return Err(e);
        }
        if let Some(e) = join_error {
            return Err(e);
        }
        let status = if self.shared.cancelled.load(Ordering::Acquire) {
            JobStatus::Cancelled
        } else {
            JobStatus::Finished
        };
        Ok(JobResult {
            status,
            duration: self.started.elapsed(),
            metrics: self.shared.metrics(),
            checkpoints: self.checkpoint_stats.lock().clone(),
            restarts: 0,
        })
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            // Dropped without join: stop the job rather than leak running threads.
            self.shared.cancel_all();
            for t in self.threads.drain(..) {
                let _ = t.join();
            }
        }
        self.stop_services();
    }
}

/// What the job handle reaches of the current attempt.
#[derive(Clone)]
struct AttemptControl {
    shared: Arc<JobShared>,
    coordinator: Option<Sender<CheckpointMsg>>,
    restored_from: Option<CompletedCheckpoint>,
}

/// State shared by every attempt of a job and its handle.
struct JobLevel {
    current: Mutex<Option<AttemptControl>>,
    cancelled: AtomicBool,
    done: AtomicBool,
    restarts: AtomicUsize,
    checkpoint_stats: Arc<Mutex<Vec<CheckpointStats>>>,
    pending_checkpoints: Arc<Mutex<BTreeMap<u64, Instant>>>,
    /// A coordinator failed while no attempt was running: the next attempt (or the ending
    /// one) fails with it.
    coordinator_failure: Mutex<Option<JobError>>,
}

/// A running job: its attempts run under a supervisor thread that restarts failed attempts as
/// the restart strategy says, from the latest completed checkpoint.
pub struct JobHandle {
    level: Arc<JobLevel>,
    supervisor: Option<TaskThread<Result<JobResult>>>,
}

impl JobHandle {
    fn current(&self) -> Option<AttemptControl> {
        self.level.current.lock().clone()
    }

    /// Triggers a checkpoint now and waits until it completed (or failed).
    pub fn trigger_checkpoint(&self) -> std::result::Result<CompletedCheckpoint, CheckpointError> {
        self.trigger(CheckpointKind::Checkpoint)
    }

    /// Triggers a savepoint (aligned, never deleted automatically) and waits for it.
    pub fn trigger_savepoint(&self) -> std::result::Result<CompletedCheckpoint, CheckpointError> {
        self.trigger(CheckpointKind::Savepoint)
    }

    fn trigger(
        &self,
        kind: CheckpointKind,
    ) -> std::result::Result<CompletedCheckpoint, CheckpointError> {
        let Some(current) = self.current() else {
            return Err(CheckpointError::JobEnded);
        };
        let Some(tx) = current.coordinator else {
            return Err(CheckpointError::NoStorage);
        };
        let (reply, answer) = std::sync::mpsc::channel();
        tx.send(CheckpointMsg::Trigger { kind, reply })
            .map_err(|_| CheckpointError::JobEnded)?;
        answer.recv().unwrap_or(Err(CheckpointError::JobEnded))
    }

    /// Statistics of every finished (completed or failed) checkpoint so far, oldest first.
    pub fn checkpoint_stats(&self) -> Vec<CheckpointStats> {
        self.level.checkpoint_stats.lock().clone()
    }

    /// Checkpoints triggered but not finished yet, with their age.
    pub fn pending_checkpoints(&self) -> Vec<(u64, Duration)> {
        self.level
            .pending_checkpoints
            .lock()
            .iter()
            .map(|(id, t)| (*id, t.elapsed()))
            .collect()
    }

    /// The checkpoint or savepoint the current attempt was restored from, if any.
    pub fn restored_from(&self) -> Option<CompletedCheckpoint> {
        self.current().and_then(|c| c.restored_from)
    }

    /// How often the job was restarted after a failure so far.
    pub fn restarts(&self) -> usize {
        self.level.restarts.load(Ordering::Acquire)
    }

    /// Current metrics of every task of the current attempt.
    pub fn metrics(&self) -> JobMetrics {
        self.current()
            .map(|c| c.shared.metrics())
            .unwrap_or(JobMetrics { tasks: Vec::new() })
    }

    /// Asks every task to stop (no restart follows); `join` then returns
    /// [`JobStatus::Cancelled`].
    pub fn cancel(&self) {
        self.canceller().cancel()
    }

    /// A handle that cancels this job from another thread (the job handle itself is consumed
    /// by [`JobHandle::join`]).
    pub fn canceller(&self) -> JobCanceller {
        JobCanceller {
            level: self.level.clone(),
        }
    }

    /// Whether the job has ended (finished, cancelled, or failed beyond its restart strategy).
    pub fn is_finished(&self) -> bool {
        self.level.done.load(Ordering::Acquire)
    }

    /// Waits until the job ended and returns how.
    pub fn join(mut self) -> Result<JobResult> {
        match self.supervisor.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(JobError::Internal("the job supervisor panicked".into())),
            None => Err(JobError::Internal("the job was already joined".into())),
        }
    }
}

impl Drop for JobHandle {
    fn drop(&mut self) {
        if let Some(t) = self.supervisor.take() {
            // Dropped without join: stop the job rather than leak running threads.
            self.cancel();
            let _ = t.join();
        }
    }
}

/// Cancels a job from any thread ([`JobHandle::canceller`]).
#[derive(Clone)]
pub struct JobCanceller {
    level: Arc<JobLevel>,
}

impl JobCanceller {
    /// Same as [`JobHandle::cancel`].
    pub fn cancel(&self) {
        self.level.cancelled.store(true, Ordering::Release);
        let current = self.level.current.lock().clone();
        if let Some(c) = current {
            c.shared.cancelled.store(true, Ordering::Release);
            c.shared.cancel_all();
        }
    }
}

/// Validates the job, then runs it under a supervisor thread; returns once the first attempt
/// started (or failed to start).
pub(crate) fn start(mut g: Graph) -> Result<JobHandle> {
    g.config.validate()?;
    let plan = plan(&g)?;
    let level = Arc::new(JobLevel {
        current: Mutex::new(None),
        cancelled: AtomicBool::new(false),
        done: AtomicBool::new(false),
        restarts: AtomicUsize::new(0),
        checkpoint_stats: Arc::new(Mutex::new(Vec::new())),
        pending_checkpoints: Arc::new(Mutex::new(BTreeMap::new())),
        coordinator_failure: Mutex::new(None),
    });
    if g.async_io {
        g.runtime = Some(
            crate::async_io::runtime(g.config.async_io_worker_threads).map_err(|e| {
                JobError::Internal(format!("cannot start the async I/O runtime: {e}"))
            })?,
        );
    }
    if let Err(e) = start_coordinators(&mut g, &plan, &level) {
        for (_, h) in std::mem::take(&mut g.coordinators) {
            h.close();
        }
        return Err(e);
    }
    let (first_tx, first_rx) = std::sync::mpsc::channel::<Result<()>>();
    let lv = level.clone();
    let pooled = g.config.task_threads_pooled;
    let supervisor = TaskThread::spawn(pooled, "weir-job".into(), move || {
        let r = supervise(&mut g, &plan, &lv, first_tx);
        for (_, h) in std::mem::take(&mut g.coordinators) {
            h.close();
        }
        if let Some(rt) = g.runtime.take() {
            // Requests still in flight (of a failed or cancelled job) are dropped.
            rt.shutdown_background();
        }
        *lv.current.lock() = None;
        lv.done.store(true, Ordering::Release);
        r
    })
    .map_err(|e| JobError::Internal(format!("cannot start the job supervisor: {e}")))?;
    match first_rx.recv() {
        Ok(Ok(())) => Ok(JobHandle {
            level,
            supervisor: Some(supervisor),
        }),
        Ok(Err(e)) => {
            let _ = supervisor.join();
            Err(e)
        }
        Err(_) => match supervisor.join() {
            Ok(Err(e)) => Err(e),
            _ => Err(JobError::Internal(
                "the job supervisor ended before the job started".into(),
            )),
        },
    }
}

/// Starts the coordinators of the job's operators (one thread each). A coordinator's failure
/// fails the current attempt.
fn start_coordinators(g: &mut Graph, plan: &Plan, level: &Arc<JobLevel>) -> Result<()> {
    let store = crate::coordination::CoordinatorStore::new();
    let weak = Arc::downgrade(level);
    let fail: Arc<dyn Fn(JobError) + Send + Sync> = Arc::new(move |e: JobError| {
        let Some(level) = weak.upgrade() else {
            return tracing::error!("{e}");
        };
        let current = level.current.lock();
        match current.as_ref() {
            Some(c) if c.shared.running.load(Ordering::Acquire) > 0 => c.shared.fail(e),
            // Between attempts: the next one fails with it.
            _ => {
                level.coordinator_failure.lock().get_or_insert(e);
            }
        }
    });
    for i in 0..g.nodes.len() {
        let Some(mut factory) = g.nodes[i].coordinator.take() else {
            continue;
        };
        let ctx = crate::coordination::CoordinatorContext {
            info: crate::coordination::CoordinatorInfo {
                name: g.nodes[i].name.clone(),
                uid: plan.uids[i].clone(),
                parallelism: plan.parallelism[i],
            },
            store: store.clone(),
        };
        let spawned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            factory.spawn(ctx, fail.clone())
        }));
        let handle = match spawned {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                return Err(JobError::Internal(format!(
                    "cannot start the coordinator of '{}': {e}",
                    g.nodes[i].name
                )))
            }
            Err(p) => {
                return Err(JobError::CoordinatorFailed {
                    operator: g.nodes[i].name.clone(),
                    message: panic_message(&*p),
                })
            }
        };
        g.coordinators.push((i, handle));
    }
    Ok(())
}

/// Runs attempts until one finishes, is cancelled, or fails beyond the restart strategy.
fn supervise(
    g: &mut Graph,
    plan: &Plan,
    level: &JobLevel,
    first: std::sync::mpsc::Sender<Result<()>>,
) -> Result<JobResult> {
    let mut strategy = crate::restart::RestartStrategy::from_config(&g.config);
    let started = Instant::now();
    let mut restarts = 0usize;
    let mut first = Some(first);
    loop {
        // On the first attempt `start` learns a launch error from this thread's result.
        let attempt = match launch(g, plan, restarts as u32, level) {
            Ok(a) => a,
            // A coordinator failing its reset is a failure of the restart, handled by the
            // restart strategy like any other.
            Err(e @ JobError::CoordinatorFailed { .. }) if restarts > 0 => {
                if !wait_to_restart(&mut strategy, level, &e, restarts) {
                    return Err(e);
                }
                restarts += 1;
                level.restarts.store(restarts, Ordering::Release);
                continue;
            }
            Err(e) => return Err(e),
        };
        {
            let mut current = level.current.lock();
            *current = Some(attempt.control());
            // A coordinator that failed while no attempt ran fails this one.
            if let Some(e) = level.coordinator_failure.lock().take() {
                attempt.shared.fail(e);
            }
        }
        if let Some(tx) = first.take() {
            let _ = tx.send(Ok(()));
        }
        if level.cancelled.load(Ordering::Acquire) {
            attempt.shared.cancelled.store(true, Ordering::Release);
            attempt.shared.cancel_all();
        }
        let outcome = attempt.wait().and_then(|r| {
            // Every call queued to a coordinator before the end (attempt_ready, events of the
            // subtasks) is made before the attempt counts as finished: a failure there
            // fails the attempt, however late the coordinator's thread gets to it.
            for (_, h) in &g.coordinators {
                h.flush();
            }
            // A coordinator failure after the last task ended still fails the attempt.
            match level.coordinator_failure.lock().take() {
                Some(e) => Err(e),
                None => Ok(r),
            }
        });
        match outcome {
            Ok(mut result) => {
                result.duration = started.elapsed();
                result.restarts = restarts;
                return Ok(result);
            }
            Err(e) if level.cancelled.load(Ordering::Acquire) => {
                tracing::info!("job cancelled while failing: {e}");
                return Err(e);
            }
            Err(e) => {
                // Every subtask of the attempt failed over: its coordinator hears it.
                for (node, h) in &g.coordinators {
                    for subtask in 0..plan.parallelism[*node] {
                        h.post(RunnerMsg::AttemptFailed {
                            subtask,
                            attempt: restarts as u32,
                            reason: e.to_string(),
                        });
                    }
                }
                if !wait_to_restart(&mut strategy, level, &e, restarts) {
                    return Err(e);
                }
                restarts += 1;
                level.restarts.store(restarts, Ordering::Release);
            }
        }
    }
}

/// Asks the restart strategy about failure `e` and waits its delay; false if the job must end
/// (the strategy gives up, or the job was cancelled meanwhile).
fn wait_to_restart(
    strategy: &mut crate::restart::RestartStrategy,
    level: &JobLevel,
    e: &JobError,
    restarts: usize,
) -> bool {
    let Some(delay) = strategy.on_failure(Instant::now()) else {
        return false;
    };
    tracing::warn!(
        "attempt {} failed ({e}); restarting in {delay:?}",
        restarts + 1
    );
    let until = Instant::now() + delay;
    while Instant::now() < until {
        if level.cancelled.load(Ordering::Acquire) {
            return false;
        }
        std::thread::sleep((until - Instant::now()).min(Duration::from_millis(20)));
    }
    true
}

/// Resolved facts about the graph.
struct Plan {
    parallelism: Vec<usize>,
    max_parallelism: Vec<usize>,
    uids: Vec<String>,
    /// Node is chained into its single input's task.
    chained: Vec<bool>,
    /// Consumers of each node: (consumer, index of the edge in the consumer's inputs).
    consumers: Vec<Vec<(usize, usize)>>,
}

fn pointwise(kind: PartitionKind, from_p: usize, to_p: usize) -> bool {
    match kind {
        PartitionKind::Forward => true,
        PartitionKind::Default => from_p == to_p,
        _ => false,
    }
}

fn plan(g: &Graph) -> std::result::Result<Plan, ValidationError> {
    if let Some(e) = g.errors.first() {
        return Err(e.clone());
    }
    if g.nodes.is_empty() {
        return Err(ValidationError::EmptyJob);
    }
    let cfg = &g.config;
    let mut parallelism = Vec::new();
    let mut max_parallelism = Vec::new();
    let mut uids: Vec<String> = Vec::new();
    let mut seen: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    for (i, n) in g.nodes.iter().enumerate() {
        if n.name.is_empty() {
            return Err(ValidationError::Empty {
                operator: format!("#{i}"),
                what: "name",
            });
        }
        let p = match (n.non_parallel, n.parallelism) {
            (true, Some(p)) if p > 1 => {
                return Err(ValidationError::NonParallelOperator {
                    operator: n.name.clone(),
                    parallelism: p,
                })
            }
            (true, _) => 1,
            (false, Some(p)) => p,
            (false, None) => cfg.default_parallelism,
        };
        if p == 0 {
            return Err(ValidationError::ZeroParallelism {
                operator: n.name.clone(),
            });
        }
        let max_p = n.max_parallelism.unwrap_or(cfg.max_parallelism);
        if max_p == 0 || max_p > weir_state::UPPER_BOUND_MAX_PARALLELISM {
            return Err(ValidationError::MaxParallelismOutOfRange {
                operator: n.name.clone(),
                max_parallelism: max_p,
            });
        }
        if max_p < p {
            return Err(ValidationError::MaxParallelismTooSmall {
                operator: n.name.clone(),
                parallelism: p,
                max_parallelism: max_p,
            });
        }
        match &n.uid {
            Some(u) if u.is_empty() => {
                return Err(ValidationError::Empty {
                    operator: n.name.clone(),
                    what: "uid",
                })
            }
            Some(u) => {
                if let Some(first) = seen.insert(u, &n.name) {
                    return Err(ValidationError::DuplicateUid {
                        uid: u.clone(),
                        first: first.to_string(),
                        second: n.name.clone(),
                    });
                }
                uids.push(u.clone());
            }
            None => uids.push(format!("auto-{i}-{}", n.name)),
        }
        parallelism.push(p);
        max_parallelism.push(max_p);
    }
    let mut consumers = vec![Vec::new(); g.nodes.len()];
    let mut chained = vec![false; g.nodes.len()];
    for (i, n) in g.nodes.iter().enumerate() {
        for (e_idx, e) in n.inputs.iter().enumerate() {
            let (fp, tp) = (parallelism[e.from], parallelism[i]);
            if e.kind == PartitionKind::Forward && fp != tp {
                return Err(ValidationError::ForwardParallelismMismatch {
                    from: g.nodes[e.from].name.clone(),
                    from_parallelism: fp,
                    to: n.name.clone(),
                    to_parallelism: tp,
                });
            }
            consumers[e.from].push((i, e_idx));
        }
        chained[i] = cfg.operator_chaining
            && n.chainable
            && n.inputs.len() == 1
            && pointwise(
                n.inputs[0].kind,
                parallelism[n.inputs[0].from],
                parallelism[i],
            );
    }
    Ok(Plan {
        parallelism,
        max_parallelism,
        uids,
        chained,
        consumers,
    })
}

struct Builder<'a> {
    g: &'a mut Graph,
    plan: &'a Plan,
    /// Per node with network inputs: its gates (erased), one per subtask.
    gates: Vec<Vec<Box<dyn Any>>>,
    /// Per node, per input edge, per receiver subtask: the edge's first channel in the gate.
    offsets: Vec<Vec<Vec<usize>>>,
    /// Per node, per subtask: the state it restores.
    restores: Vec<Vec<RestoreState>>,
    /// Output channel state of the task being built, by writer key.
    replays: std::collections::HashMap<String, Vec<u8>>,
    /// Every task's mailbox.
    mailboxes: &'a [Arc<Mailbox>],
    /// The attempt being built.
    attempt: u32,
    /// The task being built.
    task: usize,
    /// Coordinator paths made so far: (task, node, channel).
    channels: Vec<(usize, usize, Arc<SubtaskChannel>)>,
}

impl Builder<'_> {
    /// The way between `node`'s coordinator (if it has one) and its subtask `subtask`, the
    /// link with chain index `index` of the task being built.
    fn coordinator(&mut self, node: usize, subtask: usize, index: usize) -> Option<ToCoordinator> {
        let (_, h) = self.g.coordinators.iter().find(|(n, _)| *n == node)?;
        let h = h.clone();
        let ch = Arc::new(SubtaskChannel::new(
            subtask,
            self.attempt,
            index,
            self.mailboxes[self.task].clone(),
            h.deliveries.clone(),
        ));
        self.channels.push((self.task, node, ch));
        Some(ToCoordinator {
            operator: h.name.clone(),
            subtask,
            attempt: self.attempt,
            tx: h.tx.clone(),
        })
    }

    fn info(&self, node: usize, subtask: usize) -> OperatorInfo {
        OperatorInfo {
            name: self.g.nodes[node].name.clone(),
            uid: self.plan.uids[node].clone(),
            subtask,
            parallelism: self.plan.parallelism[node],
            max_parallelism: self.plan.max_parallelism[node],
            commit_fence: self.g.commit_fence.clone(),
        }
    }

    /// Builds everything downstream of `node` in its task: chained links and network writers.
    fn output(
        &mut self,
        node: usize,
        subtask: usize,
        signal: &Signal,
        names: &mut Vec<String>,
        channels: &mut usize,
    ) -> Box<dyn Any> {
        let mut outs = Vec::new();
        for &(c, e_idx) in &self.plan.consumers[node].clone() {
            if self.plan.chained[c] {
                let index = names.len();
                names.push(self.g.nodes[c].name.clone());
                let next = self.output(c, subtask, signal, names, channels);
                let info = self.info(c, subtask);
                let coordinator = self.coordinator(c, subtask, index);
                match &mut self.g.nodes[c].kind {
                    NodeKind::Operator(f) => {
                        let restore = std::mem::take(&mut self.restores[c][subtask]);
                        outs.push(f.build(info, index, next, restore, coordinator))
                    }
                    NodeKind::Source(_) => unreachable!("a source has no input"),
                }
            } else {
                let (fp, tp) = (self.plan.parallelism[node], self.plan.parallelism[c]);
                let kind = self.g.nodes[c].inputs[e_idx].kind;
                let pw = pointwise(kind, fp, tp);
                *channels += if pw { 1 } else { tp };
                let settings = self.g.nodes[node]
                    .out_type
                    .as_ref()
                    .expect("a node with consumers has an output type")
                    .writer_settings(&self.g.config);
                let key = format!("{}->{}#{e_idx}", self.plan.uids[node], self.plan.uids[c]);
                let replay = self.replays.remove(&key);
                let w = self.g.nodes[c].inputs[e_idx].connector.writer(EdgeWiring {
                    gates: &self.gates[c],
                    offsets: &self.offsets[c][e_idx],
                    sender: subtask,
                    pointwise: pw,
                    signal: signal.clone(),
                    settings,
                    transport: self.g.config.channel_transport,
                    max_parallelism: self.plan.max_parallelism[c],
                    key,
                    replay,
                });
                outs.push(w);
            }
        }
        let n = &self.g.nodes[node];
        match (outs.len(), &n.out_type) {
            (_, None) => Box::new(()), // a sink: its link ignores `next`
            (0, Some(t)) => t.no_output(),
            (1, Some(_)) => outs.pop().expect("one output"),
            (_, Some(t)) => t.fanout(outs),
        }
    }

    fn chain_name(&self, head: usize) -> String {
        let mut names = vec![self.g.nodes[head].name.clone()];
        let mut stack = vec![head];
        while let Some(n) = stack.pop() {
            for &(c, _) in &self.plan.consumers[n] {
                if self.plan.chained[c] {
                    names.push(self.g.nodes[c].name.clone());
                    stack.push(c);
                }
            }
        }
        names.join(" -> ")
    }
}

/// Reads what every operator subtask restores from `checkpoint`.
fn restore_states(
    g: &Graph,
    plan: &Plan,
    storage: &dyn CheckpointStorage,
    checkpoint: &CompletedCheckpoint,
) -> Result<Vec<Vec<RestoreState>>> {
    let meta = &checkpoint.metadata;
    let err = |m: String| {
        JobError::Restore(format!(
            "{} ({}): {m}",
            checkpoint.location, meta.checkpoint_id
        ))
    };
    for op in &meta.operators {
        if !plan.uids.contains(&op.uid) {
            return Err(err(format!(
                "it holds state of operator '{}' (uid '{}') that this job does not have; give operators stable uids",
                op.name, op.uid
            )));
        }
    }
    let read = |h: &weir_state::checkpoint::StateHandle, kind| {
        storage
            .read_state(checkpoint, h, kind)
            .map_err(|e| JobError::Restore(e.to_string()))
    };
    let has_channel_state = meta
        .operators
        .iter()
        .flat_map(|o| &o.subtasks)
        .any(|s| s.channel.is_some());
    if has_channel_state {
        for op in &meta.operators {
            if let Some(i) = plan.uids.iter().position(|u| *u == op.uid) {
                if plan.parallelism[i] != op.parallelism {
                    return Err(err(format!(
                        "it is an unaligned checkpoint holding in-flight records, and operator '{}' changed parallelism from {} to {}; rescale from a savepoint (always aligned) instead",
                        op.name, op.parallelism, plan.parallelism[i]
                    )));
                }
            }
        }
    }
    let mut out = Vec::with_capacity(g.nodes.len());
    for (i, node) in g.nodes.iter().enumerate() {
        let p = plan.parallelism[i];
        let mut per_subtask = vec![RestoreState::default(); p];
        if let Some(op) = meta.operator(&plan.uids[i]) {
            let has_keyed = op.subtasks.iter().any(|s| s.keyed.is_some());
            let has_operator = op.subtasks.iter().any(|s| s.operator.is_some());
            if has_keyed && op.max_parallelism != plan.max_parallelism[i] {
                return Err(err(format!(
                    "operator '{}' has keyed state for max parallelism {}, the job uses {}; keep pipeline.max-parallelism unchanged",
                    node.name, op.max_parallelism, plan.max_parallelism[i]
                )));
            }
            if has_operator && op.parallelism != p {
                return Err(err(format!(
                    "operator '{}' has operator state written at parallelism {}; restoring it at parallelism {p} is not supported (only keyed state rescales)",
                    node.name, op.parallelism
                )));
            }
            for (j, target) in per_subtask.iter_mut().enumerate() {
                let range = KeyGroupRange::for_operator(plan.max_parallelism[i], p, j);
                for st in &op.subtasks {
                    if let (Some(h), Some(r)) = (&st.keyed, st.key_groups) {
                        if r.start <= range.end && range.start <= r.end {
                            target.keyed.push(read(h, FileKind::KeyedState)?);
                        }
                    }
                    if st.subtask == j {
                        if let Some(h) = &st.operator {
                            target.operator = Some(read(h, FileKind::OperatorState)?);
                        }
                        if let Some(h) = &st.channel {
                            let bytes = read(h, FileKind::ChannelState)?;
                            let cs: ChannelStateSnapshot =
                                weir_state::checkpoint::format::decode("channel state", &bytes)
                                    .map_err(|e| err(e.to_string()))?;
                            if !cs.input.is_empty() {
                                target.channel_input = Some(cs.input);
                            }
                            target.channel_outputs = cs.outputs;
                        }
                    }
                }
            }
        }
        out.push(per_subtask);
    }
    Ok(out)
}

struct TaskSpec {
    body: Box<dyn TaskBody>,
    names: Vec<String>,
    subtask: usize,
    parallelism: usize,
}

/// Builds and starts one attempt of the job. `restore_latest` overrides the configured restore
/// path with the latest checkpoint (after a failure).
fn launch(g: &mut Graph, plan: &Plan, attempt: u32, level: &JobLevel) -> Result<Attempt> {
    let restore_latest = attempt > 0;
    let heads: Vec<usize> = (0..g.nodes.len()).filter(|&i| !plan.chained[i]).collect();

    // One signal and mailbox per task; tasks are numbered head by head, subtask by subtask.
    let mut task_of = vec![usize::MAX; g.nodes.len()];
    let mut n_tasks = 0;
    for &h in &heads {
        task_of[h] = n_tasks;
        n_tasks += plan.parallelism[h];
    }
    let signals: Vec<Signal> = (0..n_tasks).map(|_| Signal::new()).collect();
    let mailboxes: Vec<Arc<Mailbox>> = signals
        .iter()
        .map(|s| Arc::new(Mailbox::new(s.clone())))
        .collect();

    // Gates for every head with network inputs.
    let n_nodes = g.nodes.len();
    let mut gates: Vec<Vec<Box<dyn Any>>> = (0..n_nodes).map(|_| Vec::new()).collect();
    let mut probes: Vec<Vec<Arc<dyn crate::metrics::UsageProbe>>> =
        (0..n_nodes).map(|_| Vec::new()).collect();
    let mut offsets: Vec<Vec<Vec<usize>>> = (0..n_nodes).map(|_| Vec::new()).collect();
    for &h in &heads {
        let node = &g.nodes[h];
        if node.inputs.is_empty() {
            continue;
        }
        let tp = plan.parallelism[h];
        let mut per_edge = vec![vec![0; tp]; node.inputs.len()];
        #[allow(clippy::needless_range_loop)] // `j` is the receiving subtask, not just an index
        for j in 0..tp {
            let mut total = 0;
            for (e_idx, e) in node.inputs.iter().enumerate() {
                per_edge[e_idx][j] = total;
                total += if pointwise(e.kind, plan.parallelism[e.from], tp) {
                    1
                } else {
                    plan.parallelism[e.from]
                };
            }
            let in_type = node
                .in_type
                .as_ref()
                .expect("an operator has an input type");
            let task = task_of[h] + j;
            let (gate, probe) = in_type.new_gate(
                total,
                &g.config,
                signals[task].clone(),
                mailboxes[task].clone(),
            );
            gates[h].push(gate);
            probes[h].push(probe);
        }
        offsets[h] = per_edge;
    }

    // Checkpoint storage and what to restore.
    let cfg = &g.config;
    if !cfg.checkpoint_interval.is_zero() && cfg.checkpoint_dir.is_empty() && g.storage.is_none() {
        return Err(ConfigError::InvalidValue {
            key: "execution.checkpointing.dir".into(),
            value: String::new(),
            expected: "a directory, since execution.checkpointing.interval is set",
        }
        .into());
    }
    let storage: Option<Arc<dyn CheckpointStorage>> =
        match (&g.storage, cfg.checkpoint_dir.is_empty()) {
            (Some(s), _) => Some(s.clone()),
            (None, true) => None,
            (None, false) => Some(Arc::new(LocalCheckpointStorage::new(&cfg.checkpoint_dir))),
        };
    let restore_path = if restore_latest {
        "latest"
    } else {
        cfg.restore_path.as_str()
    };
    let restored: Option<CompletedCheckpoint> =
        match (restore_path, &storage) {
            ("latest", None) if restore_latest => None, // no checkpoints: restart from scratch
            ("", _) => None,
            ("latest", Some(s)) => s.latest().map_err(|e| JobError::Restore(e.to_string()))?,
            ("latest", None) => return Err(ConfigError::InvalidValue {
                key: "execution.state-recovery.path".into(),
                value: "latest".into(),
                expected:
                    "a checkpoint path, or \"latest\" together with execution.checkpointing.dir",
            }
            .into()),
            (path, _) => Some(
                LocalCheckpointStorage::new(path)
                    .load(path)
                    .map_err(|e| JobError::Restore(e.to_string()))?,
            ),
        };
    let restores = match &restored {
        Some(c) => {
            let reader: Arc<dyn CheckpointStorage> = storage
                .clone()
                .unwrap_or_else(|| Arc::new(LocalCheckpointStorage::new(&c.location)));
            restore_states(g, plan, &*reader, c)?
        }
        None => (0..g.nodes.len())
            .map(|i| vec![RestoreState::default(); plan.parallelism[i]])
            .collect(),
    };
    let next_checkpoint_id = {
        let highest = match &storage {
            Some(s) => s
                .highest_id()
                .map_err(|e| JobError::Restore(e.to_string()))?,
            None => None,
        };
        highest
            .max(restored.as_ref().map(|c| c.metadata.checkpoint_id))
            .map_or(1, |h| h + 1)
    };
    if let Some(c) = &restored {
        tracing::info!(location = %c.location, id = c.metadata.checkpoint_id, "restoring");
    }

    reset_coordinators(g, plan, attempt, restored.as_ref(), storage.as_deref())?;

    let mut b = Builder {
        g: &mut *g,
        plan,
        gates,
        offsets,
        restores,
        replays: Default::default(),
        mailboxes: &mailboxes,
        attempt,
        task: 0,
        channels: Vec::new(),
    };
    let mut specs = Vec::new();
    let mut cells = Vec::new();
    for &h in &heads {
        let name = b.chain_name(h);
        for i in 0..plan.parallelism[h] {
            let task = task_of[h] + i;
            b.task = task;
            let mut names = vec![b.g.nodes[h].name.clone()];
            let mut channels = 0;
            b.replays = std::mem::take(&mut b.restores[h][i].channel_outputs)
                .into_iter()
                .collect();
            let out = b.output(h, i, &signals[task], &mut names, &mut channels);
            let info = b.info(h, i);
            let info_for_task = info.clone();
            let body: Box<dyn TaskBody> = if b.g.nodes[h].inputs.is_empty() {
                let coordinator = b.coordinator(h, i, 0);
                match &mut b.g.nodes[h].kind {
                    NodeKind::Source(f) => f.build(
                        info,
                        out,
                        std::mem::take(&mut b.restores[h][i]),
                        coordinator,
                    ),
                    NodeKind::Operator(_) => {
                        return Err(JobError::Internal(format!(
                            "operator '{}' has no input",
                            info.name
                        )))
                    }
                }
            } else {
                // The task replays the head's input channel state; the link gets the rest.
                let replay = b.restores[h][i].channel_input.take();
                let coordinator = b.coordinator(h, i, 0);
                let head_link = match &mut b.g.nodes[h].kind {
                    NodeKind::Operator(f) => f.build(
                        info,
                        0,
                        out,
                        std::mem::take(&mut b.restores[h][i]),
                        coordinator,
                    ),
                    NodeKind::Source(_) => unreachable!("a source has no input"),
                };
                let in_type = b.g.nodes[h]
                    .in_type
                    .as_ref()
                    .expect("an operator has an input type");
                in_type.input_task(&*b.gates[h][i], head_link, &info_for_task, replay)
            };
            let cell = Arc::new(TaskMetricsCell::new(
                name.clone(),
                i,
                plan.parallelism[h],
                channels,
            ));
            if let Some(p) = probes[h].get(i) {
                cell.set_input(p.clone());
            }
            cells.push(cell);
            specs.push(TaskSpec {
                body,
                names,
                subtask: i,
                parallelism: plan.parallelism[h],
            });
        }
    }
    let coordinated = std::mem::take(&mut b.channels);
    drop(b);
    let buffer_timeout = g.config.buffer_timeout;
    let checkpoint_cfg = g.config.clone();
    let operator_descriptions: BTreeMap<String, OperatorDescription> = g
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            (
                plan.uids[i].clone(),
                OperatorDescription {
                    name: n.name.clone(),
                    parallelism: plan.parallelism[i],
                    max_parallelism: plan.max_parallelism[i],
                },
            )
        })
        .collect();
    let source_tasks: Vec<usize> = heads
        .iter()
        .filter(|&&h| g.nodes[h].inputs.is_empty())
        .flat_map(|&h| task_of[h]..task_of[h] + plan.parallelism[h])
        .collect();

    let timer_service = TimerService::new(mailboxes.clone());
    let shared = Arc::new(JobShared {
        mailboxes: mailboxes.clone(),
        metrics: cells.clone(),
        failure: Mutex::new(None),
        cancelled: AtomicBool::new(false),
        running: AtomicUsize::new(specs.len()),
    });
    let timer_thread = {
        let ts = timer_service.clone();
        TaskThread::spawn(
            g.config.task_threads_pooled,
            "weir-timers".into(),
            move || ts.run(),
        )
        .map_err(|e| JobError::Internal(format!("cannot start the timer thread: {e}")))?
    };
    let checkpoint_stats = level.checkpoint_stats.clone();
    let pending_checkpoints = level.pending_checkpoints.clone();
    // The coordinators learn of the new attempt's subtasks before the tasks run and before the
    // first checkpoint can be triggered (so the new gateways hold for it): a subtask's first
    // event never reaches its coordinator before `attempt_ready` (both go through the
    // coordinator's one queue), and events the coordinator sends wait in the task's mailbox.
    for (_, node, ch) in &coordinated {
        if let Some((_, h)) = g.coordinators.iter().find(|(n, _)| n == node) {
            h.post(RunnerMsg::AttemptReady(ch.clone()));
        }
    }
    let (coordinator_tx, coordinator_thread) = match storage {
        Some(storage) => {
            let (tx, rx) = std::sync::mpsc::channel();
            let setup = CheckpointCoordinatorSetup {
                job: checkpoint_cfg.job_name.clone(),
                storage: Some(storage),
                mailboxes: mailboxes.clone(),
                source_tasks: source_tasks.clone(),
                operators: operator_descriptions,
                interval: (!checkpoint_cfg.checkpoint_interval.is_zero())
                    .then_some(checkpoint_cfg.checkpoint_interval),
                timeout: checkpoint_cfg.checkpoint_timeout,
                min_pause: checkpoint_cfg.checkpoint_min_pause,
                max_concurrent: checkpoint_cfg.max_concurrent_checkpoints,
                retained: checkpoint_cfg.retained_checkpoints,
                unaligned: checkpoint_cfg.unaligned,
                aligned_timeout: (!checkpoint_cfg.aligned_checkpoint_timeout.is_zero())
                    .then_some(checkpoint_cfg.aligned_checkpoint_timeout),
                at_least_once: checkpoint_cfg.checkpointing_mode
                    == crate::config::CheckpointingMode::AtLeastOnce,
                stats: checkpoint_stats.clone(),
                pending: pending_checkpoints.clone(),
                tolerable_failures: checkpoint_cfg.tolerable_failed_checkpoints,
                fail_job: {
                    let shared = shared.clone();
                    Box::new(move |e| shared.fail(e))
                },
                next_id: next_checkpoint_id,
                operator_coordinators: g.coordinators.iter().map(|(_, h)| h.clone()).collect(),
            };
            let t = TaskThread::spawn(
                g.config.task_threads_pooled,
                "weir-checkpoints".into(),
                move || checkpoint_coordinator::run(setup, rx),
            )
            .map_err(|e| {
                JobError::Internal(format!("cannot start the checkpoint coordinator: {e}"))
            })?;
            (Some(tx), Some(t))
        }
        None => (None, None),
    };
    let mut handle = Attempt {
        shared: shared.clone(),
        threads: Vec::new(),
        timer_service: timer_service.clone(),
        timer_thread: Some(timer_thread),
        coordinator: coordinator_tx.clone(),
        coordinator_thread,
        checkpoint_stats,
        restored_from: restored,
        started: Instant::now(),
    };
    for (task, spec) in specs.into_iter().enumerate() {
        let signal = signals[task].clone();
        let mailbox = mailboxes[task].clone();
        let mailbox_of_task = mailbox.clone();
        let cell = cells[task].clone();
        let task_shared = shared.clone();
        let rt = TaskRuntime {
            task,
            timers: timer_service.clone(),
            buffer_timeout,
            mode: checkpoint_cfg.checkpointing_mode,
            coordinator: coordinator_tx.clone(),
            coordinated: coordinated
                .iter()
                .filter(|(t, _, _)| *t == task)
                .map(|(_, _, ch)| ch.clone())
                .collect(),
        };
        let thread_name = format!("weir-{task}");
        let async_runtime = g.runtime.as_ref().map(|r| r.handle().clone());
        let spawned = TaskThread::spawn(g.config.task_threads_pooled, thread_name, move || {
            signal.bind_current_thread();
            cell.start();
            let TaskSpec {
                body,
                names,
                subtask,
                parallelism,
            } = spec;
            let mut env = TaskEnv::new(mailbox, cell.clone());
            env.async_runtime = async_runtime;
            let r =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body.run(&mut env, &rt)));
            cell.finish();
            // Coordinators can no longer reach this task; events in its mailbox are lost
            // with it (a failure: the coordinator hears attempt_failed).
            let how = if matches!(r, Ok(Ok(()))) {
                "finished"
            } else {
                "failed or cancelled"
            };
            for ch in &rt.coordinated {
                ch.end(how);
            }
            mailbox_of_task.discard();
            let name_of = |i: usize| names.get(i).cloned().unwrap_or_else(|| names[0].clone());
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => match e.into_kind() {
                    TaskErrorKind::Cancelled => {}
                    TaskErrorKind::User { operator, error } => {
                        task_shared.fail(JobError::TaskFailed {
                            operator: name_of(operator),
                            subtask,
                            parallelism,
                            message: error.to_string(),
                            panicked: false,
                        })
                    }
                },
                Err(panic) => task_shared.fail(JobError::TaskFailed {
                    operator: name_of(env.current_operator),
                    subtask,
                    parallelism,
                    message: panic_message(&*panic),
                    panicked: true,
                }),
            }
            if let Some(c) = &rt.coordinator {
                let _ = c.send(CheckpointMsg::TaskEnded { task: rt.task });
            }
            task_shared.running.fetch_sub(1, Ordering::AcqRel);
        });
        match spawned {
            Ok(t) => handle.threads.push(t),
            Err(e) => {
                for (_, _, ch) in coordinated.iter().filter(|(t, _, _)| *t == task) {
                    ch.end("not started");
                }
                shared.fail(JobError::Internal(format!(
                    "cannot start a task thread: {e}"
                )));
                shared.running.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
    Ok(handle)
}

/// Before an attempt starts: a restarted job resets its coordinators to the restored
/// checkpoint (or to nothing) and resets every subtask; the first attempt starts them (after a
/// reset if the job starts from a checkpoint).
fn reset_coordinators(
    g: &Graph,
    plan: &Plan,
    attempt: u32,
    restored: Option<&CompletedCheckpoint>,
    storage: Option<&dyn CheckpointStorage>,
) -> Result<()> {
    for (node, h) in &g.coordinators {
        let id = restored.map(|c| c.metadata.checkpoint_id);
        let state = match restored {
            Some(c) => match c.metadata.extra.get(&coordinator_state_key(&h.uid)) {
                Some(handle) => {
                    let local;
                    let reader: &dyn CheckpointStorage = match storage {
                        Some(s) => s,
                        None => {
                            local = LocalCheckpointStorage::new(&c.location);
                            &local
                        }
                    };
                    Some(
                        reader
                            .read_state(c, handle, FileKind::OperatorState)
                            .map_err(|e| JobError::Restore(e.to_string()))?,
                    )
                }
                None => None,
            },
            None => None,
        };
        if attempt > 0 || restored.is_some() {
            h.reset(id, state)
                .map_err(|message| JobError::CoordinatorFailed {
                    operator: h.name.clone(),
                    message,
                })?;
        }
        if attempt == 0 {
            // Before any task runs (as Flink starts coordinators before deploying tasks): a
            // failing start fails the job, and cannot race the tasks' end.
            h.start().map_err(|message| JobError::CoordinatorFailed {
                operator: h.name.clone(),
                message,
            })?;
        } else {
            for subtask in 0..plan.parallelism[*node] {
                h.post(RunnerMsg::SubtaskReset { subtask, id });
            }
        }
    }
    Ok(())
}
