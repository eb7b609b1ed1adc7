//! The exactly-once Iceberg sink as a program: `--rows` numbers (rate-limited) are written to
//! the table `db.numbers` (id long, name string) of the embedded catalog in `--warehouse`, by
//! two writers and a committer, with a checkpoint every 200 ms in `--checkpoint-dir`. Every
//! start restores the latest checkpoint: kill it at any moment (`kill -9`) and start it again
//! with the same arguments, and the table ends up holding every row exactly once.
//!
//! ```sh
//! cargo run --release --example iceberg_sink -- --rows 100000 --warehouse /tmp/wh --checkpoint-dir /tmp/chk
//! ```
//!
//! Options: `--mode aligned|unaligned` (default aligned), `--rate <rows/s>` (default 50000).

use std::sync::Arc;
use std::time::Duration;

use arrow_array::{Int64Array, RecordBatch, StringArray};
use weir::maintenance::iceberg::spec::{NestedField, PrimitiveType, Schema, Type};
use weir::maintenance::iceberg::{NamespaceIdent, TableIdent};
use weir::maintenance::sink::{IcebergSink, IcebergSinkConfig, IcebergSinkExt, RowBatcher};
use weir::maintenance::{table_io, CatalogConfig, IcebergRuntime};
use weir::prelude::*;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn to_batch(rows: &[u64]) -> Result<RecordBatch, UserError> {
    let schema = arrow_schema::Schema::new(vec![
        arrow_schema::Field::new("id", arrow_schema::DataType::Int64, false),
        arrow_schema::Field::new("name", arrow_schema::DataType::Utf8, true),
    ]);
    Ok(RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| *r as i64))),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| format!("row-{r}")),
            )),
        ],
    )?)
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let rows: u64 = arg(&args, "--rows")
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(100_000);
    let warehouse = arg(&args, "--warehouse").ok_or("--warehouse DIR is required")?;
    let checkpoints = arg(&args, "--checkpoint-dir").ok_or("--checkpoint-dir DIR is required")?;
    let rate: f64 = arg(&args, "--rate")
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(50_000.0);
    let unaligned = match arg(&args, "--mode").as_deref() {
        None | Some("aligned") => false,
        Some("unaligned") => true,
        Some(other) => return Err(format!("unknown --mode '{other}': aligned or unaligned").into()),
    };

    let catalog = CatalogConfig::embedded(&warehouse);
    let table = TableIdent::new(NamespaceIdent::new("db".into()), "numbers".into());
    let schema = Schema::builder()
        .with_fields(vec![
            NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
            NestedField::optional(2, "name", Type::Primitive(PrimitiveType::String)).into(),
        ])
        .build()?;
    IcebergRuntime::new(1)?.block_on(async {
        let c = catalog.open().await?;
        table_io::create_table_if_missing(&*c, &table, schema).await?;
        Ok::<_, weir::maintenance::MaintenanceError>(())
    })?;
    let sink = IcebergSinkConfig::new(catalog, table, "iceberg-sink-example");

    let env = StreamEnv::new();
    env.configure(|c| {
        c.checkpoint_dir = checkpoints.clone();
        c.checkpoint_interval = Duration::from_millis(200);
        c.restore_path = "latest".into();
        c.buffer_timeout = Duration::from_millis(10);
        c.unaligned = unaligned;
    });
    let commits = env
        .generate(Generator::new(|i| i).bounded(rows).rate_limited(rate))
        .set_parallelism(1)
        .uid("numbers")
        .transform("Batches", |_| RowBatcher::new(1000, to_batch))
        .uid("batches")
        .set_parallelism(1)
        .rebalance()
        .sink_to_iceberg(IcebergSink::new(sink).writers(2).uid("numbers-sink"))
        .collect();
    let handle = env.start()?;
    if let Some(c) = handle.restored_from() {
        eprintln!("resumed from checkpoint {}", c.metadata.checkpoint_id);
    }
    handle.join()?;
    println!(
        "done: {rows} rows; {} snapshots committed in this run",
        commits.len()
    );
    Ok(())
}
