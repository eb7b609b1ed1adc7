//! A job seen from outside while it runs and after it ended: identity, plan, state, metrics,
//! checkpoint statistics, exceptions; checkpoints and savepoints on request; cancel.
//!
//! Invariant: an observer never keeps a job running or its attempt's tasks alive; it holds the
//! job's shared level, which outlives the attempts, and reads the current attempt (if any)
//! under a short lock.

use super::*;

/// Reads and controls a job from any thread; cheap to clone. Keeps working after the job
/// ended (its figures then are the last attempt's).
#[derive(Clone)]
pub struct JobObserver {
    pub(super) level: Arc<JobLevel>,
}

impl JobObserver {
    pub(super) fn current(&self) -> Option<AttemptControl> {
        self.level.current.lock().clone()
    }

    /// The job's id (32 hex digits unless set with [`StreamEnv::set_job_id`](crate::StreamEnv::set_job_id)).
    pub fn id(&self) -> &str {
        &self.level.id
    }

    /// The job's name (`pipeline.name`).
    pub fn name(&self) -> &str {
        &self.level.config.job_name
    }

    /// The job's configuration.
    pub fn config(&self) -> &Config {
        &self.level.config
    }

    /// The job's vertices and edges.
    pub fn plan(&self) -> &JobPlan {
        &self.level.plan
    }

    /// The job's state now.
    pub fn state(&self) -> JobState {
        self.level.log.lock().state
    }

    /// When the job entered each state it went through (latest time, ms since the epoch).
    pub fn state_timestamps(&self) -> BTreeMap<JobState, i64> {
        self.level.log.lock().timestamps.clone()
    }

    /// The exceptions that failed its attempts, oldest first (at most
    /// [`EXCEPTION_HISTORY`](super::overview::EXCEPTION_HISTORY)).
    pub fn exceptions(&self) -> Vec<JobException> {
        self.level.log.lock().exceptions.iter().cloned().collect()
    }

    /// Whether the job has ended (finished, cancelled, or failed beyond its restart strategy).
    pub fn is_finished(&self) -> bool {
        self.level.done.load(Ordering::Acquire)
    }

    /// Asks every task to stop (no restart follows); [`JobHandle::join`] then returns
    /// [`JobStatus::Cancelled`].
    pub fn cancel(&self) {
        JobCanceller {
            level: self.level.clone(),
        }
        .cancel()
    }

    /// Triggers a checkpoint now and waits until it completed (or failed).
    ///
    /// # Errors
    ///
    /// Returns [`CheckpointError::NoStorage`] without checkpoint storage,
    /// [`CheckpointError::JobEnded`] or [`CheckpointError::TasksFinished`] when the job or one of
    /// its tasks ends first, [`CheckpointError::Busy`] while an unaligned checkpoint is pending,
    /// and [`CheckpointError::Declined`], [`CheckpointError::Expired`] or
    /// [`CheckpointError::Storage`] when a task or coordinator declines it, it times out, or
    /// writing it fails.
    pub fn trigger_checkpoint(&self) -> std::result::Result<CompletedCheckpoint, CheckpointError> {
        self.trigger(CheckpointKind::Checkpoint)
    }

    /// Triggers a savepoint (aligned, never deleted automatically) and waits for it.
    ///
    /// # Errors
    ///
    /// The same as [`JobHandle::trigger_checkpoint`].
    pub fn trigger_savepoint(&self) -> std::result::Result<CompletedCheckpoint, CheckpointError> {
        self.trigger(CheckpointKind::Savepoint)
    }

    pub(super) fn trigger(
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
        self.level.checkpoint_stats.lock().recent.clone()
    }

    /// How many checkpoints completed and failed since the job started (the statistics keep
    /// only the most recent ones).
    pub fn checkpoint_counts(&self) -> (u64, u64) {
        let h = self.level.checkpoint_stats.lock();
        (h.completed, h.failed)
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

    /// Current metrics of every task of the current attempt (after the job ended, the last
    /// attempt's final metrics).
    pub fn metrics(&self) -> JobMetrics {
        match self.current() {
            Some(c) => c.shared.metrics(),
            None => self
                .level
                .final_metrics
                .lock()
                .clone()
                .unwrap_or(JobMetrics { tasks: Vec::new() }),
        }
    }
}
