//! RewriteManifests: merging the small data manifests of a table's current snapshot, so that
//! planning a scan reads few manifests instead of one per append.
//!
//! The data manifests of the current snapshot smaller than the target size
//! (`commit.manifest.target-size-bytes`, 8 MB by default) are read; their live entries (added or
//! existing; deleted entries are dropped) are written again as EXISTING entries into new
//! manifests — one series per partition spec, entries clustered by partition, a new manifest
//! started when the running size estimate would pass the target. Every other manifest (large
//! ones, delete manifests) is carried over unchanged. The result is one REPLACE snapshot whose
//! summary carries `manifests-created`, `manifests-kept`, `manifests-replaced` and
//! `entries-processed` (as Java's `RewriteManifests`) and the parent's `total-*` counts.
//!
//! Invariants:
//! - **Same rows**: the new snapshot has exactly the live data and delete files of its parent,
//!   each entry with its original snapshot id, data sequence number and file sequence number, so
//!   deletes apply as before and a reader sees the same rows.
//! - **Nothing uncertain is rewritten**: a manifest whose live entries lack (inherited) sequence
//!   numbers or snapshot ids, whose partition spec is unknown, or whose partition values do not
//!   fit the spec's partition type under the current schema is carried over unchanged.
//! - **Only when it helps**: nothing is committed (report `snapshot_id: None`) when fewer than
//!   `min_manifests` manifests would be merged, or when merging would not reduce their number.
//! - **Commit**: new manifests and manifest list first, then the snapshot through the shared
//!   commit layer (compare-and-swap on the SQL catalog, requirements on REST); a lost race
//!   deletes what the attempt wrote, reloads and redoes the rewrite with backoff.
//! - Format version 2 tables only (v1 has no sequence numbers, v3 row lineage is not handled);
//!   other versions are an error once there is something to rewrite.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use iceberg::io::FileIO;
use iceberg::spec::{
    DataContentType, DataFile, FormatVersion, ManifestContentType, ManifestFile,
    ManifestListWriter, ManifestStatus, ManifestWriterBuilder, Operation, PartitionSpec, SchemaRef,
    Snapshot, Struct, StructType, Summary,
};
use iceberg::table::Table;
use iceberg::{Catalog, TableIdent};

use crate::catalog::CatalogConfig;
use crate::error::{MaintenanceError, Result};
use crate::replace::{chrono_now_ms, commit_snapshot, rand_snapshot_id, ReplaceError};

/// The table property holding the target manifest size in bytes.
pub const TARGET_SIZE_PROPERTY: &str = "commit.manifest.target-size-bytes";

/// The default target manifest size: 8 MB (Iceberg's default).
pub const DEFAULT_TARGET_MANIFEST_SIZE: u64 = 8 * 1024 * 1024;

/// Which manifests to merge and how large the merged ones get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManifestSettings {
    /// Manifests smaller than this are merged, into manifests of about this size (table
    /// property `commit.manifest.target-size-bytes`, default 8 MB).
    pub target_manifest_size: u64,
    /// Rewrite only when at least this many small manifests exist (default 2).
    pub min_manifests: usize,
}

impl Default for ManifestSettings {
    fn default() -> Self {
        ManifestSettings {
            target_manifest_size: DEFAULT_TARGET_MANIFEST_SIZE,
            min_manifests: 2,
        }
    }
}

impl ManifestSettings {
    /// The defaults with the target size of the table property
    /// [`TARGET_SIZE_PROPERTY`] when the table sets it (an error if it is not a number).
    ///
    /// # Errors
    ///
    /// Returns [`MaintenanceError::Table`] when the table sets [`TARGET_SIZE_PROPERTY`] to
    /// something other than a whole number of bytes.
    pub fn for_table(table: &Table) -> Result<Self> {
        let mut settings = ManifestSettings::default();
        if let Some(v) = table.metadata().properties().get(TARGET_SIZE_PROPERTY) {
            settings.target_manifest_size = v.trim().parse().map_err(|e| {
                MaintenanceError::table(
                    table.identifier(),
                    format!(
                        "table property {TARGET_SIZE_PROPERTY} = '{v}' is not a number of bytes"
                    ),
                    e,
                )
            })?;
        }
        Ok(settings)
    }
}

/// What a manifest rewrite did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManifestReport {
    /// The REPLACE snapshot committed (`None`: nothing to rewrite, nothing committed).
    pub snapshot_id: Option<i64>,
    /// Manifests (data and delete) of the current snapshot before.
    pub manifests_before: usize,
    /// Manifests of the current snapshot after (equal to `manifests_before` when nothing was
    /// committed).
    pub manifests_after: usize,
    /// Live entries rewritten into the new manifests.
    pub entries: usize,
}

/// Merges the small data manifests of the current snapshot of `ident` (see the module docs),
/// retrying lost commit races up to `attempts` times with backoff.
///
/// # Errors
///
/// Returns [`MaintenanceError::Table`] when the table or its manifests cannot be read, the new
/// manifests cannot be written, it is not a format version 2 table (once there is something
/// to rewrite) or all `attempts` lost their race; [`MaintenanceError::Catalog`] when the
/// catalog cannot take the commit. Nothing is committed then.
pub async fn rewrite_manifests(
    config: &CatalogConfig,
    catalog: &dyn Catalog,
    ident: &TableIdent,
    settings: &ManifestSettings,
    attempts: u32,
) -> Result<ManifestReport> {
    let mut delay = Duration::from_millis(20);
    for attempt in 1..=attempts.max(1) {
        let table = catalog
            .load_table(ident)
            .await
            .map_err(table_err(ident, "cannot load the table"))?;
        match try_rewrite(config, &table, settings).await? {
            Attempt::Done(report) => {
                if let Some(id) = report.snapshot_id {
                    tracing::info!(%ident, snapshot = id, before = report.manifests_before, after = report.manifests_after, entries = report.entries, "manifests rewritten");
                }
                return Ok(report);
            }
            Attempt::Lost { written } => {
                remove_written(&table, &written).await;
                tracing::info!(%ident, attempt, "manifest rewrite lost a commit race; retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
    Err(MaintenanceError::table_msg(
        ident,
        format!("manifest rewrite lost {attempts} commit races in a row"),
    ))
}

enum Attempt {
    Done(ManifestReport),
    /// The commit found the table changed; the files this attempt wrote.
    Lost {
        written: Vec<String>,
    },
}

/// A live entry to rewrite, with what the EXISTING entry must keep.
struct Planned {
    data_file: DataFile,
    snapshot_id: i64,
    sequence_number: i64,
    file_sequence_number: i64,
}

/// The entries of one partition spec, clustered by partition (first-seen order).
struct SpecGroup {
    spec: PartitionSpec,
    clusters: Vec<Vec<Planned>>,
    index: HashMap<Struct, usize>,
}

async fn try_rewrite(
    config: &CatalogConfig,
    table: &Table,
    settings: &ManifestSettings,
) -> Result<Attempt> {
    let ident = table.identifier();
    let metadata = table.metadata();
    let file_io = table.file_io();
    let Some(current) = metadata.current_snapshot() else {
        return Ok(Attempt::Done(ManifestReport::default()));
    };
    let list = table
        .manifest_list_reader(current)
        .load()
        .await
        .map_err(table_err(ident, "cannot read the manifest list"))?;
    let before = list.entries().len();
    let nothing = ManifestReport {
        snapshot_id: None,
        manifests_before: before,
        manifests_after: before,
        entries: 0,
    };
    let min = settings.min_manifests.max(1);
    let target = settings.target_manifest_size;
    let schema = metadata.current_schema().clone();

    let small: Vec<&ManifestFile> = list
        .entries()
        .iter()
        .filter(|mf| {
            mf.content == ManifestContentType::Data
                && u64::try_from(mf.manifest_length).is_ok_and(|len| len < target)
        })
        .collect();
    if small.len() < min {
        return Ok(Attempt::Done(nothing));
    }

    // Read the small manifests; plan their live entries per spec and partition.
    let mut groups: BTreeMap<i32, SpecGroup> = BTreeMap::new();
    let mut replaced: HashSet<&str> = HashSet::new();
    let mut entries = 0usize;
    for mf in small {
        let Some(spec) = metadata.partition_spec_by_id(mf.partition_spec_id) else {
            tracing::warn!(%ident, manifest = %mf.manifest_path, "keeping a manifest of an unknown partition spec {}", mf.partition_spec_id);
            continue;
        };
        let Ok(partition_type) = spec.partition_type(&schema) else {
            tracing::warn!(%ident, manifest = %mf.manifest_path, "keeping a manifest whose partition spec does not bind to the current schema");
            continue;
        };
        let manifest = mf
            .load_manifest(file_io)
            .await
            .map_err(table_err(ident, "cannot read a manifest"))?;
        let planned: Option<Vec<Planned>> = manifest
            .entries()
            .iter()
            .filter(|en| en.status() != ManifestStatus::Deleted)
            .map(|en| {
                let fits = en.data_file().content_type() == DataContentType::Data
                    && partition_fits(en.data_file().partition(), &partition_type);
                Some(Planned {
                    data_file: fits.then(|| en.data_file().clone())?,
                    snapshot_id: en.snapshot_id()?,
                    sequence_number: en.sequence_number()?,
                    file_sequence_number: en.file_sequence_number?,
                })
            })
            .collect();
        let Some(planned) = planned else {
            tracing::warn!(%ident, manifest = %mf.manifest_path, "keeping a manifest with entries that cannot be rewritten exactly (missing sequence numbers or snapshot ids, or partition values not of the spec's type)");
            continue;
        };
        let group = groups
            .entry(mf.partition_spec_id)
            .or_insert_with(|| SpecGroup {
                spec: spec.as_ref().clone(),
                clusters: Vec::new(),
                index: HashMap::new(),
            });
        for p in planned {
            let partition = p.data_file.partition().clone();
            let i = *group.index.entry(partition).or_insert_with(|| {
                group.clusters.push(Vec::new());
                group.clusters.len() - 1
            });
            group.clusters[i].push(p);
            entries += 1;
        }
        replaced.insert(mf.manifest_path.as_str());
    }

    // Cut each spec's entries into manifests of about the target size.
    let mut chunks: Vec<(i32, Vec<Planned>)> = Vec::new();
    for (spec_id, group) in &mut groups {
        let (header, entry_size) =
            sizes(&schema, &group.spec, &group.clusters)
                .await
                .map_err(table_err(
                    ident,
                    "cannot estimate the size of manifest entries",
                ))?;
        let mut chunk: Vec<Planned> = Vec::new();
        let mut size = header;
        for p in group.clusters.drain(..).flatten() {
            if !chunk.is_empty() && size + entry_size > target {
                chunks.push((*spec_id, std::mem::take(&mut chunk)));
                size = header;
            }
            size += entry_size;
            chunk.push(p);
        }
        if !chunk.is_empty() {
            chunks.push((*spec_id, chunk));
        }
    }
    if replaced.len() < min || chunks.len() >= replaced.len() {
        return Ok(Attempt::Done(nothing));
    }
    if metadata.format_version() != FormatVersion::V2 {
        return Err(MaintenanceError::table_msg(
            ident,
            format!(
                "rewriting manifests supports format version 2 tables; this one is {}",
                metadata.format_version()
            ),
        ));
    }

    // Write the new manifests and the manifest list.
    let snapshot_id = rand_snapshot_id();
    let sequence_number = metadata.last_sequence_number() + 1;
    let location = metadata.location().trim_end_matches('/').to_string();
    let commit_uuid = uuid::Uuid::new_v4();
    let mut written = Vec::new();
    let e = table_err(ident, "cannot write the new manifests");
    let e_list = table_err(ident, "cannot write the manifest list");
    let result = async {
        let mut manifests = Vec::new();
        for (k, (spec_id, chunk)) in chunks.into_iter().enumerate() {
            let spec = groups
                .get(&spec_id)
                .map(|g| g.spec.clone())
                .ok_or_else(|| MaintenanceError::Internal("spec group missing".into()))?;
            let path = format!("{location}/metadata/{commit_uuid}-rewrite-m{k}.avro");
            let output = file_io.new_output(&path).map_err(&e)?;
            written.push(path);
            let mut w = ManifestWriterBuilder::new(output, Some(snapshot_id), schema.clone(), spec)
                .build_v2_data();
            for p in chunk {
                w.add_existing_file(
                    p.data_file,
                    p.snapshot_id,
                    p.sequence_number,
                    Some(p.file_sequence_number),
                )
                .map_err(&e)?;
            }
            manifests.push(w.write_manifest_file().await.map_err(&e)?);
        }
        let created = manifests.len();
        let kept: Vec<ManifestFile> = list
            .entries()
            .iter()
            .filter(|mf| !replaced.contains(mf.manifest_path.as_str()))
            .cloned()
            .collect();
        let kept_count = kept.len();
        manifests.extend(kept);
        let list_path = format!("{location}/metadata/snap-{snapshot_id}-1-{commit_uuid}.avro");
        let out = file_io.new_output(&list_path).map_err(&e_list)?;
        written.push(list_path.clone());
        let mut lw = ManifestListWriter::v2(
            out.writer().await.map_err(&e_list)?,
            snapshot_id,
            Some(current.snapshot_id()),
            sequence_number,
        );
        lw.add_manifests(manifests.into_iter()).map_err(&e_list)?;
        lw.close().await.map_err(&e_list)?;
        Ok::<_, MaintenanceError>((list_path, created, kept_count))
    }
    .await;
    let (list_path, created, kept) = match result {
        Ok(r) => r,
        Err(err) => {
            remove_written(table, &written).await;
            return Err(err);
        }
    };

    // Rows are unchanged: the parent's totals carry over.
    let mut properties: HashMap<String, String> = current
        .summary()
        .additional_properties
        .iter()
        .filter(|(k, _)| k.starts_with("total-"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    properties.extend([
        ("manifests-created".to_string(), created.to_string()),
        ("manifests-kept".to_string(), kept.to_string()),
        ("manifests-replaced".to_string(), replaced.len().to_string()),
        ("entries-processed".to_string(), entries.to_string()),
    ]);
    properties.extend(crate::replace::carried_markers(current));
    let snapshot = Snapshot::builder()
        .with_snapshot_id(snapshot_id)
        .with_parent_snapshot_id(Some(current.snapshot_id()))
        .with_sequence_number(sequence_number)
        .with_timestamp_ms(chrono_now_ms())
        .with_manifest_list(list_path)
        .with_summary(Summary {
            operation: Operation::Replace,
            additional_properties: properties,
        })
        .with_schema_id(metadata.current_schema_id())
        .build();
    let committed = commit_snapshot(config, table, snapshot)
        .await
        .map_err(|err| match err {
            ReplaceError::Other(e) => e,
            ReplaceError::Conflict { table, file } => {
                MaintenanceError::table_msg(table, format!("{file} is no longer live"))
            }
        })?;
    if !committed {
        return Ok(Attempt::Lost { written });
    }
    Ok(Attempt::Done(ManifestReport {
        snapshot_id: Some(snapshot_id),
        manifests_before: before,
        manifests_after: created + kept,
        entries,
    }))
}

/// The size estimate of manifests of `spec`: (header bytes, bytes per entry), measured with
/// this crate's manifest writer in memory — an empty manifest, and one of up to
/// [`SIZE_SAMPLE`] entries spread evenly over `clusters`. Manifests other writers made encode
/// entries differently, so their lengths are not used.
async fn sizes(
    schema: &SchemaRef,
    spec: &PartitionSpec,
    clusters: &[Vec<Planned>],
) -> iceberg::Result<(u64, u64)> {
    let all: Vec<&Planned> = clusters.iter().flatten().collect();
    let step = all.len().div_ceil(SIZE_SAMPLE).max(1);
    let sample: Vec<&Planned> = all.into_iter().step_by(step).collect();
    let io = FileIO::new_with_memory();
    let mut lengths = [0u64; 2];
    for (i, entries) in [&sample[..0], &sample[..]].into_iter().enumerate() {
        let output = io.new_output(format!("memory:///size-probe-{i}.avro"))?;
        let mut w = ManifestWriterBuilder::new(output, Some(0), schema.clone(), spec.clone())
            .build_v2_data();
        for p in entries {
            w.add_existing_file(
                p.data_file.clone(),
                p.snapshot_id,
                p.sequence_number,
                Some(p.file_sequence_number),
            )?;
        }
        lengths[i] = u64::try_from(w.write_manifest_file().await?.manifest_length).unwrap_or(0);
    }
    let per_entry = match sample.len() as u64 {
        0 => 0,
        n => lengths[1].saturating_sub(lengths[0]).div_ceil(n),
    };
    Ok((lengths[0], per_entry.max(1)))
}

/// Entries written in memory to measure the size of one.
const SIZE_SAMPLE: usize = 100;

/// Whether `partition` holds one primitive value (or null) of the right type per field of
/// `partition_type` — what the manifest writer needs (it panics otherwise).
fn partition_fits(partition: &Struct, partition_type: &StructType) -> bool {
    partition.fields().len() == partition_type.fields().len()
        && partition
            .iter()
            .zip(partition_type.fields())
            .all(|(value, field)| {
                let Some(ty) = field.field_type.as_primitive_type() else {
                    return false;
                };
                match value {
                    None => true,
                    Some(v) => v.as_primitive_literal().is_some_and(|p| ty.compatible(&p)),
                }
            })
}

/// Best-effort removal of files an uncommitted attempt wrote (orphan cleanup gets the rest).
async fn remove_written(table: &Table, written: &[String]) {
    for path in written {
        if let Err(err) = table.file_io().delete(path).await {
            tracing::warn!(table = %table.identifier(), file = %path, "cannot remove a file of an uncommitted manifest rewrite: {err}");
        }
    }
}

/// Maps an Iceberg error to a [`MaintenanceError::Table`] saying what could not be done.
fn table_err<'a>(
    ident: &'a TableIdent,
    message: &'a str,
) -> impl Fn(iceberg::Error) -> MaintenanceError + 'a {
    move |e| MaintenanceError::table(ident, message, e)
}
