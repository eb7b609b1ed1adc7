//! `weir bench async`: throughput of the async I/O operator against Little's law, and its
//! checkpoints while the queue is full.
//!
//! Job: an unbounded generator (parallelism P) → rebalance → async_io (capacity C, each request
//! a call to a simulated remote service answering after L; ordered or unordered) → a counting
//! sink. With C requests always in flight per subtask, no operator can do better than the bound
//! C / L · P records per second (Little's law); the report gives the measured rate and its
//! ratio to the bound, and the mean latency measured inside the requests with the bound
//! computed from it.
//!
//! The service: `precise` (default) is one thread answering every call at its deadline
//! (parked with a timeout until the next one, ~0.1 ms late); `tokio-timer` is a
//! `tokio::time::sleep` per call, which fires at millisecond granularity and so about 1 ms late
//! (the bound at the nominal latency is then out of reach for any operator). With
//! `--interval`, checkpoints run in the chosen barrier mode and their durations are reported.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use weir_engine::checkpoint::CheckpointStatus;
use weir_engine::{AsyncIo, JobError, Sink, StreamEnv, UserError};
use weir_operators::{Generator, StreamEnvExt};

use super::backpressure::{percentile, Mode};

/// What stands in for the remote service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// One thread answers each call at its deadline.
    Precise,
    /// A tokio timer per call.
    TokioTimer,
}

impl std::str::FromStr for Service {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "precise" => Ok(Service::Precise),
            "tokio-timer" => Ok(Service::TokioTimer),
            other => Err(format!(
                "unknown service '{other}': use precise or tokio-timer"
            )),
        }
    }
}

/// A simulated remote service: answers every call after a fixed latency, from one thread.
struct RemoteService {
    latency: Duration,
    state: std::sync::Mutex<ServiceState>,
    thread: std::sync::OnceLock<std::thread::Thread>,
}

struct ServiceState {
    due: BinaryHeap<Reverse<(Instant, u64)>>,
    replies: std::collections::HashMap<u64, tokio::sync::oneshot::Sender<()>>,
    next: u64,
    stopped: bool,
}

impl RemoteService {
    fn start(latency: Duration) -> std::io::Result<Arc<Self>> {
        let service = Arc::new(RemoteService {
            latency,
            state: std::sync::Mutex::new(ServiceState {
                due: BinaryHeap::new(),
                replies: Default::default(),
                next: 0,
                stopped: false,
            }),
            thread: std::sync::OnceLock::new(),
        });
        let s = service.clone();
        let t = std::thread::Builder::new()
            .name("remote-service".into())
            .spawn(move || s.serve())?;
        let _ = service.thread.set(t.thread().clone());
        Ok(service)
    }

    /// A call: resolves `latency` after now.
    fn call(&self) -> tokio::sync::oneshot::Receiver<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let at = Instant::now() + self.latency;
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let id = st.next;
        st.next += 1;
        let earliest = st.due.peek().map(|Reverse((t, _))| *t);
        st.due.push(Reverse((at, id)));
        st.replies.insert(id, tx);
        drop(st);
        if earliest.is_none_or(|e| at < e) {
            if let Some(t) = self.thread.get() {
                t.unpark();
            }
        }
        rx
    }

    fn stop(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).stopped = true;
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }

    fn serve(&self) {
        loop {
            let now = Instant::now();
            let mut replies = Vec::new();
            let next = {
                let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                if st.stopped {
                    return;
                }
                while let Some(Reverse((at, id))) = st.due.peek().copied() {
                    if at > now {
                        break;
                    }
                    st.due.pop();
                    if let Some(tx) = st.replies.remove(&id) {
                        replies.push(tx);
                    }
                }
                st.due.peek().map(|Reverse((t, _))| *t)
            };
            for tx in replies {
                let _ = tx.send(());
            }
            match next {
                Some(t) => std::thread::park_timeout(t.saturating_duration_since(Instant::now())),
                None => std::thread::park(),
            }
        }
    }
}

/// The benchmark's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// What stands in for the remote service.
    pub service: Service,
    /// Bound on requests in flight per subtask.
    pub capacity: usize,
    /// Latency of one request.
    pub latency: Duration,
    /// Parallelism of every operator.
    pub parallelism: usize,
    /// Ordered or unordered results.
    pub ordered: bool,
    /// How long the job runs (the first fifth, at most 2 s, is warm-up and not measured).
    pub duration: Duration,
    /// Checkpoint interval (none: no checkpoints).
    pub interval: Option<Duration>,
    /// Barrier mode of the checkpoints.
    pub mode: Mode,
}

/// Checkpoint figures of a run.
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointFigures {
    /// Completed checkpoints.
    pub completed: usize,
    /// Failed or aborted checkpoints.
    pub failed: usize,
    /// Median duration (ms).
    pub p50_ms: Option<f64>,
    /// 99th percentile (ms).
    pub p99_ms: Option<f64>,
    /// Longest (ms).
    pub max_ms: Option<f64>,
}

/// The benchmark's result (also its JSON form).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// "precise" or "tokio-timer".
    pub service: &'static str,
    /// "ordered" or "unordered".
    pub order: &'static str,
    /// Capacity per subtask.
    pub capacity: usize,
    /// Nominal request latency (ms).
    pub latency_ms: f64,
    /// Parallelism.
    pub parallelism: usize,
    /// Records the sink received per second after the warm-up.
    pub records_per_sec: f64,
    /// Little's law: capacity / latency · parallelism.
    pub bound_records_per_sec: f64,
    /// `records_per_sec / bound_records_per_sec`.
    pub ratio: f64,
    /// Mean time from issuing a request to its completion, as measured inside the requests (ms).
    pub mean_latency_ms: f64,
    /// The bound with the measured mean latency.
    pub bound_at_measured_latency: f64,
    /// `records_per_sec / bound_at_measured_latency`.
    pub ratio_at_measured_latency: f64,
    /// Checkpoints (all zero without `--interval`).
    pub checkpoints: CheckpointFigures,
}

struct Counting(Arc<AtomicU64>);

impl Sink for Counting {
    type In = u64;
    fn write(&mut self, _x: u64) -> Result<(), UserError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Runs the benchmark.
///
/// # Errors
///
/// Returns the [`JobError`] of starting the job (such as [`JobError::Validation`] for a
/// `capacity` of 0, or [`JobError::Config`] for a parallelism of 0), [`JobError::Internal`]
/// when the simulated service's thread cannot be started, or the error the job failed with
/// before it was cancelled.
pub fn run(s: &Settings) -> Result<Report, JobError> {
    let dir = std::env::temp_dir().join(format!("weir-bench-async-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let env = StreamEnv::new();
    env.configure(|c| {
        c.default_parallelism = s.parallelism;
        if let Some(interval) = s.interval {
            c.checkpoint_dir = dir.display().to_string();
            c.checkpoint_interval = interval;
            s.mode.configure(c);
        }
    });
    let received = Arc::new(AtomicU64::new(0));
    let latency_ns = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(AtomicU64::new(0));
    let settings = if s.ordered {
        AsyncIo::ordered(s.capacity)
    } else {
        AsyncIo::unordered(s.capacity)
    };
    let (lat, reqs, latency) = (latency_ns.clone(), requests.clone(), s.latency);
    let r = received.clone();
    let remote =
        match s.service {
            Service::Precise => Some(RemoteService::start(s.latency).map_err(|e| {
                JobError::Internal(format!("cannot start the simulated service: {e}"))
            })?),
            Service::TokioTimer => None,
        };
    let service = remote.clone();
    env.generate(Generator::new(|i| i))
        .rebalance()
        .async_io(
            "Remote Call",
            move |x: u64| {
                let (lat, reqs) = (lat.clone(), reqs.clone());
                let start = Instant::now();
                let reply = service.as_ref().map(|s| s.call());
                async move {
                    match reply {
                        Some(reply) => reply.await.map_err(|_| "the service stopped")?,
                        None => tokio::time::sleep(latency).await,
                    }
                    lat.fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
                    reqs.fetch_add(1, Ordering::Relaxed);
                    Ok(vec![x])
                }
            },
            settings,
        )
        .sink("Count", move |_| Counting(r.clone()));
    let handle = env.start()?;
    let warmup = (s.duration / 5).min(Duration::from_secs(2));
    std::thread::sleep(warmup);
    let (r0, l0, q0) = (
        received.load(Ordering::Relaxed),
        latency_ns.load(Ordering::Relaxed),
        requests.load(Ordering::Relaxed),
    );
    let start = Instant::now();
    std::thread::sleep(s.duration.saturating_sub(warmup));
    let elapsed = start.elapsed().as_secs_f64();
    let (r1, l1, q1) = (
        received.load(Ordering::Relaxed),
        latency_ns.load(Ordering::Relaxed),
        requests.load(Ordering::Relaxed),
    );
    let stats = handle.checkpoint_stats();
    handle.cancel();
    let result = handle.join();
    if let Some(s) = &remote {
        s.stop();
    }
    let _ = std::fs::remove_dir_all(&dir);
    result?;

    let mut durations: Vec<f64> = stats
        .iter()
        .filter(|c| c.status == CheckpointStatus::Completed)
        .map(|c| c.duration_ms)
        .collect();
    durations.sort_by(|a, b| a.total_cmp(b));
    let records_per_sec = (r1 - r0) as f64 / elapsed;
    let per_sec = |latency_s: f64| s.capacity as f64 / latency_s * s.parallelism as f64;
    let bound = per_sec(s.latency.as_secs_f64());
    let mean_latency_s = if q1 > q0 {
        (l1 - l0) as f64 / (q1 - q0) as f64 / 1e9
    } else {
        f64::NAN
    };
    let bound_measured = per_sec(mean_latency_s);
    Ok(Report {
        service: match s.service {
            Service::Precise => "precise",
            Service::TokioTimer => "tokio-timer",
        },
        order: if s.ordered { "ordered" } else { "unordered" },
        capacity: s.capacity,
        latency_ms: s.latency.as_secs_f64() * 1000.0,
        parallelism: s.parallelism,
        records_per_sec,
        bound_records_per_sec: bound,
        ratio: records_per_sec / bound,
        mean_latency_ms: mean_latency_s * 1000.0,
        bound_at_measured_latency: bound_measured,
        ratio_at_measured_latency: records_per_sec / bound_measured,
        checkpoints: CheckpointFigures {
            completed: durations.len(),
            failed: stats.len() - durations.len(),
            p50_ms: percentile(&durations, 50.0),
            p99_ms: percentile(&durations, 99.0),
            max_ms: durations.last().copied(),
        },
    })
}

impl Report {
    /// A human-readable summary.
    pub fn table(&self) -> String {
        let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        format!(
            "{:<10} {:>5} {:>7} {:>3} {:>12} {:>12} {:>6} {:>9} {:>8} | {:>5} {:>6} {:>7} {:>7}\n\
             {:<10} {:>5} {:>7.1} {:>3} {:>12.0} {:>12.0} {:>6.3} {:>9.2} {:>8.3} | {:>5} {:>6} {:>7} {:>7}\n",
            "order", "cap", "lat ms", "p", "records/s", "bound", "ratio", "mean lat", "ratio@m",
            "chk", "failed", "p50 ms", "p99 ms",
            self.order,
            self.capacity,
            self.latency_ms,
            self.parallelism,
            self.records_per_sec,
            self.bound_records_per_sec,
            self.ratio,
            self.mean_latency_ms,
            self.ratio_at_measured_latency,
            self.checkpoints.completed,
            self.checkpoints.failed,
            f(self.checkpoints.p50_ms),
            f(self.checkpoints.p99_ms),
        )
    }
}
