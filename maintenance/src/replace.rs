//! The REPLACE snapshot (the compaction commit), which iceberg-rust cannot make: some data
//! files removed and others added holding the same rows.
//!
//! Built from the public manifest, manifest-list and metadata APIs and committed with the SQL
//! catalog's compare-and-swap on `metadata_location`. Invariants:
//! - **Validation**: every file to remove must still be live in the current snapshot at commit
//!   time; otherwise the rewrite conflicts ([`ReplaceError::Conflict`]) and nothing is
//!   committed. Appends committed meanwhile are fine: their manifests are carried over.
//! - **Sequence numbers**: the added files get the data sequence number of the snapshot the
//!   rewrite was planned on (`starting_sequence_number`), so equality deletes committed meanwhile
//!   still apply to them; removed entries keep their original sequence numbers.
//! - **Commit**: new manifests and manifest list are written first. In a SQL catalog the new
//!   metadata file is written next and the catalog row is then swapped only if it still points
//!   to the metadata the rewrite was based on; a REST catalog gets the new snapshot as updates
//!   with requirements (table uuid, `main` still at the planned-on snapshot) and answers 409 when
//!   they fail. A lost race reloads, validates again and retries with backoff.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use iceberg::spec::{
    DataFile, ManifestContentType, ManifestListWriter, ManifestStatus, ManifestWriterBuilder,
    Operation, Snapshot, SnapshotReference, SnapshotRetention, Summary, MAIN_BRANCH,
};
use iceberg::table::Table;
use iceberg::{Catalog, MetadataLocation, TableIdent, TableRequirement, TableUpdate};
use sqlx::any::AnyPoolOptions;

use crate::catalog::{CatalogConfig, CatalogKind};
use crate::error::{MaintenanceError, Result};

/// Why a REPLACE commit did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ReplaceError {
    /// A file to remove is no longer live (another commit removed or replaced it).
    #[error("table '{table}': rewrite conflicts: {file} is no longer live")]
    Conflict {
        /// The table.
        table: String,
        /// The first file that is gone.
        file: String,
    },
    /// Any other failure.
    #[error(transparent)]
    Other(#[from] MaintenanceError),
}

/// Replaces `removed` (paths of live data files) by `added` in one REPLACE snapshot, retrying
/// lost compare-and-swap races up to `attempts` times. Returns the new snapshot's id.
///
/// # Errors
///
/// Returns [`ReplaceError::Conflict`] when a file of `removed` is no longer live (or deletes
/// were committed after planning). Returns [`ReplaceError::Other`] holding a
/// [`MaintenanceError::Table`] when the table has no snapshot, is not format version 2, cannot
/// be read or written, or lost all `attempts` races, and a [`MaintenanceError::Catalog`] when
/// the catalog cannot take the commit. Nothing is committed then.
pub async fn commit_replace(
    config: &CatalogConfig,
    catalog: &dyn Catalog,
    ident: &TableIdent,
    removed: &BTreeSet<String>,
    added: Vec<DataFile>,
    starting_sequence_number: i64,
    attempts: u32,
) -> std::result::Result<i64, ReplaceError> {
    let mut delay = Duration::from_millis(20);
    for attempt in 1..=attempts.max(1) {
        let table = catalog
            .load_table(ident)
            .await
            .map_err(tbl(ident, "cannot load the table"))?;
        match try_replace(
            config,
            &table,
            removed,
            added.clone(),
            starting_sequence_number,
        )
        .await
        {
            Ok(Some(id)) => return Ok(id),
            Ok(None) => {
                tracing::info!(%ident, attempt, "REPLACE commit lost a race; retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e),
        }
    }
    Err(ReplaceError::Other(MaintenanceError::table_msg(
        ident,
        format!("REPLACE commit lost {attempts} compare-and-swap races in a row"),
    )))
}

/// Maps an Iceberg error to a [`MaintenanceError::Table`] saying what could not be done.
fn tbl<'a>(
    ident: &'a TableIdent,
    message: &'a str,
) -> impl Fn(iceberg::Error) -> ReplaceError + 'a {
    move |e| ReplaceError::Other(MaintenanceError::table(ident, message, e))
}

/// One attempt: `Ok(None)` if the compare-and-swap found the table changed.
async fn try_replace(
    config: &CatalogConfig,
    table: &Table,
    removed: &BTreeSet<String>,
    added: Vec<DataFile>,
    starting_sequence_number: i64,
) -> std::result::Result<Option<i64>, ReplaceError> {
    let ident = table.identifier();
    let metadata = table.metadata();
    let file_io = table.file_io();
    let current = metadata.current_snapshot().ok_or_else(|| {
        ReplaceError::Other(MaintenanceError::table_msg(
            ident,
            "the table has no snapshot to rewrite",
        ))
    })?;
    let other = |message: String| ReplaceError::Other(MaintenanceError::table_msg(ident, message));
    if metadata.format_version() != iceberg::spec::FormatVersion::V2 {
        return Err(other(format!(
            "REPLACE commits support format version 2 tables only (this one is {})",
            metadata.format_version()
        )));
    }
    let snapshot_id = rand_snapshot_id();
    let sequence_number = metadata.last_sequence_number() + 1;
    let schema = metadata.current_schema().clone();
    let spec = metadata.default_partition_spec().as_ref().clone();
    let location = metadata.location().trim_end_matches('/').to_string();
    let commit_uuid = uuid::Uuid::new_v4();

    // Carry over every manifest; rewrite those holding a removed file.
    let list = table
        .manifest_list_reader(current)
        .load()
        .await
        .map_err(tbl(ident, "cannot read the manifest list"))?;
    let e = tbl(ident, "cannot write the REPLACE snapshot's manifests");
    let mut manifests = Vec::new();
    let mut found = BTreeSet::new();
    let (mut removed_records, mut removed_size) = (0u64, 0u64);
    for (i, mf) in list.entries().iter().enumerate() {
        if mf.content == ManifestContentType::Deletes
            && mf.sequence_number > starting_sequence_number
        {
            // Deletes committed after planning may apply to the files being removed: their
            // rows would come back in the rewritten files.
            return Err(ReplaceError::Conflict {
                table: ident.to_string(),
                file: mf.manifest_path.clone(),
            });
        }
        let manifest = mf
            .load_manifest(file_io)
            .await
            .map_err(tbl(ident, "cannot read a manifest"))?;
        let touches = mf.content == ManifestContentType::Data
            && manifest.entries().iter().any(|en| {
                en.status() != ManifestStatus::Deleted && removed.contains(en.file_path())
            });
        if !touches {
            manifests.push(mf.clone());
            continue;
        }
        if mf.partition_spec_id != spec.spec_id() {
            return Err(other(format!(
                "a rewritten file belongs to partition spec {} (the table's is {}): rewriting files of an older spec is not supported",
                mf.partition_spec_id,
                spec.spec_id()
            )));
        }
        let path = format!("{location}/metadata/{commit_uuid}-m{i}.avro");
        let output = file_io.new_output(&path).map_err(&e)?;
        let mut w =
            ManifestWriterBuilder::new(output, Some(snapshot_id), schema.clone(), spec.clone())
                .build_v2_data();
        for en in manifest.entries() {
            if en.status() == ManifestStatus::Deleted {
                continue;
            }
            let seq = en.sequence_number().unwrap_or(0);
            let file_seq = en.file_sequence_number;
            if removed.contains(en.file_path()) {
                found.insert(en.file_path().to_string());
                removed_records += en.data_file().record_count();
                removed_size += en.data_file().file_size_in_bytes();
                w.add_delete_file(en.data_file().clone(), seq, file_seq)
                    .map_err(&e)?;
            } else {
                let sid = en.snapshot_id().unwrap_or(current.snapshot_id());
                w.add_existing_file(en.data_file().clone(), sid, seq, file_seq)
                    .map_err(&e)?;
            }
        }
        manifests.push(w.write_manifest_file().await.map_err(&e)?);
    }
    if let Some(gone) = removed.iter().find(|f| !found.contains(*f)) {
        return Err(ReplaceError::Conflict {
            table: ident.to_string(),
            file: gone.clone(),
        });
    }
    // The added files, with the starting sequence number.
    let (added_count, added_records, added_size) = (
        added.len(),
        added.iter().map(|f| f.record_count()).sum::<u64>(),
        added.iter().map(|f| f.file_size_in_bytes()).sum::<u64>(),
    );
    if !added.is_empty() {
        let path = format!("{location}/metadata/{commit_uuid}-m-added.avro");
        let output = file_io.new_output(&path).map_err(&e)?;
        let mut w =
            ManifestWriterBuilder::new(output, Some(snapshot_id), schema.clone(), spec.clone())
                .build_v2_data();
        for f in added {
            w.add_file(f, starting_sequence_number).map_err(&e)?;
        }
        manifests.push(w.write_manifest_file().await.map_err(&e)?);
    }
    let list_path = format!("{location}/metadata/snap-{snapshot_id}-1-{commit_uuid}.avro");
    let e = tbl(ident, "cannot write the manifest list");
    let out = file_io.new_output(&list_path).map_err(&e)?;
    let mut lw = ManifestListWriter::v2(
        out.writer().await.map_err(&e)?,
        snapshot_id,
        Some(current.snapshot_id()),
        sequence_number,
    );
    lw.add_manifests(manifests.into_iter()).map_err(&e)?;
    lw.close().await.map_err(&e)?;

    let summary = Summary {
        operation: Operation::Replace,
        additional_properties: HashMap::from([
            ("added-data-files".to_string(), added_count.to_string()),
            ("deleted-data-files".to_string(), removed.len().to_string()),
            ("added-records".to_string(), added_records.to_string()),
            ("deleted-records".to_string(), removed_records.to_string()),
            ("added-files-size".to_string(), added_size.to_string()),
            ("removed-files-size".to_string(), removed_size.to_string()),
        ])
        .into_iter()
        .chain(carried_markers(current))
        .collect(),
    };
    let snapshot = Snapshot::builder()
        .with_snapshot_id(snapshot_id)
        .with_parent_snapshot_id(Some(current.snapshot_id()))
        .with_sequence_number(sequence_number)
        .with_timestamp_ms(chrono_now_ms())
        .with_manifest_list(list_path)
        .with_summary(summary)
        .with_schema_id(metadata.current_schema_id())
        .build();
    let swapped = commit_snapshot(config, table, snapshot).await?;
    Ok(swapped.then_some(snapshot_id))
}

/// Commits `snapshot` (whose parent is `table`'s current snapshot) as the new head of `main`:
/// `Ok(false)` when the table changed since `table` was loaded (a lost race: reload and retry).
/// SQL catalogs: a new metadata file, then the compare-and-swap of the catalog row; REST: the
/// snapshot as updates with requirements (table uuid, `main` at the parent).
pub(crate) async fn commit_snapshot(
    config: &CatalogConfig,
    table: &Table,
    snapshot: Snapshot,
) -> std::result::Result<bool, ReplaceError> {
    let ident = table.identifier();
    let e = tbl(ident, "cannot build the new table metadata");
    let metadata = table.metadata();
    let reference = SnapshotReference::new(
        snapshot.snapshot_id(),
        SnapshotRetention::Branch {
            min_snapshots_to_keep: None,
            max_snapshot_age_ms: None,
            max_ref_age_ms: None,
        },
    );
    if let CatalogKind::Rest { uri } = &config.kind {
        // The server applies the updates if the table is still the one planned on.
        let requirements = vec![
            TableRequirement::UuidMatch {
                uuid: metadata.uuid(),
            },
            TableRequirement::RefSnapshotIdMatch {
                r#ref: MAIN_BRANCH.to_string(),
                snapshot_id: metadata.current_snapshot_id(),
            },
        ];
        let updates = vec![
            TableUpdate::AddSnapshot { snapshot },
            TableUpdate::SetSnapshotRef {
                ref_name: MAIN_BRANCH.to_string(),
                reference,
            },
        ];
        return rest_commit(config, uri, ident, requirements, updates).await;
    }
    let old_location = table.metadata_location_result().map_err(&e)?.to_string();
    let new_metadata = metadata
        .clone()
        .into_builder(Some(old_location.clone()))
        .add_snapshot(snapshot)
        .map_err(&e)?
        .set_ref(MAIN_BRANCH, reference)
        .map_err(&e)?
        .build()
        .map_err(&e)?
        .metadata;
    let old: MetadataLocation = old_location.parse().map_err(&e)?;
    // A new file (next version, new uuid): the current metadata file is never touched, so
    // readers never see a half-written file and a lost race leaves the table as it was.
    let new_location = old.with_next_version().with_new_metadata(&new_metadata);
    new_metadata
        .write_to(table.file_io(), &new_location)
        .await
        .map_err(tbl(ident, "cannot write the new metadata file"))?;
    compare_and_swap(config, ident, &old_location, &new_location.to_string()).await
}

/// The sink's markers (`weir.job-id`, `weir.checkpoint-id`) of `parent`, carried onto a
/// REPLACE snapshot so that expiring the append that had them never makes a restored sink
/// commit its last checkpoint again.
pub(crate) fn carried_markers(parent: &Snapshot) -> Vec<(String, String)> {
    [crate::sink::JOB_ID, crate::sink::CHECKPOINT_ID]
        .iter()
        .filter_map(|k| {
            parent
                .summary()
                .additional_properties
                .get(*k)
                .map(|v| (k.to_string(), v.clone()))
        })
        .collect()
}

pub(crate) fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(crate) fn rand_snapshot_id() -> i64 {
    let u = uuid::Uuid::new_v4().as_u128();
    ((u >> 64) as i64 ^ u as i64) & i64::MAX
}

/// The SQL catalog's commit: swaps the table's metadata location if it is still `old`.
async fn compare_and_swap(
    config: &CatalogConfig,
    ident: &TableIdent,
    old: &str,
    new: &str,
) -> std::result::Result<bool, ReplaceError> {
    let (uri, q) = match &config.kind {
        CatalogKind::Sqlite { path } => (format!("sqlite://{}", path.display()), ["?"; 6]),
        CatalogKind::Postgres { url } => (url.clone(), ["$1", "$2", "$3", "$4", "$5", "$6"]),
        CatalogKind::Rest { .. } | CatalogKind::Memory => {
            return Err(ReplaceError::Other(MaintenanceError::catalog_msg(
                config.describe(),
                "REPLACE commits need a SQL or REST catalog",
            )))
        }
    };
    let err = |message: &str, e: sqlx::Error| {
        ReplaceError::Other(MaintenanceError::catalog(config.describe(), message, e))
    };
    sqlx::any::install_default_drivers();
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .connect(&uri)
        .await
        .map_err(|e| err("cannot connect to the catalog database", e))?;
    let sql = format!(
        "UPDATE iceberg_tables SET metadata_location = {}, previous_metadata_location = {} \
         WHERE catalog_name = {} AND table_namespace = {} AND table_name = {} AND metadata_location = {}",
        q[0], q[1], q[2], q[3], q[4], q[5]
    );
    let namespace = ident.namespace().join(".");
    let done = sqlx::query(&sql)
        .bind(new)
        .bind(old)
        .bind(&config.name)
        .bind(namespace)
        .bind(ident.name())
        .bind(old)
        .execute(&pool)
        .await
        .map_err(|e| {
            err(
                &format!("cannot swap the metadata location of '{ident}'"),
                e,
            )
        })?;
    pool.close().await;
    Ok(done.rows_affected() == 1)
}

/// The REST catalog's commit (`POST /v1/namespaces/{ns}/tables/{table}`): `Ok(false)` when the
/// server refused a requirement (HTTP 409: the table changed since it was loaded).
async fn rest_commit(
    config: &CatalogConfig,
    uri: &str,
    ident: &TableIdent,
    requirements: Vec<TableRequirement>,
    updates: Vec<TableUpdate>,
) -> std::result::Result<bool, ReplaceError> {
    let err = |message: String| {
        ReplaceError::Other(MaintenanceError::catalog_msg(config.describe(), message))
    };
    let caused = |message: &str, e: Box<dyn std::error::Error + Send + Sync>| {
        ReplaceError::Other(MaintenanceError::catalog(config.describe(), message, e))
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| caused("cannot build the REST client", e.into()))?;
    let base = reqwest::Url::parse(uri).map_err(|e| caused("bad REST catalog URL", e.into()))?;
    let url_of = |segments: &[&str]| {
        let mut url = base.clone();
        url.path_segments_mut()
            .map_err(|_| err("bad REST catalog URL: it cannot be a base".into()))?
            .pop_if_empty()
            .extend(segments);
        Ok::<_, ReplaceError>(url)
    };
    // The server's path prefix (`/v1/{prefix}/namespaces/...`), as the catalog client uses it.
    let config: serde_json::Value = client
        .get(url_of(&["v1", "config"])?)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| caused("cannot get the REST catalog's config", e.into()))?
        .json()
        .await
        .map_err(|e| caused("cannot read the REST catalog's config", e.into()))?;
    let prefix = ["overrides", "defaults"]
        .iter()
        .find_map(|k| config[k]["prefix"].as_str())
        .map(str::to_string);
    let namespace = ident.namespace().join("\u{1f}");
    let mut segments = vec!["v1"];
    if let Some(p) = &prefix {
        segments.extend(p.split('/').filter(|s| !s.is_empty()));
    }
    segments.extend(["namespaces", namespace.as_str(), "tables", ident.name()]);
    let url = url_of(&segments)?;
    let body = serde_json::json!({
        "identifier": {"namespace": ident.namespace().as_ref(), "name": ident.name()},
        "requirements": requirements,
        "updates": updates,
    });
    let response = client.post(url).json(&body).send().await.map_err(|e| {
        caused(
            &format!("cannot send the REST commit of '{ident}'"),
            e.into(),
        )
    })?;
    let status = response.status();
    if status == reqwest::StatusCode::CONFLICT {
        return Ok(false);
    }
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        return Err(err(format!(
            "REST commit of '{ident}': HTTP {status}: {text}"
        )));
    }
    Ok(true)
}

/// The data files of the current snapshot, with the snapshot's sequence number (what a rewrite
/// plans on).
///
/// # Errors
///
/// Returns [`MaintenanceError::Table`] when the manifest list or a data manifest of the
/// current snapshot cannot be read.
pub async fn live_data_files(table: &Table) -> Result<(i64, Vec<DataFile>)> {
    let err = |e: iceberg::Error| {
        MaintenanceError::table(table.identifier(), "cannot read its manifests", e)
    };
    let Some(current) = table.metadata().current_snapshot() else {
        return Ok((0, Vec::new()));
    };
    let list = table
        .manifest_list_reader(current)
        .load()
        .await
        .map_err(err)?;
    let mut files = Vec::new();
    for mf in list.entries() {
        if mf.content != ManifestContentType::Data {
            continue;
        }
        let manifest = mf.load_manifest(table.file_io()).await.map_err(err)?;
        for en in manifest.entries() {
            if en.status() != ManifestStatus::Deleted {
                files.push(en.data_file().clone());
            }
        }
    }
    Ok((current.sequence_number(), files))
}
