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

/// Maps an Iceberg error to a [`MaintenanceError::Table`] saying what could not be done.
fn table_err<'a>(
    table: &'a TableIdent,
    message: &'a str,
) -> impl Fn(iceberg::Error) -> MaintenanceError + 'a {
    move |e| MaintenanceError::table(table, message, e)
}

/// Loads `ident`, creating it (and its namespace) with `schema` if it does not exist.
///
/// # Errors
///
/// Returns [`MaintenanceError::Table`] when the catalog cannot tell whether the table or its
/// namespace exists, or the table cannot be loaded or created (nor its namespace).
pub async fn create_table_if_missing(
    catalog: &dyn Catalog,
    ident: &TableIdent,
    schema: Schema,
) -> Result<Table> {
    create_partitioned_table_if_missing(catalog, ident, schema, None).await
}

/// Loads `ident`, creating it (and its namespace) with `schema` and the partition spec `spec`
/// (`None`: unpartitioned) if it does not exist.
///
/// # Errors
///
/// Returns [`MaintenanceError::Table`] when the catalog cannot tell whether the table or its
/// namespace exists, or the table cannot be loaded or created (nor its namespace), e.g.
/// because `spec` does not fit `schema`.
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
///
/// # Errors
///
/// Returns [`MaintenanceError::Table`] when the catalog cannot tell whether the table or its
/// namespace exists, or the table cannot be loaded or created (nor its namespace).
pub async fn create_table_with_properties_if_missing(
    catalog: &dyn Catalog,
    ident: &TableIdent,
    schema: Schema,
    spec: Option<UnboundPartitionSpec>,
    properties: HashMap<String, String>,
) -> Result<Table> {
    if catalog
        .table_exists(ident)
        .await
        .map_err(table_err(ident, "cannot check whether the table exists"))?
    {
        return catalog
            .load_table(ident)
            .await
            .map_err(table_err(ident, "cannot load the table"));
    }
    let ns: &NamespaceIdent = ident.namespace();
    if !catalog.namespace_exists(ns).await.map_err(table_err(
        ident,
        "cannot check whether its namespace exists",
    ))? {
        catalog
            .create_namespace(ns, HashMap::new())
            .await
            .map_err(table_err(ident, "cannot create its namespace"))?;
    }
    let creation = TableCreation::builder()
        .name(ident.name().to_string())
        .schema(schema)
        .partition_spec_opt(spec)
        .properties(properties)
        .build();
    catalog
        .create_table(ns, creation)
        .await
        .map_err(table_err(ident, "cannot create the table"))
}

/// The batch with the table's Arrow schema (field ids attached), or a clear mismatch error.
///
/// # Errors
///
/// Returns [`MaintenanceError::SchemaMismatch`] when the batch's columns differ from the
/// table's in number, name or type, or a required column has nulls, and
/// [`MaintenanceError::Table`] when the table's schema has no Arrow form.
pub fn conform(table: &Table, batch: &RecordBatch) -> Result<RecordBatch> {
    let ident = table.identifier();
    let schema = table.metadata().current_schema();
    let arrow: arrow_schema::Schema = schema.as_ref().try_into().map_err(|e: iceberg::Error| {
        MaintenanceError::table(ident, "cannot convert the table schema to Arrow", e)
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
///
/// # Errors
///
/// Returns [`MaintenanceError::SchemaMismatch`] when a batch does not match the table's
/// schema (nothing is written then), and [`MaintenanceError::Table`] when the table's write
/// properties are invalid or a data file cannot be written.
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
///
/// # Errors
///
/// Returns [`MaintenanceError::SchemaMismatch`] when a batch does not match the table's
/// schema (nothing is written then), and [`MaintenanceError::Table`] when the table cannot be
/// loaded, a data file cannot be written or the snapshot cannot be committed.
pub async fn append(
    catalog: &dyn Catalog,
    ident: &TableIdent,
    batches: &[RecordBatch],
    summary: HashMap<String, String>,
) -> Result<Option<i64>> {
    let table = catalog
        .load_table(ident)
        .await
        .map_err(table_err(ident, "cannot load the table"))?;
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
        .map_err(table_err(ident, "cannot build the append"))?;
    let table = tx
        .commit(catalog)
        .await
        .map_err(table_err(ident, "cannot commit the append"))?;
    Ok(table.metadata().current_snapshot().map(|s| s.snapshot_id()))
}

/// Every row of the table's current snapshot.
///
/// # Errors
///
/// Returns [`MaintenanceError::Table`] when the table cannot be loaded or scanned.
pub async fn read_all(catalog: &dyn Catalog, ident: &TableIdent) -> Result<Vec<RecordBatch>> {
    let table = catalog
        .load_table(ident)
        .await
        .map_err(table_err(ident, "cannot load the table"))?;
    let err = table_err(ident, "cannot scan the table");
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
