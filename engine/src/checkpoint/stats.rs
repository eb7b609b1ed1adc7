//! Checkpoint statistics: what each checkpoint cost, readable from the job handle and as JSON.

use serde::Serialize;

/// How one task took a checkpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct TaskCheckpointStats {
    /// The task's index in the job.
    pub task: usize,
    /// From the trigger to the first barrier reaching the task (ms).
    pub start_delay_ms: f64,
    /// From the first to the last barrier of the task's inputs (ms); 0 for sources.
    pub alignment_ms: f64,
    /// Time spent snapshotting operators on the task thread (ms).
    pub sync_ms: f64,
    /// Whether this task took it unaligned.
    pub unaligned: bool,
    /// When the checkpoint coordinator received the task's acknowledgement (ms since the
    /// epoch).
    pub ack_timestamp_ms: i64,
    /// Bytes of state (keyed, operator and channel) the task's operators snapshotted.
    pub state_bytes: u64,
    /// Bytes of in-flight records the task persisted (channel state, unaligned only).
    pub persisted_bytes: u64,
    /// Bytes of records the task processed between its first and last barrier (aligned
    /// checkpoints: the channels whose barrier came first go on being read).
    pub processed_bytes: u64,
}

/// Outcome of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointStatus {
    /// Completed: its metadata is written.
    Completed,
    /// Failed or aborted, with the reason.
    Failed(String),
}

/// The finished checkpoints of a job: the most recent ones (a bounded history), and how many
/// completed and failed in all.
#[derive(Debug, Clone, Default)]
pub struct CheckpointHistory {
    /// The most recent finished checkpoints, oldest first.
    pub recent: Vec<CheckpointStats>,
    /// Checkpoints completed since the job started.
    pub completed: u64,
    /// Checkpoints failed since the job started.
    pub failed: u64,
}

/// Statistics of one checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckpointStats {
    /// The checkpoint id.
    pub id: u64,
    /// "checkpoint" or "savepoint".
    pub kind: &'static str,
    /// "aligned", "unaligned" or "at-least-once".
    pub mode: &'static str,
    /// When it was triggered (ms since the epoch).
    pub trigger_time_ms: i64,
    /// From trigger to completion (or failure), ms.
    pub duration_ms: f64,
    /// The asynchronous part: writing state files and metadata, off the task threads (ms).
    pub async_ms: f64,
    /// Bytes of operator, keyed and channel state written.
    pub state_bytes: u64,
    /// Bytes of in-flight records persisted (channel state; unaligned only).
    pub persisted_inflight_bytes: u64,
    /// Completed or failed (with the reason).
    pub status: CheckpointStatus,
    /// Per-task details, for tasks that acknowledged.
    pub tasks: Vec<TaskCheckpointStats>,
}
