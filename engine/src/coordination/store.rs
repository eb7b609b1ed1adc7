//! The coordinator store: a concurrent map shared by all coordinators of a job.
//!
//! Coordinators of different operators agree through it (a committer telling a planner that a
//! run finished, a watermark aligner collecting per-source watermarks). Every operation on one
//! store is atomic with respect to every other: `compute` runs its function under the store's
//! lock, so two coordinators computing on the same key never lose an update. Values are typed:
//! reading a key with another type than it was written with is an error naming both types.
//! The store lives as long as the job (across restarts) and is not part of checkpoints.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::UserError;

type Value = Arc<dyn Any + Send + Sync>;

/// A concurrent, typed map shared by all coordinators of a job.
#[derive(Clone, Default)]
pub struct CoordinatorStore {
    map: Arc<Mutex<HashMap<String, (Value, &'static str)>>>,
}

fn typed<V: Clone + 'static>(key: &str, v: &(Value, &'static str)) -> Result<V, UserError> {
    v.0.downcast_ref::<V>().cloned().ok_or_else(|| {
        format!(
            "coordinator store key '{key}' holds a {}, not a {}",
            v.1,
            std::any::type_name::<V>()
        )
        .into()
    })
}

impl CoordinatorStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `key`.
    ///
    /// # Errors
    ///
    /// Returns an error naming both types, as a [`UserError`], when `key` holds a value of another
    /// type than `V`.
    pub fn get<V: Clone + Send + Sync + 'static>(&self, key: &str) -> Result<Option<V>, UserError> {
        self.map.lock().get(key).map(|v| typed(key, v)).transpose()
    }

    /// Sets `key` to `value` unless it is set; returns the value `key` has afterwards (the
    /// existing one if there was one).
    ///
    /// # Errors
    ///
    /// Returns an error naming both types, as a [`UserError`], when `key` holds a value of another
    /// type than `V`; the store is left unchanged.
    pub fn put_if_absent<V: Clone + Send + Sync + 'static>(
        &self,
        key: &str,
        value: V,
    ) -> Result<V, UserError> {
        let mut map = self.map.lock();
        if let Some(v) = map.get(key) {
            return typed(key, v);
        }
        map.insert(
            key.to_string(),
            (Arc::new(value.clone()), std::any::type_name::<V>()),
        );
        Ok(value)
    }

    /// Replaces the value of `key` by `f(current)` atomically (`None` removes it); returns the
    /// new value.
    ///
    /// # Errors
    ///
    /// Returns an error naming both types, as a [`UserError`], when `key` holds a value of another
    /// type than `V`; `f` is not called and the store is left unchanged.
    pub fn compute<V: Clone + Send + Sync + 'static>(
        &self,
        key: &str,
        f: impl FnOnce(Option<V>) -> Option<V>,
    ) -> Result<Option<V>, UserError> {
        let mut map = self.map.lock();
        let current = map.get(key).map(|v| typed::<V>(key, v)).transpose()?;
        let next = f(current);
        match &next {
            Some(v) => {
                map.insert(
                    key.to_string(),
                    (Arc::new(v.clone()), std::any::type_name::<V>()),
                );
            }
            None => {
                map.remove(key);
            }
        }
        Ok(next)
    }

    /// Removes `key`; returns whether it was set.
    pub fn remove(&self, key: &str) -> bool {
        self.map.lock().remove(key).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_access() {
        let s = CoordinatorStore::new();
        assert_eq!(s.get::<u64>("k").unwrap(), None);
        assert_eq!(s.put_if_absent("k", 5u64).unwrap(), 5);
        assert_eq!(s.put_if_absent("k", 7u64).unwrap(), 5);
        let e = s.get::<String>("k").unwrap_err().to_string();
        assert!(e.contains("holds a u64"), "{e}");
        assert_eq!(
            s.compute::<u64>("k", |v| v.map(|v| v + 1)).unwrap(),
            Some(6)
        );
        assert_eq!(s.compute::<u64>("k", |_| None).unwrap(), None);
        assert!(!s.remove("k"));
    }

    #[test]
    fn concurrent_computes_lose_no_update() {
        let s = CoordinatorStore::new();
        let winners = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for t in 0..8u64 {
                let (s, winners) = (&s, &winners);
                scope.spawn(move || {
                    if s.put_if_absent("owner", t).unwrap() == t {
                        winners.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    for _ in 0..10_000 {
                        s.compute::<u64>("count", |v| Some(v.unwrap_or(0) + 1))
                            .unwrap();
                    }
                });
            }
        });
        assert_eq!(s.get::<u64>("count").unwrap(), Some(80_000));
        assert_eq!(winners.into_inner(), 1);
    }
}
