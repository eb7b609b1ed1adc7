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
            rest: None,
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

/// A `weir maintain` configuration for `db.events` in `dir`.
fn maintain_config(dir: &Path, chk: &str, extra_table: &str, tasks: &str) -> String {
    format!(
        "[catalog]\nwarehouse = '{}'\n[checkpoints]\ndir = '{}'\ninterval = '200ms'\n\
         [[table]]\nname = 'db.events'\nrate_limit = '10ms'\nlock_check_delay = '50ms'\nparallelism = 2\n{extra_table}\n{tasks}",
        dir.display(),
        dir.join(chk).display()
    )
}

const ALL_TASKS: &str =
    "[table.rewrite_data_files]\ntarget_file_size = '1 MB'\nmin_input_files = 2\n\
                         [table.expire_snapshots]\nmax_snapshot_age = '0s'\nretain_last = 1\n\
                         [table.delete_orphan_files]\n\
                         [table.rewrite_manifests]\n";

fn json_results(stdout: &[u8]) -> Vec<TaskResult> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Two `weir maintain --once` processes on one table with the SQL lock: every task of both
/// runs, and no two task runs overlap in time (the lock serializes them across processes).
#[test]
fn two_processes_with_the_sql_lock_never_run_tasks_at_the_same_time() {
    let dir = temp_dir("maintain-sql-lock");
    events_table_by_pyiceberg(&dir, 40);
    let lock = format!(
        "[table.lock]\ntype = 'sql'\nurl = 'sqlite://{}'\nlease = '1m'\n",
        dir.join("lock.db").display()
    );
    let mut children = Vec::new();
    for k in 0..2 {
        let path = dir.join(format!("m{k}.toml"));
        std::fs::write(
            &path,
            maintain_config(&dir, &format!("chk{k}"), &lock, ALL_TASKS),
        )
        .unwrap();
        children.push(
            std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
                .args(["maintain", "--once", "--json", "--config"])
                .arg(&path)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        );
    }
    let mut runs = Vec::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        runs.extend(json_results(&out.stdout));
    }
    assert_eq!(runs.len(), 8, "{runs:?}");
    runs.sort_by_key(|r| r.trigger_ms);
    for w in runs.windows(2) {
        let end = w[0].trigger_ms + w[0].duration_ms as i64;
        assert!(
            end <= w[1].trigger_ms,
            "{} ({}..{end}) overlaps {} (from {})",
            w[0].task,
            w[0].trigger_ms,
            w[1].task,
            w[1].trigger_ms
        );
    }
    let out = pyiceberg(
        &dir,
        "t = cat.load_table('db.events')\nprint(json.dumps(sorted(t.scan().to_arrow().column('id').to_pylist())))",
    );
    let ids: Vec<i64> = serde_json::from_str(out.trim()).unwrap();
    assert!(ids == (0..40 * 60).collect::<Vec<_>>(), "rows changed");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Data files on disk under the table's data directory.
fn data_files_on_disk(table_dir: &Path) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let mut stack = vec![table_dir.join("data")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.insert(p.display().to_string());
            }
        }
    }
    out
}

/// Live data files of `db.events` (pyiceberg), as plain paths.
fn live_files_by_pyiceberg(dir: &Path) -> std::collections::BTreeSet<String> {
    let out = pyiceberg(
        dir,
        "t = cat.load_table('db.events')\nprint(json.dumps([f['file_path'] for f in t.inspect.files().to_pylist()]))",
    );
    let v: Vec<String> = serde_json::from_str(out.trim()).unwrap();
    v.into_iter()
        .map(|p| p.trim_start_matches("file://").to_string())
        .collect()
}

/// SIGKILL during rewrites: `weir maintain` (long-running, restoring its latest checkpoint) is
/// killed three times while it compacts, then a final `--once` run with orphan cleanup (min
/// age 0) leaves the table with the same rows and exactly its live files on disk.
#[test]
fn a_sigkilled_maintenance_job_leaves_a_correct_table_and_no_leftovers() {
    let dir = temp_dir("maintain-crash");
    events_table_by_pyiceberg(&dir, 100);
    let table_dir = dir.join("db/events");
    let before = pyiceberg(
        &dir,
        "t = cat.load_table('db.events')\nprint(json.dumps(sorted(t.scan().to_arrow().column('id').to_pylist())))",
    );
    let path = dir.join("long.toml");
    // Small groups and partial progress: a rewrite is many commits, a kill lands among them.
    let tasks = "[table.rewrite_data_files]\ntarget_file_size = '1 MB'\nmin_input_files = 2\nmax_file_group_size = '40 KB'\npartial_progress = true\nmax_commits = 20\n\
                 [table.rewrite_data_files.trigger]\ncommit_count = 1\n";
    std::fs::write(&path, maintain_config(&dir, "chk", "", tasks)).unwrap();
    let mut leftovers = Vec::new();
    for delay_ms in [700u64, 1100, 1500] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["maintain", "--json", "--config"])
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        // SIGKILL (Child::kill sends it on Unix).
        child.kill().unwrap();
        child.wait().unwrap();
        let live = live_files_by_pyiceberg(&dir);
        let on_disk = data_files_on_disk(&table_dir);
        leftovers.push(on_disk.difference(&live).count());
    }
    eprintln!("crash test: unreferenced data files after each SIGKILL: {leftovers:?}");
    // The last run, every task once: orphans of any age go.
    let last = dir.join("once.toml");
    std::fs::write(
        &last,
        maintain_config(
            &dir,
            "chk-once",
            "",
            &ALL_TASKS.replace(
                "[table.delete_orphan_files]\n",
                "[table.delete_orphan_files]\nmin_age = '0s'\nallow_short_min_age = true\n",
            ),
        ),
    )
    .unwrap();
    let out = weir_maintain(&last, true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = pyiceberg(
        &dir,
        "t = cat.load_table('db.events')\nprint(json.dumps(sorted(t.scan().to_arrow().column('id').to_pylist())))",
    );
    assert!(after == before, "rows changed");
    assert_eq!(
        data_files_on_disk(&table_dir),
        live_files_by_pyiceberg(&dir),
        "leftovers on disk"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Maintenance running (monitor, commit-count triggers) while pyiceberg appends 25 times: the
/// compactions commit around the appends and no row is lost or duplicated.
#[test]
fn maintenance_while_pyiceberg_appends_loses_no_row() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let dir = temp_dir("maintain-concurrent");
    events_table_by_pyiceberg(&dir, 10);
    let ident = TableIdent::new(NamespaceIdent::new("db".into()), "events".into());
    let maintenance = TableMaintenance::new(CatalogConfig::embedded(&dir), ident)
        .rate_limit(Duration::from_millis(100))
        .lock_check_delay(Duration::from_millis(50))
        .parallelism(2)
        .add(
            TaskKind::RewriteDataFiles(RewriteSettings {
                target_file_size: Some(1 << 20),
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
                retain_last: Some(3),
                delete_batch_size: 20,
            }),
            TriggerConditions {
                commit_count: Some(5),
                ..TriggerConditions::default()
            },
        );
    let env = StreamEnv::new();
    env.configure(|c| {
        c.checkpoint_dir = dir.join("chk").display().to_string();
        c.checkpoint_interval = Duration::from_millis(200);
    });
    let rewrites = Arc::new(AtomicUsize::new(0));
    let r2 = rewrites.clone();
    let results = maintenance
        .build(&env, false)
        .unwrap()
        .map(move |r: TaskResult| {
            if r.task == "RewriteDataFiles" && r.counts.get("groups_committed") > Some(&0) {
                r2.fetch_add(1, Ordering::SeqCst);
            }
            r
        })
        .collect();
    let handle = env.start().unwrap();
    // pyiceberg appends ids 600.. while maintenance runs.
    pyiceberg(
        &dir,
        "import time, pyarrow as pa\n\
         arrow = pa.schema([pa.field('id', pa.int64(), nullable=False), pa.field('region', pa.string())])\n\
         for k in range(10, 35):\n\
         \x20   t = cat.load_table('db.events')\n\
         \x20   ids = list(range(k * 60, k * 60 + 60))\n\
         \x20   t.append(pa.table({'id': ids, 'region': [['eu', 'us', 'ap'][i % 3] for i in ids]}, schema=arrow))\n\
         \x20   time.sleep(0.1)\n",
    );
    // Let the triggers of the last appends run.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while rewrites.load(Ordering::SeqCst) < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1500));
    handle.cancel();
    let _ = handle.join();
    let results: Vec<TaskResult> = results.take();
    for r in &results {
        eprintln!("{}", weir::maintenance::maintain::summary_line(r));
    }
    assert!(
        rewrites.load(Ordering::SeqCst) >= 3,
        "compactions triggered by the appends: {results:?}"
    );
    let out = pyiceberg(
        &dir,
        "t = cat.load_table('db.events')\nprint(json.dumps(sorted(t.scan().to_arrow().column('id').to_pylist())))",
    );
    let ids: Vec<i64> = serde_json::from_str(out.trim()).unwrap();
    assert!(
        ids == (0..35 * 60).collect::<Vec<_>>(),
        "rows lost or duplicated: {} rows",
        ids.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// ExpireSnapshots respects branches and tags: the snapshots a tag and a branch point to stay
/// (and read), everything else older than the newest snapshot goes.
#[test]
fn expiry_keeps_what_branches_and_tags_reference() {
    let dir = temp_dir("maintain-refs");
    events_table_by_pyiceberg(&dir, 6);
    let refs = pyiceberg(
        &dir,
        "t = cat.load_table('db.events')\n\
         snaps = [s.snapshot_id for s in t.snapshots()]\n\
         t.manage_snapshots().create_tag(snaps[1], 'keep').create_branch(snaps[3], 'audit').commit()\n\
         print(json.dumps(snaps))",
    );
    let snaps: Vec<i64> = serde_json::from_str(refs.trim()).unwrap();
    let ident = TableIdent::new(NamespaceIdent::new("db".into()), "events".into());
    let env = StreamEnv::new();
    env.configure(|c| {
        c.checkpoint_dir = dir.join("chk").display().to_string();
        c.checkpoint_interval = Duration::from_millis(200);
    });
    let results = TableMaintenance::new(CatalogConfig::embedded(&dir), ident)
        .rate_limit(Duration::from_millis(10))
        .add(
            TaskKind::ExpireSnapshots(ExpireTaskSettings {
                max_snapshot_age: Some(Duration::ZERO),
                retain_last: Some(1),
                delete_batch_size: 10,
            }),
            TriggerConditions::default(),
        )
        .build(&env, true)
        .unwrap()
        .collect();
    crate::common::join_within(env.start().unwrap(), Duration::from_secs(60)).unwrap();
    let results: Vec<TaskResult> = results.take();
    assert!(results.len() == 1 && results[0].success, "{results:?}");
    let out = pyiceberg(
        &dir,
        "t = cat.load_table('db.events')\n\
         left = [s.snapshot_id for s in t.snapshots()]\n\
         rows = {str(s): len(t.scan(snapshot_id=s).to_arrow()) for s in left}\n\
         print(json.dumps({'left': left, 'rows': rows, 'refs': sorted(t.metadata.refs.keys())}))",
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let left: Vec<i64> = serde_json::from_value(v["left"].clone()).unwrap();
    let want: std::collections::BTreeSet<i64> = [snaps[1], snaps[3], snaps[5]].into();
    assert_eq!(
        left.iter()
            .copied()
            .collect::<std::collections::BTreeSet<_>>(),
        want,
        "{v}"
    );
    assert_eq!(v["refs"], serde_json::json!(["audit", "keep", "main"]));
    assert_eq!(v["rows"][snaps[1].to_string()], 120);
    assert_eq!(v["rows"][snaps[3].to_string()], 240);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Compaction reads with deletes applied: weir deletes 9 rows by position (merge-on-read delete
/// files, which pyiceberg honours), then RewriteDataFiles rewrites every file: pyiceberg reads the
/// same 591 rows from the compacted table (none of the deleted rows comes back).
#[test]
fn compaction_applies_position_deletes() {
    use weir::maintenance::replace::live_data_files;
    use weir::maintenance::row_deletes::delete_rows_by_position;
    let dir = temp_dir("maintain-deletes");
    events_table_by_pyiceberg(&dir, 10);
    let config = CatalogConfig::embedded(&dir);
    let ident = TableIdent::new(NamespaceIdent::new("db".into()), "events".into());
    weir::maintenance::IcebergRuntime::new(1)
        .unwrap()
        .block_on(async {
            let catalog = config.open().await.unwrap();
            let table = catalog.load_table(&ident).await.unwrap();
            let (_, files) = live_data_files(&table).await.unwrap();
            let mut paths: Vec<String> = files.iter().map(|f| f.file_path().to_string()).collect();
            paths.sort();
            let deletes: std::collections::BTreeMap<String, Vec<u64>> = paths[..3]
                .iter()
                .map(|p| (p.clone(), vec![0, 5, 7]))
                .collect();
            delete_rows_by_position(&config, &*catalog, &ident, &deletes, 3)
                .await
                .unwrap();
        });
    let read = "t = cat.load_table('db.events')\n\
                print(json.dumps({'ids': sorted(t.scan().to_arrow().column('id').to_pylist()), 'operation': t.current_snapshot().summary.operation.value, 'files': len(t.inspect.files())}))";
    let before: serde_json::Value = serde_json::from_str(pyiceberg(&dir, read).trim()).unwrap();
    assert_eq!(
        before["ids"].as_array().unwrap().len(),
        600 - 9,
        "pyiceberg applies the deletes"
    );
    assert_eq!(before["operation"], "delete");
    let env = StreamEnv::new();
    env.configure(|c| {
        c.checkpoint_dir = dir.join("chk").display().to_string();
        c.checkpoint_interval = Duration::from_millis(200);
    });
    let results = TableMaintenance::new(config.clone(), ident)
        .rate_limit(Duration::from_millis(10))
        .add(
            TaskKind::RewriteDataFiles(RewriteSettings {
                target_file_size: Some(1 << 20),
                ..RewriteSettings::default()
            }),
            TriggerConditions::default(),
        )
        .build(&env, true)
        .unwrap()
        .collect();
    crate::common::join_within(env.start().unwrap(), Duration::from_secs(60)).unwrap();
    let results: Vec<TaskResult> = results.take();
    assert!(results.len() == 1 && results[0].success, "{results:?}");
    assert_eq!(results[0].counts["files_removed"], 30, "{results:?}");
    let after: serde_json::Value = serde_json::from_str(pyiceberg(&dir, read).trim()).unwrap();
    assert!(
        after["ids"] == before["ids"],
        "deleted rows came back or rows were lost"
    );
    assert_eq!(after["operation"], "replace");
    assert!(after["files"].as_u64().unwrap() < 30, "{after}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn rewrite_once(dir: &Path, settings: RewriteSettings) -> TaskResult {
    let ident = TableIdent::new(NamespaceIdent::new("db".into()), "events".into());
    let env = StreamEnv::new();
    env.configure(|c| {
        c.checkpoint_dir = dir.join("chk-rewrite").display().to_string();
        c.checkpoint_interval = Duration::from_millis(200);
    });
    let results = TableMaintenance::new(CatalogConfig::embedded(dir), ident)
        .rate_limit(Duration::from_millis(10))
        .add(
            TaskKind::RewriteDataFiles(settings),
            TriggerConditions::default(),
        )
        .uid(format!("rewrite-{}", std::process::id()))
        .build(&env, true)
        .unwrap()
        .collect();
    crate::common::join_within(env.start().unwrap(), Duration::from_secs(60)).unwrap();
    let mut results: Vec<TaskResult> = results.take();
    assert!(results.len() == 1 && results[0].success, "{results:?}");
    results.remove(0)
}

/// The planner's filter and delete-file threshold: `region = 'eu'` compacts only that
/// partition; with sizes that need no rewrite, a threshold of one delete file rewrites exactly
/// the files a delete file may apply to, and the deleted row stays deleted.
#[test]
fn rewrite_filter_and_delete_threshold_select_files() {
    use weir::maintenance::maintain::config::parse_filter;
    use weir::maintenance::replace::live_data_files;
    use weir::maintenance::row_deletes::delete_rows_by_position;
    let dir = temp_dir("maintain-filter");
    events_table_by_pyiceberg(&dir, 10);
    let per_region = "import collections\nt = cat.load_table('db.events')\n\
                      c = collections.Counter(f['partition']['region'] for f in t.inspect.files().to_pylist())\n\
                      print(json.dumps({'files': c, 'rows': len(t.scan().to_arrow())}))";
    let r = rewrite_once(
        &dir,
        RewriteSettings {
            target_file_size: Some(1 << 20),
            filter: Some(parse_filter("region = 'eu'").unwrap()),
            ..RewriteSettings::default()
        },
    );
    assert_eq!(r.counts["files_removed"], 10, "{r:?}");
    let v: serde_json::Value = serde_json::from_str(pyiceberg(&dir, per_region).trim()).unwrap();
    assert_eq!(v["files"], serde_json::json!({"eu": 1, "us": 10, "ap": 10}));
    // One delete file on one 'us' file.
    let config = CatalogConfig::embedded(&dir);
    let ident = TableIdent::new(NamespaceIdent::new("db".into()), "events".into());
    let target = weir::maintenance::IcebergRuntime::new(1)
        .unwrap()
        .block_on(async {
            let catalog = config.open().await.unwrap();
            let table = catalog.load_table(&ident).await.unwrap();
            let (_, files) = live_data_files(&table).await.unwrap();
            let us = files
                .iter()
                .find(|f| f.file_path().contains("region=us"))
                .unwrap()
                .file_path()
                .to_string();
            let deletes = std::collections::BTreeMap::from([(us.clone(), vec![1u64])]);
            delete_rows_by_position(&config, &*catalog, &ident, &deletes, 3)
                .await
                .unwrap();
            files.iter().map(|f| f.file_size_in_bytes()).max().unwrap()
        });
    let r = rewrite_once(
        &dir,
        RewriteSettings {
            // Every file is "right-sized": only the threshold selects.
            target_file_size: Some(target),
            min_file_size_ratio: 0.0,
            max_file_size_ratio: 1000.0,
            delete_file_threshold: Some(1),
            ..RewriteSettings::default()
        },
    );
    // iceberg-rust's scan attaches a position delete file to every data file of its partition
    // (it may apply to any of them): the 10 'us' files are selected, 'ap' (no delete file) and
    // the compacted 'eu' file are not.
    assert_eq!(r.counts["files_removed"], 10, "{r:?}");
    let v: serde_json::Value = serde_json::from_str(pyiceberg(&dir, per_region).trim()).unwrap();
    assert_eq!(v["files"]["eu"], 1, "{v}");
    assert_eq!(v["files"]["ap"], 10, "{v}");
    assert!(v["files"]["us"].as_u64().unwrap() < 10, "{v}");
    assert_eq!(v["rows"], 599, "the deleted row stays deleted");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `weir maintain` (long-running) serves its dashboard: the URL as it starts, the per-table
/// board at `/maintenance` and in the dashboard's state, `weir_maintenance_*` metrics that
/// promtool accepts; SIGTERM stops it with a final line and exit 0.
#[test]
fn weir_maintain_serves_its_tables_and_stops_on_sigterm() {
    use std::io::BufRead;
    let dir = temp_dir("maintain-rest");
    events_table_by_pyiceberg(&dir, 10);
    let path = dir.join("maintenance.toml");
    std::fs::write(
        &path,
        "[catalog]\nwarehouse = '.'\n[checkpoints]\ndir = 'chk'\ninterval = '500ms'\n\
         [[table]]\nname = 'db.events'\nrate_limit = '10ms'\nlock_check_delay = '20ms'\n\
         [table.rewrite_data_files]\ntarget_file_size = '1 MB'\n\
         [table.rewrite_data_files.trigger]\ncommit_count = 1\n\
         [table.expire_snapshots]\nmax_snapshot_age = '0s'\nretain_last = 1\n\
         [table.expire_snapshots.trigger]\ninterval = '1s'\n",
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["maintain", "--json", "--config"])
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("weir maintain");
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let url = loop {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("a dashboard line");
        if let Some(u) = line.strip_prefix("dashboard: ") {
            break u.trim_end_matches('/').to_string();
        }
    };
    let board = || crate::rest::get(&format!("{url}/maintenance"));
    assert!(
        crate::common::eventually(std::time::Duration::from_secs(60), || {
            let b = board();
            b["tables"][0]["table"] == "db.events"
                && b["tables"][0]["tasks"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t["runs"].as_u64() >= Some(1)))
        }),
        "no task run on the board: {}",
        board()
    );
    let b = board();
    let task = b["tables"][0]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["runs"].as_u64() >= Some(1))
        .unwrap()
        .clone();
    assert!(task["last_run"]["result"] == "ok", "{task}");
    let state = crate::rest::get(&format!("{url}/dashboard/state"));
    assert_eq!(state["maintenance"]["tables"][0]["table"], "db.events");
    assert_eq!(state["overview"]["jobs"].as_array().unwrap().len(), 1);
    let (status, metrics) = crate::rest::call("GET", &format!("{url}/metrics"), None);
    assert_eq!(status, 200);
    let text = metrics.as_str().unwrap().to_string();
    assert!(
        text.contains("weir_maintenance_runs{table=\"db.events\",task="),
        "{text}"
    );
    crate::rest::promtool_check(&text);

    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "weir maintain exited with {}",
        out.status
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    let last: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(last["event"], "stopped");
    assert_eq!(last["signal"], "SIGTERM");
}
