//! The jobs a REST server shows: every job registered with it, running or ended, newest last.
//!
//! Invariants: an id names one job (registering a job with an id already present replaces the
//! old entry, as a session runtime does when it runs a recovered job again); at most
//! [`RETAINED_ENDED`] ended jobs are kept, the oldest ended ones dropped first; running jobs are
//! never dropped.

use std::sync::Arc;

use parking_lot::RwLock;

use super::rates::Rates;
use crate::job::JobObserver;

/// Ended jobs kept for the API and the dashboard (Flink's `jobstore.max-capacity` is larger;
/// a session runtime running thousands of short jobs needs a bound).
pub const RETAINED_ENDED: usize = 100;

/// One job of the directory, with the rates computed from its last reads.
pub(crate) struct Entry {
    pub(crate) job: JobObserver,
    pub(crate) rates: Rates,
}

/// The jobs a REST server shows; cheap to clone, shared with whoever registers jobs.
#[derive(Clone, Default)]
pub struct JobDirectory {
    entries: Arc<RwLock<Vec<Arc<Entry>>>>,
}

impl std::fmt::Debug for JobDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobDirectory")
            .field("jobs", &self.entries.read().len())
            .finish()
    }
}

impl JobDirectory {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a job (replacing one of the same id).
    pub fn register(&self, job: JobObserver) {
        let mut entries = self.entries.write();
        entries.retain(|e| e.job.id() != job.id());
        entries.push(Arc::new(Entry {
            job,
            rates: Rates::default(),
        }));
        let ended = entries.iter().filter(|e| e.job.is_finished()).count();
        if ended > RETAINED_ENDED {
            let mut drop = ended - RETAINED_ENDED;
            entries.retain(|e| {
                if drop > 0 && e.job.is_finished() {
                    drop -= 1;
                    false
                } else {
                    true
                }
            });
        }
    }

    /// Removes a job.
    pub fn remove(&self, id: &str) {
        self.entries.write().retain(|e| e.job.id() != id);
    }

    /// The job with id `id`.
    pub fn job(&self, id: &str) -> Option<JobObserver> {
        self.entry(id).map(|e| e.job.clone())
    }

    /// Every job, oldest first.
    pub fn jobs(&self) -> Vec<JobObserver> {
        self.entries.read().iter().map(|e| e.job.clone()).collect()
    }

    pub(crate) fn entry(&self, id: &str) -> Option<Arc<Entry>> {
        self.entries
            .read()
            .iter()
            .find(|e| e.job.id() == id)
            .cloned()
    }

    pub(crate) fn entries(&self) -> Vec<Arc<Entry>> {
        self.entries.read().clone()
    }
}
