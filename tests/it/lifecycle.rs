//! End of input, cancellation, and failures in user code.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use weir::prelude::*;

use crate::common::{eventually, join_within};

#[test]
fn bounded_input_ends_with_every_result_flushed() {
    let env = StreamEnv::new();
    env.set_parallelism(2);
    // A long buffer timeout: only the end-of-input flush can deliver the last partial buffers.
    env.configure(|c| c.buffer_timeout = Duration::from_secs(3600));
    let out = env
        .generate_sequence(0..100_001)
        .map(|x| x * 3)
        .filter(|x| x % 2 == 0)
        .flat_map(|x| vec![x, x + 1])
        .rebalance()
        .map(|x| x)
        .set_parallelism(3)
        .collect();
    let result = env.execute().unwrap();
    assert_eq!(result.status, JobStatus::Finished);
    let got = out.take();
    let want: Vec<u64> = (0..100_001u64)
        .map(|x| x * 3)
        .filter(|x| x % 2 == 0)
        .flat_map(|x| [x, x + 1])
        .collect();
    assert_eq!(got.len(), want.len());
    assert_eq!(got.iter().sum::<u64>(), want.iter().sum::<u64>());
    assert!(result.duration < Duration::from_secs(60));
}

#[test]
fn cancel_stops_a_running_job_and_joins_every_thread() {
    let env = StreamEnv::new();
    env.set_parallelism(2);
    let seen = Arc::new(AtomicU64::new(0));
    let s = seen.clone();
    env.generate(Generator::new(|i| i))
        .key_by(|x| x % 7)
        .reduce(|a, b| a + b)
        .map(move |x| {
            s.fetch_add(1, Ordering::Relaxed);
            x
        })
        .discard();
    let handle = env.start().unwrap();
    assert!(eventually(Duration::from_secs(10), || seen
        .load(Ordering::Relaxed)
        > 10_000));
    assert!(!handle.is_finished());
    handle.cancel();
    let result = join_within(handle, Duration::from_secs(10)).unwrap();
    assert_eq!(result.status, JobStatus::Cancelled);
}

#[test]
fn a_panic_in_user_code_fails_the_job_naming_operator_and_subtask() {
    let env = StreamEnv::new();
    env.set_parallelism(2);
    env.generate(Generator::new(|i| i))
        .key_by(|x| x % 2)
        .as_stream()
        .map(|x| {
            if x == 5_001 {
                panic!("bad record {x}");
            }
            x
        })
        .name("Exploding Map")
        .discard();
    let handle = env.start().unwrap();
    let err = join_within(handle, Duration::from_secs(20)).unwrap_err();
    match &err {
        JobError::TaskFailed {
            operator,
            subtask,
            parallelism,
            message,
            panicked,
        } => {
            assert_eq!(operator, "Exploding Map");
            // 5001 is odd: key 1 lives in the subtask owning its key group.
            let kg = weir::state::key_group::assign_to_key_group(&1u64, 128);
            assert_eq!(
                *subtask,
                weir::state::key_group::operator_index_for_key_group(128, 2, kg)
            );
            assert_eq!(*parallelism, 2);
            assert!(message.contains("bad record 5001"), "{message}");
            assert!(panicked);
        }
        other => panic!("unexpected error {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("'Exploding Map'") && text.contains("/2)"),
        "{text}"
    );
}

struct FailingOperator;

impl Operator for FailingOperator {
    type In = u64;
    type Out = u64;
    fn process_element(
        &mut self,
        element: u64,
        ctx: &mut Context<'_, u64>,
    ) -> Result<(), UserError> {
        if element == 77 {
            return Err(format!("cannot handle {element}").into());
        }
        ctx.emit(element);
        Ok(())
    }
}

#[test]
fn an_error_returned_by_an_operator_fails_the_job() {
    let env = StreamEnv::new();
    env.from_iter(0..1_000u64)
        .map(|x| x + 1)
        .transform("Picky", |_| FailingOperator)
        .map(|x| x)
        .discard();
    let err = join_within(env.start().unwrap(), Duration::from_secs(20)).unwrap_err();
    match err {
        JobError::TaskFailed {
            operator,
            subtask,
            message,
            panicked,
            ..
        } => {
            assert_eq!(
                operator, "Picky",
                "the chained operator that failed, not its task head"
            );
            assert_eq!(subtask, 0);
            assert_eq!(message, "cannot handle 77");
            assert!(!panicked);
        }
        other => panic!("unexpected error {other:?}"),
    }
}

struct FailingSink;
impl Sink for FailingSink {
    type In = u64;
    fn write(&mut self, record: u64) -> Result<(), UserError> {
        if record > 10 {
            Err("disk full".into())
        } else {
            Ok(())
        }
    }
}

#[test]
fn a_failing_sink_fails_the_job_while_upstream_is_unbounded() {
    let env = StreamEnv::new();
    env.generate(Generator::new(|i| i))
        .rebalance()
        .sink("Failing Sink", |_| FailingSink)
        .set_parallelism(2);
    let err = join_within(env.start().unwrap(), Duration::from_secs(20)).unwrap_err();
    assert!(
        matches!(&err, JobError::TaskFailed { operator, .. } if operator == "Failing Sink"),
        "{err}"
    );
    assert!(err.to_string().contains("disk full"));
}

struct FailingSource;
impl Source for FailingSource {
    type Out = u64;
    fn poll_next(&mut self, _ctx: &mut SourceContext<'_, u64>) -> Result<SourceStatus, UserError> {
        Err("connection refused".into())
    }
}

#[test]
fn a_failing_source_fails_the_job() {
    let env = StreamEnv::new();
    env.add_source("Flaky Source", |_| FailingSource)
        .map(|x| x)
        .discard();
    let err = join_within(env.start().unwrap(), Duration::from_secs(20)).unwrap_err();
    assert!(
        matches!(&err, JobError::TaskFailed { operator, .. } if operator == "Flaky Source"),
        "{err}"
    );
}

#[test]
fn dropping_a_handle_stops_the_job() {
    let env = StreamEnv::new();
    env.generate(Generator::new(|i| i)).rebalance().discard();
    let handle = env.start().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(handle);
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("drop must cancel and join the job");
}

/// Emits a marker (`u64::MAX`) on every processing-time timer, every millisecond.
struct Marker {
    emitted: Arc<AtomicU64>,
    finished: bool,
}

impl Operator for Marker {
    type In = u64;
    type Out = u64;
    fn open(&mut self, ctx: &mut Context<'_, u64>) -> Result<(), UserError> {
        let at = ctx.current_processing_time() + 1;
        ctx.register_processing_time_timer(at);
        Ok(())
    }
    fn process_element(
        &mut self,
        element: u64,
        ctx: &mut Context<'_, u64>,
    ) -> Result<(), UserError> {
        ctx.emit(element);
        Ok(())
    }
    fn on_timer(&mut self, timer: Timer, ctx: &mut Context<'_, u64>) -> Result<(), UserError> {
        if self.finished {
            return Err("on_timer called after finish".into());
        }
        ctx.emit(u64::MAX);
        self.emitted.fetch_add(1, Ordering::Relaxed);
        ctx.register_processing_time_timer(timer.timestamp + 1);
        Ok(())
    }
    fn finish(&mut self, _ctx: &mut Context<'_, u64>) -> Result<(), UserError> {
        self.finished = true;
        Ok(())
    }
}

struct MarkerCounter {
    received: Arc<AtomicU64>,
}

impl Sink for MarkerCounter {
    type In = u64;
    fn write(&mut self, record: u64) -> Result<(), UserError> {
        if record == u64::MAX {
            self.received.fetch_add(1, Ordering::Relaxed);
        } else {
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }
}

/// Timers stop at the end of input: nothing a timer emits is ever queued behind the end of
/// input (where it would be lost) and `on_timer` never follows `finish`, even while the task
/// waits for credit to drain its last buffers.
#[test]
fn no_timer_fires_after_the_end_of_input() {
    for _ in 0..3 {
        let env = StreamEnv::new();
        env.configure(|c| {
            c.max_records_per_buffer = 8;
            c.buffers_per_channel = 1;
            c.floating_buffers_per_gate = 0;
        });
        let (emitted, received) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (e, r) = (emitted.clone(), received.clone());
        env.generate(Generator::new(|i| i).bounded(300))
            .transform("Marker", move |_| Marker {
                emitted: e.clone(),
                finished: false,
            })
            .rebalance()
            .sink("Counter", move |_| MarkerCounter {
                received: r.clone(),
            });
        join_within(env.start().unwrap(), Duration::from_secs(30)).unwrap();
        assert!(
            emitted.load(Ordering::Relaxed) > 0,
            "timers fired while records flowed"
        );
        assert_eq!(
            emitted.load(Ordering::Relaxed),
            received.load(Ordering::Relaxed),
            "a marker was lost"
        );
    }
}

struct ClosingOperator {
    closed: Arc<AtomicU64>,
}

impl Operator for ClosingOperator {
    type In = u64;
    type Out = u64;
    fn process_element(
        &mut self,
        element: u64,
        ctx: &mut Context<'_, u64>,
    ) -> Result<(), UserError> {
        if element == 1_000 {
            return Err("stop".into());
        }
        ctx.emit(element);
        Ok(())
    }
    fn close(&mut self) -> Result<(), UserError> {
        self.closed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// `close` runs after a failure (in the failing task and in the cancelled ones) and after a
/// cancellation.
#[test]
fn close_runs_after_failure_and_cancellation() {
    let closed = Arc::new(AtomicU64::new(0));
    let c = closed.clone();
    let env = StreamEnv::new();
    env.set_parallelism(2);
    env.generate(Generator::new(|i| i))
        .transform("Closing", move |_| ClosingOperator { closed: c.clone() })
        .discard();
    assert!(join_within(env.start().unwrap(), Duration::from_secs(20)).is_err());
    assert_eq!(closed.load(Ordering::Relaxed), 2, "both subtasks closed");

    let closed = Arc::new(AtomicU64::new(0));
    let c = closed.clone();
    let env = StreamEnv::new();
    env.generate(Generator::new(|i| i + 2_000))
        .transform("Closing", move |_| ClosingOperator { closed: c.clone() })
        .discard();
    let handle = env.start().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    handle.cancel();
    join_within(handle, Duration::from_secs(20)).unwrap();
    assert_eq!(closed.load(Ordering::Relaxed), 1);
}

#[test]
fn print_sink_runs() {
    let env = StreamEnv::new();
    env.from_iter(vec![(1u64, "one".to_string()), (2, "two".to_string())])
        .print();
    let result = env.execute().unwrap();
    assert_eq!(result.status, JobStatus::Finished);
    let sink = result
        .metrics
        .tasks_named("Print Sink")
        .next()
        .cloned()
        .expect("print sink task");
    assert_eq!(sink.records_out, 0);
}
