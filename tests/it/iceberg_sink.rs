//! The Iceberg sink's data files: partitioned tables (partition values computed by weir agree
//! with pyiceberg's transforms) and rolling at the target file size.

use std::sync::Arc;

use arrow_array::{Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use weir::maintenance::iceberg::spec::{
    NestedField, PrimitiveType, Schema, Transform, Type, UnboundPartitionSpec,
};
use weir::maintenance::iceberg::{NamespaceIdent, TableIdent};
use weir::maintenance::sink::{IcebergSink, IcebergSinkConfig, IcebergSinkExt, RowBatcher};
use weir::maintenance::{table_io, CatalogConfig, IcebergRuntime};
use weir::prelude::*;

use crate::iceberg_interop::{pyiceberg, temp_dir};

/// 2026-11-01T00:00:00Z in microseconds.
const BASE_TS: i64 = 1_793_491_200_000_000;
const HALF_DAY: i64 = 12 * 3600 * 1_000_000;

fn event_schema() -> Schema {
    Schema::builder()
        .with_fields(vec![
            NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
            NestedField::optional(2, "region", Type::Primitive(PrimitiveType::String)).into(),
            NestedField::required(3, "ts", Type::Primitive(PrimitiveType::Timestamp)).into(),
            NestedField::optional(4, "name", Type::Primitive(PrimitiveType::String)).into(),
        ])
        .build()
        .unwrap()
}

/// Row `i`: region by `i % 3`, two days of timestamps, names starting "alpha"/"beta", or — for
/// `noisy` — 32 hex digits that barely compress.
fn events(rows: &[u64], noisy: bool) -> Result<RecordBatch, UserError> {
    let schema = arrow_schema::Schema::new(vec![
        arrow_schema::Field::new("id", arrow_schema::DataType::Int64, false),
        arrow_schema::Field::new("region", arrow_schema::DataType::Utf8, true),
        arrow_schema::Field::new(
            "ts",
            arrow_schema::DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, None),
            false,
        ),
        arrow_schema::Field::new("name", arrow_schema::DataType::Utf8, true),
    ]);
    let region = |i: u64| ["eu", "us", "ap"][(i % 3) as usize];
    let name = |i: u64| {
        if noisy {
            let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i << 17);
            format!("{h:016x}{:016x}", h.rotate_left(29).wrapping_mul(31))
        } else {
            format!("{}-{i}", ["alpha", "beta"][((i / 4) % 2) as usize])
        }
    };
    Ok(RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|&i| i as i64))),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|&i| region(i)),
            )),
            Arc::new(TimestampMicrosecondArray::from_iter_values(
                rows.iter().map(|&i| BASE_TS + (i % 4) as i64 * HALF_DAY),
            )),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|&i| name(i)))),
        ],
    )?)
}

fn create(dir: &std::path::Path, table: &str, spec: Option<UnboundPartitionSpec>) -> TableIdent {
    let ident = TableIdent::new(NamespaceIdent::new("db".into()), table.into());
    let config = CatalogConfig::embedded(dir);
    // Uncompressed: rolling works on the writer's size estimate, which then is the file size.
    let properties = std::collections::HashMap::from([(
        "write.parquet.compression-codec".to_string(),
        "uncompressed".to_string(),
    )]);
    IcebergRuntime::new(1).unwrap().block_on(async {
        let catalog = config.open().await.unwrap();
        table_io::create_table_with_properties_if_missing(
            &*catalog,
            &ident,
            event_schema(),
            spec,
            properties,
        )
        .await
        .unwrap();
    });
    ident
}

/// Runs `rows` events through `sink` (2 writers, checkpoints every `interval`); returns the
/// number of post-commit events.
fn run(
    dir: &std::path::Path,
    rows: u64,
    noisy: bool,
    sink: IcebergSinkConfig,
    interval: std::time::Duration,
) -> usize {
    let env = StreamEnv::new();
    env.configure(|c| {
        c.checkpoint_dir = dir.join("chk").display().to_string();
        c.checkpoint_interval = interval;
    });
    let commits = env
        .generate(Generator::new(|i| i).bounded(rows).rate_limited(40_000.0))
        .set_parallelism(1)
        .transform("batch", move |_| {
            // Noisy rows: small batches, so that files can roll close to the target.
            RowBatcher::new(if noisy { 250 } else { 1000 }, move |r: &[u64]| {
                events(r, noisy)
            })
        })
        .set_parallelism(1)
        .rebalance()
        .sink_to_iceberg(IcebergSink::new(sink).writers(2))
        .collect();
    crate::common::join_within(env.start().unwrap(), std::time::Duration::from_secs(120)).unwrap();
    commits.take().len()
}

/// A table partitioned by identity(region), day(ts), bucket[4](id), truncate[2](name): every
/// row lands in a file whose partition value pyiceberg's own transforms compute for it, and
/// pyiceberg reads every row exactly once.
#[test]
fn the_sink_writes_partitioned_tables() {
    let dir = temp_dir("sink-partitioned");
    let wh = dir.join("warehouse");
    let spec = UnboundPartitionSpec::builder()
        .add_partition_field(2, "region", Transform::Identity)
        .unwrap()
        .add_partition_field(3, "ts_day", Transform::Day)
        .unwrap()
        .add_partition_field(1, "id_bucket", Transform::Bucket(4))
        .unwrap()
        .add_partition_field(4, "name_trunc", Transform::Truncate(2))
        .unwrap()
        .build();
    let ident = create(&wh, "parts", Some(spec));
    let sink = IcebergSinkConfig::new(CatalogConfig::embedded(&wh), ident, "partitioned");
    let commits = run(
        &dir,
        6_000,
        false,
        sink,
        std::time::Duration::from_millis(100),
    );
    assert!(commits >= 1);
    let out = pyiceberg(
        &wh,
        "import datetime, pyarrow.parquet as pq\n\
         from pyiceberg.transforms import BucketTransform, TruncateTransform\n\
         from pyiceberg.types import LongType, StringType\n\
         t = cat.load_table('db.parts')\n\
         ids = sorted(t.scan().to_arrow().column('id').to_pylist())\n\
         bucket = BucketTransform(4).transform(LongType())\n\
         trunc = TruncateTransform(2).transform(StringType())\n\
         epoch = datetime.datetime(1970, 1, 1)\n\
         def day(v):\n    return (v - datetime.date(1970, 1, 1)).days if isinstance(v, datetime.date) else v\n\
         bad, parts, files = [], set(), t.inspect.files().to_pylist()\n\
         for f in files:\n\
         \x20   p = f['partition']\n\
         \x20   parts.add((p['region'], day(p['ts_day']), p['id_bucket'], p['name_trunc']))\n\
         \x20   for r in pq.read_table(f['file_path'].removeprefix('file://')).to_pylist():\n\
         \x20       want = (r['region'], (r['ts'] - epoch).days, bucket(r['id']), trunc(r['name']))\n\
         \x20       got = (p['region'], day(p['ts_day']), p['id_bucket'], p['name_trunc'])\n\
         \x20       if want != got: bad.append([str(want), str(got)])\n\
         print(json.dumps({'ids': ids, 'bad': bad[:5], 'partitions': len(parts), 'files': len(files)}))",
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let got: Vec<i64> = serde_json::from_value(v["ids"].clone()).unwrap();
    assert!(
        got == (0..6_000).collect::<Vec<_>>(),
        "rows lost or duplicated"
    );
    assert_eq!(
        v["bad"],
        serde_json::json!([]),
        "rows in the wrong partition"
    );
    // 3 regions × 2 days × 4 buckets × 2 name prefixes.
    assert_eq!(v["partitions"], 48, "files: {}", v["files"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// With a 64 KiB target, the writers roll: many files, none much larger than the target, and
/// together they hold every row.
#[test]
fn the_sink_rolls_data_files_at_the_target_size() {
    const TARGET: u64 = 64 << 10;
    let dir = temp_dir("sink-rolling");
    let wh = dir.join("warehouse");
    let ident = create(&wh, "rolled", None);
    let sink = IcebergSinkConfig::new(CatalogConfig::embedded(&wh), ident, "rolling")
        .with_target_file_size(TARGET as usize);
    // No checkpoint during the run (it takes about a second): only the target closes files
    // before the end.
    run(
        &dir,
        40_000,
        true,
        sink,
        std::time::Duration::from_secs(600),
    );
    let out = pyiceberg(
        &wh,
        "t = cat.load_table('db.rolled')\n\
         ids = sorted(t.scan().to_arrow().column('id').to_pylist())\n\
         files = t.inspect.files().to_pylist()\n\
         print(json.dumps({'ids': ids, 'sizes': sorted(f['file_size_in_bytes'] for f in files)}))",
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let got: Vec<i64> = serde_json::from_value(v["ids"].clone()).unwrap();
    assert!(
        got == (0..40_000).collect::<Vec<_>>(),
        "rows lost or duplicated"
    );
    let sizes: Vec<u64> = serde_json::from_value(v["sizes"].clone()).unwrap();
    let total: u64 = sizes.iter().sum();
    eprintln!("{} files, {total} bytes: {sizes:?}", sizes.len());
    // A file is closed once it reaches the target: it exceeds it by at most one batch (250
    // rows of ~50 bytes: ~12 KiB).
    assert!(
        sizes.iter().all(|&s| s <= TARGET + TARGET / 2),
        "a file far above the target: {sizes:?}"
    );
    // Every file but each writer's last one was closed by reaching the target.
    let full = sizes.iter().filter(|&&s| s >= TARGET).count();
    assert!(
        full + 2 >= sizes.len() && sizes.len() >= 4,
        "not rolled at the target: {sizes:?} ({total} bytes)"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
