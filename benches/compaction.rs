//! Compaction: weir's rewrite throughput against the parquet crate doing the same reads and
//! writes, and the rewrite planner's time per trigger with a full manifest rescan against the
//! incremental live-files view. One JSON line per part.
//!
//! ```text
//! cargo bench --bench compaction [-- --files N --reps R --input-files F --rows-per-file K
//!                                    --target-mb M --triggers T --dir D --only rewrite|planning]
//! ```
//!
//! **Rewrite throughput** (`"bench": "rewrite"`): an unpartitioned table of the embedded SQLite
//! catalog with `--input-files` (1,000) small data files of `--rows-per-file` (2,000) rows each
//! (id long, region string, ts timestamp, name string, amount double; generated in-process,
//! committed by fast appends of 100 files) is compacted by weir — the RewriteDataFiles path:
//! load the table, plan (`plan_rewrite`, bin-pack at a target of `--target-mb`, 8 MB), read
//! every group (`rewrite_groups`: read, schema-cast, write at the target size with the table
//! writer, one REPLACE commit per group). Its peer is the parquet crate alone: the same 1,000
//! files read with `ParquetRecordBatchReaderBuilder` (same batch size, 8192) and written with
//! `ArrowWriter` with the same writer properties (the table's, from
//! `table_writer::writer_properties`: zstd, Iceberg's default codec, the parquet crate's
//! defaults otherwise; the input files were written with them too), rolled to a new file at the
//! same target by the same rule as iceberg-rust's rolling writer (bytes written plus bytes
//! buffered above the target before a write). Throughput is MB of input files read per second
//! of wall time. Each weir run starts from a fresh copy of the table (the pristine directory,
//! catalog database included, is copied back before the clock starts). Runs alternate order,
//! `--reps` (3) times; medians are compared, `ratio` = weir / parquet.
//!
//! **Planning time** (`"bench": "planning"`): a partitioned table (identity on region, 8
//! values) with `--files` (100,000) data files, built from metadata only — fast appends of
//! synthetic `DataFile`s (paths under the table location, sizes between 1 MB and 500 MB, so some
//! are not rewrite candidates at the default 512 MB target), 1,000 per commit; no data file
//! exists, planning reads only manifests. Then `--triggers` (5) times: 10 appends of 10 files
//! land, the table is loaded from the catalog (`table_load_ms`), and the rewrite is planned (i)
//! by a full rescan (`plan_rewrite`) and (ii) by `LiveFiles::update` + `plan_rewrite_live` on
//! the view kept since the first trigger (its initial full load is `initial_load_ms`), in
//! alternating order; both must give the same groups. Reported: median ms per trigger of each
//! and the speed-up. Files go to `--dir` (default `/dev/shm`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow_array::{Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use weir::maintenance::iceberg::spec::{
    DataContentType, DataFile, DataFileBuilder, DataFileFormat, Literal, NestedField,
    PrimitiveType, Schema, Struct, Transform, Type, UnboundPartitionSpec,
};
use weir::maintenance::iceberg::table::Table;
use weir::maintenance::iceberg::transaction::{ApplyTransactionAction, Transaction};
use weir::maintenance::iceberg::{Catalog, NamespaceIdent, TableIdent};
use weir::maintenance::maintain::live_files::{LiveFiles, Refresh};
use weir::maintenance::maintain::tasks::{plan_rewrite, plan_rewrite_live};
use weir::maintenance::maintain::RewriteSettings;
use weir::maintenance::rewrite::rewrite_groups;
use weir::maintenance::table_writer::writer_properties;
use weir::maintenance::{table_io, CatalogConfig, IcebergRuntime};

const BATCH: usize = 8192;
const REGIONS: [&str; 8] = [
    "eu-west", "eu-north", "us-east", "us-west", "ap-south", "ap-east", "sa", "af",
];

fn args() -> Vec<String> {
    std::env::args().collect()
}

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args = args();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `--dir`, else `/dev/shm` (memory: the comparison is of decoding, encoding and metadata
/// work, not of the disk), else the temp directory.
fn base_dir() -> PathBuf {
    let d: String = arg("--dir", String::new());
    if !d.is_empty() {
        return d.into();
    }
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

fn ident() -> TableIdent {
    TableIdent::new(NamespaceIdent::new("bench".into()), "events".into())
}

fn schema() -> Schema {
    Schema::builder()
        .with_fields(vec![
            NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
            NestedField::optional(2, "region", Type::Primitive(PrimitiveType::String)).into(),
            NestedField::required(3, "ts", Type::Primitive(PrimitiveType::Timestamp)).into(),
            NestedField::optional(4, "name", Type::Primitive(PrimitiveType::String)).into(),
            NestedField::optional(5, "amount", Type::Primitive(PrimitiveType::Double)).into(),
        ])
        .build()
        .expect("a valid schema")
}

/// Rows `start..start + rows` of the generated data, as one batch.
fn batch(start: usize, rows: usize) -> RecordBatch {
    let arrow: arrow_schema::Schema = (&schema()).try_into().expect("an Arrow schema");
    let ids: Vec<i64> = (start..start + rows).map(|i| i as i64).collect();
    RecordBatch::try_new(
        Arc::new(arrow),
        vec![
            Arc::new(Int64Array::from(ids.clone())),
            Arc::new(StringArray::from_iter_values(
                ids.iter()
                    .map(|i| REGIONS[(*i as usize * 7) % REGIONS.len()]),
            )),
            Arc::new(TimestampMicrosecondArray::from_iter_values(
                ids.iter().map(|i| 1_793_491_200_000_000 + i * 1_000),
            )),
            Arc::new(StringArray::from_iter_values(
                ids.iter().map(|i| format!("user-{}", (i * 7919) % 100_000)),
            )),
            Arc::new(Float64Array::from_iter_values(
                ids.iter()
                    .map(|i| ((i * 104_729) % 1_000_000) as f64 / 100.0),
            )),
        ],
    )
    .expect("a valid batch")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("creating a directory");
    for e in std::fs::read_dir(from)
        .expect("listing a directory")
        .flatten()
    {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if src.is_dir() {
            copy_dir(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).expect("copying a file");
        }
    }
}

fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// Commits `files` to the table by fast appends of `per_commit` files (no duplicate check:
/// it would read every manifest on every commit).
async fn fast_append(catalog: &dyn Catalog, files: Vec<DataFile>, per_commit: usize) {
    let mut files = files.into_iter().peekable();
    while files.peek().is_some() {
        let chunk: Vec<DataFile> = files.by_ref().take(per_commit.max(1)).collect();
        let table = catalog
            .load_table(&ident())
            .await
            .expect("loading the table");
        let tx = Transaction::new(&table);
        let tx = tx
            .fast_append()
            .with_check_duplicate(false)
            .add_data_files(chunk)
            .apply(tx)
            .expect("a fast append");
        tx.commit(catalog).await.expect("committing");
    }
}

// ---------------------------------------------------------------------------------------------
// Rewrite throughput.

/// The pristine table: `files` data files of `rows` rows in `dir`. Returns the input bytes and
/// rows, and the table's Parquet writer properties (what weir's writer uses).
fn build_rewrite_table(
    rt: &IcebergRuntime,
    dir: &Path,
    files: usize,
    rows: usize,
) -> (u64, u64, WriterProperties) {
    let config = CatalogConfig::embedded(dir);
    rt.block_on(async {
        let catalog = config.open().await.expect("opening the catalog");
        let table = table_io::create_table_if_missing(&*catalog, &ident(), schema())
            .await
            .expect("creating the table");
        let mut written = Vec::with_capacity(files);
        for i in 0..files {
            let b = batch(i * rows, rows);
            written.extend(
                table_io::write_data_files(&table, &[b])
                    .await
                    .expect("writing a data file"),
            );
        }
        let bytes = written.iter().map(|f| f.file_size_in_bytes()).sum();
        let n = written.iter().map(|f| f.record_count()).sum();
        fast_append(&*catalog, written, 100).await;
        let props = writer_properties(&table).expect("the table's writer properties");
        (bytes, n, props)
    })
}

/// One weir compaction of the table in `dir`: (MB/s of input, seconds, output files).
fn run_weir(rt: &IcebergRuntime, dir: &Path, target: u64, rows: u64) -> (f64, f64, usize) {
    let config = CatalogConfig::embedded(dir);
    rt.block_on(async {
        let catalog = config.open().await.expect("opening the catalog");
        let start = Instant::now();
        let table = catalog.load_table(&ident()).await.expect("loading");
        let settings = RewriteSettings {
            target_file_size: Some(target),
            ..RewriteSettings::default()
        };
        let planned = plan_rewrite(&table, &settings).await.expect("planning");
        let groups: Vec<BTreeSet<String>> = planned
            .into_iter()
            .map(|g| g.into_iter().collect())
            .collect();
        let plan_secs = start.elapsed().as_secs_f64();
        let r = rewrite_groups(&config, &*catalog, &table, &groups, Some(target as usize))
            .await
            .expect("rewriting");
        let secs = start.elapsed().as_secs_f64();
        tracing_note(plan_secs, secs);
        let input = input_bytes(&table, &groups).await;
        assert_eq!(r.committed(), groups.len(), "every group committed");
        assert_eq!(r.rows, rows, "every row rewritten");
        let after = catalog.load_table(&ident()).await.expect("loading");
        let out = LiveFiles::load(&after).await.expect("live files").len();
        (input as f64 / 1e6 / secs, secs, out)
    })
}

fn tracing_note(plan_secs: f64, secs: f64) {
    eprintln!(
        "  weir: plan {:.0} ms of {:.0} ms",
        plan_secs * 1e3,
        secs * 1e3
    );
}

async fn input_bytes(table: &Table, groups: &[BTreeSet<String>]) -> u64 {
    let live = LiveFiles::load(table).await.expect("live files");
    groups
        .iter()
        .flatten()
        .filter_map(|p| live.get(p))
        .map(|f| f.file_size_in_bytes)
        .sum()
}

/// The parquet crate reading `inputs` and writing them rolled at `target` into `out`: (MB/s
/// of input, seconds, output files).
fn run_parquet(
    inputs: &[PathBuf],
    out: &Path,
    target: u64,
    props: &WriterProperties,
) -> (f64, f64, usize) {
    let _ = std::fs::remove_dir_all(out);
    std::fs::create_dir_all(out).expect("creating the output directory");
    let start = Instant::now();
    let mut bytes_in = 0u64;
    let mut writer: Option<ArrowWriter<std::fs::File>> = None;
    let mut files = 0usize;
    for path in inputs {
        let file = std::fs::File::open(path).expect("opening an input");
        bytes_in += file.metadata().map(|m| m.len()).unwrap_or(0);
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.with_batch_size(BATCH).build())
            .expect("a parquet reader");
        for b in reader {
            let b = b.expect("reading a batch");
            let roll = writer
                .as_ref()
                .is_some_and(|w| (w.bytes_written() + w.in_progress_size()) as u64 > target);
            if roll {
                if let Some(w) = writer.take() {
                    w.close().expect("closing");
                }
            }
            let w = match writer.as_mut() {
                Some(w) => w,
                None => {
                    files += 1;
                    let f = std::fs::File::create(out.join(format!("part-{files:05}.parquet")))
                        .expect("creating an output");
                    writer.insert(
                        ArrowWriter::try_new(f, b.schema(), Some(props.clone()))
                            .expect("a parquet writer"),
                    )
                }
            };
            w.write(&b).expect("writing");
        }
    }
    if let Some(w) = writer.take() {
        w.close().expect("closing");
    }
    let secs = start.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(out);
    (bytes_in as f64 / 1e6 / secs, secs, files)
}

fn bench_rewrite(rt: &IcebergRuntime, reps: usize) {
    let n_files: usize = arg("--input-files", 1000);
    let rows: usize = arg("--rows-per-file", 2000);
    let target: u64 = arg::<u64>("--target-mb", 8) << 20;
    let root = base_dir().join(format!("weir-bench-compaction-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (pristine, out) = (root.join("pristine"), root.join("out"));
    let t = Instant::now();
    let (bytes, total_rows, props) = build_rewrite_table(rt, &pristine, n_files, rows);
    eprintln!(
        "rewrite: built {n_files} files, {total_rows} rows, {:.1} MB in {:.1} s",
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    let inputs = parquet_files(&pristine);
    assert_eq!(inputs.len(), n_files, "one Parquet file per append");
    let (mut weir, mut direct) = (Vec::new(), Vec::new());
    let (mut weir_out, mut parquet_out) = (0, 0);
    // The table's paths are absolute: each weir run works on a fresh copy at the same place
    // (the pristine table moved aside meanwhile; the peer reads it there or in place).
    let backup = root.join("backup");
    let weir_run = || {
        std::fs::rename(&pristine, &backup).expect("moving the pristine table aside");
        copy_dir(&backup, &pristine);
        let res = run_weir(rt, &pristine, target, total_rows);
        std::fs::remove_dir_all(&pristine).expect("removing the compacted copy");
        std::fs::rename(&backup, &pristine).expect("moving the pristine table back");
        res
    };
    for r in 0..reps {
        let (w, p) = if r % 2 == 0 {
            let w = weir_run();
            (w, run_parquet(&inputs, &out, target, &props))
        } else {
            let p = run_parquet(&inputs, &out, target, &props);
            (weir_run(), p)
        };
        eprintln!(
            "rewrite run {r}: weir {:.1} MB/s ({:.2} s, {} files), parquet crate {:.1} MB/s ({:.2} s, {} files)",
            w.0, w.1, w.2, p.0, p.1, p.2
        );
        weir.push(w.0);
        direct.push(p.0);
        (weir_out, parquet_out) = (w.2, p.2);
    }
    let _ = std::fs::remove_dir_all(&root);
    let (w, p) = (median(weir), median(direct));
    println!(
        "{}",
        serde_json::json!({
            "bench": "rewrite",
            "input_files": n_files,
            "rows": total_rows,
            "input_mb": round(bytes as f64 / 1e6, 1),
            "target_mb": target >> 20,
            "reps": reps,
            "weir_mb_s": round(w, 1),
            "parquet_crate_mb_s": round(p, 1),
            "ratio": round(w / p, 3),
            "weir_output_files": weir_out,
            "parquet_output_files": parquet_out,
        })
    );
}

// ---------------------------------------------------------------------------------------------
// Planning time.

/// `n` synthetic data files of the table (numbered from `first`), metadata only.
fn synthetic_files(table: &Table, first: usize, n: usize) -> Vec<DataFile> {
    let meta = table.metadata();
    let location = meta.location().trim_end_matches('/');
    let spec_id = meta.default_partition_spec_id();
    (first..first + n)
        .map(|i| {
            let region = REGIONS[i % REGIONS.len()];
            // 1 MB to 500 MB, scattered.
            let size = (1 << 20) + (i as u64).wrapping_mul(2_654_435_761) % (499 << 20);
            DataFileBuilder::default()
                .content(DataContentType::Data)
                .file_path(format!(
                    "{location}/data/region={region}/synthetic-{i:08}.parquet"
                ))
                .file_format(DataFileFormat::Parquet)
                .partition(Struct::from_iter([Some(Literal::string(region))]))
                .partition_spec_id(spec_id)
                .record_count(1000 + (i as u64 % 1000))
                .file_size_in_bytes(size)
                .build()
                .expect("a data file")
        })
        .collect()
}

fn bench_planning(rt: &IcebergRuntime) {
    let n: usize = arg("--files", 100_000);
    let triggers: usize = arg::<usize>("--triggers", 5).max(1);
    let dir = base_dir().join(format!("weir-bench-planning-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = CatalogConfig::embedded(&dir);
    let settings = RewriteSettings::default();
    rt.block_on(async {
        let catalog = config.open().await.expect("opening the catalog");
        let spec = UnboundPartitionSpec::builder()
            .add_partition_field(2, "region", Transform::Identity)
            .expect("a partition field")
            .build();
        let table = table_io::create_partitioned_table_if_missing(
            &*catalog,
            &ident(),
            schema(),
            Some(spec),
        )
        .await
        .expect("creating the table");
        let t = Instant::now();
        fast_append(&*catalog, synthetic_files(&table, 0, n), 1000).await;
        eprintln!(
            "planning: built {n} files in {} commits in {:.1} s",
            n.div_ceil(1000),
            t.elapsed().as_secs_f64()
        );
        let load = || async { catalog.load_table(&ident()).await.expect("loading") };
        let t = Instant::now();
        let table = load().await;
        let mut view = LiveFiles::load(&table).await.expect("the live files");
        let initial_ms = t.elapsed().as_secs_f64() * 1e3;
        assert_eq!(view.len(), n);
        let (mut full, mut incremental, mut updates, mut loads) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut next = n;
        let mut groups = 0;
        for r in 0..triggers {
            for _ in 0..10 {
                let t = load().await;
                fast_append(&*catalog, synthetic_files(&t, next, 10), 10).await;
                next += 10;
            }
            let t0 = Instant::now();
            let table = load().await;
            loads.push(t0.elapsed().as_secs_f64() * 1e3);
            let run_full = || async {
                let t = Instant::now();
                let g = plan_rewrite(&table, &settings).await.expect("planning");
                (g, t.elapsed().as_secs_f64() * 1e3)
            };
            // The view is updated in both orders: keep it outside the closure.
            let run_incremental = async |view: &mut LiveFiles| {
                let t = Instant::now();
                let refresh = view.update(&table).await.expect("updating");
                let update_ms = t.elapsed().as_secs_f64() * 1e3;
                let g = plan_rewrite_live(view, &table, &settings).expect("planning");
                let ms = t.elapsed().as_secs_f64() * 1e3;
                assert!(
                    matches!(refresh, Refresh::Incremental { snapshots: 10, .. }),
                    "{refresh:?}"
                );
                (g, ms, update_ms)
            };
            let ((a, full_ms), (b, inc_ms, update_ms)) = if r % 2 == 0 {
                let f = run_full().await;
                (f, run_incremental(&mut view).await)
            } else {
                let i = run_incremental(&mut view).await;
                (run_full().await, i)
            };
            assert_eq!(a, b, "the incremental plan differs from the full rescan's");
            groups = a.len();
            eprintln!(
                "planning trigger {r}: full rescan {full_ms:.1} ms, incremental {inc_ms:.1} ms (update {update_ms:.1} ms; {} live files, {groups} groups)",
                view.len()
            );
            full.push(full_ms);
            incremental.push(inc_ms);
            updates.push(update_ms);
        }
        let (f, i, l) = (median(full), median(incremental), median(loads));
        println!(
            "{}",
            serde_json::json!({
                "bench": "planning",
                "files": n,
                "triggers": triggers,
                "commits_between_triggers": 10,
                "files_per_commit": 10,
                "full_rescan_ms": round(f, 1),
                "incremental_ms": round(i, 1),
                "incremental_update_ms": round(median(updates), 1),
                "speedup": round(f / i, 1),
                "table_load_ms": round(l, 1),
                "speedup_with_table_load": round((f + l) / (i + l), 1),
                "initial_load_ms": round(initial_ms, 1),
                "groups": groups,
            })
        );
    });
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let reps: usize = arg::<usize>("--reps", 3).max(1);
    let only: String = arg("--only", String::new());
    // One worker thread, as the maintenance task's runtime: the futures run on this thread.
    let rt = IcebergRuntime::new(1).expect("a runtime");
    if only.is_empty() || only == "rewrite" {
        bench_rewrite(&rt, reps);
    }
    if only.is_empty() || only == "planning" {
        bench_planning(&rt);
    }
}
