//! What `weir maintain` shows of its tables while it runs: per table and task, the runs, the
//! failures, the last run's result, and totals of what the tasks did (files and bytes
//! rewritten, snapshots expired, orphans deleted), plus the waits for a table's maintenance
//! lock. The dashboard reads it as its `maintenance` section, Prometheus as
//! `weir_maintenance_*` metrics with the labels `table` and `task`.
//!
//! Invariant: the board only adds up task results as they are reported (recovery markers are
//! not runs); it never reaches into the running job.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;
use serde_json::{json, Value};
use weir_engine::rest::prometheus_client::collector::Collector;
use weir_engine::rest::prometheus_client::encoding::DescriptorEncoder;
use weir_engine::rest::{encode_gauges, JobDirectory, RestOptions, RestServer};
use weir_engine::JobHandle;

use super::tasks::TaskResult;

/// The figures of one task of one table.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TaskBoard {
    /// Runs reported.
    pub runs: u64,
    /// Runs that failed.
    pub failures: u64,
    /// The last run.
    pub last: Option<TaskResult>,
    /// Totals of the runs' counts (`files_added`, `snapshots_expired`, …).
    pub totals: BTreeMap<String, u64>,
}

/// The maintenance board of a process; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct MaintenanceBoard {
    tasks: Arc<Mutex<BTreeMap<(String, String), TaskBoard>>>,
}

/// Waits for the maintenance lock of each table in this process (a trigger refused because
/// another task of the table holds it).
fn lock_waits() -> &'static Mutex<BTreeMap<String, Arc<AtomicU64>>> {
    static WAITS: OnceLock<Mutex<BTreeMap<String, Arc<AtomicU64>>>> = OnceLock::new();
    WAITS.get_or_init(Default::default)
}

/// The lock-wait counter of `table` (shared by every trigger manager of the table).
pub(crate) fn lock_wait_counter(table: &str) -> Arc<AtomicU64> {
    let mut w = lock_waits().lock().unwrap_or_else(|e| e.into_inner());
    w.entry(table.to_string()).or_default().clone()
}

fn lock_waits_of(table: &str) -> u64 {
    lock_waits()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(table)
        .map_or(0, |c| c.load(Ordering::Relaxed))
}

impl MaintenanceBoard {
    /// An empty board.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a reported result (recovery markers are ignored).
    pub fn record(&self, r: &TaskResult) {
        if r.recovery {
            return;
        }
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        let t = tasks.entry((r.table.clone(), r.task.clone())).or_default();
        t.runs += 1;
        if !r.success {
            t.failures += 1;
        }
        for (k, v) in &r.counts {
            *t.totals.entry(k.clone()).or_default() += v;
        }
        t.last = Some(r.clone());
    }

    /// The figures of every task, by (table, task).
    pub fn tasks(&self) -> BTreeMap<(String, String), TaskBoard> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Serves `job`'s REST API, metrics and dashboard with this board as its `maintenance`
    /// section and its metrics.
    ///
    /// # Errors
    ///
    /// The engine's [`RestError`](weir_engine::error::RestError) when the server cannot start.
    pub fn serve(
        &self,
        rest: RestOptions,
        job: &JobHandle,
    ) -> Result<RestServer, weir_engine::error::RestError> {
        let directory = JobDirectory::new();
        directory.register(job.observer());
        let view = self.clone();
        RestServer::builder(rest, directory)
            .section("maintenance", move || view.view())
            .collector(Box::new(self.clone()))
            .start()
    }

    /// The dashboard's `maintenance` section.
    pub fn view(&self) -> Value {
        let mut tables: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for ((table, task), b) in self.tasks() {
            let last = b.last.as_ref().map(|r| {
                let c = |k: &str| r.counts.get(k).copied().unwrap_or(0);
                json!({
                    "started": r.trigger_ms,
                    "duration_ms": r.duration_ms,
                    "result": if r.success { "ok" } else { "failed" },
                    "message": r.error,
                    "files_rewritten": c("files_removed"),
                    "bytes_rewritten": c("bytes_written"),
                    "snapshots_expired": c("snapshots_expired"),
                    "orphans_deleted": c("deleted"),
                    "counts": r.counts,
                })
            });
            tables.entry(table).or_default().push(json!({
                "task": task,
                "runs": b.runs,
                "failures": b.failures,
                "last_run": last,
                "totals": b.totals,
            }));
        }
        let tables: Vec<Value> = tables
            .into_iter()
            .map(|(table, tasks)| {
                json!({ "table": table, "lock_waits": lock_waits_of(&table), "tasks": tasks })
            })
            .collect();
        json!({ "tables": tables })
    }
}

/// Label set of a task metric.
type Labels = [(&'static str, String); 2];

impl Collector for MaintenanceBoard {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let tasks = self.tasks();
        let metric = |f: &dyn Fn(&TaskBoard) -> f64| -> Vec<(Labels, f64)> {
            tasks
                .iter()
                .map(|((table, task), b)| {
                    ([("table", table.clone()), ("task", task.clone())], f(b))
                })
                .collect()
        };
        let total =
            |k: &'static str| move |b: &TaskBoard| b.totals.get(k).copied().unwrap_or(0) as f64;
        encode_gauges(
            &mut encoder,
            "weir_maintenance_runs",
            "Task runs reported.",
            &metric(&|b| b.runs as f64),
        )?;
        encode_gauges(
            &mut encoder,
            "weir_maintenance_failures",
            "Task runs that failed.",
            &metric(&|b| b.failures as f64),
        )?;
        encode_gauges(
            &mut encoder,
            "weir_maintenance_files_rewritten",
            "Data files replaced by rewrites.",
            &metric(&total("files_removed")),
        )?;
        encode_gauges(
            &mut encoder,
            "weir_maintenance_files_written",
            "Data files written by rewrites.",
            &metric(&total("files_added")),
        )?;
        encode_gauges(
            &mut encoder,
            "weir_maintenance_bytes_rewritten",
            "Bytes of the data files rewrites wrote.",
            &metric(&total("bytes_written")),
        )?;
        encode_gauges(
            &mut encoder,
            "weir_maintenance_snapshots_expired",
            "Snapshots expired.",
            &metric(&total("snapshots_expired")),
        )?;
        encode_gauges(
            &mut encoder,
            "weir_maintenance_orphans_deleted",
            "Orphan files deleted.",
            &metric(&total("deleted")),
        )?;
        encode_gauges(
            &mut encoder,
            "weir_maintenance_last_run_duration_seconds",
            "Duration of the last run.",
            &metric(&|b| b.last.as_ref().map_or(0.0, |r| r.duration_ms as f64 / 1e3)),
        )?;
        let tables: std::collections::BTreeSet<&String> = tasks.keys().map(|(t, _)| t).collect();
        let waits: Vec<([(&'static str, String); 1], f64)> = tables
            .into_iter()
            .map(|t| ([("table", t.clone())], lock_waits_of(t) as f64))
            .collect();
        encode_gauges(
            &mut encoder,
            "weir_maintenance_lock_waits",
            "Triggers that waited because another task of the table held its lock.",
            &waits,
        )?;
        Ok(())
    }
}
