//! Rewrite groups: the unit of compaction. A group is a set of live data files; rewriting it
//! reads their rows, writes them again at the target file size and commits one REPLACE
//! snapshot (see [`replace`](crate::replace)) for the group.
//!
//! Invariants:
//! - groups are independent: each is its own commit, so one conflicting group costs only
//!   itself. A group whose files another commit removed meanwhile (a delete, an overwrite,
//!   another compaction) **conflicts** and is skipped with a log line naming the file; a lost
//!   compare-and-swap race (any concurrent commit, e.g. an append) is retried with backoff by
//!   the commit layer. Rows appended concurrently are never touched: they are in no group.
//! - the added files get the sequence number of the snapshot the groups were planned on, so
//!   equality deletes committed meanwhile still apply to them;
//! - rows are read with the table's delete files applied (iceberg-rust's scan reader), so the
//!   rewritten files hold exactly the rows readers see; the delete files stay (they only
//!   reference removed files or have lower sequence numbers than the new files).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use iceberg::table::Table;
use iceberg::Catalog;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::catalog::CatalogConfig;
use crate::error::{MaintenanceError, Result};
use crate::replace::{commit_replace, ReplaceError};
use crate::table_writer::TableWriter;

/// How one group ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupOutcome {
    /// Committed as the REPLACE snapshot `snapshot_id`.
    Committed {
        /// The new snapshot.
        snapshot_id: i64,
        /// Files removed.
        removed: usize,
        /// Files added.
        added: usize,
    },
    /// Skipped: `file` was no longer live at commit time.
    Conflict {
        /// The first file found gone.
        file: String,
    },
}

/// What rewriting a list of groups did, in group order.
#[derive(Debug, Clone, Default)]
pub struct RewriteResult {
    /// One outcome per group.
    pub groups: Vec<GroupOutcome>,
    /// Rows rewritten in the committed groups.
    pub rows: u64,
    /// Wall time.
    pub duration: Duration,
}

impl RewriteResult {
    /// Groups committed.
    pub fn committed(&self) -> usize {
        self.groups
            .iter()
            .filter(|g| matches!(g, GroupOutcome::Committed { .. }))
            .count()
    }

    /// Groups skipped because of a conflict.
    pub fn conflicts(&self) -> usize {
        self.groups.len() - self.committed()
    }
}

/// Rewrites each group of `planned` (planned on its current snapshot) into files of
/// `target_file_size` bytes (`None`: the table's target), one REPLACE commit per group.
/// A group that conflicts is skipped ([`GroupOutcome::Conflict`]), not an error.
///
/// # Errors
///
/// Returns [`MaintenanceError::Table`] when a group's files cannot be read or its new files
/// written, and the [`ReplaceError::Other`] errors of [`commit_replace`]; the groups committed
/// before the failing one stay committed.
pub async fn rewrite_groups(
    config: &CatalogConfig,
    catalog: &dyn Catalog,
    planned: &Table,
    groups: &[BTreeSet<String>],
    target_file_size: Option<usize>,
) -> Result<RewriteResult> {
    let start = Instant::now();
    let ident = planned.identifier().clone();
    let seq = planned
        .metadata()
        .current_snapshot()
        .map(|s| s.sequence_number())
        .unwrap_or(0);
    let mut result = RewriteResult::default();
    for (i, group) in groups.iter().enumerate() {
        let mut writer = TableWriter::new(planned, target_file_size)?;
        let mut rows = 0u64;
        let paths: Vec<String> = group.iter().cloned().collect();
        for batch in read_data_files(planned, &paths).await? {
            rows += batch.num_rows() as u64;
            writer.write(&batch).await?;
        }
        let added = writer.close().await?;
        let n_added = added.len();
        match commit_replace(config, catalog, &ident, group, added, seq, 8).await {
            Ok(snapshot_id) => {
                tracing::info!(%ident, group = i, files = group.len(), added = n_added, rows, "rewrite group committed");
                result.rows += rows;
                result.groups.push(GroupOutcome::Committed {
                    snapshot_id,
                    removed: group.len(),
                    added: n_added,
                });
            }
            Err(ReplaceError::Conflict { file, .. }) => {
                // Its new files were never committed: orphan cleanup removes them.
                tracing::warn!(
                    "table '{ident}': rewrite group {i} ({} files) skipped: {file} is no longer live (a concurrent commit removed it)",
                    group.len()
                );
                result.groups.push(GroupOutcome::Conflict { file });
            }
            Err(ReplaceError::Other(e)) => return Err(e),
        }
    }
    result.duration = start.elapsed();
    Ok(result)
}

/// The rows of the data files `paths` of `table`'s current snapshot **with the table's delete
/// files applied** (position and equality deletes), columns matched by field id — read by
/// iceberg-rust's scan reader — as batches of the table's current schema. A path that is not
/// live any more is an error naming it (its group would conflict at commit anyway).
///
/// # Errors
///
/// Returns [`MaintenanceError::Table`] when the table has no snapshot, a path is not a live
/// data file, the scan cannot be planned or read, or a column cannot be cast to the table's
/// type.
pub async fn read_data_files(table: &Table, paths: &[String]) -> Result<Vec<RecordBatch>> {
    use futures::{StreamExt, TryStreamExt};
    let ident = table.identifier();
    if table.metadata().current_snapshot().is_none() {
        return Err(MaintenanceError::table_msg(
            ident,
            "the table has no snapshot",
        ));
    }
    let e = |e: iceberg::Error| MaintenanceError::table(ident, "cannot plan the scan", e);
    let wanted: std::collections::HashSet<&str> = paths.iter().map(String::as_str).collect();
    let tasks: Vec<iceberg::scan::FileScanTask> = table
        .scan()
        .build()
        .map_err(e)?
        .plan_files()
        .await
        .map_err(e)?
        .try_filter(|t| futures::future::ready(wanted.contains(t.data_file_path.as_str())))
        .try_collect()
        .await
        .map_err(e)?;
    let e = |e: iceberg::Error| MaintenanceError::table(ident, "cannot read the data files", e);
    let found: std::collections::HashSet<&str> =
        tasks.iter().map(|t| t.data_file_path.as_str()).collect();
    if let Some(gone) = paths.iter().find(|p| !found.contains(p.as_str())) {
        return Err(MaintenanceError::table_msg(
            ident,
            format!("{gone} is no longer live"),
        ));
    }
    let stream = futures::stream::iter(tasks.into_iter().map(Ok)).boxed();
    let batches: Vec<RecordBatch> = table
        .reader_builder()
        .build()
        .read(stream)
        .map_err(e)?
        .stream()
        .try_collect()
        .await
        .map_err(e)?;
    batches.iter().map(|b| to_table_schema(table, b)).collect()
}

/// `batch` with the table's Arrow schema: columns by name, cast strictly to the table's types.
fn to_table_schema(table: &Table, batch: &RecordBatch) -> Result<RecordBatch> {
    let ident = table.identifier();
    let schema: arrow_schema::SchemaRef = std::sync::Arc::new(arrow_schema(table)?);
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            let c = batch.column_by_name(f.name()).ok_or_else(|| {
                MaintenanceError::table_msg(
                    ident,
                    format!("the scan returned no column '{}'", f.name()),
                )
            })?;
            let options = arrow_cast::CastOptions {
                safe: false,
                ..Default::default()
            };
            arrow_cast::cast_with_options(c, f.data_type(), &options).map_err(|e| {
                MaintenanceError::table(
                    ident,
                    format!("cannot cast column '{}' to {}", f.name(), f.data_type()),
                    e,
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
    RecordBatch::try_new(schema, columns).map_err(|e| {
        MaintenanceError::table(ident, "cannot assemble a batch of the table's schema", e)
    })
}

/// The rows of one data file, as batches of the table's current schema (deletes NOT applied:
/// see [`read_data_files`]).
///
/// # Errors
///
/// Returns [`MaintenanceError::Io`] naming `path` when the file cannot be read, is not a
/// readable Parquet file, lacks a column of the table or holds a value that does not fit the
/// table's type, and [`MaintenanceError::Table`] when the table's schema has no Arrow form.
pub async fn read_data_file(table: &Table, path: &str) -> Result<Vec<RecordBatch>> {
    let bytes = table
        .file_io()
        .new_input(path)
        .map_err(|e| MaintenanceError::io(path, "cannot open the file", e))?
        .read()
        .await
        .map_err(|e| MaintenanceError::io(path, "cannot read the file", e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .and_then(|b| b.with_batch_size(8192).build())
        .map_err(|e| MaintenanceError::io(path, "not a readable Parquet file", e))?;
    let schema: arrow_schema::SchemaRef = std::sync::Arc::new(arrow_schema(table)?);
    let mut out = Vec::new();
    for batch in reader {
        let batch =
            batch.map_err(|e| MaintenanceError::io(path, "cannot decode a row group", e))?;
        // Other writers use other Arrow types for the same Iceberg type (large strings, say):
        // cast by name to the table's types.
        let columns = schema
            .fields()
            .iter()
            .map(|f| {
                let c = batch.column_by_name(f.name()).ok_or_else(|| {
                    MaintenanceError::io_msg(
                        path,
                        format!(
                            "no column '{}' (schema evolution is not supported yet)",
                            f.name()
                        ),
                    )
                })?;
                // A value that does not fit is an error, never a silent null.
                let options = arrow_cast::CastOptions {
                    safe: false,
                    ..Default::default()
                };
                arrow_cast::cast_with_options(c, f.data_type(), &options).map_err(|e| {
                    MaintenanceError::io(
                        path,
                        format!("cannot cast column '{}' to {}", f.name(), f.data_type()),
                        e,
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        out.push(RecordBatch::try_new(schema.clone(), columns).map_err(|e| {
            MaintenanceError::io(path, "cannot assemble a batch of the table's schema", e)
        })?);
    }
    Ok(out)
}

/// The table's current schema in Arrow form (field ids attached).
fn arrow_schema(table: &Table) -> Result<arrow_schema::Schema> {
    table
        .metadata()
        .current_schema()
        .as_ref()
        .try_into()
        .map_err(|e: iceberg::Error| {
            MaintenanceError::table(
                table.identifier(),
                "cannot convert the table schema to Arrow",
                e,
            )
        })
}
