//! `weir bench short-jobs`: many short jobs on one session runtime, with and without HA.
//!
//! C client threads submit J `word-count` jobs in all (each counts the words of 1,000 lines at
//! parallelism 4 by default) to one [`SessionRuntime`] and wait for each result; every
//! result is checked (the counts must add up to the input's words). Reported: jobs/s over the
//! timed part (after a warm-up of 2·C jobs) and the latency (submit → result) p50/p99.
//!
//! HA modes: `none` (embedded leader election and persistence), `sqlite` and `postgres`
//! (shared leader election; with `--job-recovery on` also the persistence services: job graph,
//! blobs, results written per job). `--compare` runs every mode (and the no-HA case without
//! the task pool) in alternating rounds in one run and reports ratios to no-HA, as FLIP-403
//! compares Flink's.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use weir_engine::pool::TaskPool;
use weir_engine::Config;
use weir_ha::{HaOptions, HaType, JobOutcome};
use weir_session::{JobSubmission, SessionJobStatus, SessionOptions, SessionRuntime};

use super::backpressure::percentile;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// One measured mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mode {
    /// none, sqlite or postgres.
    pub ha: HaType,
    /// `high-availability.job-recovery.enabled`.
    pub job_recovery: bool,
    /// Tasks on the shared task pool (true) or a new thread per task per job.
    pub pooled: bool,
}

impl Mode {
    /// A short name, e.g. `sqlite/recovery-off`.
    pub fn label(&self) -> String {
        let ha = match self.ha {
            HaType::None => "none",
            HaType::Sqlite => "sqlite",
            HaType::Postgres => "postgres",
        };
        let mut s = if self.ha == HaType::None {
            ha.to_string()
        } else {
            format!(
                "{ha}/recovery-{}",
                if self.job_recovery { "on" } else { "off" }
            )
        };
        if !self.pooled {
            s.push_str("/no-pool");
        }
        s
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Jobs timed per mode (and round).
    pub jobs: usize,
    /// Concurrent clients.
    pub clients: usize,
    /// Lines of input per job.
    pub records: usize,
    /// Parallelism of each job.
    pub parallelism: usize,
    /// PostgreSQL URL for `postgres` modes.
    pub postgres_url: Option<String>,
    /// Directory for SQLite databases (emptied of this bench's files afterwards).
    pub dir: PathBuf,
}

/// The result of one mode.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The mode.
    pub mode: String,
    /// Jobs timed.
    pub jobs: usize,
    /// Concurrent clients.
    pub clients: usize,
    /// Lines per job.
    pub records: usize,
    /// Parallelism per job.
    pub parallelism: usize,
    /// Jobs per second.
    pub jobs_per_sec: f64,
    /// Median latency submit → result (ms).
    pub p50_ms: f64,
    /// 99th percentile latency (ms).
    pub p99_ms: f64,
    /// OS threads the task pool spawned during the timed part.
    pub threads_spawned: u64,
}

fn input(records: usize) -> (String, u64) {
    let mut text = String::new();
    let mut words = 0;
    for i in 0..records {
        for j in 0..8 {
            if j > 0 {
                text.push(' ');
            }
            text.push_str(&format!("w{}", (i * 7 + j * 13) % 100));
            words += 1;
        }
        text.push('\n');
    }
    (text, words)
}

/// Runs `mode` once: J jobs from C clients on a fresh runtime.
///
/// # Errors
///
/// Returns a boxed error when an HA option is rejected
/// ([`HaError::InvalidOption`](weir_ha::HaError::InvalidOption)) or `postgres` has no URL, when
/// the runtime cannot start ([`SessionError`](weir_session::SessionError)) or lead within 10 s,
/// or when a job is refused, does not finish, or miscounts the words (the first such error).
pub fn run(settings: &Settings, mode: &Mode) -> Result<Report, Error> {
    let mut ha = HaOptions::default();
    let unique = format!(
        "bench-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos() ^ weir_ha::now_ms() as u128
    );
    let dir = settings.dir.join(&unique);
    match mode.ha {
        HaType::None => {}
        HaType::Sqlite => {
            ha.set("high-availability.type", "sqlite")?;
        }
        HaType::Postgres => {
            ha.set("high-availability.type", "postgres")?;
            let url = settings
                .postgres_url
                .clone()
                .ok_or("--ha postgres needs --postgres-url (or the variable WEIR_POSTGRES_URL)")?;
            ha.set("high-availability.postgres.url", &url)?;
        }
    }
    ha.set("high-availability.storageDir", &dir.display().to_string())?;
    ha.set("high-availability.cluster-id", &unique)?;
    ha.set(
        "high-availability.job-recovery.enabled",
        if mode.job_recovery { "true" } else { "false" },
    )?;
    let config = Config {
        task_threads_pooled: mode.pooled,
        ..Default::default()
    };
    let runtime = SessionRuntime::start(
        crate::jobs::registry(),
        SessionOptions {
            ha,
            contender: unique.clone(),
            config,
            ..Default::default()
        },
    )?;
    if !runtime.wait_for_leadership(Duration::from_secs(10)) {
        return Err("the bench runtime did not become leader within 10 s".into());
    }
    let (text, words) = input(settings.records);
    let submission = JobSubmission::new("word-count")
        .parameter("parallelism", settings.parallelism)
        .parameter("output", "memory")
        .artifact("input", text);
    let one = |runtime: &SessionRuntime| -> Result<Duration, Error> {
        let t = Instant::now();
        let job = runtime.submit(submission.clone())?;
        let status = job.wait();
        let elapsed = t.elapsed();
        if status != SessionJobStatus::Ended(JobOutcome::Finished) {
            return Err(format!("job {} ended as {status:?}", job.id()).into());
        }
        let counts = crate::jobs::take_word_counts(job.id())
            .ok_or_else(|| format!("job {} left no counts", job.id()))?;
        let total: u64 = counts.values().sum();
        if total != words {
            return Err(format!("job {} counted {total} words of {words}", job.id()).into());
        }
        Ok(elapsed)
    };
    let clients = settings.clients.max(1);
    for _ in 0..2 * clients {
        one(&runtime)?;
    }
    let spawned_before = TaskPool::shared().stats().spawned;
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    let latencies: Vec<Result<Vec<Duration>, Error>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..clients)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    while next.fetch_add(1, Ordering::Relaxed) < settings.jobs {
                        mine.push(one(&runtime)?);
                    }
                    Ok(mine)
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a client panicked".into())))
            .collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    let threads_spawned = TaskPool::shared().stats().spawned - spawned_before;
    runtime.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    let mut all = Vec::new();
    for l in latencies {
        all.extend(l?.into_iter().map(|d| d.as_secs_f64() * 1000.0));
    }
    all.sort_by(|a, b| a.total_cmp(b));
    Ok(Report {
        mode: mode.label(),
        jobs: all.len(),
        clients,
        records: settings.records,
        parallelism: settings.parallelism,
        jobs_per_sec: all.len() as f64 / seconds,
        p50_ms: percentile(&all, 50.0).unwrap_or(0.0),
        p99_ms: percentile(&all, 99.0).unwrap_or(0.0),
        threads_spawned,
    })
}

/// Runs every mode `rounds` times, alternating, and keeps each mode's median round (by jobs/s).
///
/// # Errors
///
/// Returns the first error of a [`run`] (see there); the rounds after it are not run.
pub fn compare(settings: &Settings, modes: &[Mode], rounds: usize) -> Result<Vec<Report>, Error> {
    let mut by_mode: Vec<Vec<Report>> = vec![Vec::new(); modes.len()];
    for _ in 0..rounds.max(1) {
        for (i, m) in modes.iter().enumerate() {
            by_mode[i].push(run(settings, m)?);
        }
    }
    Ok(by_mode
        .into_iter()
        .map(|mut rs| {
            rs.sort_by(|a, b| a.jobs_per_sec.total_cmp(&b.jobs_per_sec));
            rs.swap_remove(rs.len() / 2)
        })
        .collect())
}

/// The modes of `--compare`: no HA, no HA without the pool, then SQLite (and PostgreSQL when a
/// URL is known) with job recovery off and on.
pub fn comparison_modes(postgres: bool) -> Vec<Mode> {
    let mut v = vec![
        Mode {
            ha: HaType::None,
            job_recovery: false,
            pooled: true,
        },
        Mode {
            ha: HaType::None,
            job_recovery: false,
            pooled: false,
        },
    ];
    let mut kinds = vec![HaType::Sqlite];
    if postgres {
        kinds.push(HaType::Postgres);
    }
    for ha in kinds {
        for job_recovery in [false, true] {
            v.push(Mode {
                ha,
                job_recovery,
                pooled: true,
            });
        }
    }
    v
}

/// A text table with the ratio of each mode's jobs/s to the first mode's.
pub fn table(reports: &[Report]) -> String {
    let base = reports.first().map_or(1.0, |r| r.jobs_per_sec);
    let mut s = format!(
        "{:<28} {:>9} {:>10} {:>9} {:>9} {:>8}\n",
        "mode", "jobs/s", "vs first", "p50 ms", "p99 ms", "threads"
    );
    for r in reports {
        s.push_str(&format!(
            "{:<28} {:>9.1} {:>10.3} {:>9.2} {:>9.2} {:>8}\n",
            r.mode,
            r.jobs_per_sec,
            r.jobs_per_sec / base,
            r.p50_ms,
            r.p99_ms,
            r.threads_spawned
        ));
    }
    s
}

/// Shares a report list as JSON with ratios to the first mode.
pub fn json(reports: &[Report]) -> serde_json::Value {
    let base = reports.first().map_or(1.0, |r| r.jobs_per_sec);
    serde_json::Value::Array(
        reports
            .iter()
            .map(|r| {
                let mut v = serde_json::to_value(r).unwrap_or_default();
                v["ratio_to_first"] =
                    serde_json::json!((r.jobs_per_sec / base * 1000.0).round() / 1000.0);
                v
            })
            .collect(),
    )
}
