//! Expiring snapshots and deleting exactly the files they leave unreachable.
//!
//! iceberg-rust's `expire_snapshots` action only changes metadata. This module wraps it: it
//! computes the files reachable from the table before and after the expiry — every manifest
//! list, every manifest, and every data or delete file some snapshot still has live (added or
//! existing) — and deletes those reachable before and not after. Invariants: a file a retained
//! snapshot reads is never deleted; files outside the table's location are never deleted (a
//! table may reference files another table owns); deletion happens only after the new metadata
//! is committed, so a failed commit deletes nothing.

use std::collections::BTreeSet;

use iceberg::spec::ManifestStatus;
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::{Catalog, TableIdent};

use crate::error::{MaintenanceError, Result};

/// What an expiry did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExpireReport {
    /// Ids of the snapshots expired.
    pub expired_snapshots: Vec<i64>,
    /// Files deleted (manifest lists, manifests, data and delete files).
    pub deleted_files: Vec<String>,
}

/// Which snapshots to expire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpireSettings {
    /// Expire snapshots older than this (ms since the epoch).
    pub older_than_ms: i64,
    /// Keep at least this many of the newest snapshots (at least 1).
    pub retain_last: usize,
}

/// Every file the table's snapshots reach: manifest lists, manifests, live data/delete files.
///
/// # Errors
///
/// Returns [`MaintenanceError::Table`] when a manifest list or manifest cannot be read.
pub async fn reachable_files(table: &Table) -> Result<BTreeSet<String>> {
    let err = |e: iceberg::Error| {
        MaintenanceError::table(table.identifier(), "cannot read its manifests", e)
    };
    let mut files = BTreeSet::new();
    let mut manifests_seen = BTreeSet::new();
    for snapshot in table.metadata().snapshots() {
        files.insert(snapshot.manifest_list().to_string());
        let list = table
            .manifest_list_reader(snapshot)
            .load()
            .await
            .map_err(err)?;
        for manifest_file in list.entries() {
            files.insert(manifest_file.manifest_path.clone());
            // Manifests are shared between snapshots: read each once.
            if !manifests_seen.insert(manifest_file.manifest_path.clone()) {
                continue;
            }
            let manifest = manifest_file
                .load_manifest(table.file_io())
                .await
                .map_err(err)?;
            for entry in manifest.entries() {
                if entry.status() != ManifestStatus::Deleted {
                    files.insert(entry.file_path().to_string());
                }
            }
        }
    }
    Ok(files)
}

/// Expires snapshots of `ident` as `settings` say, then deletes the files that became
/// unreachable.
///
/// # Errors
///
/// Returns what [`expire_metadata`] returns (then nothing is deleted), and
/// [`MaintenanceError::Io`] naming the first file that cannot be deleted (the expiry is
/// committed by then; the files after it stay).
pub async fn expire_snapshots(
    catalog: &dyn Catalog,
    ident: &TableIdent,
    settings: ExpireSettings,
) -> Result<ExpireReport> {
    let (expired_snapshots, unreachable, table) = expire_metadata(catalog, ident, settings).await?;
    let mut deleted = Vec::new();
    for path in unreachable {
        delete_file(&table, &path).await?;
        deleted.push(path);
    }
    Ok(ExpireReport {
        expired_snapshots,
        deleted_files: deleted,
    })
}

/// The metadata half of an expiry: commits the expiry and returns the expired snapshot ids,
/// the files it left unreachable (inside the table location: a file outside it is never
/// returned) and the table after the commit. Deleting the files is up to the caller (in
/// parallel batches, say); nothing reaches them any more.
///
/// # Errors
///
/// Returns [`MaintenanceError::Table`] when the table cannot be loaded, its manifests cannot
/// be read (before or after the expiry), or the expiry cannot be committed.
pub async fn expire_metadata(
    catalog: &dyn Catalog,
    ident: &TableIdent,
    settings: ExpireSettings,
) -> Result<(Vec<i64>, Vec<String>, Table)> {
    let before = catalog
        .load_table(ident)
        .await
        .map_err(|e| MaintenanceError::table(ident, "cannot load the table", e))?;
    let reachable_before = reachable_files(&before).await?;
    let ids_before: BTreeSet<i64> = before
        .metadata()
        .snapshots()
        .map(|s| s.snapshot_id())
        .collect();
    let tx = Transaction::new(&before);
    let tx = tx
        .expire_snapshots()
        .expire_older_than_ms(settings.older_than_ms)
        .retain_last(settings.retain_last.max(1))
        .apply(tx)
        .map_err(|e| MaintenanceError::table(ident, "cannot expire snapshots", e))?;
    let after = tx
        .commit(catalog)
        .await
        .map_err(|e| MaintenanceError::table(ident, "cannot commit the snapshot expiry", e))?;
    let ids_after: BTreeSet<i64> = after
        .metadata()
        .snapshots()
        .map(|s| s.snapshot_id())
        .collect();
    let reachable_after = reachable_files(&after).await?;
    let location = after
        .metadata()
        .location()
        .trim_end_matches('/')
        .to_string();
    let mut unreachable = Vec::new();
    for path in reachable_before.difference(&reachable_after) {
        if !path.starts_with(&format!("{location}/")) {
            tracing::warn!(%path, "not deleting a file outside the table location {location}");
            continue;
        }
        unreachable.push(path.clone());
    }
    Ok((
        ids_before.difference(&ids_after).copied().collect(),
        unreachable,
        after,
    ))
}

/// Deletes one file of `table` (an error names it).
///
/// # Errors
///
/// Returns [`MaintenanceError::Io`] naming `path` when the file cannot be deleted.
pub async fn delete_file(table: &Table, path: &str) -> Result<()> {
    table
        .file_io()
        .delete(path)
        .await
        .map_err(|e| MaintenanceError::io(path, "cannot delete an expired file", e))
}
