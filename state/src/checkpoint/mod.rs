//! Checkpoint storage: where snapshots live on disk, in what format, and for how long.
//!
//! - [`format`](mod@format): every persisted file is framed with a magic number, a format version, its kind,
//!   its payload length and a CRC32 of the payload; a file that fails any check is reported as
//!   corrupt with its path, never silently read.
//! - [`storage`]: the [`CheckpointStorage`] trait and its local-directory implementation: one
//!   directory per checkpoint, state files first and the `_metadata` file last (written to a
//!   temporary name and renamed, so a checkpoint is complete exactly when its metadata exists),
//!   retention of the newest N checkpoints, savepoints that are never deleted automatically, and
//!   "latest" lookup that skips incomplete or corrupt checkpoints.
//! - [`metadata`]: what a completed checkpoint records: per operator (by uid) and subtask, the
//!   handles of its keyed state (per key-group range), operator state and channel state.

pub mod format;
pub mod metadata;
pub mod storage;

pub use metadata::{
    CheckpointKind, CheckpointMetadata, OperatorSnapshot, StateHandle, SubtaskSnapshot,
};
pub use storage::{CheckpointStorage, CompletedCheckpoint, LocalCheckpointStorage};
