//! DeleteOrphanFiles (Iceberg/Spark `remove_orphan_files` semantics): deleting the files under a
//! table's location that nothing references any more — files of failed or lost commits,
//! rewrites whose commit conflicted, expired metadata nobody cleaned up.
//!
//! A listed file is an **orphan** iff it is not referenced and was last modified before
//! `now − min_age`. The referenced set is every file some snapshot reaches
//! ([`reachable_files`]: manifest lists, manifests, live data and delete files) plus the current
//! metadata file, every file of the metadata log, the statistics and partition statistics files
//! the metadata lists, and `metadata/version-hint.text`.
//!
//! Invariants:
//! - **Only below the table location**: the listed location must be the table location or a
//!   directory below it (otherwise an error naming both), and a listed file that is not below
//!   the table location is never deleted.
//! - **When in doubt, keep**: locations are compared after normalisation — equal schemes
//!   (`file:` and no scheme; `s3a`, `s3n` → `s3`), `file:/p`, `file:///p`, `file://localhost/p`
//!   and `/p` are the same file, repeated slashes and `.` segments are dropped. Every plausible
//!   reading of a referenced location counts as referenced (also its percent-decoded form, and
//!   iceberg-rust's reading of `file://x/p` as `/x/p`). A referenced location that cannot be
//!   normalised (relative, with `..`) keeps every listed file with the same file name. A listed
//!   file that cannot be normalised is kept.
//! - **Prefix mismatch is an error** (Iceberg's default mode `ERROR`): a listed file whose path
//!   is referenced only under another scheme or authority makes the whole run fail before
//!   anything is deleted.
//! - **Young files are kept**: files of commits in flight are unreferenced for a while; the
//!   minimum age (3 days by default) keeps them. For the same reason a file written after
//!   `table` was loaded is never an orphan as long as `min_age` exceeds the commit duration.
//! - A dry run deletes nothing and reports the same orphans a real run would delete.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use iceberg::table::Table;

use crate::error::{MaintenanceError, Result};
use crate::expire::reachable_files;
use crate::location::LocationLister;

/// How orphans are found and deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrphanSettings {
    /// Only files last modified longer ago than this are orphans (default 3 days): younger
    /// unreferenced files may belong to commits in flight.
    pub min_age: Duration,
    /// Report the orphans without deleting them.
    pub dry_run: bool,
    /// The location to list (`None`: the table location). Must be the table location or below.
    pub location: Option<String>,
    /// Orphans are deleted in batches of this many files (default 1000).
    pub delete_batch_size: usize,
}

impl Default for OrphanSettings {
    fn default() -> Self {
        OrphanSettings {
            min_age: Duration::from_secs(3 * 24 * 3600),
            dry_run: false,
            location: None,
            delete_batch_size: 1000,
        }
    }
}

/// What an orphan run found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrphanReport {
    /// The orphans found, as listed (deleted unless a dry run), sorted.
    pub orphans: Vec<String>,
    /// Orphans deleted (0 in a dry run; fewer than `orphans.len()` when deletions failed, which
    /// is logged).
    pub deleted: usize,
    /// Unreferenced files younger than the minimum age: kept.
    pub too_new: usize,
    /// Total size of the orphans found, in bytes.
    pub bytes: u64,
}

/// Finds the orphans below the table location (or `settings.location`) of `table`, listed with
/// `lister`, as of `now`, and deletes them unless `settings.dry_run`. A file that cannot be
/// deleted is logged and not counted, not an error.
///
/// # Errors
///
/// Returns [`MaintenanceError::Table`] when a location cannot be interpreted, the one to clean
/// is outside the table location, the manifests cannot be read, or listed files are referenced
/// with another scheme or authority (nothing is deleted then); and the `lister`'s error (e.g.
/// [`MaintenanceError::Io`]) when the location cannot be listed.
pub async fn delete_orphan_files(
    table: &Table,
    lister: &dyn LocationLister,
    settings: &OrphanSettings,
    now: SystemTime,
) -> Result<OrphanReport> {
    let ident = table.identifier().to_string();
    let metadata = table.metadata();
    let table_location = metadata.location();
    let table_loc = Loc::parse(table_location).ok_or_else(|| {
        MaintenanceError::table_msg(
            &ident,
            format!("cannot interpret the table location '{table_location}'"),
        )
    })?;
    let (listed_location, list_loc) = match &settings.location {
        None => (table_location.to_string(), table_loc.clone()),
        Some(location) => {
            let loc = Loc::parse(location).ok_or_else(|| {
                MaintenanceError::table_msg(
                    &ident,
                    format!("cannot interpret the location '{location}' to clean"),
                )
            })?;
            if !loc.is_within(&table_loc) {
                return Err(MaintenanceError::table_msg(
                    &ident,
                    format!(
                        "the location '{location}' to clean is not the table location '{table_location}' nor below it"
                    ),
                ));
            }
            (location.clone(), loc)
        }
    };
    // The lister gets the canonical form of local locations (`file:/p` is not one it knows).
    let listed_location = if list_loc.scheme == "file" {
        format!("file://{}", list_loc.path)
    } else {
        listed_location.trim_end_matches('/').to_string()
    };

    let referenced = Referenced::of(table).await?;
    let listed = lister.list(&listed_location)?;
    let cutoff = now.checked_sub(settings.min_age);

    let mut report = OrphanReport::default();
    let mut conflicts = Vec::new();
    for file in listed {
        let Some(loc) = Loc::parse(&file.location) else {
            tracing::warn!(table = %ident, file = %file.location, "keeping a listed file whose location cannot be interpreted");
            continue;
        };
        if !loc.is_within(&table_loc) {
            tracing::warn!(table = %ident, file = %file.location, "not deleting a file outside the table location {table_location}");
            continue;
        }
        if referenced.locations.contains(&loc) {
            continue;
        }
        if let Some(other) = referenced.paths.get(&loc.path) {
            conflicts.push(format!("listed '{}', referenced '{other}'", file.location));
            continue;
        }
        if loc
            .file_name()
            .is_some_and(|n| referenced.doubtful_names.contains(n))
        {
            tracing::info!(table = %ident, file = %file.location, "keeping a file an uninterpretable reference may mean");
            continue;
        }
        match cutoff {
            Some(cutoff) if file.modified < cutoff => {
                report.bytes += file.size;
                report.orphans.push(file.location);
            }
            _ => report.too_new += 1,
        }
    }
    if let Some(first) = conflicts.first() {
        return Err(MaintenanceError::table_msg(
            ident,
            format!(
                "cannot tell whether {} files are orphans: their paths are referenced with another scheme or authority (e.g. {first}); nothing deleted",
                conflicts.len()
            ),
        ));
    }
    report.orphans.sort();
    if settings.dry_run {
        return Ok(report);
    }
    let file_io = table.file_io();
    for batch in report.orphans.chunks(settings.delete_batch_size.max(1)) {
        let results = futures::future::join_all(batch.iter().map(|p| file_io.delete(p))).await;
        for (path, result) in batch.iter().zip(results) {
            match result {
                Ok(()) => report.deleted += 1,
                Err(e) => {
                    tracing::warn!(table = %ident, file = %path, "cannot delete an orphan file: {e}")
                }
            }
        }
    }
    tracing::info!(table = %ident, orphans = report.orphans.len(), deleted = report.deleted, too_new = report.too_new, bytes = report.bytes, "orphan files removed");
    Ok(report)
}

/// The files a table references, normalised.
struct Referenced {
    /// Every plausible reading of every referenced location.
    locations: HashSet<Loc>,
    /// Referenced paths (whatever their scheme and authority), for prefix-mismatch detection:
    /// path → one referenced location with it.
    paths: HashMap<String, String>,
    /// File names of the referenced locations that could not be interpreted.
    doubtful_names: HashSet<String>,
}

impl Referenced {
    async fn of(table: &Table) -> Result<Referenced> {
        let metadata = table.metadata();
        let mut all: Vec<String> = reachable_files(table).await?.into_iter().collect();
        if let Some(current) = table.metadata_location() {
            all.push(current.to_string());
        }
        all.extend(
            metadata
                .metadata_log()
                .iter()
                .map(|m| m.metadata_file.clone()),
        );
        all.extend(
            metadata
                .statistics_iter()
                .map(|s| s.statistics_path.clone()),
        );
        all.extend(
            metadata
                .partition_statistics_iter()
                .map(|s| s.statistics_path.clone()),
        );
        all.push(format!(
            "{}/metadata/version-hint.text",
            metadata.location().trim_end_matches('/')
        ));
        let mut referenced = Referenced {
            locations: HashSet::new(),
            paths: HashMap::new(),
            doubtful_names: HashSet::new(),
        };
        for location in all {
            let readings = Loc::readings(&location);
            if readings.is_empty() {
                let name = location
                    .rsplit('/')
                    .find(|s| !s.is_empty())
                    .unwrap_or_default();
                tracing::warn!(table = %table.identifier(), %location, "a referenced location cannot be interpreted: files named '{name}' are kept");
                if !name.is_empty() {
                    referenced.doubtful_names.insert(name.to_string());
                }
                continue;
            }
            for loc in readings {
                referenced
                    .paths
                    .entry(loc.path.clone())
                    .or_insert_with(|| location.clone());
                referenced.locations.insert(loc);
            }
        }
        Ok(referenced)
    }
}

/// A normalised location: scheme (after equal schemes), authority, absolute path without
/// repeated slashes or `.` segments.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Loc {
    scheme: String,
    authority: String,
    path: String,
}

impl Loc {
    /// The one canonical reading of `location`, if it has one.
    fn parse(location: &str) -> Option<Loc> {
        let (scheme, rest) = split_scheme(location);
        let scheme = match scheme.as_deref() {
            None | Some("file") => "file".to_string(),
            Some("s3a") | Some("s3n") => "s3".to_string(),
            Some(s) => s.to_string(),
        };
        let (authority, path) = match rest.strip_prefix("//") {
            Some(after) => match after.find('/') {
                Some(i) => (&after[..i], &after[i..]),
                None => (after, "/"),
            },
            None => ("", rest),
        };
        let authority = if scheme == "file" && authority.eq_ignore_ascii_case("localhost") {
            ""
        } else {
            authority
        };
        Some(Loc {
            scheme,
            authority: authority.to_string(),
            path: normalise_path(path)?,
        })
    }

    /// Every plausible reading of a referenced location: the canonical one, its percent-decoded
    /// form, and iceberg-rust's reading of `file://x/p` as the local `/x/p`.
    fn readings(location: &str) -> Vec<Loc> {
        let mut out = Vec::new();
        let mut add = |loc: Option<Loc>| {
            if let Some(loc) = loc {
                if !out.contains(&loc) {
                    out.push(loc);
                }
            }
        };
        add(Loc::parse(location));
        if location.contains('%') {
            if let Some(decoded) = percent_decode(location) {
                add(Loc::parse(&decoded));
            }
        }
        if let Some(loc) = Loc::parse(location) {
            if loc.scheme == "file" && !loc.authority.is_empty() {
                add(
                    normalise_path(&format!("/{}{}", loc.authority, loc.path)).map(|path| Loc {
                        scheme: "file".into(),
                        authority: String::new(),
                        path,
                    }),
                );
            }
        }
        out
    }

    /// Whether this location is `root` or below it.
    fn is_within(&self, root: &Loc) -> bool {
        self.scheme == root.scheme
            && self.authority == root.authority
            && (self.path == root.path
                || root.path == "/"
                || self
                    .path
                    .strip_prefix(root.path.as_str())
                    .is_some_and(|rest| rest.starts_with('/')))
    }

    fn file_name(&self) -> Option<&str> {
        self.path.rsplit('/').next().filter(|n| !n.is_empty())
    }
}

/// `scheme:rest` → (lowercase scheme, rest); no scheme (a plain path, or a one-letter "scheme"
/// that is a drive letter) → (None, location).
fn split_scheme(location: &str) -> (Option<String>, &str) {
    if let Some(i) = location.find(':') {
        let scheme = &location[..i];
        let valid = scheme.len() > 1
            && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if valid {
            return (Some(scheme.to_ascii_lowercase()), &location[i + 1..]);
        }
    }
    (None, location)
}

/// An absolute path without repeated slashes, `.` segments or a trailing slash; `None` for a
/// relative path or one with `..` (which file it means is not certain).
fn normalise_path(path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return None;
    }
    let mut out = String::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => return None,
            s => {
                out.push('/');
                out.push_str(s);
            }
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    Some(out)
}

/// Decodes `%XX` escapes; `None` if an escape is malformed or the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}
