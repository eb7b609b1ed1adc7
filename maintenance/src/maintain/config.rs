//! The `weir maintain` configuration file (TOML): the catalog, checkpoints, and per table its
//! tasks, their trigger conditions and the lock.
//!
//! Invariants: an unknown key anywhere is an error naming it (and its line); sizes are
//! integers (bytes) or strings with a unit (`"128 MB"`, `"64KiB"`); durations are humantime
//! strings (`"90s"`, `"3d"`); a table section without any task is an error; defaults are
//! Iceberg's (Flink TableMaintenance and table properties), listed in `examples/maintenance.toml`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use iceberg::TableIdent;
use serde::Deserialize;

use super::lock::LockConfig;
use super::tasks::{ExpireTaskSettings, RewriteSettings, TaskKind};
use super::trigger::TriggerConditions;
use super::TableMaintenance;
use crate::catalog::{CatalogConfig, CatalogKind};
use crate::error::{MaintenanceError, Result};
use crate::manifests::ManifestSettings;
use crate::orphans::OrphanSettings;

/// A parsed `maintenance.toml`.
#[derive(Debug, Clone)]
pub struct MaintainConfig {
    /// The catalog of every table.
    pub catalog: CatalogConfig,
    /// Where checkpoints go.
    pub checkpoint_dir: PathBuf,
    /// How often checkpoints are taken.
    pub checkpoint_interval: Duration,
    /// One maintenance topology per table.
    pub tables: Vec<TableMaintenance>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    catalog: CatalogSection,
    #[serde(default)]
    checkpoints: CheckpointSection,
    #[serde(default, rename = "table")]
    tables: Vec<TableSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogSection {
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    path: Option<PathBuf>,
    url: Option<String>,
    uri: Option<String>,
    warehouse: PathBuf,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointSection {
    dir: Option<PathBuf>,
    interval: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TableSection {
    name: String,
    rate_limit: Option<String>,
    lock_check_delay: Option<String>,
    max_read_back: Option<usize>,
    parallelism: Option<usize>,
    lock: Option<LockSection>,
    rewrite_data_files: Option<RewriteSection>,
    expire_snapshots: Option<ExpireSection>,
    delete_orphan_files: Option<OrphanSection>,
    rewrite_manifests: Option<ManifestSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LockSection {
    #[serde(rename = "type")]
    kind: String,
    url: Option<String>,
    lease: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerSection {
    commit_count: Option<u64>,
    data_file_count: Option<u64>,
    data_file_size: Option<Size>,
    pos_delete_file_count: Option<u64>,
    pos_delete_record_count: Option<u64>,
    eq_delete_file_count: Option<u64>,
    eq_delete_record_count: Option<u64>,
    interval: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RewriteSection {
    target_file_size: Option<Size>,
    min_file_size_ratio: Option<f64>,
    max_file_size_ratio: Option<f64>,
    min_input_files: Option<usize>,
    max_file_group_size: Option<Size>,
    max_rewrite_bytes: Option<Size>,
    partial_progress: Option<bool>,
    max_commits: Option<usize>,
    rewrite_all: Option<bool>,
    delete_file_threshold: Option<usize>,
    filter: Option<String>,
    trigger: Option<TriggerSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpireSection {
    max_snapshot_age: Option<String>,
    retain_last: Option<usize>,
    delete_batch_size: Option<usize>,
    trigger: Option<TriggerSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OrphanSection {
    min_age: Option<String>,
    allow_short_min_age: Option<bool>,
    dry_run: Option<bool>,
    delete_batch_size: Option<usize>,
    trigger: Option<TriggerSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestSection {
    target_manifest_size: Option<Size>,
    min_manifests: Option<usize>,
    trigger: Option<TriggerSection>,
}

/// A size: bytes, or a string with a unit.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Size {
    Bytes(u64),
    Text(String),
}

fn bad(message: String) -> MaintenanceError {
    MaintenanceError::Config(message)
}

impl Size {
    fn bytes(&self, key: &str) -> Result<u64> {
        match self {
            Size::Bytes(b) => Ok(*b),
            Size::Text(t) => parse_size(t).ok_or_else(|| {
                bad(format!(
                    "{key}: '{t}' is not a size (e.g. 134217728, \"128 MB\", \"64KiB\")"
                ))
            }),
        }
    }
}

/// A filter: clauses `column op value` joined by `and`; op one of `= != < <= > >=`; value a
/// quoted string, an integer (long) or a decimal number (double).
///
/// # Errors
///
/// Returns a message naming the clause or value when `text` is empty, a clause has no
/// comparison or no column or value, or a value is neither a quoted string nor a number.
pub fn parse_filter(text: &str) -> std::result::Result<iceberg::expr::Predicate, String> {
    use iceberg::expr::Reference;
    use iceberg::spec::Datum;
    let mut out: Option<iceberg::expr::Predicate> = None;
    let lower = text.to_ascii_lowercase();
    let mut clauses = Vec::new();
    let mut start = 0;
    while let Some(i) = lower[start..].find(" and ") {
        clauses.push(&text[start..start + i]);
        start += i + 5;
    }
    clauses.push(&text[start..]);
    for clause in clauses {
        let clause = clause.trim();
        let ops = ["<=", ">=", "!=", "=", "<", ">"];
        let (at, op) = ops
            .iter()
            .filter_map(|op| clause.find(op).map(|i| (i, *op)))
            .min_by_key(|(i, op)| (*i, std::cmp::Reverse(op.len())))
            .ok_or_else(|| format!("'{clause}' has no comparison (= != < <= > >=)"))?;
        let column = clause[..at].trim();
        let value = clause[at + op.len()..].trim();
        if column.is_empty() || value.is_empty() {
            return Err(format!("'{clause}' is not `column op value`"));
        }
        let datum = if (value.starts_with('\'') && value.ends_with('\'') && value.len() >= 2)
            || (value.starts_with('"') && value.ends_with('"') && value.len() >= 2)
        {
            Datum::string(&value[1..value.len() - 1])
        } else if let Ok(n) = value.parse::<i64>() {
            Datum::long(n)
        } else if let Ok(x) = value.parse::<f64>() {
            Datum::double(x)
        } else {
            return Err(format!("'{value}' is not a quoted string or a number"));
        };
        let r = Reference::new(column);
        let p = match op {
            "=" => r.equal_to(datum),
            "!=" => r.not_equal_to(datum),
            "<" => r.less_than(datum),
            "<=" => r.less_than_or_equal_to(datum),
            ">" => r.greater_than(datum),
            _ => r.greater_than_or_equal_to(datum),
        };
        out = Some(match out {
            Some(prev) => prev.and(p),
            None => p,
        });
    }
    out.ok_or_else(|| "empty filter".to_string())
}

/// `"128 MB"`, `"64KiB"`, `"1g"`, `"4096"` → bytes (KB/MB/GB are powers of 1024, as in Flink).
pub fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim().replace('_', "").to_ascii_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "b" | "bytes" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn duration(key: &str, s: &Option<String>, default: Duration) -> Result<Duration> {
    match s {
        None => Ok(default),
        Some(t) => humantime::parse_duration(t).map_err(|e| {
            bad(format!(
                "{key}: '{t}' is not a duration (e.g. \"90s\", \"3d\"): {e}"
            ))
        }),
    }
}

/// The task's trigger: its defaults, with the keys given overriding them (0 turns a condition
/// off).
fn conditions(
    key: &str,
    t: Option<TriggerSection>,
    default: TriggerConditions,
) -> Result<TriggerConditions> {
    let Some(t) = t else {
        return Ok(default);
    };
    let count = |given: Option<u64>, d: Option<u64>| match given {
        Some(0) => None,
        Some(n) => Some(n),
        None => d,
    };
    let size = match &t.data_file_size {
        Some(s) => Some(s.bytes(&format!("{key}.trigger.data_file_size"))?),
        None => None,
    };
    let interval = match &t.interval {
        Some(i) => {
            let d = duration(
                &format!("{key}.trigger.interval"),
                &Some(i.clone()),
                Duration::ZERO,
            )?;
            (!d.is_zero()).then_some(d)
        }
        None => default.interval,
    };
    Ok(TriggerConditions {
        commit_count: count(t.commit_count, default.commit_count),
        data_file_count: count(t.data_file_count, default.data_file_count),
        data_file_size: count(size, default.data_file_size),
        pos_delete_file_count: count(t.pos_delete_file_count, default.pos_delete_file_count),
        pos_delete_record_count: count(t.pos_delete_record_count, default.pos_delete_record_count),
        eq_delete_file_count: count(t.eq_delete_file_count, default.eq_delete_file_count),
        eq_delete_record_count: count(t.eq_delete_record_count, default.eq_delete_record_count),
        interval,
    })
}

fn absolute(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

impl MaintainConfig {
    /// Reads and checks `path` (relative paths in it are relative to its directory).
    ///
    /// # Errors
    ///
    /// Returns [`MaintenanceError::Io`] when `path` cannot be read, and the
    /// [`MaintenanceError::Config`] errors of [`parse`](MaintainConfig::parse) with `path`
    /// prefixed to their message.
    pub fn load(path: &Path) -> Result<MaintainConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            MaintenanceError::io(path.display(), "cannot read the configuration", e)
        })?;
        let base = path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            })
            .unwrap_or(Path::new("."));
        let base = std::fs::canonicalize(base).unwrap_or_else(|_| base.to_path_buf());
        Self::parse(&text, &base).map_err(|e| match e {
            MaintenanceError::Config(m) => {
                MaintenanceError::Config(format!("{}: {m}", path.display()))
            }
            other => other,
        })
    }

    /// Parses a configuration's text; relative paths are relative to `base`.
    ///
    /// # Errors
    ///
    /// Returns [`MaintenanceError::Config`] naming the key when the text is not valid TOML or
    /// has an unknown key, a value is missing, malformed (a size, a duration, a table name, a
    /// filter) or out of range, or there is no table or no task to run.
    pub fn parse(text: &str, base: &Path) -> Result<MaintainConfig> {
        let file: File = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        let c = &file.catalog;
        let warehouse = absolute(base, &c.warehouse);
        let kind = match c.kind.as_deref().unwrap_or("sqlite") {
            "sqlite" => CatalogKind::Sqlite {
                path: absolute(
                    base,
                    c.path.as_deref().unwrap_or(&warehouse.join("catalog.db")),
                ),
            },
            "postgres" => CatalogKind::Postgres {
                url: c
                    .url
                    .clone()
                    .ok_or_else(|| bad("catalog: type \"postgres\" needs url".into()))?,
            },
            "rest" => CatalogKind::Rest {
                uri: c
                    .uri
                    .clone()
                    .ok_or_else(|| bad("catalog: type \"rest\" needs uri".into()))?,
            },
            other => {
                return Err(bad(format!(
                    "catalog.type: unknown catalog type '{other}' (sqlite, postgres or rest)"
                )))
            }
        };
        let catalog = CatalogConfig {
            name: c.name.clone().unwrap_or_else(|| "weir".into()),
            kind,
            warehouse,
        };
        let checkpoint_dir = absolute(
            base,
            file.checkpoints
                .dir
                .as_deref()
                .unwrap_or(Path::new("weir-maintain-checkpoints")),
        );
        let checkpoint_interval = duration(
            "checkpoints.interval",
            &file.checkpoints.interval,
            Duration::from_secs(30),
        )?;
        if file.tables.is_empty() {
            return Err(bad("no [[table]] to maintain".into()));
        }
        let mut tables = Vec::new();
        for t in file.tables {
            tables.push(table(&catalog, t, base)?);
        }
        Ok(MaintainConfig {
            catalog,
            checkpoint_dir,
            checkpoint_interval,
            tables,
        })
    }
}

fn table(catalog: &CatalogConfig, t: TableSection, base: &Path) -> Result<TableMaintenance> {
    let key = format!("table '{}'", t.name);
    let ident = TableIdent::from_strs(t.name.split('.'))
        .map_err(|e| bad(format!("{key}: not a table name (namespace.table): {e}")))?;
    let rate_limit = duration(
        &format!("{key}.rate_limit"),
        &t.rate_limit,
        Duration::from_secs(60),
    )?;
    if rate_limit < Duration::from_millis(10) {
        return Err(bad(format!(
            "{key}.rate_limit: at least 10ms (the monitor polls at this rate)"
        )));
    }
    let mut m = TableMaintenance::new(catalog.clone(), ident)
        .rate_limit(rate_limit)
        .lock_check_delay(duration(
            &format!("{key}.lock_check_delay"),
            &t.lock_check_delay,
            Duration::from_secs(30),
        )?)
        .max_read_back(t.max_read_back.unwrap_or(100))
        .parallelism(t.parallelism.unwrap_or(1));
    if let Some(l) = &t.lock {
        m = m.lock(match l.kind.as_str() {
            "in-job" => LockConfig::InJob,
            "sql" => {
                let url = l
                    .url
                    .clone()
                    .ok_or_else(|| bad(format!("{key}.lock: type \"sql\" needs url")))?;
                // A relative SQLite path is relative to the configuration file.
                let url = match url.strip_prefix("sqlite://") {
                    Some(p) if !p.starts_with('/') => {
                        format!("sqlite://{}", base.join(p).display())
                    }
                    _ => url,
                };
                let lease = duration(
                    &format!("{key}.lock.lease"),
                    &l.lease,
                    Duration::from_secs(300),
                )?;
                if lease < Duration::from_secs(1) {
                    return Err(bad(format!("{key}.lock.lease: at least 1s")));
                }
                LockConfig::Sql {
                    url,
                    lease,
                    holder: format!("{}-{}", std::process::id(), uuid::Uuid::new_v4()),
                }
            }
            other => {
                return Err(bad(format!(
                    "{key}.lock.type: unknown lock '{other}' (in-job or sql)"
                )))
            }
        });
    }
    let mut any = false;
    if let Some(r) = t.rewrite_data_files {
        let k = format!("{key}.rewrite_data_files");
        let d = RewriteSettings::default();
        let size = |s: &Option<Size>, name: &str| {
            s.as_ref()
                .map(|s| s.bytes(&format!("{k}.{name}")))
                .transpose()
        };
        let settings = RewriteSettings {
            target_file_size: size(&r.target_file_size, "target_file_size")?,
            min_file_size_ratio: r.min_file_size_ratio.unwrap_or(d.min_file_size_ratio),
            max_file_size_ratio: r.max_file_size_ratio.unwrap_or(d.max_file_size_ratio),
            min_input_files: r.min_input_files.unwrap_or(d.min_input_files),
            max_file_group_size: size(&r.max_file_group_size, "max_file_group_size")?
                .unwrap_or(d.max_file_group_size),
            max_rewrite_bytes: size(&r.max_rewrite_bytes, "max_rewrite_bytes")?,
            partial_progress: r.partial_progress.unwrap_or(d.partial_progress),
            max_commits: r.max_commits.unwrap_or(d.max_commits),
            rewrite_all: r.rewrite_all.unwrap_or(d.rewrite_all),
            delete_file_threshold: r.delete_file_threshold,
            filter: r
                .filter
                .as_deref()
                .map(|f| parse_filter(f).map_err(|m| bad(format!("{k}.filter: '{f}': {m}"))))
                .transpose()?,
        };
        if settings.min_input_files < 1 || settings.max_file_group_size == 0 {
            return Err(bad(format!(
                "{k}: min_input_files must be at least 1 and max_file_group_size positive"
            )));
        }
        if !(0.0..=1.0).contains(&settings.min_file_size_ratio)
            || settings.max_file_size_ratio < 1.0
        {
            return Err(bad(format!(
                "{k}: min_file_size_ratio must be in 0..=1 and max_file_size_ratio ≥ 1"
            )));
        }
        let default = TriggerConditions {
            commit_count: Some(10),
            data_file_count: Some(1000),
            data_file_size: Some(100 << 30),
            interval: Some(Duration::from_secs(600)),
            ..TriggerConditions::default()
        };
        m = m.add(
            TaskKind::RewriteDataFiles(settings),
            conditions(&k, r.trigger, default)?,
        );
        any = true;
    }
    if let Some(e) = t.expire_snapshots {
        let k = format!("{key}.expire_snapshots");
        let settings = ExpireTaskSettings {
            max_snapshot_age: e
                .max_snapshot_age
                .as_ref()
                .map(|a| {
                    duration(
                        &format!("{k}.max_snapshot_age"),
                        &Some(a.clone()),
                        Duration::ZERO,
                    )
                })
                .transpose()?,
            retain_last: e.retain_last,
            delete_batch_size: e.delete_batch_size.unwrap_or(1000),
        };
        let default = TriggerConditions {
            commit_count: Some(10),
            interval: Some(Duration::from_secs(3600)),
            ..TriggerConditions::default()
        };
        m = m.add(
            TaskKind::ExpireSnapshots(settings),
            conditions(&k, e.trigger, default)?,
        );
        any = true;
    }
    if let Some(o) = t.delete_orphan_files {
        let k = format!("{key}.delete_orphan_files");
        let d = OrphanSettings::default();
        let min_age = duration(&format!("{k}.min_age"), &o.min_age, d.min_age)?;
        if min_age < Duration::from_secs(24 * 3600)
            && !o.dry_run.unwrap_or(false)
            && !o.allow_short_min_age.unwrap_or(false)
        {
            // Files younger than a day may belong to commits in flight (a sink's files before
            // its commit, a metadata file before its compare-and-swap).
            return Err(bad(format!(
                "{k}.min_age: under 1 day deletes files of commits in flight; set allow_short_min_age = true if nothing else writes the table"
            )));
        }
        let settings = OrphanSettings {
            min_age,
            dry_run: o.dry_run.unwrap_or(false),
            location: None,
            delete_batch_size: o.delete_batch_size.unwrap_or(d.delete_batch_size),
        };
        let default = TriggerConditions {
            interval: Some(Duration::from_secs(3600)),
            ..TriggerConditions::default()
        };
        m = m.add(
            TaskKind::DeleteOrphanFiles(settings),
            conditions(&k, o.trigger, default)?,
        );
        any = true;
    }
    if let Some(f) = t.rewrite_manifests {
        let k = format!("{key}.rewrite_manifests");
        let d = ManifestSettings::default();
        let settings = ManifestSettings {
            target_manifest_size: f
                .target_manifest_size
                .map(|s| s.bytes(&format!("{k}.target_manifest_size")))
                .transpose()?
                .unwrap_or(d.target_manifest_size),
            min_manifests: f.min_manifests.unwrap_or(d.min_manifests),
        };
        let default = TriggerConditions {
            commit_count: Some(50),
            interval: Some(Duration::from_secs(3600)),
            ..TriggerConditions::default()
        };
        m = m.add(
            TaskKind::RewriteManifests(settings),
            conditions(&k, f.trigger, default)?,
        );
        any = true;
    }
    if !any {
        return Err(bad(format!(
            "{key}: no task (rewrite_data_files, expire_snapshots, delete_orphan_files, rewrite_manifests)"
        )));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_configuration_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/maintenance.toml");
        let c = MaintainConfig::load(&path).unwrap();
        assert_eq!(c.tables.len(), 1);
        assert_eq!(c.tables[0].tasks().len(), 4);
    }

    #[test]
    fn filters() {
        let p = parse_filter("region = 'eu' and id >= 10").unwrap();
        let s = format!("{p}");
        assert!(s.contains("region") && s.contains("id"), "{s}");
        assert!(parse_filter("region").is_err());
        assert!(parse_filter("region = eu").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("128 MB"), Some(128 << 20));
        assert_eq!(parse_size("64KiB"), Some(64 << 10));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("12 parsecs"), None);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let base = Path::new("/tmp");
        let e = MaintainConfig::parse(
            "[catalog]\nwarehouse = 'w'\n[[table]]\nname = 'db.t'\n[table.rewrite_data_files]\ntarget_fle_size = 1\n",
            base,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("target_fle_size"), "{e}");
        let e = MaintainConfig::parse(
            "[catalog]\nwarehouse = 'w'\n[[table]]\nname = 'db.t'\n[table.expire_snapshots]\nmax_snapshot_age = 'soon'\n",
            base,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("max_snapshot_age") && e.contains("soon"), "{e}");
        let e = MaintainConfig::parse(
            "[catalog]\nwarehouse = 'w'\n[[table]]\nname = 'db.t'\n",
            base,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("no task"), "{e}");
        let ok = MaintainConfig::parse(
            "[catalog]\nwarehouse = 'w'\n[[table]]\nname = 'db.t'\n[table.rewrite_data_files]\ntarget_file_size = '64 MB'\n[table.rewrite_data_files.trigger]\ncommit_count = 3\n",
            base,
        )
        .unwrap();
        assert_eq!(ok.tables.len(), 1);
        assert_eq!(ok.tables[0].tasks()[0].conditions.commit_count, Some(3));
        assert_eq!(ok.catalog.warehouse, Path::new("/tmp/w"));
    }
}
