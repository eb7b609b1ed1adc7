//! A job of a session runtime as its clients see it: status, result, cancel.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use serde::{Deserialize, Serialize};

use weir_engine::job::JobCanceller;
use weir_ha::JobOutcome;

/// Where a job of a session runtime is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionJobStatus {
    /// Running on this runtime.
    Running,
    /// Submitted and not running here: waiting for a leader to recover it.
    Recovering,
    /// Stopped because this runtime lost leadership (or shut down); the next leader recovers it
    /// when job recovery is on.
    Suspended,
    /// Ended (the result is in the job result store).
    Ended(JobOutcome),
}

impl SessionJobStatus {
    /// Whether the job will not run on this runtime any more.
    pub fn is_stopped(&self) -> bool {
        matches!(
            self,
            SessionJobStatus::Suspended | SessionJobStatus::Ended(_)
        )
    }

    /// Flink's name of the state (`RUNNING`, `FINISHED`, …; `SUSPENDED` also while a job
    /// waits for a leader to recover it).
    pub fn flink_name(&self) -> &'static str {
        match self {
            SessionJobStatus::Running => "RUNNING",
            SessionJobStatus::Recovering | SessionJobStatus::Suspended => "SUSPENDED",
            SessionJobStatus::Ended(weir_ha::JobOutcome::Finished) => "FINISHED",
            SessionJobStatus::Ended(weir_ha::JobOutcome::Cancelled) => "CANCELED",
            SessionJobStatus::Ended(weir_ha::JobOutcome::Failed(_)) => "FAILED",
        }
    }
}

pub(crate) struct JobEntry {
    pub(crate) job_id: String,
    pub(crate) name: String,
    pub(crate) started: Instant,
    pub(crate) status: Mutex<SessionJobStatus>,
    pub(crate) changed: Condvar,
    pub(crate) canceller: Mutex<Option<JobCanceller>>,
    /// Set before a cancel that suspends (leadership lost, shutdown) rather than ends the job.
    pub(crate) suspending: AtomicBool,
}

impl JobEntry {
    pub(crate) fn new(job_id: &str, name: &str) -> Arc<Self> {
        Arc::new(JobEntry {
            job_id: job_id.to_string(),
            name: name.to_string(),
            started: Instant::now(),
            status: Mutex::new(SessionJobStatus::Running),
            changed: Condvar::new(),
            canceller: Mutex::new(None),
            suspending: AtomicBool::new(false),
        })
    }

    pub(crate) fn set(&self, status: SessionJobStatus) {
        *self.status.lock() = status;
        self.changed.notify_all();
    }

    pub(crate) fn suspend(&self) {
        self.suspending.store(true, Ordering::Release);
        if let Some(c) = self.canceller.lock().as_ref() {
            c.cancel();
        }
    }
}

/// A handle to a job of a session runtime.
#[derive(Clone)]
pub struct SessionJob {
    pub(crate) entry: Arc<JobEntry>,
}

impl std::fmt::Debug for SessionJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionJob")
            .field("id", &self.entry.job_id)
            .field("status", &*self.entry.status.lock())
            .finish()
    }
}

impl SessionJob {
    /// The job's id.
    pub fn id(&self) -> &str {
        &self.entry.job_id
    }
    /// The job's registry name.
    pub fn name(&self) -> &str {
        &self.entry.name
    }
    /// Its status now.
    pub fn status(&self) -> SessionJobStatus {
        self.entry.status.lock().clone()
    }
    /// Time since it was submitted (or recovered) on this runtime.
    pub fn age(&self) -> Duration {
        self.entry.started.elapsed()
    }
    /// Cancels the job (it ends as cancelled).
    pub fn cancel(&self) {
        if let Some(c) = self.entry.canceller.lock().as_ref() {
            c.cancel();
        }
    }
    /// Waits until the job stopped on this runtime (ended or suspended).
    pub fn wait(&self) -> SessionJobStatus {
        let mut s = self.entry.status.lock();
        while !s.is_stopped() {
            self.entry.changed.wait(&mut s);
        }
        s.clone()
    }
    /// Waits at most `timeout`; the status then.
    pub fn wait_timeout(&self, timeout: Duration) -> SessionJobStatus {
        let deadline = Instant::now() + timeout;
        let mut s = self.entry.status.lock();
        while !s.is_stopped() {
            if self.entry.changed.wait_until(&mut s, deadline).timed_out() {
                break;
            }
        }
        s.clone()
    }
}
