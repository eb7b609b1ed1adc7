//! `weir bench backpressure`: checkpoint durations under full backpressure.
//!
//! Job: an unbounded generator (parallelism P) → key_by(x mod 1024) → S stages, each its own
//! task behind a network edge (so in-flight data piles up at every hop) → a sink that spends C
//! per record. Checkpoints every I, in the chosen barrier mode, for D. Reports the distribution
//! of checkpoint durations and of persisted in-flight bytes, and the sink's throughput.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use weir_engine::checkpoint::{CheckpointStats, CheckpointStatus};
use weir_engine::{
    CheckpointingMode, Context, JobError, Operator, OperatorInfo, Sink, StreamEnv, UserError,
};
use weir_operators::{Generator, StreamEnvExt};

/// The barrier mode to benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Aligned barriers (exactly-once).
    Aligned,
    /// Unaligned barriers.
    Unaligned,
    /// Aligned, switching to unaligned after this long.
    AlignedTimeout(Duration),
    /// At-least-once barriers.
    AtLeastOnce,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "aligned" => Ok(Mode::Aligned),
            "unaligned" => Ok(Mode::Unaligned),
            "at-least-once" => Ok(Mode::AtLeastOnce),
            other => match other.strip_prefix("aligned-timeout=") {
                Some(t) => humantime::parse_duration(t)
                    .map(Mode::AlignedTimeout)
                    .map_err(|e| format!("bad timeout in '{other}': {e}")),
                None => Err(format!(
                    "unknown mode '{other}': use aligned, unaligned, aligned-timeout=<duration> or at-least-once"
                )),
            },
        }
    }
}

impl Mode {
    /// Sets the checkpoint options of this mode.
    pub fn configure(&self, c: &mut weir_engine::Config) {
        match *self {
            Mode::Aligned => {}
            Mode::Unaligned => c.unaligned = true,
            Mode::AlignedTimeout(t) => {
                c.unaligned = true;
                c.aligned_checkpoint_timeout = t;
            }
            Mode::AtLeastOnce => c.checkpointing_mode = CheckpointingMode::AtLeastOnce,
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mode::Aligned => write!(f, "aligned"),
            Mode::Unaligned => write!(f, "unaligned"),
            Mode::AlignedTimeout(t) => {
                write!(f, "aligned-timeout={}", humantime::format_duration(*t))
            }
            Mode::AtLeastOnce => write!(f, "at-least-once"),
        }
    }
}

/// The benchmark's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Barrier mode.
    pub mode: Mode,
    /// Parallelism of every operator.
    pub parallelism: usize,
    /// Number of stages between key_by and the sink.
    pub stages: usize,
    /// Time the sink spends per record.
    pub record_cost: Duration,
    /// Checkpoint interval.
    pub interval: Duration,
    /// How long the job runs.
    pub duration: Duration,
}

/// The benchmark's result (also its JSON form).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The mode, as given.
    pub mode: String,
    /// Completed checkpoints.
    pub completed: usize,
    /// Failed or aborted checkpoints.
    pub failed: usize,
    /// Median duration of completed checkpoints (ms).
    pub p50_ms: Option<f64>,
    /// 99th percentile (ms).
    pub p99_ms: Option<f64>,
    /// Longest (ms).
    pub max_ms: Option<f64>,
    /// Age of the checkpoint still pending when the run ended (ms): a lower bound of its duration.
    pub pending_ms: Option<f64>,
    /// Median persisted in-flight bytes per completed checkpoint.
    pub persisted_inflight_bytes_p50: u64,
    /// Records the sink consumed per second.
    pub throughput_records_per_sec: f64,
    /// Every finished checkpoint.
    pub checkpoints: Vec<CheckpointStats>,
}

/// Percentile (0..=100) of sorted values, nearest rank.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank.min(sorted.len()) - 1])
}

struct Stage;
impl Operator for Stage {
    type In = u64;
    type Out = u64;
    fn process_element(&mut self, x: u64, ctx: &mut Context<'_, u64>) -> Result<(), UserError> {
        ctx.emit(x);
        Ok(())
    }
}

struct CostlySink {
    cost: Duration,
    consumed: Arc<AtomicU64>,
}
impl Sink for CostlySink {
    type In = u64;
    fn write(&mut self, _x: u64) -> Result<(), UserError> {
        if !self.cost.is_zero() {
            std::thread::sleep(self.cost);
        }
        self.consumed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Runs the benchmark.
///
/// # Errors
///
/// Returns the [`JobError`] of starting the job (such as [`JobError::Config`] for a
/// parallelism of 0), or the error the job failed with before it was cancelled.
pub fn run(s: &Settings) -> Result<Report, JobError> {
    let dir = std::env::temp_dir().join(format!("weir-bench-backpressure-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let env = StreamEnv::new();
    env.configure(|c| {
        c.default_parallelism = s.parallelism;
        c.checkpoint_dir = dir.display().to_string();
        c.checkpoint_interval = s.interval;
        s.mode.configure(c);
    });
    let consumed = Arc::new(AtomicU64::new(0));
    let mut stream = env
        .generate(Generator::new(|i| i))
        .key_by(|x| x % 1024)
        .as_stream()
        .transform("Stage 1", |_: &OperatorInfo| Stage);
    for i in 2..=s.stages.max(1) {
        stream = stream
            .rebalance()
            .transform(&format!("Stage {i}"), |_: &OperatorInfo| Stage);
    }
    let (c, cost) = (consumed.clone(), s.record_cost);
    stream.rebalance().sink("Costly Sink", move |_| CostlySink {
        cost,
        consumed: c.clone(),
    });
    let handle = env.start()?;
    let start = Instant::now();
    std::thread::sleep(s.duration);
    let elapsed = start.elapsed();
    let stats = handle.checkpoint_stats();
    // A checkpoint still pending at the end: its age is a lower bound of its duration.
    let pending_ms = handle
        .pending_checkpoints()
        .into_iter()
        .map(|(_, age)| age.as_secs_f64() * 1000.0)
        .reduce(f64::max);
    let sunk = consumed.load(Ordering::Relaxed);
    handle.cancel();
    let result = handle.join();
    let _ = std::fs::remove_dir_all(&dir);
    result?;

    let completed: Vec<&CheckpointStats> = stats
        .iter()
        .filter(|c| c.status == CheckpointStatus::Completed)
        .collect();
    let mut durations: Vec<f64> = completed.iter().map(|c| c.duration_ms).collect();
    durations.sort_by(|a, b| a.total_cmp(b));
    let mut inflight: Vec<u64> = completed
        .iter()
        .map(|c| c.persisted_inflight_bytes)
        .collect();
    inflight.sort_unstable();
    Ok(Report {
        mode: s.mode.to_string(),
        completed: completed.len(),
        failed: stats.len() - completed.len(),
        p50_ms: percentile(&durations, 50.0),
        p99_ms: percentile(&durations, 99.0),
        max_ms: durations.last().copied(),
        pending_ms,
        persisted_inflight_bytes_p50: inflight
            .get(inflight.len().saturating_sub(1) / 2)
            .copied()
            .unwrap_or(0),
        throughput_records_per_sec: sunk as f64 / elapsed.as_secs_f64(),
        checkpoints: stats,
    })
}

impl Report {
    /// A human-readable summary.
    pub fn table(&self) -> String {
        let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        format!(
            "{:<24} {:>9} {:>6} {:>10} {:>10} {:>10} {:>12} {:>16} {:>12}\n{:<24} {:>9} {:>6} {:>10} {:>10} {:>10} {:>12} {:>16} {:>12.0}\n",
            "mode", "completed", "failed", "p50 ms", "p99 ms", "max ms", "pending ms", "in-flight B p50", "records/s",
            self.mode,
            self.completed,
            self.failed,
            f(self.p50_ms),
            f(self.p99_ms),
            f(self.max_ms),
            f(self.pending_ms),
            self.persisted_inflight_bytes_p50,
            self.throughput_records_per_sec,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_print() {
        for m in [
            "aligned",
            "unaligned",
            "at-least-once",
            "aligned-timeout=100ms",
        ] {
            assert_eq!(m.parse::<Mode>().unwrap().to_string(), m);
        }
        assert!("fast"
            .parse::<Mode>()
            .unwrap_err()
            .contains("unknown mode 'fast'"));
        assert!("aligned-timeout=soon".parse::<Mode>().is_err());
    }

    #[test]
    fn percentiles() {
        let v = [1.0, 2.0, 3.0, 4.0, 100.0];
        assert_eq!(percentile(&v, 50.0), Some(3.0));
        assert_eq!(percentile(&v, 99.0), Some(100.0));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
