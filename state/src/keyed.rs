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

use crate::{KeyGroupRange, Result, StateError};

/// Bounds every key type satisfies.
pub trait StateKey: Hash + Eq + Clone + Send + 'static {}
impl<T: Hash + Eq + Clone + Send + 'static> StateKey for T {}

trait StateTable<K> {
    fn keys(table: &dyn Any) -> usize;
}

struct ValueTable<K, V>(FxHashMap<K, V>);
struct ListTable<K, V>(FxHashMap<K, Vec<V>>);
struct MapTable<K, UK, UV>(FxHashMap<K, FxHashMap<UK, UV>>);

macro_rules! table_impl {
    ($t:ident < $($p:ident),* >) => {
        impl<K: StateKey, $($p: Send + 'static),*> StateTable<K> for $t<K, $($p),*> {
            fn keys(table: &dyn Any) -> usize {
                table.downcast_ref::<Self>().map_or(0, |t| t.0.len())
            }
        }
    };
}
table_impl!(ValueTable<V>);
table_impl!(ListTable<V>);
table_impl!(MapTable<UK, UV>);

/// A registered state: its table is a `dyn Any` so that an access costs one type check, and
/// `keys` knows the concrete type for introspection.
struct Registered {
    name: String,
    table: Box<dyn Any + Send>,
    keys: fn(&dyn Any) -> usize,
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
    _k: PhantomData<fn() -> K>,
}

impl<K: StateKey> KeyedStateBackend<K> {
    /// A backend for the key groups `key_groups` out of `max_parallelism`.
    pub fn new(key_groups: KeyGroupRange, max_parallelism: usize) -> Self {
        KeyedStateBackend {
            key_groups,
            max_parallelism,
            states: Vec::new(),
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
        self.states.push(Registered {
            name: name.to_string(),
            table: Box::new(make()),
            keys: <T as StateTable<K>>::keys,
        });
        Ok(self.states.len() - 1)
    }

    /// Registers (or looks up) the value state `name`.
    pub fn register_value<V: Send + 'static>(&mut self, name: &str) -> Result<ValueStateHandle<V>> {
        let index = self.register(name, || ValueTable::<K, V>(FxHashMap::default()))?;
        Ok(ValueStateHandle {
            index,
            _v: PhantomData,
        })
    }

    /// Registers (or looks up) the list state `name`.
    pub fn register_list<V: Send + 'static>(&mut self, name: &str) -> Result<ListStateHandle<V>> {
        let index = self.register(name, || ListTable::<K, V>(FxHashMap::default()))?;
        Ok(ListStateHandle {
            index,
            _v: PhantomData,
        })
    }

    /// Registers (or looks up) the map state `name`.
    pub fn register_map<UK: Hash + Eq + Send + 'static, UV: Send + 'static>(
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
    pub fn value<V: Send + 'static>(&self, h: &ValueStateHandle<V>, key: &K) -> Option<&V> {
        self.table::<ValueTable<K, V>>(h.index).0.get(key)
    }

    /// The value of `key`, mutably, if any.
    #[inline]
    pub fn value_mut<V: Send + 'static>(
        &mut self,
        h: &ValueStateHandle<V>,
        key: &K,
    ) -> Option<&mut V> {
        self.table_mut::<ValueTable<K, V>>(h.index).0.get_mut(key)
    }

    /// Sets the value of `key`.
    pub fn set_value<V: Send + 'static>(&mut self, h: &ValueStateHandle<V>, key: &K, value: V) {
        let t = &mut self.table_mut::<ValueTable<K, V>>(h.index).0;
        match t.get_mut(key) {
            Some(slot) => *slot = value,
            None => {
                t.insert(key.clone(), value);
            }
        }
    }

    /// Removes the value of `key`, returning it.
    pub fn clear_value<V: Send + 'static>(
        &mut self,
        h: &ValueStateHandle<V>,
        key: &K,
    ) -> Option<V> {
        self.table_mut::<ValueTable<K, V>>(h.index).0.remove(key)
    }

    // ---- list state ----

    /// The list of `key` (empty when none).
    pub fn list<V: Send + 'static>(&self, h: &ListStateHandle<V>, key: &K) -> &[V] {
        self.table::<ListTable<K, V>>(h.index)
            .0
            .get(key)
            .map(|v| v.as_slice())
            .unwrap_or(&[])
    }

    /// Appends to the list of `key`.
    pub fn list_add<V: Send + 'static>(&mut self, h: &ListStateHandle<V>, key: &K, value: V) {
        let t = &mut self.table_mut::<ListTable<K, V>>(h.index).0;
        match t.get_mut(key) {
            Some(l) => l.push(value),
            None => {
                t.insert(key.clone(), vec![value]);
            }
        }
    }

    /// Removes the list of `key`, returning it.
    pub fn list_clear<V: Send + 'static>(&mut self, h: &ListStateHandle<V>, key: &K) -> Vec<V> {
        self.table_mut::<ListTable<K, V>>(h.index)
            .0
            .remove(key)
            .unwrap_or_default()
    }

    // ---- map state ----

    /// The entry `user_key` of `key`'s map.
    pub fn map_get<UK: Hash + Eq + Send + 'static, UV: Send + 'static>(
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
    pub fn map_put<UK: Hash + Eq + Send + 'static, UV: Send + 'static>(
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
    pub fn map_remove<UK: Hash + Eq + Send + 'static, UV: Send + 'static>(
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
    pub fn map_entries<UK: Hash + Eq + Send + 'static, UV: Send + 'static>(
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
    pub fn map_clear<UK: Hash + Eq + Send + 'static, UV: Send + 'static>(
        &mut self,
        h: &MapStateHandle<UK, UV>,
        key: &K,
    ) {
        self.table_mut::<MapTable<K, UK, UV>>(h.index).0.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
