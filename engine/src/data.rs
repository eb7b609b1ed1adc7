//! What a record and a key are.
//!
//! Records are moved between threads in typed buffers (never serialised on the local data path),
//! cloned for broadcast and fan-out, and serialised with serde only when they become part of a
//! checkpoint (channel state, keyed state). Keys also need a stable hash (see
//! `weir_state::key_group`).

use std::hash::Hash;

use serde::{de::DeserializeOwned, Serialize};

/// A record type: anything cloneable, sendable and serialisable. Implemented for every such type.
pub trait Data: Clone + Send + Serialize + DeserializeOwned + 'static {}
impl<T: Clone + Send + Serialize + DeserializeOwned + 'static> Data for T {}

/// A key type: a record type that can be hashed and compared.
pub trait Key: Data + Hash + Eq {}
impl<T: Data + Hash + Eq> Key for T {}

/// A function that extracts the key of a record (`key_by`). Implemented for closures.
pub trait KeySelector<T, K>: Fn(&T) -> K + Clone + Send + 'static {}
impl<T, K, F: Fn(&T) -> K + Clone + Send + 'static> KeySelector<T, K> for F {}
