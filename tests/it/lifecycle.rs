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
