//! Event time (watermark minimum, idleness, event-time timers) and processing-time timers.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use weir::prelude::*;

use crate::common::{eventually, join_within, ScriptSource, Step, WatermarkRecorder};

fn recorder<T: Data>(
    seen: &Arc<Mutex<Vec<i64>>>,
) -> impl FnMut(&OperatorInfo) -> WatermarkRecorder<T> + 'static {
    let seen = seen.clone();
    move |_| WatermarkRecorder {
        seen: seen.clone(),
        _t: std::marker::PhantomData,
    }
}

#[test]
fn the_watermark_is_the_minimum_across_inputs() {
    let env = StreamEnv::new();
    let a = env.add_non_parallel_source("A", |_| {
        ScriptSource::<u64>::new(vec![Step::Watermark(100), Step::Forever])
    });
    let b = env.add_non_parallel_source("B", |_| {
        ScriptSource::<u64>::new(vec![
            Step::Watermark(50),
            Step::Watermark(500),
            Step::Forever,
        ])
    });
    let seen = Arc::new(Mutex::new(Vec::new()));
    a.union(&[b])
        .transform("Recorder", recorder(&seen))
        .discard();
    let handle = env.start().unwrap();
    assert!(eventually(Duration::from_secs(10), || seen
        .lock()
        .contains(&100)));
    std::thread::sleep(Duration::from_millis(200));
    handle.cancel();
    join_within(handle, Duration::from_secs(10)).unwrap();
    let seen = seen.lock().clone();
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "watermarks only advance: {seen:?}"
    );
    assert!(
        seen.iter().all(|w| *w == 50 || *w == 100),
        "never above the minimum: {seen:?}"
    );
}

#[test]
fn an_idle_input_does_not_hold_the_watermark_back() {
    let env = StreamEnv::new();
    let a = env.add_non_parallel_source("Idle", |_| {
        ScriptSource::<u64>::new(vec![
            Step::Watermark(10),
            Step::Status(StreamStatus::Idle),
            Step::Forever,
        ])
    });
    let b = env.add_non_parallel_source("Busy", |_| {
        let mut steps = vec![];
        for i in 1..=50 {
            steps.push(Step::Emit(i * 100));
            steps.push(Step::Watermark(i as i64 * 100));
            steps.push(Step::Sleep(Duration::from_millis(5)));
        }
        steps.push(Step::Forever);
        ScriptSource::new(steps)
    });
    let seen = Arc::new(Mutex::new(Vec::new()));
    a.union(&[b])
        .transform("Recorder", recorder(&seen))
        .discard();
    let handle = env.start().unwrap();
    let advanced = eventually(Duration::from_secs(10), || seen.lock().contains(&5000));
    handle.cancel();
    join_within(handle, Duration::from_secs(10)).unwrap();
    assert!(
        advanced,
        "the busy input alone must move the watermark: {:?}",
        seen.lock()
    );
}

#[test]
fn source_idleness_from_a_watermark_strategy() {
    // Two sources with a strategy: one stops producing and must go idle by itself.
    let env = StreamEnv::new();
    env.configure(|c| c.auto_watermark_interval = Duration::from_millis(20));
    let strategy =
        WatermarkStrategy::for_bounded_out_of_orderness(Duration::from_millis(0), |x: &u64| {
            *x as i64
        })
        .with_idleness(Duration::from_millis(100));
    let quiet = env
        .add_non_parallel_source("Quiet", |_| {
            ScriptSource::new(vec![Step::Emit(5u64), Step::Forever])
        })
        .assign_timestamps_and_watermarks(strategy.clone());
    let busy = env
        .add_non_parallel_source("Busy", |_| {
            let mut steps = vec![];
            for i in 1..=400u64 {
                steps.push(Step::Emit(i * 10));
                steps.push(Step::Sleep(Duration::from_millis(2)));
            }
            steps.push(Step::Forever);
            ScriptSource::new(steps)
        })
        .assign_timestamps_and_watermarks(strategy);
    let seen = Arc::new(Mutex::new(Vec::new()));
    quiet
        .union(&[busy])
        .transform("Recorder", recorder(&seen))
        .discard();
    let handle = env.start().unwrap();
    let advanced = eventually(Duration::from_secs(10), || {
        seen.lock().iter().any(|w| *w > 1000)
    });
    handle.cancel();
    join_within(handle, Duration::from_secs(10)).unwrap();
    assert!(advanced, "the quiet source must go idle: {:?}", seen.lock());
}

/// Registers an event-time timer at `ts + 10` for every record and reports firings.
#[derive(Clone)]
struct EventTimers;

impl KeyedProcessFunction<u64, (u64, i64), (u64, i64, i64)> for EventTimers {
    fn process_element(
        &mut self,
        value: (u64, i64),
        ctx: &mut KeyedContext<'_, u64, (u64, i64, i64)>,
    ) -> Result<(), UserError> {
        ctx.register_event_time_timer(value.1 + 10);
        Ok(())
    }
    fn on_timer(
        &mut self,
        timer: Timer,
        ctx: &mut KeyedContext<'_, u64, (u64, i64, i64)>,
    ) -> Result<(), UserError> {
        assert_eq!(timer.domain, TimeDomain::EventTime);
        let key = *ctx.current_key();
        let wm = ctx.current_watermark().0;
        ctx.emit((key, timer.timestamp, wm));
        Ok(())
    }
}

#[test]
fn event_time_timers_fire_as_the_watermark_passes_them() {
    let env = StreamEnv::new();
    env.configure(|c| c.auto_watermark_interval = Duration::from_millis(5));
    // Three keys; timestamps increase with some disorder; duplicates register one timer.
    let mut records = Vec::new();
    for i in 0..300i64 {
        let ts = i * 10 + (i % 3) * 4;
        records.push((i as u64 % 3, ts));
        if i % 50 == 0 {
            records.push((i as u64 % 3, ts));
        }
    }
    let strategy = WatermarkStrategy::for_bounded_out_of_orderness(
        Duration::from_millis(20),
        |r: &(u64, i64)| r.1,
    );
    let records_for_source = records.clone();
    let out = env
        .add_non_parallel_source("Events", move |_| {
            let mut steps = Vec::new();
            for (n, r) in records_for_source.iter().enumerate() {
                steps.push(Step::Emit(*r));
                if n % 30 == 0 {
                    steps.push(Step::Sleep(Duration::from_millis(10)));
                }
            }
            ScriptSource::new(steps)
        })
        .assign_timestamps_and_watermarks(strategy)
        .key_by(|r| r.0)
        .process(EventTimers)
        .set_parallelism(2)
        .collect();
    env.execute().unwrap();
    let fired = out.take();
    let mut want: Vec<(u64, i64)> = records.iter().map(|(k, ts)| (*k, ts + 10)).collect();
    want.sort();
    want.dedup();
    let mut got: Vec<(u64, i64)> = fired.iter().map(|(k, t, _)| (*k, *t)).collect();
    got.sort();
    assert_eq!(got, want, "every distinct (key, time) fires exactly once");
    for (k, t, wm) in &fired {
        assert!(wm >= t, "timer ({k},{t}) fired at watermark {wm}");
    }
    // Some timers fired before the end of input, driven by periodic watermarks.
    assert!(
        fired.iter().any(|(_, _, wm)| *wm < i64::MAX),
        "only the final watermark fired timers"
    );
    // Per key, timers fire in time order.
    for key in 0..3 {
        let ts: Vec<i64> = fired.iter().filter(|f| f.0 == key).map(|f| f.1).collect();
        assert!(ts.windows(2).all(|w| w[0] < w[1]), "key {key}: {ts:?}");
    }
}

/// Registers a processing-time timer 30 ms after each key's first record.
#[derive(Clone)]
struct ProcessingTimers {
    first: Option<ValueStateHandle<i64>>,
}

impl KeyedProcessFunction<u64, u64, (u64, i64, i64)> for ProcessingTimers {
    fn open(&mut self, ctx: &mut KeyedOpenContext<'_, u64>) -> Result<(), UserError> {
        self.first = Some(ctx.value_state("registered")?);
        Ok(())
    }
    fn process_element(
        &mut self,
        _v: u64,
        ctx: &mut KeyedContext<'_, u64, (u64, i64, i64)>,
    ) -> Result<(), UserError> {
        let h = self.first.expect("opened");
        if ctx.value(&h).is_none() {
            let at = ctx.current_processing_time() + 30;
            ctx.set_value(&h, at);
            ctx.register_processing_time_timer(at);
        }
        Ok(())
    }
    fn on_timer(
        &mut self,
        timer: Timer,
        ctx: &mut KeyedContext<'_, u64, (u64, i64, i64)>,
    ) -> Result<(), UserError> {
        assert_eq!(timer.domain, TimeDomain::ProcessingTime);
        let key = *ctx.current_key();
        let now = ctx.current_processing_time();
        ctx.emit((key, timer.timestamp, now));
        Ok(())
    }
}

#[test]
fn processing_time_timers_fire_on_time() {
    let env = StreamEnv::new();
    let out = env
        .add_non_parallel_source("Keys", |_| {
            let mut steps: Vec<Step<u64>> = (0..20).map(Step::Emit).collect();
            steps.push(Step::Sleep(Duration::from_millis(600)));
            ScriptSource::new(steps)
        })
        .key_by(|k| *k)
        .process(ProcessingTimers { first: None })
        .set_parallelism(2)
        .collect();
    env.execute().unwrap();
    let fired = out.take();
    let mut keys: Vec<u64> = fired.iter().map(|f| f.0).collect();
    keys.sort();
    assert_eq!(keys, (0..20).collect::<Vec<_>>(), "one firing per key");
    for (k, at, now) in fired {
        assert!(now >= at, "key {k} fired early");
        assert!(now - at < 500, "key {k} fired {} ms late", now - at);
    }
}
