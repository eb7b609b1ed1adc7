//! `GET /metrics`: every job's task and checkpoint metrics in Prometheus' text format, read
//! from the tasks' counters when scraped (a [`Collector`]), with the labels of Flink's
//! Prometheus reporter (`job_id`, `job_name`, `task_name`, `subtask_index`).
//!
//! Names are Flink's, with a `weir_` prefix, in Prometheus' snake case and base units (so that
//! `promtool check metrics` accepts them): `numRecordsIn` is `weir_num_records_in`,
//! `busyTimeMsPerSecond` / 1000 is `weir_busy_time_ratio`, `lastCheckpointDuration` is
//! `weir_last_checkpoint_duration_seconds`, and so on (the README lists them all). As Flink's
//! Prometheus reporter does, counts are exported as gauges: `rate()` works on them the same.

use std::fmt::Error;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use super::directory::JobDirectory;
use super::rates::per_second;
use super::server::AppState;
use super::views::read;
use crate::checkpoint::CheckpointStatus;

/// Label set of a task metric.
type TaskLabels = [(&'static str, String); 4];
/// Label set of a job metric.
type JobLabels = [(&'static str, String); 2];

/// A metric collector of the owner of a server (re-exported so owners need no dependency of
/// their own on `prometheus-client`).
pub use prometheus_client::collector::Collector as MetricsCollector;

/// Reads every job of a directory on each scrape.
#[derive(Debug)]
pub(crate) struct JobsCollector {
    pub(crate) directory: JobDirectory,
}

/// One metric family: its name, help, and values per label set.
struct Family<L> {
    name: &'static str,
    help: &'static str,
    values: Vec<(L, f64)>,
}

impl<L: prometheus_client::encoding::EncodeLabelSet> Family<L> {
    fn new(name: &'static str, help: &'static str) -> Self {
        Family {
            name,
            help,
            values: Vec::new(),
        }
    }

    fn encode(&self, encoder: &mut DescriptorEncoder) -> Result<(), Error> {
        encode_gauges(encoder, self.name, self.help, &self.values)
    }
}

/// Encodes one gauge family: `name` with `help` and a value per label set (nothing when there
/// are no values). Owners' collectors use it too, so every weir metric is encoded alike.
///
/// # Errors
///
/// The encoder's formatting error.
pub fn encode_gauges<L: prometheus_client::encoding::EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: &[(L, f64)],
) -> Result<(), Error> {
    if values.is_empty() {
        return Ok(());
    }
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in values {
        ConstGauge::new(*v).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

impl Collector for JobsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), Error> {
        use Family as F;
        let mut t: Vec<F<TaskLabels>> = vec![
            F::new("weir_num_records_in", "Records read from input channels (Flink's numRecordsIn)."),
            F::new("weir_num_records_out", "Records written to output channels (Flink's numRecordsOut)."),
            F::new("weir_num_records_in_per_second", "Records read per second over the last interval."),
            F::new("weir_num_records_out_per_second", "Records written per second over the last interval."),
            F::new("weir_busy_time_ratio", "Share of the last interval spent working (Flink's busyTimeMsPerSecond / 1000)."),
            F::new("weir_idle_time_ratio", "Share of the last interval spent waiting for input (idleTimeMsPerSecond / 1000)."),
            F::new("weir_back_pressured_time_ratio", "Share of the last interval spent waiting for output credit (backPressuredTimeMsPerSecond / 1000)."),
            F::new("weir_busy_time_seconds", "Time spent working."),
            F::new("weir_idle_time_seconds", "Time spent waiting for input."),
            F::new("weir_back_pressured_time_seconds", "Time spent waiting for output credit."),
            F::new("weir_is_back_pressured", "1 when an output channel is out of credit now (Flink's isBackPressured)."),
            F::new("weir_in_pool_usage", "Input buffers queued / the gate's credit (Flink's inPoolUsage)."),
            F::new("weir_out_pool_usage", "Output channels out of credit / output channels (Flink's outPoolUsage)."),
            F::new("weir_checkpoint_alignment_time_seconds", "Alignment of the last checkpoint the task took (Flink's checkpointAlignmentTime)."),
            F::new("weir_checkpoint_start_delay_seconds", "From trigger to the task's first barrier of the last checkpoint (Flink's checkpointStartDelayNanos)."),
        ];
        let mut j: Vec<F<JobLabels>> = vec![
            F::new(
                "weir_total_number_of_checkpoints",
                "Checkpoints triggered, finished or not.",
            ),
            F::new(
                "weir_number_of_in_progress_checkpoints",
                "Checkpoints in progress.",
            ),
            F::new(
                "weir_number_of_completed_checkpoints",
                "Completed checkpoints.",
            ),
            F::new("weir_number_of_failed_checkpoints", "Failed checkpoints."),
            F::new(
                "weir_last_checkpoint_duration_seconds",
                "End-to-end duration of the last completed checkpoint.",
            ),
            F::new(
                "weir_last_checkpoint_size_bytes",
                "State written by the last completed checkpoint.",
            ),
            F::new(
                "weir_last_checkpoint_full_size_bytes",
                "Full state size of the last completed checkpoint (weir writes full checkpoints).",
            ),
            F::new(
                "weir_last_checkpoint_processed_data_bytes",
                "Bytes processed during alignment in the last completed checkpoint.",
            ),
            F::new(
                "weir_last_checkpoint_persisted_data_bytes",
                "In-flight bytes persisted by the last completed checkpoint.",
            ),
            F::new(
                "weir_last_completed_checkpoint_id",
                "Id of the last completed checkpoint.",
            ),
            F::new(
                "weir_last_checkpoint_restore_timestamp_seconds",
                "When the current attempt was restored from a checkpoint (Unix time).",
            ),
            F::new(
                "weir_num_restarts",
                "Restarts after failures (Flink's numRestarts).",
            ),
            F::new(
                "weir_uptime_seconds",
                "Time since the job started (to its end, for an ended job).",
            ),
        ];
        for entry in self.directory.entries() {
            let job = &entry.job;
            let jl = || -> JobLabels {
                [
                    ("job_id", job.id().to_string()),
                    ("job_name", job.name().to_string()),
                ]
            };
            let (totals, interval) = read(&entry);
            let stats = job.checkpoint_stats();
            let completed = stats
                .iter()
                .rev()
                .find(|s| s.status == CheckpointStatus::Completed);
            // The task figures of the last checkpoint each task took.
            let task_ckpt = |task: usize| {
                stats
                    .iter()
                    .rev()
                    .find_map(|s| s.tasks.iter().find(|x| x.task == task).copied())
            };
            for (i, (now, all)) in interval.iter().zip(&totals).enumerate() {
                let l: TaskLabels = [
                    ("job_id", job.id().to_string()),
                    ("job_name", job.name().to_string()),
                    ("task_name", all.task.clone()),
                    ("subtask_index", all.subtask.to_string()),
                ];
                let secs = |ns: u64| ns as f64 / 1e9;
                let ratio = |ns: u64| {
                    if now.elapsed_ns == 0 {
                        0.0
                    } else {
                        (ns as f64 / now.elapsed_ns as f64).clamp(0.0, 1.0)
                    }
                };
                let c = task_ckpt(i);
                let values = [
                    all.records_in as f64,
                    all.records_out as f64,
                    per_second(now.records_in, now),
                    per_second(now.records_out, now),
                    ratio(now.busy_ns),
                    ratio(now.idle_ns),
                    ratio(now.backpressured_ns),
                    secs(all.busy_ns),
                    secs(all.idle_ns),
                    secs(all.backpressured_ns),
                    f64::from(u8::from(all.output_blocked_channels > 0)),
                    all.input_usage(),
                    all.output_usage(),
                    c.map_or(0.0, |c| c.alignment_ms / 1e3),
                    c.map_or(0.0, |c| c.start_delay_ms / 1e3),
                ];
                for (f, v) in t.iter_mut().zip(values) {
                    f.values.push((l.clone(), v));
                }
            }
            let in_progress = job.pending_checkpoints().len() as f64;
            let (ok, failed) = job.checkpoint_counts();
            let (ok, failed) = (ok as f64, failed as f64);
            let (_, _, duration) = super::views::times(job);
            let values = [
                ok + failed + in_progress,
                in_progress,
                ok,
                failed,
                completed.map_or(0.0, |c| c.duration_ms / 1e3),
                completed.map_or(0.0, |c| c.state_bytes as f64),
                completed.map_or(0.0, |c| c.state_bytes as f64),
                completed.map_or(0.0, |c| {
                    c.tasks.iter().map(|t| t.processed_bytes).sum::<u64>() as f64
                }),
                completed.map_or(0.0, |c| c.persisted_inflight_bytes as f64),
                completed.map_or(-1.0, |c| c.id as f64),
                job.restored_from().map_or(-1.0, |_| {
                    job.state_timestamps()
                        .get(&crate::job::JobState::Running)
                        .map_or(-1.0, |t| *t as f64 / 1e3)
                }),
                job.restarts() as f64,
                duration as f64 / 1e3,
            ];
            for (f, v) in j.iter_mut().zip(values) {
                f.values.push((jl(), v));
            }
        }
        for f in &t {
            f.encode(&mut encoder)?;
        }
        for f in &j {
            f.encode(&mut encoder)?;
        }
        Ok(())
    }
}

/// `GET /metrics`.
pub(crate) async fn scrape(State(state): State<AppState>) -> impl IntoResponse {
    let body = tokio::task::spawn_blocking(move || {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &state.registry).map(|_| out)
    })
    .await;
    match body {
        Ok(Ok(text)) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        _ => super::ApiError::internal("cannot encode the metrics").into_response(),
    }
}
