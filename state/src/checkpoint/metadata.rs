//! What a completed checkpoint records.
//!
//! Operators are matched by uid on restore, subtasks by index (operator state, channel state)
//! or by key-group range (keyed state, which may be restored into another parallelism). File
//! names in handles are relative to the checkpoint's own location, so a checkpoint directory can
//! be moved or copied as a whole.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::KeyGroupRange;

/// Checkpoint (periodic, retained N at a time) or savepoint (user-triggered, never deleted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckpointKind {
    /// A periodic or manually triggered checkpoint.
    Checkpoint,
    /// A savepoint: always aligned, never deleted automatically.
    Savepoint,
}

/// A persisted file of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateHandle {
    /// File name, relative to the checkpoint's location.
    pub file: String,
    /// Size in bytes (framing included).
    pub size: u64,
}

/// The state of one subtask of one operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubtaskSnapshot {
    /// The subtask index.
    pub subtask: usize,
    /// The key groups its keyed state covers (keyed operators only).
    pub key_groups: Option<KeyGroupRange>,
    /// Keyed state and timers.
    pub keyed: Option<StateHandle>,
    /// Operator (non-keyed) state, e.g. a source's position.
    pub operator: Option<StateHandle>,
    /// In-flight records (unaligned checkpoints).
    pub channel: Option<StateHandle>,
}

/// The state of every subtask of one operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorSnapshot {
    /// The operator's uid.
    pub uid: String,
    /// Its name (for messages).
    pub name: String,
    /// Its parallelism when the checkpoint was taken.
    pub parallelism: usize,
    /// Its max parallelism (number of key groups).
    pub max_parallelism: usize,
    /// One entry per subtask that has state.
    pub subtasks: Vec<SubtaskSnapshot>,
}

/// The metadata of a completed checkpoint; written last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointMetadata {
    /// The job's name.
    pub job: String,
    /// The checkpoint id (monotonically increasing per job).
    pub checkpoint_id: u64,
    /// Checkpoint or savepoint.
    pub kind: CheckpointKind,
    /// When it was triggered (ms since the epoch).
    pub timestamp_ms: i64,
    /// Whether any subtask took it unaligned (then it holds channel state).
    pub unaligned: bool,
    /// Per-operator state, by uid.
    pub operators: Vec<OperatorSnapshot>,
    /// Further named state files (e.g. coordinator state), by name.
    pub extra: BTreeMap<String, StateHandle>,
}

impl CheckpointMetadata {
    /// Every state file the checkpoint references.
    pub fn handles(&self) -> impl Iterator<Item = &StateHandle> {
        self.operators
            .iter()
            .flat_map(|o| o.subtasks.iter())
            .flat_map(|s| [&s.keyed, &s.operator, &s.channel].into_iter().flatten())
            .chain(self.extra.values())
    }

    /// The snapshot of the operator with `uid`.
    pub fn operator(&self, uid: &str) -> Option<&OperatorSnapshot> {
        self.operators.iter().find(|o| o.uid == uid)
    }
}
