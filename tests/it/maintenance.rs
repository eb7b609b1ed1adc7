//! Table maintenance as a weir job on a pyiceberg-made table: every task once (compaction,
//! expiry, orphan cleanup, manifest rewrite), then pyiceberg checks the table.

use std::path::Path;
use std::time::{Duration, SystemTime};

use weir::maintenance::iceberg::{NamespaceIdent, TableIdent};
use weir::maintenance::maintain::{
    ExpireTaskSettings, RewriteSettings, TableMaintenance, TaskKind, TaskResult, TriggerConditions,
};
use weir::maintenance::manifests::ManifestSettings;
use weir::maintenance::orphans::OrphanSettings;
use weir::maintenance::CatalogConfig;
use weir::prelude::*;

use crate::iceberg_interop::{pyiceberg, temp_dir};

/// pyiceberg makes `db.events` (id long, region string), partitioned by region (3 values),
/// with `appends` appends of 60 rows: three small files per append.
pub(crate) fn events_table_by_pyiceberg(dir: &Path, appends: usize) {
    std::fs::create_dir_all(dir).unwrap();
    pyiceberg(
        dir,
        &format!(
            "import pyarrow as pa\n\
             from pyiceberg.partitioning import PartitionSpec, PartitionField\n\
             from pyiceberg.transforms import IdentityTransform\n\
             from pyiceberg.schema import Schema\n\
             from pyiceberg.types import NestedField, LongType, StringType\n\
             cat.create_namespace('db')\n\
             schema = Schema(NestedField(1, 'id', LongType(), required=True), NestedField(2, 'region', StringType(), required=False))\n\
             spec = PartitionSpec(PartitionField(source_id=2, field_id=1000, transform=IdentityTransform(), name='region'))\n\
             t = cat.create_table('db.events', schema=schema, partition_spec=spec)\n\
             arrow = pa.schema([pa.field('id', pa.int64(), nullable=False), pa.field('region', pa.string())])\n\
             for k in range({appends}):\n\
             \x20   ids = list(range(k * 60, k * 60 + 60))\n\
             \x20   t.append(pa.table({{'id': ids, 'region': [['eu', 'us', 'ap'][i % 3] for i in ids]}}, schema=arrow))\n"
        ),
    );
}

fn set_old(path: &Path, age: Duration) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - age).unwrap();
}

/// The whole maintenance job, once: 240 small files in 3 partitions are compacted, old
/// snapshots expired with their files, planted old orphans deleted (young ones and files
/// outside the table kept), manifests merged; pyiceberg reads the same rows.
#[test]
fn maintenance_once_keeps_a_pyiceberg_table_healthy() {
    const TARGET: u64 = 1 << 20;
    let dir = temp_dir("maintain-once");
    events_table_by_pyiceberg(&dir, 80);
    let table_dir = dir.join("db/events");
    assert!(table_dir.is_dir(), "{}", table_dir.display());
    // Planted files: an old orphan, a young one, an old file outside the table.
    let old_orphan = table_dir.join("data/region=eu/orphan-old.parquet");
    let young_orphan = table_dir.join("data/region=eu/orphan-young.parquet");
    let outside = dir.join("db/outside-old.parquet");
    for p in [&old_orphan, &young_orphan, &outside] {
        std::fs::write(p, b"not referenced").unwrap();
    }
    set_old(&old_orphan, Duration::from_secs(4 * 24 * 3600));
    set_old(&outside, Duration::from_secs(4 * 24 * 3600));
    let before = pyiceberg(
        &dir,
        "t = cat.load_table('db.events')\n\
         print(json.dumps({'ids': sorted(t.scan().to_arrow().column('id').to_pylist()), 'files': len(t.inspect.files())}))",
    );
    let before: serde_json::Value = serde_json::from_str(before.trim()).unwrap();
    assert_eq!(before["files"], 240);

    let ident = TableIdent::new(NamespaceIdent::new("db".into()), "events".into());
    let maintenance = TableMaintenance::new(CatalogConfig::embedded(&dir), ident)
        .rate_limit(Duration::from_millis(10))
        .lock_check_delay(Duration::from_millis(20))
        .parallelism(2)
        .add(
            TaskKind::RewriteDataFiles(RewriteSettings {
                target_file_size: Some(TARGET),
                ..RewriteSettings::default()
            }),
            TriggerConditions::default(),
        )
        .add(
            TaskKind::ExpireSnapshots(ExpireTaskSettings {
                max_snapshot_age: Some(Duration::ZERO),
                retain_last: Some(2),
                delete_batch_size: 50,
            }),
            TriggerConditions::default(),
        )
        .add(
            TaskKind::DeleteOrphanFiles(OrphanSettings::default()),
            TriggerConditions::default(),
        )
        .add(
            TaskKind::RewriteManifests(ManifestSettings::default()),
            TriggerConditions::default(),
        );
    let env = StreamEnv::new();
    env.configure(|c| {
        c.checkpoint_dir = dir.join("chk").display().to_string();
        c.checkpoint_interval = Duration::from_millis(200);
    });
    let results = maintenance.build(&env, true).unwrap().collect();
    crate::common::join_within(env.start().unwrap(), Duration::from_secs(180)).unwrap();
    let results: Vec<TaskResult> = results.take();
    for r in &results {
        eprintln!("{}", weir::maintenance::maintain::summary_line(r));
    }
    assert_eq!(results.len(), 4, "{results:?}");
    assert!(results.iter().all(|r| r.success), "{results:?}");
    let by_task = |name: &str| {
        results
            .iter()
            .find(|r| r.task == name)
            .unwrap_or_else(|| panic!("no {name} result"))
    };
    assert_eq!(by_task("RewriteDataFiles").counts["files_removed"], 240);
    assert!(by_task("ExpireSnapshots").counts["snapshots_expired"] >= 79);
    assert_eq!(by_task("DeleteOrphanFiles").counts["deleted"], 1);

    let after = pyiceberg(
        &dir,
        "import collections\n\
         t = cat.load_table('db.events')\n\
         files = t.inspect.files().to_pylist()\n\
         per = collections.defaultdict(lambda: [0, 0])\n\
         for f in files:\n\
         \x20   per[f['partition']['region']][0] += 1\n\
         \x20   per[f['partition']['region']][1] += f['file_size_in_bytes']\n\
         snaps = [s.snapshot_id for s in t.snapshots()]\n\
         readable = [len(t.scan(snapshot_id=s).to_arrow()) for s in snaps]\n\
         print(json.dumps({'ids': sorted(t.scan().to_arrow().column('id').to_pylist()), 'per': per, 'operation': t.current_snapshot().summary.operation.value, 'snapshots': len(snaps), 'readable': readable, 'manifests': len(t.inspect.manifests())}))",
    );
    let after: serde_json::Value = serde_json::from_str(after.trim()).unwrap();
    assert!(after["ids"] == before["ids"], "rows changed");
    for (region, v) in after["per"].as_object().unwrap() {
        let (files, bytes) = (v[0].as_u64().unwrap(), v[1].as_u64().unwrap());
        assert!(
            files <= bytes.div_ceil(TARGET) + 1,
            "{region}: {files} files, {bytes} bytes"
        );
    }
    assert_eq!(after["operation"], "replace");
    assert!(after["snapshots"].as_u64().unwrap() <= 3, "{after}");
    assert!(after["manifests"].as_u64().unwrap() <= 2, "{after}");
    // Every remaining snapshot reads (expiry deleted only unreachable files).
    assert!(after["readable"]
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n.as_u64().unwrap() > 0));
    assert!(!old_orphan.exists(), "the old orphan is deleted");
    assert!(young_orphan.exists() && outside.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

fn weir_maintain(config: &Path, once: bool) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_weir"));
    cmd.arg("maintain").arg("--config").arg(config);
    if once {
        cmd.arg("--once");
    }
    cmd.output().expect("cannot run weir")
}

/// `weir maintain --config … --once` on a pyiceberg table: every task once, a summary, exit 0;
/// pyiceberg reads the same rows from the compacted table. Bad input: an unknown table, an
/// unknown option and an unreachable catalog are each a clear error (exit 1).
#[test]
fn weir_maintain_once_from_the_command_line() {
    let dir = temp_dir("maintain-cli");
    events_table_by_pyiceberg(&dir, 30);
    let config = |table: &str, extra: &str, catalog: &str| {
        format!(
            "[catalog]\nwarehouse = '.'\n{catalog}\n[checkpoints]\ndir = 'chk'\ninterval = '1s'\n\
             [[table]]\nname = '{table}'\nrate_limit = '10ms'\nlock_check_delay = '20ms'\nparallelism = 2\n{extra}\n\
             [table.rewrite_data_files]\ntarget_file_size = '1 MB'\n\
             [table.expire_snapshots]\nmax_snapshot_age = '0s'\nretain_last = 1\n\
             [table.delete_orphan_files]\n\
             [table.rewrite_manifests]\n"
        )
    };
    let path = dir.join("maintenance.toml");
    std::fs::write(&path, config("db.events", "", "")).unwrap();
    let before = pyiceberg(
        &dir,
        "t = cat.load_table('db.events')\nprint(json.dumps(sorted(t.scan().to_arrow().column('id').to_pylist())))",
    );
    let out = weir_maintain(&path, true);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("summary: 4 task run(s)"), "{stdout}");
    assert!(
        stdout.contains("RewriteDataFiles on db.events: ok"),
        "{stdout}"
    );
    let after = pyiceberg(
        &dir,
        "t = cat.load_table('db.events')\n\
         print(json.dumps({'ids': sorted(t.scan().to_arrow().column('id').to_pylist()), 'files': len(t.inspect.files()), 'operation': t.current_snapshot().summary.operation.value}))",
    );
    let after: serde_json::Value = serde_json::from_str(after.trim()).unwrap();
    let before: serde_json::Value = serde_json::from_str(before.trim()).unwrap();
    assert!(after["ids"] == before, "rows changed");
    assert_eq!(after["files"], 3, "one file per partition: {after}");
    assert_eq!(after["operation"], "replace");

    // Bad input.
    let fails = |text: String, expect: &str| {
        std::fs::write(&path, text).unwrap();
        let out = weir_maintain(&path, true);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "should fail: {stderr}");
        assert!(stderr.contains(expect), "expected '{expect}' in: {stderr}");
    };
    fails(config("db.nope", "", ""), "table 'db.nope' does not exist");
    fails(config("db.events", "colour = 'blue'", ""), "colour");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    fails(
        config(
            "db.events",
            "",
            &format!("type = 'postgres'\nurl = 'postgres://weir@127.0.0.1:{port}/weir'"),
        ),
        &format!("127.0.0.1:{port}"),
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The README's main job, small: every event exactly once in the table pyiceberg reads, the
/// table compacted (one live file per partition after the final pass), snapshots expired.
#[test]
fn the_demo_job_writes_compacts_and_expires() {
    use std::sync::Arc;
    use weir::demo::{run, DemoProgress, DemoSettings};
    let dir = temp_dir("demo");
    let summary = run(
        &DemoSettings {
            dir: dir.clone(),
            rows: 30_000,
            rate: 15_000.0,
            parallelism: 2,
        },
        Arc::new(DemoProgress::default()),
    )
    .unwrap();
    assert_eq!(summary.rows, 30_000);
    assert!(summary.commits >= 2, "{summary:?}");
    assert!(summary.files_after <= summary.files_before);
    assert_eq!(
        summary.files_after, 4,
        "one file per partition (4 regions, 1 day)"
    );
    assert!(summary.maintenance.iter().all(|r| r.success), "{summary:?}");
    let out = pyiceberg(
        &dir.join("warehouse"),
        "t = cat.load_table('demo.events')\n\
         ids = t.scan().to_arrow().column('id').to_pylist()\n\
         print(json.dumps({'n': len(ids), 'distinct': len(set(ids)), 'max': max(ids)}))",
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"n": 30000, "distinct": 30000, "max": 29999})
    );
    let _ = std::fs::remove_dir_all(&dir);
}
