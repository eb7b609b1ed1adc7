//! Barrier checkpoints (Flink's asynchronous barrier snapshotting), in four modes.
//!
//! This module holds the checkpoint protocol (barriers, task states, the [`messages`] tasks send,
//! statistics); the checkpoint coordinator that drives it runs with the job (one thread per
//! job, `job::checkpoint_coordinator`) and triggers checkpoint `n` by sending a mail to every
//! source task. A source task snapshots its source and chain and emits barrier `n` behind the
//! records it sent before. A task with several input channels handles barriers by mode:
//!
//! - **aligned** (`execution.checkpointing.mode` = EXACTLY_ONCE): each channel is blocked once
//!   its barrier arrived, until every channel has it; then the task snapshots, forwards the
//!   barrier and unblocks. The snapshot holds exactly the records before the barrier.
//! - **at-least-once**: channels are never blocked; a task snapshots when the last barrier
//!   arrived, so records after an early barrier may be in the snapshot and be replayed.
//! - **unaligned** (`execution.checkpointing.unaligned.enabled`): the first barrier is handled
//!   between two records, even inside a buffer; the task snapshots at once and sends the
//!   barrier through the *priority lane*, ahead of its queued output. The records it overtook
//!   become *channel state*: output buffers waiting in the writers, the records queued in the
//!   receiving gate when the barrier was inserted (copied at that moment, under the gate's lock),
//!   the rest of the buffer in hand, and whatever other channels deliver before their own
//!   barrier. On restore, output channel state is sent again and input channel state processed
//!   again before any new input. Savepoints are always aligned.
//! - **aligned with timeout** (`execution.checkpointing.aligned-checkpoint-timeout` > 0, with
//!   unaligned enabled): a checkpoint starts aligned; when it is not complete after the timeout
//!   the coordinator tells every input task that has not taken it yet to switch: the task takes
//!   it unaligned at once, capturing for each channel the records ahead of its queued barrier.
//!   A barrier stuck behind buffers without credit in a sender's output (Flink 1.16's second
//!   case) is covered too: a barrier takes the few buffers ahead of it (bounded by the overdraft)
//!   into the receiver's gate without credit, so the receiver always finds it in its queue. That
//!   overdraft is a loan the receiver repays by taking the buffers; a channel that still owes
//!   one when the next barrier comes (its receiver has not reached the previous barrier's data,
//!   so no alignment could finish in time) gets that barrier unaligned at once from the sender,
//!   whose waiting records become output channel state, as Flink times a barrier out in an
//!   output. Memory stays bounded however often checkpoints come.
//!
//! **Forward and broadcast edges**: Flink keeps pointwise and broadcast edges aligned; weir
//! takes unaligned checkpoints on every edge alike (the priority lane and channel state work the
//! same for one channel as for many), so a backpressured forward or broadcast edge never delays
//! a checkpoint. Channel state is restored into the same subtasks: restoring an unaligned
//! checkpoint that holds in-flight records into another parallelism is refused with a clear
//! error (rescale from a savepoint, which is aligned).
//!
//! Each task serialises its state on its own thread (the synchronous part: a copy) and sends the
//! bytes to the coordinator, which writes the state files and then the metadata (last, atomic)
//! off the task threads (the asynchronous part), and notifies every task of completion. Failed
//! checkpoints count towards `tolerable-failed-checkpoints` as in Flink; a failed task makes the
//! job restart from its latest checkpoint as the restart strategy says ([`crate::restart`]).

pub(crate) mod messages;
pub mod stats;

pub use stats::{CheckpointHistory, CheckpointStats, CheckpointStatus, TaskCheckpointStats};

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use weir_state::checkpoint::CheckpointKind;
use weir_state::KeyGroupRange;

use crate::error::UserError;

/// Encodes operator or source state (serde, bincode) for `snapshot_state`.
///
/// # Errors
///
/// Returns [`StateError::Encode`](weir_state::StateError::Encode), boxed in a [`UserError`], when
/// `state` cannot be serialized (its `Serialize` implementation fails, or it serializes a sequence
/// or map of unknown length).
pub fn encode_state<T: Serialize>(state: &T) -> Result<Vec<u8>, UserError> {
    Ok(weir_state::checkpoint::format::encode(state)?)
}

/// Decodes state encoded by [`encode_state`], in `restore_state`.
///
/// # Errors
///
/// Returns [`StateError::Decode`](weir_state::StateError::Decode), boxed in a [`UserError`], when
/// `bytes` is not an encoding of a `T` (for example state of another version of the type), or would
/// need more than 64 times its size plus 1 MiB of memory.
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

impl OperatorSubtaskState {
    /// The operator (non-keyed) state `bytes` of subtask `subtask` of the operator `uid`.
    pub(crate) fn operator_state(uid: &str, subtask: usize, bytes: Vec<u8>) -> Self {
        OperatorSubtaskState {
            uid: uid.to_string(),
            subtask,
            operator: Some(bytes),
            ..Default::default()
        }
    }
}

/// Output channel state captured at an unaligned barrier: `(writer key, encoded records)`.
pub(crate) type Captured = Vec<(String, Vec<u8>)>;

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
