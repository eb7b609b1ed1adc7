//! Iceberg table maintenance as operator topologies of the weir runtime (Iceberg's Flink
//! TableMaintenance, and more).
//!
//! ```text
//! MonitorSource ─┐                         ┌→ planner → workers → finisher ─┐
//!  (or the sink's├→ TriggerManager ─ task ─┼→ planner → workers → finisher ─┼→ LockRemover → results
//!  commit events)┘   (lock, rate limit)    └→ …                             ┘
//! ```
//!
//! - [`change`]: table changes summed from snapshot summaries (REPLACE commits excluded);
//! - [`monitor`]: the rate-limited monitor source, and post-commit changes from the sink;
//! - [`trigger`]: the trigger manager (conditions, rate limit, fairness, timers, lock);
//! - [`lock`]: the maintenance lock (in-job through coordinators, or SQL with a lease) with
//!   Iceberg's recovery semantics;
//! - [`tasks`]: RewriteDataFiles, ExpireSnapshots, DeleteOrphanFiles, RewriteManifests;
//! - [`live_files`]: the live data files the rewrite planner plans on, updated incrementally
//!   from the manifests new snapshots added;
//! - [`config`]: the `weir maintain` configuration file; [`run`]: running it as a job;
//! - [`TableMaintenance`]: builds the topology for one table on a [`StreamEnv`].
//!
//! Everything is checkpointed with the job: the monitor's last snapshot, the trigger state,
//! the finishers' collected work. Each trigger yields exactly one [`TaskResult`].

pub mod board;
pub mod change;
pub mod config;
pub mod live_files;
pub mod lock;
pub mod monitor;
pub mod run;
pub mod tasks;
pub mod trigger;

use std::time::Duration;

use iceberg::TableIdent;
use weir_engine::{DataStream, StreamEnv};
use weir_operators::DataStreamExt;

pub use change::TableChange;
pub use config::MaintainConfig;
pub use lock::LockConfig;
pub use tasks::{
    summary_line, ExpireTaskSettings, MaintenanceTask, RewriteSettings, TaskKind, TaskResult,
};
pub use trigger::{Trigger, TriggerConditions};

use crate::catalog::CatalogConfig;
use crate::error::Result;
use crate::sink::CommittedSnapshot;
use lock::{LockRelease, LockRemoverCoordinator, TriggerLockCoordinator};
use monitor::{MonitorCoordinator, MonitorSource, PostCommitChanges};
use tasks::{TaskFinisher, TaskPlanner, TaskWorker};
use trigger::TriggerManager;

/// The maintenance of one table: its tasks, when they run, and the lock.
#[derive(Debug, Clone)]
pub struct TableMaintenance {
    catalog: CatalogConfig,
    table: TableIdent,
    tasks: Vec<MaintenanceTask>,
    rate_limit: Duration,
    lock_check_delay: Duration,
    max_read_back: usize,
    lock: LockConfig,
    parallelism: usize,
    uid: String,
}

impl TableMaintenance {
    /// Maintenance of `table` with Iceberg's defaults: rate limit 60 s, lock check delay 30 s,
    /// read back 100 snapshots, the in-job lock, workers at parallelism 1.
    pub fn new(catalog: CatalogConfig, table: TableIdent) -> Self {
        let uid = format!("maintenance-{}", table.to_string().replace('.', "-"));
        TableMaintenance {
            catalog,
            table,
            tasks: Vec::new(),
            rate_limit: Duration::from_secs(60),
            lock_check_delay: Duration::from_secs(30),
            max_read_back: 100,
            lock: LockConfig::InJob,
            parallelism: 1,
            uid,
        }
    }

    /// Adds a task.
    pub fn add(mut self, kind: TaskKind, conditions: TriggerConditions) -> Self {
        self.tasks.push(MaintenanceTask { kind, conditions });
        self
    }

    /// The minimum time between two task starts (and between two polls of the monitor).
    pub fn rate_limit(mut self, d: Duration) -> Self {
        self.rate_limit = d;
        self
    }

    /// How long to wait before asking again for a busy lock.
    pub fn lock_check_delay(mut self, d: Duration) -> Self {
        self.lock_check_delay = d;
        self
    }

    /// Snapshots the monitor reads back on a fresh start.
    pub fn max_read_back(mut self, n: usize) -> Self {
        self.max_read_back = n;
        self
    }

    /// The lock to use.
    pub fn lock(mut self, lock: LockConfig) -> Self {
        self.lock = lock;
        self
    }

    /// Parallelism of the workers (file deletion, rewriting).
    pub fn parallelism(mut self, p: usize) -> Self {
        self.parallelism = p.max(1);
        self
    }

    /// The uid prefix of the topology's operators (state is restored by uid).
    pub fn uid(mut self, prefix: impl Into<String>) -> Self {
        self.uid = prefix.into();
        self
    }

    /// The tasks, in order.
    pub fn tasks(&self) -> &[MaintenanceTask] {
        &self.tasks
    }

    /// The table.
    pub fn table(&self) -> &TableIdent {
        &self.table
    }

    /// A standalone maintenance topology on `env`, fed by the monitor source. With `once`,
    /// every task runs once and the job then ends by itself.
    ///
    /// # Errors
    ///
    /// Returns [`MaintenanceError::Config`](crate::MaintenanceError::Config) when no task was
    /// added, and with an SQL lock the errors of [`SqlLock::connect`](lock::SqlLock::connect).
    pub fn build(&self, env: &StreamEnv, once: bool) -> Result<DataStream<TaskResult>> {
        let (c, t, rate, back) = (
            self.catalog.clone(),
            self.table.clone(),
            self.rate_limit,
            self.max_read_back,
        );
        let (name, n) = (self.table.to_string(), self.tasks.len());
        let changes = env
            .add_non_parallel_source("Maintenance Monitor", move |_| {
                MonitorSource::new(c.clone(), t.clone(), rate, back, once)
            })
            .uid(&format!("{}-monitor", self.uid))
            .coordinated_by(move |_| MonitorCoordinator::new(&name, n));
        self.tasks_after(changes, once)
    }

    /// A maintenance topology fed by the sink's commit events (in the ingesting job).
    ///
    /// # Errors
    ///
    /// Returns [`MaintenanceError::Config`](crate::MaintenanceError::Config) when no task was
    /// added, and with an SQL lock the errors of [`SqlLock::connect`](lock::SqlLock::connect).
    pub fn post_commit(
        &self,
        commits: &DataStream<CommittedSnapshot>,
    ) -> Result<DataStream<TaskResult>> {
        let (c, t) = (self.catalog.clone(), self.table.clone());
        let changes = commits
            .transform("Maintenance Changes", move |_| {
                PostCommitChanges::new(c.clone(), t.clone())
            })
            .uid(&format!("{}-changes", self.uid))
            .set_parallelism(1);
        self.tasks_after(changes, false)
    }

    fn tasks_after(
        &self,
        changes: DataStream<TableChange>,
        once: bool,
    ) -> Result<DataStream<TaskResult>> {
        if self.tasks.is_empty() {
            return Err(crate::error::MaintenanceError::Config(format!(
                "table '{}': no maintenance task",
                self.table
            )));
        }
        let table = self.table.to_string();
        // Both coordinators are made here, so a bad lock configuration fails now.
        let trigger_lock = TriggerLockCoordinator::new(&table, &self.lock)?;
        let remover_lock = LockRemoverCoordinator::new(&table, &self.lock)?;
        let renew = match &self.lock {
            LockConfig::Sql { lease, .. } => Some(*lease / 3),
            LockConfig::InJob => None,
        };
        let conditions: Vec<TriggerConditions> =
            self.tasks.iter().map(|t| t.conditions.clone()).collect();
        let (rate, delay) = (self.rate_limit, self.lock_check_delay);
        let mut trigger_lock = Some(trigger_lock);
        let table_name = table.clone();
        let triggers = changes
            .transform("Trigger Manager", move |_| {
                TriggerManager::new(conditions.clone(), rate, delay, once)
                    .renew_every(renew)
                    .counting_lock_waits(&table_name)
            })
            .uid(&format!("{}-trigger", self.uid))
            .set_parallelism(1)
            .coordinated_by(move |_| {
                trigger_lock
                    .take()
                    .expect("a coordinator is made once per job")
            });
        let mut results = Vec::new();
        for (i, task) in self.tasks.iter().enumerate() {
            let name = task.kind.name();
            let keep = tasks::for_task(i);
            let (c, t, k) = (self.catalog.clone(), self.table.clone(), task.kind.clone());
            let work = triggers
                .filter(move |tr| keep(tr))
                .set_parallelism(1)
                .transform(&format!("{name} Planner"), move |_| {
                    TaskPlanner::new(c.clone(), t.clone(), k.clone())
                })
                .uid(&format!("{}-{i}-{name}-planner", self.uid))
                .set_parallelism(1)
                // Planners do long calls (expiry, orphan listing): never on the trigger
                // manager's thread, whose timers renew the lock's lease.
                .disable_chaining();
            let target = match &task.kind {
                TaskKind::RewriteDataFiles(s) => s.target_file_size,
                _ => None,
            };
            let (c, t) = (self.catalog.clone(), self.table.clone());
            let done = work
                .rebalance()
                .transform(&format!("{name} Worker"), move |_| {
                    TaskWorker::new(c.clone(), t.clone(), target)
                })
                .uid(&format!("{}-{i}-{name}-worker", self.uid))
                .set_parallelism(self.parallelism);
            let (c, t, k) = (self.catalog.clone(), self.table.clone(), task.kind.clone());
            let result = done
                .transform(&format!("{name} Finisher"), move |_| {
                    TaskFinisher::new(c.clone(), t.clone(), i, k.clone())
                })
                .uid(&format!("{}-{i}-{name}-finisher", self.uid))
                .set_parallelism(1);
            results.push(result);
        }
        let first = results.remove(0);
        let all = if results.is_empty() {
            first
        } else {
            first.union(&results)
        };
        let n = self.tasks.len();
        let mut remover_lock = Some(remover_lock);
        Ok(all
            .transform("Lock Remover", move |_| LockRemover::new(n))
            .uid(&format!("{}-lock-remover", self.uid))
            .set_parallelism(1)
            .coordinated_by(move |_| {
                remover_lock
                    .take()
                    .expect("a coordinator is made once per job")
            }))
    }
}

/// The end of the task graphs: releases the lock when a task's result arrives, and leaves
/// recovery when every task graph passed the recovery marker.
pub struct LockRemover {
    tasks: usize,
    recovered: usize,
}

impl LockRemover {
    /// A lock remover after `tasks` task graphs.
    pub fn new(tasks: usize) -> Self {
        LockRemover {
            tasks,
            recovered: 0,
        }
    }
}

impl weir_engine::Operator for LockRemover {
    type In = TaskResult;
    type Out = TaskResult;

    fn process_element(
        &mut self,
        r: TaskResult,
        ctx: &mut weir_engine::Context<'_, TaskResult>,
    ) -> std::result::Result<(), weir_engine::UserError> {
        if r.recovery {
            self.recovered += 1;
            if self.recovered >= self.tasks {
                self.recovered = 0;
                ctx.send_to_coordinator(LockRelease::Recovered)?;
            }
            return Ok(());
        }
        if r.success {
            tracing::info!("{}", summary_line(&r));
        } else {
            tracing::warn!("{}", summary_line(&r));
        }
        ctx.send_to_coordinator(LockRelease::Task { task: r.task_index })?;
        ctx.emit(r);
        Ok(())
    }
}
