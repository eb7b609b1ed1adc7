//! The commit fence: whether a job may make an external commit now.
//!
//! A two-phase-commit sink commits what a completed checkpoint holds. When a job can be taken
//! over by another process (a session runtime with high availability), a deposed runtime must
//! not commit any more: its successor commits from the latest checkpoint instead. The runtime
//! that starts a job hands it a [`CommitFence`] (`StreamEnv::set_commit_fence`); every operator
//! sees it in its [`OperatorInfo`](crate::OperatorInfo) and asks it right before each external
//! commit. A job embedded in a program gets [`CommitFence::always`], which never refuses.
//!
//! Invariant: the fence is asked *before* the commit, so a refusal commits nothing; it is a
//! cheap local check (no I/O), so sinks may ask it for every commit.

use std::fmt;
use std::sync::Arc;

/// A refused commit: the job must not make external commits (any more).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("commit refused: {reason}")]
pub struct CommitRefused {
    /// Why (for example: the runtime no longer leads under the job's fencing token).
    pub reason: String,
}

type Check = dyn Fn() -> Result<(), CommitRefused> + Send + Sync;

/// Whether the job may make an external commit now; cloned into every operator of a job.
#[derive(Clone)]
pub struct CommitFence {
    check: Arc<Check>,
}

impl CommitFence {
    /// A fence that always allows (jobs embedded in a program).
    pub fn always() -> Self {
        CommitFence::new(|| Ok(()))
    }

    /// A fence that asks `check` before every commit.
    pub fn new(check: impl Fn() -> Result<(), CommitRefused> + Send + Sync + 'static) -> Self {
        CommitFence {
            check: Arc::new(check),
        }
    }

    /// Asks whether the job may commit now.
    ///
    /// # Errors
    /// [`CommitRefused`] when it must not: the caller commits nothing.
    pub fn may_commit(&self) -> Result<(), CommitRefused> {
        (self.check)()
    }
}

impl Default for CommitFence {
    fn default() -> Self {
        CommitFence::always()
    }
}

impl fmt::Debug for CommitFence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CommitFence")
    }
}

/// Two fences are equal when they are the same fence.
impl PartialEq for CommitFence {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.check, &other.check)
    }
}

impl Eq for CommitFence {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fence_answers_what_its_check_says() {
        assert!(CommitFence::always().may_commit().is_ok());
        let refusing = CommitFence::new(|| {
            Err(CommitRefused {
                reason: "deposed".into(),
            })
        });
        assert_eq!(
            refusing.may_commit().unwrap_err().to_string(),
            "commit refused: deposed"
        );
        assert_eq!(refusing.clone(), refusing);
        assert_ne!(refusing, CommitFence::always());
    }
}
