//! Orphan file deletion and manifest rewriting on real tables (pyiceberg-made and weir-made).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use weir::maintenance::expire::reachable_files;
use weir::maintenance::iceberg::{NamespaceIdent, TableIdent};
use weir::maintenance::location::{ListedFile, LocalLister, LocationLister};
use weir::maintenance::manifests::{rewrite_manifests, ManifestSettings};
use weir::maintenance::orphans::{delete_orphan_files, OrphanSettings};
use weir::maintenance::{CatalogConfig, IcebergRuntime, MaintenanceError};

use crate::iceberg_interop::{pyiceberg, pyiceberg_with, temp_dir};

const DAY: Duration = Duration::from_secs(24 * 3600);

fn ident(name: &str) -> TableIdent {
    TableIdent::new(NamespaceIdent::new("db".into()), name.into())
}

/// `file:///p`, `file:/p` or `/p` (with `//` or `.` segments) → the path `/p`.
fn local(location: &str) -> PathBuf {
    let p = location
        .strip_prefix("file://")
        .or_else(|| location.strip_prefix("file:"))
        .unwrap_or(location);
    Path::new(p).components().collect()
}

fn files_under(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for entry in rd.flatten() {
            let p = entry.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.insert(p);
            }
        }
    }
    out
}

fn set_mtime(p: &Path, t: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(p)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

fn plant(p: &Path, mtime: Option<SystemTime>) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, b"not referenced by anything").unwrap();
    if let Some(t) = mtime {
        set_mtime(p, t);
    }
}

/// The rows (sorted ids) of every snapshot of `table`, by snapshot id, read by pyiceberg.
fn rows_per_snapshot(dir: &Path, table: &str) -> BTreeMap<String, Vec<i64>> {
    let out = pyiceberg(
        dir,
        &format!(
            "t = cat.load_table('db.{table}')\n\
             print(json.dumps({{str(s.snapshot_id): sorted(t.scan(snapshot_id=s.snapshot_id).to_arrow().column('id').to_pylist()) for s in t.snapshots()}}))"
        ),
    );
    serde_json::from_str(out.trim()).unwrap()
}

/// A lister that lists the *parent* of the location it is asked for (so it also returns files
/// outside the table location), in mixed location forms: `/p`, `file:/p`, `file:///p` with
/// `//` and `.` segments.
struct WideMixedLister;

impl LocationLister for WideMixedLister {
    fn list(&self, location: &str) -> weir::maintenance::Result<Vec<ListedFile>> {
        let path = location.strip_prefix("file://").unwrap_or(location);
        let parent = Path::new(path).parent().unwrap();
        let mut files = LocalLister.list(&parent.display().to_string())?;
        for (i, f) in files.iter_mut().enumerate() {
            assert!(f.location.starts_with('/'), "{}", f.location);
            match i % 3 {
                0 => {}
                1 => f.location = format!("file:{}", f.location),
                _ => {
                    let (dir, name) = f.location.rsplit_once('/').unwrap();
                    f.location = format!("file://{dir}//./{name}");
                }
            }
        }
        Ok(files)
    }
}

/// pyiceberg makes `db.o` (4 appends, an overwrite, an append); everything in it is aged 5 days.
/// Planted: (a) an old unreferenced data file, (b) an old unreferenced file under metadata/,
/// (c) a fresh unreferenced file, (d) an old file in a sibling directory outside the table
/// location. A dry run reports exactly a and b and deletes nothing; the real run (with a lister
/// that also returns files outside the table, in mixed location forms) deletes exactly a and b;
/// every snapshot reads the same rows after.
#[test]
fn orphan_files_are_found_and_only_they_are_deleted() {
    let dir = temp_dir("orphans");
    std::fs::create_dir_all(&dir).unwrap();
    let out = pyiceberg(
        &dir,
        "import pyarrow as pa\n\
         cat.create_namespace('db')\n\
         schema = pa.schema([pa.field('id', pa.int64(), nullable=False), pa.field('name', pa.string())])\n\
         t = cat.create_table('db.o', schema=schema)\n\
         for i in range(4):\n\
         \x20   t.append(pa.table({'id': pa.array(range(i*10, i*10+10), pa.int64()), 'name': [f'p{j}' for j in range(10)]}, schema=schema))\n\
         t.overwrite(pa.table({'id': pa.array(range(100, 105), pa.int64()), 'name': ['o']*5}, schema=schema))\n\
         t.append(pa.table({'id': pa.array(range(200, 203), pa.int64()), 'name': ['x']*3}, schema=schema))\n\
         print(json.dumps({'location': t.location(), 'snapshots': len(t.snapshots())}))",
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        v["snapshots"], 7,
        "4 appends, overwrite = delete + append, append"
    );
    let table_dir = local(v["location"].as_str().unwrap());
    assert!(table_dir.starts_with(&dir), "{}", table_dir.display());
    let rows_before = rows_per_snapshot(&dir, "o");
    assert_eq!(rows_before.len(), 7);

    let now = SystemTime::now();
    let table_files = files_under(&table_dir);
    for f in &table_files {
        set_mtime(f, now - 5 * DAY);
    }
    let a = table_dir.join("data/00000-0-deadbeef-orphan-a.parquet");
    let b = table_dir.join("metadata/deadbeef-orphan-b-m0.avro");
    let c = table_dir.join("data/00000-0-fresh-orphan-c.parquet");
    // A sibling whose name shares the table directory's name as a string prefix.
    let d = table_dir.parent().unwrap().join(format!(
        "{}-old/data/orphan-d.parquet",
        table_dir.file_name().unwrap().to_str().unwrap()
    ));
    plant(&a, Some(now - 4 * DAY));
    plant(&b, Some(now - 4 * DAY));
    plant(&c, None);
    plant(&d, Some(now - 30 * DAY));

    let rt = IcebergRuntime::new(2).unwrap();
    let config = CatalogConfig::embedded(&dir);
    rt.block_on(async {
        let catalog = config.open().await.unwrap();
        let table = catalog.load_table(&ident("o")).await.unwrap();

        // Dry run: exactly a and b, nothing deleted.
        let dry = OrphanSettings {
            dry_run: true,
            ..OrphanSettings::default()
        };
        let r = delete_orphan_files(&table, &LocalLister, &dry, now)
            .await
            .unwrap();
        let found: BTreeSet<PathBuf> = r.orphans.iter().map(|o| local(o)).collect();
        assert_eq!(found, BTreeSet::from([a.clone(), b.clone()]), "{r:?}");
        assert_eq!(r.deleted, 0);
        assert_eq!(r.too_new, 1, "c: {r:?}");
        assert_eq!(r.bytes, 2 * b"not referenced by anything".len() as u64);
        assert!(a.exists() && b.exists() && c.exists() && d.exists());

        // A location below the table location: only what is there.
        let data_only = OrphanSettings {
            dry_run: true,
            location: Some(format!("file:{}/data/", table_dir.display())),
            ..OrphanSettings::default()
        };
        let r = delete_orphan_files(&table, &LocalLister, &data_only, now)
            .await
            .unwrap();
        let found: BTreeSet<PathBuf> = r.orphans.iter().map(|o| local(o)).collect();
        assert_eq!(found, BTreeSet::from([a.clone()]), "{r:?}");

        // With a younger minimum age c would be one too (dry run).
        let young = OrphanSettings {
            dry_run: true,
            min_age: Duration::ZERO,
            ..OrphanSettings::default()
        };
        let r = delete_orphan_files(&table, &LocalLister, &young, now + Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(r.orphans.len(), 3, "{r:?}");

        // The real run, small batches, a lister that also returns d and mixes location forms.
        let real = OrphanSettings {
            delete_batch_size: 1,
            ..OrphanSettings::default()
        };
        let r = delete_orphan_files(&table, &WideMixedLister, &real, now)
            .await
            .unwrap();
        let found: BTreeSet<PathBuf> = r.orphans.iter().map(|o| local(o)).collect();
        assert_eq!(found, BTreeSet::from([a.clone(), b.clone()]), "{r:?}");
        assert_eq!(r.deleted, 2);
        assert!(!a.exists() && !b.exists(), "a and b deleted");
        assert!(c.exists(), "the fresh file is kept");
        assert!(d.exists(), "the file outside the table location is kept");
        // Every file that was there before is still there.
        let after = files_under(&table_dir);
        let missing: Vec<_> = table_files.difference(&after).collect();
        assert!(missing.is_empty(), "deleted referenced files: {missing:?}");
        // And every file the table references exists.
        let table = catalog.load_table(&ident("o")).await.unwrap();
        let mut referenced: Vec<String> =
            reachable_files(&table).await.unwrap().into_iter().collect();
        referenced.push(table.metadata_location().unwrap().to_string());
        referenced.extend(
            table
                .metadata()
                .metadata_log()
                .iter()
                .map(|m| m.metadata_file.clone()),
        );
        assert!(referenced.len() > 20, "{referenced:?}");
        for f in &referenced {
            assert!(local(f).exists(), "a referenced file is gone: {f}");
        }
        // Again: nothing left to delete.
        let r = delete_orphan_files(&table, &LocalLister, &OrphanSettings::default(), now)
            .await
            .unwrap();
        assert!(r.orphans.is_empty(), "{r:?}");
    });
    assert_eq!(rows_per_snapshot(&dir, "o"), rows_before);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The location to clean must be the table location or below it; otherwise an error naming
/// both, and nothing is deleted.
#[test]
fn an_orphan_location_outside_the_table_location_is_an_error() {
    let dir = temp_dir("orphans-outside");
    std::fs::create_dir_all(&dir).unwrap();
    let out = pyiceberg(
        &dir,
        "import pyarrow as pa\n\
         cat.create_namespace('db')\n\
         schema = pa.schema([pa.field('id', pa.int64(), nullable=False)])\n\
         t = cat.create_table('db.t', schema=schema)\n\
         t.append(pa.table({'id': pa.array(range(10), pa.int64())}, schema=schema))\n\
         print(t.location())",
    );
    let table_dir = local(out.trim());
    let now = SystemTime::now();
    let sibling = table_dir.parent().unwrap().join("t2");
    let old = sibling.join("data/old.parquet");
    plant(&old, Some(now - 10 * DAY));
    let inside = table_dir.join("data/old.parquet");
    plant(&inside, Some(now - 10 * DAY));
    let rt = IcebergRuntime::new(1).unwrap();
    let config = CatalogConfig::embedded(&dir);
    rt.block_on(async {
        let catalog = config.open().await.unwrap();
        let table = catalog.load_table(&ident("t")).await.unwrap();
        for location in [
            format!("file://{}", sibling.display()),
            sibling.display().to_string(),
            format!("file://{}", table_dir.parent().unwrap().display()),
            format!("file://{}/../t2", table_dir.display()),
            format!("s3://bucket{}", table_dir.display()),
        ] {
            let settings = OrphanSettings {
                location: Some(location.clone()),
                ..OrphanSettings::default()
            };
            let e = delete_orphan_files(&table, &LocalLister, &settings, now)
                .await
                .unwrap_err();
            let msg = e.to_string();
            assert!(matches!(e, MaintenanceError::Table { .. }), "{msg}");
            assert!(msg.contains(&location), "names the location: {msg}");
            if !location.contains("..") {
                assert!(
                    msg.contains(table.metadata().location()),
                    "names the table location: {msg}"
                );
            }
        }
        // The table location itself, in another form, is fine.
        let settings = OrphanSettings {
            location: Some(format!("{}/", table_dir.display())),
            ..OrphanSettings::default()
        };
        let r = delete_orphan_files(&table, &LocalLister, &settings, now)
            .await
            .unwrap();
        assert_eq!(r.orphans.len(), 1, "{r:?}");
        assert_eq!(local(&r.orphans[0]), inside);
    });
    assert!(old.exists() && !inside.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Tables whose metadata references files as plain paths (`/p`) and as `file:/p` (pyiceberg with
/// such warehouses), listed as `file:///p`: only the planted old file is an orphan; an old
/// `metadata/version-hint.text` is kept; the tables read the same after.
#[test]
fn orphans_are_matched_across_location_forms() {
    let dir = temp_dir("orphans-forms");
    std::fs::create_dir_all(&dir).unwrap();
    let tables = [
        ("plain", dir.display().to_string()),
        ("short", format!("file:{}", dir.display())),
    ];
    let mut locations = Vec::new();
    for (i, (name, warehouse)) in tables.iter().enumerate() {
        let out = pyiceberg_with(
            &format!(
                "from pyiceberg.catalog.sql import SqlCatalog\n\
                 cat = SqlCatalog('weir', uri='sqlite:///{}/catalog.db', warehouse='{warehouse}')",
                dir.display()
            ),
            &format!(
                "import pyarrow as pa\n\
                 if {i} == 0: cat.create_namespace('db')\n\
                 schema = pa.schema([pa.field('id', pa.int64(), nullable=False)])\n\
                 t = cat.create_table('db.{name}', schema=schema)\n\
                 for k in range(3):\n\
                 \x20   t.append(pa.table({{'id': pa.array(range(k*10, k*10+10), pa.int64())}}, schema=schema))\n\
                 print(t.location())"
            ),
        );
        locations.push(out.trim().to_string());
    }
    assert!(
        locations[0].starts_with('/') && locations[1].starts_with("file:/t"),
        "{locations:?}"
    );
    let rows_before: Vec<_> = tables
        .iter()
        .map(|(n, _)| rows_per_snapshot(&dir, n))
        .collect();
    let now = SystemTime::now();
    let rt = IcebergRuntime::new(1).unwrap();
    let config = CatalogConfig::embedded(&dir);
    for ((name, _), location) in tables.iter().zip(&locations) {
        let table_dir = local(location);
        let table_files = files_under(&table_dir);
        for f in &table_files {
            set_mtime(f, now - 5 * DAY);
        }
        let orphan = table_dir.join("data/00000-0-orphan.parquet");
        plant(&orphan, Some(now - 4 * DAY));
        let hint = table_dir.join("metadata/version-hint.text");
        plant(&hint, Some(now - 4 * DAY));
        rt.block_on(async {
            let catalog = config.open().await.unwrap();
            let table = catalog.load_table(&ident(name)).await.unwrap();
            assert_eq!(table.metadata().location(), location);
            let r = delete_orphan_files(&table, &LocalLister, &OrphanSettings::default(), now)
                .await
                .unwrap();
            assert_eq!(
                r.orphans,
                vec![format!("file://{}", orphan.display())],
                "{name}: {r:?}"
            );
            assert_eq!((r.deleted, r.too_new), (1, 0));
        });
        assert!(!orphan.exists() && hint.exists());
        assert_eq!(
            files_under(&table_dir),
            table_files.into_iter().chain([hint]).collect()
        );
    }
    let rows_after: Vec<_> = tables
        .iter()
        .map(|(n, _)| rows_per_snapshot(&dir, n))
        .collect();
    assert_eq!(rows_after, rows_before);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Per data file of the current snapshot: (snapshot id, data sequence number, file sequence
/// number) of its entry, and the entry statuses, read by pyiceberg.
const ENTRIES_PY: &str = "e = [x for x in t.inspect.entries().to_pylist() if x['status'] != 2]\n\
     entries = {x['data_file']['file_path']: [x['snapshot_id'], x['sequence_number'], x['file_sequence_number']] for x in e}\n\
     statuses = sorted(set(x['status'] for x in e))\n";

/// pyiceberg makes `db.m` with 12 appends (12 manifests); the rewrite merges them into one
/// REPLACE snapshot; rows, entries (snapshot ids, sequence numbers) are the same, pyiceberg sees
/// one manifest; a second call commits nothing; an append and a pyiceberg delete afterwards work.
#[test]
fn small_manifests_are_merged_and_rows_stay_the_same() {
    let dir = temp_dir("manifests");
    std::fs::create_dir_all(&dir).unwrap();
    let state = |dir: &Path| -> serde_json::Value {
        let out = pyiceberg(
            dir,
            &format!(
                "t = cat.load_table('db.m')\n{ENTRIES_PY}\
                 s = t.current_snapshot()\n\
                 print(json.dumps({{'ids': sorted(t.scan().to_arrow().column('id').to_pylist()),\n\
                    'manifests': t.inspect.manifests().num_rows, 'entries': entries, 'statuses': statuses,\n\
                    'operation': s.summary.operation.value, 'summary': s.summary.additional_properties,\n\
                    'snapshots': len(t.snapshots()), 'current': s.snapshot_id,\n\
                    'parent_ids': sorted(t.scan(snapshot_id=s.parent_snapshot_id).to_arrow().column('id').to_pylist()) if s.parent_snapshot_id else None}}))"
            ),
        );
        serde_json::from_str(out.trim()).unwrap()
    };
    pyiceberg(
        &dir,
        "import pyarrow as pa\n\
         cat.create_namespace('db')\n\
         schema = pa.schema([pa.field('id', pa.int64(), nullable=False), pa.field('name', pa.string())])\n\
         t = cat.create_table('db.m', schema=schema)\n\
         for i in range(12):\n\
         \x20   t.append(pa.table({'id': pa.array(range(i*10, i*10+10), pa.int64()), 'name': [f'p{j}' for j in range(10)]}, schema=schema))",
    );
    let before = state(&dir);
    assert_eq!(before["manifests"], 12);
    assert_eq!(before["statuses"], serde_json::json!([1]), "all ADDED");
    let want: Vec<i64> = (0..120).collect();
    assert_eq!(before["ids"], serde_json::json!(want));

    let rt = IcebergRuntime::new(2).unwrap();
    let config = CatalogConfig::embedded(&dir);
    let settings = ManifestSettings::default();
    let r = rt.block_on(async {
        let catalog = config.open().await.unwrap();
        rewrite_manifests(&config, &*catalog, &ident("m"), &settings, 5)
            .await
            .unwrap()
    });
    assert!(r.snapshot_id.is_some(), "{r:?}");
    assert_eq!(
        (r.manifests_before, r.manifests_after, r.entries),
        (12, 1, 12)
    );
    let after = state(&dir);
    assert_eq!(after["ids"], before["ids"], "same rows");
    assert_eq!(
        after["parent_ids"], before["ids"],
        "the parent reads the same"
    );
    assert_eq!(after["manifests"], 1);
    assert_eq!(after["operation"], "replace");
    assert_eq!(after["current"], serde_json::json!(r.snapshot_id.unwrap()));
    assert_eq!(
        after["entries"], before["entries"],
        "snapshot ids and sequence numbers kept"
    );
    assert_eq!(after["statuses"], serde_json::json!([0]), "all EXISTING");
    let summary = &after["summary"];
    assert_eq!(summary["manifests-created"], "1");
    assert_eq!(summary["manifests-replaced"], "12");
    assert_eq!(summary["manifests-kept"], "0");
    assert_eq!(summary["entries-processed"], "12");
    assert_eq!(summary["total-records"], before["summary"]["total-records"]);
    assert_eq!(summary["total-data-files"], "12");

    // Nothing small enough to merge: nothing committed.
    let r2 = rt.block_on(async {
        let catalog = config.open().await.unwrap();
        rewrite_manifests(&config, &*catalog, &ident("m"), &settings, 5)
            .await
            .unwrap()
    });
    assert_eq!(r2.snapshot_id, None, "{r2:?}");
    assert_eq!(
        (r2.manifests_before, r2.manifests_after, r2.entries),
        (1, 1, 0)
    );
    let again = state(&dir);
    assert_eq!(again["snapshots"], after["snapshots"]);
    assert_eq!(again["current"], after["current"]);

    // One more append: two small manifests; min_manifests 3 waits, the default merges them.
    pyiceberg(
        &dir,
        "import pyarrow as pa\n\
         t = cat.load_table('db.m')\n\
         t.append(pa.table({'id': pa.array(range(500, 505), pa.int64()), 'name': ['late']*5}, schema=t.schema().as_arrow()))",
    );
    let (r3, r4) = rt.block_on(async {
        let catalog = config.open().await.unwrap();
        let three = ManifestSettings {
            min_manifests: 3,
            ..settings
        };
        let r3 = rewrite_manifests(&config, &*catalog, &ident("m"), &three, 5)
            .await
            .unwrap();
        let r4 = rewrite_manifests(&config, &*catalog, &ident("m"), &settings, 5)
            .await
            .unwrap();
        (r3, r4)
    });
    assert_eq!(r3.snapshot_id, None);
    assert!(r4.snapshot_id.is_some());
    assert_eq!(
        (r4.manifests_before, r4.manifests_after, r4.entries),
        (2, 1, 13)
    );
    // pyiceberg deletes rows of the rewritten table: sequence numbers make sense to it.
    let out = pyiceberg(
        &dir,
        "t = cat.load_table('db.m')\n\
         t.delete(delete_filter='id < 15')\n\
         t = cat.load_table('db.m')\n\
         print(json.dumps(sorted(t.scan().to_arrow().column('id').to_pylist())))",
    );
    let got: Vec<i64> = serde_json::from_str(out.trim()).unwrap();
    let want: Vec<i64> = (15..120).chain(500..505).collect();
    assert_eq!(got, want);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A table partitioned by identity on a string column, 12 appends of 3 partitions each (and a
/// twin table made the same way): merged with the default target into one manifest (the twin
/// first, to learn that manifest's length), and with a target a tenth below that length into
/// two manifests; the same target again commits nothing. Rows, partition-filtered rows, entries
/// and partitions are identical throughout.
#[test]
fn partitioned_manifests_are_merged_with_the_same_rows() {
    let dir = temp_dir("manifests-partitioned");
    std::fs::create_dir_all(&dir).unwrap();
    pyiceberg(
        &dir,
        "import pyarrow as pa\n\
         from pyiceberg.schema import Schema\n\
         from pyiceberg.types import NestedField, LongType, StringType\n\
         from pyiceberg.partitioning import PartitionSpec, PartitionField\n\
         from pyiceberg.transforms import IdentityTransform\n\
         cat.create_namespace('db')\n\
         schema = Schema(NestedField(1, 'id', LongType(), required=True), NestedField(2, 'cat', StringType(), required=False))\n\
         spec = PartitionSpec(PartitionField(source_id=2, field_id=1000, transform=IdentityTransform(), name='cat'))\n\
         a = pa.schema([pa.field('id', pa.int64(), nullable=False), pa.field('cat', pa.string())])\n\
         for name in ['p', 'q']:\n\
         \x20   t = cat.create_table(f'db.{name}', schema=schema, partition_spec=spec)\n\
         \x20   for i in range(12):\n\
         \x20       t.append(pa.table({'id': pa.array(range(i*30, i*30+30), pa.int64()), 'cat': [['a', 'b', 'c'][j % 3] for j in range(30)]}, schema=a))",
    );
    let state = |table: &str| -> serde_json::Value {
        let out = pyiceberg(
            &dir,
            &format!(
                "t = cat.load_table('db.{table}')\n{ENTRIES_PY}\
                 rows = lambda f: sorted(zip(*[c.to_pylist() for c in t.scan(row_filter=f).to_arrow().select(['id', 'cat']).columns]))\n\
                 s = t.current_snapshot()\n\
                 m = t.inspect.manifests().to_pylist()\n\
                 print(json.dumps({{'rows': rows('True'), 'b': rows(\"cat == 'b'\"), 'manifests': len(m), 'lengths': [x['length'] for x in m],\n\
                    'entries': entries, 'operation': s.summary.operation.value, 'current': s.snapshot_id,\n\
                    'partitions': sorted([p['partition']['cat'], p['record_count']] for p in t.inspect.partitions().to_pylist())}}))"
            ),
        );
        serde_json::from_str(out.trim()).unwrap()
    };
    let before = state("p");
    assert_eq!(before["manifests"], 12);
    let rows: Vec<(i64, String)> = serde_json::from_value(before["rows"].clone()).unwrap();
    assert_eq!(rows.len(), 360);
    let b: Vec<(i64, String)> = serde_json::from_value(before["b"].clone()).unwrap();
    assert_eq!(b.len(), 120);
    assert!(b.iter().all(|(_, c)| c == "b"));
    assert_eq!(before["entries"].as_object().unwrap().len(), 36);
    let same = |now: &serde_json::Value| {
        for key in ["rows", "b", "entries", "partitions"] {
            assert_eq!(now[key], before[key], "{key} changed");
        }
    };

    let rt = IcebergRuntime::new(2).unwrap();
    let config = CatalogConfig::embedded(&dir);
    let run = |table: &str, settings: ManifestSettings| {
        rt.block_on(async {
            let catalog = config.open().await.unwrap();
            rewrite_manifests(&config, &*catalog, &ident(table), &settings, 5)
                .await
                .unwrap()
        })
    };
    // The twin, merged with the default target: one manifest of length `one`.
    let r = run("q", ManifestSettings::default());
    assert_eq!(
        (r.manifests_before, r.manifests_after, r.entries),
        (12, 1, 36)
    );
    let lengths: Vec<u64> = serde_json::from_value(state("q")["lengths"].clone()).unwrap();
    let one = lengths[0];

    // A target a tenth below: two manifests.
    let small = ManifestSettings {
        target_manifest_size: one - one / 10,
        min_manifests: 2,
    };
    let r = run("p", small);
    assert!(r.snapshot_id.is_some(), "{r:?}");
    assert_eq!(
        (r.manifests_before, r.manifests_after, r.entries),
        (12, 2, 36),
        "manifest of {one} bytes"
    );
    let mid = state("p");
    same(&mid);
    assert_eq!(mid["manifests"], 2);
    assert_eq!(mid["operation"], "replace");
    let lengths: Vec<u64> = serde_json::from_value(mid["lengths"].clone()).unwrap();
    assert!(
        lengths.iter().all(|l| *l <= small.target_manifest_size),
        "{lengths:?} within the target {}",
        small.target_manifest_size
    );

    // Merging those two again would make two again: nothing committed.
    let again = run("p", small);
    assert_eq!(again.snapshot_id, None, "{again:?}");
    assert_eq!(state("p")["current"], mid["current"]);

    // The default target: one manifest.
    let r = run("p", ManifestSettings::default());
    assert!(r.snapshot_id.is_some(), "{r:?}");
    assert_eq!((r.manifests_before, r.manifests_after), (2, 1));
    let after = state("p");
    same(&after);
    assert_eq!(after["manifests"], 1);
    let _ = std::fs::remove_dir_all(&dir);
}
