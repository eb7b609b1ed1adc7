//! Appending Arrow batches to a table as one snapshot, and reading a table's rows.
//!
//! Invariants: a batch whose columns do not match the table's schema (names, types,
//! nullability) is refused before any file is written; every data file gets a unique name
//! (a random prefix), so a retried write never overwrites a file another snapshot references;
//! one call of [`append`] is one snapshot, carrying the given summary properties.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use futures::TryStreamExt;
use iceberg::spec::{DataFile, Schema, UnboundPartitionSpec};
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::{Catalog, NamespaceIdent, TableCreation, TableIdent};

use crate::error::{MaintenanceError, Result};
use crate::table_writer::TableWriter;

fn table_err(table: &TableIdent) -> impl Fn(iceberg::Error) -> MaintenanceError + '_ {
    move |e| MaintenanceError::Table {
        table: table.to_string(),
        message: e.to_string(),
    }
}

/// Loads `ident`, creating it (and its namespace) with `schema` if it does not exist.
pub async fn create_table_if_missing(
    catalog: &dyn Catalog,
    ident: &TableIdent,
    schema: Schema,
) -> Result<Table> {
    create_partitioned_table_if_missing(catalog, ident, schema, None).await
}

/// Loads `ident`, creating it (and its namespace) with `schema` and the partition spec `spec`
/// (`None`: unpartitioned) if it does not exist.
pub async fn create_partitioned_table_if_missing(
    catalog: &dyn Catalog,
    ident: &TableIdent,
    schema: Schema,
    spec: Option<UnboundPartitionSpec>,
) -> Result<Table> {
    create_table_with_properties_if_missing(catalog, ident, schema, spec, HashMap::new()).await
}

/// Loads `ident`, creating it (and its namespace) with `schema`, `spec` and table `properties`
/// (e.g. `write.parquet.compression-codec`) if it does not exist.
pub async fn create_table_with_properties_if_missing(
    catalog: &dyn Catalog,
    ident: &TableIdent,
    schema: Schema,
    spec: Option<UnboundPartitionSpec>,
    properties: HashMap<String, String>,
) -> Result<Table> {
    let err = table_err(ident);
    if catalog.table_exists(ident).await.map_err(&err)? {
        return catalog.load_table(ident).await.map_err(&err);
    }
    let ns: &NamespaceIdent = ident.namespace();
    if !catalog.namespace_exists(ns).await.map_err(&err)? {
        catalog
            .create_namespace(ns, HashMap::new())
            .await
            .map_err(&err)?;
    }
    let creation = TableCreation::builder()
        .name(ident.name().to_string())
        .schema(schema)
        .partition_spec_opt(spec)
        .properties(properties)
        .build();
    catalog.create_table(ns, creation).await.map_err(&err)
}

/// The batch with the table's Arrow schema (field ids attached), or a clear mismatch error.
pub fn conform(table: &Table, batch: &RecordBatch) -> Result<RecordBatch> {
    let ident = table.identifier();
    let schema = table.metadata().current_schema();
    let arrow: arrow_schema::Schema =
        schema
            .as_ref()
            .try_into()
            .map_err(|e: iceberg::Error| MaintenanceError::Table {
                table: ident.to_string(),
                message: format!("cannot convert the table schema to Arrow: {e}"),
            })?;
    let mismatch = |message: String| MaintenanceError::SchemaMismatch {
        table: ident.to_string(),
        message,
    };
    let got = batch.schema();
    if got.fields().len() != arrow.fields().len() {
        return Err(mismatch(format!(
            "the batch has {} columns, the table {} ({})",
            got.fields().len(),
            arrow.fields().len(),
            arrow
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    for (want, have) in arrow.fields().iter().zip(got.fields()) {
        if want.name() != have.name() {
            return Err(mismatch(format!(
                "column '{}' where the table has '{}'",
                have.name(),
                want.name()
            )));
        }
        if want.data_type() != have.data_type() {
            return Err(mismatch(format!(
                "column '{}' is {}, the table's is {}",
                have.name(),
                have.data_type(),
                want.data_type()
            )));
        }
        if !want.is_nullable()
            && batch
                .column_by_name(have.name())
                .is_some_and(|c| c.null_count() > 0)
        {
            return Err(mismatch(format!(
                "column '{}' has nulls, the table's is required",
                have.name()
            )));
        }
    }
    RecordBatch::try_new(Arc::new(arrow), batch.columns().to_vec())
        .map_err(|e| mismatch(e.to_string()))
}

/// Writes `batches` as Parquet data files of `table` (not committed yet): the files a
/// snapshot will add, partitioned by the table's spec and rolled at its target file size.
pub async fn write_data_files(table: &Table, batches: &[RecordBatch]) -> Result<Vec<DataFile>> {
    // Check every batch before writing anything.
    for b in batches {
        conform(table, b)?;
    }
    let mut writer = TableWriter::new(table, None)?;
    for b in batches {
        writer.write(b).await?;
    }
    writer.close().await
}

/// Appends `batches` to `ident` as one snapshot whose summary carries `summary`; returns the
/// new snapshot's id (`None` if there was nothing to write).
pub async fn append(
    catalog: &dyn Catalog,
    ident: &TableIdent,
    batches: &[RecordBatch],
    summary: HashMap<String, String>,
) -> Result<Option<i64>> {
    let err = table_err(ident);
    let table = catalog.load_table(ident).await.map_err(&err)?;
    let files = write_data_files(&table, batches).await?;
    if files.is_empty() {
        return Ok(None);
    }
    let tx = Transaction::new(&table);
    let tx = tx
        .fast_append()
        .add_data_files(files)
        .set_snapshot_properties(summary)
        .apply(tx)
        .map_err(&err)?;
    let table = tx.commit(catalog).await.map_err(&err)?;
    Ok(table.metadata().current_snapshot().map(|s| s.snapshot_id()))
}

/// Every row of the table's current snapshot.
pub async fn read_all(catalog: &dyn Catalog, ident: &TableIdent) -> Result<Vec<RecordBatch>> {
    let err = table_err(ident);
    let table = catalog.load_table(ident).await.map_err(&err)?;
    if table.metadata().current_snapshot().is_none() {
        return Ok(Vec::new());
    }
    let stream = table
        .scan()
        .build()
        .map_err(&err)?
        .to_arrow()
        .await
        .map_err(&err)?;
    stream.try_collect().await.map_err(&err)
}
