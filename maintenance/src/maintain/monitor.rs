//! Where table changes come from: the monitor source (polling) or the sink's commit events.
//!
//! [`MonitorSource`] (parallelism 1) loads the table at most once per `rate_limit` and emits a
//! [`TableChange`] when snapshots were added since the last one seen (REPLACE snapshots count
//! as nothing). The last snapshot seen is its checkpointed state; a fresh start reads back at
//! most `max_read_back` snapshots. In `once` mode it emits one change and then waits until
//! its coordinator says that every task has run once, and finishes (so a `--once` job ends by
//! itself, through the normal end of input).
//!
//! [`PostCommitChanges`] turns the sink's [`CommittedSnapshot`] events into table changes, for
//! maintenance inside the ingesting job.

use std::sync::Arc;
use std::time::{Duration, Instant};

use iceberg::{Catalog, TableIdent};
use serde::{Deserialize, Serialize};
use weir_engine::checkpoint::{decode_state, encode_state};
use weir_engine::coordination::{Coordinator, CoordinatorContext, OperatorEvent, SubtaskGateway};
use weir_engine::{
    Context, Operator, OperatorInfo, Source, SourceContext, SourceStatus, UserError,
};

use super::change::{changes_since, TableChange};
use crate::catalog::CatalogConfig;
use crate::error::user;
use crate::runtime::IcebergRuntime;
use crate::sink::CommittedSnapshot;

/// The store key of the set of tasks that finished in a `once` run of `table`.
pub(crate) fn done_key(table: &str) -> String {
    format!("weir.maintenance.done/{table}")
}

/// Polls a table for new snapshots.
pub struct MonitorSource {
    catalog: CatalogConfig,
    table: TableIdent,
    rate_limit: Duration,
    max_read_back: usize,
    once: bool,
    last_seen: Option<i64>,
    next_poll: Option<Instant>,
    emitted_once: bool,
    finish: bool,
    open: Option<(IcebergRuntime, Arc<dyn Catalog>)>,
}

impl MonitorSource {
    /// A monitor of `table`.
    pub fn new(
        catalog: CatalogConfig,
        table: TableIdent,
        rate_limit: Duration,
        max_read_back: usize,
        once: bool,
    ) -> Self {
        MonitorSource {
            catalog,
            table,
            rate_limit,
            max_read_back: max_read_back.max(1),
            once,
            last_seen: None,
            next_poll: None,
            emitted_once: false,
            finish: false,
            open: None,
        }
    }

    fn poll_table(&mut self) -> Result<TableChange, UserError> {
        let (rt, catalog) = self.open.as_ref().ok_or("monitor not opened")?;
        let table = rt
            .block_on(catalog.load_table(&self.table))
            .map_err(|e| format!("monitor: cannot load table '{}': {e}", self.table))?;
        Ok(changes_since(&table, self.last_seen, self.max_read_back))
    }
}

/// The monitor's question to its coordinator in `once` mode.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AllTasksRan;

/// The coordinator's answer: every task ran; finish.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Finish;

impl Source for MonitorSource {
    type Out = TableChange;

    fn open(&mut self, info: &OperatorInfo) -> Result<(), UserError> {
        if info.parallelism != 1 {
            return Err("the maintenance monitor runs with parallelism 1".into());
        }
        let rt = IcebergRuntime::new(1).map_err(user)?;
        let catalog = rt.block_on(self.catalog.open()).map_err(user)?;
        self.open = Some((rt, catalog));
        Ok(())
    }

    fn poll_next(
        &mut self,
        ctx: &mut SourceContext<'_, TableChange>,
    ) -> Result<SourceStatus, UserError> {
        if self.finish {
            return Ok(SourceStatus::Finished);
        }
        let now = Instant::now();
        if let Some(at) = self.next_poll {
            if now < at {
                return Ok(SourceStatus::Pending(at - now));
            }
        }
        if self.once {
            if !self.emitted_once {
                let change = self.poll_table()?;
                self.last_seen = change.last_snapshot_id;
                ctx.emit(change);
                self.emitted_once = true;
            } else {
                ctx.send_to_coordinator(AllTasksRan)?;
            }
            self.next_poll = Some(now + Duration::from_millis(50));
            return Ok(SourceStatus::Pending(Duration::from_millis(50)));
        }
        let change = self.poll_table()?;
        self.last_seen = change.last_snapshot_id;
        if !change.is_empty() {
            ctx.emit(change);
        }
        self.next_poll = Some(now + self.rate_limit);
        Ok(SourceStatus::Pending(self.rate_limit))
    }

    fn handle_operator_event(&mut self, event: OperatorEvent) -> Result<(), UserError> {
        event.downcast::<Finish>()?;
        self.finish = true;
        Ok(())
    }

    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<Option<Vec<u8>>, UserError> {
        Ok(Some(encode_state(&self.last_seen)?))
    }

    fn restore_state(&mut self, state: &[u8]) -> Result<(), UserError> {
        self.last_seen = decode_state(state)?;
        Ok(())
    }
}

/// The monitor's coordinator: in `once` mode, answers [`Finish`] once `tasks` results came
/// back (counted by the lock remover's coordinator in the job's store).
pub struct MonitorCoordinator {
    table: String,
    tasks: usize,
    gateway: Option<SubtaskGateway<Finish>>,
}

impl MonitorCoordinator {
    /// The coordinator of `table`'s monitor, for a job of `tasks` tasks.
    pub fn new(table: &str, tasks: usize) -> Self {
        MonitorCoordinator {
            table: table.to_string(),
            tasks,
            gateway: None,
        }
    }
}

impl Coordinator for MonitorCoordinator {
    type ToSubtask = Finish;
    type FromSubtask = AllTasksRan;

    fn handle_event(
        &mut self,
        _subtask: usize,
        _attempt: u32,
        _event: AllTasksRan,
        ctx: &CoordinatorContext,
    ) -> Result<(), UserError> {
        let done = ctx
            .store()
            .get::<std::collections::BTreeSet<usize>>(&done_key(&self.table))?
            .map(|s| s.len())
            .unwrap_or(0);
        if done >= self.tasks {
            if let Some(g) = &self.gateway {
                let _ = g.send(Finish);
            }
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
        gateway: SubtaskGateway<Finish>,
        _ctx: &CoordinatorContext,
    ) -> Result<(), UserError> {
        self.gateway = Some(gateway);
        Ok(())
    }
}

/// Turns the sink's commit events into table changes (post-commit maintenance).
pub struct PostCommitChanges {
    catalog: CatalogConfig,
    table: TableIdent,
    open: Option<(IcebergRuntime, Arc<dyn Catalog>)>,
}

impl PostCommitChanges {
    /// Changes of `table` from its commit events.
    pub fn new(catalog: CatalogConfig, table: TableIdent) -> Self {
        PostCommitChanges {
            catalog,
            table,
            open: None,
        }
    }
}

impl Operator for PostCommitChanges {
    type In = CommittedSnapshot;
    type Out = TableChange;

    fn open(&mut self, _ctx: &mut Context<'_, TableChange>) -> Result<(), UserError> {
        let rt = IcebergRuntime::new(1).map_err(user)?;
        let catalog = rt.block_on(self.catalog.open()).map_err(user)?;
        self.open = Some((rt, catalog));
        Ok(())
    }

    fn process_element(
        &mut self,
        commit: CommittedSnapshot,
        ctx: &mut Context<'_, TableChange>,
    ) -> Result<(), UserError> {
        let (rt, catalog) = self.open.as_ref().ok_or("not opened")?;
        let table = rt
            .block_on(catalog.load_table(&self.table))
            .map_err(|e| format!("cannot load table '{}': {e}", self.table))?;
        let change = match table.metadata().snapshot_by_id(commit.snapshot_id) {
            Some(s) => TableChange::of_snapshot(s),
            // Expired already: count the commit from the event.
            None => TableChange {
                data_files: commit.data_files as u64,
                commits: 1,
                last_snapshot_id: Some(commit.snapshot_id),
                ..TableChange::default()
            },
        };
        ctx.emit(change);
        Ok(())
    }
}
