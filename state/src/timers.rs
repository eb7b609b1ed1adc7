//! Keyed timers: per (key, timestamp) deduplicated, in two time domains.
//!
//! Event-time timers fire when the watermark reaches their timestamp; processing-time timers when
//! the wall clock does (both in milliseconds since the Unix epoch, as in Flink). Registering the
//! same (key, time) twice yields one firing; a deleted timer never fires. Timers fire in
//! timestamp order; timers registered while firing that are already due fire in the same round.

use std::collections::BTreeMap;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::checkpoint::format::{decode, encode};
use crate::key_group::assign_to_key_group;
use crate::keyed::StateKey;
use crate::{KeyGroupRange, Result};

#[derive(Debug)]
struct Queue<K: StateKey> {
    by_time: BTreeMap<i64, Vec<K>>,
    live: FxHashSet<(K, i64)>,
}

impl<K: StateKey> Default for Queue<K> {
    fn default() -> Self {
        Queue {
            by_time: BTreeMap::new(),
            live: FxHashSet::default(),
        }
    }
}

impl<K: StateKey> Queue<K> {
    fn register(&mut self, key: &K, ts: i64) {
        if self.live.insert((key.clone(), ts)) {
            self.by_time.entry(ts).or_default().push(key.clone());
        }
    }
    fn delete(&mut self, key: &K, ts: i64) {
        // Lazily removed from `by_time`: skipped at firing time when not live.
        self.live.remove(&(key.clone(), ts));
    }
    fn pop_due(&mut self, upto: i64) -> Option<(K, i64)> {
        loop {
            let mut entry = self.by_time.first_entry()?;
            let ts = *entry.key();
            if ts > upto {
                return None;
            }
            let keys = entry.get_mut();
            match keys.pop() {
                Some(k) => {
                    if keys.is_empty() {
                        entry.remove();
                    }
                    if self.live.remove(&(k.clone(), ts)) {
                        return Some((k, ts));
                    }
                }
                None => {
                    entry.remove();
                }
            }
        }
    }
    fn next(&mut self) -> Option<i64> {
        loop {
            let (&ts, keys) = self.by_time.iter().next()?;
            if keys.iter().any(|k| self.live.contains(&(k.clone(), ts))) {
                return Some(ts);
            }
            self.by_time.remove(&ts);
        }
    }
}

/// The timers of one keyed operator subtask.
#[derive(Debug)]
pub struct KeyedTimers<K: StateKey> {
    event: Queue<K>,
    processing: Queue<K>,
}

impl<K: StateKey> Default for KeyedTimers<K> {
    fn default() -> Self {
        KeyedTimers {
            event: Queue::default(),
            processing: Queue::default(),
        }
    }
}

impl<K: StateKey> KeyedTimers<K> {
    /// Registers an event-time timer for `key` at `ts`.
    pub fn register_event_time(&mut self, key: &K, ts: i64) {
        self.event.register(key, ts)
    }
    /// Deletes an event-time timer.
    pub fn delete_event_time(&mut self, key: &K, ts: i64) {
        self.event.delete(key, ts)
    }
    /// Registers a processing-time timer for `key` at `ts` (ms since the epoch).
    pub fn register_processing_time(&mut self, key: &K, ts: i64) {
        self.processing.register(key, ts)
    }
    /// Deletes a processing-time timer.
    pub fn delete_processing_time(&mut self, key: &K, ts: i64) {
        self.processing.delete(key, ts)
    }
    /// Pops the earliest event-time timer with time `<= watermark`.
    pub fn pop_event_time(&mut self, watermark: i64) -> Option<(K, i64)> {
        self.event.pop_due(watermark)
    }
    /// Pops the earliest processing-time timer with time `<= now`.
    pub fn pop_processing_time(&mut self, now: i64) -> Option<(K, i64)> {
        self.processing.pop_due(now)
    }
    /// The earliest live processing-time timer.
    pub fn next_processing_time(&mut self) -> Option<i64> {
        self.processing.next()
    }
    /// Number of live timers in both domains.
    pub fn len(&self) -> usize {
        self.event.live.len() + self.processing.live.len()
    }
    /// Whether no timer is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Live timers grouped by key group: `(key group, encoded (event, processing) timers)`.
    ///
    /// # Errors
    ///
    /// Returns [`StateError::Encode`](crate::StateError::Encode) when a key cannot be encoded (its
    /// `Serialize` fails).
    pub fn snapshot(&self, max_parallelism: usize) -> Result<crate::keyed::KeyGroupBytes> {
        type Group<'a, K> = (Vec<(&'a K, i64)>, Vec<(&'a K, i64)>);
        let mut groups: FxHashMap<u32, Group<'_, K>> = FxHashMap::default();
        for (k, ts) in &self.event.live {
            groups
                .entry(assign_to_key_group(k, max_parallelism) as u32)
                .or_default()
                .0
                .push((k, *ts));
        }
        for (k, ts) in &self.processing.live {
            groups
                .entry(assign_to_key_group(k, max_parallelism) as u32)
                .or_default()
                .1
                .push((k, *ts));
        }
        let mut out = groups
            .into_iter()
            .map(|(g, t)| Ok((g, encode(&t)?)))
            .collect::<Result<Vec<_>>>()?;
        out.sort_by_key(|(g, _)| *g);
        Ok(out)
    }

    /// Registers the timers of the key groups in `range` from snapshot groups.
    ///
    /// # Errors
    ///
    /// Returns [`StateError::Decode`](crate::StateError::Decode) when the timers of a key group in
    /// `range` do not decode into keys of type `K`. Key groups before the failing one stay
    /// restored.
    pub fn restore(&mut self, groups: &[(u32, Vec<u8>)], range: KeyGroupRange) -> Result<()> {
        for (g, bytes) in groups {
            if !range.contains(*g as usize) {
                continue;
            }
            type Timers<K> = Vec<(K, i64)>;
            let (event, processing): (Timers<K>, Timers<K>) = decode("timers", bytes)?;
            for (k, ts) in event {
                self.register_event_time(&k, ts);
            }
            for (k, ts) in processing {
                self.register_processing_time(&k, ts);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_delete_and_order() {
        let mut t = KeyedTimers::<u32>::default();
        t.register_event_time(&1, 10);
        t.register_event_time(&1, 10);
        t.register_event_time(&2, 5);
        t.register_event_time(&3, 20);
        t.delete_event_time(&3, 20);
        assert_eq!(t.pop_event_time(15), Some((2, 5)));
        assert_eq!(t.pop_event_time(15), Some((1, 10)));
        assert_eq!(t.pop_event_time(15), None);
        assert_eq!(t.pop_event_time(i64::MAX), None);
        t.register_processing_time(&9, 100);
        assert_eq!(t.next_processing_time(), Some(100));
        assert!(t.pop_processing_time(99).is_none());
        assert_eq!(t.pop_processing_time(100), Some((9, 100)));
        assert!(t.is_empty());
    }
}
