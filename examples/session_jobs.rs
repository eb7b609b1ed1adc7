//! A session runtime embedded in a program: register jobs by name, submit many short jobs
//! concurrently, read their status and results, cancel a long one.
//!
//! Jobs are registered by name because a closure cannot be persisted: with high availability
//! and job recovery on, the job graph store keeps the name, version, parameters and options,
//! and a new leader builds the same job again from its own registry. This example runs without
//! HA (`high-availability.type = none`); `weir session -D high-availability.type=sqlite ...`
//! shows the same runtime with leader election and recovery.
//!
//! Run: `cargo run --example session_jobs`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir::ha::JobOutcome;
use weir::prelude::*;
use weir::session::{JobRegistry, JobSubmission, SessionJobStatus, SessionOptions, SessionRuntime};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let total = Arc::new(AtomicU64::new(0));
    let mut registry = JobRegistry::new();
    let t = total.clone();
    // "sum-of-squares": parameter `n`; adds the squares of 0..n to a shared total.
    registry.register("sum-of-squares", 1, move |ctx, env| {
        let n: u64 = ctx.parameter_or("n", 1000)?;
        let t = t.clone();
        env.generate_sequence(0..n)
            .set_parallelism(2)
            .map(|x| x * x)
            .reduce_all(t);
        Ok(())
    });
    // "ticker": never ends on its own.
    registry.register("ticker", 1, |_, env| {
        env.generate(Generator::new(|i| i).rate_limited(100.0))
            .discard();
        Ok(())
    });

    let runtime = SessionRuntime::start(registry, SessionOptions::default())?;
    let started = Instant::now();
    let jobs: Vec<_> = (1..=20u64)
        .map(|i| runtime.submit(JobSubmission::new("sum-of-squares").parameter("n", i * 100)))
        .collect::<Result<_, _>>()?;
    for job in &jobs {
        assert_eq!(job.wait(), SessionJobStatus::Ended(JobOutcome::Finished));
    }
    let expected: u64 = (1..=20u64)
        .map(|i| (0..i * 100).map(|x| x * x).sum::<u64>())
        .sum();
    assert_eq!(total.load(Ordering::Relaxed), expected);
    println!(
        "20 jobs finished in {:?}; total {}",
        started.elapsed(),
        total.load(Ordering::Relaxed)
    );

    let ticker = runtime.submit(JobSubmission::new("ticker"))?;
    std::thread::sleep(Duration::from_millis(100));
    println!("{} is {:?}", ticker.id(), ticker.status());
    ticker.cancel();
    println!("{} is {:?}", ticker.id(), ticker.wait());
    match runtime.submit(JobSubmission::new("sum-of-cubes")) {
        Err(e) => println!("as expected: {e}"),
        Ok(_) => return Err("an unknown job name was accepted".into()),
    }
    runtime.shutdown();
    Ok(())
}

/// Adds every record to a shared total (a tiny custom sink).
trait ReduceAll {
    fn reduce_all(&self, total: Arc<AtomicU64>);
}

impl ReduceAll for DataStream<u64> {
    fn reduce_all(&self, total: Arc<AtomicU64>) {
        struct Add(Arc<AtomicU64>);
        impl Sink for Add {
            type In = u64;
            fn write(&mut self, x: u64) -> Result<(), UserError> {
                self.0.fetch_add(x, Ordering::Relaxed);
                Ok(())
            }
        }
        self.sink("total", move |_| Add(total.clone()));
    }
}
