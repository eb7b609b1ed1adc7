//! Backpressure: a slow sink throttles a fast source, queues stay within the configured buffers,
//! and a task keeps serving its mailbox while it has no credit or no input.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir::engine::TaskMetrics;
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

/// A sink whose cost per record can change while the job runs.
struct TunableSink {
    cost_us: Arc<AtomicU64>,
}

impl Sink for TunableSink {
    type In = u64;
    fn write(&mut self, _record: u64) -> Result<(), UserError> {
        let us = self.cost_us.load(Ordering::Relaxed);
        if us > 0 {
            std::thread::sleep(Duration::from_micros(us));
        }
        Ok(())
    }
}

/// Polls the sink task's metrics until `ok` holds (or `within` passed); returns the last.
fn sink_gate_until(
    handle: &JobHandle,
    within: Duration,
    ok: impl Fn(&TaskMetrics) -> bool,
) -> TaskMetrics {
    let start = Instant::now();
    loop {
        let m = handle
            .metrics()
            .tasks_named("Tunable Sink")
            .next()
            .cloned()
            .expect("sink task");
        if ok(&m) || start.elapsed() > within {
            return m;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Buffer debloating: when the consumer slows down, its gate announces the smallest buffer and
/// soon holds no more than its credit of smallest buffers; when it speeds up again, the
/// announced size grows back to the largest buffer.
#[test]
fn buffer_debloating_shrinks_behind_a_slow_consumer_and_grows_back() {
    const MIN: usize = 64;
    const MAX: usize = 128 * 8; // 128 records of 8 bytes
    let env = StreamEnv::new();
    env.configure(|c| {
        c.max_records_per_buffer = 128;
        c.min_segment_size = weir::engine::MemorySize(MIN as u64);
        c.buffer_debloat_enabled = true;
        c.buffer_debloat_target = Duration::from_millis(100);
        c.buffer_debloat_period = Duration::from_millis(50);
        c.buffer_debloat_samples = 3;
    });
    let cost_us = Arc::new(AtomicU64::new(0));
    let cost = cost_us.clone();
    env.generate(Generator::new(|i| i))
        .sink("Tunable Sink", move |_| TunableSink {
            cost_us: cost.clone(),
        })
        .disable_chaining();
    let handle = env.start().unwrap();
    let size_is = |bytes: usize| move |m: &TaskMetrics| m.input_buffer_size_bytes == Some(bytes);

    let fast = sink_gate_until(&handle, Duration::from_secs(20), size_is(MAX));
    assert_eq!(
        fast.input_buffer_size_bytes,
        Some(MAX),
        "a fast consumer gets the largest buffer"
    );

    // 500 records/s of 8 bytes for 100 ms: 400 bytes, less than the gate's slots of smallest
    // buffers.
    cost_us.store(2_000, Ordering::Relaxed);
    let slow = sink_gate_until(&handle, Duration::from_secs(20), size_is(MIN));
    assert_eq!(
        slow.input_buffer_size_bytes,
        Some(MIN),
        "behind a slow consumer the buffer size fell to the minimum"
    );
    // Once the large buffers queued before are consumed, the gate holds at most its credit
    // (1 channel: 2 exclusive + 8 floating) of smallest buffers, and stays there.
    let bound = |m: &TaskMetrics| m.input_inflight_bytes <= m.input_capacity_buffers * MIN;
    let drained = sink_gate_until(&handle, Duration::from_secs(20), bound);
    assert!(
        bound(&drained),
        "{} bytes still in flight",
        drained.input_inflight_bytes
    );
    for _ in 0..20 {
        let m = sink_gate_until(&handle, Duration::ZERO, |_| true);
        assert!(
            bound(&m),
            "{} bytes in flight with buffers of {MIN} bytes",
            m.input_inflight_bytes
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    cost_us.store(0, Ordering::Relaxed);
    let fast_again = sink_gate_until(&handle, Duration::from_secs(20), size_is(MAX));
    handle.cancel();
    join_within(handle, Duration::from_secs(10)).unwrap();
    assert_eq!(
        fast_again.input_buffer_size_bytes,
        Some(MAX),
        "a consumer that sped up gets the largest buffer again"
    );
}
