//! The job's handle: everything its [`JobObserver`] does, and join.

use super::*;

/// A running job: its attempts run under a supervisor thread that restarts failed attempts as
/// the restart strategy says, from the latest completed checkpoint.
pub struct JobHandle {
    pub(super) observer: JobObserver,
    /// The REST server's URL, when the job serves one (`rest.port`).
    pub(crate) rest_url: Option<String>,
    /// What lives as long as the handle (the job's REST server).
    pub(crate) attachments: Vec<Box<dyn std::any::Any + Send>>,
    pub(super) supervisor: Option<TaskThread<Result<JobResult>>>,
}

impl std::ops::Deref for JobHandle {
    type Target = JobObserver;

    /// A handle reads and controls its job as its [`JobObserver`] does.
    fn deref(&self) -> &JobObserver {
        &self.observer
    }
}

impl JobHandle {
    /// The URL of the job's REST API and dashboard, when `rest.port` is set; the server
    /// stops when the handle is dropped or joined.
    pub fn rest_url(&self) -> Option<&str> {
        self.rest_url.as_deref()
    }

    /// A handle that reads the job, triggers its checkpoints and cancels it from anywhere,
    /// also after [`JobHandle::join`] consumed this handle (the REST API keeps one per job).
    pub fn observer(&self) -> JobObserver {
        self.observer.clone()
    }

    /// A handle that cancels this job from another thread (the job handle itself is consumed
    /// by [`JobHandle::join`]).
    pub fn canceller(&self) -> JobCanceller {
        JobCanceller {
            level: self.observer.level.clone(),
        }
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
    pub(super) level: Arc<JobLevel>,
}

impl JobCanceller {
    /// Same as [`JobHandle::cancel`].
    pub fn cancel(&self) {
        self.level.log.lock().enter(JobState::Cancelling);
        self.level.cancelled.store(true, Ordering::Release);
        let current = self.level.current.lock().clone();
        if let Some(c) = current {
            c.shared.cancelled.store(true, Ordering::Release);
            c.shared.cancel_all();
        }
    }
}
