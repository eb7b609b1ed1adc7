//! Task metrics, readable while a job runs and summarised when it ends.
//!
//! Time is split as in Flink: *idle* (waiting for input), *backpressured* (waiting for output
//! credit), and *busy* (the rest). Counters are cumulative; per-second rates come from the
//! difference of two snapshots ([`TaskMetrics::since`]) or from a whole run. Tasks publish
//! their counters once per buffer or wait, never per record.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde::Serialize;

/// A snapshot of an input gate's occupancy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct GateUsage {
    pub queued_buffers: usize,
    pub queued_records: usize,
    pub capacity_buffers: usize,
    /// The buffer size announced by buffer debloating, if on.
    pub announced_buffer_bytes: Option<usize>,
    /// Bytes of the queued records.
    pub queued_bytes: usize,
}

/// Anything that can report an input gate's usage (type-erased; the channels implement it).
pub(crate) trait UsageProbe: Send + Sync {
    fn usage(&self) -> GateUsage;
}

const WAIT_IDLE: u64 = 1;
const WAIT_BACKPRESSURED: u64 = 2;

/// The live, shared counters of one task.
pub(crate) struct TaskMetricsCell {
    pub name: String,
    pub subtask: usize,
    pub parallelism: usize,
    started: OnceLock<Instant>,
    finished_after_ns: AtomicU64,
    records_in: AtomicU64,
    records_out: AtomicU64,
    idle_ns: AtomicU64,
    backpressured_ns: AtomicU64,
    /// The wait in progress: 0 when none, else its start (ns after the task started) shifted
    /// left by two, with [`WAIT_IDLE`] or [`WAIT_BACKPRESSURED`] in the low bits; a snapshot
    /// counts the time waited so far (as Flink's timer gauges do).
    waiting: AtomicU64,
    output_pending_buffers: AtomicUsize,
    output_pending_records: AtomicUsize,
    output_channels: usize,
    output_blocked_channels: AtomicUsize,
    input: OnceLock<Arc<dyn UsageProbe>>,
}

impl TaskMetricsCell {
    pub(crate) fn new(
        name: String,
        subtask: usize,
        parallelism: usize,
        output_channels: usize,
    ) -> Self {
        TaskMetricsCell {
            name,
            subtask,
            parallelism,
            started: OnceLock::new(),
            finished_after_ns: AtomicU64::new(0),
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            idle_ns: AtomicU64::new(0),
            backpressured_ns: AtomicU64::new(0),
            waiting: AtomicU64::new(0),
            output_pending_buffers: AtomicUsize::new(0),
            output_pending_records: AtomicUsize::new(0),
            output_channels,
            output_blocked_channels: AtomicUsize::new(0),
            input: OnceLock::new(),
        }
    }

    pub(crate) fn set_input(&self, probe: Arc<dyn UsageProbe>) {
        let _ = self.input.set(probe);
    }
    pub(crate) fn start(&self) {
        let _ = self.started.set(Instant::now());
    }
    pub(crate) fn finish(&self) {
        if let Some(s) = self.started.get() {
            self.finished_after_ns
                .store(s.elapsed().as_nanos() as u64 | 1, Ordering::Release);
        }
    }
    /// A wait for input (`backpressured` false) or for output credit begins.
    pub(crate) fn begin_wait(&self, backpressured: bool) {
        if let Some(s) = self.started.get() {
            let kind = if backpressured {
                WAIT_BACKPRESSURED
            } else {
                WAIT_IDLE
            };
            self.waiting.store(
                ((s.elapsed().as_nanos() as u64) << 2) | kind,
                Ordering::Relaxed,
            );
        }
    }
    /// The wait in progress ended after `d` waiting for input.
    pub(crate) fn add_idle(&self, d: Duration) {
        self.waiting.store(0, Ordering::Relaxed);
        self.idle_ns
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }
    /// The wait in progress ended after `d` waiting for output credit.
    pub(crate) fn add_backpressured(&self, d: Duration) {
        self.waiting.store(0, Ordering::Relaxed);
        self.backpressured_ns
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }
    pub(crate) fn publish(
        &self,
        records_in: u64,
        records_out: u64,
        blocked: usize,
        pending_buffers: usize,
        pending_records: usize,
    ) {
        self.records_in.store(records_in, Ordering::Relaxed);
        self.records_out.store(records_out, Ordering::Relaxed);
        self.output_blocked_channels
            .store(blocked, Ordering::Relaxed);
        self.output_pending_buffers
            .store(pending_buffers, Ordering::Relaxed);
        self.output_pending_records
            .store(pending_records, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> TaskMetrics {
        let elapsed_ns = match self.finished_after_ns.load(Ordering::Acquire) {
            0 => self
                .started
                .get()
                .map(|s| s.elapsed().as_nanos() as u64)
                .unwrap_or(0),
            n => n,
        };
        let mut idle_ns = self.idle_ns.load(Ordering::Relaxed);
        let mut backpressured_ns = self.backpressured_ns.load(Ordering::Relaxed);
        let waiting = self.waiting.load(Ordering::Relaxed);
        if waiting != 0 && self.finished_after_ns.load(Ordering::Acquire) == 0 {
            let so_far = elapsed_ns.saturating_sub(waiting >> 2);
            if waiting & 3 == WAIT_BACKPRESSURED {
                backpressured_ns += so_far;
            } else {
                idle_ns += so_far;
            }
        }
        let idle_ns = idle_ns.min(elapsed_ns);
        let backpressured_ns = backpressured_ns.min(elapsed_ns - idle_ns);
        let input = self.input.get().map(|p| p.usage()).unwrap_or_default();
        TaskMetrics {
            task: self.name.clone(),
            subtask: self.subtask,
            parallelism: self.parallelism,
            elapsed_ns,
            records_in: self.records_in.load(Ordering::Relaxed),
            records_out: self.records_out.load(Ordering::Relaxed),
            idle_ns,
            backpressured_ns,
            busy_ns: elapsed_ns.saturating_sub(idle_ns + backpressured_ns),
            input_queued_buffers: input.queued_buffers,
            input_queued_records: input.queued_records,
            input_capacity_buffers: input.capacity_buffers,
            input_buffer_size_bytes: input.announced_buffer_bytes,
            input_inflight_bytes: input.queued_bytes,
            output_channels: self.output_channels,
            output_blocked_channels: self.output_blocked_channels.load(Ordering::Relaxed),
            output_pending_buffers: self.output_pending_buffers.load(Ordering::Relaxed),
            output_pending_records: self.output_pending_records.load(Ordering::Relaxed),
        }
    }
}

/// A snapshot of one task's metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskMetrics {
    /// The task's name: its chained operators' names joined by ` -> `.
    pub task: String,
    /// Subtask index, zero-based.
    pub subtask: usize,
    /// The task's parallelism.
    pub parallelism: usize,
    /// Time since the task started (until it ended, for an ended task), ns.
    pub elapsed_ns: u64,
    /// Records read from input channels (for sources: 0).
    pub records_in: u64,
    /// Records written to output channels (for tasks ending in a sink: 0).
    pub records_out: u64,
    /// Time spent waiting for input, ns.
    pub idle_ns: u64,
    /// Time spent waiting for output credit, ns.
    pub backpressured_ns: u64,
    /// Time spent working, ns.
    pub busy_ns: u64,
    /// Buffers queued in the input gate.
    pub input_queued_buffers: usize,
    /// Records in those buffers.
    pub input_queued_records: usize,
    /// The gate's credit: the most buffers it can hold.
    pub input_capacity_buffers: usize,
    /// The buffer size the gate announced to its senders (buffer debloating on), bytes.
    pub input_buffer_size_bytes: Option<usize>,
    /// Bytes of the records queued in the input gate (in flight towards the task).
    pub input_inflight_bytes: usize,
    /// Output channels of the task.
    pub output_channels: usize,
    /// Output channels currently out of credit.
    pub output_blocked_channels: usize,
    /// Full buffers waiting for credit.
    pub output_pending_buffers: usize,
    /// Records in full output buffers waiting for credit.
    pub output_pending_records: usize,
}

fn per_second(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 1000.0 / whole as f64
    }
}

impl TaskMetrics {
    /// Flink's `busyTimeMsPerSecond`.
    pub fn busy_ms_per_sec(&self) -> f64 {
        per_second(self.busy_ns, self.elapsed_ns)
    }
    /// Flink's `idleTimeMsPerSecond`.
    pub fn idle_ms_per_sec(&self) -> f64 {
        per_second(self.idle_ns, self.elapsed_ns)
    }
    /// Flink's `backPressuredTimeMsPerSecond`.
    pub fn backpressured_ms_per_sec(&self) -> f64 {
        per_second(self.backpressured_ns, self.elapsed_ns)
    }
    /// Input buffer usage, 0..=1 (Flink's `inPoolUsage`).
    pub fn input_usage(&self) -> f64 {
        if self.input_capacity_buffers == 0 {
            0.0
        } else {
            self.input_queued_buffers as f64 / self.input_capacity_buffers as f64
        }
    }
    /// Output usage, 0..=1: the share of output channels out of credit (Flink's `outPoolUsage`).
    pub fn output_usage(&self) -> f64 {
        if self.output_channels == 0 {
            0.0
        } else {
            self.output_blocked_channels as f64 / self.output_channels as f64
        }
    }
    /// The metrics of the interval between `earlier` and `self` (counters and times as
    /// differences, gauges as in `self`).
    pub fn since(&self, earlier: &TaskMetrics) -> TaskMetrics {
        let mut m = self.clone();
        m.elapsed_ns = self.elapsed_ns.saturating_sub(earlier.elapsed_ns);
        m.records_in = self.records_in.saturating_sub(earlier.records_in);
        m.records_out = self.records_out.saturating_sub(earlier.records_out);
        m.idle_ns = self.idle_ns.saturating_sub(earlier.idle_ns);
        m.backpressured_ns = self
            .backpressured_ns
            .saturating_sub(earlier.backpressured_ns);
        m.busy_ns = m.elapsed_ns.saturating_sub(m.idle_ns + m.backpressured_ns);
        m
    }
}

/// Metrics of every task of a job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobMetrics {
    /// One entry per task (chain × subtask), in plan order.
    pub tasks: Vec<TaskMetrics>,
}

impl JobMetrics {
    /// The tasks whose name contains `name`.
    pub fn tasks_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a TaskMetrics> + 'a {
        self.tasks.iter().filter(move |t| t.task.contains(name))
    }

    /// A human-readable table.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{:<48} {:>12} {:>12} {:>7} {:>7} {:>7} {:>6} {:>6}\n",
            "task", "records in", "records out", "busy", "idle", "bp", "in%", "out%"
        );
        for t in &self.tasks {
            let name = format!("{} ({}/{})", t.task, t.subtask + 1, t.parallelism);
            let name: String = if name.chars().count() > 48 {
                let tail: String = name
                    .chars()
                    .rev()
                    .take(45)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                format!("...{tail}")
            } else {
                name
            };
            s.push_str(&format!(
                "{:<48} {:>12} {:>12} {:>7.0} {:>7.0} {:>7.0} {:>6.0} {:>6.0}\n",
                name,
                t.records_in,
                t.records_out,
                t.busy_ms_per_sec(),
                t.idle_ms_per_sec(),
                t.backpressured_ms_per_sec(),
                t.input_usage() * 100.0,
                t.output_usage() * 100.0,
            ));
        }
        s
    }
}
