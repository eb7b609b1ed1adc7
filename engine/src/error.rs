//! Errors of the engine: one enum per concern, with a `Result` alias.
//!
//! User errors (a bad job, a bad option, a failing user function) are reported with the name
//! of what was wrong; internal errors say so explicitly.

use std::sync::Arc;

use crate::config::ConfigError;

/// The error type user code returns from operators, sources and sinks.
pub type UserError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A mistake found while building a job, before anything runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// A setting of an operator is out of range.
    #[error("operator '{operator}' has an invalid {setting}: expected {expected}")]
    InvalidSetting {
        /// The operator's name.
        operator: String,
        /// The setting.
        setting: &'static str,
        /// What is allowed.
        expected: &'static str,
    },
    /// The job has no operators.
    #[error("the job has no operators: add a source and a sink")]
    EmptyJob,
    /// An operator's parallelism is 0.
    #[error("operator '{operator}' has parallelism 0; parallelism must be at least 1")]
    ZeroParallelism {
        /// The operator's name.
        operator: String,
    },
    /// An operator's max parallelism is outside `1..=32768`.
    #[error("operator '{operator}' has max parallelism {max_parallelism}, outside 1..=32768")]
    MaxParallelismOutOfRange {
        /// The operator's name.
        operator: String,
        /// The offending value.
        max_parallelism: usize,
    },
    /// An operator's max parallelism is smaller than its parallelism.
    #[error(
        "operator '{operator}' has parallelism {parallelism} above its max parallelism {max_parallelism}"
    )]
    MaxParallelismTooSmall {
        /// The operator's name.
        operator: String,
        /// Its parallelism.
        parallelism: usize,
        /// Its max parallelism.
        max_parallelism: usize,
    },
    /// Two operators share a uid.
    #[error("duplicate uid '{uid}' on operators '{first}' and '{second}'")]
    DuplicateUid {
        /// The uid.
        uid: String,
        /// The first operator using it.
        first: String,
        /// The second operator using it.
        second: String,
    },
    /// A uid or name is empty.
    #[error("operator '{operator}' has an empty {what}")]
    Empty {
        /// The operator's name (or its generated name).
        operator: String,
        /// "uid" or "name".
        what: &'static str,
    },
    /// A forward edge joins operators of different parallelism.
    #[error(
        "forward edge from '{from}' (parallelism {from_parallelism}) to '{to}' (parallelism {to_parallelism}): forward needs equal parallelism; use rebalance() instead"
    )]
    ForwardParallelismMismatch {
        /// Upstream operator.
        from: String,
        /// Its parallelism.
        from_parallelism: usize,
        /// Downstream operator.
        to: String,
        /// Its parallelism.
        to_parallelism: usize,
    },
    /// A non-parallel operator (such as an iterator source) was given parallelism above 1.
    #[error("operator '{operator}' is not parallel but was given parallelism {parallelism}")]
    NonParallelOperator {
        /// The operator's name.
        operator: String,
        /// The requested parallelism.
        parallelism: usize,
    },
    /// A property was set on a stream that is not a single operator (a union or a
    /// repartitioned stream), for example `a.union(&[b]).set_parallelism(2)`.
    #[error("{property} can only be set on an operator's output, not on a {stream} stream")]
    NotAnOperator {
        /// The property (name, uid, parallelism, ...).
        property: &'static str,
        /// What the stream was ("union", "partitioned").
        stream: &'static str,
    },
    /// Streams of two different environments were combined.
    #[error("streams from different environments cannot be combined (in '{operator}')")]
    ForeignStream {
        /// The operator where they meet.
        operator: String,
    },
}

/// Why the REST server (API, metrics, dashboard) could not start.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// Binding outside loopback without a token would let anyone control the jobs.
    #[error(
        "the REST server would bind to {address}, outside loopback, without a token: set \
         rest.authentication.token or rest.authentication.token-file, or bind to 127.0.0.1 \
         (rest.bind-address)"
    )]
    UnauthenticatedBind {
        /// The address asked for.
        address: String,
    },
    /// `rest.bind-address` / `rest.port` do not form an address.
    #[error("invalid REST address '{address}' (rest.bind-address, rest.port)")]
    BadAddress {
        /// The address.
        address: String,
    },
    /// A file the server needs (token, certificate, key) cannot be read or is invalid.
    #[error("cannot use {option} '{path}': {reason}")]
    File {
        /// The option naming the file.
        option: &'static str,
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The listening socket or the server's runtime cannot be created.
    #[error("cannot start the REST server on {address}: {source}")]
    Io {
        /// The address.
        address: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Why a job did not finish successfully.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The job graph is invalid.
    #[error("invalid job: {0}")]
    Validation(#[from] ValidationError),
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An operator's coordinator failed (returned an error or panicked).
    #[error("the coordinator of operator '{operator}' failed: {message}")]
    CoordinatorFailed {
        /// The operator's name.
        operator: String,
        /// What went wrong.
        message: String,
    },
    /// User code failed (returned an error or panicked) in a task.
    #[error("operator '{operator}' (subtask {}/{parallelism}) failed: {message}", .subtask + 1)]
    TaskFailed {
        /// The failing operator's name.
        operator: String,
        /// The failing subtask, zero-based (displayed one-based, as Flink does).
        subtask: usize,
        /// The operator's parallelism.
        parallelism: usize,
        /// The error or panic message.
        message: String,
        /// Whether the failure was a panic (rather than a returned error).
        panicked: bool,
    },
    /// More consecutive checkpoints failed than `tolerable-failed-checkpoints` allows.
    #[error("exceeded checkpoint tolerable failure threshold: {failed} consecutive failed checkpoints (tolerable: {tolerable}); last: {last}")]
    CheckpointFailures {
        /// Consecutive failures counted.
        failed: usize,
        /// The configured limit.
        tolerable: usize,
        /// The last failure's reason.
        last: String,
    },
    /// A checkpoint or savepoint cannot be restored into this job.
    #[error("cannot restore: {0}")]
    Restore(String),
    /// A checkpoint or savepoint could not be read for a restore (missing, corrupt, of an
    /// unknown format).
    #[error("cannot restore: {source}")]
    RestoreRead {
        /// What the checkpoint storage reported.
        #[source]
        source: weir_state::StateError,
    },
    /// A thread or runtime of the job could not be started.
    #[error("internal error: cannot start the {what}: {source}")]
    Start {
        /// What could not be started.
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The job's REST server (`rest.port`) could not start.
    #[error(transparent)]
    Rest(#[from] RestError),
    /// A thread ended unexpectedly, or the job was joined twice.
    #[error("internal error: {0}")]
    Internal(String),
}

impl CheckpointError {
    /// Whether this failure counts towards `tolerable-failed-checkpoints` (as in Flink: I/O
    /// errors, declines and expiry count; finished tasks, a missing storage or the job ending
    /// do not).
    pub fn counts_as_failure(&self) -> bool {
        matches!(
            self,
            CheckpointError::Expired { .. }
                | CheckpointError::Declined { .. }
                | CheckpointError::Storage { .. }
        )
    }
}

/// Why a checkpoint or savepoint did not complete.
///
/// Equality compares the variants' fields; [`CheckpointError::Storage`] compares its checkpoint
/// id and its source's message (the storage error itself is not comparable).
#[derive(Debug, Clone, thiserror::Error)]
pub enum CheckpointError {
    /// No checkpoint storage is configured.
    #[error("no checkpoint storage: set execution.checkpointing.dir")]
    NoStorage,
    /// A task has already finished, so a barrier cannot reach it (bounded input ending).
    #[error("some tasks have already finished; a checkpoint can no longer complete")]
    TasksFinished,
    /// The checkpoint took longer than `execution.checkpointing.timeout`.
    #[error("checkpoint {id} expired before it completed")]
    Expired {
        /// The checkpoint id.
        id: u64,
    },
    /// A task declined the checkpoint.
    #[error("checkpoint {id} declined: {reason}")]
    Declined {
        /// The checkpoint id.
        id: u64,
        /// Why.
        reason: String,
    },
    /// Writing the checkpoint (a state file or its metadata) failed; the storage's error is
    /// the [`source`](std::error::Error::source).
    #[error("checkpoint {id} could not be written")]
    Storage {
        /// The checkpoint id.
        id: u64,
        /// The checkpoint storage's error (shared, so that the error stays `Clone`).
        #[source]
        source: Arc<weir_state::StateError>,
    },
    /// The job ended before the checkpoint completed.
    #[error("the job ended before the checkpoint completed")]
    JobEnded,
    /// Another checkpoint is in progress and no second one may run beside it (unaligned
    /// checkpoints run one at a time, as in Flink).
    #[error("checkpoint {pending} is in progress; try again when it finished")]
    Busy {
        /// The checkpoint in progress.
        pending: u64,
    },
}

impl PartialEq for CheckpointError {
    fn eq(&self, other: &Self) -> bool {
        use CheckpointError::*;
        match (self, other) {
            (NoStorage, NoStorage) | (TasksFinished, TasksFinished) | (JobEnded, JobEnded) => true,
            (Expired { id: a }, Expired { id: b }) => a == b,
            (Declined { id: a, reason: r }, Declined { id: b, reason: q }) => a == b && r == q,
            (Storage { id: a, source: s }, Storage { id: b, source: t }) => {
                a == b && (Arc::ptr_eq(s, t) || s.to_string() == t.to_string())
            }
            (Busy { pending: a }, Busy { pending: b }) => a == b,
            _ => false,
        }
    }
}

impl Eq for CheckpointError {}

/// `e` and its sources as one line, outermost first (`checkpoint 7 could not be stored: cannot
/// write …: <the io error>`), for the places that keep an error only as text: checkpoint
/// statistics, `JobError::CheckpointFailures`, task results, log lines and answers to clients.
/// A source whose text already ends the line (some errors print their own source last) is not
/// repeated.
pub fn report(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let text = s.to_string();
        if !text.is_empty() && !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = s.source();
    }
    out
}

/// The result type of the engine.
pub type Result<T, E = JobError> = std::result::Result<T, E>;

/// An error inside a running task, attributed to the chained operator it came from.
///
/// Boxed so that `Result<(), TaskError>`, which every per-record call returns, is one pointer
/// wide and travels in a register.
#[derive(Debug)]
pub(crate) struct TaskError(Box<TaskErrorKind>);

/// What went wrong in a task.
#[derive(Debug)]
pub(crate) enum TaskErrorKind {
    /// User code of the operator at `operator` (index in the task's chain) failed.
    User { operator: usize, error: UserError },
    /// The task was cancelled while waiting.
    Cancelled,
}

impl TaskError {
    pub(crate) fn user(operator: usize, error: UserError) -> Self {
        TaskError(Box::new(TaskErrorKind::User { operator, error }))
    }
    pub(crate) fn cancelled() -> Self {
        TaskError(Box::new(TaskErrorKind::Cancelled))
    }
    pub(crate) fn into_kind(self) -> TaskErrorKind {
        *self.0
    }
    /// A user error's message (the checkpoint is declined); cancellation stays an error.
    pub(crate) fn into_decline(self) -> Result<String, TaskError> {
        match *self.0 {
            TaskErrorKind::User { operator, error } => {
                Ok(format!("operator #{operator} failed to snapshot: {error}"))
            }
            TaskErrorKind::Cancelled => Err(TaskError::cancelled()),
        }
    }
}

/// The message of a panic's payload (`panicked: …`), for errors that report a caught panic.
pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = p.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_error_keeps_its_cause_as_source() {
        let cause = || weir_state::StateError::Encode("disk full".into());
        let e = CheckpointError::Storage {
            id: 7,
            source: Arc::new(cause()),
        };
        assert_eq!(e.to_string(), "checkpoint 7 could not be written");
        let source = std::error::Error::source(&e).expect("a source");
        assert_eq!(source.to_string(), cause().to_string());
        assert_eq!(
            report(&e),
            format!("checkpoint 7 could not be written: {}", cause())
        );
        let same = CheckpointError::Storage {
            id: 7,
            source: Arc::new(cause()),
        };
        assert_eq!(e, same);
        assert_eq!(e.clone(), e);
        let other = CheckpointError::Storage {
            id: 8,
            source: Arc::new(cause()),
        };
        assert_ne!(e, other);
        assert_ne!(e, CheckpointError::Expired { id: 7 });
    }
}
