//! Keyed state: value, list and map state are isolated per key.

use std::collections::HashMap;

use weir::prelude::*;
use weir::state::{ListStateHandle, MapStateHandle, ValueStateHandle};

#[derive(Clone, Default)]
struct Stats {
    count: Option<ValueStateHandle<u64>>,
    values: Option<ListStateHandle<u64>>,
    distinct: Option<MapStateHandle<u64, u64>>,
}

/// Emits (key, count so far, list length, distinct values, sum of the list).
impl KeyedProcessFunction<String, (String, u64), (String, u64, usize, usize, u64)> for Stats {
    fn open(&mut self, ctx: &mut KeyedOpenContext<'_, String>) -> Result<(), UserError> {
        self.count = Some(ctx.value_state("count")?);
        self.values = Some(ctx.list_state("values")?);
        self.distinct = Some(ctx.map_state("distinct")?);
        Ok(())
    }
    fn process_element(
        &mut self,
        (key, v): (String, u64),
        ctx: &mut KeyedContext<'_, String, (String, u64, usize, usize, u64)>,
    ) -> Result<(), UserError> {
        assert_eq!(ctx.current_key(), &key);
        let (c, l, m) = (
            self.count.unwrap(),
            self.values.unwrap(),
            self.distinct.unwrap(),
        );
        let count = ctx.value(&c).copied().unwrap_or(0) + 1;
        ctx.set_value(&c, count);
        ctx.list_add(&l, v);
        let seen = ctx.map_get(&m, &v).copied().unwrap_or(0);
        ctx.map_put(&m, v, seen + 1);
        let len = ctx.list(&l).len();
        let sum = ctx.list(&l).iter().sum();
        let distinct = ctx.map_entries(&m).len();
        ctx.emit((key, count, len, distinct, sum));
        Ok(())
    }
}

#[test]
fn keyed_state_is_isolated_between_keys() {
    let env = StreamEnv::new();
    let input: Vec<(String, u64)> = (0..3_000u64)
        .map(|i| (format!("key-{}", i % 37), i % 11))
        .collect();
    let out = env
        .from_iter(input.clone())
        .key_by(|r| r.0.clone())
        .process(Stats::default())
        .set_parallelism(3)
        .collect();
    env.execute().unwrap();
    // Replay sequentially: per key, the n-th output must reflect exactly that key's first n records.
    let mut expect: HashMap<String, Vec<(u64, usize, usize, u64)>> = HashMap::new();
    let mut lists: HashMap<String, Vec<u64>> = HashMap::new();
    for (k, v) in &input {
        let l = lists.entry(k.clone()).or_default();
        l.push(*v);
        let mut d = l.clone();
        d.sort();
        d.dedup();
        expect.entry(k.clone()).or_default().push((
            l.len() as u64,
            l.len(),
            d.len(),
            l.iter().sum(),
        ));
    }
    let mut got: HashMap<String, Vec<(u64, usize, usize, u64)>> = HashMap::new();
    for (k, c, l, d, s) in out.take() {
        got.entry(k).or_default().push((c, l, d, s));
    }
    assert_eq!(got, expect);
}

#[test]
fn reduce_keeps_a_running_value_per_key() {
    let env = StreamEnv::new();
    env.set_parallelism(2);
    let out = env
        .generate_sequence(0..10_000)
        .map(|x| (x % 10, x))
        .key_by(|r| r.0)
        .reduce(|a, b| (a.0, a.1 + b.1))
        .collect();
    env.execute().unwrap();
    let mut per_key: HashMap<u64, Vec<u64>> = HashMap::new();
    for (k, running) in out.take() {
        per_key.entry(k).or_default().push(running);
    }
    assert_eq!(per_key.len(), 10);
    for (k, sums) in per_key {
        assert_eq!(sums.len(), 1_000, "one output per input of key {k}");
        assert!(
            sums.windows(2).all(|w| w[0] < w[1]) || k == 0,
            "running sums grow"
        );
        let want: u64 = (0..10_000u64).filter(|x| x % 10 == k).sum();
        assert_eq!(*sums.last().unwrap(), want, "key {k}");
    }
}
