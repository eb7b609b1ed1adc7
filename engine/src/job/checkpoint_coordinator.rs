//! The checkpoint coordinator: one thread per job with checkpointing.
//!
//! It triggers checkpoints (periodically, and on request from the job handle), collects every
//! task's acknowledgement with its state, writes the state files and the metadata through the
//! [`CheckpointStorage`], notifies tasks of completion or abortion, and deletes subsumed
//! checkpoints. Rules, as Flink's: ids increase monotonically; a periodic trigger waits for
//! `min-pause` after the last completion and never exceeds `max-concurrent-checkpoints`
//! pending; a pending checkpoint older than `timeout` expires; a checkpoint cannot complete
//! once a task has finished (triggers are then skipped, manual ones refused).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_state::checkpoint::format::FileKind;
use weir_state::checkpoint::{
    CheckpointKind, CheckpointMetadata, CheckpointStorage, CompletedCheckpoint, OperatorSnapshot,
    StateHandle, SubtaskSnapshot,
};

use crate::checkpoint::messages::{coordinator_state_key, CheckpointMsg, TriggerReply};
use crate::checkpoint::stats::{CheckpointStats, CheckpointStatus, TaskCheckpointStats};
use crate::checkpoint::{Barrier, OperatorSubtaskState};
use crate::coordination::event::RunnerMsg;
use crate::coordination::runner::CoordinatorHandle;
use crate::error::{report, CheckpointError};
use crate::mailbox::{Control, Mailbox};
use crate::time::now_ms;

/// An operator as recorded in metadata.
#[derive(Debug, Clone)]
pub(crate) struct OperatorDescription {
    pub name: String,
    pub parallelism: usize,
    pub max_parallelism: usize,
}

/// Everything the coordinator needs.
pub(crate) struct CheckpointCoordinatorSetup {
    pub job: String,
    pub storage: Option<Arc<dyn CheckpointStorage>>,
    pub mailboxes: Vec<Arc<Mailbox>>,
    pub source_tasks: Vec<usize>,
    pub operators: BTreeMap<String, OperatorDescription>,
    pub interval: Option<Duration>,
    pub timeout: Duration,
    pub min_pause: Duration,
    pub max_concurrent: usize,
    pub retained: usize,
    pub next_id: u64,
    pub unaligned: bool,
    /// With unaligned checkpoints: start aligned and switch after this long.
    pub aligned_timeout: Option<Duration>,
    pub at_least_once: bool,
    /// Where statistics of finished checkpoints go (the newest `STATS_HISTORY`).
    pub stats: Arc<parking_lot::Mutex<crate::checkpoint::CheckpointHistory>>,
    /// Pending checkpoints and when they were triggered.
    pub pending: Arc<parking_lot::Mutex<BTreeMap<u64, Instant>>>,
    /// Consecutive counted failures tolerated.
    pub tolerable_failures: usize,
    /// Fails the job (tolerable failures exceeded).
    pub fail_job: Box<dyn Fn(crate::error::JobError) + Send>,
    /// The operators' coordinators: checkpointed before the sources are triggered.
    pub operator_coordinators: Vec<Arc<CoordinatorHandle>>,
}

/// Threads writing one checkpoint's state files in parallel.
const WRITERS: usize = 4;

/// Statistics kept for this many finished checkpoints.
pub(crate) const STATS_HISTORY: usize = 10_000;

struct Pending {
    barrier: Barrier,
    triggered: Instant,
    /// When to tell input tasks to switch this aligned checkpoint to unaligned.
    switch_at: Option<Instant>,
    acks: HashMap<usize, Vec<OperatorSubtaskState>>,
    task_stats: Vec<TaskCheckpointStats>,
    waiters: Vec<TriggerReply>,
    /// The operator coordinators' states: (operator uid, bytes).
    coordinator_states: Vec<(String, Vec<u8>)>,
}

struct CheckpointCoordinator {
    s: CheckpointCoordinatorSetup,
    /// Counted consecutive failures, the ids already counted, and the newest success.
    consecutive_failures: usize,
    counted: std::collections::HashSet<u64>,
    last_success: u64,
    pending: BTreeMap<u64, Pending>,
    ended: HashSet<usize>,
    last_completion: Option<Instant>,
    next_periodic: Option<Instant>,
}

/// Runs the coordinator until `Shutdown` (or every sender is gone).
pub(crate) fn run(setup: CheckpointCoordinatorSetup, rx: Receiver<CheckpointMsg>) {
    let next_periodic = setup.interval.map(|i| Instant::now() + i);
    let mut c = CheckpointCoordinator {
        s: setup,
        consecutive_failures: 0,
        counted: HashSet::new(),
        last_success: 0,
        pending: BTreeMap::new(),
        ended: HashSet::new(),
        last_completion: None,
        next_periodic,
    };
    loop {
        let deadline = c.next_deadline();
        let msg = match deadline {
            Some(d) => match rx.recv_timeout(d.saturating_duration_since(Instant::now())) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            },
            None => match rx.recv() {
                Ok(m) => Some(m),
                Err(_) => break,
            },
        };
        match msg {
            Some(CheckpointMsg::Shutdown) => break,
            Some(CheckpointMsg::Ack {
                task,
                id,
                states,
                stats,
            }) => c.ack(task, id, states, stats),
            Some(CheckpointMsg::Decline { task, id, reason }) => c.abort(
                id,
                CheckpointError::Declined {
                    id,
                    reason: format!("task {task}: {reason}"),
                },
            ),
            Some(CheckpointMsg::TaskEnded { task }) => {
                c.ended.insert(task);
                let unfinishable: Vec<u64> = c
                    .pending
                    .iter()
                    .filter(|(_, p)| !p.acks.contains_key(&task))
                    .map(|(id, _)| *id)
                    .collect();
                for id in unfinishable {
                    c.abort(id, CheckpointError::TasksFinished);
                }
            }
            Some(CheckpointMsg::Trigger { kind, reply }) => c.manual(kind, reply),
            None => {}
        }
        c.switch_timed_out();
        c.expire();
        c.periodic();
    }
    let ids: Vec<u64> = c.pending.keys().copied().collect();
    for id in ids {
        c.abort(id, CheckpointError::JobEnded);
    }
}

impl CheckpointCoordinator {
    fn next_deadline(&self) -> Option<Instant> {
        // Expiry of pending checkpoints, and alignment timeouts still to announce.
        let expiry = self
            .pending
            .values()
            .map(|p| p.triggered + self.s.timeout)
            .chain(self.pending.values().filter_map(|p| p.switch_at))
            .min();
        match (expiry, self.next_periodic) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn trigger(&mut self, kind: CheckpointKind) -> Result<u64, CheckpointError> {
        if self.s.storage.is_none() {
            return Err(CheckpointError::NoStorage);
        }
        if !self.ended.is_empty() {
            return Err(CheckpointError::TasksFinished);
        }
        let id = self.s.next_id;
        self.s.next_id += 1;
        // Savepoints are always aligned (as in Flink); with an alignment timeout, checkpoints
        // start aligned and switch later.
        let may_switch = self.s.unaligned && kind == CheckpointKind::Checkpoint;
        let unaligned = may_switch && self.s.aligned_timeout.is_none();
        let switch_at = if may_switch {
            self.s.aligned_timeout.map(|t| Instant::now() + t)
        } else {
            None
        };
        let barrier = Barrier {
            id,
            timestamp_ms: now_ms(),
            kind,
            unaligned,
        };
        self.pending.insert(
            id,
            Pending {
                barrier,
                triggered: Instant::now(),
                switch_at,
                acks: HashMap::new(),
                task_stats: Vec::new(),
                waiters: Vec::new(),
                coordinator_states: Vec::new(),
            },
        );
        self.s.pending.lock().insert(id, Instant::now());
        // Coordinators first (as in Flink): once each produced its state and every event it
        // sent before was handled, no event can fall on the wrong side of the barrier.
        let mut states = Vec::new();
        for h in &self.s.operator_coordinators {
            match h.checkpoint(id, self.s.timeout) {
                Ok(bytes) => states.push((h.uid.clone(), bytes)),
                Err(reason) => {
                    let e = CheckpointError::Declined {
                        id,
                        reason: format!("the coordinator of '{}': {reason}", h.name),
                    };
                    self.abort(id, e.clone());
                    return Err(e);
                }
            }
        }
        if let Some(p) = self.pending.get_mut(&id) {
            p.coordinator_states = states;
        }
        tracing::debug!(id, ?kind, "triggering checkpoint");
        for &t in &self.s.source_tasks {
            self.s.mailboxes[t].post(Control::TriggerCheckpoint(barrier));
        }
        Ok(id)
    }

    fn manual(&mut self, kind: CheckpointKind, reply: TriggerReply) {
        // With unaligned checkpoints one checkpoint runs at a time (a savepoint is aligned and
        // must not interleave with an unaligned one).
        if self.s.unaligned {
            if let Some(&pending) = self.pending.keys().next() {
                let _ = reply.send(Err(CheckpointError::Busy { pending }));
                return;
            }
        }
        match self.trigger(kind) {
            Ok(id) => {
                if let Some(p) = self.pending.get_mut(&id) {
                    p.waiters.push(reply);
                }
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    fn periodic(&mut self) {
        let (Some(next), Some(interval)) = (self.next_periodic, self.s.interval) else {
            return;
        };
        let now = Instant::now();
        if now < next {
            return;
        }
        let paused = self
            .last_completion
            .is_some_and(|t| now < t + self.s.min_pause);
        if self.pending.len() >= self.s.max_concurrent || paused {
            // Not a failure: try again shortly.
            self.next_periodic = Some(now + Duration::from_millis(10).min(interval));
            return;
        }
        // Skipped triggers (tasks finished) are not failures either.
        let _ = self.trigger(CheckpointKind::Checkpoint);
        self.next_periodic = Some(now + interval);
    }

    fn ack(
        &mut self,
        task: usize,
        id: u64,
        states: Vec<OperatorSubtaskState>,
        stats: TaskCheckpointStats,
    ) {
        let n_tasks = self.s.mailboxes.len();
        let Some(p) = self.pending.get_mut(&id) else {
            return;
        };
        let size = |b: &Option<Vec<u8>>| b.as_ref().map_or(0, |b| b.len() as u64);
        let state_bytes = states
            .iter()
            .map(|s| size(&s.keyed) + size(&s.operator) + size(&s.channel))
            .sum();
        let persisted_bytes = states.iter().map(|s| size(&s.channel)).sum();
        p.acks.insert(task, states);
        p.task_stats.push(TaskCheckpointStats {
            task,
            ack_timestamp_ms: now_ms(),
            state_bytes,
            persisted_bytes,
            ..stats
        });
        if p.acks.len() < n_tasks {
            return;
        }
        let Some(p) = self.pending.remove(&id) else {
            return;
        };
        let write_start = Instant::now();
        let written = self.complete(&p);
        let async_ms = write_start.elapsed().as_secs_f64() * 1000.0;
        match written {
            Ok(done) => {
                self.record(&p, Ok((&done, async_ms)));
                self.last_completion = Some(Instant::now());
                self.last_success = self.last_success.max(id);
                self.consecutive_failures = 0;
                for m in &self.s.mailboxes {
                    m.post(Control::CheckpointComplete(id));
                }
                for h in &self.s.operator_coordinators {
                    h.post(RunnerMsg::Complete(id));
                }
                if done.metadata.kind == CheckpointKind::Checkpoint {
                    if let Some(storage) = &self.s.storage {
                        if let Err(e) = storage.subsume(self.s.retained) {
                            tracing::warn!("cannot delete subsumed checkpoints: {e}");
                        }
                    }
                }
                tracing::debug!(id, location = %done.location, "checkpoint complete");
                for w in p.waiters {
                    let _ = w.send(Ok(done.clone()));
                }
            }
            Err(e) => {
                let reason = CheckpointError::Storage {
                    id,
                    source: Arc::new(e),
                };
                self.record(&p, Err(&reason));
                self.count_failure(id, &reason);
                self.notify_aborted(id);
                for w in p.waiters {
                    let _ = w.send(Err(reason.clone()));
                }
            }
        }
    }

    fn mode(&self, p: &Pending) -> &'static str {
        let b = &p.barrier;
        if b.unaligned {
            "unaligned"
        } else if self.s.at_least_once {
            "at-least-once"
        } else if p.task_stats.iter().any(|t| t.unaligned) {
            "switched"
        } else {
            "aligned"
        }
    }

    fn push_stats(&self, stats: CheckpointStats) {
        self.s.pending.lock().remove(&stats.id);
        let mut all = self.s.stats.lock();
        if stats.status == CheckpointStatus::Completed {
            all.completed += 1;
        } else {
            all.failed += 1;
        }
        if all.recent.len() >= STATS_HISTORY {
            all.recent.remove(0);
        }
        all.recent.push(stats);
    }

    /// Counts a failure towards the tolerable limit (each id once, only if newer than the last
    /// success, only counted reasons) and fails the job beyond the limit.
    fn count_failure(&mut self, id: u64, reason: &CheckpointError) {
        if !reason.counts_as_failure() || id <= self.last_success || !self.counted.insert(id) {
            return;
        }
        self.consecutive_failures += 1;
        if self.consecutive_failures > self.s.tolerable_failures {
            (self.s.fail_job)(crate::error::JobError::CheckpointFailures {
                failed: self.consecutive_failures,
                tolerable: self.s.tolerable_failures,
                last: report(reason),
            });
        }
    }

    /// Records a finished checkpoint: completed (with what it wrote) or failed.
    fn record(&self, p: &Pending, outcome: Result<(&CompletedCheckpoint, f64), &CheckpointError>) {
        let (status, state_bytes, inflight, async_ms) = match outcome {
            Ok((done, async_ms)) => {
                let subtasks = || done.metadata.operators.iter().flat_map(|o| &o.subtasks);
                let inflight = subtasks()
                    .filter_map(|s| s.channel.as_ref())
                    .map(|h| h.size)
                    .sum();
                let state = subtasks()
                    .flat_map(|s| [&s.keyed, &s.operator, &s.channel].into_iter().flatten())
                    .map(|h| h.size)
                    .sum();
                (CheckpointStatus::Completed, state, inflight, async_ms)
            }
            Err(reason) => (CheckpointStatus::Failed(report(reason)), 0, 0, 0.0),
        };
        let mut tasks = p.task_stats.clone();
        tasks.sort_by_key(|t| t.task);
        self.push_stats(CheckpointStats {
            id: p.barrier.id,
            kind: if p.barrier.kind == CheckpointKind::Savepoint {
                "savepoint"
            } else {
                "checkpoint"
            },
            mode: self.mode(p),
            trigger_time_ms: p.barrier.timestamp_ms,
            duration_ms: p.triggered.elapsed().as_secs_f64() * 1000.0,
            async_ms,
            state_bytes,
            persisted_inflight_bytes: inflight,
            status,
            tasks,
        });
    }

    /// Writes the state files, then the metadata.
    fn complete(&self, p: &Pending) -> weir_state::Result<CompletedCheckpoint> {
        let storage = self
            .s
            .storage
            .as_ref()
            .ok_or(weir_state::StateError::InvalidName("no storage".into()))?;
        let Barrier {
            id,
            kind,
            timestamp_ms,
            unaligned,
        } = p.barrier;
        let mut by_uid: BTreeMap<&str, Vec<SubtaskSnapshot>> = BTreeMap::new();
        let items: Vec<&OperatorSubtaskState> = p.acks.values().flatten().collect();
        type Written = (
            Option<StateHandle>,
            Option<StateHandle>,
            Option<StateHandle>,
        );
        let write_one = |index: usize, st: &OperatorSubtaskState| -> weir_state::Result<Written> {
            let stem: String = st
                .uid
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .take(64)
                .collect();
            let name = |ext: &str| format!("{}-{stem}-{}.{ext}", index + 1, st.subtask);
            let write = |bytes: &Option<Vec<u8>>, ext: &str, file_kind: FileKind| {
                bytes
                    .as_ref()
                    .map(|b| storage.write_state(id, kind, &name(ext), file_kind, b))
                    .transpose()
            };
            Ok((
                write(&st.keyed, "keyed", FileKind::KeyedState)?,
                write(&st.operator, "operator", FileKind::OperatorState)?,
                write(&st.channel, "channel", FileKind::ChannelState)?,
            ))
        };
        // The files are independent: a few writer threads write them in parallel (each write
        // syncs its file), then the metadata is written last.
        let next = std::sync::atomic::AtomicUsize::new(0);
        let slots: Vec<parking_lot::Mutex<Option<weir_state::Result<Written>>>> = items
            .iter()
            .map(|_| parking_lot::Mutex::new(None))
            .collect();
        std::thread::scope(|scope| {
            for _ in 0..WRITERS.min(items.len()) {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(st) = items.get(i) else { break };
                    *slots[i].lock() = Some(write_one(i, st));
                });
            }
        });
        for (st, slot) in items.iter().zip(slots) {
            let (keyed, operator, channel) = slot.into_inner().unwrap_or_else(|| {
                Err(weir_state::StateError::Encode(
                    "a state file was not written".into(),
                ))
            })?;
            if keyed.is_some() || operator.is_some() || channel.is_some() {
                let entries = by_uid.entry(&st.uid).or_default();
                // One entry per subtask: a task's channel state joins its head's state.
                match entries.iter_mut().find(|e| e.subtask == st.subtask) {
                    Some(e) => {
                        e.keyed = e.keyed.take().or(keyed);
                        e.key_groups = e.key_groups.or(st.key_groups);
                        e.operator = e.operator.take().or(operator);
                        e.channel = e.channel.take().or(channel);
                    }
                    None => entries.push(SubtaskSnapshot {
                        subtask: st.subtask,
                        key_groups: st.key_groups,
                        keyed,
                        operator,
                        channel,
                    }),
                }
            }
        }
        let operators = by_uid
            .into_iter()
            .map(|(uid, mut subtasks)| {
                subtasks.sort_by_key(|s| s.subtask);
                let d = self.s.operators.get(uid);
                OperatorSnapshot {
                    uid: uid.to_string(),
                    name: d.map(|d| d.name.clone()).unwrap_or_default(),
                    parallelism: d.map_or(0, |d| d.parallelism),
                    max_parallelism: d.map_or(0, |d| d.max_parallelism),
                    subtasks,
                }
            })
            .collect();
        let mut extra = BTreeMap::new();
        for (uid, bytes) in &p.coordinator_states {
            let key = coordinator_state_key(uid);
            let stem: String = uid
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .take(64)
                .collect();
            let name = format!("coordinator-{}-{stem}.operator", extra.len() + 1);
            let handle = storage.write_state(id, kind, &name, FileKind::OperatorState, bytes)?;
            extra.insert(key, handle);
        }
        storage.commit(&CheckpointMetadata {
            job: self.s.job.clone(),
            checkpoint_id: id,
            kind,
            timestamp_ms,
            unaligned,
            operators,
            extra,
        })
    }

    fn notify_aborted(&self, id: u64) {
        for m in &self.s.mailboxes {
            m.post(Control::CheckpointAborted(id));
        }
        for h in &self.s.operator_coordinators {
            h.post(RunnerMsg::Aborted(id));
        }
        if let Some(storage) = &self.s.storage {
            let _ = storage.abort(id);
        }
    }

    fn abort(&mut self, id: u64, reason: CheckpointError) {
        if let Some(p) = self.pending.remove(&id) {
            self.record(&p, Err(&reason));
            self.count_failure(id, &reason);
            tracing::debug!(id, %reason, "checkpoint aborted");
            self.notify_aborted(id);
            for w in p.waiters {
                let _ = w.send(Err(reason.clone()));
            }
        }
    }

    /// Tells input tasks to switch aligned checkpoints past their alignment timeout.
    fn switch_timed_out(&mut self) {
        let now = Instant::now();
        for p in self.pending.values_mut() {
            if p.switch_at.is_some_and(|t| t <= now) {
                p.switch_at = None;
                let barrier = Barrier {
                    unaligned: true,
                    ..p.barrier
                };
                for (t, m) in self.s.mailboxes.iter().enumerate() {
                    if !self.s.source_tasks.contains(&t) && !p.acks.contains_key(&t) {
                        m.post(Control::AlignmentTimeout(barrier));
                    }
                }
            }
        }
    }

    fn expire(&mut self) {
        let now = Instant::now();
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| now >= p.triggered + self.s.timeout)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.abort(id, CheckpointError::Expired { id });
        }
    }
}
