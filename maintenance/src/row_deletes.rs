//! Row-level deletes by position (merge-on-read): a position delete file per data file, added
//! in one `delete` snapshot, so readers skip those rows without rewriting the data files.
//!
//! Invariants: a delete names a data file live in the current snapshot (else an error naming
//! it, nothing written to the table); the delete files carry the data file's partition and the
//! default spec; the snapshot is committed like every snapshot of the commit layer (SQL
//! compare-and-swap or REST requirements), a lost race is retried on the reloaded table.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow_array::{Int64Array, RecordBatch, StringArray};
use iceberg::spec::{
    DataContentType, DataFileBuilder, DataFileFormat, ManifestListWriter, ManifestWriterBuilder,
    Operation, Snapshot, Summary,
};
use iceberg::{Catalog, TableIdent};

use crate::catalog::CatalogConfig;
use crate::error::{MaintenanceError, Result};
use crate::replace::{
    chrono_now_ms, commit_snapshot, live_data_files, rand_snapshot_id, ReplaceError,
};

/// Field ids of a position delete file's columns (Iceberg spec).
const FILE_PATH_ID: i32 = i32::MAX - 101;
const POS_ID: i32 = i32::MAX - 102;

fn delete_schema() -> arrow_schema::SchemaRef {
    let field = |name: &str, t: arrow_schema::DataType, id: i32| {
        arrow_schema::Field::new(name, t, false).with_metadata(HashMap::from([(
            parquet::arrow::PARQUET_FIELD_ID_META_KEY.to_string(),
            id.to_string(),
        )]))
    };
    Arc::new(arrow_schema::Schema::new(vec![
        field("file_path", arrow_schema::DataType::Utf8, FILE_PATH_ID),
        field("pos", arrow_schema::DataType::Int64, POS_ID),
    ]))
}

/// Deletes the rows at `positions` (0-based row numbers) of each data file in `deletes`, as
/// one snapshot with position delete files; returns its id.
///
/// # Errors
///
/// Returns [`MaintenanceError::Table`] when the table has no snapshot, a path is not a live
/// data file or has no row at a position, the table or its manifests cannot be read or written,
/// or the commit conflicts or lost `attempts` races; [`MaintenanceError::Io`] when a delete
/// file cannot be written; [`MaintenanceError::Catalog`] when the catalog cannot take the commit.
pub async fn delete_rows_by_position(
    config: &CatalogConfig,
    catalog: &dyn Catalog,
    ident: &TableIdent,
    deletes: &BTreeMap<String, Vec<u64>>,
    attempts: u32,
) -> Result<i64> {
    let tbl = |message: String| MaintenanceError::table_msg(ident, message);
    let write = |e: iceberg::Error| {
        MaintenanceError::table(ident, "cannot write the position delete snapshot", e)
    };
    for attempt in 1..=attempts.max(1) {
        let table = catalog
            .load_table(ident)
            .await
            .map_err(|e| MaintenanceError::table(ident, "cannot load the table", e))?;
        let meta = table.metadata();
        let current = meta
            .current_snapshot()
            .ok_or_else(|| tbl("the table has no rows to delete".into()))?;
        let (_, live) = live_data_files(&table).await?;
        let by_path: HashMap<&str, &iceberg::spec::DataFile> =
            live.iter().map(|f| (f.file_path(), f)).collect();
        let snapshot_id = rand_snapshot_id();
        let sequence_number = meta.last_sequence_number() + 1;
        let location = meta.location().trim_end_matches('/').to_string();
        let commit = uuid::Uuid::new_v4();
        let spec = meta.default_partition_spec().as_ref().clone();
        let schema = meta.current_schema().clone();
        let mut delete_files = Vec::new();
        let mut records = 0u64;
        for (i, (path, positions)) in deletes.iter().enumerate() {
            let data = by_path
                .get(path.as_str())
                .ok_or_else(|| tbl(format!("{path} is not a live data file")))?;
            let mut positions = positions.clone();
            positions.sort_unstable();
            positions.dedup();
            if let Some(p) = positions.iter().find(|&&p| p >= data.record_count()) {
                return Err(tbl(format!(
                    "{path} has {} rows: no row {p}",
                    data.record_count()
                )));
            }
            let batch = RecordBatch::try_new(
                delete_schema(),
                vec![
                    Arc::new(StringArray::from_iter_values(
                        positions.iter().map(|_| path.as_str()),
                    )),
                    Arc::new(Int64Array::from_iter_values(
                        positions.iter().map(|&p| p as i64),
                    )),
                ],
            )
            .map_err(|e| MaintenanceError::Internal(e.to_string()))?;
            let mut bytes = Vec::new();
            {
                let mut w = parquet::arrow::ArrowWriter::try_new(&mut bytes, delete_schema(), None)
                    .map_err(|e| MaintenanceError::Internal(e.to_string()))?;
                w.write(&batch)
                    .map_err(|e| MaintenanceError::Internal(e.to_string()))?;
                w.close()
                    .map_err(|e| MaintenanceError::Internal(e.to_string()))?;
            }
            let file_path = format!("{location}/data/weir-{commit}-{i}-deletes.parquet");
            let size = bytes.len() as u64;
            let io = |e: iceberg::Error| {
                MaintenanceError::io(&file_path, "cannot write the position delete file", e)
            };
            table
                .file_io()
                .new_output(&file_path)
                .map_err(io)?
                .write(bytes.into())
                .await
                .map_err(io)?;
            records += positions.len() as u64;
            let delete = DataFileBuilder::default()
                .content(DataContentType::PositionDeletes)
                .file_path(file_path)
                .file_format(DataFileFormat::Parquet)
                .partition(data.partition().clone())
                .partition_spec_id(spec.spec_id())
                .record_count(positions.len() as u64)
                .file_size_in_bytes(size)
                .referenced_data_file(Some(path.clone()))
                .build()
                .map_err(|e| MaintenanceError::Internal(e.to_string()))?;
            delete_files.push(delete);
        }
        let n = delete_files.len();
        let manifest_path = format!("{location}/metadata/{commit}-m-deletes.avro");
        let mut w = ManifestWriterBuilder::new(
            table.file_io().new_output(&manifest_path).map_err(write)?,
            Some(snapshot_id),
            schema.clone(),
            spec,
        )
        .build_v2_deletes();
        for d in delete_files {
            w.add_file(d, sequence_number).map_err(write)?;
        }
        let manifest = w.write_manifest_file().await.map_err(write)?;
        let list = table
            .manifest_list_reader(current)
            .load()
            .await
            .map_err(|e| MaintenanceError::table(ident, "cannot read the manifest list", e))?;
        let mut manifests: Vec<_> = list.entries().to_vec();
        manifests.push(manifest);
        let list_path = format!("{location}/metadata/snap-{snapshot_id}-1-{commit}.avro");
        let out = table.file_io().new_output(&list_path).map_err(write)?;
        let mut lw = ManifestListWriter::v2(
            out.writer().await.map_err(write)?,
            snapshot_id,
            Some(current.snapshot_id()),
            sequence_number,
        );
        lw.add_manifests(manifests.into_iter()).map_err(write)?;
        lw.close().await.map_err(write)?;
        let snapshot = Snapshot::builder()
            .with_snapshot_id(snapshot_id)
            .with_parent_snapshot_id(Some(current.snapshot_id()))
            .with_sequence_number(sequence_number)
            .with_timestamp_ms(chrono_now_ms())
            .with_manifest_list(list_path)
            .with_summary(Summary {
                operation: Operation::Delete,
                additional_properties: HashMap::from([
                    ("added-delete-files".to_string(), n.to_string()),
                    ("added-position-delete-files".to_string(), n.to_string()),
                    ("added-position-deletes".to_string(), records.to_string()),
                ]),
            })
            .with_schema_id(meta.current_schema_id())
            .build();
        match commit_snapshot(config, &table, snapshot).await {
            Ok(true) => return Ok(snapshot_id),
            Ok(false) => {
                tracing::info!(%ident, attempt, "position delete commit lost a race; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(20 << attempt.min(6))).await;
            }
            Err(ReplaceError::Conflict { file, .. }) => {
                return Err(tbl(format!("conflict on {file}")))
            }
            Err(ReplaceError::Other(e)) => return Err(e),
        }
    }
    Err(tbl(format!(
        "position delete commit lost {attempts} compare-and-swap races in a row"
    )))
}
