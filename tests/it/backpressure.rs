//! Backpressure: a slow sink throttles a fast source, queues stay within the configured buffers,
//! and a task keeps serving its mailbox while it has no credit or no input.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir::prelude::*;

use crate::common::{join_within, ScriptSource, SlowSink, Step, Ticker};

#[test]
fn a_slow_sink_throttles_a_fast_source_within_the_configured_buffers() {
    const RECORDS_PER_BUFFER: usize = 64;
    let env = StreamEnv::new();
    env.configure(|c| {
        c.max_records_per_buffer = RECORDS_PER_BUFFER;
        c.buffers_per_channel = 2;
        c.floating_buffers_per_gate = 8;
    });
    let consumed = Arc::new(AtomicU64::new(0));
    let ticks = Arc::new(AtomicU64::new(0));
    let (c, t) = (consumed.clone(), ticks.clone());
    env.generate(Generator::new(|i| i))
        .transform("Ticker", move |_| Ticker {
            interval: Duration::from_millis(20),
            fired: t.clone(),
            _t: Default::default(),
        })
        .sink("Slow Sink", move |_| SlowSink {
            cost: Duration::from_millis(1),
            consumed: c.clone(),
        })
        .disable_chaining();
    let handle = env.start().unwrap();

    // What the configured buffers can hold between the two tasks: the gate's credit
    // (1 channel x 2 exclusive + 8 floating), the sink's buffer in hand, and the source's
    // pending buffer and partial buffer.
    let bound = ((2 + 8) + 1 + 1 + 1) * RECORDS_PER_BUFFER as u64;
    let source = |h: &JobHandle| {
        h.metrics()
            .tasks_named("Generator")
            .next()
            .cloned()
            .expect("source task")
    };
    let sink = |h: &JobHandle| {
        h.metrics()
            .tasks_named("Slow Sink")
            .next()
            .cloned()
            .expect("sink task")
    };

    std::thread::sleep(Duration::from_secs(1));
    let src_start = source(&handle);
    let ticks_start = ticks.load(Ordering::Relaxed);
    let start = Instant::now();
    let mut max_queued = 0u64;
    let mut max_gate = 0usize;
    while start.elapsed() < Duration::from_secs(10) {
        // Read the source first: its published count is never ahead of what it emitted.
        let emitted = source(&handle).records_out;
        let done = consumed.load(Ordering::Relaxed);
        max_queued = max_queued.max(emitted.saturating_sub(done));
        let gate = sink(&handle);
        max_gate = max_gate.max(gate.input_queued_records);
        assert!(gate.input_queued_buffers <= gate.input_capacity_buffers);
        std::thread::sleep(Duration::from_millis(25));
    }
    let window = source(&handle).since(&src_start);
    let ticks_during = ticks.load(Ordering::Relaxed) - ticks_start;
    handle.cancel();
    join_within(handle, Duration::from_secs(10)).unwrap();

    assert!(
        max_queued <= bound,
        "queued {max_queued} records, buffers hold {bound}"
    );
    assert!(
        max_gate <= 10 * RECORDS_PER_BUFFER,
        "gate held {max_gate} records"
    );
    let bp = window.backpressured_ms_per_sec();
    assert!(
        bp > 900.0,
        "source backpressured {bp:.0} ms/s, expected > 900"
    );
    let sunk = consumed.load(Ordering::Relaxed);
    assert!(sunk > 3_000, "the sink made progress ({sunk} records)");
    // The backpressured source task still served its timers (every 20 ms over 10 s).
    assert!(
        ticks_during >= 200,
        "only {ticks_during} timer firings while backpressured"
    );
    eprintln!(
        "backpressure: max queued {max_queued} (bound {bound}), gate max {max_gate}, source bp {bp:.0} ms/s, \
         sink consumed {sunk}, ticks {ticks_during}"
    );
}

#[test]
fn a_task_without_input_still_serves_its_mailbox() {
    let env = StreamEnv::new();
    let ticks = Arc::new(AtomicU64::new(0));
    let t = ticks.clone();
    env.add_non_parallel_source("Silent", |_| ScriptSource::<u64>::new(vec![Step::Forever]))
        .rebalance()
        .transform("Ticker", move |_| Ticker {
            interval: Duration::from_millis(10),
            fired: t.clone(),
            _t: Default::default(),
        })
        .discard();
    let handle = env.start().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let ticker_task = handle
        .metrics()
        .tasks_named("Ticker")
        .next()
        .cloned()
        .unwrap();
    handle.cancel();
    join_within(handle, Duration::from_secs(10)).unwrap();
    let n = ticks.load(Ordering::Relaxed);
    assert!(n >= 20, "only {n} timer firings in 500 ms without input");
    assert!(
        ticker_task.idle_ms_per_sec() > 800.0,
        "the ticker task waited for input"
    );
}

/// One record that emits far more than the overdraft allows waits for credit inside the
/// record, and the job still completes with every record.
#[test]
fn a_huge_flat_map_emission_completes() {
    let env = StreamEnv::new();
    env.configure(|c| c.max_records_per_buffer = 16);
    let out = env
        .from_iter(vec![0u64, 1])
        .flat_map(|x| (0..50_000u64).map(move |i| x * 100_000 + i))
        .rebalance()
        .map(|x| x)
        .set_parallelism(2)
        .collect();
    env.execute().unwrap();
    assert_eq!(out.take().len(), 100_000);
}
