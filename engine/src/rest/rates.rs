//! Per-second figures from two reads of a job's counters, without sampling in the background.
//!
//! Each read of a job's metrics through the REST server is compared with the previous read
//! kept as the baseline: when the baseline is at least [`MIN_INTERVAL`] old, the difference
//! becomes the job's current interval and the read becomes the new baseline; a read sooner
//! than that returns the interval of the previous one. So busy/idle/backpressured ratios and
//! records per second describe the last interval between reads (about the dashboard's refresh
//! interval, or a Prometheus scrape interval), and a job nobody looks at costs nothing.
//!
//! Invariant: a new attempt (a restart: fewer elapsed nanoseconds, or other tasks) starts a new
//! baseline; intervals never mix two attempts.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::metrics::{JobMetrics, TaskMetrics};

/// The shortest interval a rate is computed over.
pub const MIN_INTERVAL: Duration = Duration::from_millis(500);

/// The rate state of one job.
#[derive(Default)]
pub struct Rates {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The attempt (restarts so far) the baseline belongs to, when, and the read.
    baseline: Option<(usize, Instant, Vec<TaskMetrics>)>,
    interval: Option<Vec<TaskMetrics>>,
}

fn same_attempt(a: &[TaskMetrics], b: &[TaskMetrics]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.task == y.task && x.subtask == y.subtask && x.elapsed_ns >= y.elapsed_ns
        })
}

impl Rates {
    /// Reads the job's metrics with `read` (under this state's lock, so that concurrent
    /// readers take their reads in order) during attempt `attempt`, and returns them with the
    /// metrics of the current interval of every task (counters and times as differences;
    /// gauges as read now).
    pub fn read(
        &self,
        attempt: usize,
        read: impl FnOnce() -> JobMetrics,
    ) -> (JobMetrics, Vec<TaskMetrics>) {
        let mut s = self.state.lock();
        let now = read();
        let interval = Self::interval(&mut s, attempt, &now);
        (now, interval)
    }

    fn interval(s: &mut State, attempt: usize, now: &JobMetrics) -> Vec<TaskMetrics> {
        let t = Instant::now();
        match &s.baseline {
            Some((a, at, base)) if *a == attempt && same_attempt(&now.tasks, base) => {
                if t.duration_since(*at) >= MIN_INTERVAL {
                    let interval: Vec<TaskMetrics> = now
                        .tasks
                        .iter()
                        .zip(base)
                        .map(|(n, b)| n.since(b))
                        .collect();
                    s.baseline = Some((attempt, t, now.tasks.clone()));
                    s.interval = Some(interval.clone());
                    interval
                } else {
                    match &s.interval {
                        Some(i) if i.len() == now.tasks.len() => i
                            .iter()
                            .zip(&now.tasks)
                            .map(|(i, n)| TaskMetrics {
                                // Gauges as read now, rates of the last interval.
                                input_queued_buffers: n.input_queued_buffers,
                                input_queued_records: n.input_queued_records,
                                input_buffer_size_bytes: n.input_buffer_size_bytes,
                                input_inflight_bytes: n.input_inflight_bytes,
                                output_blocked_channels: n.output_blocked_channels,
                                output_pending_buffers: n.output_pending_buffers,
                                output_pending_records: n.output_pending_records,
                                ..i.clone()
                            })
                            .collect(),
                        // No interval yet, and the baseline too young for one: the
                        // lifetime so far.
                        _ => now.tasks.clone(),
                    }
                }
            }
            _ => {
                // First read, or a new attempt: its lifetime so far is the interval.
                s.baseline = Some((attempt, t, now.tasks.clone()));
                s.interval = None;
                now.tasks.clone()
            }
        }
    }
}

/// Records per second of a task over an interval (read from its `elapsed_ns`).
pub fn per_second(count: u64, interval: &TaskMetrics) -> f64 {
    if interval.elapsed_ns == 0 {
        0.0
    } else {
        count as f64 * 1e9 / interval.elapsed_ns as f64
    }
}
