//! Errors of the state crate: one enum, one `Result` alias.

/// An error raised by keyed state or key-group arithmetic.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
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
}

/// The result type of this crate.
pub type Result<T, E = StateError> = std::result::Result<T, E>;
