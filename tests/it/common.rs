//! Operators, sources and sinks the tests share.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use weir::prelude::*;

/// One step of a [`ScriptSource`].
#[derive(Debug, Clone)]
pub enum Step<T> {
    Emit(T),
    Watermark(i64),
    Status(StreamStatus),
    Sleep(Duration),
    /// Never finish (until cancelled).
    Forever,
}

/// A source that plays a script, then ends.
pub struct ScriptSource<T> {
    steps: Vec<Step<T>>,
    pos: usize,
    sleeping_until: Option<Instant>,
}

impl<T> ScriptSource<T> {
    pub fn new(steps: Vec<Step<T>>) -> Self {
        ScriptSource {
            steps,
            pos: 0,
            sleeping_until: None,
        }
    }
}

impl<T: Data> Source for ScriptSource<T> {
    type Out = T;
    fn poll_next(&mut self, ctx: &mut SourceContext<'_, T>) -> Result<SourceStatus, UserError> {
        loop {
            if ctx.should_yield() {
                return Ok(SourceStatus::MoreAvailable);
            }
            let Some(step) = self.steps.get(self.pos).cloned() else {
                return Ok(SourceStatus::Finished);
            };
            match step {
                Step::Emit(x) => ctx.emit(x),
                Step::Watermark(w) => ctx.emit_watermark(Watermark(w)),
                Step::Status(s) => ctx.emit_status(s),
                Step::Sleep(d) => {
                    let until = *self
                        .sleeping_until
                        .get_or_insert_with(|| Instant::now() + d);
                    let now = Instant::now();
                    if now < until {
                        return Ok(SourceStatus::Pending(until - now));
                    }
                    self.sleeping_until = None;
                }
                Step::Forever => return Ok(SourceStatus::Pending(Duration::from_millis(50))),
            }
            self.pos += 1;
        }
    }
}

/// Emits `(subtask index, record)`.
pub struct Tag<T>(std::marker::PhantomData<fn(T)>);

impl<T> Tag<T> {
    pub fn new() -> Self {
        Tag(std::marker::PhantomData)
    }
}

impl<T: Data> Operator for Tag<T> {
    type In = T;
    type Out = (usize, T);
    fn process_element(
        &mut self,
        element: T,
        ctx: &mut Context<'_, (usize, T)>,
    ) -> Result<(), UserError> {
        let s = ctx.info().subtask;
        ctx.emit((s, element));
        Ok(())
    }
}

/// Passes records through and counts how often its processing-time timer fired (every
/// `interval`), which shows the task serving its mailbox.
pub struct Ticker<T> {
    pub interval: Duration,
    pub fired: Arc<AtomicU64>,
    pub _t: std::marker::PhantomData<fn(T)>,
}

impl<T: Data> Operator for Ticker<T> {
    type In = T;
    type Out = T;
    fn open(&mut self, ctx: &mut Context<'_, T>) -> Result<(), UserError> {
        let next = ctx.current_processing_time() + self.interval.as_millis() as i64;
        ctx.register_processing_time_timer(next);
        Ok(())
    }
    fn process_element(&mut self, element: T, ctx: &mut Context<'_, T>) -> Result<(), UserError> {
        ctx.emit(element);
        Ok(())
    }
    fn on_timer(&mut self, timer: Timer, ctx: &mut Context<'_, T>) -> Result<(), UserError> {
        assert_eq!(timer.domain, TimeDomain::ProcessingTime);
        assert!(
            ctx.current_processing_time() >= timer.timestamp,
            "timer fired early"
        );
        self.fired.fetch_add(1, Ordering::Relaxed);
        ctx.register_processing_time_timer(timer.timestamp + self.interval.as_millis() as i64);
        Ok(())
    }
}

/// A sink that spends `cost` per record and counts what it consumed.
pub struct SlowSink {
    pub cost: Duration,
    pub consumed: Arc<AtomicU64>,
}

impl Sink for SlowSink {
    type In = u64;
    fn write(&mut self, _record: u64) -> Result<(), UserError> {
        std::thread::sleep(self.cost);
        self.consumed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Records every watermark it sees (and forwards it).
pub struct WatermarkRecorder<T> {
    pub seen: Arc<Mutex<Vec<i64>>>,
    pub _t: std::marker::PhantomData<fn(T)>,
}

impl<T: Data> Operator for WatermarkRecorder<T> {
    type In = T;
    type Out = T;
    fn process_element(&mut self, element: T, ctx: &mut Context<'_, T>) -> Result<(), UserError> {
        ctx.emit(element);
        Ok(())
    }
    fn process_watermark(
        &mut self,
        wm: Watermark,
        ctx: &mut Context<'_, T>,
    ) -> Result<(), UserError> {
        self.seen.lock().push(wm.0);
        ctx.emit_watermark(wm);
        Ok(())
    }
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes; returns whether it held.
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

/// Joins a job on another thread, failing the test instead of hanging if it takes too long.
pub fn join_within(handle: JobHandle, timeout: Duration) -> Result<JobResult, JobError> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(handle.join());
    });
    rx.recv_timeout(timeout)
        .expect("job did not end in time: a task hangs")
}

#[path = "../support/provision.rs"]
mod support_provision;

/// `$env_var` if set, else what the repository's provisioning script `script` (relative to its
/// root) prints; the script runs once per test binary and script, and its failure fails every
/// test that asks, naming `what` and the script's error output.
pub fn provisioned(env_var: &str, script: &'static str, what: &str) -> String {
    type Cell = std::sync::Arc<std::sync::OnceLock<Result<String, String>>>;
    type Cells = parking_lot::Mutex<std::collections::HashMap<&'static str, Cell>>;
    static MADE: std::sync::OnceLock<Cells> = std::sync::OnceLock::new();
    if let Ok(v) = std::env::var(env_var) {
        return v;
    }
    // One cell per script: different scripts provision side by side.
    let cell = MADE
        .get_or_init(Default::default)
        .lock()
        .entry(script)
        .or_default()
        .clone();
    let r = cell.get_or_init(|| {
        support_provision::provision(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")),
            script,
            what,
        )
    });
    match r {
        Ok(v) => v.clone(),
        Err(e) => panic!("{e}"),
    }
}
