//! The main demo job (`weir demo`): events into a partitioned Iceberg table through the
//! exactly-once sink, with table maintenance running after each commit, on the embedded
//! defaults (SQLite catalog and local warehouse under one directory).
//!
//! Generator → RowBatcher → Iceberg writers → committer → post-commit maintenance
//! (compaction when 3 commits arrived, expiry when 6 did) — checkpoints every second. When the
//! input ends, one last maintenance pass (every task once) compacts what the last commits
//! added, and the summary compares the live files before and after it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use weir_engine::{StreamEnv, UserError};
use weir_maintenance::iceberg::spec::{
    NestedField, PrimitiveType, Schema, Transform, Type, UnboundPartitionSpec,
};
use weir_maintenance::iceberg::{NamespaceIdent, TableIdent};
use weir_maintenance::maintain::{
    ExpireTaskSettings, RewriteSettings, TableMaintenance, TaskKind, TaskResult, TriggerConditions,
};
use weir_maintenance::orphans::OrphanSettings;
use weir_maintenance::sink::{IcebergSink, IcebergSinkConfig, IcebergSinkExt, RowBatcher};
use weir_maintenance::{table_io, CatalogConfig, IcebergRuntime};
use weir_operators::{DataStreamExt, Generator, StreamEnvExt};

/// What the demo does.
#[derive(Debug, Clone)]
pub struct DemoSettings {
    /// The directory of the warehouse and checkpoints (emptied first).
    pub dir: PathBuf,
    /// Events to generate.
    pub rows: u64,
    /// Events per second.
    pub rate: f64,
    /// Parallelism of the writers and maintenance workers.
    pub parallelism: usize,
    /// Serve the ingesting job's REST API and dashboard (with its maintenance runs) here.
    pub rest: Option<weir_engine::rest::RestOptions>,
}

/// Progress, updated while the job runs.
#[derive(Debug, Default)]
pub struct DemoProgress {
    /// Events generated.
    pub rows: AtomicU64,
    /// Snapshots the sink committed.
    pub commits: AtomicU64,
    /// Maintenance task runs finished.
    pub maintenance_runs: AtomicU64,
    /// The dashboard's URL, once the job serves it.
    pub dashboard: std::sync::OnceLock<String>,
}

/// What the demo did.
#[derive(Debug, Clone)]
pub struct DemoSummary {
    /// The table.
    pub table: String,
    /// Rows in the table at the end.
    pub rows: u64,
    /// Sink commits.
    pub commits: u64,
    /// Snapshots left after expiry.
    pub snapshots: usize,
    /// Live data files when the input ended (after the in-job maintenance).
    pub files_before: usize,
    /// Live data files after the final compaction.
    pub files_after: usize,
    /// Every maintenance result (in-job, then the final pass).
    pub maintenance: Vec<TaskResult>,
    /// Wall time.
    pub duration: Duration,
    /// The catalog database (for pyiceberg).
    pub catalog_db: PathBuf,
    /// The warehouse directory.
    pub warehouse: PathBuf,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

fn schema() -> Result<Schema, Error> {
    Ok(Schema::builder()
        .with_fields(vec![
            NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
            NestedField::required(2, "region", Type::Primitive(PrimitiveType::String)).into(),
            NestedField::required(3, "ts", Type::Primitive(PrimitiveType::Timestamp)).into(),
            NestedField::optional(4, "user", Type::Primitive(PrimitiveType::String)).into(),
            NestedField::optional(5, "amount", Type::Primitive(PrimitiveType::Double)).into(),
        ])
        .build()?)
}

const REGIONS: [&str; 4] = ["eu", "us", "ap", "sa"];
/// 2026-11-01T00:00:00Z (µs); events spread over two days.
const BASE_TS: i64 = 1_793_491_200_000_000;

fn to_batch(rows: &[u64]) -> Result<RecordBatch, UserError> {
    let arrow: arrow_schema::Schema = (&schema().map_err(|e| e.to_string())?)
        .try_into()
        .map_err(|e: weir_maintenance::iceberg::Error| e.to_string())?;
    Ok(RecordBatch::try_new(
        Arc::new(arrow),
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|&i| i as i64))),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|&i| REGIONS[(i * 7 % 4) as usize]),
            )),
            Arc::new(TimestampMicrosecondArray::from_iter_values(
                rows.iter()
                    .map(|&i| BASE_TS + (i % 172_800) as i64 * 1_000_000),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|&i| format!("user-{}", i * 7919 % 10_000)),
            )),
            Arc::new(Float64Array::from_iter_values(
                rows.iter().map(|&i| (i % 10_000) as f64 / 100.0),
            )),
        ],
    )?)
}

fn maintenance(
    catalog: &CatalogConfig,
    table: &TableIdent,
    parallelism: usize,
) -> TableMaintenance {
    TableMaintenance::new(catalog.clone(), table.clone())
        .rate_limit(Duration::from_millis(500))
        .lock_check_delay(Duration::from_millis(200))
        .parallelism(parallelism)
        .add(
            TaskKind::RewriteDataFiles(RewriteSettings {
                target_file_size: Some(8 << 20),
                min_input_files: 2,
                ..RewriteSettings::default()
            }),
            TriggerConditions {
                commit_count: Some(3),
                ..TriggerConditions::default()
            },
        )
        .add(
            TaskKind::ExpireSnapshots(ExpireTaskSettings {
                max_snapshot_age: Some(Duration::ZERO),
                retain_last: Some(5),
                delete_batch_size: 100,
            }),
            TriggerConditions {
                commit_count: Some(6),
                ..TriggerConditions::default()
            },
        )
}

fn live_files(catalog: &CatalogConfig, table: &TableIdent) -> Result<(usize, usize, u64), Error> {
    let rt = IcebergRuntime::new(1)?;
    rt.block_on(async {
        let c = catalog.open().await?;
        let t = c.load_table(table).await?;
        let (_, files) = weir_maintenance::replace::live_data_files(&t).await?;
        let rows = files.iter().map(|f| f.record_count()).sum();
        Ok::<_, Error>((files.len(), t.metadata().snapshots().count(), rows))
    })
}

/// Runs the demo; `progress` is updated as it goes.
///
/// # Errors
///
/// Returns a boxed error when `settings.dir` is not a demo directory ([`is_demo_dir`]; nothing
/// is deleted then) or cannot be resolved or emptied ([`std::io::Error`]), when the
/// catalog or table cannot be opened, created or read
/// ([`MaintenanceError`](weir_maintenance::MaintenanceError) or
/// [`iceberg::Error`](weir_maintenance::iceberg::Error)), or with the
/// [`JobError`](weir_engine::JobError) of the ingest job or of the final maintenance pass.
pub fn run(settings: &DemoSettings, progress: Arc<DemoProgress>) -> Result<DemoSummary, Error> {
    let started = Instant::now();
    let dir = if settings.dir.is_absolute() {
        settings.dir.clone()
    } else {
        std::env::current_dir()?.join(&settings.dir)
    };
    if !is_demo_dir(&dir) {
        return Err(format!(
            "refusing to empty {}: it is not a weir demo directory (no warehouse/catalog.db)",
            dir.display()
        )
        .into());
    }
    let warehouse = dir.join("warehouse");
    for d in [
        &warehouse,
        &dir.join("checkpoints"),
        &dir.join("checkpoints-final"),
    ] {
        if d.exists() {
            std::fs::remove_dir_all(d)?;
        }
    }
    let catalog = CatalogConfig::embedded(&warehouse);
    let table = TableIdent::new(NamespaceIdent::new("demo".into()), "events".into());
    let spec = UnboundPartitionSpec::builder()
        .add_partition_field(2, "region", Transform::Identity)?
        .add_partition_field(3, "ts_day", Transform::Day)?
        .build();
    IcebergRuntime::new(1)?.block_on(async {
        let c = catalog.open().await?;
        table_io::create_partitioned_table_if_missing(&*c, &table, schema()?, Some(spec)).await?;
        Ok::<_, Error>(())
    })?;

    let env = StreamEnv::new();
    let chk = dir.join("checkpoints").display().to_string();
    env.configure(|c| {
        c.job_name = "weir-demo".into();
        c.checkpoint_dir = chk;
        c.checkpoint_interval = Duration::from_secs(1);
    });
    let p = progress.clone();
    let sink = IcebergSinkConfig::new(catalog.clone(), table.clone(), "weir-demo");
    let commits = env
        .generate(
            Generator::new(move |i| {
                p.rows.fetch_add(1, Ordering::Relaxed);
                i
            })
            .bounded(settings.rows)
            .rate_limited(settings.rate),
        )
        .set_parallelism(1)
        .uid("events")
        .transform("Batches", |_| RowBatcher::new(2000, to_batch))
        .uid("batches")
        .set_parallelism(1)
        .rebalance()
        .sink_to_iceberg(
            IcebergSink::new(sink)
                .writers(settings.parallelism)
                .uid("events-sink"),
        );
    let p = progress.clone();
    let commits = commits.map(move |c| {
        p.commits.fetch_add(1, Ordering::Relaxed);
        c
    });
    let p = progress.clone();
    let board = weir_maintenance::maintain::board::MaintenanceBoard::new();
    let b2 = board.clone();
    let in_job = maintenance(&catalog, &table, settings.parallelism)
        .uid("demo-maintenance")
        .post_commit(&commits)?
        .map(move |r| {
            p.maintenance_runs.fetch_add(1, Ordering::Relaxed);
            b2.record(&r);
            r
        })
        .collect();
    let handle = env.start()?;
    let _server = match &settings.rest {
        Some(rest) => {
            let server = board
                .serve(rest.clone(), &handle)
                .map_err(weir_engine::JobError::from)?;
            let _ = progress.dashboard.set(format!("{}/", server.url()));
            Some(server)
        }
        None => None,
    };
    handle.join()?;
    let mut results = in_job.take();
    let (files_before, _, _) = live_files(&catalog, &table)?;

    // A last pass: every task once (compaction of the last commits, expiry, orphans).
    let env = StreamEnv::new();
    let chk = dir.join("checkpoints-final").display().to_string();
    env.configure(|c| {
        c.checkpoint_dir = chk;
        c.checkpoint_interval = Duration::from_secs(1);
    });
    let last = maintenance(&catalog, &table, settings.parallelism)
        .add(
            TaskKind::DeleteOrphanFiles(OrphanSettings::default()),
            TriggerConditions::default(),
        )
        .uid("demo-final")
        .build(&env, true)?
        .collect();
    env.execute()?;
    results.extend(last.take());
    let (files_after, snapshots, rows) = live_files(&catalog, &table)?;
    Ok(DemoSummary {
        table: table.to_string(),
        rows,
        commits: progress.commits.load(Ordering::Relaxed),
        snapshots,
        files_before,
        files_after,
        maintenance: results,
        duration: started.elapsed(),
        catalog_db: warehouse.join("catalog.db"),
        warehouse,
    })
}

/// The pyiceberg one-liner that reads the demo's table.
pub fn pyiceberg_line(summary: &DemoSummary) -> String {
    format!(
        "python3 -c \"from pyiceberg.catalog.sql import SqlCatalog; t = SqlCatalog('weir', uri='sqlite:///{}', warehouse='file://{}').load_table('{}'); print(t.scan().to_arrow().num_rows)\"",
        summary.catalog_db.display(),
        summary.warehouse.display(),
        summary.table
    )
}

/// Whether `p` looks like a demo directory weir made (used before emptying it).
pub fn is_demo_dir(p: &Path) -> bool {
    !p.exists()
        || p.join("warehouse/catalog.db").exists()
        || std::fs::read_dir(p)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false)
}
