//! Errors of the state crate: one enum, one `Result` alias.

use std::path::PathBuf;

/// An error raised by state, snapshots or checkpoint storage.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A state name was registered twice with different kinds or value types.
    #[error("state '{name}' is already registered with a different kind or type")]
    StateTypeMismatch {
        /// The state's name.
        name: String,
    },
    /// State was accessed while no key was set (outside element or timer processing).
    #[error("keyed state '{name}' accessed outside of a keyed context (no current key)")]
    NoCurrentKey {
        /// The state's name.
        name: String,
    },
    /// A max parallelism outside `1..=32768`.
    #[error("max parallelism {0} is out of range 1..=32768")]
    MaxParallelismOutOfRange(usize),
    /// A persisted file failed its checks (magic, kind, length, checksum).
    #[error("corrupt file {path}: {reason}")]
    CorruptFile {
        /// The file.
        path: PathBuf,
        /// What check failed.
        reason: String,
    },
    /// A persisted file was written by a newer format version.
    #[error("file {path} has format version {version}; this build reads version {supported}")]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// Its version.
        version: u16,
        /// The version this build reads.
        supported: u16,
    },
    /// Reading or writing a file failed.
    #[error("I/O error on {path}: {reason}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        reason: String,
    },
    /// Serialising state failed.
    #[error("cannot encode state: {0}")]
    Encode(String),
    /// A checked payload did not decode into the expected type.
    #[error("cannot decode {what}: {reason}")]
    Decode {
        /// What was decoded (a file or state name).
        what: String,
        /// The decoder's message.
        reason: String,
    },
    /// No checkpoint at the given location.
    #[error("no completed checkpoint or savepoint at {location} (no _metadata file)")]
    NoSuchCheckpoint {
        /// The location.
        location: String,
    },
    /// Checkpoints exist but none is complete and intact.
    #[error("no valid checkpoint under {root}: {}", problems.join("; "))]
    NoValidCheckpoint {
        /// The storage root.
        root: PathBuf,
        /// What is wrong with each candidate, newest first.
        problems: Vec<String>,
    },
    /// Keyed state was restored with a different max parallelism than it was written with.
    #[error("keyed state was written with max parallelism {was} and cannot be restored with {now}; keep pipeline.max-parallelism unchanged across restores")]
    MaxParallelismChanged {
        /// Max parallelism of the snapshot.
        was: usize,
        /// Max parallelism now.
        now: usize,
    },
    /// A state file name that is empty, reserved or leaves its directory.
    #[error("invalid state file name '{0}'")]
    InvalidName(String),
    /// The store of completed checkpoints (high availability) refused or failed a request.
    #[error("completed-checkpoint store: {0}")]
    Store(String),
}

/// The result type of this crate.
pub type Result<T, E = StateError> = std::result::Result<T, E>;
