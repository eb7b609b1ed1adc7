//! The maintenance lock: at most one maintenance task runs on a table at a time.
//!
//! The trigger manager asks for the lock before it fires a task; the lock remover at the end of
//! the task graphs releases it when the task's result arrives. Both talk to the lock through
//! their coordinators (job-side components), so operators never block on it:
//! - **in-job lock** (the default, valid when one job maintains the table): the lock is an entry
//!   of the job's [`CoordinatorStore`](weir_engine::coordination::CoordinatorStore), changed
//!   atomically;
//! - **SQL lock** (several jobs or processes on one table): a row of `weir_maintenance_lock` in
//!   a SQLite or PostgreSQL database, taken with an atomic conditional insert/update and held
//!   for a lease that the holder renews; a dead holder's lease runs out, so it cannot block
//!   forever.
//!
//! Recovery (Iceberg's semantics): when a job is restored from a checkpoint, a task that was
//! running may still have work in flight in the restored graph. The restored trigger manager
//! then puts the lock in *recovery* (no grant) and sends a recovery trigger through every task
//! graph; only when all of them passed it (everything before it is done) are grants given
//! again. Every restart first frees what the previous attempt held (its tasks no longer run).
//! A task's release frees only a held lock, never a recovery.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;
use weir_engine::coordination::{Coordinator, CoordinatorContext, SubtaskGateway};
use weir_engine::UserError;

use crate::error::{user, MaintenanceError, Result};
use crate::runtime::IcebergRuntime;

/// Where the lock lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockConfig {
    /// In the job (one job maintains the table).
    InJob,
    /// In a SQL database shared by every job maintaining the table.
    Sql {
        /// `sqlite://path` or `postgres://...`.
        url: String,
        /// How long a taken lock stays valid without renewal.
        lease: Duration,
        /// This job's holder id (one per job: its trigger manager takes the lock, its lock
        /// remover releases it).
        holder: String,
    },
}

/// The trigger manager's request to its coordinator.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum LockRequest {
    /// Take the lock for `task`.
    Acquire {
        /// The task's index.
        task: usize,
    },
    /// Still running `task`: renew the lease (SQL lock).
    Renew,
    /// The trigger manager was restored: hold every grant until its recovery marker passed
    /// every task graph.
    Recover,
}

/// The coordinator's answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum LockReply {
    /// The lock is taken for `task`: fire it.
    Granted {
        /// The task's index.
        task: usize,
    },
    /// Someone holds the lock (or it is in recovery): try again later.
    Busy {
        /// The task asked for.
        task: usize,
    },
}

/// The lock remover's message to its coordinator.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum LockRelease {
    /// Task `task` finished: release the lock.
    Task {
        /// The task's index.
        task: usize,
    },
    /// Every task graph passed the recovery trigger: leave recovery.
    Recovered,
}

/// The in-job lock's state in the coordinator store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InJob {
    Free,
    Held,
}

fn store_key(table: &str) -> String {
    format!("weir.maintenance.lock/{table}")
}

fn recovery_key(table: &str) -> String {
    format!("weir.maintenance.recovering/{table}")
}

/// A lock for one table, as the coordinators use it.
struct Lock {
    table: String,
    sql: Option<SqlLock>,
}

impl Lock {
    fn new(table: &str, config: &LockConfig) -> Result<Lock> {
        let sql = match config {
            LockConfig::InJob => None,
            LockConfig::Sql { url, lease, holder } => {
                Some(SqlLock::connect(url, table, holder, *lease)?)
            }
        };
        Ok(Lock {
            table: table.to_string(),
            sql,
        })
    }

    fn recovering(&self, ctx: &CoordinatorContext) -> Result<bool, UserError> {
        Ok(ctx.store().get::<bool>(&recovery_key(&self.table))? == Some(true))
    }

    fn try_lock(&mut self, ctx: &CoordinatorContext) -> Result<bool, UserError> {
        if self.recovering(ctx)? {
            return Ok(false);
        }
        if let Some(sql) = &mut self.sql {
            return sql.try_lock().map_err(user);
        }
        let mut granted = false;
        ctx.store()
            .compute::<InJob>(&store_key(&self.table), |cur| match cur {
                None | Some(InJob::Free) => {
                    granted = true;
                    Some(InJob::Held)
                }
                other => other,
            })?;
        Ok(granted)
    }

    /// Releases the lock a task held (a release never ends a recovery).
    fn unlock(&mut self, ctx: &CoordinatorContext) -> Result<(), UserError> {
        if let Some(sql) = &mut self.sql {
            return sql.unlock().map_err(user);
        }
        ctx.store()
            .compute::<InJob>(&store_key(&self.table), |cur| match cur {
                Some(InJob::Held) | None => Some(InJob::Free),
                other => other,
            })?;
        Ok(())
    }

    /// Frees the lock of a previous attempt (a restart), whatever its state.
    fn reset(&mut self, ctx: &CoordinatorContext) -> Result<(), UserError> {
        if let Some(sql) = &mut self.sql {
            sql.unlock().map_err(user)?;
        }
        ctx.store()
            .compute::<InJob>(&store_key(&self.table), |_| Some(InJob::Free))?;
        ctx.store().remove(&recovery_key(&self.table));
        Ok(())
    }

    /// Grants wait until the recovery marker passed every task graph. (A SQL lock row is not
    /// touched: another process may hold it legitimately.)
    fn set_recovering(&mut self, ctx: &CoordinatorContext, on: bool) -> Result<(), UserError> {
        ctx.store()
            .compute::<bool>(&recovery_key(&self.table), |_| Some(on))?;
        Ok(())
    }
}

/// The trigger manager's coordinator: grants or refuses the lock.
pub struct TriggerLockCoordinator {
    lock: Lock,
    gateway: Option<SubtaskGateway<LockReply>>,
}

impl TriggerLockCoordinator {
    /// The coordinator of `table`'s trigger manager.
    ///
    /// # Errors
    ///
    /// With [`LockConfig::Sql`], returns the errors of [`SqlLock::connect`].
    pub fn new(table: &str, config: &LockConfig) -> Result<Self> {
        Ok(TriggerLockCoordinator {
            lock: Lock::new(table, config)?,
            gateway: None,
        })
    }
}

impl Coordinator for TriggerLockCoordinator {
    type ToSubtask = LockReply;
    type FromSubtask = LockRequest;

    fn handle_event(
        &mut self,
        _subtask: usize,
        _attempt: u32,
        event: LockRequest,
        ctx: &CoordinatorContext,
    ) -> Result<(), UserError> {
        match event {
            LockRequest::Acquire { task } => {
                let reply = if self.lock.try_lock(ctx)? {
                    LockReply::Granted { task }
                } else {
                    LockReply::Busy { task }
                };
                if let Some(g) = &self.gateway {
                    // A failed subtask misses the reply; its restored self asks again.
                    let _ = g.send(reply);
                }
            }
            LockRequest::Renew => {
                if let Some(sql) = &mut self.lock.sql {
                    sql.renew().map_err(user)?;
                }
            }
            LockRequest::Recover => self.lock.set_recovering(ctx, true)?,
        }
        Ok(())
    }

    fn checkpoint(&mut self, _id: u64, _ctx: &CoordinatorContext) -> Result<Vec<u8>, UserError> {
        Ok(Vec::new())
    }

    fn reset_to_checkpoint(
        &mut self,
        _checkpoint_id: Option<u64>,
        _state: Option<&[u8]>,
        ctx: &CoordinatorContext,
    ) -> Result<(), UserError> {
        // Nothing of the previous attempt runs any more. A restored trigger manager asks for
        // recovery itself (`LockRequest::Recover`) before it sends its recovery marker.
        self.lock.reset(ctx)
    }

    fn attempt_ready(
        &mut self,
        _subtask: usize,
        _attempt: u32,
        gateway: SubtaskGateway<LockReply>,
        _ctx: &CoordinatorContext,
    ) -> Result<(), UserError> {
        self.gateway = Some(gateway);
        Ok(())
    }
}

/// The lock remover's coordinator: releases the lock.
pub struct LockRemoverCoordinator {
    lock: Lock,
}

impl LockRemoverCoordinator {
    /// The coordinator of `table`'s lock remover.
    ///
    /// # Errors
    ///
    /// With [`LockConfig::Sql`], returns the errors of [`SqlLock::connect`].
    pub fn new(table: &str, config: &LockConfig) -> Result<Self> {
        Ok(LockRemoverCoordinator {
            lock: Lock::new(table, config)?,
        })
    }
}

impl Coordinator for LockRemoverCoordinator {
    type ToSubtask = ();
    type FromSubtask = LockRelease;

    fn handle_event(
        &mut self,
        _subtask: usize,
        _attempt: u32,
        event: LockRelease,
        ctx: &CoordinatorContext,
    ) -> Result<(), UserError> {
        match event {
            LockRelease::Task { task } => {
                self.lock.unlock(ctx)?;
                // The tasks that ran (a `once` run ends when every task ran).
                ctx.store().compute::<std::collections::BTreeSet<usize>>(
                    &super::monitor::done_key(&self.lock.table),
                    |set| {
                        let mut set = set.unwrap_or_default();
                        set.insert(task);
                        Some(set)
                    },
                )?;
            }
            LockRelease::Recovered => self.lock.set_recovering(ctx, false)?,
        }
        Ok(())
    }

    fn checkpoint(&mut self, _id: u64, _ctx: &CoordinatorContext) -> Result<Vec<u8>, UserError> {
        Ok(Vec::new())
    }

    fn reset_to_checkpoint(
        &mut self,
        _checkpoint_id: Option<u64>,
        _state: Option<&[u8]>,
        _ctx: &CoordinatorContext,
    ) -> Result<(), UserError> {
        Ok(())
    }

    fn attempt_ready(
        &mut self,
        _subtask: usize,
        _attempt: u32,
        _gateway: SubtaskGateway<()>,
        _ctx: &CoordinatorContext,
    ) -> Result<(), UserError> {
        Ok(())
    }
}

/// A lock row in a SQL database, with a lease: `weir_maintenance_lock(lock_id, holder,
/// expires_ms)`. Taking it is one atomic statement (insert, or take over an expired row).
pub struct SqlLock {
    rt: IcebergRuntime,
    pool: AnyPool,
    url: String,
    lock_id: String,
    holder: String,
    lease: Duration,
    dollar: bool,
}

impl std::fmt::Debug for SqlLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlLock")
            .field("lock_id", &self.lock_id)
            .field("holder", &self.holder)
            .finish()
    }
}

use weir_state::now_ms;

impl SqlLock {
    /// Connects to `url` (creating the lock table if missing); the lock is `lock_id`, taken in
    /// the name of `holder`.
    ///
    /// # Errors
    ///
    /// Returns [`MaintenanceError::Catalog`] (naming `url` without its password) when the
    /// database cannot be reached within 5 s or the lock table cannot be created, and
    /// [`MaintenanceError::Internal`] when no runtime can be started for it.
    pub fn connect(url: &str, lock_id: &str, holder: &str, lease: Duration) -> Result<SqlLock> {
        let shown = redact(url);
        let err = |e: sqlx::Error| MaintenanceError::catalog(&shown, "maintenance lock", e);
        let rt = IcebergRuntime::new(1)?;
        sqlx::any::install_default_drivers();
        let url_rwc = if url.starts_with("sqlite:") && !url.contains('?') {
            format!("{url}?mode=rwc")
        } else {
            url.to_string()
        };
        let pool = rt.block_on(async {
            let pool = AnyPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(5))
                .connect(&url_rwc)
                .await
                .map_err(err)?;
            sqlx::query(
                "CREATE TABLE IF NOT EXISTS weir_maintenance_lock (lock_id VARCHAR(512) PRIMARY KEY, holder VARCHAR(128) NOT NULL, expires_ms BIGINT NOT NULL)",
            )
            .execute(&pool)
            .await
            .map_err(err)?;
            Ok::<_, MaintenanceError>(pool)
        })?;
        Ok(SqlLock {
            rt,
            pool,
            url: shown,
            lock_id: lock_id.to_string(),
            holder: holder.to_string(),
            lease,
            dollar: url.starts_with("postgres"),
        })
    }

    fn sql(&self, q: &str) -> String {
        if !self.dollar {
            return q.to_string();
        }
        let mut out = String::new();
        let mut n = 0;
        for c in q.chars() {
            if c == '?' {
                n += 1;
                out.push_str(&format!("${n}"));
            } else {
                out.push(c);
            }
        }
        out
    }

    fn err(&self, e: sqlx::Error) -> MaintenanceError {
        MaintenanceError::catalog(&self.url, format!("maintenance lock '{}'", self.lock_id), e)
    }

    /// Takes the lock if it is free or its lease ran out; true if taken now. Not reentrant: a
    /// holder asking again is refused (one task at a time, also within one job).
    ///
    /// # Errors
    ///
    /// Returns [`MaintenanceError::Catalog`] when the statement fails.
    pub fn try_lock(&mut self) -> Result<bool> {
        let now = now_ms();
        let expires = now + self.lease.as_millis() as i64;
        let insert = self.sql(
            "INSERT INTO weir_maintenance_lock (lock_id, holder, expires_ms) VALUES (?, ?, ?) ON CONFLICT (lock_id) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms WHERE weir_maintenance_lock.expires_ms < ?",
        );
        let done = self
            .rt
            .block_on(
                sqlx::query(&insert)
                    .bind(self.lock_id.clone())
                    .bind(self.holder.clone())
                    .bind(expires)
                    .bind(now)
                    .execute(&self.pool),
            )
            .map_err(|e| self.err(e))?;
        Ok(done.rows_affected() == 1)
    }

    /// Extends the lease if this instance holds the lock.
    ///
    /// # Errors
    ///
    /// Returns [`MaintenanceError::Catalog`] when the statement fails.
    pub fn renew(&mut self) -> Result<()> {
        let expires = now_ms() + self.lease.as_millis() as i64;
        let q = self.sql(
            "UPDATE weir_maintenance_lock SET expires_ms = ? WHERE lock_id = ? AND holder = ?",
        );
        self.rt
            .block_on(
                sqlx::query(&q)
                    .bind(expires)
                    .bind(self.lock_id.clone())
                    .bind(self.holder.clone())
                    .execute(&self.pool),
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Releases the lock if this holder has it (a lease that ran out and was taken over by
    /// another holder is theirs now).
    ///
    /// # Errors
    ///
    /// Returns [`MaintenanceError::Catalog`] when the statement fails.
    pub fn unlock(&mut self) -> Result<()> {
        let q = self.sql("DELETE FROM weir_maintenance_lock WHERE lock_id = ? AND holder = ?");
        self.rt
            .block_on(
                sqlx::query(&q)
                    .bind(self.lock_id.clone())
                    .bind(self.holder.clone())
                    .execute(&self.pool),
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Who holds the lock now (an unexpired row), if anyone.
    ///
    /// # Errors
    ///
    /// Returns [`MaintenanceError::Catalog`] when the query fails or its row cannot be read.
    pub fn holder(&self) -> Result<Option<String>> {
        use sqlx::Row;
        let q = self.sql("SELECT holder, expires_ms FROM weir_maintenance_lock WHERE lock_id = ?");
        let row = self
            .rt
            .block_on(
                sqlx::query(&q)
                    .bind(self.lock_id.clone())
                    .fetch_optional(&self.pool),
            )
            .map_err(|e| self.err(e))?;
        Ok(match row {
            Some(r) => {
                let holder: String = r.try_get(0).map_err(|e| self.err(e))?;
                let expires: i64 = r.try_get(1).map_err(|e| self.err(e))?;
                (expires >= now_ms()).then_some(holder)
            }
            None => None,
        })
    }
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(a)) if a > s => format!("{}***{}", &url[..s + 3], &url[a..]),
        _ => url.to_string(),
    }
}
