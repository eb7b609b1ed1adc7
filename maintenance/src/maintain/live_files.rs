//! The live data files of a table, kept up to date incrementally: what the RewriteDataFiles
//! planner plans on without rescanning every manifest on every trigger.
//!
//! A [`LiveFiles`] view maps the path of every live data file of one snapshot (a file some
//! manifest of the snapshot's manifest list has as ADDED or EXISTING) to what bin-packing needs
//! of it: its size, record count, partition value (and the partition key bin-packing groups
//! by) and partition spec id. [`LiveFiles::load`] builds the view by a full scan (the manifest
//! list of the current snapshot and every data manifest in it); [`LiveFiles::update`] moves an
//! existing view to the table's current snapshot by reading only what the new snapshots wrote:
//!
//! 1. it walks from the current snapshot back along the parent pointers until it meets the
//!    view's snapshot (that snapshot itself may have been expired meanwhile: its id as the
//!    parent of a retained snapshot is enough);
//! 2. for each new snapshot, oldest first, it reads the manifests that snapshot added to its
//!    manifest list (`added_snapshot_id` = the snapshot's id) and applies their entries: a
//!    DELETED entry removes the file, an ADDED entry inserts it, an EXISTING entry is ignored
//!    (the file was live before — manifest rewrites, merges and REPLACE commits carry files
//!    over as EXISTING).
//!
//! Invariants:
//! - **Equality**: after `update` the view is exactly the one `load` would build on the same
//!   table (the module's tests check it over random sequences of appends, REPLACE commits,
//!   deletes, manifest rewrites and expiries, and over pyiceberg's overwrites, deletes, merged
//!   appends and rollbacks). This rests on the spec's rule that a snapshot records every data
//!   file it removes as a DELETED entry in a manifest it writes, and every file it adds as an
//!   ADDED entry.
//! - **Fallback**: when the view's snapshot is not an ancestor of the current one (snapshots in
//!   between were expired, the table was rolled back, or its history replaced), when the table
//!   is another one (a different table uuid: dropped and created again), or when the view was
//!   of a table without snapshots, `update` does a full load instead. It also does when the new
//!   snapshots' manifests hold more bytes than the current snapshot's data manifests (after
//!   long pauses): the full scan is then the cheaper read.
//! - **No partial updates**: every manifest is read before anything is applied, so an `update`
//!   that fails (an unreadable manifest) leaves the view as it was (at its old snapshot);
//!   applying is infallible.
//! - Per snapshot, removals are applied before insertions, the way a full scan sees a file
//!   that a snapshot both deleted and added again; a DELETED entry counts only when it was
//!   written by that snapshot (a stale DELETED entry carried over by a misbehaving manifest
//!   merge never removes a file re-added since).
//! - Delete files are not tracked: the view records only whether the current snapshot's
//!   manifest list has delete manifests (the rewrite planner refuses such tables).
//!
//! The view lives in memory only (the planner does not checkpoint it): after a restart it is
//! rebuilt by a full load at the first trigger.

use std::collections::BTreeMap;

use futures::{stream, StreamExt, TryStreamExt};
use iceberg::spec::{ManifestContentType, ManifestList, ManifestStatus, SnapshotRef, Struct};
use iceberg::table::Table;

use crate::error::{MaintenanceError, Result};

/// What the view knows of one live data file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveFile {
    /// The file's size in bytes.
    pub file_size_in_bytes: u64,
    /// Rows in the file.
    pub record_count: u64,
    /// The file's partition value (under its partition spec).
    pub partition: Struct,
    /// The partition value as bin-packing groups files by (its `Debug` form).
    pub partition_key: String,
    /// The partition spec the file was written with (that of its manifest).
    pub spec_id: i32,
}

impl LiveFile {
    fn of(file: &iceberg::spec::DataFile, spec_id: i32) -> LiveFile {
        LiveFile {
            file_size_in_bytes: file.file_size_in_bytes(),
            record_count: file.record_count(),
            partition: file.partition().clone(),
            partition_key: format!("{:?}", file.partition()),
            spec_id,
        }
    }
}

/// Why [`LiveFiles::update`] did a full load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullReason {
    /// The view's snapshot is not an ancestor of the current one (expired in between, a
    /// rollback, replaced history), or the table has no current snapshot any more.
    NotAnAncestor,
    /// The table is another one (its uuid changed: dropped and created again).
    OtherTable,
    /// The view was of a table without snapshots.
    NoSnapshot,
    /// The new snapshots' manifests are larger than the current snapshot's data manifests.
    Cheaper,
}

/// What [`LiveFiles::update`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// The view was already at the current snapshot.
    Unchanged,
    /// The view applied the manifests `snapshots` new snapshots added (`manifests` read).
    Incremental {
        /// New snapshots applied.
        snapshots: usize,
        /// Manifests read.
        manifests: usize,
    },
    /// The view was rebuilt by a full scan.
    Full(FullReason),
}

/// The live data files of a table at one snapshot (see the [module](self) documentation).
#[derive(Debug, Clone, PartialEq)]
pub struct LiveFiles {
    table_uuid: uuid::Uuid,
    snapshot_id: Option<i64>,
    sequence_number: i64,
    delete_manifests: bool,
    /// By path: iterated in path order, the order bin-packing sorts candidates in.
    files: BTreeMap<String, LiveFile>,
}

/// Manifest lists and manifests read concurrently (results are used in order).
const READ_AHEAD: usize = 8;

/// The changes one snapshot made: removals first, then insertions.
type Delta = (Vec<String>, Vec<(String, LiveFile)>);

fn table_err(table: &Table, e: iceberg::Error) -> MaintenanceError {
    MaintenanceError::table(table.identifier(), "cannot read its manifests", e)
}

impl LiveFiles {
    /// The view of `table`'s current snapshot, by a full scan of its manifests.
    ///
    /// # Errors
    ///
    /// Returns [`MaintenanceError::Table`] when the manifest list or a data manifest cannot be
    /// read.
    pub async fn load(table: &Table) -> Result<LiveFiles> {
        let Some(current) = table.metadata().current_snapshot() else {
            return Ok(LiveFiles::empty(table));
        };
        let list = table
            .manifest_list_reader(current)
            .load()
            .await
            .map_err(|e| table_err(table, e))?;
        LiveFiles::scan(table, current, &list).await
    }

    fn empty(table: &Table) -> LiveFiles {
        LiveFiles {
            table_uuid: table.metadata().uuid(),
            snapshot_id: None,
            sequence_number: 0,
            delete_manifests: false,
            files: BTreeMap::new(),
        }
    }

    /// The full scan of `snapshot`, whose manifest list is `list`.
    async fn scan(table: &Table, snapshot: &SnapshotRef, list: &ManifestList) -> Result<Self> {
        let mut files = BTreeMap::new();
        let data = list
            .entries()
            .iter()
            .filter(|mf| mf.content == ManifestContentType::Data);
        let mut manifests = stream::iter(data.map(|mf| async move {
            let m = mf.load_manifest(table.file_io()).await;
            m.map(|m| (mf.partition_spec_id, m))
        }))
        .buffered(READ_AHEAD);
        while let Some(read) = manifests.next().await {
            let (spec_id, manifest) = read.map_err(|e| table_err(table, e))?;
            for en in manifest.entries() {
                if en.status() != ManifestStatus::Deleted {
                    files.insert(
                        en.file_path().to_string(),
                        LiveFile::of(en.data_file(), spec_id),
                    );
                }
            }
        }
        Ok(LiveFiles {
            table_uuid: table.metadata().uuid(),
            snapshot_id: Some(snapshot.snapshot_id()),
            sequence_number: snapshot.sequence_number(),
            delete_manifests: has_delete_manifests(list),
            files,
        })
    }

    /// Moves the view to `table`'s current snapshot: incrementally from the manifests the new
    /// snapshots added, or by a full load when the view's snapshot is not an ancestor of the
    /// current one (or the full scan reads less). On an error the view is left unchanged.
    ///
    /// # Errors
    ///
    /// Returns [`MaintenanceError::Table`] when a manifest list or manifest it needs cannot be
    /// read.
    pub async fn update(&mut self, table: &Table) -> Result<Refresh> {
        self.refresh(table, true).await
    }

    /// [`update`](LiveFiles::update); without `cost_fallback` never a full load because it
    /// reads less (tests: the incremental path on small tables).
    async fn refresh(&mut self, table: &Table, cost_fallback: bool) -> Result<Refresh> {
        let meta = table.metadata();
        if meta.uuid() != self.table_uuid {
            *self = LiveFiles::load(table).await?;
            return Ok(Refresh::Full(FullReason::OtherTable));
        }
        let Some(current) = meta.current_snapshot() else {
            if self.snapshot_id.is_none() {
                return Ok(Refresh::Unchanged);
            }
            *self = LiveFiles::empty(table);
            return Ok(Refresh::Full(FullReason::NotAnAncestor));
        };
        let Some(base) = self.snapshot_id else {
            *self = LiveFiles::load(table).await?;
            return Ok(Refresh::Full(FullReason::NoSnapshot));
        };
        if current.snapshot_id() == base {
            return Ok(Refresh::Unchanged);
        }
        // Back along the parents to the view's snapshot (which need not exist any more: its id
        // as a retained snapshot's parent is enough). At most as many steps as there are
        // snapshots, so malformed metadata with a cycle cannot loop forever.
        let limit = meta.snapshots().len();
        let mut newest_first: Vec<SnapshotRef> = Vec::new();
        let mut found = false;
        let mut s = current.clone();
        while newest_first.len() <= limit {
            newest_first.push(s.clone());
            match s.parent_snapshot_id() {
                Some(p) if p == base => {
                    found = true;
                    break;
                }
                Some(p) => match meta.snapshot_by_id(p) {
                    Some(parent) => s = parent.clone(),
                    None => break,
                },
                None => break,
            }
        }
        if !found {
            *self = LiveFiles::load(table).await?;
            return Ok(Refresh::Full(FullReason::NotAnAncestor));
        }
        // The manifest lists of the new snapshots, oldest first.
        let lists: Vec<(SnapshotRef, ManifestList)> =
            stream::iter(newest_first.into_iter().rev().map(|s| async move {
                let list = table.manifest_list_reader(&s).load().await;
                list.map(|l| (s, l))
            }))
            .buffered(READ_AHEAD)
            .try_collect()
            .await
            .map_err(|e| table_err(table, e))?;
        let added_by = |s: &SnapshotRef, list: &ManifestList| {
            let id = s.snapshot_id();
            list.entries()
                .iter()
                .filter(move |mf| mf.content == ManifestContentType::Data)
                .filter(move |mf| mf.added_snapshot_id == id)
                .cloned()
                .collect::<Vec<_>>()
        };
        let to_read: Vec<Vec<_>> = lists.iter().map(|(s, l)| added_by(s, l)).collect();
        let (newest, newest_list) = match lists.last() {
            Some(last) => last,
            None => return Ok(Refresh::Unchanged),
        };
        let incremental_bytes: i64 = to_read.iter().flatten().map(|m| m.manifest_length).sum();
        let full_bytes: i64 = newest_list
            .entries()
            .iter()
            .filter(|m| m.content == ManifestContentType::Data)
            .map(|m| m.manifest_length)
            .sum();
        if cost_fallback && incremental_bytes > full_bytes {
            *self = LiveFiles::scan(table, newest, newest_list).await?;
            return Ok(Refresh::Full(FullReason::Cheaper));
        }
        // Read everything first (a failure leaves the view as it was), in snapshot order.
        let reads = lists.iter().zip(&to_read).flat_map(|((s, _), mfs)| {
            mfs.iter().map(move |mf| async move {
                let m = mf.load_manifest(table.file_io()).await;
                m.map(|m| (s.snapshot_id(), mf.partition_spec_id, m))
            })
        });
        let read: Vec<_> = stream::iter(reads)
            .buffered(READ_AHEAD)
            .try_collect()
            .await
            .map_err(|e| table_err(table, e))?;
        let manifests = read.len();
        let mut deltas: Vec<Delta> = Vec::with_capacity(lists.len());
        let mut read = read.into_iter().peekable();
        for (s, _) in &lists {
            let id = s.snapshot_id();
            let (mut removed, mut added) = (Vec::new(), Vec::new());
            while let Some((_, spec_id, manifest)) = read.next_if(|(by, _, _)| *by == id) {
                for en in manifest.entries() {
                    match en.status() {
                        ManifestStatus::Deleted => {
                            if en.snapshot_id().is_none_or(|by| by == id) {
                                removed.push(en.file_path().to_string());
                            }
                        }
                        ManifestStatus::Added => added.push((
                            en.file_path().to_string(),
                            LiveFile::of(en.data_file(), spec_id),
                        )),
                        ManifestStatus::Existing => {}
                    }
                }
            }
            deltas.push((removed, added));
        }
        for (removed, added) in deltas {
            for path in removed {
                self.files.remove(&path);
            }
            self.files.extend(added);
        }
        self.snapshot_id = Some(newest.snapshot_id());
        self.sequence_number = newest.sequence_number();
        self.delete_manifests = has_delete_manifests(newest_list);
        Ok(Refresh::Incremental {
            snapshots: lists.len(),
            manifests,
        })
    }

    /// The snapshot the view reflects (`None`: the table had no snapshot).
    pub fn snapshot_id(&self) -> Option<i64> {
        self.snapshot_id
    }

    /// The sequence number of that snapshot (0 without one).
    pub fn sequence_number(&self) -> i64 {
        self.sequence_number
    }

    /// Whether the snapshot's manifest list has delete manifests (the table has, or had in
    /// manifests still listed, delete files).
    pub fn has_delete_manifests(&self) -> bool {
        self.delete_manifests
    }

    /// Live data files.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// True when the snapshot has no live data file.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The live file at `path`, if any.
    pub fn get(&self, path: &str) -> Option<&LiveFile> {
        self.files.get(path)
    }

    /// Every live file with its path, in path order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &LiveFile)> {
        self.files.iter().map(|(p, f)| (p.as_str(), f))
    }
}

fn has_delete_manifests(list: &ManifestList) -> bool {
    list.entries()
        .iter()
        .any(|m| m.content == ManifestContentType::Deletes)
}

#[cfg(test)]
#[path = "../../../tests/support/provision.rs"]
mod provision;

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet, HashMap};
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use arrow_array::{Int64Array, RecordBatch, StringArray};
    use iceberg::spec::{
        NestedField, PrimitiveType, Schema, Transform, Type, UnboundPartitionSpec,
    };
    use iceberg::{Catalog, NamespaceIdent, TableIdent};

    use super::*;
    use crate::catalog::CatalogConfig;
    use crate::expire::{expire_snapshots, ExpireSettings};
    use crate::maintain::tasks::{plan_rewrite, plan_rewrite_live, RewriteSettings};
    use crate::manifests::{rewrite_manifests, ManifestSettings};
    use crate::replace::{commit_replace, live_data_files};
    use crate::runtime::IcebergRuntime;
    use crate::table_io;

    /// A deterministic xorshift generator (no proptest in this crate's dependencies).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("weir-live-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn ident() -> TableIdent {
        TableIdent::new(NamespaceIdent::new("db".into()), "events".into())
    }

    fn schema() -> Schema {
        Schema::builder()
            .with_fields(vec![
                NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
                NestedField::optional(2, "region", Type::Primitive(PrimitiveType::String)).into(),
            ])
            .build()
            .unwrap()
    }

    fn spec() -> UnboundPartitionSpec {
        UnboundPartitionSpec::builder()
            .add_partition_field(2, "region", Transform::Identity)
            .unwrap()
            .build()
    }

    fn batch(ids: std::ops::Range<i64>, regions: usize) -> RecordBatch {
        let arrow: arrow_schema::Schema = (&schema()).try_into().unwrap();
        let names = ["eu", "us", "ap"];
        RecordBatch::try_new(
            Arc::new(arrow),
            vec![
                Arc::new(Int64Array::from_iter_values(ids.clone())),
                Arc::new(StringArray::from_iter_values(
                    ids.map(|i| names[i as usize % regions.clamp(1, 3)]),
                )),
            ],
        )
        .unwrap()
    }

    async fn table(catalog: &dyn Catalog) -> Table {
        catalog.load_table(&ident()).await.unwrap()
    }

    /// Checks `view` (just updated) against a full load and against the rescan the planner
    /// used before (paths, sizes, record counts; and the rewrite plans).
    async fn check(view: &LiveFiles, table: &Table, step: &str) {
        let full = LiveFiles::load(table).await.unwrap();
        if *view != full {
            let a: BTreeSet<_> = view.iter().map(|(p, _)| p.to_string()).collect();
            let b: BTreeSet<_> = full.iter().map(|(p, _)| p.to_string()).collect();
            panic!(
                "{step}: the updated view differs from a full load (snapshot {:?} vs {:?}): only in the view {:?}, only in the load {:?}",
                view.snapshot_id(),
                full.snapshot_id(),
                a.difference(&b).collect::<Vec<_>>(),
                b.difference(&a).collect::<Vec<_>>()
            );
        }
        let (_, files) = live_data_files(table).await.unwrap();
        let rescan: BTreeMap<String, (u64, u64)> = files
            .iter()
            .map(|f| {
                let p = f.file_path().to_string();
                (p, (f.file_size_in_bytes(), f.record_count()))
            })
            .collect();
        assert_eq!(rescan.len(), files.len(), "{step}: duplicate live paths");
        let viewed: BTreeMap<String, (u64, u64)> = view
            .iter()
            .map(|(p, f)| (p.to_string(), (f.file_size_in_bytes, f.record_count)))
            .collect();
        assert_eq!(viewed, rescan, "{step}");
        if !view.has_delete_manifests() {
            for s in [
                RewriteSettings {
                    target_file_size: Some(4096),
                    ..RewriteSettings::default()
                },
                RewriteSettings {
                    target_file_size: Some(1500),
                    max_file_group_size: 5000,
                    min_input_files: 2,
                    ..RewriteSettings::default()
                },
            ] {
                let a = plan_rewrite(table, &s).await.unwrap();
                let b = plan_rewrite_live(view, table, &s).unwrap();
                assert_eq!(a, b, "{step}: plans differ");
            }
        }
    }

    /// Rewrites (REPLACE) `files`: their rows into new files, or deleted when `drop_rows`.
    async fn replace(
        config: &CatalogConfig,
        catalog: &dyn Catalog,
        files: &BTreeSet<String>,
        drop_rows: bool,
    ) {
        let t = table(catalog).await;
        let seq = t.metadata().current_snapshot().unwrap().sequence_number();
        let mut added = Vec::new();
        if !drop_rows {
            let mut w = crate::table_writer::TableWriter::new(&t, None).unwrap();
            for p in files {
                for b in crate::rewrite::read_data_file(&t, p).await.unwrap() {
                    w.write(&b).await.unwrap();
                }
            }
            added = w.close().await.unwrap();
        }
        commit_replace(config, catalog, &ident(), files, added, seq, 4)
            .await
            .unwrap();
    }

    /// Random sequences of appends, REPLACE commits (rewrites and deletions), manifest
    /// rewrites and expiries, with the view updated after a random number of them: `update`
    /// always equals `load` (and the planner's old rescan).
    #[test]
    fn update_equals_load_over_random_operation_sequences() {
        let rt = IcebergRuntime::new(2).unwrap();
        for seed in [0x9e37_79b9_7f4a_7c15_u64, 42, 7_777_777] {
            let dir = temp_dir(&format!("random-{seed}"));
            let config = CatalogConfig::embedded(&dir);
            rt.block_on(async {
                let catalog = config.open().await.unwrap();
                table_io::create_partitioned_table_if_missing(
                    &*catalog,
                    &ident(),
                    schema(),
                    Some(spec()),
                )
                .await
                .unwrap();
                let mut rng = Rng(seed);
                let mut view = LiveFiles::load(&table(&*catalog).await).await.unwrap();
                assert!(view.is_empty() && view.snapshot_id().is_none());
                // Updated at the same points, but never by a full load to read less.
                let mut strict = view.clone();
                let mut next_id = 0i64;
                let mut kinds = BTreeMap::new();
                for step in 0..70 {
                    let t = table(&*catalog).await;
                    let live: Vec<String> = LiveFiles::load(&t)
                        .await
                        .unwrap()
                        .iter()
                        .map(|(p, _)| p.to_string())
                        .collect();
                    let op = if live.is_empty() { 0 } else { rng.below(10) };
                    let what = match op {
                        0..=4 => {
                            let n = 1 + rng.below(40) as i64;
                            let b = batch(next_id..next_id + n, 1 + rng.below(3));
                            next_id += n;
                            table_io::append(&*catalog, &ident(), &[b], HashMap::new())
                                .await
                                .unwrap();
                            "append"
                        }
                        5 | 6 => {
                            let mut pick = BTreeSet::new();
                            for _ in 0..1 + rng.below(4) {
                                pick.insert(live[rng.below(live.len())].clone());
                            }
                            replace(&config, &*catalog, &pick, false).await;
                            "rewrite"
                        }
                        7 => {
                            let pick = BTreeSet::from([live[rng.below(live.len())].clone()]);
                            replace(&config, &*catalog, &pick, true).await;
                            "delete"
                        }
                        8 => {
                            let s = ManifestSettings {
                                min_manifests: 2,
                                ..ManifestSettings::default()
                            };
                            rewrite_manifests(&config, &*catalog, &ident(), &s, 4)
                                .await
                                .unwrap();
                            "rewrite manifests"
                        }
                        _ => {
                            let settings = ExpireSettings {
                                older_than_ms: i64::MAX,
                                retain_last: 1 + rng.below(3),
                            };
                            expire_snapshots(&*catalog, &ident(), settings)
                                .await
                                .unwrap();
                            "expire"
                        }
                    };
                    if rng.below(3) != 0 {
                        let t = table(&*catalog).await;
                        let r = view.update(&t).await.unwrap();
                        let kind = match strict.refresh(&t, false).await.unwrap() {
                            Refresh::Unchanged => "unchanged",
                            Refresh::Incremental { .. } => "incremental",
                            Refresh::Full(_) => "full",
                        };
                        *kinds.entry(kind).or_insert(0) += 1;
                        if matches!(r, Refresh::Full(FullReason::Cheaper)) {
                            *kinds.entry("full to read less").or_insert(0) += 1;
                        }
                        let at = format!("seed {seed} step {step} ({what})");
                        check(&view, &t, &at).await;
                        check(&strict, &t, &format!("{at}, strict")).await;
                    }
                }
                let t = table(&*catalog).await;
                view.update(&t).await.unwrap();
                check(&view, &t, &format!("seed {seed} end")).await;
                eprintln!("seed {seed}: {kinds:?}");
                // Both paths were taken.
                assert!(
                    kinds.get("incremental").copied().unwrap_or(0) > 10,
                    "{kinds:?}"
                );
                assert!(kinds.get("full").copied().unwrap_or(0) > 0, "{kinds:?}");
            });
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    /// The fallbacks: the view's snapshot expired but its child retained (still incremental),
    /// snapshots in between expired (full), the table dropped and created again (full), and a
    /// view of an empty table.
    #[test]
    fn update_falls_back_to_a_full_load_when_it_must() {
        let rt = IcebergRuntime::new(2).unwrap();
        let dir = temp_dir("fallback");
        let config = CatalogConfig::embedded(&dir);
        rt.block_on(async {
            let catalog = config.open().await.unwrap();
            table_io::create_partitioned_table_if_missing(&*catalog, &ident(), schema(), None)
                .await
                .unwrap();
            let append = |r: std::ops::Range<i64>| {
                let c = catalog.clone();
                async move {
                    table_io::append(&*c, &ident(), &[batch(r, 2)], HashMap::new())
                        .await
                        .unwrap()
                }
            };
            let mut view = LiveFiles::load(&table(&*catalog).await).await.unwrap();
            assert_eq!(
                view.update(&table(&*catalog).await).await.unwrap(),
                Refresh::Unchanged
            );
            append(0..10).await;
            let t = table(&*catalog).await;
            assert_eq!(
                view.update(&t).await.unwrap(),
                Refresh::Full(FullReason::NoSnapshot)
            );
            check(&view, &t, "first snapshot").await;
            // Two appends, then the view's snapshot expires: its child keeps its id as the
            // parent, the update stays incremental.
            append(10..20).await;
            append(20..30).await;
            expire_snapshots(
                &*catalog,
                &ident(),
                ExpireSettings {
                    older_than_ms: i64::MAX,
                    retain_last: 2,
                },
            )
            .await
            .unwrap();
            let t = table(&*catalog).await;
            assert!(t
                .metadata()
                .snapshot_by_id(view.snapshot_id().unwrap())
                .is_none());
            assert_eq!(
                view.update(&t).await.unwrap(),
                Refresh::Incremental {
                    snapshots: 2,
                    manifests: 2
                }
            );
            check(&view, &t, "base expired").await;
            // Snapshots in between expire: the chain is broken.
            append(30..40).await;
            append(40..50).await;
            expire_snapshots(
                &*catalog,
                &ident(),
                ExpireSettings {
                    older_than_ms: i64::MAX,
                    retain_last: 1,
                },
            )
            .await
            .unwrap();
            let t = table(&*catalog).await;
            assert_eq!(
                view.update(&t).await.unwrap(),
                Refresh::Full(FullReason::NotAnAncestor)
            );
            check(&view, &t, "chain expired").await;
            // Dropped and created again (a new uuid), with the same files count by chance.
            catalog.drop_table(&ident()).await.unwrap();
            table_io::create_partitioned_table_if_missing(&*catalog, &ident(), schema(), None)
                .await
                .unwrap();
            let t = table(&*catalog).await;
            assert_eq!(
                view.update(&t).await.unwrap(),
                Refresh::Full(FullReason::OtherTable)
            );
            assert!(view.is_empty() && view.snapshot_id().is_none());
            append(0..5).await;
            let t = table(&*catalog).await;
            view.update(&t).await.unwrap();
            check(&view, &t, "recreated").await;
            assert_eq!(view.len(), 1);
        });
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// `$WEIR_PYICEBERG_PYTHON`, else the venv `.ci/pyiceberg-venv.sh` makes (once; it
    /// serialises concurrent callers and repairs a half-made venv).
    fn python() -> PathBuf {
        if let Ok(p) = std::env::var("WEIR_PYICEBERG_PYTHON") {
            return p.into();
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        super::provision::provision(&root, ".ci/pyiceberg-venv.sh", "making the pyiceberg venv")
            .map(PathBuf::from)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn pyiceberg(python: &Path, dir: &Path, code: &str) -> String {
        let prelude = format!(
            "import json\nimport pyarrow as pa\nfrom pyiceberg.catalog.sql import SqlCatalog\n\
             from pyiceberg.expressions import LessThan, EqualTo, GreaterThanOrEqual\n\
             cat = SqlCatalog('weir', uri='sqlite:///{}/catalog.db', warehouse='file://{}')\n\
             arrow = pa.schema([pa.field('id', pa.int64(), nullable=False), pa.field('region', pa.string())])\n\
             def rows(lo, hi):\n    ids = list(range(lo, hi))\n    return pa.table({{'id': ids, 'region': [['eu', 'us', 'ap'][i % 3] for i in ids]}}, schema=arrow)\n",
            dir.display(),
            dir.display()
        );
        let out = std::process::Command::new(python)
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

    /// pyiceberg's commits between updates: merged appends (manifests with EXISTING and ADDED
    /// entries), deletes that drop whole files and rewrite others (overwrite snapshots),
    /// overwrites, a rollback; interleaved with weir's REPLACE commits and expiry.
    #[test]
    fn update_equals_load_after_pyiceberg_commits() {
        let py = python();
        let rt = IcebergRuntime::new(2).unwrap();
        let dir = temp_dir("pyiceberg");
        std::fs::create_dir_all(&dir).unwrap();
        let config = CatalogConfig::embedded(&dir);
        pyiceberg(
            &py,
            &dir,
            "from pyiceberg.partitioning import PartitionSpec, PartitionField\n\
             from pyiceberg.transforms import IdentityTransform\n\
             from pyiceberg.schema import Schema\n\
             from pyiceberg.types import NestedField, LongType, StringType\n\
             cat.create_namespace('db')\n\
             schema = Schema(NestedField(1, 'id', LongType(), required=True), NestedField(2, 'region', StringType(), required=False))\n\
             spec = PartitionSpec(PartitionField(source_id=2, field_id=1000, transform=IdentityTransform(), name='region'))\n\
             t = cat.create_table('db.events', schema=schema, partition_spec=spec, properties={'commit.manifest-merge.enabled': 'true', 'commit.manifest.min-count-to-merge': '3'})\n\
             for k in range(6):\n    t.append(rows(k * 30, k * 30 + 30))\n",
        );
        let steps: &[(&str, &str)] = &[
            ("merged appends", "for k in range(6, 10):\n    t.append(rows(k * 30, k * 30 + 30))\n"),
            ("delete whole files", "t.delete(EqualTo('region', 'eu'))\n"),
            ("delete rewriting files", "t.delete(LessThan('id', 75))\n"),
            ("weir rewrite", ""),
            ("overwrite with a filter", "t.overwrite(rows(1000, 1030), overwrite_filter=GreaterThanOrEqual('id', 200))\n"),
            ("append", "t.append(rows(2000, 2050))\n"),
            ("weir expiry", ""),
            ("rollback", "s = t.current_snapshot().parent_snapshot_id\nt.append(rows(3000, 3010))\nt.manage_snapshots().rollback_to_snapshot(s).commit()\n"),
            ("append after rollback", "t.append(rows(4000, 4040))\n"),
            ("overwrite all", "t.overwrite(rows(5000, 5030))\n"),
            ("appends", "for k in range(4):\n    t.append(rows(6000 + k * 10, 6010 + k * 10))\n"),
        ];
        rt.block_on(async {
            let catalog = config.open().await.unwrap();
            let mut view = LiveFiles::load(&table(&*catalog).await).await.unwrap();
            check(&view, &table(&*catalog).await, "created").await;
            let mut strict = view.clone();
            let mut incremental = 0;
            for (what, code) in steps {
                match *what {
                    "weir rewrite" => {
                        let t = table(&*catalog).await;
                        let (_, files) = live_data_files(&t).await.unwrap();
                        let pick: BTreeSet<String> = files
                            .iter()
                            .take(3)
                            .map(|f| f.file_path().to_string())
                            .collect();
                        replace(&config, &*catalog, &pick, false).await;
                    }
                    "weir expiry" => {
                        expire_snapshots(
                            &*catalog,
                            &ident(),
                            ExpireSettings {
                                older_than_ms: i64::MAX,
                                retain_last: 3,
                            },
                        )
                        .await
                        .unwrap();
                    }
                    _ => {
                        pyiceberg(
                            &py,
                            &dir,
                            &format!("t = cat.load_table('db.events')\n{code}"),
                        );
                    }
                }
                let t = table(&*catalog).await;
                let r = view.update(&t).await.unwrap();
                let rs = strict.refresh(&t, false).await.unwrap();
                eprintln!("{what}: {r:?} (strict: {rs:?}), {} live files", view.len());
                if matches!(rs, Refresh::Incremental { .. }) {
                    incremental += 1;
                }
                if *what == "rollback" {
                    assert_eq!(rs, Refresh::Full(FullReason::NotAnAncestor));
                }
                check(&view, &t, what).await;
                check(&strict, &t, &format!("{what}, strict")).await;
            }
            assert!(incremental >= 9, "{incremental} incremental updates");
        });
        let _ = std::fs::remove_dir_all(&dir);
    }
}
