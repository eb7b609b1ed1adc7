//! Throughput of the exactly-once Iceberg sink against writing the same Arrow batches with the
//! parquet crate directly, measured in one run.
//!
//! The same pre-generated batches (id long, region string, ts timestamp, name string) go
//! (a) through a weir job — a source emitting the batches, the sink's writer(s) and committer,
//! aligned checkpoints every second, into an unpartitioned table of the embedded SQLite catalog
//! — and (b) into one Parquet file with `parquet::arrow::ArrowWriter` and the same writer
//! properties (the table's: zstd, Iceberg's default codec). Throughput
//! is MB of Parquet written per second of wall time (for weir: the job from start to the last
//! commit, including checkpoints and snapshot commits). Runs alternate (in alternating order),
//! `--reps` times; the medians are compared. Each run also writes the batches with weir's table
//! writer alone (iceberg-rust's Parquet writer, no job, no commit), which separates iceberg-rust's
//! cost from the job's.
//!
//! ```text
//! cargo bench --bench iceberg_sink [-- --rows N --reps R --writers 1,2 --dir D]
//! ```
//! `--writers` lists the writer parallelisms to measure (default 1 and 2: the parquet crate
//! side is always one thread). Files go to `--dir` (default `/dev/shm`). One JSON line per
//! writer count.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use weir::maintenance::iceberg::spec::{NestedField, PrimitiveType, Schema, Type};
use weir::maintenance::iceberg::{NamespaceIdent, TableIdent};
use weir::maintenance::sink::{ArrowBatch, IcebergSink, IcebergSinkConfig, IcebergSinkExt};
use weir::maintenance::{table_io, CatalogConfig, IcebergRuntime};
use weir::prelude::*;

const BATCH: usize = 8192;

/// Where the files go: `--dir`, else `/dev/shm` (memory: the comparison is of encoding and
/// commit work, not of the disk's write-back), else the temp directory.
fn base_dir() -> std::path::PathBuf {
    let args: Vec<String> = std::env::args().collect();
    if let Some(d) = args
        .iter()
        .position(|a| a == "--dir")
        .and_then(|i| args.get(i + 1))
    {
        return d.into();
    }
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn schema() -> Schema {
    Schema::builder()
        .with_fields(vec![
            NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
            NestedField::optional(2, "region", Type::Primitive(PrimitiveType::String)).into(),
            NestedField::required(3, "ts", Type::Primitive(PrimitiveType::Timestamp)).into(),
            NestedField::optional(4, "name", Type::Primitive(PrimitiveType::String)).into(),
        ])
        .build()
        .expect("a valid schema")
}

fn batches(rows: usize) -> Vec<RecordBatch> {
    let arrow: arrow_schema::Schema = (&schema()).try_into().expect("an Arrow schema");
    let arrow = Arc::new(arrow);
    let regions = [
        "eu-west", "eu-north", "us-east", "us-west", "ap-south", "ap-east", "sa", "af",
    ];
    (0..rows)
        .step_by(BATCH)
        .map(|start| {
            let ids: Vec<i64> = (start..(start + BATCH).min(rows))
                .map(|i| i as i64)
                .collect();
            RecordBatch::try_new(
                arrow.clone(),
                vec![
                    Arc::new(Int64Array::from(ids.clone())),
                    Arc::new(StringArray::from_iter_values(
                        ids.iter()
                            .map(|i| regions[(*i as usize * 7) % regions.len()]),
                    )),
                    Arc::new(TimestampMicrosecondArray::from_iter_values(
                        ids.iter().map(|i| 1_793_491_200_000_000 + i * 1_000),
                    )),
                    Arc::new(StringArray::from_iter_values(
                        ids.iter().map(|i| format!("user-{}", (i * 7919) % 100_000)),
                    )),
                ],
            )
            .expect("a valid batch")
        })
        .collect()
}

fn dir_bytes(dir: &std::path::Path, suffix: &str) -> (u64, usize) {
    let mut total = (0, 0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(suffix) {
                total.0 += e.metadata().map(|m| m.len()).unwrap_or(0);
                total.1 += 1;
            }
        }
    }
    total
}

/// MB/s of the sink (and the number of data files).
fn run_weir(data: &Arc<Vec<RecordBatch>>, writers: usize, run: usize) -> (f64, usize) {
    let dir = base_dir().join(format!("weir-bench-sink-{}-{run}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let catalog = CatalogConfig::embedded(dir.join("warehouse"));
    let ident = TableIdent::new(NamespaceIdent::new("bench".into()), "events".into());
    IcebergRuntime::new(1)
        .expect("a runtime")
        .block_on(async {
            let c = catalog.open().await?;
            table_io::create_table_if_missing(&*c, &ident, schema()).await
        })
        .expect("creating the table");
    let env = StreamEnv::new();
    env.configure(|c| {
        c.checkpoint_dir = dir.join("chk").display().to_string();
        c.checkpoint_interval = Duration::from_secs(1);
    });
    let d = data.clone();
    let sink = IcebergSinkConfig::new(catalog, ident, "bench");
    env.generate(
        Generator::new(move |i| ArrowBatch(d[i as usize].clone())).bounded(data.len() as u64),
    )
    .set_parallelism(1)
    .rebalance()
    .sink_to_iceberg(IcebergSink::new(sink).writers(writers))
    .discard();
    let start = Instant::now();
    env.execute().expect("the sink job failed");
    let secs = start.elapsed().as_secs_f64();
    let (bytes, files) = dir_bytes(&dir.join("warehouse"), ".parquet");
    let _ = std::fs::remove_dir_all(&dir);
    (bytes as f64 / 1e6 / secs, files)
}

/// MB/s of the parquet crate writing the same batches to one file.
fn run_parquet(
    data: &[RecordBatch],
    props: &parquet::file::properties::WriterProperties,
    run: usize,
) -> f64 {
    let path = base_dir().join(format!(
        "weir-bench-parquet-{}-{run}.parquet",
        std::process::id()
    ));
    let start = Instant::now();
    let file = std::fs::File::create(&path).expect("creating the file");
    // The same properties as the sink's writer (the table's: zstd, Iceberg's default codec).
    let props = props.clone();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, data[0].schema(), Some(props))
        .expect("a parquet writer");
    for b in data {
        w.write(b).expect("writing");
    }
    w.close().expect("closing");
    let secs = start.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let _ = std::fs::remove_file(&path);
    bytes as f64 / 1e6 / secs
}

/// MB/s of weir's table writer (iceberg-rust's Parquet writer) alone: no job, no commit.
fn run_table_writer(data: &[RecordBatch], run: usize) -> f64 {
    let dir = base_dir().join(format!("weir-bench-tw-{}-{run}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let catalog = CatalogConfig::embedded(dir.join("warehouse"));
    let ident = TableIdent::new(NamespaceIdent::new("bench".into()), "events".into());
    let rt = IcebergRuntime::new(1).expect("a runtime");
    let table = rt
        .block_on(async {
            let c = catalog.open().await?;
            table_io::create_table_if_missing(&*c, &ident, schema()).await
        })
        .expect("creating the table");
    let start = Instant::now();
    let mut w = weir::maintenance::table_writer::TableWriter::new(&table, None).expect("a writer");
    for b in data {
        rt.block_on(w.write(b)).expect("writing");
    }
    rt.block_on(w.close()).expect("closing");
    let secs = start.elapsed().as_secs_f64();
    let (bytes, _) = dir_bytes(&dir.join("warehouse"), ".parquet");
    let _ = std::fs::remove_dir_all(&dir);
    bytes as f64 / 1e6 / secs
}

/// The Parquet writer properties the sink uses for the bench's table (a table made once).
fn table_properties() -> parquet::file::properties::WriterProperties {
    let dir = base_dir().join(format!("weir-bench-props-{}", std::process::id()));
    let catalog = CatalogConfig::embedded(&dir);
    let ident = TableIdent::new(NamespaceIdent::new("bench".into()), "props".into());
    let props = IcebergRuntime::new(1)
        .expect("a runtime")
        .block_on(async {
            let c = catalog.open().await?;
            let t = table_io::create_table_if_missing(&*c, &ident, schema()).await?;
            weir::maintenance::table_writer::writer_properties(&t)
        })
        .expect("the table's writer properties");
    let _ = std::fs::remove_dir_all(&dir);
    props
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rows: usize = arg("--rows", 8_000_000);
    let reps: usize = arg("--reps", 5);
    let writer_counts: Vec<usize> = arg("--writers", "1,2".to_string())
        .split(',')
        .filter_map(|w| w.trim().parse().ok())
        .collect();
    let data = Arc::new(batches(rows));
    let props = table_properties();
    let only: String = arg("--only", String::new());
    if !only.is_empty() {
        // For profiling one side: `--only sink|parquet|table-writer`.
        for r in 0..reps {
            let mbs = match only.as_str() {
                "sink" => run_weir(&data, writer_counts[0], r).0,
                "parquet" => run_parquet(&data, &props, r),
                "table-writer" => run_table_writer(&data, r),
                other => panic!("unknown --only {other}"),
            };
            println!("run {r}: {only} {mbs:.1} MB/s");
        }
        return;
    }
    for writers in writer_counts {
        let (mut weir, mut direct, mut alone, mut files) = (Vec::new(), Vec::new(), Vec::new(), 0);
        for r in 0..reps {
            // Alternate the order: no side always runs on a warmer (or more fragmented) heap.
            let (mbs, n, p) = if r % 2 == 0 {
                let (mbs, n) = run_weir(&data, writers, r);
                (mbs, n, run_parquet(&data, &props, r))
            } else {
                let p = run_parquet(&data, &props, r);
                let (mbs, n) = run_weir(&data, writers, r);
                (mbs, n, p)
            };
            let t = run_table_writer(&data, r);
            println!(
                "writers {writers}, run {r}: weir sink {mbs:.1} MB/s ({n} files), parquet crate {p:.1} MB/s, table writer alone {t:.1} MB/s"
            );
            weir.push(mbs);
            direct.push(p);
            alone.push(t);
            files = n;
        }
        let (w, p, t) = (median(weir), median(direct), median(alone));
        println!(
            "{}",
            serde_json::json!({
                "rows": rows,
                "writers": writers,
                "reps": reps,
                "weir_sink_mb_s": (w * 10.0).round() / 10.0,
                "parquet_crate_mb_s": (p * 10.0).round() / 10.0,
                "table_writer_alone_mb_s": (t * 10.0).round() / 10.0,
                "ratio": (w / p * 1000.0).round() / 1000.0,
                "data_files": files,
            })
        );
    }
}
