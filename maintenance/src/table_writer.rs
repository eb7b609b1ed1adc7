//! Writing Arrow batches into a table's data files (not committed): partitioned by the table's
//! default partition spec and rolled at a target file size.
//!
//! Invariants:
//! - every batch is checked against the table's schema before any of it is written
//!   ([`conform`]);
//! - a partitioned table gets one open file per partition value (iceberg-rust's fanout
//!   writer), so unsorted input is fine; the partition value of a row is computed by
//!   iceberg-rust's transforms (identity, year/month/day/hour, bucket, truncate);
//! - a file is closed and a new one started once it reaches the target size (written bytes
//!   plus the bytes buffered for the open row group), so files exceed the target by at most
//!   one batch;
//! - Parquet compression follows the table (`write.parquet.compression-codec`, Iceberg's
//!   default zstd);
//! - file names carry a random prefix: a retried write never overwrites a file that another
//!   snapshot references.

use std::sync::Arc;

use arrow_array::RecordBatch;
use iceberg::arrow::RecordBatchPartitionSplitter;
use iceberg::spec::{DataFile, DataFileFormat};
use iceberg::table::Table;
use iceberg::writer::base_writer::data_file_writer::{DataFileWriter, DataFileWriterBuilder};
use iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, DefaultLocationGenerator,
};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::partitioning::fanout_writer::FanoutWriter;
use iceberg::writer::partitioning::PartitioningWriter;
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};
use parquet::file::properties::WriterProperties;

use crate::error::{MaintenanceError, Result};
use crate::table_io::conform;

type Files =
    DataFileWriterBuilder<ParquetWriterBuilder, DefaultLocationGenerator, DefaultFileNameGenerator>;

enum Open {
    Unpartitioned(
        Box<
            DataFileWriter<
                ParquetWriterBuilder,
                DefaultLocationGenerator,
                DefaultFileNameGenerator,
            >,
        >,
    ),
    Partitioned {
        splitter: Box<RecordBatchPartitionSplitter>,
        fanout: Box<FanoutWriter<Files>>,
    },
}

/// Writes batches into new data files of one table; [`close`](TableWriter::close) returns the
/// files for a snapshot to add.
pub struct TableWriter {
    table: Table,
    target_file_size: usize,
    open: Option<Open>,
    rows: u64,
}

impl TableWriter {
    /// A writer of `table`'s data files rolling at `target_file_size` bytes (`None`: the table's
    /// `write.target-file-size-bytes`, 512 MB unless set).
    ///
    /// # Errors
    ///
    /// Returns [`MaintenanceError::Table`] when `target_file_size` is `None` and the table's
    /// properties cannot be parsed.
    pub fn new(table: &Table, target_file_size: Option<usize>) -> Result<Self> {
        let target_file_size = match target_file_size {
            Some(t) => t.max(1),
            None => {
                table
                    .metadata()
                    .table_properties()
                    .map_err(|e| err(table, "cannot read the table properties", e))?
                    .write_target_file_size_bytes
            }
        };
        Ok(TableWriter {
            table: table.clone(),
            target_file_size,
            open: None,
            rows: 0,
        })
    }

    /// The target file size in bytes.
    pub fn target_file_size(&self) -> usize {
        self.target_file_size
    }

    /// Rows written since the last [`close`](TableWriter::close).
    pub fn rows(&self) -> u64 {
        self.rows
    }

    async fn start(&self) -> Result<Open> {
        let t = &self.table;
        let meta = t.metadata();
        let schema = meta.current_schema().clone();
        let parquet = ParquetWriterBuilder::new(writer_properties(t)?, schema.clone());
        let rolling = RollingFileWriterBuilder::new(
            parquet,
            self.target_file_size,
            t.file_io().clone(),
            DefaultLocationGenerator::new(meta)
                .map_err(|e| err(t, "cannot find the data location", e))?,
            DefaultFileNameGenerator::new(
                format!("weir-{}", uuid::Uuid::new_v4()),
                None,
                DataFileFormat::Parquet,
            ),
        );
        let files = DataFileWriterBuilder::new(rolling);
        let spec = meta.default_partition_spec();
        if spec.is_unpartitioned() {
            let w = files
                .build(None)
                .await
                .map_err(|e| err(t, "cannot start a data file", e))?;
            return Ok(Open::Unpartitioned(Box::new(w)));
        }
        let splitter = RecordBatchPartitionSplitter::try_new_with_computed_values(
            schema,
            Arc::new(spec.as_ref().clone()),
        )
        .map_err(|e| err(t, "cannot partition by the table's spec", e))?;
        Ok(Open::Partitioned {
            splitter: Box::new(splitter),
            fanout: Box::new(FanoutWriter::new(files)),
        })
    }

    /// Writes `batch` (checked against the table's schema first: a mismatch writes nothing).
    ///
    /// # Errors
    ///
    /// Returns [`MaintenanceError::SchemaMismatch`] when `batch` does not match the table's
    /// schema, and [`MaintenanceError::Table`] when the table's write properties are invalid
    /// or the rows cannot be partitioned or written.
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let batch = conform(&self.table, batch)?;
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if self.open.is_none() {
            self.open = Some(self.start().await?);
        }
        let t = &self.table;
        let write = |e| err(t, "cannot write data files", e);
        match self.open.as_mut() {
            Some(Open::Unpartitioned(w)) => w.write(batch.clone()).await.map_err(write)?,
            Some(Open::Partitioned { splitter, fanout }) => {
                for (key, part) in splitter
                    .split(&batch)
                    .map_err(|e| err(t, "cannot partition the rows", e))?
                {
                    fanout.write(key, part).await.map_err(write)?;
                }
            }
            None => {}
        }
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Closes the open files and returns every file written since the last close (none if
    /// nothing was written). The writer can be used again afterwards.
    ///
    /// # Errors
    ///
    /// Returns [`MaintenanceError::Table`] when an open data file cannot be finished (its
    /// rows are lost to this writer).
    pub async fn close(&mut self) -> Result<Vec<DataFile>> {
        self.rows = 0;
        let t = &self.table;
        let close = |e| err(t, "cannot close data files", e);
        match self.open.take() {
            None => Ok(Vec::new()),
            Some(Open::Unpartitioned(mut w)) => w.close().await.map_err(close),
            Some(Open::Partitioned { fanout, .. }) => fanout.close().await.map_err(close),
        }
    }
}

/// The Parquet writer properties of `table`: its `write.parquet.compression-codec` (Iceberg's
/// default: zstd) and `write.parquet.compression-level`; the parquet crate's defaults otherwise.
///
/// # Errors
///
/// Returns [`MaintenanceError::Table`] when the codec is not supported, or the level is not
/// an integer or out of the codec's range.
pub fn writer_properties(table: &Table) -> Result<WriterProperties> {
    use parquet::basic::{BrotliLevel, Compression, GzipLevel, ZstdLevel};
    let props = table.metadata().properties();
    let codec = props
        .get("write.parquet.compression-codec")
        .map(|c| c.to_ascii_lowercase())
        .unwrap_or_else(|| "zstd".into());
    let level: Option<i32> = match props.get("write.parquet.compression-level") {
        Some(l) => Some(l.parse().map_err(|e| {
            MaintenanceError::table(
                table.identifier(),
                format!("write.parquet.compression-level '{l}' is not an integer"),
                e,
            )
        })?),
        None => None,
    };
    let bad = |l: i32, e: parquet::errors::ParquetError| {
        MaintenanceError::table(
            table.identifier(),
            format!("write.parquet.compression-level {l} is not valid for {codec}"),
            e,
        )
    };
    let compression = match codec.as_str() {
        "zstd" => Compression::ZSTD(match level {
            Some(l) => ZstdLevel::try_new(l).map_err(|e| bad(l, e))?,
            None => ZstdLevel::default(),
        }),
        "gzip" => Compression::GZIP(match level {
            Some(l) => GzipLevel::try_new(l.max(0) as u32).map_err(|e| bad(l, e))?,
            None => GzipLevel::default(),
        }),
        "brotli" => Compression::BROTLI(match level {
            Some(l) => BrotliLevel::try_new(l.max(0) as u32).map_err(|e| bad(l, e))?,
            None => BrotliLevel::default(),
        }),
        "snappy" => Compression::SNAPPY,
        "lz4" => Compression::LZ4_RAW,
        "uncompressed" | "none" => Compression::UNCOMPRESSED,
        other => {
            return Err(MaintenanceError::table_msg(
                table.identifier(),
                format!("write.parquet.compression-codec '{other}' is not supported (zstd, gzip, brotli, snappy, lz4, uncompressed)"),
            ))
        }
    };
    Ok(WriterProperties::builder()
        .set_compression(compression)
        .build())
}

/// A [`MaintenanceError::Table`] of `table`: `message` (what could not be done) caused by `e`.
fn err(table: &Table, message: &str, e: iceberg::Error) -> MaintenanceError {
    MaintenanceError::table(table.identifier(), message, e)
}
