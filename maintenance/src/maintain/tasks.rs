//! The maintenance tasks, each a subgraph `planner (1) → workers (parallel) → finisher (1)`
//! that turns a [`Trigger`] into one [`TaskResult`].
//!
//! - **RewriteDataFiles**: the planner keeps a [`LiveFiles`] view of the table's live data
//!   files (a full scan at the first trigger, then updated from the manifests the new snapshots
//!   added; not checkpointed: after a restart the first trigger scans again) and bin-packs the
//!   live data files that are too small or too
//!   large (per partition: at least `min_input_files` files, or enough bytes for a target-size
//!   file) into rewrite groups of at most `max_file_group_size` bytes (and `max_rewrite_bytes`
//!   in all); workers read each group (schema-cast) and write it at the target size; the
//!   finisher commits REPLACE snapshots — one for all groups, or with partial progress up to
//!   `max_commits` commits — with the planned-on snapshot's sequence number. A group whose
//!   files another commit removed meanwhile is skipped and counted as a conflict.
//! - **ExpireSnapshots**: the planner expires snapshots (metadata) and hands the unreachable
//!   files to the workers in batches of `delete_batch_size`, who delete them in parallel.
//! - **DeleteOrphanFiles** and **RewriteManifests** run in the planner.
//!
//! Invariants: every trigger yields exactly one result (a failure is a result with
//! `success: false` and the error, not a job failure); work items carry their trigger, index
//! and the total, and the finisher (checkpointed) completes a trigger only when all its items
//! are back; a recovery trigger passes through as a recovery result.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use iceberg::spec::{deserialize_data_file_from_json, serialize_data_file_to_json, DataFile};
use iceberg::table::Table;
use iceberg::{Catalog, TableIdent};
use serde::{Deserialize, Serialize};
use weir_engine::checkpoint::{decode_state, encode_state};
use weir_engine::{now_ms, Context, Operator, UserError};

use super::live_files::{LiveFile, LiveFiles};
use super::trigger::{Trigger, TriggerConditions};
use crate::catalog::CatalogConfig;
use crate::error::{report, user, MaintenanceError, Result};
use crate::expire::{delete_file, expire_metadata, ExpireSettings};
use crate::manifests::{rewrite_manifests, ManifestSettings};
use crate::orphans::{delete_orphan_files, OrphanSettings};
use crate::replace::{commit_replace, live_data_files, ReplaceError};
use crate::rewrite::read_data_files;
use crate::runtime::IcebergRuntime;
use crate::table_writer::TableWriter;

/// Bin-pack compaction settings (Iceberg's names and defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RewriteSettings {
    /// Target file size (`None`: the table's `write.target-file-size-bytes`, 512 MB).
    pub target_file_size: Option<u64>,
    /// Files below this fraction of the target are rewritten (0.75).
    pub min_file_size_ratio: f64,
    /// Files above this multiple of the target are rewritten (1.8).
    pub max_file_size_ratio: f64,
    /// A partition is rewritten when it has at least this many candidate files (5)…
    pub min_input_files: usize,
    /// …or its candidates hold at least a target file's worth of bytes (and more than one).
    /// Groups hold at most this many bytes (100 GB).
    pub max_file_group_size: u64,
    /// At most this many bytes are rewritten per run (`None`: no limit).
    pub max_rewrite_bytes: Option<u64>,
    /// Commit in several steps (at most `max_commits`) instead of one commit.
    pub partial_progress: bool,
    /// Commits of a partial-progress run (10).
    pub max_commits: usize,
    /// Rewrite every file, whatever its size.
    pub rewrite_all: bool,
    /// Files with at least this many delete files applying to them are rewritten whatever
    /// their size (`None`: unlimited, Iceberg's default).
    pub delete_file_threshold: Option<usize>,
    /// Only files that may hold rows matching this predicate are rewritten (`None`: all).
    pub filter: Option<iceberg::expr::Predicate>,
}

impl Default for RewriteSettings {
    fn default() -> Self {
        RewriteSettings {
            target_file_size: None,
            min_file_size_ratio: 0.75,
            max_file_size_ratio: 1.8,
            min_input_files: 5,
            max_file_group_size: 100 << 30,
            max_rewrite_bytes: None,
            partial_progress: false,
            max_commits: 10,
            rewrite_all: false,
            delete_file_threshold: None,
            filter: None,
        }
    }
}

/// Snapshot expiry settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpireTaskSettings {
    /// Expire snapshots older than this (`None`: the table's
    /// `history.expire.max-snapshot-age-ms`, 5 days).
    pub max_snapshot_age: Option<Duration>,
    /// Keep at least this many (`None`: `history.expire.min-snapshots-to-keep`, 1).
    pub retain_last: Option<usize>,
    /// Files deleted per batch (1000).
    pub delete_batch_size: usize,
}

impl Default for ExpireTaskSettings {
    fn default() -> Self {
        ExpireTaskSettings {
            max_snapshot_age: None,
            retain_last: None,
            delete_batch_size: 1000,
        }
    }
}

/// What a task does.
#[derive(Debug, Clone)]
pub enum TaskKind {
    /// Compaction.
    RewriteDataFiles(RewriteSettings),
    /// Snapshot expiry and deletion of the unreachable files.
    ExpireSnapshots(ExpireTaskSettings),
    /// Deletion of files no snapshot or metadata references.
    DeleteOrphanFiles(OrphanSettings),
    /// Merging small manifests.
    RewriteManifests(ManifestSettings),
}

impl TaskKind {
    /// The task's name (in results and uids).
    pub fn name(&self) -> &'static str {
        match self {
            TaskKind::RewriteDataFiles(_) => "RewriteDataFiles",
            TaskKind::ExpireSnapshots(_) => "ExpireSnapshots",
            TaskKind::DeleteOrphanFiles(_) => "DeleteOrphanFiles",
            TaskKind::RewriteManifests(_) => "RewriteManifests",
        }
    }
}

/// A task and when it runs.
#[derive(Debug, Clone)]
pub struct MaintenanceTask {
    /// What it does.
    pub kind: TaskKind,
    /// When it runs.
    pub conditions: TriggerConditions,
}

/// The outcome of one run of one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    /// The table.
    pub table: String,
    /// The task's name.
    pub task: String,
    /// The task's index.
    pub task_index: usize,
    /// When the trigger fired (ms since the epoch).
    pub trigger_ms: i64,
    /// Whether it succeeded.
    pub success: bool,
    /// How long it took, from trigger to result.
    pub duration_ms: u64,
    /// What it did (files rewritten, snapshots expired, …).
    pub counts: BTreeMap<String, u64>,
    /// The error, if it failed.
    pub error: Option<String>,
    /// A recovery marker, not a task run.
    pub recovery: bool,
}

/// A unit of work of one trigger.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Work {
    trigger: Trigger,
    index: usize,
    total: usize,
    counts: BTreeMap<String, u64>,
    item: WorkItem,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum WorkItem {
    Delete(Vec<String>),
    Rewrite { files: Vec<String> },
    Report { error: Option<String> },
}

/// A unit of work done.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Done {
    trigger: Trigger,
    index: usize,
    total: usize,
    counts: BTreeMap<String, u64>,
    outcome: Outcome,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Outcome {
    Deleted(u64),
    Rewritten {
        removed: Vec<String>,
        added: Vec<String>,
    },
    Report {
        error: Option<String>,
    },
}

struct Open {
    rt: IcebergRuntime,
    catalog: Arc<dyn Catalog>,
}

fn open(config: &CatalogConfig) -> Result<Open, UserError> {
    let rt = IcebergRuntime::new(1).map_err(user)?;
    let catalog = rt.block_on(config.open()).map_err(user)?;
    Ok(Open { rt, catalog })
}

fn load(o: &Open, ident: &TableIdent) -> Result<Table> {
    o.rt.block_on(o.catalog.load_table(ident))
        .map_err(|e| MaintenanceError::table(ident, "cannot load the table", e))
}

/// The planner of one task (parallelism 1).
pub struct TaskPlanner {
    catalog: CatalogConfig,
    table: TableIdent,
    kind: TaskKind,
    open: Option<Open>,
    /// RewriteDataFiles: the live data files, built at the first trigger and updated on later
    /// ones (not checkpointed; `None` again after a failed update, so the next trigger scans).
    live: Option<LiveFiles>,
}

impl TaskPlanner {
    /// The planner of `kind` on `table`.
    pub fn new(catalog: CatalogConfig, table: TableIdent, kind: TaskKind) -> Self {
        TaskPlanner {
            catalog,
            table,
            kind,
            open: None,
            live: None,
        }
    }

    fn plan(&mut self) -> Result<(BTreeMap<String, u64>, Vec<WorkItem>)> {
        let o = self
            .open
            .as_ref()
            .ok_or_else(|| MaintenanceError::Internal("planner not opened".into()))?;
        let mut counts = BTreeMap::new();
        match &self.kind {
            TaskKind::ExpireSnapshots(s) => {
                let table = load(o, &self.table)?;
                let props = table.metadata().properties();
                let age_ms = match s.max_snapshot_age {
                    Some(a) => a.as_millis() as i64,
                    None => props
                        .get("history.expire.max-snapshot-age-ms")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(5 * 24 * 3600 * 1000),
                };
                let retain_last = match s.retain_last {
                    Some(r) => r,
                    None => props
                        .get("history.expire.min-snapshots-to-keep")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(1),
                };
                let settings = ExpireSettings {
                    older_than_ms: now_ms() - age_ms,
                    retain_last,
                };
                let (expired, files, _) =
                    o.rt.block_on(expire_metadata(&*o.catalog, &self.table, settings))?;
                counts.insert("snapshots_expired".into(), expired.len() as u64);
                let items = files
                    .chunks(s.delete_batch_size.max(1))
                    .map(|c| WorkItem::Delete(c.to_vec()))
                    .collect();
                Ok((counts, items))
            }
            TaskKind::RewriteDataFiles(s) => {
                let table = load(o, &self.table)?;
                // Taken out while it is refreshed: a failed update leaves `None` (scan next time).
                let live = match self.live.take() {
                    Some(mut live) => {
                        let refresh = o.rt.block_on(live.update(&table))?;
                        tracing::debug!(
                            table = %self.table,
                            ?refresh,
                            files = live.len(),
                            "live data files updated"
                        );
                        live
                    }
                    None => o.rt.block_on(LiveFiles::load(&table))?,
                };
                let selection = o.rt.block_on(selection(&table, s));
                let groups =
                    selection.and_then(|sel| plan_rewrite_selected(&live, &table, s, sel.as_ref()));
                self.live = Some(live);
                let groups = groups?;
                counts.insert("groups_planned".into(), groups.len() as u64);
                let live = self.live.as_ref().ok_or_else(|| {
                    MaintenanceError::Internal("no live-file view after planning".into())
                })?;
                counts.insert(
                    "planned_on_snapshot".into(),
                    live.snapshot_id().map(|i| i as u64).unwrap_or(0),
                );
                // The added files get this data sequence number (read now: the snapshot may be
                // expired by the time the groups are committed).
                counts.insert(
                    "planned_sequence_number".into(),
                    live.sequence_number().max(0) as u64,
                );
                let items = groups
                    .into_iter()
                    .map(|files| WorkItem::Rewrite { files })
                    .collect();
                Ok((counts, items))
            }
            TaskKind::DeleteOrphanFiles(s) => {
                let table = load(o, &self.table)?;
                let r = o.rt.block_on(delete_orphan_files(
                    &table,
                    &crate::location::LocalLister,
                    s,
                    std::time::SystemTime::now(),
                ))?;
                counts.insert("orphans".into(), r.orphans.len() as u64);
                counts.insert("deleted".into(), r.deleted as u64);
                counts.insert("too_new".into(), r.too_new as u64);
                counts.insert("bytes".into(), r.bytes);
                Ok((counts, Vec::new()))
            }
            TaskKind::RewriteManifests(s) => {
                let r = o.rt.block_on(rewrite_manifests(
                    &self.catalog,
                    &*o.catalog,
                    &self.table,
                    s,
                    8,
                ))?;
                counts.insert("manifests_before".into(), r.manifests_before as u64);
                counts.insert("manifests_after".into(), r.manifests_after as u64);
                counts.insert("entries".into(), r.entries as u64);
                counts.insert("committed".into(), u64::from(r.snapshot_id.is_some()));
                Ok((counts, Vec::new()))
            }
        }
    }
}

impl Operator for TaskPlanner {
    type In = Trigger;
    type Out = Work;

    fn open(&mut self, _ctx: &mut Context<'_, Work>) -> Result<(), UserError> {
        self.open = Some(open(&self.catalog)?);
        Ok(())
    }

    fn process_element(
        &mut self,
        trigger: Trigger,
        ctx: &mut Context<'_, Work>,
    ) -> Result<(), UserError> {
        if self.open.is_none() {
            return Err("planner not opened".into());
        }
        let (counts, items) = if trigger.recovery {
            (BTreeMap::new(), Vec::new())
        } else {
            match self.plan() {
                Ok(p) => p,
                Err(e) => {
                    let e = report(&e);
                    tracing::warn!(table = %self.table, task = self.kind.name(), "task failed: {e}");
                    (BTreeMap::new(), vec![WorkItem::Report { error: Some(e) }])
                }
            }
        };
        let items = if items.is_empty() {
            vec![WorkItem::Report { error: None }]
        } else {
            items
        };
        let total = items.len();
        for (index, item) in items.into_iter().enumerate() {
            ctx.emit(Work {
                trigger: trigger.clone(),
                index,
                total,
                counts: counts.clone(),
                item,
            });
        }
        Ok(())
    }
}

/// Plans bin-pack rewrite groups on the table's current snapshot, scanning all its manifests.
///
/// # Errors
///
/// Returns [`MaintenanceError::Table`] when the table's manifests cannot be read, the
/// filter's scan cannot be planned, or `s.target_file_size` is `None` and the table's
/// properties cannot be parsed.
pub async fn plan_rewrite(table: &Table, s: &RewriteSettings) -> Result<Vec<Vec<String>>> {
    let (_, files) = live_data_files(table).await?;
    let (target, min, max) = size_bounds(table, s)?;
    let selection = selection(table, s).await?;
    Ok(bin_pack(&files, target, min, max, s, selection.as_ref()))
}

/// What the filter and the delete-file threshold select (from one scan plan of the table).
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// With a filter: the only files that may be rewritten.
    eligible: Option<std::collections::HashSet<String>>,
    /// Files with at least the threshold's delete files: rewritten whatever their size.
    forced: std::collections::HashSet<String>,
}

/// The selection of `s`'s filter and delete-file threshold (`None` when neither is set).
///
/// # Errors
///
/// Returns [`MaintenanceError::Table`] when the table's scan cannot be planned (e.g. the
/// filter names a column the table does not have).
pub async fn selection(table: &Table, s: &RewriteSettings) -> Result<Option<Selection>> {
    use futures::TryStreamExt;
    if s.filter.is_none() && s.delete_file_threshold.is_none() {
        return Ok(None);
    }
    let e = |e: iceberg::Error| {
        MaintenanceError::table(table.identifier(), "cannot plan the filter's scan", e)
    };
    if table.metadata().current_snapshot().is_none() {
        return Ok(Some(Selection::default()));
    }
    let mut scan = table.scan();
    if let Some(f) = &s.filter {
        scan = scan.with_filter(f.clone());
    }
    let tasks: Vec<iceberg::scan::FileScanTask> = scan
        .build()
        .map_err(e)?
        .plan_files()
        .await
        .map_err(e)?
        .try_collect()
        .await
        .map_err(e)?;
    let mut sel = Selection::default();
    if s.filter.is_some() {
        sel.eligible = Some(tasks.iter().map(|t| t.data_file_path.clone()).collect());
    }
    if let Some(n) = s.delete_file_threshold {
        sel.forced = tasks
            .iter()
            .filter(|t| t.deletes.len() >= n.max(1))
            .map(|t| t.data_file_path.clone())
            .collect();
    }
    Ok(Some(sel))
}

/// Plans bin-pack rewrite groups on the live data files of `live` (a view of `table`, which
/// gives the target file size): the same groups [`plan_rewrite`] makes on the view's snapshot,
/// without reading a manifest.
///
/// # Errors
///
/// Returns [`MaintenanceError::Table`] when `s.target_file_size` is `None` and the table's
/// properties cannot be parsed.
pub fn plan_rewrite_live(
    live: &LiveFiles,
    table: &Table,
    s: &RewriteSettings,
) -> Result<Vec<Vec<String>>> {
    plan_rewrite_selected(live, table, s, None)
}

/// [`plan_rewrite_live`] with the [`selection`] of the settings' filter and delete-file
/// threshold.
///
/// # Errors
///
/// Returns [`MaintenanceError::Table`] when `s.target_file_size` is `None` and the table's
/// properties cannot be parsed.
pub fn plan_rewrite_selected(
    live: &LiveFiles,
    table: &Table,
    s: &RewriteSettings,
    selection: Option<&Selection>,
) -> Result<Vec<Vec<String>>> {
    let (target, min, max) = size_bounds(table, s)?;
    // Only files of the default spec: REPLACE commits write the added files with it.
    let spec = table.metadata().default_partition_spec_id();
    let files: Vec<(&str, &LiveFile)> = live.iter().filter(|(_, f)| f.spec_id == spec).collect();
    Ok(bin_pack(&files, target, min, max, s, selection))
}

/// The target file size and the sizes below and above which files are rewritten.
fn size_bounds(table: &Table, s: &RewriteSettings) -> Result<(u64, u64, u64)> {
    let target = match s.target_file_size {
        Some(t) => t,
        None => {
            table
                .metadata()
                .table_properties()
                .map_err(|e| {
                    MaintenanceError::table(
                        table.identifier(),
                        "cannot read the table properties",
                        e,
                    )
                })?
                .write_target_file_size_bytes as u64
        }
    }
    .max(1);
    let min = (target as f64 * s.min_file_size_ratio) as u64;
    let max = (target as f64 * s.max_file_size_ratio) as u64;
    Ok((target, min, max))
}

/// What bin-packing needs of a file.
trait Packable {
    fn file_path(&self) -> &str;
    fn file_size_in_bytes(&self) -> u64;
    /// The partition value files are grouped by (its `Debug` form).
    fn partition_key(&self) -> Cow<'_, str>;
}

impl Packable for DataFile {
    fn file_path(&self) -> &str {
        DataFile::file_path(self)
    }
    fn file_size_in_bytes(&self) -> u64 {
        DataFile::file_size_in_bytes(self)
    }
    fn partition_key(&self) -> Cow<'_, str> {
        Cow::Owned(format!("{:?}", self.partition()))
    }
}

impl Packable for (&str, &LiveFile) {
    fn file_path(&self) -> &str {
        self.0
    }
    fn file_size_in_bytes(&self) -> u64 {
        self.1.file_size_in_bytes
    }
    fn partition_key(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.1.partition_key)
    }
}

fn bin_pack<F: Packable>(
    files: &[F],
    target: u64,
    min: u64,
    max: u64,
    s: &RewriteSettings,
    selection: Option<&Selection>,
) -> Vec<Vec<String>> {
    let forced = |path: &str| selection.is_some_and(|sel| sel.forced.contains(path));
    let eligible = |path: &str| {
        selection
            .and_then(|sel| sel.eligible.as_ref())
            .is_none_or(|e| e.contains(path))
    };
    // Candidates per partition (spec id + partition value, in a stable order).
    let mut by_partition: BTreeMap<Cow<'_, str>, Vec<&F>> = BTreeMap::new();
    for f in files {
        let size = f.file_size_in_bytes();
        if !eligible(f.file_path()) {
            continue;
        }
        if s.rewrite_all || size < min || size > max || forced(f.file_path()) {
            by_partition.entry(f.partition_key()).or_default().push(f);
        }
    }
    let mut groups = Vec::new();
    let mut budget = s.max_rewrite_bytes.unwrap_or(u64::MAX);
    for (_, mut candidates) in by_partition {
        let bytes: u64 = candidates.iter().map(|f| f.file_size_in_bytes()).sum();
        let too_large = candidates
            .iter()
            .any(|f| f.file_size_in_bytes() > max || forced(f.file_path()));
        let worth = s.rewrite_all
            || candidates.len() >= s.min_input_files
            || (candidates.len() > 1 && bytes >= target)
            || too_large;
        if !worth {
            continue;
        }
        candidates.sort_by(|a, b| a.file_path().cmp(b.file_path()));
        // A group of one file is rewritten only when that file is too large (else the same
        // file would come back, and be rewritten again at the next trigger).
        let keep = |group: Vec<String>, largest: u64, groups: &mut Vec<Vec<String>>| {
            let any_forced = group.iter().any(|p| forced(p));
            if group.len() > 1
                || largest > max
                || any_forced
                || (s.rewrite_all && !group.is_empty())
            {
                groups.push(group);
            }
        };
        let mut group: Vec<String> = Vec::new();
        let (mut group_bytes, mut largest) = (0u64, 0u64);
        for f in candidates {
            let size = f.file_size_in_bytes();
            if size > budget {
                break;
            }
            if !group.is_empty() && group_bytes + size > s.max_file_group_size {
                keep(std::mem::take(&mut group), largest, &mut groups);
                group_bytes = 0;
                largest = 0;
            }
            group.push(f.file_path().to_string());
            group_bytes += size;
            largest = largest.max(size);
            budget -= size;
        }
        keep(group, largest, &mut groups);
    }
    groups
}

/// A worker of one task (any parallelism): deletes files, rewrites groups.
pub struct TaskWorker {
    catalog: CatalogConfig,
    table: TableIdent,
    target_file_size: Option<u64>,
    open: Option<Open>,
}

impl TaskWorker {
    /// A worker on `table` (writing rewritten files at `target_file_size`).
    pub fn new(catalog: CatalogConfig, table: TableIdent, target_file_size: Option<u64>) -> Self {
        TaskWorker {
            catalog,
            table,
            target_file_size,
            open: None,
        }
    }

    fn rewrite(&self, o: &Open, files: &[String]) -> Result<Outcome> {
        let table = load(o, &self.table)?;
        let mut writer = TableWriter::new(&table, self.target_file_size.map(|t| t as usize))?;
        let mut rows = 0u64;
        // Deletes applied: the new files hold exactly the rows readers see.
        for batch in o.rt.block_on(read_data_files(&table, files))? {
            rows += batch.num_rows() as u64;
            o.rt.block_on(writer.write(&batch))?;
        }
        let added = o.rt.block_on(writer.close())?;
        let m = table.metadata();
        let added = added
            .into_iter()
            .map(|f| serialize_data_file_to_json(f, m.default_partition_type(), m.format_version()))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| MaintenanceError::Internal(e.to_string()))?;
        tracing::debug!(table = %self.table, files = files.len(), rows, "rewrote a group");
        Ok(Outcome::Rewritten {
            removed: files.to_vec(),
            added,
        })
    }
}

impl Operator for TaskWorker {
    type In = Work;
    type Out = Done;

    fn open(&mut self, _ctx: &mut Context<'_, Done>) -> Result<(), UserError> {
        self.open = Some(open(&self.catalog)?);
        Ok(())
    }

    fn process_element(&mut self, w: Work, ctx: &mut Context<'_, Done>) -> Result<(), UserError> {
        let o = self.open.as_ref().ok_or("worker not opened")?;
        let outcome = match &w.item {
            WorkItem::Delete(files) => {
                let table = load(o, &self.table);
                let r = table.and_then(|t| {
                    for f in files {
                        o.rt.block_on(delete_file(&t, f))?;
                    }
                    Ok(())
                });
                match r {
                    Ok(()) => Outcome::Deleted(files.len() as u64),
                    Err(e) => Outcome::Report {
                        error: Some(report(&e)),
                    },
                }
            }
            WorkItem::Rewrite { files } => match self.rewrite(o, files) {
                Ok(out) => out,
                Err(e) => Outcome::Report {
                    error: Some(report(&e)),
                },
            },
            WorkItem::Report { error } => Outcome::Report {
                error: error.clone(),
            },
        };
        ctx.emit(Done {
            trigger: w.trigger,
            index: w.index,
            total: w.total,
            counts: w.counts,
            outcome,
        });
        Ok(())
    }
}

/// The finisher of one task (parallelism 1): collects a trigger's work, commits rewrites,
/// emits the result.
pub struct TaskFinisher {
    catalog: CatalogConfig,
    table: TableIdent,
    task_index: usize,
    kind: TaskKind,
    open: Option<Open>,
    /// Work done so far, by trigger time (checkpointed).
    collected: BTreeMap<(i64, bool), Vec<Done>>,
}

impl TaskFinisher {
    /// The finisher of task `task_index` (`kind`) on `table`.
    pub fn new(
        catalog: CatalogConfig,
        table: TableIdent,
        task_index: usize,
        kind: TaskKind,
    ) -> Self {
        TaskFinisher {
            catalog,
            table,
            task_index,
            kind,
            open: None,
            collected: BTreeMap::new(),
        }
    }

    fn finish_trigger(
        &mut self,
        trigger: &Trigger,
        done: Vec<Done>,
    ) -> Result<TaskResult, UserError> {
        let mut counts = done.first().map(|d| d.counts.clone()).unwrap_or_default();
        let mut errors: Vec<String> = Vec::new();
        let mut deleted = 0u64;
        let mut groups: Vec<(Vec<String>, Vec<String>)> = Vec::new();
        for d in done {
            match d.outcome {
                Outcome::Deleted(n) => deleted += n,
                Outcome::Rewritten { removed, added } => groups.push((removed, added)),
                Outcome::Report { error: Some(e) } => errors.push(e),
                Outcome::Report { error: None } => {}
            }
        }
        if matches!(self.kind, TaskKind::ExpireSnapshots(_)) {
            counts.insert("files_deleted".into(), deleted);
        }
        if let TaskKind::RewriteDataFiles(s) = &self.kind {
            if !groups.is_empty() {
                let planned_on = counts.get("planned_on_snapshot").copied().unwrap_or(0) as i64;
                let planned_seq = counts.get("planned_sequence_number").map(|&q| q as i64);
                match self.commit_groups(groups, planned_on, planned_seq, s) {
                    Ok(c) => counts.extend(c),
                    Err(e) => errors.push(report(&e)),
                }
            }
        }
        let now = now_ms();
        Ok(TaskResult {
            table: self.table.to_string(),
            task: self.kind.name().to_string(),
            task_index: self.task_index,
            trigger_ms: trigger.timestamp_ms,
            success: errors.is_empty(),
            duration_ms: (now - trigger.timestamp_ms).max(0) as u64,
            counts,
            error: (!errors.is_empty()).then(|| errors.join("; ")),
            recovery: false,
        })
    }

    /// Commits the rewritten groups: one REPLACE, or up to `max_commits` with partial progress.
    fn commit_groups(
        &self,
        groups: Vec<(Vec<String>, Vec<String>)>,
        planned_on: i64,
        planned_seq: Option<i64>,
        s: &RewriteSettings,
    ) -> Result<BTreeMap<String, u64>> {
        let o = self
            .open
            .as_ref()
            .ok_or_else(|| MaintenanceError::Internal("finisher not opened".into()))?;
        let table = load(o, &self.table)?;
        let meta = table.metadata();
        let seq = match planned_seq {
            Some(q) => q,
            None => meta
                .snapshot_by_id(planned_on)
                .map(|s| s.sequence_number())
                .ok_or_else(|| {
                    MaintenanceError::table_msg(
                        &self.table,
                        format!("the planned-on snapshot {planned_on} is gone: its sequence number is unknown"),
                    )
                })?,
        };
        let commits = if s.partial_progress {
            s.max_commits.clamp(1, groups.len())
        } else {
            1
        };
        let per_commit = groups.len().div_ceil(commits);
        let mut counts = BTreeMap::new();
        let (mut committed, mut conflicts, mut removed_n, mut added_n) = (0u64, 0u64, 0u64, 0u64);
        let mut bytes_written = 0u64;
        for chunk in groups.chunks(per_commit) {
            let mut removed = BTreeSet::new();
            let mut added = Vec::new();
            for (r, a) in chunk {
                removed.extend(r.iter().cloned());
                for j in a {
                    added.push(
                        deserialize_data_file_from_json(
                            j,
                            meta.default_partition_spec_id(),
                            meta.default_partition_type(),
                            meta.current_schema(),
                        )
                        .map_err(|e| MaintenanceError::Internal(e.to_string()))?,
                    );
                }
            }
            let (nr, na) = (removed.len() as u64, added.len() as u64);
            let nb: u64 = added.iter().map(|f| f.file_size_in_bytes()).sum();
            match o.rt.block_on(commit_replace(
                &self.catalog,
                &*o.catalog,
                &self.table,
                &removed,
                added,
                seq,
                8,
            )) {
                Ok(_) => {
                    committed += chunk.len() as u64;
                    removed_n += nr;
                    added_n += na;
                    bytes_written += nb;
                }
                Err(ReplaceError::Conflict { file, .. }) => {
                    tracing::warn!(
                        "table '{}': {} rewrite group(s) skipped: {file} is no longer live (a concurrent commit removed it)",
                        self.table,
                        chunk.len()
                    );
                    conflicts += chunk.len() as u64;
                }
                Err(ReplaceError::Other(e)) => return Err(e),
            }
        }
        counts.insert("groups_committed".into(), committed);
        counts.insert("groups_conflicted".into(), conflicts);
        counts.insert("files_removed".into(), removed_n);
        counts.insert("files_added".into(), added_n);
        counts.insert("bytes_written".into(), bytes_written);
        Ok(counts)
    }
}

impl Operator for TaskFinisher {
    type In = Done;
    type Out = TaskResult;

    fn open(&mut self, _ctx: &mut Context<'_, TaskResult>) -> Result<(), UserError> {
        self.open = Some(open(&self.catalog)?);
        Ok(())
    }

    fn process_element(
        &mut self,
        d: Done,
        ctx: &mut Context<'_, TaskResult>,
    ) -> Result<(), UserError> {
        let key = (d.trigger.timestamp_ms, d.trigger.recovery);
        let trigger = d.trigger.clone();
        let total = d.total;
        let entry = self.collected.entry(key).or_default();
        if !entry.iter().any(|x| x.index == d.index) {
            entry.push(d);
        }
        if entry.len() < total {
            return Ok(());
        }
        let done = self.collected.remove(&key).unwrap_or_default();
        if trigger.recovery {
            ctx.emit(TaskResult {
                table: self.table.to_string(),
                task: self.kind.name().to_string(),
                task_index: self.task_index,
                trigger_ms: trigger.timestamp_ms,
                success: true,
                duration_ms: 0,
                counts: BTreeMap::new(),
                error: None,
                recovery: true,
            });
            return Ok(());
        }
        let result = self.finish_trigger(&trigger, done)?;
        ctx.emit(result);
        Ok(())
    }

    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<Option<Vec<u8>>, UserError> {
        if self.collected.is_empty() {
            return Ok(None);
        }
        Ok(Some(encode_state(&self.collected)?))
    }

    fn restore_state(&mut self, state: &[u8]) -> Result<(), UserError> {
        self.collected = decode_state(state)?;
        Ok(())
    }
}

/// Keeps only the triggers of task `task` (and recovery markers).
pub(crate) fn for_task(task: usize) -> impl Fn(&Trigger) -> bool + Clone + Send + 'static {
    move |t: &Trigger| t.recovery || t.task == task
}

/// One line describing a result, for summaries.
pub fn summary_line(r: &TaskResult) -> String {
    let counts: Vec<String> = r.counts.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "{} on {}: {} in {} ms{}{}",
        r.task,
        r.table,
        if r.success { "ok" } else { "FAILED" },
        r.duration_ms,
        if counts.is_empty() {
            String::new()
        } else {
            format!(" ({})", counts.join(", "))
        },
        r.error
            .as_ref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default()
    )
}
