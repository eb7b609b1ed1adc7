//! # weir-state: keyed state, key groups and timers
//!
//! This crate owns the data that a stream operator keeps between records, partitioned so that
//! it can be snapshotted and redistributed:
//!
//! - [`key_group`]: keys map to *key groups* (`0..max_parallelism`) through a hash that is stable
//!   across processes and builds, and contiguous key-group ranges map to subtasks, exactly as
//!   Apache Flink does. A key therefore always reaches the same subtask for a given parallelism,
//!   and keyed state rescales (a restore into another parallelism) by moving whole key groups.
//! - [`keyed`]: the keyed state backend of one subtask: value, list and map states registered by
//!   name and always accessed for one key at a time.
//! - [`timers`]: per-key event-time and processing-time timers, deduplicated per (key, time).
//!
//! ```
//! use weir_state::key_group::{assign_to_key_group, operator_index_for_key_group};
//! use weir_state::{KeyGroupRange, KeyedStateBackend};
//!
//! // Key "user-7" lives in one key group out of 128; with 4 subtasks, one subtask owns it.
//! let group = assign_to_key_group("user-7", 128);
//! let owner = operator_index_for_key_group(128, 4, group);
//! assert!(KeyGroupRange::for_operator(128, 4, owner).contains(group));
//!
//! let mut state = KeyedStateBackend::<String>::new(KeyGroupRange::for_operator(128, 4, owner), 128);
//! let clicks = state.register_value::<u64>("clicks").unwrap();
//! state.set_value(&clicks, &"user-7".to_string(), 3);
//! assert_eq!(state.value(&clicks, &"user-7".to_string()), Some(&3));
//! assert_eq!(state.value(&clicks, &"user-8".to_string()), None);
//! ```
//!
//! Invariant: every piece of keyed state and every keyed timer belongs to exactly one key, and
//! so to exactly one key group; nothing here is shared between keys.

/// Wall-clock milliseconds since the Unix epoch: the one clock of every weir crate (processing
/// time, checkpoint timestamps, HA records, lock leases). 0 if the system clock is before 1970.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub mod checkpoint;
pub mod error;
pub mod key_group;
pub mod keyed;
pub mod timers;

pub use error::{Result, StateError};
pub use key_group::{KeyGroupRange, DEFAULT_MAX_PARALLELISM, UPPER_BOUND_MAX_PARALLELISM};
pub use keyed::{KeyedStateBackend, ListStateHandle, MapStateHandle, ValueStateHandle};
pub use timers::KeyedTimers;
