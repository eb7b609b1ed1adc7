//! The keyed state backend of one subtask.
//!
//! States are registered by name (usually in an operator's `open`) and return a typed handle;
//! every access names the key it is for. The engine's keyed context passes the key of the record
//! or timer being processed, so user code only ever sees the state of the current key.
//!
//! Invariants: a name maps to one kind and one value type for the life of the backend; a handle
//! is only valid for the backend that issued it (using a handle of another backend panics with
//! a message naming the state); tables are plain hash maps keyed by the user key, so access is a
//! single hash lookup.

use std::any::Any;
use std::hash::Hash;
use std::marker::PhantomData;

use rustc_hash::FxHashMap;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::checkpoint::format::{decode, encode};
use crate::key_group::assign_to_key_group;
use crate::{KeyGroupRange, Result, StateError};

/// Bounds every key type satisfies.
pub trait StateKey: Hash + Eq + Clone + Send + Serialize + DeserializeOwned + 'static {}
impl<T: Hash + Eq + Clone + Send + Serialize + DeserializeOwned + 'static> StateKey for T {}

/// Bounds every state value satisfies.
pub trait StateValue: Send + Serialize + DeserializeOwned + 'static {}
impl<T: Send + Serialize + DeserializeOwned + 'static> StateValue for T {}

/// The kind of a registered state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StateKind {
    /// One value per key.
    Value,
    /// A list per key.
    List,
    /// A map per key.
    Map,
}

/// Encoded entries per key group: `(key group, bytes)`.
pub type KeyGroupBytes = Vec<(u32, Vec<u8>)>;

/// One state's entries, grouped by key group: `(key group, encoded Vec<(key, value)>)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedStateSnapshot {
    /// The state's name.
    pub name: String,
    /// Its kind.
    pub kind: StateKind,
    /// Encoded entries per key group.
    pub groups: KeyGroupBytes,
}

/// The keyed state (and timers) of one subtask, by key group: restorable into any subtask
/// whose key-group range overlaps, so keyed state can be rescaled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyedStateSnapshot {
    /// Max parallelism the key groups were computed with.
    pub max_parallelism: usize,
    /// The key groups this snapshot covers.
    pub key_groups: KeyGroupRange,
    /// Every registered state.
    pub states: Vec<NamedStateSnapshot>,
    /// Encoded timers per key group (see `KeyedTimers`).
    pub timers: KeyGroupBytes,
}

trait StateTable<K> {
    const KIND: StateKind;
    fn keys(table: &dyn Any) -> usize;
    /// Entries grouped by key group, each group encoded.
    fn snapshot(table: &dyn Any, max_parallelism: usize) -> Result<KeyGroupBytes>;
    /// Inserts the encoded entries of one key group.
    fn restore(table: &mut dyn Any, name: &str, bytes: &[u8]) -> Result<()>;
}

struct ValueTable<K, V>(FxHashMap<K, V>);
struct ListTable<K, V>(FxHashMap<K, Vec<V>>);
struct MapTable<K, UK, UV>(FxHashMap<K, FxHashMap<UK, UV>>);

macro_rules! table_impl {
    ($t:ident < $($p:ident),* >, $kind:expr, $entry:ty) => {
        impl<K: StateKey, $($p: StateValue),*> StateTable<K> for $t<K, $($p),*>
        where
            $entry: Serialize + DeserializeOwned,
        {
            const KIND: StateKind = $kind;
            fn keys(table: &dyn Any) -> usize {
                table.downcast_ref::<Self>().map_or(0, |t| t.0.len())
            }
            fn snapshot(table: &dyn Any, max_parallelism: usize) -> Result<KeyGroupBytes> {
                let Some(t) = table.downcast_ref::<Self>() else { return Ok(Vec::new()) };
                let mut groups: FxHashMap<u32, Vec<(&K, &$entry)>> = FxHashMap::default();
                for (k, v) in &t.0 {
                    groups.entry(assign_to_key_group(k, max_parallelism) as u32).or_default().push((k, v));
                }
                let mut out = groups
                    .into_iter()
                    .map(|(g, entries)| Ok((g, encode(&entries)?)))
                    .collect::<Result<Vec<_>>>()?;
                out.sort_by_key(|(g, _)| *g);
                Ok(out)
            }
            fn restore(table: &mut dyn Any, name: &str, bytes: &[u8]) -> Result<()> {
                let Some(t) = table.downcast_mut::<Self>() else { return Ok(()) };
                let entries: Vec<(K, $entry)> = decode(&format!("state '{name}'"), bytes)?;
                t.0.extend(entries);
                Ok(())
            }
        }
    };
}
table_impl!(ValueTable<V>, StateKind::Value, V);
table_impl!(ListTable<V>, StateKind::List, Vec<V>);
table_impl!(MapTable<UK, UV>, StateKind::Map, FxHashMap<UK, UV>);

/// A registered state: its table is a `dyn Any` so that an access costs one type check, and
/// `keys` knows the concrete type for introspection.
struct Registered {
    name: String,
    kind: StateKind,
    table: Box<dyn Any + Send>,
    keys: fn(&dyn Any) -> usize,
    snapshot: fn(&dyn Any, usize) -> Result<KeyGroupBytes>,
    restore: fn(&mut dyn Any, &str, &[u8]) -> Result<()>,
}

/// A handle to a value state: one optional `V` per key.
#[derive(Debug)]
pub struct ValueStateHandle<V> {
    index: usize,
    _v: PhantomData<fn() -> V>,
}
/// A handle to a list state: a list of `V` per key.
#[derive(Debug)]
pub struct ListStateHandle<V> {
    index: usize,
    _v: PhantomData<fn() -> V>,
}
/// A handle to a map state: a map `UK -> UV` per key.
#[derive(Debug)]
pub struct MapStateHandle<UK, UV> {
    index: usize,
    _v: PhantomData<fn() -> (UK, UV)>,
}
macro_rules! handle_copy {
    ($t:ident < $($p:ident),* >) => {
        impl<$($p),*> Clone for $t<$($p),*> { fn clone(&self) -> Self { *self } }
        impl<$($p),*> Copy for $t<$($p),*> {}
    };
}
handle_copy!(ValueStateHandle<V>);
handle_copy!(ListStateHandle<V>);
handle_copy!(MapStateHandle<UK, UV>);

/// The keyed state of one subtask of a keyed operator.
pub struct KeyedStateBackend<K> {
    key_groups: KeyGroupRange,
    max_parallelism: usize,
    states: Vec<Registered>,
    /// Restored entries of states not registered yet (decoded when the operator registers them,
    /// the first moment their types are known).
    restored: FxHashMap<String, (StateKind, KeyGroupBytes)>,
    _k: PhantomData<fn() -> K>,
}

impl<K: StateKey> KeyedStateBackend<K> {
    /// A backend for the key groups `key_groups` out of `max_parallelism`.
    pub fn new(key_groups: KeyGroupRange, max_parallelism: usize) -> Self {
        KeyedStateBackend {
            key_groups,
            max_parallelism,
            states: Vec::new(),
            restored: FxHashMap::default(),
            _k: PhantomData,
        }
    }

    /// The key groups this backend owns.
    pub fn key_groups(&self) -> KeyGroupRange {
        self.key_groups
    }

    /// The max parallelism the key groups are computed for.
    pub fn max_parallelism(&self) -> usize {
        self.max_parallelism
    }

    fn register<T: StateTable<K> + Send + 'static>(
        &mut self,
        name: &str,
        make: impl FnOnce() -> T,
    ) -> Result<usize> {
        if let Some(i) = self.states.iter().position(|s| s.name == name) {
            if self.states[i].table.is::<T>() {
                return Ok(i);
            }
            return Err(StateError::StateTypeMismatch {
                name: name.to_string(),
            });
        }
        let mut table: Box<dyn Any + Send> = Box::new(make());
        if let Some((kind, groups)) = self.restored.remove(name) {
            if kind != T::KIND {
                return Err(StateError::StateTypeMismatch {
                    name: name.to_string(),
                });
            }
            for (_, bytes) in &groups {
                T::restore(&mut *table, name, bytes)?;
            }
        }
        self.states.push(Registered {
            name: name.to_string(),
            kind: T::KIND,
            table,
            keys: <T as StateTable<K>>::keys,
            snapshot: <T as StateTable<K>>::snapshot,
            restore: <T as StateTable<K>>::restore,
        });
        Ok(self.states.len() - 1)
    }

    /// A snapshot of every state, grouped by key group (timers are added by the caller).
    ///
    /// # Errors
    ///
    /// Returns [`StateError::Encode`] when a key or value cannot be encoded (its `Serialize`
    /// fails).
    pub fn snapshot(&self) -> Result<KeyedStateSnapshot> {
        let mut states = Vec::new();
        for s in &self.states {
            states.push(NamedStateSnapshot {
                name: s.name.clone(),
                kind: s.kind,
                groups: (s.snapshot)(&*s.table, self.max_parallelism)?,
            });
        }
        // Restored state that no operator registered again is carried over, not dropped.
        for (name, (kind, groups)) in &self.restored {
            states.push(NamedStateSnapshot {
                name: name.clone(),
                kind: *kind,
                groups: groups.clone(),
            });
        }
        Ok(KeyedStateSnapshot {
            max_parallelism: self.max_parallelism,
            key_groups: self.key_groups,
            states,
            timers: Vec::new(),
        })
    }

    /// Restores the key groups of this backend's range from `snapshots` (of any parallelism with
    /// the same max parallelism). Call before states are registered, or after: registered states
    /// receive their entries at once, others when they are registered.
    ///
    /// # Errors
    ///
    /// Returns [`StateError::MaxParallelismChanged`] when a snapshot was written with another max
    /// parallelism, [`StateError::StateTypeMismatch`] when a state of the snapshots has another
    /// kind than the state of that name here, and [`StateError::Decode`] when the entries of a
    /// registered state do not decode into its key and value types. Snapshots before the failing
    /// one stay restored.
    pub fn restore(&mut self, snapshots: &[KeyedStateSnapshot]) -> Result<()> {
        for snap in snapshots {
            if snap.max_parallelism != self.max_parallelism {
                return Err(StateError::MaxParallelismChanged {
                    was: snap.max_parallelism,
                    now: self.max_parallelism,
                });
            }
            for st in &snap.states {
                let mine: Vec<(u32, Vec<u8>)> = st
                    .groups
                    .iter()
                    .filter(|(g, _)| self.key_groups.contains(*g as usize))
                    .cloned()
                    .collect();
                if mine.is_empty() {
                    continue;
                }
                if let Some(r) = self.states.iter_mut().find(|r| r.name == st.name) {
                    if r.kind != st.kind {
                        return Err(StateError::StateTypeMismatch {
                            name: st.name.clone(),
                        });
                    }
                    for (_, bytes) in &mine {
                        (r.restore)(&mut *r.table, &st.name, bytes)?;
                    }
                } else {
                    let entry = self
                        .restored
                        .entry(st.name.clone())
                        .or_insert((st.kind, Vec::new()));
                    if entry.0 != st.kind {
                        return Err(StateError::StateTypeMismatch {
                            name: st.name.clone(),
                        });
                    }
                    entry.1.extend(mine);
                }
            }
        }
        Ok(())
    }

    /// Registers (or looks up) the value state `name`.
    ///
    /// # Errors
    ///
    /// Returns [`StateError::StateTypeMismatch`] when `name` is registered, or was restored, as
    /// another kind or with another value type, and [`StateError::Decode`] when restored entries of
    /// `name` do not decode into its types.
    pub fn register_value<V: StateValue>(&mut self, name: &str) -> Result<ValueStateHandle<V>> {
        let index = self.register(name, || ValueTable::<K, V>(FxHashMap::default()))?;
        Ok(ValueStateHandle {
            index,
            _v: PhantomData,
        })
    }

    /// Registers (or looks up) the list state `name`.
    ///
    /// # Errors
    ///
    /// Returns [`StateError::StateTypeMismatch`] when `name` is registered, or was restored, as
    /// another kind or with another value type, and [`StateError::Decode`] when restored entries of
    /// `name` do not decode into its types.
    pub fn register_list<V: StateValue>(&mut self, name: &str) -> Result<ListStateHandle<V>> {
        let index = self.register(name, || ListTable::<K, V>(FxHashMap::default()))?;
        Ok(ListStateHandle {
            index,
            _v: PhantomData,
        })
    }

    /// Registers (or looks up) the map state `name`.
    ///
    /// # Errors
    ///
    /// Returns [`StateError::StateTypeMismatch`] when `name` is registered, or was restored, as
    /// another kind or with another key or value type, and [`StateError::Decode`] when restored
    /// entries of `name` do not decode into its types.
    pub fn register_map<UK: StateKey, UV: StateValue>(
        &mut self,
        name: &str,
    ) -> Result<MapStateHandle<UK, UV>> {
        let index = self.register(name, || MapTable::<K, UK, UV>(FxHashMap::default()))?;
        Ok(MapStateHandle {
            index,
            _v: PhantomData,
        })
    }

    /// Number of keys that have an entry in any state.
    pub fn keys_with_state(&self) -> usize {
        self.states.iter().map(|s| (s.keys)(&*s.table)).sum()
    }

    #[inline]
    fn table<T: 'static>(&self, index: usize) -> &T {
        let s = &self.states[index];
        match s.table.downcast_ref::<T>() {
            Some(t) => t,
            None => panic!(
                "state handle for '{}' used with a different backend",
                s.name
            ),
        }
    }

    #[inline]
    fn table_mut<T: 'static>(&mut self, index: usize) -> &mut T {
        let s = &mut self.states[index];
        match s.table.downcast_mut::<T>() {
            Some(t) => t,
            None => panic!(
                "state handle for '{}' used with a different backend",
                s.name
            ),
        }
    }

    // ---- value state ----

    /// The value of `key`, if any.
    #[inline]
    pub fn value<V: StateValue>(&self, h: &ValueStateHandle<V>, key: &K) -> Option<&V> {
        self.table::<ValueTable<K, V>>(h.index).0.get(key)
    }

    /// The value of `key`, mutably, if any.
    #[inline]
    pub fn value_mut<V: StateValue>(&mut self, h: &ValueStateHandle<V>, key: &K) -> Option<&mut V> {
        self.table_mut::<ValueTable<K, V>>(h.index).0.get_mut(key)
    }

    /// Sets the value of `key`.
    #[inline]
    pub fn set_value<V: StateValue>(&mut self, h: &ValueStateHandle<V>, key: &K, value: V) {
        let t = &mut self.table_mut::<ValueTable<K, V>>(h.index).0;
        match t.get_mut(key) {
            Some(slot) => *slot = value,
            None => {
                t.insert(key.clone(), value);
            }
        }
    }

    /// Removes the value of `key`, returning it.
    #[inline]
    pub fn clear_value<V: StateValue>(&mut self, h: &ValueStateHandle<V>, key: &K) -> Option<V> {
        self.table_mut::<ValueTable<K, V>>(h.index).0.remove(key)
    }

    // ---- list state ----

    /// The list of `key` (empty when none).
    #[inline]
    pub fn list<V: StateValue>(&self, h: &ListStateHandle<V>, key: &K) -> &[V] {
        self.table::<ListTable<K, V>>(h.index)
            .0
            .get(key)
            .map(|v| v.as_slice())
            .unwrap_or(&[])
    }

    /// Appends to the list of `key`.
    #[inline]
    pub fn list_add<V: StateValue>(&mut self, h: &ListStateHandle<V>, key: &K, value: V) {
        let t = &mut self.table_mut::<ListTable<K, V>>(h.index).0;
        match t.get_mut(key) {
            Some(l) => l.push(value),
            None => {
                t.insert(key.clone(), vec![value]);
            }
        }
    }

    /// Removes the list of `key`, returning it.
    pub fn list_clear<V: StateValue>(&mut self, h: &ListStateHandle<V>, key: &K) -> Vec<V> {
        self.table_mut::<ListTable<K, V>>(h.index)
            .0
            .remove(key)
            .unwrap_or_default()
    }

    // ---- map state ----

    /// The entry `user_key` of `key`'s map.
    #[inline]
    pub fn map_get<UK: StateKey, UV: StateValue>(
        &self,
        h: &MapStateHandle<UK, UV>,
        key: &K,
        user_key: &UK,
    ) -> Option<&UV> {
        self.table::<MapTable<K, UK, UV>>(h.index)
            .0
            .get(key)
            .and_then(|m| m.get(user_key))
    }

    /// Inserts into `key`'s map, returning the previous entry.
    #[inline]
    pub fn map_put<UK: StateKey, UV: StateValue>(
        &mut self,
        h: &MapStateHandle<UK, UV>,
        key: &K,
        user_key: UK,
        value: UV,
    ) -> Option<UV> {
        let t = &mut self.table_mut::<MapTable<K, UK, UV>>(h.index).0;
        match t.get_mut(key) {
            Some(m) => m.insert(user_key, value),
            None => {
                let mut m = FxHashMap::default();
                m.insert(user_key, value);
                t.insert(key.clone(), m);
                None
            }
        }
    }

    /// Removes an entry from `key`'s map (and the map itself once empty).
    pub fn map_remove<UK: StateKey, UV: StateValue>(
        &mut self,
        h: &MapStateHandle<UK, UV>,
        key: &K,
        user_key: &UK,
    ) -> Option<UV> {
        let t = &mut self.table_mut::<MapTable<K, UK, UV>>(h.index).0;
        let m = t.get_mut(key)?;
        let v = m.remove(user_key);
        if m.is_empty() {
            t.remove(key);
        }
        v
    }

    /// All entries of `key`'s map, in no particular order.
    pub fn map_entries<UK: StateKey, UV: StateValue>(
        &self,
        h: &MapStateHandle<UK, UV>,
        key: &K,
    ) -> Vec<(&UK, &UV)> {
        match self.table::<MapTable<K, UK, UV>>(h.index).0.get(key) {
            Some(m) => m.iter().collect(),
            None => Vec::new(),
        }
    }

    /// Removes `key`'s whole map.
    pub fn map_clear<UK: StateKey, UV: StateValue>(&mut self, h: &MapStateHandle<UK, UV>, key: &K) {
        self.table_mut::<MapTable<K, UK, UV>>(h.index).0.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::format::{decode, encode};

    #[test]
    fn states_are_isolated_per_key() {
        let mut b = KeyedStateBackend::<String>::new(KeyGroupRange { start: 0, end: 127 }, 128);
        let v = b.register_value::<u64>("count").unwrap();
        let l = b.register_list::<u32>("items").unwrap();
        let m = b.register_map::<String, i64>("m").unwrap();
        let (a, z) = ("a".to_string(), "z".to_string());
        b.set_value(&v, &a, 1);
        *b.value_mut(&v, &a).unwrap() += 1;
        assert_eq!(b.value(&v, &a), Some(&2));
        assert_eq!(b.value(&v, &z), None);
        b.list_add(&l, &z, 7);
        assert!(b.list(&l, &a).is_empty());
        assert_eq!(b.list(&l, &z), &[7]);
        b.map_put(&m, &a, "x".into(), -1);
        assert_eq!(b.map_get(&m, &a, &"x".into()), Some(&-1));
        assert_eq!(b.map_get(&m, &z, &"x".into()), None);
        assert_eq!(b.map_remove(&m, &a, &"x".into()), Some(-1));
        assert!(b.map_entries(&m, &a).is_empty());
    }

    /// Keyed state and timers written by 2 subtasks are restored into 3 subtasks and into 1:
    /// every key's state and timers land in exactly the subtask that owns its key group.
    #[test]
    fn rescaling_restores_every_key_group_once() {
        use crate::key_group::{assign_to_key_group, operator_index_for_key_group};
        use crate::KeyedTimers;
        const MAX_P: usize = 128;
        let keys: Vec<u64> = (0..500).collect();
        // Write at parallelism 2.
        let mut snaps = Vec::new();
        for i in 0..2 {
            let range = KeyGroupRange::for_operator(MAX_P, 2, i);
            let mut b = KeyedStateBackend::<u64>::new(range, MAX_P);
            let v = b.register_value::<u64>("sum").unwrap();
            let l = b.register_list::<String>("log").unwrap();
            let m = b.register_map::<u32, i64>("m").unwrap();
            let mut t = KeyedTimers::<u64>::default();
            for k in keys
                .iter()
                .filter(|k| range.contains(assign_to_key_group(*k, MAX_P)))
            {
                b.set_value(&v, k, k * 10);
                b.list_add(&l, k, format!("k{k}"));
                b.map_put(&m, k, *k as u32, -(*k as i64));
                t.register_event_time(k, *k as i64 + 1000);
                t.register_processing_time(k, *k as i64 + 2000);
            }
            let mut snap = b.snapshot().unwrap();
            snap.timers = t.snapshot(MAX_P).unwrap();
            // Through bytes, as a checkpoint would store it.
            snaps.push(decode::<KeyedStateSnapshot>("snap", &encode(&snap).unwrap()).unwrap());
        }
        for p in [3usize, 1] {
            let mut seen = 0;
            for i in 0..p {
                let range = KeyGroupRange::for_operator(MAX_P, p, i);
                let mut b = KeyedStateBackend::<u64>::new(range, MAX_P);
                // "sum" is registered before the restore, "log" and "m" after it.
                let v = b.register_value::<u64>("sum").unwrap();
                b.restore(&snaps).unwrap();
                let l = b.register_list::<String>("log").unwrap();
                let m = b.register_map::<u32, i64>("m").unwrap();
                let mut t = KeyedTimers::<u64>::default();
                for s in &snaps {
                    t.restore(&s.timers, range).unwrap();
                }
                for k in &keys {
                    let owner =
                        operator_index_for_key_group(MAX_P, p, assign_to_key_group(k, MAX_P));
                    if owner == i {
                        seen += 1;
                        assert_eq!(b.value(&v, k), Some(&(k * 10)));
                        assert_eq!(b.list(&l, k), &[format!("k{k}")]);
                        assert_eq!(b.map_get(&m, k, &(*k as u32)), Some(&-(*k as i64)));
                    } else {
                        assert_eq!(
                            b.value(&v, k),
                            None,
                            "key {k} restored into subtask {i} of {p}"
                        );
                    }
                }
                let mut fired = 0;
                while let Some((k, ts)) = t.pop_event_time(i64::MAX) {
                    assert_eq!(ts, k as i64 + 1000);
                    fired += 1;
                }
                assert_eq!(
                    fired,
                    b.keys_with_state() / 3,
                    "one event timer per owned key"
                );
            }
            assert_eq!(seen, keys.len(), "parallelism {p}");
        }
        // A different max parallelism cannot be restored.
        let mut b = KeyedStateBackend::<u64>::new(KeyGroupRange::for_operator(64, 1, 0), 64);
        assert!(matches!(
            b.restore(&snaps),
            Err(StateError::MaxParallelismChanged { was: 128, now: 64 })
        ));
    }

    #[test]
    fn re_registering_with_another_type_fails() {
        let mut b = KeyedStateBackend::<u64>::new(KeyGroupRange { start: 0, end: 0 }, 1);
        let h1 = b.register_value::<u64>("x").unwrap();
        let h2 = b.register_value::<u64>("x").unwrap();
        assert_eq!(h1.index, h2.index);
        assert!(matches!(
            b.register_value::<String>("x"),
            Err(StateError::StateTypeMismatch { .. })
        ));
        assert!(b.register_list::<u64>("x").is_err());
    }
}
