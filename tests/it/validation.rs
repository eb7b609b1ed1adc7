//! Every mistake found when the job is built is a clear error, never a panic.

use weir::engine::{ConfigError, ValidationError};
use weir::prelude::*;

fn validation_error(env: StreamEnv) -> ValidationError {
    match env.start() {
        Err(JobError::Validation(e)) => e,
        Err(other) => panic!("expected a validation error, got {other}"),
        Ok(h) => {
            h.cancel();
            panic!("expected a validation error, the job started")
        }
    }
}

#[test]
fn zero_parallelism() {
    let env = StreamEnv::new();
    env.from_iter(0..3u64)
        .map(|x| x)
        .name("Doubler")
        .set_parallelism(0)
        .discard();
    let e = validation_error(env);
    assert_eq!(
        e,
        ValidationError::ZeroParallelism {
            operator: "Doubler".into()
        }
    );
    assert!(e.to_string().contains("'Doubler' has parallelism 0"));
}

#[test]
fn zero_default_parallelism_is_a_config_error() {
    let env = StreamEnv::new();
    env.set_parallelism(0);
    env.from_iter(0..3u64).discard();
    match env.start() {
        Err(JobError::Config(ConfigError::InvalidValue { key, .. })) => {
            assert_eq!(key, "parallelism.default")
        }
        other => panic!("unexpected {:?}", other.err()),
    }
}

#[test]
fn duplicate_uids() {
    let env = StreamEnv::new();
    env.from_iter(0..3u64)
        .uid("source")
        .map(|x| x)
        .name("M")
        .uid("source")
        .discard();
    let e = validation_error(env);
    assert_eq!(
        e,
        ValidationError::DuplicateUid {
            uid: "source".into(),
            first: "Collection Source".into(),
            second: "M".into()
        }
    );
}

#[test]
fn empty_uid() {
    let env = StreamEnv::new();
    env.from_iter(0..3u64).map(|x| x).uid("").discard();
    assert!(matches!(
        validation_error(env),
        ValidationError::Empty { what: "uid", .. }
    ));
}

#[test]
fn forward_between_different_parallelism() {
    let env = StreamEnv::new();
    env.generate_sequence(0..10)
        .set_parallelism(2)
        .forward()
        .map(|x| x)
        .name("Narrow")
        .set_parallelism(3)
        .discard();
    let e = validation_error(env);
    assert_eq!(
        e,
        ValidationError::ForwardParallelismMismatch {
            from: "Sequence Source".into(),
            from_parallelism: 2,
            to: "Narrow".into(),
            to_parallelism: 3
        }
    );
    assert!(
        e.to_string().contains("rebalance"),
        "the message suggests the fix: {e}"
    );
}

#[test]
fn max_parallelism_smaller_than_parallelism() {
    let env = StreamEnv::new();
    env.generate_sequence(0..10)
        .key_by(|x| *x)
        .reduce(|a, b| a + b)
        .name("Sum")
        .set_parallelism(8)
        .set_max_parallelism(4)
        .discard();
    assert_eq!(
        validation_error(env),
        ValidationError::MaxParallelismTooSmall {
            operator: "Sum".into(),
            parallelism: 8,
            max_parallelism: 4
        }
    );
}

#[test]
fn max_parallelism_out_of_range() {
    for bad in [0usize, 40_000] {
        let env = StreamEnv::new();
        env.generate_sequence(0..10)
            .set_max_parallelism(bad)
            .discard();
        assert!(matches!(
            validation_error(env),
            ValidationError::MaxParallelismOutOfRange { max_parallelism, .. } if max_parallelism == bad
        ));
    }
}

#[test]
fn non_parallel_source_with_parallelism() {
    let env = StreamEnv::new();
    env.from_iter(vec![1u64, 2, 3]).set_parallelism(2).discard();
    assert_eq!(
        validation_error(env),
        ValidationError::NonParallelOperator {
            operator: "Collection Source".into(),
            parallelism: 2
        }
    );
}

#[test]
fn empty_job() {
    assert_eq!(
        validation_error(StreamEnv::new()),
        ValidationError::EmptyJob
    );
}

#[test]
fn properties_on_a_union_or_partitioned_stream() {
    let env = StreamEnv::new();
    let a = env.from_iter(0..3u64);
    let b = env.from_iter(0..3u64);
    a.union(&[b]).set_parallelism(2).discard();
    assert_eq!(
        validation_error(env),
        ValidationError::NotAnOperator {
            property: "parallelism",
            stream: "union"
        }
    );
    let env = StreamEnv::new();
    env.from_iter(0..3u64).rebalance().name("x").discard();
    assert_eq!(
        validation_error(env),
        ValidationError::NotAnOperator {
            property: "name",
            stream: "partitioned"
        }
    );
}

#[test]
fn streams_of_two_environments() {
    let env = StreamEnv::new();
    let other = StreamEnv::new();
    let a = env.from_iter(0..3u64);
    let b = other.from_iter(0..3u64);
    a.union(&[b]).discard();
    assert!(matches!(
        validation_error(env),
        ValidationError::ForeignStream { .. }
    ));
}
