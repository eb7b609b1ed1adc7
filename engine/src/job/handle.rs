//! The job's handle: status, metrics, checkpoints and savepoints on request, cancel, join.

use super::*;

/// A running job: its attempts run under a supervisor thread that restarts failed attempts as
/// the restart strategy says, from the latest completed checkpoint.
pub struct JobHandle {
    pub(super) level: Arc<JobLevel>,
    pub(super) supervisor: Option<TaskThread<Result<JobResult>>>,
}

impl JobHandle {
    pub(super) fn current(&self) -> Option<AttemptControl> {
        self.level.current.lock().clone()
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
    ///
    /// # Errors
    ///
    /// Returns the error that ended the job when no restart followed (the restart strategy gave
    /// up, or a restart could not be launched), such as [`JobError::TaskFailed`],
    /// [`JobError::CoordinatorFailed`] or [`JobError::CheckpointFailures`]; and
    /// [`JobError::Internal`] if the job's supervisor panicked.
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
