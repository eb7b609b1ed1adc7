//! Interoperability with pyiceberg (0.12, its own venv): the same SQLite catalog, tables written
//! by one read by the other.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Array, Int64Array, RecordBatch, StringArray};
use weir::maintenance::iceberg::spec::{NestedField, PrimitiveType, Schema, Type};
use weir::maintenance::iceberg::{NamespaceIdent, TableIdent};
use weir::maintenance::{table_io, CatalogConfig, IcebergRuntime};

/// The venv's python: `$WEIR_PYICEBERG_PYTHON`, else the one `.ci/pyiceberg-venv.sh` makes
/// (once, in ~/.cache; the script serialises concurrent callers and repairs a half-made venv).
/// Asked once per test binary.
pub(crate) fn python() -> PathBuf {
    crate::common::provisioned(
        "WEIR_PYICEBERG_PYTHON",
        ".ci/pyiceberg-venv.sh",
        "making the pyiceberg venv",
    )
    .into()
}

/// Runs python code with the catalog `weir` of `dir` opened as `cat`; returns its stdout.
pub(crate) fn pyiceberg(dir: &Path, code: &str) -> String {
    let catalog = format!(
        "from pyiceberg.catalog.sql import SqlCatalog\ncat = SqlCatalog('weir', uri='sqlite:///{}/catalog.db', warehouse='file://{}')",
        dir.display(),
        dir.display()
    );
    pyiceberg_with(&catalog, code)
}

/// Runs python code after `catalog` (python that opens a catalog as `cat`); returns its stdout.
pub(crate) fn pyiceberg_with(catalog: &str, code: &str) -> String {
    let prelude = format!("import json\n{catalog}\n");
    let out = std::process::Command::new(python())
        .arg("-c")
        .arg(format!("{prelude}{code}"))
        .output()
        .expect("cannot run python");
    assert!(
        out.status.success(),
        "pyiceberg failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into()
}

/// pyiceberg creates `db.small` (id long required, name string) with 20 appends of 50 rows:
/// ids 0..1000 in 20 files.
fn small_table_by_pyiceberg(dir: &Path) {
    pyiceberg(
        dir,
        "import pyarrow as pa\n\
         cat.create_namespace('db')\n\
         schema = pa.schema([pa.field('id', pa.int64(), nullable=False), pa.field('name', pa.string())])\n\
         t = cat.create_table('db.small', schema=schema)\n\
         for i in range(20):\n\
         \x20   t.append(pa.table({'id': pa.array(range(i*50, i*50+50), pa.int64()), 'name': [f'p{j}' for j in range(50)]}, schema=schema))",
    );
}

pub(crate) fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weir-iceberg-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

pub(crate) fn schema() -> Schema {
    Schema::builder()
        .with_fields(vec![
            NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
            NestedField::optional(2, "name", Type::Primitive(PrimitiveType::String)).into(),
        ])
        .build()
        .unwrap()
}

fn batch(ids: std::ops::Range<i64>) -> RecordBatch {
    let schema = arrow_schema::Schema::new(vec![
        arrow_schema::Field::new("id", arrow_schema::DataType::Int64, false),
        arrow_schema::Field::new("name", arrow_schema::DataType::Utf8, true),
    ]);
    let names: Vec<Option<String>> = ids
        .clone()
        .map(|i| (i % 5 != 0).then(|| format!("n{i}")))
        .collect();
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(Int64Array::from_iter_values(ids)),
            Arc::new(StringArray::from(names)),
        ],
    )
    .unwrap()
}

pub(crate) fn ids(batches: &[RecordBatch]) -> Vec<i64> {
    let mut v: Vec<i64> = batches
        .iter()
        .flat_map(|b| {
            let c = b
                .column_by_name("id")
                .unwrap()
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap();
            c.values().to_vec()
        })
        .collect();
    v.sort();
    v
}

#[test]
fn pyiceberg_reads_exactly_what_weir_appended() {
    let dir = temp_dir("weir-writes");
    let rt = IcebergRuntime::new(2).unwrap();
    let config = CatalogConfig::embedded(&dir);
    let ident = TableIdent::new(NamespaceIdent::new("db".into()), "events".into());
    rt.block_on(async {
        let catalog = config.open().await.unwrap();
        table_io::create_table_if_missing(&*catalog, &ident, schema())
            .await
            .unwrap();
        for (i, range) in [0..400, 400..700, 700..1000].into_iter().enumerate() {
            let summary = HashMap::from([
                ("weir.job-id".to_string(), "interop".to_string()),
                ("weir.checkpoint-id".to_string(), (i + 1).to_string()),
            ]);
            let id = table_io::append(&*catalog, &ident, &[batch(range)], summary)
                .await
                .unwrap();
            assert!(id.is_some());
        }
    });
    let out = pyiceberg(
        &dir,
        "t = cat.load_table('db.events')\n\
         a = t.scan().to_arrow()\n\
         print(json.dumps({'ids': sorted(a.column('id').to_pylist()),\n\
                           'nulls': a.column('name').null_count,\n\
                           'checkpoints': [s.summary.additional_properties.get('weir.checkpoint-id') for s in sorted(t.snapshots(), key=lambda s: s.sequence_number)],\n\
                           'operation': t.current_snapshot().summary.operation.value}))",
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let got: Vec<i64> = serde_json::from_value(v["ids"].clone()).unwrap();
    assert_eq!(got, (0..1000).collect::<Vec<_>>());
    assert_eq!(v["nulls"], 200);
    assert_eq!(v["checkpoints"], serde_json::json!(["1", "2", "3"]));
    assert_eq!(v["operation"], "append");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn weir_reads_and_appends_to_a_table_pyiceberg_made() {
    let dir = temp_dir("py-writes");
    std::fs::create_dir_all(&dir).unwrap();
    small_table_by_pyiceberg(&dir);
    let rt = IcebergRuntime::new(2).unwrap();
    let config = CatalogConfig::embedded(&dir);
    let ident = TableIdent::new(NamespaceIdent::new("db".into()), "small".into());
    rt.block_on(async {
        let catalog = config.open().await.unwrap();
        let rows = table_io::read_all(&*catalog, &ident).await.unwrap();
        assert_eq!(ids(&rows), (0..1000).collect::<Vec<_>>());
        // A batch that does not fit the table is refused before anything is written.
        let wrong = RecordBatch::try_new(
            Arc::new(arrow_schema::Schema::new(vec![arrow_schema::Field::new(
                "id",
                arrow_schema::DataType::Utf8,
                false,
            )])),
            vec![Arc::new(StringArray::from(vec!["x"]))],
        )
        .unwrap();
        let e = table_io::append(&*catalog, &ident, &[wrong], HashMap::new())
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not match the table schema"), "{e}");
        table_io::append(&*catalog, &ident, &[batch(1000..1010)], HashMap::new())
            .await
            .unwrap();
    });
    let out = pyiceberg(
        &dir,
        "t = cat.load_table('db.small')\n\
         a = t.scan().to_arrow()\n\
         print(json.dumps({'rows': a.num_rows, 'max': max(a.column('id').to_pylist()), 'snapshots': len(t.snapshots())}))",
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["rows"], 1010);
    assert_eq!(v["max"], 1009);
    assert_eq!(v["snapshots"], 21);
    let _ = std::fs::remove_dir_all(&dir);
}

/// pyiceberg appends, then overwrites (the old data files stay reachable only from old
/// snapshots); weir expires all but the newest two snapshots and deletes what became
/// unreachable: pyiceberg still reads every remaining snapshot, and the files left on disk are
/// exactly the ones a snapshot reaches (a file the table never referenced is left alone).
#[test]
fn expiry_deletes_exactly_the_unreachable_files() {
    use weir::maintenance::expire::{expire_snapshots, reachable_files, ExpireSettings};
    use weir::maintenance::location::{LocalLister, LocationLister};

    let dir = temp_dir("expire");
    std::fs::create_dir_all(&dir).unwrap();
    pyiceberg(
        &dir,
        "import pyarrow as pa\n\
         cat.create_namespace('db')\n\
         schema = pa.schema([pa.field('id', pa.int64(), nullable=False), pa.field('name', pa.string())])\n\
         t = cat.create_table('db.t', schema=schema)\n\
         for i in range(5):\n\
         \x20   t.append(pa.table({'id': pa.array(range(i*10, i*10+10), pa.int64()), 'name': ['a']*10}, schema=schema))\n\
         t.overwrite(pa.table({'id': pa.array(range(100, 120), pa.int64()), 'name': ['b']*20}, schema=schema))\n\
         print(len(t.snapshots()))",
    );
    // A file in the table's directory that no snapshot ever referenced (an orphan): expiry
    // must not touch it.
    let stray = dir.join("db/t/data/stray.parquet");
    std::fs::write(&stray, b"not iceberg").unwrap();
    let rt = IcebergRuntime::new(2).unwrap();
    let config = CatalogConfig::embedded(&dir);
    let ident = TableIdent::new(NamespaceIdent::new("db".into()), "t".into());
    let (report, reachable) = rt.block_on(async {
        let catalog = config.open().await.unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let report = expire_snapshots(
            &*catalog,
            &ident,
            ExpireSettings {
                older_than_ms: now + 1,
                retain_last: 2,
            },
        )
        .await
        .unwrap();
        let table = catalog.load_table(&ident).await.unwrap();
        (report, reachable_files(&table).await.unwrap())
    });
    assert!(!report.expired_snapshots.is_empty(), "{report:?}");
    assert!(
        report.deleted_files.iter().any(|f| f.ends_with(".parquet")),
        "old data files deleted: {report:?}"
    );
    // On disk: exactly the reachable data files, plus the stray file.
    let listed: std::collections::BTreeSet<String> = LocalLister
        .list(&format!("file://{}", dir.join("db/t/data").display()))
        .unwrap()
        .into_iter()
        .map(|f| f.location)
        .collect();
    let mut expected: std::collections::BTreeSet<String> = reachable
        .iter()
        .filter(|f| f.contains("/data/"))
        .cloned()
        .collect();
    expected.insert(format!("file://{}", stray.display()));
    assert_eq!(listed, expected);
    for f in &report.deleted_files {
        assert!(
            !Path::new(f.trim_start_matches("file://")).exists(),
            "{f} still on disk"
        );
    }
    // pyiceberg reads every remaining snapshot.
    let out = pyiceberg(
        &dir,
        "t = cat.load_table('db.t')\n\
         print(json.dumps([t.scan(snapshot_id=s.snapshot_id).to_arrow().num_rows for s in sorted(t.snapshots(), key=lambda s: s.sequence_number)]))",
    );
    let counts: Vec<u64> = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(counts.len(), 2, "{out}");
    assert_eq!(*counts.last().unwrap(), 20);
    let _ = std::fs::remove_dir_all(&dir);
}

/// pyiceberg makes a table with many small appends; weir compacts it with a REPLACE commit
/// (all live files → one); pyiceberg reads the same rows from fewer files, `replace` being the
/// current operation. An append committed between planning and commit is kept; a second
/// REPLACE of the now-gone files conflicts.
#[test]
fn weir_compacts_a_pyiceberg_table_with_a_replace_commit() {
    use weir::maintenance::replace::{commit_replace, live_data_files, ReplaceError};

    let dir = temp_dir("replace");
    std::fs::create_dir_all(&dir).unwrap();
    small_table_by_pyiceberg(&dir);
    let rt = IcebergRuntime::new(2).unwrap();
    let config = CatalogConfig::embedded(&dir);
    let ident = TableIdent::new(NamespaceIdent::new("db".into()), "small".into());
    let (before, removed) = rt.block_on(async {
        let catalog = config.open().await.unwrap();
        let table = catalog.load_table(&ident).await.unwrap();
        let (seq, files) = live_data_files(&table).await.unwrap();
        let removed: std::collections::BTreeSet<String> =
            files.iter().map(|f| f.file_path().to_string()).collect();
        let rows = table_io::read_all(&*catalog, &ident).await.unwrap();
        let added = table_io::write_data_files(&table, &rows).await.unwrap();
        // pyiceberg appends meanwhile: the rewrite keeps that append.
        pyiceberg(
            &dir,
            "import pyarrow as pa\n\
             t = cat.load_table('db.small')\n\
             t.append(pa.table({'id': pa.array(range(1000, 1050), pa.int64()), 'name': ['late']*50}, schema=t.schema().as_arrow()))",
        );
        let current = catalog.load_table(&ident).await.unwrap();
        let old_location = current.metadata_location().unwrap().to_string();
        let old_bytes = std::fs::read(old_location.trim_start_matches("file://")).unwrap();
        commit_replace(&config, &*catalog, &ident, &removed, added.clone(), seq, 5)
            .await
            .unwrap();
        // A new metadata file; the old one is untouched (readers of it never see a rewrite).
        let now = catalog.load_table(&ident).await.unwrap();
        assert_ne!(now.metadata_location().unwrap(), old_location);
        assert!(std::fs::read(old_location.trim_start_matches("file://")).unwrap() == old_bytes);
        // The same rewrite again: its files are gone now.
        let again = commit_replace(&config, &*catalog, &ident, &removed, added, seq, 5).await;
        assert!(
            matches!(again, Err(ReplaceError::Conflict { .. })),
            "{again:?}"
        );
        (files.len(), removed)
    });
    assert_eq!(before, 20);
    let out = pyiceberg(
        &dir,
        "t = cat.load_table('db.small')\n\
         a = t.scan().to_arrow()\n\
         files = [f.file.file_path for f in t.scan().plan_files()]\n\
         print(json.dumps({'ids': sorted(a.column('id').to_pylist()), 'files': files, 'operation': t.current_snapshot().summary.operation.value}))",
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let got: Vec<i64> = serde_json::from_value(v["ids"].clone()).unwrap();
    assert_eq!(got, (0..1050).collect::<Vec<_>>());
    let files: Vec<String> = serde_json::from_value(v["files"].clone()).unwrap();
    assert_eq!(
        files.len(),
        2,
        "the compacted file and the late append: {files:?}"
    );
    assert!(files.iter().all(|f| !removed.contains(f)));
    assert_eq!(v["operation"], "replace");
    let _ = std::fs::remove_dir_all(&dir);
}

fn rows_to_batch(rows: &[u64]) -> Result<RecordBatch, weir::prelude::UserError> {
    Ok(batch_of(rows.iter().map(|r| *r as i64)))
}

pub(crate) fn batch_of(ids: impl Iterator<Item = i64>) -> RecordBatch {
    let ids: Vec<i64> = ids.collect();
    let schema = arrow_schema::Schema::new(vec![
        arrow_schema::Field::new("id", arrow_schema::DataType::Int64, false),
        arrow_schema::Field::new("name", arrow_schema::DataType::Utf8, true),
    ]);
    let names: Vec<Option<String>> = ids.iter().map(|i| Some(format!("n{i}"))).collect();
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(StringArray::from(names)),
        ],
    )
    .unwrap()
}

/// The exactly-once sink: two writers and a committer, checkpoints every 40 ms, a failure in
/// the middle (restart from the latest checkpoint): pyiceberg reads every row exactly once, and
/// every snapshot carries the job id and a distinct checkpoint id.
#[test]
fn the_iceberg_sink_writes_every_row_exactly_once_across_a_restart() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use weir::maintenance::sink::{IcebergCommitter, IcebergSinkConfig, IcebergWriter, RowBatcher};
    use weir::prelude::*;

    let dir = temp_dir("sink");
    let config = CatalogConfig::embedded(dir.join("warehouse"));
    let ident = TableIdent::new(NamespaceIdent::new("db".into()), "sunk".into());
    let rt = IcebergRuntime::new(1).unwrap();
    rt.block_on(async {
        let catalog = config.open().await.unwrap();
        table_io::create_table_if_missing(&*catalog, &ident, schema())
            .await
            .unwrap();
    });
    let sink = IcebergSinkConfig::new(config.clone(), ident.clone(), "sink-test");
    let failed = Arc::new(AtomicBool::new(false));
    let f = failed.clone();
    let env = StreamEnv::new();
    env.configure(|c| {
        c.checkpoint_dir = dir.join("chk").display().to_string();
        c.checkpoint_interval = std::time::Duration::from_millis(40);
        c.restart_strategy = weir::engine::RestartStrategyKind::FixedDelay;
        c.restart_fixed_delay = std::time::Duration::from_millis(10);
        c.restart_fixed_delay_attempts = 2;
    });
    let (s1, s2) = (sink.clone(), sink.clone());
    let committed = env
        .generate(Generator::new(|i| i).bounded(20_000).rate_limited(40_000.0))
        .set_parallelism(2)
        .uid("numbers")
        .map(move |x| {
            if x == 12_345 && !f.swap(true, Ordering::SeqCst) {
                panic!("injected failure");
            }
            x
        })
        .set_parallelism(2)
        .transform("batch", |_| RowBatcher::new(500, rows_to_batch))
        .set_parallelism(2)
        .uid("batch")
        .transform("iceberg-writer", move |_| IcebergWriter::new(s1.clone()))
        .set_parallelism(2)
        .uid("writer")
        .transform("iceberg-committer", move |_| {
            IcebergCommitter::new(s2.clone())
        })
        .set_parallelism(1)
        .uid("committer")
        .collect();
    let result =
        crate::common::join_within(env.start().unwrap(), std::time::Duration::from_secs(120))
            .unwrap();
    assert_eq!(result.restarts, 1);
    assert!(failed.load(Ordering::SeqCst));
    assert!(!committed.take().is_empty(), "post-commit events");
    let wh = dir.join("warehouse");
    let out = pyiceberg(
        &wh,
        "t = cat.load_table('db.sunk')\n\
         a = t.scan().to_arrow()\n\
         snaps = [s.summary.additional_properties for s in t.snapshots()]\n\
         print(json.dumps({'ids': sorted(a.column('id').to_pylist()), 'jobs': sorted(set(s.get('weir.job-id') for s in snaps)), 'checkpoints': [s.get('weir.checkpoint-id') for s in snaps]}))",
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let got: Vec<i64> = serde_json::from_value(v["ids"].clone()).unwrap();
    assert_eq!(got.len(), 20_000, "rows lost or duplicated");
    assert_eq!(got, (0..20_000).collect::<Vec<_>>());
    assert_eq!(v["jobs"], serde_json::json!(["sink-test"]));
    let cps: Vec<String> = serde_json::from_value(v["checkpoints"].clone()).unwrap();
    let distinct: std::collections::BTreeSet<&String> = cps.iter().collect();
    assert_eq!(
        distinct.len(),
        cps.len(),
        "a checkpoint committed twice: {cps:?}"
    );
    assert!(cps.len() >= 3, "{cps:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Conflicts: weir rewrites groups of files while pyiceberg deletes and appends.
/// First deterministically — pyiceberg deletes a whole file of a planned group between planning
/// and commit: exactly that group is skipped (naming the file), the others commit. Then truly
/// concurrently — a pyiceberg process appends 15 times and deletes a range (retrying when its
/// own validation fails) while weir keeps rewriting: no row is lost or duplicated.
#[test]
fn rewrites_skip_conflicting_groups_while_pyiceberg_appends_and_deletes() {
    use weir::maintenance::replace::live_data_files;
    use weir::maintenance::rewrite::{read_data_file, rewrite_groups, GroupOutcome};

    let dir = temp_dir("conflicts");
    std::fs::create_dir_all(&dir).unwrap();
    small_table_by_pyiceberg(&dir);
    let rt = IcebergRuntime::new(2).unwrap();
    let config = CatalogConfig::embedded(&dir);
    let ident = TableIdent::new(NamespaceIdent::new("db".into()), "small".into());
    let groups_of = |files: &[weir::maintenance::iceberg::spec::DataFile], n: usize| {
        let mut paths: Vec<String> = files.iter().map(|f| f.file_path().to_string()).collect();
        paths.sort();
        paths
            .chunks(n)
            .map(|c| c.iter().cloned().collect::<std::collections::BTreeSet<_>>())
            .collect::<Vec<_>>()
    };
    rt.block_on(async {
        let catalog = config.open().await.unwrap();
        let planned = catalog.load_table(&ident).await.unwrap();
        let (_, files) = live_data_files(&planned).await.unwrap();
        let groups = groups_of(&files, 4);
        assert_eq!(groups.len(), 5);
        // The file holding ids 0..50 (pyiceberg's first append).
        let mut first = None;
        for f in &files {
            let rows = read_data_file(&planned, f.file_path()).await.unwrap();
            if ids(&rows).first() == Some(&0) {
                first = Some(f.file_path().to_string());
            }
        }
        let first = first.expect("a file with id 0");
        pyiceberg(
            &dir,
            "import pyarrow as pa\n\
             t = cat.load_table('db.small')\n\
             t.delete(delete_filter='id < 50')\n\
             t = cat.load_table('db.small')\n\
             t.append(pa.table({'id': pa.array(range(1000, 1050), pa.int64()), 'name': ['late']*50}, schema=t.schema().as_arrow()))",
        );
        let r = rewrite_groups(&config, &*catalog, &planned, &groups, None)
            .await
            .unwrap();
        assert_eq!(r.committed(), 4, "{:?}", r.groups);
        let conflicted: Vec<usize> = (0..groups.len())
            .filter(|&i| matches!(r.groups[i], GroupOutcome::Conflict { .. }))
            .collect();
        assert_eq!(conflicted.len(), 1);
        let i = conflicted[0];
        assert!(groups[i].contains(&first));
        assert_eq!(r.groups[i], GroupOutcome::Conflict { file: first.clone() });
    });

    // Concurrently: a pyiceberg process appends and deletes while weir rewrites.
    let code = format!(
        "import json, sys, time, pyarrow as pa\n\
         from pyiceberg.catalog.sql import SqlCatalog\n\
         cat = SqlCatalog('weir', uri='sqlite:///{d}/catalog.db', warehouse='file://{d}')\n\
         deleted = 0\n\
         for k in range(15):\n\
         \x20   t = cat.load_table('db.small')\n\
         \x20   t.append(pa.table({{'id': pa.array(range(2000 + 10 * k, 2010 + 10 * k), pa.int64()), 'name': ['bg'] * 10}}, schema=t.schema().as_arrow()))\n\
         \x20   if k == 7:\n\
         \x20       for attempt in range(50):\n\
         \x20           try:\n\
         \x20               cat.load_table('db.small').delete(delete_filter='id >= 500 and id < 510')\n\
         \x20               deleted = attempt + 1\n\
         \x20               break\n\
         \x20           except Exception as e:\n\
         \x20               print('delete attempt failed:', type(e).__name__, e, file=sys.stderr)\n\
         \x20               time.sleep(0.05)\n\
         \x20   time.sleep(0.05)\n\
         print(json.dumps({{'deleted_after_attempts': deleted}}))\n",
        d = dir.display()
    );
    let mut child = std::process::Command::new(python())
        .arg("-c")
        .arg(code)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (mut committed, mut conflicts, mut rounds) = (0, 0, 0);
    rt.block_on(async {
        let catalog = config.open().await.unwrap();
        loop {
            let running = child.try_wait().unwrap().is_none();
            let planned = catalog.load_table(&ident).await.unwrap();
            let (_, files) = live_data_files(&planned).await.unwrap();
            // Compact the small files (under 100 rows), three at a time.
            let small: Vec<_> = files
                .into_iter()
                .filter(|f| f.record_count() < 100)
                .collect();
            let groups: Vec<_> = groups_of(&small, 3)
                .into_iter()
                .filter(|g| g.len() > 1)
                .collect();
            let r = rewrite_groups(&config, &*catalog, &planned, &groups, None)
                .await
                .unwrap();
            committed += r.committed();
            conflicts += r.conflicts();
            rounds += 1;
            if !running {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    });
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bg: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    eprintln!(
        "conflict test: {rounds} rounds, {committed} groups committed, {conflicts} skipped; pyiceberg: {bg}; its log: {}",
        String::from_utf8_lossy(&out.stderr).lines().count()
    );
    assert!(
        bg["deleted_after_attempts"].as_i64().unwrap_or(0) >= 1,
        "{bg}"
    );
    assert!(
        rounds >= 2 && committed >= 4,
        "{rounds} rounds, {committed} commits"
    );
    let out = pyiceberg(
        &dir,
        "t = cat.load_table('db.small')\n\
         print(json.dumps(sorted(t.scan().to_arrow().column('id').to_pylist())))",
    );
    let got: Vec<i64> = serde_json::from_str(out.trim()).unwrap();
    let want: Vec<i64> = (50..1050)
        .filter(|i| !(500..510).contains(i))
        .chain(2000..2150)
        .collect();
    assert!(
        got == want,
        "rows lost or duplicated: {} rows, want {}",
        got.len(),
        want.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
