//! Partitioners and per-channel order.

use std::collections::{HashMap, HashSet};

use weir::prelude::*;
use weir::state::key_group::{assign_to_key_group, operator_index_for_key_group};

use crate::common::Tag;

#[test]
fn a_key_always_reaches_the_same_subtask() {
    let env = StreamEnv::new();
    env.set_parallelism(2);
    let out = env
        .generate_sequence(0..20_000)
        .map(|x| x % 97)
        .key_by(|k| *k)
        .as_stream()
        .transform("Tag", |_| Tag::new())
        .set_parallelism(3)
        .collect();
    env.execute().unwrap();
    let out = out.take();
    assert_eq!(out.len(), 20_000);
    let mut owner: HashMap<u64, usize> = HashMap::new();
    for (subtask, key) in out {
        let prev = owner.insert(key, subtask);
        assert!(
            prev.is_none_or(|p| p == subtask),
            "key {key} reached subtasks {prev:?} and {subtask}"
        );
        // And it is the subtask Flink's key-group assignment names.
        let kg = assign_to_key_group(&key, 128);
        assert_eq!(operator_index_for_key_group(128, 3, kg), subtask);
    }
    assert_eq!(owner.len(), 97);
    let used: HashSet<usize> = owner.values().copied().collect();
    assert_eq!(used.len(), 3, "97 keys spread over all 3 subtasks");
}

#[test]
fn rebalance_spreads_evenly() {
    let env = StreamEnv::new();
    let out = env
        .from_iter(0..9_000u64)
        .rebalance()
        .transform("Tag", |_| Tag::new())
        .set_parallelism(3)
        .collect();
    env.execute().unwrap();
    let mut counts = [0usize; 3];
    for (s, _) in out.take() {
        counts[s] += 1;
    }
    assert_eq!(counts, [3_000, 3_000, 3_000]);
}

#[test]
fn default_edge_between_different_parallelism_rebalances() {
    let env = StreamEnv::new();
    let out = env
        .from_iter(0..1_000u64)
        .transform("Tag", |_| Tag::new())
        .set_parallelism(4)
        .collect();
    env.execute().unwrap();
    let mut counts = [0usize; 4];
    for (s, _) in out.take() {
        counts[s] += 1;
    }
    assert_eq!(counts, [250; 4]);
}

#[test]
fn broadcast_reaches_every_subtask() {
    let env = StreamEnv::new();
    let out = env
        .from_iter(0..100u64)
        .broadcast()
        .transform("Tag", |_| Tag::new())
        .set_parallelism(4)
        .collect();
    env.execute().unwrap();
    let mut per: HashMap<usize, Vec<u64>> = HashMap::new();
    for (s, x) in out.take() {
        per.entry(s).or_default().push(x);
    }
    assert_eq!(per.len(), 4);
    for (s, xs) in per {
        assert_eq!(xs, (0..100).collect::<Vec<_>>(), "subtask {s}");
    }
}

#[test]
fn forward_keeps_subtask_index() {
    let env = StreamEnv::new();
    env.set_parallelism(3);
    let out = env
        .generate_sequence(0..300)
        .transform("Tag", |_| Tag::new())
        .forward()
        .transform("Tag again", |_| Tag::new())
        .disable_chaining()
        .collect();
    env.execute().unwrap();
    let out = out.take();
    assert_eq!(out.len(), 300);
    for (second, (first, x)) in out {
        assert_eq!(first, second);
        assert_eq!(
            x % 3,
            first as u64,
            "the sequence source strides by subtask"
        );
    }
}

/// Every channel delivers in send order, across many small buffers and buffer timeouts.
#[test]
fn per_channel_order_is_preserved() {
    let env = StreamEnv::new();
    env.configure(|c| {
        c.max_records_per_buffer = 7;
        c.buffer_timeout = std::time::Duration::from_millis(1);
    });
    env.set_parallelism(2);
    let out = env
        .generate_sequence(0..50_000)
        .key_by(|x| x % 10)
        .as_stream()
        .transform("Tag", |_| Tag::new())
        .set_parallelism(3)
        .collect();
    env.execute().unwrap();
    // The collect sink runs at the default parallelism (2), behind a rebalance edge: each collect
    // subtask sees, per (source subtask, tag subtask) pair, records in the order they were sent.
    let mut total = 0;
    for (collector, records) in out.take_by_subtask().into_iter().enumerate() {
        total += records.len();
        for receiver in 0..3usize {
            for sender in 0..2u64 {
                let seq: Vec<u64> = records
                    .iter()
                    .filter(|(r, x)| *r == receiver && x % 2 == sender)
                    .map(|(_, x)| *x)
                    .collect();
                assert!(
                    seq.windows(2).all(|w| w[0] < w[1]),
                    "path source {sender} -> tag {receiver} -> collect {collector} reordered"
                );
            }
        }
    }
    assert_eq!(total, 50_000);
}

#[test]
fn union_merges_streams() {
    let env = StreamEnv::new();
    let a = env.from_iter(0..10u64);
    let b = env.from_iter(100..110u64);
    let c = env.generate_sequence(1000..1010);
    let out = a.union(&[b, c]).map(|x| x + 1).collect();
    env.execute().unwrap();
    let mut got = out.take();
    got.sort();
    let mut want: Vec<u64> = (1..11).chain(101..111).chain(1001..1011).collect();
    want.sort();
    assert_eq!(got, want);
}
