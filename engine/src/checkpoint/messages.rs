//! The checkpoint protocol between tasks, the job handle and the checkpoint coordinator (which
//! runs with the job, above this module): what a task acknowledges or declines, and where a
//! coordinator's state goes in a checkpoint's metadata.

use std::sync::mpsc::Sender;

use weir_state::checkpoint::{CheckpointKind, CompletedCheckpoint};

use super::stats::TaskCheckpointStats;
use super::OperatorSubtaskState;
use crate::error::CheckpointError;

/// A reply to a manual trigger.
pub(crate) type TriggerReply = Sender<Result<CompletedCheckpoint, CheckpointError>>;

/// What tasks and the job handle tell the checkpoint coordinator: acknowledgements and
/// declines of checkpoints, ends of tasks, manual triggers.
pub(crate) enum CheckpointMsg {
    /// A task took checkpoint `id`.
    Ack {
        task: usize,
        id: u64,
        states: Vec<OperatorSubtaskState>,
        stats: TaskCheckpointStats,
    },
    /// A task could not take checkpoint `id` (an operator's snapshot failed).
    Decline {
        task: usize,
        id: u64,
        reason: String,
    },
    /// A task ended (finished, failed or cancelled).
    TaskEnded { task: usize },
    /// Trigger a checkpoint or savepoint now and reply when it completes or fails.
    Trigger {
        kind: CheckpointKind,
        reply: TriggerReply,
    },
    /// The job is over.
    Shutdown,
}

/// The key of an operator coordinator's state in a checkpoint's metadata.
pub(crate) fn coordinator_state_key(uid: &str) -> String {
    format!("coordinator/{uid}")
}
