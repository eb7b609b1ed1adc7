//! Barrier checkpoints (Flink's asynchronous barrier snapshotting).
//!
//! The [`coordinator`] (one thread per job) triggers checkpoint `n` by sending a mail to every
//! source task. A source task snapshots its source and chain and emits barrier `n` in-band on
//! every output channel, behind the records it sent before. A task with several input channels
//! handles barriers by mode (`execution.checkpointing.mode`):
//!
//! - **aligned** (EXACTLY_ONCE): each channel is blocked once its barrier arrived, until every
//!   channel has it; then the task snapshots, forwards the barrier and unblocks. The snapshot
//!   reflects exactly the records before the barrier on every channel.
//! - **at-least-once**: channels are never blocked; the task snapshots when the last barrier
//!   arrives, so records after an early barrier may be in the snapshot and be replayed.
//!
//! Each task sends its state (bytes, serialised synchronously on the task thread) to the
//! coordinator, which writes the state files and, once every task acknowledged, the metadata
//! (last and atomically), then notifies every task that the checkpoint completed. Restore hands
//! each operator its state by uid and subtask; keyed state by key group, so a keyed operator can
//! be restored into another parallelism.
//!
//! Not yet here (next steps of the checkpointing work): unaligned and aligned-with-timeout
//! barriers, restart strategies, tolerable failures, and checkpoint statistics.

pub mod coordinator;
pub mod stats;

pub use stats::{CheckpointStats, CheckpointStatus, TaskCheckpointStats};

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use weir_state::checkpoint::CheckpointKind;
use weir_state::KeyGroupRange;

use crate::error::UserError;

/// Encodes operator or source state (serde, bincode) for `snapshot_state`.
pub fn encode_state<T: Serialize>(state: &T) -> Result<Vec<u8>, UserError> {
    Ok(weir_state::checkpoint::format::encode(state)?)
}

/// Decodes state encoded by [`encode_state`], in `restore_state`.
pub fn decode_state<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, UserError> {
    Ok(weir_state::checkpoint::format::decode(
        "operator state",
        bytes,
    )?)
}

/// A checkpoint barrier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Barrier {
    /// The checkpoint id.
    pub id: u64,
    /// When the checkpoint was triggered (ms since the epoch).
    pub timestamp_ms: i64,
    /// Checkpoint or savepoint.
    pub kind: CheckpointKind,
    /// Taken unaligned: the barrier overtakes in-flight data, which becomes channel state.
    pub unaligned: bool,
}

/// The state of one operator subtask in one checkpoint, as bytes.
#[derive(Debug, Clone, Default)]
pub(crate) struct OperatorSubtaskState {
    /// The operator's uid.
    pub uid: String,
    /// Its subtask index.
    pub subtask: usize,
    /// The key groups of its keyed state (keyed operators).
    pub key_groups: Option<KeyGroupRange>,
    /// Encoded `KeyedStateSnapshot` (keyed state and timers).
    pub keyed: Option<Vec<u8>>,
    /// Operator (non-keyed) state as the operator encoded it.
    pub operator: Option<Vec<u8>>,
    /// Encoded [`ChannelStateSnapshot`] of the task this operator heads (unaligned).
    pub channel: Option<Vec<u8>>,
}

/// In-flight records of one task in an unaligned checkpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ChannelStateSnapshot {
    /// Encoded `Vec<T>` of input records to process again before any new input.
    pub input: Vec<u8>,
    /// Per output edge (writer key), encoded `Vec<T>` of output records to send again first.
    pub outputs: Vec<(String, Vec<u8>)>,
}

/// What a task restores: per chained operator (by uid), what its subtask gets.
#[derive(Debug, Clone, Default)]
pub(crate) struct RestoreState {
    /// Encoded `KeyedStateSnapshot`s whose key groups overlap this subtask's range.
    pub keyed: Vec<Vec<u8>>,
    /// This subtask's operator state.
    pub operator: Option<Vec<u8>>,
    /// Encoded input records of this task (unaligned checkpoints; head operators only).
    pub channel_input: Option<Vec<u8>>,
    /// Output records of this task's writers, by writer key (unaligned; head operators only).
    pub channel_outputs: Vec<(String, Vec<u8>)>,
}
