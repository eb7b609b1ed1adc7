//! `weir bench backpressure`: checkpoint durations under full backpressure.
//!
//! Job: an unbounded generator (parallelism P) → key_by(x mod 1024) → S stages, each its own
//! task behind a network edge (so in-flight data piles up at every hop) → a sink that spends C
//! per record. Checkpoints every I, in the chosen barrier mode, for D. Reports the distribution
//! of checkpoint durations and of persisted in-flight bytes, and the sink's throughput. With
//! buffer debloating on, also each gate's announced buffer size and in-flight bytes (sampled
//! every 500 ms).

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
    /// Buffer debloating on (target 1 s, Flink's other defaults).
    pub debloat: bool,
}

/// The benchmark's result (also its JSON form).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The mode, as given.
    pub mode: String,
    /// Whether buffer debloating was on.
    pub debloat: bool,
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
    /// Every input gate: its buffer size and the bytes queued in it, sampled every 500 ms.
    pub gates: Vec<GateReport>,
    /// Every finished checkpoint.
    pub checkpoints: Vec<CheckpointStats>,
}

/// One input gate over a run.
#[derive(Debug, Clone, Serialize)]
pub struct GateReport {
    /// The task the gate feeds.
    pub task: String,
    /// Its subtask.
    pub subtask: usize,
    /// The buffer size announced last (debloating on), bytes.
    pub buffer_size_bytes: Option<usize>,
    /// Median of the sampled bytes queued in the gate.
    pub inflight_bytes_p50: usize,
    /// Largest sampled bytes queued in the gate.
    pub inflight_bytes_max: usize,
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
    run_inner(s, None)
}

/// What `weir bench backpressure --ui` adds to a run: the job serves its REST API and
/// dashboard, and keeps running after its report until `until` says stop (Ctrl-C).
pub struct Ui {
    /// Where to serve.
    pub rest: weir_engine::rest::RestOptions,
    /// Called with the dashboard's URL as the job starts.
    pub on_serving: Box<dyn FnOnce(&str)>,
    /// Called with the report when the measured run is over (the job keeps running).
    pub on_report: Box<dyn FnOnce(&Report)>,
    /// Polled after the report: true ends the job.
    pub until: Box<dyn Fn() -> bool>,
}

/// [`run`], with the job visible on its dashboard and running on after the report.
///
/// # Errors
///
/// The errors of [`run`], and [`JobError::Rest`] when the server cannot start.
pub fn run_with_ui(s: &Settings, ui: Ui) -> Result<Report, JobError> {
    run_inner(s, Some(ui))
}

fn run_inner(s: &Settings, mut ui: Option<Ui>) -> Result<Report, JobError> {
    let dir = std::env::temp_dir().join(format!("weir-bench-backpressure-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let env = StreamEnv::new();
    env.configure(|c| {
        c.job_name = "bench-backpressure".into();
        c.default_parallelism = s.parallelism;
        c.checkpoint_dir = dir.display().to_string();
        c.checkpoint_interval = s.interval;
        s.mode.configure(c);
        c.buffer_debloat_enabled = s.debloat;
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
    let _server = match ui.as_mut() {
        Some(ui) => {
            let directory = weir_engine::rest::JobDirectory::new();
            directory.register(handle.observer());
            let server =
                weir_engine::rest::RestServer::builder(ui.rest.clone(), directory).start()?;
            let announce = std::mem::replace(&mut ui.on_serving, Box::new(|_| {}));
            announce(&server.url());
            Some(server)
        }
        None => None,
    };
    let start = Instant::now();
    let mut samples: Vec<weir_engine::metrics::JobMetrics> = Vec::new();
    while start.elapsed() < s.duration {
        std::thread::sleep(
            Duration::from_millis(500).min(s.duration.saturating_sub(start.elapsed())),
        );
        samples.push(handle.metrics());
    }
    let elapsed = start.elapsed();
    let stats = handle.checkpoint_stats();
    // A checkpoint still pending at the end: its age is a lower bound of its duration.
    let pending_ms = handle
        .pending_checkpoints()
        .into_iter()
        .map(|(_, age)| age.as_secs_f64() * 1000.0)
        .reduce(f64::max);
    let sunk = consumed.load(Ordering::Relaxed);
    let report = summarize(
        s.mode.to_string(),
        s.debloat,
        stats,
        pending_ms,
        sunk as f64 / elapsed.as_secs_f64(),
        gate_reports(&samples),
    );
    if let Some(ui) = ui {
        (ui.on_report)(&report);
        while !(ui.until)() && !handle.is_finished() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    handle.cancel();
    let result = handle.join();
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    Ok(report)
}

fn summarize(
    mode: String,
    debloat: bool,
    stats: Vec<CheckpointStats>,
    pending_ms: Option<f64>,
    throughput_records_per_sec: f64,
    gates: Vec<GateReport>,
) -> Report {
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
    Report {
        mode,
        debloat,
        gates,
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
        throughput_records_per_sec,
        checkpoints: stats,
    }
}

/// The five ways to checkpoint under backpressure that `--compare-modes` puts side by side:
/// (mode, debloating).
pub fn compared_modes() -> [(Mode, bool); 5] {
    [
        (Mode::Aligned, false),
        (Mode::Aligned, true),
        (Mode::Unaligned, false),
        (Mode::Unaligned, true),
        (Mode::AlignedTimeout(Duration::from_millis(100)), false),
    ]
}

/// Runs every mode of [`compared_modes`] `rounds` times, alternating (round 1 runs each mode
/// once, then round 2, …), so that a noisy machine affects all modes alike. `on_run` sees each
/// run's report as it ends. Returns one report per mode, merged over its rounds.
///
/// # Errors
///
/// The first run that fails, as [`run`].
pub fn compare_modes(
    base: &Settings,
    rounds: usize,
    mut on_run: impl FnMut(&Report),
) -> Result<Vec<Report>, JobError> {
    let modes = compared_modes();
    let mut runs: Vec<Vec<Report>> = vec![Vec::new(); modes.len()];
    for _ in 0..rounds.max(1) {
        for (i, (mode, debloat)) in modes.iter().enumerate() {
            let settings = Settings {
                mode: *mode,
                debloat: *debloat,
                ..base.clone()
            };
            let report = run(&settings)?;
            on_run(&report);
            runs[i].push(report);
        }
    }
    Ok(runs.into_iter().filter_map(merge).collect())
}

/// One report of several runs of one mode: checkpoints pooled, throughput averaged, the gates of
/// the last run.
pub fn merge(runs: Vec<Report>) -> Option<Report> {
    let first = runs.first()?;
    let (mode, debloat) = (first.mode.clone(), first.debloat);
    let throughput = runs
        .iter()
        .map(|r| r.throughput_records_per_sec)
        .sum::<f64>()
        / runs.len() as f64;
    let pending_ms = runs.iter().filter_map(|r| r.pending_ms).reduce(f64::max);
    let gates = runs.last().map(|r| r.gates.clone()).unwrap_or_default();
    let stats = runs.into_iter().flat_map(|r| r.checkpoints).collect();
    Some(summarize(
        mode, debloat, stats, pending_ms, throughput, gates,
    ))
}

/// A table of several reports, one row per report.
pub fn table(reports: &[Report]) -> String {
    let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    let mut out = format!(
        "{:<24} {:>7} {:>9} {:>6} {:>10} {:>10} {:>10} {:>12} {:>16} {:>12}\n",
        "mode",
        "debloat",
        "completed",
        "failed",
        "p50 ms",
        "p99 ms",
        "max ms",
        "pending ms",
        "in-flight B p50",
        "records/s",
    );
    for r in reports {
        out.push_str(&format!(
            "{:<24} {:>7} {:>9} {:>6} {:>10} {:>10} {:>10} {:>12} {:>16} {:>12.0}\n",
            r.mode,
            if r.debloat { "on" } else { "off" },
            r.completed,
            r.failed,
            f(r.p50_ms),
            f(r.p99_ms),
            f(r.max_ms),
            f(r.pending_ms),
            r.persisted_inflight_bytes_p50,
            r.throughput_records_per_sec,
        ));
    }
    out
}

/// Per input gate (tasks with input), its last announced size and its sampled in-flight bytes.
fn gate_reports(samples: &[weir_engine::metrics::JobMetrics]) -> Vec<GateReport> {
    let Some(last) = samples.last() else {
        return Vec::new();
    };
    last.tasks
        .iter()
        .enumerate()
        .filter(|(_, t)| t.input_capacity_buffers > 0)
        .map(|(i, t)| {
            let mut bytes: Vec<usize> = samples
                .iter()
                .filter_map(|m| m.tasks.get(i))
                .map(|t| t.input_inflight_bytes)
                .collect();
            bytes.sort_unstable();
            GateReport {
                task: t.task.clone(),
                subtask: t.subtask,
                buffer_size_bytes: t.input_buffer_size_bytes,
                inflight_bytes_p50: bytes
                    .get(bytes.len().saturating_sub(1) / 2)
                    .copied()
                    .unwrap_or(0),
                inflight_bytes_max: bytes.last().copied().unwrap_or(0),
            }
        })
        .collect()
}

impl Report {
    /// A human-readable summary: the checkpoint row, then each gate's buffer size and in-flight
    /// bytes.
    pub fn table(&self) -> String {
        let mut out = table(std::slice::from_ref(self));
        if !self.gates.is_empty() {
            out.push_str(&format!(
                "\n{:<40} {:>14} {:>18} {:>18}\n",
                "input gate of", "buffer B", "in-flight B p50", "in-flight B max"
            ));
            for g in &self.gates {
                out.push_str(&format!(
                    "{:<40} {:>14} {:>18} {:>18}\n",
                    format!("{} ({})", g.task, g.subtask + 1),
                    g.buffer_size_bytes
                        .map_or("-".to_string(), |b| b.to_string()),
                    g.inflight_bytes_p50,
                    g.inflight_bytes_max,
                ));
            }
        }
        out
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
