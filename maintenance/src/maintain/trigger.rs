//! The trigger manager: decides when each maintenance task runs.
//!
//! One subtask (parallelism 1) per table. Per task it accumulates the table changes since the
//! task last ran and fires the task when **any** of its conditions holds (commit count, data
//! file count and size, position/equality delete file and record counts, time since it last
//! ran). Invariants:
//! - **rate limit**: at most one evaluation that fires a task per `rate_limit`;
//! - **fairness**: tasks are considered round-robin, starting after the last one fired, so a
//!   task whose condition always holds cannot starve the others;
//! - **lock**: a task fires only when the maintenance lock was granted for it (through the
//!   coordinator, never blocking); when the lock is busy, the manager asks again after
//!   `lock_check_delay`;
//! - interval conditions and retries run on processing-time timers; the accumulated changes,
//!   the last run times and the round-robin position are checkpointed;
//! - after a restore, a recovery trigger goes to every task graph first (see
//!   [`lock`](super::lock)).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir_engine::checkpoint::{decode_state, encode_state};
use weir_engine::coordination::OperatorEvent;
use weir_engine::{Context, Operator, Timer, UserError};

use super::change::TableChange;
use super::lock::{LockReply, LockRequest};

/// When a task runs: it fires when any condition that is set holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggerConditions {
    /// Commits since the task last ran.
    pub commit_count: Option<u64>,
    /// Data files added since the task last ran.
    pub data_file_count: Option<u64>,
    /// Bytes of data files added since the task last ran.
    pub data_file_size: Option<u64>,
    /// Position delete files added.
    pub pos_delete_file_count: Option<u64>,
    /// Position delete records added.
    pub pos_delete_record_count: Option<u64>,
    /// Equality delete files added.
    pub eq_delete_file_count: Option<u64>,
    /// Equality delete records added.
    pub eq_delete_record_count: Option<u64>,
    /// Time since the task last ran (it runs even without changes).
    pub interval: Option<Duration>,
}

impl TriggerConditions {
    /// Whether the task should run after `pending` changes, `since_last` after it last ran.
    pub fn holds(&self, pending: &TableChange, since_last: Duration) -> bool {
        let reached = |limit: Option<u64>, value: u64| limit.is_some_and(|l| value >= l);
        reached(self.commit_count, pending.commits)
            || reached(self.data_file_count, pending.data_files)
            || reached(self.data_file_size, pending.data_bytes)
            || reached(self.pos_delete_file_count, pending.pos_delete_files)
            || reached(self.pos_delete_record_count, pending.pos_delete_records)
            || reached(self.eq_delete_file_count, pending.eq_delete_files)
            || reached(self.eq_delete_record_count, pending.eq_delete_records)
            || self.interval.is_some_and(|i| since_last >= i)
    }
}

/// A task to run (or, with `recovery`, the marker every task graph passes after a restore).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    /// The task's index in the maintenance job's task list.
    pub task: usize,
    /// When it fired (ms since the epoch).
    pub timestamp_ms: i64,
    /// The recovery marker (no task runs).
    pub recovery: bool,
}

/// What the trigger manager checkpoints.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct TriggerState {
    pending: Vec<TableChange>,
    last_run_ms: Vec<i64>,
    next: usize,
    ran_once: Vec<bool>,
}

/// The trigger manager operator (parallelism 1, coordinated by a
/// [`TriggerLockCoordinator`](super::lock::TriggerLockCoordinator)).
pub struct TriggerManager {
    conditions: Vec<TriggerConditions>,
    rate_limit: Duration,
    lock_check_delay: Duration,
    renew_every: Option<Duration>,
    once: bool,
    state: TriggerState,
    restored: bool,
    waiting: Option<usize>,
    last_fire_ms: i64,
    timer_at: Option<i64>,
    next_renew_ms: i64,
    /// Counts triggers refused because another task held the table's lock.
    lock_waits: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
}

impl TriggerManager {
    /// A manager of tasks with `conditions` (in task order). With `once`, every task runs
    /// exactly once, as soon as the lock allows, whatever its conditions and the rate limit.
    pub fn new(
        conditions: Vec<TriggerConditions>,
        rate_limit: Duration,
        lock_check_delay: Duration,
        once: bool,
    ) -> Self {
        TriggerManager {
            conditions,
            rate_limit,
            lock_check_delay,
            renew_every: None,
            once,
            state: TriggerState::default(),
            restored: false,
            waiting: None,
            last_fire_ms: i64::MIN / 2,
            timer_at: None,
            next_renew_ms: i64::MAX,
            lock_waits: None,
        }
    }

    /// Counts the waits for `table`'s lock on the process's maintenance board
    /// ([`super::board`]).
    pub fn counting_lock_waits(mut self, table: &str) -> Self {
        self.lock_waits = Some(super::board::lock_wait_counter(table));
        self
    }

    /// Renews the lock's lease this often (SQL lock).
    pub fn renew_every(mut self, every: Option<Duration>) -> Self {
        self.renew_every = every;
        self
    }

    fn schedule(&mut self, at: i64, ctx: &mut Context<'_, Trigger>) {
        if self.timer_at.is_none_or(|t| at < t) {
            ctx.register_processing_time_timer(at);
            self.timer_at = Some(at);
        }
    }

    fn due(&self, task: usize, now: i64) -> bool {
        let st = &self.state;
        if self.once {
            return !st.ran_once[task];
        }
        let since = Duration::from_millis((now - st.last_run_ms[task]).max(0) as u64);
        self.conditions[task].holds(&st.pending[task], since)
    }

    fn evaluate(&mut self, ctx: &mut Context<'_, Trigger>) -> Result<(), UserError> {
        if self.waiting.is_some() {
            return Ok(());
        }
        let now = ctx.current_processing_time();
        let n = self.conditions.len();
        let due = (0..n)
            .map(|k| (self.state.next + k) % n)
            .find(|&t| self.due(t, now));
        let Some(task) = due else {
            // Wake up for the next interval condition.
            let next = (0..n)
                .filter_map(|t| {
                    self.conditions[t]
                        .interval
                        .map(|i| self.state.last_run_ms[t] + i.as_millis() as i64)
                })
                .min();
            if let Some(at) = next {
                self.schedule(at.max(now + 1), ctx);
            }
            return Ok(());
        };
        let allowed = self.last_fire_ms + self.rate_limit.as_millis() as i64;
        // A `once` run starts each task as soon as the lock allows.
        if !self.once && now < allowed {
            self.schedule(allowed, ctx);
            return Ok(());
        }
        ctx.send_to_coordinator(LockRequest::Acquire { task })?;
        self.waiting = Some(task);
        Ok(())
    }
}

impl Operator for TriggerManager {
    type In = TableChange;
    type Out = Trigger;

    fn open(&mut self, ctx: &mut Context<'_, Trigger>) -> Result<(), UserError> {
        if ctx.info().parallelism != 1 {
            return Err("the maintenance trigger manager runs with parallelism 1".into());
        }
        let n = self.conditions.len();
        let now = ctx.current_processing_time();
        let st = &mut self.state;
        st.pending.resize(n, TableChange::default());
        st.last_run_ms.resize(n, now);
        st.ran_once.resize(n, false);
        if self.restored {
            // Work of a task may be in flight in the restored graph: the lock is in recovery
            // until this marker has passed every task graph.
            ctx.send_to_coordinator(LockRequest::Recover)?;
            ctx.emit(Trigger {
                task: usize::MAX,
                timestamp_ms: now,
                recovery: true,
            });
        }
        if let Some(every) = self.renew_every {
            self.next_renew_ms = now + every.as_millis() as i64;
            ctx.register_processing_time_timer(self.next_renew_ms);
        }
        self.evaluate(ctx)
    }

    fn process_element(
        &mut self,
        change: TableChange,
        ctx: &mut Context<'_, Trigger>,
    ) -> Result<(), UserError> {
        for p in &mut self.state.pending {
            p.merge(&change);
        }
        self.evaluate(ctx)
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Context<'_, Trigger>) -> Result<(), UserError> {
        if let Some(every) = self.renew_every {
            if timer.timestamp >= self.next_renew_ms {
                // Keep a held SQL lock's lease alive while tasks run.
                ctx.send_to_coordinator(LockRequest::Renew)?;
                self.next_renew_ms = timer.timestamp + every.as_millis() as i64;
                ctx.register_processing_time_timer(self.next_renew_ms);
            }
        }
        if self.timer_at.is_some_and(|t| t <= timer.timestamp) {
            self.timer_at = None;
        }
        self.evaluate(ctx)
    }

    fn handle_operator_event(
        &mut self,
        event: OperatorEvent,
        ctx: &mut Context<'_, Trigger>,
    ) -> Result<(), UserError> {
        let now = ctx.current_processing_time();
        match event.downcast::<LockReply>()? {
            LockReply::Granted { task } => {
                self.waiting = None;
                let st = &mut self.state;
                let last = st.pending[task].last_snapshot_id;
                st.pending[task] = TableChange {
                    last_snapshot_id: last,
                    ..TableChange::default()
                };
                st.last_run_ms[task] = now;
                st.ran_once[task] = true;
                st.next = (task + 1) % self.conditions.len();
                self.last_fire_ms = now;
                ctx.emit(Trigger {
                    task,
                    timestamp_ms: now,
                    recovery: false,
                });
                self.evaluate(ctx)
            }
            LockReply::Busy { .. } => {
                self.waiting = None;
                if let Some(w) = &self.lock_waits {
                    w.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                // A `once` run waits for its own previous task: ask again soon.
                let delay = if self.once {
                    self.lock_check_delay.min(Duration::from_millis(100))
                } else {
                    self.lock_check_delay
                };
                self.schedule(now + delay.as_millis() as i64, ctx);
                Ok(())
            }
        }
    }

    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<Option<Vec<u8>>, UserError> {
        Ok(Some(encode_state(&self.state)?))
    }

    fn restore_state(&mut self, state: &[u8]) -> Result<(), UserError> {
        self.state = decode_state(state)?;
        self.restored = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_condition_fires() {
        let c = TriggerConditions {
            commit_count: Some(10),
            data_file_size: Some(1000),
            interval: Some(Duration::from_secs(60)),
            ..Default::default()
        };
        let mut p = TableChange::default();
        assert!(!c.holds(&p, Duration::from_secs(1)));
        p.commits = 10;
        assert!(c.holds(&p, Duration::from_secs(1)));
        p.commits = 1;
        p.data_bytes = 1000;
        assert!(c.holds(&p, Duration::from_secs(1)));
        p.data_bytes = 0;
        assert!(c.holds(&p, Duration::from_secs(60)));
        assert!(!TriggerConditions::default().holds(&p, Duration::from_secs(1 << 30)));
    }
}
