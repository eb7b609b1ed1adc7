//! The exactly-once Iceberg sink: parallel writers and one committer (Flink's design).
//!
//! - [`IcebergWriter`] (any parallelism) writes incoming [`ArrowBatch`]es into Parquet data
//!   files of the table (rolling at the target file size). When a checkpoint is taken it closes
//!   its files and emits them as a [`WriteResult`] tagged with the checkpoint id *before the
//!   barrier* (the pre-barrier hook), so the committer's state of that checkpoint holds them.
//! - [`IcebergCommitter`] (parallelism 1) collects the results per checkpoint (its checkpointed
//!   state) and, when checkpoint `n` completed, commits the files of every checkpoint up to `n`
//!   — one append snapshot per checkpoint, whose summary carries `weir.job-id` and
//!   `weir.checkpoint-id`. Before committing it reads the highest checkpoint id the table already
//!   has for this job id and skips those: a restored job never commits a checkpoint twice, and
//!   the results restored with a completed checkpoint are committed at start, so none is lost.
//!   At the end of input everything left is committed as checkpoint `u64::MAX`.
//! - Post-commit stream: the committer emits a [`CommittedSnapshot`] per commit as soon as it
//!   committed (in `notify_checkpoint_complete`), for a maintenance topology in the same job.
//!   The events are at-least-once: a checkpoint a restored job finds already committed is
//!   announced again (with the snapshot that holds it), so a failure between commit and emit
//!   loses no event.
//!
//! A batch that does not match the table's schema fails the writer before any file is written.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow_array::RecordBatch;
use iceberg::spec::{deserialize_data_file_from_json, serialize_data_file_to_json, DataFile};
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::{Catalog, TableIdent};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use weir_engine::checkpoint::{decode_state, encode_state};
use weir_engine::{Context, Operator, UserError};

use crate::catalog::CatalogConfig;
use crate::error::{report, user};
use crate::runtime::IcebergRuntime;
use crate::table_writer::TableWriter;

/// The summary key of the job id.
pub const JOB_ID: &str = "weir.job-id";
/// The summary key of the checkpoint id.
pub const CHECKPOINT_ID: &str = "weir.checkpoint-id";

/// An Arrow batch as a stream record (persisted as Arrow IPC when it is in-flight data of an
/// unaligned checkpoint).
#[derive(Debug, Clone, PartialEq)]
pub struct ArrowBatch(pub RecordBatch);

impl Serialize for ArrowBatch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = Vec::new();
        {
            let mut w = arrow_ipc::writer::StreamWriter::try_new(&mut buf, &self.0.schema())
                .map_err(serde::ser::Error::custom)?;
            w.write(&self.0).map_err(serde::ser::Error::custom)?;
            w.finish().map_err(serde::ser::Error::custom)?;
        }
        s.serialize_bytes(&buf)
    }
}

impl<'de> Deserialize<'de> for ArrowBatch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes: Vec<u8> = serde::Deserialize::deserialize(d)?;
        let mut r = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
            .map_err(serde::de::Error::custom)?;
        match r.next() {
            Some(Ok(b)) => Ok(ArrowBatch(b)),
            Some(Err(e)) => Err(serde::de::Error::custom(e)),
            None => Err(serde::de::Error::custom(
                "an Arrow IPC stream without a batch",
            )),
        }
    }
}

/// The data files one writer subtask closed for one checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteResult {
    /// The checkpoint (`u64::MAX`: the end of input).
    pub checkpoint_id: u64,
    /// The writer subtask.
    pub subtask: usize,
    /// The writers' parallelism.
    pub writers: usize,
    /// The partition spec the files were written with.
    pub partition_spec_id: i32,
    /// The data files, in Iceberg's JSON form (possibly none: every writer reports every
    /// checkpoint, so the committer knows when it has everything up to it).
    pub data_files: Vec<String>,
}

/// A snapshot the committer committed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommittedSnapshot {
    /// The table.
    pub table: String,
    /// The new snapshot.
    pub snapshot_id: i64,
    /// The checkpoint whose files it holds.
    pub checkpoint_id: u64,
    /// Data files added.
    pub data_files: usize,
}

/// Where the sink writes.
#[derive(Debug, Clone)]
pub struct IcebergSinkConfig {
    /// The catalog.
    pub catalog: CatalogConfig,
    /// The table (it must exist).
    pub table: TableIdent,
    /// The job's id in snapshot summaries (stable across restarts of the job).
    pub job_id: String,
    /// Writers roll to a new data file at this size in bytes (`None`: the table's
    /// `write.target-file-size-bytes`, 512 MB unless set).
    pub target_file_size: Option<usize>,
}

impl IcebergSinkConfig {
    /// The sink of job `job_id` into `table` of `catalog` (the table must exist).
    pub fn new(catalog: CatalogConfig, table: TableIdent, job_id: impl Into<String>) -> Self {
        IcebergSinkConfig {
            catalog,
            table,
            job_id: job_id.into(),
            target_file_size: None,
        }
    }

    /// Rolls data files at `bytes` instead of the table's target file size.
    pub fn with_target_file_size(mut self, bytes: usize) -> Self {
        self.target_file_size = Some(bytes);
        self
    }
}

struct Open {
    rt: IcebergRuntime,
    catalog: Arc<dyn Catalog>,
    table: Table,
}

fn open(config: &IcebergSinkConfig) -> Result<Open, UserError> {
    let rt = IcebergRuntime::new(1).map_err(user)?;
    let (catalog, table) = rt.block_on(async {
        let catalog = config.catalog.open().await.map_err(user)?;
        let table = catalog
            .load_table(&config.table)
            .await
            .map_err(|e| format!("cannot load table '{}': {e}", config.table))?;
        Ok::<_, UserError>((catalog, table))
    })?;
    Ok(Open { rt, catalog, table })
}

/// Writes batches into data files (partitioned by the table's spec, rolled at the target file
/// size) as they arrive; closes them and hands them to the committer at every checkpoint.
pub struct IcebergWriter {
    config: IcebergSinkConfig,
    open: Option<Open>,
    files: Option<TableWriter>,
    /// A failure that lost written rows: every later call fails the task.
    failed: Option<String>,
}

impl IcebergWriter {
    /// A writer for `config`.
    pub fn new(config: IcebergSinkConfig) -> Self {
        IcebergWriter {
            config,
            open: None,
            files: None,
            failed: None,
        }
    }

    fn result(
        &mut self,
        checkpoint_id: u64,
        subtask: usize,
        writers: usize,
    ) -> Result<WriteResult, UserError> {
        if let Some(e) = &self.failed {
            return Err(e.clone().into());
        }
        let o = self.open.as_ref().ok_or("writer not opened")?;
        let closed: Vec<DataFile> = match self.files.as_mut() {
            Some(w) => match o.rt.block_on(w.close()) {
                Ok(files) => files,
                Err(e) => {
                    // The rows of the closed files are lost to this attempt: a declined
                    // checkpoint must not let later checkpoints commit without them.
                    let e = format!("closing the data files failed: {}", report(&e));
                    self.failed = Some(e.clone());
                    return Err(e.into());
                }
            },
            None => Vec::new(),
        };
        let m = o.table.metadata();
        let data_files = closed
            .into_iter()
            .map(|f| serialize_data_file_to_json(f, m.default_partition_type(), m.format_version()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(user)?;
        Ok(WriteResult {
            checkpoint_id,
            subtask,
            writers,
            partition_spec_id: m.default_partition_spec_id(),
            data_files,
        })
    }
}

impl Operator for IcebergWriter {
    type In = ArrowBatch;
    type Out = WriteResult;

    fn open(&mut self, _ctx: &mut Context<'_, WriteResult>) -> Result<(), UserError> {
        let o = open(&self.config)?;
        self.files = Some(TableWriter::new(&o.table, self.config.target_file_size).map_err(user)?);
        self.open = Some(o);
        Ok(())
    }

    fn process_element(
        &mut self,
        batch: ArrowBatch,
        _ctx: &mut Context<'_, WriteResult>,
    ) -> Result<(), UserError> {
        if let Some(e) = &self.failed {
            return Err(e.clone().into());
        }
        let o = self.open.as_ref().ok_or("writer not opened")?;
        let w = self.files.as_mut().ok_or("writer not opened")?;
        // The schema is checked first: a mismatching batch writes nothing.
        o.rt.block_on(w.write(&batch.0)).map_err(user)?;
        Ok(())
    }

    fn prepare_snapshot_pre_barrier(
        &mut self,
        checkpoint_id: u64,
        ctx: &mut Context<'_, WriteResult>,
    ) -> Result<(), UserError> {
        let info = ctx.info();
        let r = self.result(checkpoint_id, info.subtask, info.parallelism)?;
        ctx.emit(r);
        Ok(())
    }

    fn finish(&mut self, ctx: &mut Context<'_, WriteResult>) -> Result<(), UserError> {
        let info = ctx.info();
        let r = self.result(u64::MAX, info.subtask, info.parallelism)?;
        ctx.emit(r);
        Ok(())
    }
}

/// The highest checkpoint id job `job_id` committed to the table.
pub fn max_committed(job_id: &str, table: &Table) -> Option<u64> {
    table
        .metadata()
        .snapshots()
        .filter(|s| {
            s.summary()
                .additional_properties
                .get(JOB_ID)
                .map(String::as_str)
                == Some(job_id)
        })
        .filter_map(|s| {
            s.summary()
                .additional_properties
                .get(CHECKPOINT_ID)
                .and_then(|c| c.parse::<u64>().ok())
        })
        .max()
}

/// Removes and returns the files of every checkpoint up to `m` (all of them for `u64::MAX`).
fn take_upto(pending: &mut BTreeMap<u64, Vec<(i32, String)>>, m: u64) -> Vec<(i32, String)> {
    let upto = if m == u64::MAX {
        std::mem::take(pending)
    } else {
        let later = pending.split_off(&(m + 1));
        std::mem::replace(pending, later)
    };
    upto.into_values().flatten().collect()
}

/// Commits the writers' files when checkpoints complete (parallelism 1).
pub struct IcebergCommitter {
    config: IcebergSinkConfig,
    open: Option<Open>,
    state: CommitterState,
    committed: Vec<CommittedSnapshot>,
    /// The job's commit fence (from the operator's info at open), asked before every commit.
    fence: weir_engine::CommitFence,
}

/// What the committer checkpoints.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct CommitterState {
    /// Files not committed yet, by the checkpoint their writer closed them for.
    pending: BTreeMap<u64, Vec<(i32, String)>>,
    /// Per writer subtask, the newest checkpoint it reported (results of one writer arrive in
    /// order, so everything of that writer up to it is here).
    reported: BTreeMap<usize, u64>,
    /// The writers' parallelism (once known).
    writers: usize,
    /// The newest checkpoint known complete.
    completed: u64,
}

impl IcebergCommitter {
    /// A committer for `config`.
    pub fn new(config: IcebergSinkConfig) -> Self {
        IcebergCommitter {
            config,
            open: None,
            state: CommitterState::default(),
            committed: Vec::new(),
            fence: weir_engine::CommitFence::always(),
        }
    }

    /// Commits, as one snapshot tagged with checkpoint `m`, every pending file up to the newest
    /// complete checkpoint `m` that every writer has reported (so nothing up to `m` can still be
    /// on its way). Commits therefore happen whole and in checkpoint order, which makes "skip
    /// what the table already has up to its highest checkpoint id" exact after a restore.
    fn try_commit(&mut self) -> Result<(), UserError> {
        let st = &mut self.state;
        if st.writers == 0 || st.reported.len() < st.writers {
            return Ok(());
        }
        let all_reported = st.reported.values().copied().min().unwrap_or(0);
        let m = st.completed.min(all_reported);
        if st.pending.range(..=m).next().is_none() {
            return Ok(());
        }
        // A job of a session runtime that lost leadership must not commit (its successor
        // commits from the latest checkpoint instead).
        self.fence.may_commit().map_err(|e| e.to_string())?;
        let o = self.open.as_ref().ok_or("committer not opened")?;
        let ident = self.config.table.clone();
        let table = o.rt.block_on(o.catalog.load_table(&ident)).map_err(user)?;
        // A commit tagged c holds every checkpoint up to c: what the table has is dropped
        // (a restored job, or overlapping checkpoints whose older one committed meanwhile).
        let committed = max_committed(&self.config.job_id, &table);
        if let Some(c) = committed {
            let dropped = take_upto(&mut st.pending, c);
            if !dropped.is_empty() {
                tracing::info!(%ident, c, "checkpoints up to {c} already committed: skipped");
            }
        }
        if let Some(c) = committed.filter(|&c| c >= m) {
            // Announce the commit again (post-commit events are at-least-once).
            let c_str = c.to_string();
            let holder = table.metadata().snapshots().find(|s| {
                let p = &s.summary().additional_properties;
                p.get(JOB_ID) == Some(&self.config.job_id) && p.get(CHECKPOINT_ID) == Some(&c_str)
            });
            if let Some(s) = holder {
                self.committed.push(CommittedSnapshot {
                    table: ident.to_string(),
                    snapshot_id: s.snapshot_id(),
                    checkpoint_id: c,
                    data_files: 0,
                });
            }
            return Ok(());
        }
        let files_json = take_upto(&mut st.pending, m);
        if files_json.is_empty() {
            return Ok(());
        }
        let meta = table.metadata();
        let default_spec = meta.default_partition_spec_id();
        let files = files_json
            .iter()
            .map(|(spec, j)| {
                if *spec != default_spec {
                    // An append can only add files of the default spec.
                    return Err(format!(
                        "table '{ident}': its partition spec changed (files written with spec {spec}, the table's is now {default_spec}) while the sink ran; checkpoint {m} cannot be committed"
                    )
                    .into());
                }
                deserialize_data_file_from_json(
                    j,
                    default_spec,
                    meta.default_partition_type(),
                    meta.current_schema(),
                )
                .map_err(user)
            })
            .collect::<Result<Vec<_>, UserError>>()?;
        let n = files.len();
        let summary = HashMap::from([
            (JOB_ID.to_string(), self.config.job_id.clone()),
            (CHECKPOINT_ID.to_string(), m.to_string()),
        ]);
        let catalog = o.catalog.clone();
        let table = o.rt.block_on(async {
            let tx = Transaction::new(&table);
            let tx = tx
                .fast_append()
                .add_data_files(files)
                .set_snapshot_properties(summary)
                .apply(tx)?;
            tx.commit(&*catalog).await
        });
        let table = table.map_err(|e| format!("committing checkpoint {m}: {e}"))?;
        if let Some(s) = table.metadata().current_snapshot() {
            self.committed.push(CommittedSnapshot {
                table: ident.to_string(),
                snapshot_id: s.snapshot_id(),
                checkpoint_id: m,
                data_files: n,
            });
        }
        Ok(())
    }

    fn emit_committed(&mut self, ctx: &mut Context<'_, CommittedSnapshot>) {
        for c in self.committed.drain(..) {
            ctx.emit(c);
        }
    }
}

impl Operator for IcebergCommitter {
    type In = WriteResult;
    type Out = CommittedSnapshot;

    fn open(&mut self, ctx: &mut Context<'_, CommittedSnapshot>) -> Result<(), UserError> {
        if ctx.info().parallelism != 1 {
            return Err("the Iceberg committer runs with parallelism 1".into());
        }
        self.fence = ctx.info().commit_fence.clone();
        self.open = Some(open(&self.config)?);
        // Restored results belong to the completed (restored) checkpoint: commit them once
        // every writer's results up to it are here (unless the table already has them).
        self.try_commit()?;
        self.emit_committed(ctx);
        Ok(())
    }

    fn process_element(
        &mut self,
        r: WriteResult,
        ctx: &mut Context<'_, CommittedSnapshot>,
    ) -> Result<(), UserError> {
        let st = &mut self.state;
        if r.writers != st.writers {
            // Restored with another number of writers: the old subtasks report no more.
            st.reported.retain(|subtask, _| *subtask < r.writers);
            st.writers = r.writers;
        }
        let seen = st.reported.entry(r.subtask).or_default();
        *seen = (*seen).max(r.checkpoint_id);
        st.pending
            .entry(r.checkpoint_id)
            .or_default()
            .extend(r.data_files.into_iter().map(|f| (r.partition_spec_id, f)));
        self.try_commit()?;
        self.emit_committed(ctx);
        Ok(())
    }

    fn prepare_snapshot_pre_barrier(
        &mut self,
        _checkpoint_id: u64,
        ctx: &mut Context<'_, CommittedSnapshot>,
    ) -> Result<(), UserError> {
        self.emit_committed(ctx);
        Ok(())
    }

    fn snapshot_state(&mut self, checkpoint_id: u64) -> Result<Option<Vec<u8>>, UserError> {
        // Restored from this checkpoint, it is complete.
        let mut st = self.state.clone();
        st.completed = st.completed.max(checkpoint_id);
        Ok(Some(encode_state(&st)?))
    }

    fn restore_state(&mut self, state: &[u8]) -> Result<(), UserError> {
        self.state = decode_state(state)?;
        Ok(())
    }

    fn notify_checkpoint_complete(
        &mut self,
        checkpoint_id: u64,
        ctx: &mut Context<'_, CommittedSnapshot>,
    ) -> Result<(), UserError> {
        self.state.completed = self.state.completed.max(checkpoint_id);
        self.try_commit()?;
        // Post-commit events go out right away.
        self.emit_committed(ctx);
        Ok(())
    }

    fn finish(&mut self, ctx: &mut Context<'_, CommittedSnapshot>) -> Result<(), UserError> {
        // Every writer finished and reported `u64::MAX`: commit everything left.
        self.state.completed = u64::MAX;
        self.try_commit()?;
        self.emit_committed(ctx);
        Ok(())
    }
}

/// Turns records into Arrow batches for the writer: `to_batch` makes one batch of up to
/// `batch_size` records. It buffers nothing across a checkpoint (what it holds goes out before
/// the barrier) nor past the end of input.
pub struct RowBatcher<T, F> {
    to_batch: F,
    batch_size: usize,
    rows: Vec<T>,
}

impl<T, F> RowBatcher<T, F> {
    /// A batcher of `batch_size` records per batch.
    pub fn new(batch_size: usize, to_batch: F) -> Self {
        RowBatcher {
            to_batch,
            batch_size: batch_size.max(1),
            rows: Vec::new(),
        }
    }
}

impl<T, F> RowBatcher<T, F>
where
    T: weir_engine::Data,
    F: FnMut(&[T]) -> Result<RecordBatch, UserError> + Send + 'static,
{
    fn emit(&mut self, ctx: &mut Context<'_, ArrowBatch>) -> Result<(), UserError> {
        if !self.rows.is_empty() {
            let batch = (self.to_batch)(&self.rows)?;
            self.rows.clear();
            ctx.emit(ArrowBatch(batch));
        }
        Ok(())
    }
}

impl<T, F> Operator for RowBatcher<T, F>
where
    T: weir_engine::Data,
    F: FnMut(&[T]) -> Result<RecordBatch, UserError> + Send + 'static,
{
    type In = T;
    type Out = ArrowBatch;
    fn process_element(
        &mut self,
        row: T,
        ctx: &mut Context<'_, ArrowBatch>,
    ) -> Result<(), UserError> {
        self.rows.push(row);
        if self.rows.len() >= self.batch_size {
            self.emit(ctx)?;
        }
        Ok(())
    }
    fn prepare_snapshot_pre_barrier(
        &mut self,
        _checkpoint_id: u64,
        ctx: &mut Context<'_, ArrowBatch>,
    ) -> Result<(), UserError> {
        self.emit(ctx)
    }
    fn finish(&mut self, ctx: &mut Context<'_, ArrowBatch>) -> Result<(), UserError> {
        self.emit(ctx)
    }
}

/// The exactly-once Iceberg sink as one piece of a job: [`IcebergWriter`]s (parallel) and one
/// [`IcebergCommitter`], wired by [`IcebergSinkExt::sink_to_iceberg`].
#[derive(Debug, Clone)]
pub struct IcebergSink {
    config: IcebergSinkConfig,
    writers: Option<usize>,
    uid: String,
}

impl IcebergSink {
    /// The sink for `config`, with the job's default parallelism of writers and the uids
    /// `iceberg-sink-writer` / `iceberg-sink-committer`.
    pub fn new(config: IcebergSinkConfig) -> Self {
        IcebergSink {
            config,
            writers: None,
            uid: "iceberg-sink".into(),
        }
    }

    /// Runs `n` writer subtasks.
    pub fn writers(mut self, n: usize) -> Self {
        self.writers = Some(n);
        self
    }

    /// The uid prefix of the writer and committer (their state is restored by uid: keep it
    /// stable, and distinct for two sinks in one job).
    pub fn uid(mut self, prefix: impl Into<String>) -> Self {
        self.uid = prefix.into();
        self
    }
}

/// Adds the Iceberg sink to a stream of Arrow batches.
pub trait IcebergSinkExt {
    /// Writes the batches into the sink's table, exactly once; returns the post-commit stream
    /// (one [`CommittedSnapshot`] per commit).
    fn sink_to_iceberg(&self, sink: IcebergSink) -> weir_engine::DataStream<CommittedSnapshot>;
}

impl IcebergSinkExt for weir_engine::DataStream<ArrowBatch> {
    fn sink_to_iceberg(&self, sink: IcebergSink) -> weir_engine::DataStream<CommittedSnapshot> {
        let (w, c) = (sink.config.clone(), sink.config);
        let writers = self
            .transform("Iceberg Writer", move |_| IcebergWriter::new(w.clone()))
            .uid(&format!("{}-writer", sink.uid));
        let writers = match sink.writers {
            Some(n) => writers.set_parallelism(n),
            None => writers,
        };
        writers
            .transform("Iceberg Committer", move |_| {
                IcebergCommitter::new(c.clone())
            })
            .uid(&format!("{}-committer", sink.uid))
            .set_parallelism(1)
    }
}
