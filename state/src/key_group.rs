//! Key groups: the unit in which keyed state is partitioned, snapshotted and rescaled.
//!
//! A key is hashed with [`key_hash`] (a fixed, documented algorithm: it must give the same value
//! in every process and every build, or state restored from a checkpoint would land on the wrong
//! subtask), the hash is scrambled with murmur3's finaliser, and taken modulo the max
//! parallelism to give the key group. Key-group ranges are assigned to subtasks with Flink's
//! formulas (`KeyGroupRangeAssignment`), so the mapping is contiguous and balanced:
//! `operator_index_for_key_group(g) = g * parallelism / max_parallelism`.

use std::hash::{Hash, Hasher};

/// Flink's default max parallelism for jobs whose parallelism is small (`pipeline.max-parallelism`).
pub const DEFAULT_MAX_PARALLELISM: usize = 128;
/// The largest max parallelism (2^15), as in Flink.
pub const UPPER_BOUND_MAX_PARALLELISM: usize = 1 << 15;

/// A stable 64-bit hasher for keys (FxHash-style word mixing, murmur3 finaliser).
///
/// Unlike `std`'s `DefaultHasher`, its algorithm is part of weir's persisted format and will not
/// change between releases.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl KeyHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for KeyHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 56));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

/// murmur3's 64-bit finaliser: spreads every input bit over the whole word.
#[inline]
pub fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// The stable hash of a key.
#[inline]
pub fn key_hash<K: Hash + ?Sized>(key: &K) -> u64 {
    let mut h = KeyHasher::default();
    key.hash(&mut h);
    fmix64(h.finish())
}

/// The key group of a key for a given max parallelism.
#[inline]
pub fn assign_to_key_group<K: Hash + ?Sized>(key: &K, max_parallelism: usize) -> usize {
    key_group_for_hash(key_hash(key), max_parallelism)
}

/// The key group of a key hash (already scrambled by [`key_hash`]).
#[inline]
pub fn key_group_for_hash(hash: u64, max_parallelism: usize) -> usize {
    (hash % max_parallelism as u64) as usize
}

/// The subtask that owns key group `key_group` (Flink's `computeOperatorIndexForKeyGroup`).
#[inline]
pub fn operator_index_for_key_group(
    max_parallelism: usize,
    parallelism: usize,
    key_group: usize,
) -> usize {
    key_group * parallelism / max_parallelism
}

/// An inclusive range of key groups `[start, end]`; empty when `end < start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct KeyGroupRange {
    /// First key group in the range.
    pub start: usize,
    /// Last key group in the range (inclusive).
    pub end: usize,
}

impl KeyGroupRange {
    /// The key groups owned by `operator_index` (Flink's `computeKeyGroupRangeForOperatorIndex`).
    pub fn for_operator(max_parallelism: usize, parallelism: usize, operator_index: usize) -> Self {
        let start = (operator_index * max_parallelism).div_ceil(parallelism);
        let end = ((operator_index + 1) * max_parallelism - 1) / parallelism;
        KeyGroupRange { start, end }
    }

    /// Whether `key_group` lies in the range.
    pub fn contains(&self, key_group: usize) -> bool {
        key_group >= self.start && key_group <= self.end
    }

    /// Number of key groups in the range.
    pub fn len(&self) -> usize {
        if self.end < self.start {
            0
        } else {
            self.end - self.start + 1
        }
    }

    /// Whether the range holds no key group.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Checks a max parallelism against Flink's bounds (`1..=32768`).
///
/// # Errors
///
/// Returns [`StateError::MaxParallelismOutOfRange`](crate::StateError::MaxParallelismOutOfRange)
/// when `max_parallelism` is 0 or above [`UPPER_BOUND_MAX_PARALLELISM`].
pub fn check_max_parallelism(max_parallelism: usize) -> crate::Result<()> {
    if max_parallelism == 0 || max_parallelism > UPPER_BOUND_MAX_PARALLELISM {
        return Err(crate::StateError::MaxParallelismOutOfRange(max_parallelism));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hash_is_stable_across_builds() {
        // These values are part of the persisted format: a change here breaks restores.
        assert_eq!(key_hash(&0u64), fmix64(0));
        assert_eq!(key_hash(&1u64), fmix64(SEED));
        assert_eq!(
            assign_to_key_group("weir", 128),
            assign_to_key_group("weir", 128)
        );
    }

    #[test]
    fn ranges_match_flink() {
        // Flink: maxParallelism 128, parallelism 3 -> [0,42], [43,85], [86,127]
        assert_eq!(
            KeyGroupRange::for_operator(128, 3, 0),
            KeyGroupRange { start: 0, end: 42 }
        );
        assert_eq!(
            KeyGroupRange::for_operator(128, 3, 1),
            KeyGroupRange { start: 43, end: 85 }
        );
        assert_eq!(
            KeyGroupRange::for_operator(128, 3, 2),
            KeyGroupRange {
                start: 86,
                end: 127
            }
        );
    }

    proptest! {
        #[test]
        fn ranges_partition_key_groups(max_p in 1usize..600, p_frac in 0.0f64..1.0) {
            let p = ((max_p as f64 * p_frac) as usize).max(1);
            let mut next = 0;
            for i in 0..p {
                let r = KeyGroupRange::for_operator(max_p, p, i);
                prop_assert_eq!(r.start, next);
                for g in r.start..=r.end {
                    prop_assert_eq!(operator_index_for_key_group(max_p, p, g), i);
                }
                next = r.end + 1;
            }
            prop_assert_eq!(next, max_p);
        }
    }
}
