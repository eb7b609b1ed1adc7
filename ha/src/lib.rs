//! High availability: leader services apart from persistence services.
//!
//! Flink's HA services are one block: leader election and the persistence of every job's
//! metadata come together, and writing that metadata per job is what makes many short jobs
//! slow (FLIP-403). weir keeps two parts:
//!
//! - **Leader services** ([`LeaderElection`], [`LeaderRetrieval`]): which runtime process leads
//!   a cluster, its address, and its **fencing token** — a number that grows with every change
//!   of leader. A leader holds a lease that it renews; a contender takes over only after the
//!   lease ran out. A leader that cannot renew in time stops acting as leader *before* its lease
//!   ends (it counts the lease from before its renewal was sent), so two processes never both
//!   believe they lead.
//! - **Persistence services** ([`PersistenceServices`]): the [`JobGraphStore`] (what was
//!   submitted: job name, version, parameters, configuration), the [`JobResultStore`] (terminal
//!   results, *dirty* until the job's HA data was cleaned up, then *clean*), the
//!   [`CompletedCheckpointStore`] with the checkpoint-id counter, and the [`BlobStore`] (job
//!   artifacts). **Every write carries the writer's fencing token and is refused unless it is
//!   the current leader's token**: the check and the write are one atomic step, so a deposed
//!   leader cannot write, even a moment after it was deposed.
//!
//! Implementations: embedded (in-process, nothing persisted; [`embedded`]), SQLite (processes
//! on one host) and PostgreSQL (several hosts) ([`sql`]). [`HaOptions`] reads Flink-style
//! `high-availability.*` options; with `high-availability.job-recovery.enabled = false` the
//! persistence services are embedded while leader election stays on the shared database, so a
//! runtime running many short jobs writes nothing per job. `high-availability.blob-store.enabled`
//! defaults to the job-recovery value.
//!
//! Records are stored as framed bytes (format version and CRC32, see
//! `weir_state::checkpoint::format`): a corrupt row is an error naming it, never read silently.

pub mod embedded;
pub mod sql;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir_state::checkpoint::format::{self, FileKind};

/// A fencing token: grows with every change of leader; 0 is never a leader's token.
pub type FencingToken = u64;

/// Errors of the HA services.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HaError {
    /// An option has a value that cannot be used.
    #[error("invalid value '{value}' for option '{key}': expected {expected}")]
    InvalidOption {
        /// The option.
        key: String,
        /// The value given.
        value: String,
        /// What the option accepts.
        expected: String,
    },
    /// The store cannot be reached (or opened).
    #[error("the HA store {store} is unreachable: {reason}")]
    Unreachable {
        /// The store (a URL without its password, or a path).
        store: String,
        /// What failed (`cannot connect`), or the whole message when there is no [`source`].
        ///
        /// [`source`]: std::error::Error::source
        reason: String,
        /// The error of the database driver or the file system, if one caused this.
        #[source]
        source: Option<Arc<dyn std::error::Error + Send + Sync>>,
    },
    /// A request to the store failed.
    #[error("the HA store {store} failed: {reason}")]
    Store {
        /// The store.
        store: String,
        /// What was being done (`reading the job graphs`), and why when there is no [`source`]
        /// (`… no answer within 30s`).
        ///
        /// [`source`]: std::error::Error::source
        reason: String,
        /// The error of the database driver (or, for a job that cannot be recovered, the error
        /// of the HA services), if one caused this.
        #[source]
        source: Option<Arc<dyn std::error::Error + Send + Sync>>,
    },
    /// A write carried a fencing token that is not the current leader's: the writer was
    /// deposed. Nothing was written.
    #[error(
        "stale fencing token {token}: {write} refused (the current leader's token is {current})"
    )]
    Fenced {
        /// What was to be written.
        write: String,
        /// The writer's token.
        token: FencingToken,
        /// The current leader's token ("none" when no one leads).
        current: String,
    },
    /// A job id the runtime does not know.
    #[error("no job with id '{0}'")]
    NoSuchJob(String),
    /// A stored record is corrupt or of an unknown format (or a record cannot be encoded).
    #[error("corrupt HA record {what}: {reason}")]
    Corrupt {
        /// Which record.
        what: String,
        /// Why it cannot be read.
        reason: String,
        /// The framing or decoding error ([`weir_state::StateError`]), if one caused this.
        #[source]
        source: Option<Arc<dyn std::error::Error + Send + Sync>>,
    },
}

/// Result of the HA services.
pub type Result<T, E = HaError> = std::result::Result<T, E>;

/// The leader of a cluster as leader retrieval sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderInfo {
    /// The contender that leads (a process's name).
    pub holder: String,
    /// Where it accepts requests (`host:port`), as it published it.
    pub address: String,
    /// Its fencing token.
    pub token: FencingToken,
}

/// Leader election of one contender (one runtime process).
pub trait LeaderElection: Send + Sync {
    /// Becomes leader if no one leads (or the lease of the last leader ran out), or renews
    /// this contender's lease; publishes `address`. `Some(token)` while this contender leads.
    ///
    /// # Errors
    ///
    /// Implementations return [`HaError::Store`] (or [`HaError::Unreachable`]) when the request to
    /// the shared store fails or is not answered in time; not leading is `Ok(None)`, not an error.
    fn try_lead(&self, address: &str) -> Result<Option<FencingToken>>;
    /// Gives leadership up (clean shutdown), if this contender still holds `token`.
    ///
    /// # Errors
    ///
    /// Implementations return [`HaError::Store`] when the request to the shared store fails; a
    /// `token` this contender no longer holds is not an error (nothing changes).
    fn resign(&self, token: FencingToken) -> Result<()>;
    /// How long a lease lasts after it was taken or renewed.
    fn lease(&self) -> Duration;
}

/// Finds the current leader of a cluster.
pub trait LeaderRetrieval: Send + Sync {
    /// The current leader, if one holds an unexpired lease.
    ///
    /// # Errors
    ///
    /// Implementations return [`HaError::Store`] when the request to the shared store fails.
    fn leader(&self) -> Result<Option<LeaderInfo>>;
}

/// What the job graph store keeps of a submitted job: enough to build it again from the
/// job registry (Rust closures cannot be persisted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobGraphRecord {
    /// The job's id (unique in the cluster; also its `pipeline.name`).
    pub job_id: String,
    /// The registry name of the job.
    pub name: String,
    /// The registry version it was submitted under.
    pub version: u32,
    /// The job's parameters.
    pub parameters: BTreeMap<String, String>,
    /// Configuration options set for the job (key → value).
    pub config: BTreeMap<String, String>,
    /// When it was submitted (milliseconds since the Unix epoch).
    pub submitted_ms: i64,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobOutcome {
    /// Every source ended and every record was processed.
    Finished,
    /// The job was cancelled.
    Cancelled,
    /// The job failed (beyond its restart strategy), with the error.
    Failed(String),
}

/// A terminal result in the job result store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobResultRecord {
    /// The job's id.
    pub job_id: String,
    /// The registry name of the job.
    pub name: String,
    /// How it ended.
    pub outcome: JobOutcome,
    /// When it ended (milliseconds since the Unix epoch).
    pub finished_ms: i64,
}

/// A job result store entry: the result and whether the job's HA data was cleaned up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobResultEntry {
    /// The result.
    pub result: JobResultRecord,
    /// False (dirty) until the job graph, checkpoints and blobs of the job were removed.
    pub clean: bool,
}

/// Where a completed checkpoint is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointPointer {
    /// Its id.
    pub checkpoint_id: u64,
    /// Its location (a directory of the checkpoint storage).
    pub location: String,
}

/// Submitted jobs, so that a new leader can recover them.
pub trait JobGraphStore: Send + Sync {
    /// Adds (or replaces) a job graph.
    ///
    /// # Errors
    ///
    /// Implementations return [`HaError::Fenced`] when `token` is not the current leader's (nothing
    /// is written), [`HaError::Corrupt`] when the record cannot be encoded, and [`HaError::Store`]
    /// when the store fails.
    fn put(&self, token: FencingToken, graph: &JobGraphRecord) -> Result<()>;
    /// Removes a job graph (no error if absent).
    ///
    /// # Errors
    ///
    /// Implementations return [`HaError::Fenced`] when `token` is not the current leader's (nothing
    /// is written), and [`HaError::Store`] when the store fails.
    fn remove(&self, token: FencingToken, job_id: &str) -> Result<()>;
    /// The ids of every stored job graph.
    ///
    /// # Errors
    ///
    /// Implementations return [`HaError::Store`] when the store fails.
    fn job_ids(&self) -> Result<Vec<String>>;
    /// The job graph of `job_id` (a row that cannot be read is an error naming it).
    ///
    /// # Errors
    ///
    /// Implementations return [`HaError::Corrupt`] when the stored record fails its checks, does
    /// not decode, or holds another job's graph, and [`HaError::Store`] when the store fails.
    fn get(&self, job_id: &str) -> Result<Option<JobGraphRecord>>;
    /// Every stored job graph (an error if any cannot be read).
    ///
    /// # Errors
    ///
    /// Returns the first error of [`job_ids`](Self::job_ids) or [`get`](Self::get): a
    /// [`HaError::Corrupt`] graph fails the whole call.
    fn graphs(&self) -> Result<Vec<JobGraphRecord>> {
        let mut out = Vec::new();
        for id in self.job_ids()? {
            if let Some(g) = self.get(&id)? {
                out.push(g);
            }
        }
        Ok(out)
    }
}

/// Terminal results of jobs: a job with a result is never run again.
pub trait JobResultStore: Send + Sync {
    /// Records a result as dirty (its HA data not yet cleaned up).
    ///
    /// # Errors
    ///
    /// Implementations return [`HaError::Fenced`] when `token` is not the current leader's (nothing
    /// is written), [`HaError::Corrupt`] when the record cannot be encoded, and [`HaError::Store`]
    /// when the store fails.
    fn put_dirty(&self, token: FencingToken, result: &JobResultRecord) -> Result<()>;
    /// Marks the result of `job_id` clean.
    ///
    /// # Errors
    ///
    /// Implementations return [`HaError::Fenced`] when `token` is not the current leader's (nothing
    /// is written), [`HaError::NoSuchJob`] when `job_id` has no result, and [`HaError::Store`] when
    /// the store fails.
    fn mark_clean(&self, token: FencingToken, job_id: &str) -> Result<()>;
    /// The result of `job_id`, if it has one.
    ///
    /// # Errors
    ///
    /// Implementations return [`HaError::Corrupt`] when the stored record fails its checks, does
    /// not decode, or holds another job's result, and [`HaError::Store`] when the store fails.
    fn get(&self, job_id: &str) -> Result<Option<JobResultEntry>>;
    /// Every dirty result.
    ///
    /// # Errors
    ///
    /// Implementations return [`HaError::Corrupt`] when a stored result cannot be read (the whole
    /// call fails), and [`HaError::Store`] when the store fails.
    fn dirty(&self) -> Result<Vec<JobResultEntry>>;
}

/// Completed checkpoints of jobs, and the checkpoint-id counter.
pub trait CompletedCheckpointStore: Send + Sync {
    /// Records a completed checkpoint of `job_id` and advances the job's checkpoint-id counter
    /// to at least its id; keeps the newest `retain` pointers.
    ///
    /// # Errors
    ///
    /// Implementations return [`HaError::Fenced`] when `token` is not the current leader's (nothing
    /// is written), [`HaError::Corrupt`] when the pointer cannot be encoded, and [`HaError::Store`]
    /// when the store fails (or, for SQL stores, the id exceeds `i64::MAX`).
    fn add(
        &self,
        token: FencingToken,
        job_id: &str,
        pointer: &CheckpointPointer,
        retain: usize,
    ) -> Result<()>;
    /// The newest completed checkpoint of `job_id`.
    ///
    /// # Errors
    ///
    /// Implementations return [`HaError::Corrupt`] when the stored pointer fails its checks, does
    /// not decode, or names another checkpoint id, and [`HaError::Store`] when the store fails.
    fn latest(&self, job_id: &str) -> Result<Option<CheckpointPointer>>;
    /// The checkpoint-id counter: the highest checkpoint id `job_id` used (0 if none).
    ///
    /// # Errors
    ///
    /// Implementations return [`HaError::Store`] when the store fails.
    fn highest_id(&self, job_id: &str) -> Result<u64>;
    /// Removes every pointer and the counter of `job_id`.
    ///
    /// # Errors
    ///
    /// Implementations return [`HaError::Fenced`] when `token` is not the current leader's (nothing
    /// is written), and [`HaError::Store`] when the store fails.
    fn remove_job(&self, token: FencingToken, job_id: &str) -> Result<()>;
}

/// Artifacts of jobs (for example their input), by job and name.
pub trait BlobStore: Send + Sync {
    /// Stores an artifact.
    ///
    /// # Errors
    ///
    /// Implementations return [`HaError::Fenced`] when `token` is not the current leader's (nothing
    /// is written), and [`HaError::Store`] when the store fails.
    fn put(&self, token: FencingToken, job_id: &str, name: &str, bytes: &[u8]) -> Result<()>;
    /// Reads an artifact.
    ///
    /// # Errors
    ///
    /// Implementations return [`HaError::Store`] when the store fails.
    fn get(&self, job_id: &str, name: &str) -> Result<Option<Vec<u8>>>;
    /// Removes every artifact of `job_id`.
    ///
    /// # Errors
    ///
    /// Implementations return [`HaError::Fenced`] when `token` is not the current leader's (nothing
    /// is written), and [`HaError::Store`] when the store fails.
    fn remove_job(&self, token: FencingToken, job_id: &str) -> Result<()>;
}

/// The leader part of the HA services.
#[derive(Clone)]
pub struct LeaderServices {
    /// This process's candidacy.
    pub election: Arc<dyn LeaderElection>,
    /// Who leads.
    pub retrieval: Arc<dyn LeaderRetrieval>,
}

/// The persistence part of the HA services.
#[derive(Clone)]
pub struct PersistenceServices {
    /// Submitted jobs.
    pub job_graphs: Arc<dyn JobGraphStore>,
    /// Terminal results.
    pub job_results: Arc<dyn JobResultStore>,
    /// Completed checkpoints and checkpoint-id counters.
    pub checkpoints: Arc<dyn CompletedCheckpointStore>,
    /// Job artifacts.
    pub blobs: Arc<dyn BlobStore>,
    /// Whether jobs survive the loss of the leader (job graph store not embedded).
    pub job_recovery: bool,
}

/// `high-availability.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HaType {
    /// No HA: embedded leader election (this process always leads) and embedded persistence.
    None,
    /// A SQLite database file shared by the runtime processes of one host.
    Sqlite,
    /// A PostgreSQL database shared by runtime processes on several hosts.
    Postgres,
}

/// The `high-availability.*` options of a runtime.
#[derive(Debug, Clone, PartialEq)]
pub struct HaOptions {
    /// `high-availability.type`: none, sqlite or postgres.
    pub kind: HaType,
    /// `high-availability.storageDir`: checkpoints of recoverable jobs are kept below it (and
    /// the SQLite database, unless `high-availability.sqlite.path` says otherwise).
    pub storage_dir: String,
    /// `high-availability.sqlite.path`: the SQLite database file.
    pub sqlite_path: String,
    /// `high-availability.postgres.url`: the PostgreSQL database.
    pub postgres_url: String,
    /// `high-availability.cluster-id`: runtimes with the same id compete for one leadership
    /// and share jobs.
    pub cluster_id: String,
    /// `high-availability.job-recovery.enabled`: persist submitted jobs so that a new leader
    /// recovers them. Off: persistence is embedded (nothing per job is written).
    pub job_recovery: bool,
    /// `high-availability.blob-store.enabled` (default: the job-recovery value).
    pub blob_store: Option<bool>,
    /// `high-availability.leader-election.lease-duration`.
    pub lease: Duration,
}

impl Default for HaOptions {
    fn default() -> Self {
        HaOptions {
            kind: HaType::None,
            storage_dir: String::new(),
            sqlite_path: String::new(),
            postgres_url: String::new(),
            cluster_id: "default".into(),
            job_recovery: true,
            blob_store: None,
            lease: Duration::from_secs(5),
        }
    }
}

/// Every `high-availability.*` option: key, default, description.
pub const OPTIONS: &[(&str, &str, &str)] = &[
    ("high-availability.type", "none", "none, sqlite or postgres"),
    (
        "high-availability.storageDir",
        "",
        "directory of the checkpoints of recoverable jobs (and of the SQLite database)",
    ),
    (
        "high-availability.sqlite.path",
        "<storageDir>/weir-ha.db",
        "the SQLite database file",
    ),
    (
        "high-availability.postgres.url",
        "",
        "postgres://user[:password]@host:port/database",
    ),
    (
        "high-availability.cluster-id",
        "default",
        "runtimes with one id compete for one leadership and share jobs",
    ),
    (
        "high-availability.job-recovery.enabled",
        "true",
        "persist submitted jobs so that a new leader recovers them",
    ),
    (
        "high-availability.blob-store.enabled",
        "<job-recovery.enabled>",
        "persist job artifacts",
    ),
    (
        "high-availability.leader-election.lease-duration",
        "5 s",
        "how long a leader's lease lasts after each renewal",
    ),
];

impl HaOptions {
    /// Sets one option from its text form; an unknown key or a bad value is an error naming it.
    ///
    /// # Errors
    ///
    /// Returns [`HaError::InvalidOption`] when `key` is not one of [`OPTIONS`] or `value` is not
    /// valid for it (nothing is changed then).
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let bad = |expected: &str| HaError::InvalidOption {
            key: key.to_string(),
            value: value.to_string(),
            expected: expected.to_string(),
        };
        let boolean = |v: &str| match v.trim().to_ascii_lowercase().as_str() {
            "true" | "on" => Ok(true),
            "false" | "off" => Ok(false),
            _ => Err(bad("true or false")),
        };
        match key {
            "high-availability.type" => {
                self.kind = match value.trim().to_ascii_lowercase().as_str() {
                    "none" | "" => HaType::None,
                    "sqlite" => HaType::Sqlite,
                    "postgres" | "postgresql" => HaType::Postgres,
                    _ => return Err(bad("none, sqlite or postgres")),
                }
            }
            "high-availability.storageDir" | "high-availability.storage-dir" => {
                self.storage_dir = value.to_string()
            }
            "high-availability.sqlite.path" => self.sqlite_path = value.to_string(),
            "high-availability.postgres.url" => {
                if !value.starts_with("postgres://") && !value.starts_with("postgresql://") {
                    return Err(bad("a postgres:// URL"));
                }
                self.postgres_url = value.to_string()
            }
            "high-availability.cluster-id" => {
                if value.is_empty() || value.len() > 200 {
                    return Err(bad("a non-empty name of at most 200 characters"));
                }
                self.cluster_id = value.to_string()
            }
            "high-availability.job-recovery.enabled" => self.job_recovery = boolean(value)?,
            "high-availability.blob-store.enabled" => self.blob_store = Some(boolean(value)?),
            "high-availability.leader-election.lease-duration" => {
                let d = humantime::parse_duration(value.trim())
                    .map_err(|_| bad("a duration such as 5s"))?;
                if d < Duration::from_millis(100) {
                    return Err(bad("a duration of at least 100ms"));
                }
                self.lease = d
            }
            _ => {
                return Err(HaError::InvalidOption {
                    key: key.to_string(),
                    value: value.to_string(),
                    expected: format!(
                        "a known option ({})",
                        OPTIONS
                            .iter()
                            .map(|(k, _, _)| *k)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                })
            }
        }
        Ok(())
    }

    /// Whether job recovery is on (never with `high-availability.type = none`).
    pub fn job_recovery_enabled(&self) -> bool {
        self.kind != HaType::None && self.job_recovery
    }

    /// Whether the blob store persists (never with `high-availability.type = none`).
    pub fn blob_store_enabled(&self) -> bool {
        self.kind != HaType::None && self.blob_store.unwrap_or(self.job_recovery)
    }

    /// Where checkpoints of recoverable jobs go: `storageDir/checkpoints`.
    ///
    /// # Errors
    ///
    /// Returns [`HaError::InvalidOption`] when `high-availability.storageDir` is not set.
    pub fn checkpoint_root(&self) -> Result<PathBuf> {
        if self.storage_dir.is_empty() {
            return Err(HaError::InvalidOption {
                key: "high-availability.storageDir".into(),
                value: String::new(),
                expected: "a directory, since high-availability.job-recovery.enabled is on".into(),
            });
        }
        Ok(PathBuf::from(&self.storage_dir).join("checkpoints"))
    }

    /// The database URL of the SQL types.
    ///
    /// # Errors
    ///
    /// Returns [`HaError::InvalidOption`] when the type is `none`, when it is `sqlite` and neither
    /// `high-availability.sqlite.path` nor `high-availability.storageDir` is set, or when it is
    /// `postgres` and `high-availability.postgres.url` is not set.
    pub fn database_url(&self) -> Result<String> {
        match self.kind {
            HaType::None => Err(HaError::InvalidOption {
                key: "high-availability.type".into(),
                value: "none".into(),
                expected: "sqlite or postgres for a shared database".into(),
            }),
            HaType::Sqlite => {
                let path = if !self.sqlite_path.is_empty() {
                    PathBuf::from(&self.sqlite_path)
                } else if !self.storage_dir.is_empty() {
                    PathBuf::from(&self.storage_dir).join("weir-ha.db")
                } else {
                    return Err(HaError::InvalidOption {
                        key: "high-availability.sqlite.path".into(),
                        value: String::new(),
                        expected: "a database file (or high-availability.storageDir)".into(),
                    });
                };
                Ok(format!("sqlite://{}", path.display()))
            }
            HaType::Postgres if self.postgres_url.is_empty() => Err(HaError::InvalidOption {
                key: "high-availability.postgres.url".into(),
                value: String::new(),
                expected: "a postgres:// URL, since high-availability.type is postgres".into(),
            }),
            HaType::Postgres => Ok(self.postgres_url.clone()),
        }
    }
}

/// The HA services of one runtime process: leader services and persistence services, made
/// from [`HaOptions`].
#[derive(Clone)]
pub struct HaServices {
    /// Leader election and retrieval.
    pub leader: LeaderServices,
    /// The stores.
    pub persistence: PersistenceServices,
    /// The fence of the embedded stores (set while this process leads).
    pub fence: Arc<embedded::LocalFence>,
}

impl HaServices {
    /// Makes the services of contender `contender` (a name unique among the cluster's
    /// processes). A database that cannot be reached is an error naming it.
    ///
    /// # Errors
    ///
    /// Returns [`HaError::InvalidOption`] when job recovery is on without
    /// `high-availability.storageDir`, or the database URL cannot be made from the options, and the
    /// errors of [`sql::SqlHaStore::connect`] ([`HaError::Unreachable`], [`HaError::Store`]).
    pub fn open(options: &HaOptions, contender: &str) -> Result<HaServices> {
        let fence = Arc::new(embedded::LocalFence::default());
        let local = Arc::new(embedded::EmbeddedPersistence::new(fence.clone()));
        let embedded_persistence = PersistenceServices {
            job_graphs: local.clone(),
            job_results: local.clone(),
            checkpoints: local.clone(),
            blobs: local.clone(),
            job_recovery: false,
        };
        if options.kind == HaType::None {
            let election = Arc::new(embedded::EmbeddedLeaderElection::new(contender));
            return Ok(HaServices {
                leader: LeaderServices {
                    election: election.clone(),
                    retrieval: election,
                },
                persistence: embedded_persistence,
                fence,
            });
        }
        if options.job_recovery_enabled() {
            options.checkpoint_root()?;
        }
        let db = sql::SqlHaStore::connect(
            &options.database_url()?,
            &options.cluster_id,
            contender,
            options.lease,
        )?;
        let mut persistence = embedded_persistence;
        if options.job_recovery_enabled() {
            persistence.job_graphs = db.clone();
            persistence.job_results = db.clone();
            persistence.checkpoints = db.clone();
            persistence.job_recovery = true;
        }
        if options.blob_store_enabled() {
            persistence.blobs = db.clone();
        }
        Ok(HaServices {
            leader: LeaderServices {
                election: db.clone(),
                retrieval: db,
            },
            persistence,
            fence,
        })
    }
}

impl HaServices {
    /// Leader retrieval alone (for clients): who leads the cluster of `options`.
    ///
    /// # Errors
    ///
    /// Returns [`HaError::InvalidOption`] when the type is `none` or the database URL cannot be
    /// made from the options, [`HaError::Unreachable`] when the SQLite file does not exist (a
    /// client never creates it), and the errors of [`sql::SqlHaStore::connect`].
    pub fn retrieval(options: &HaOptions) -> Result<Arc<dyn LeaderRetrieval>> {
        if options.kind == HaType::None {
            return Err(HaError::InvalidOption {
                key: "high-availability.type".into(),
                value: "none".into(),
                expected: "sqlite or postgres to find a leader".into(),
            });
        }
        let url = options.database_url()?;
        if let Some(path) = url.strip_prefix("sqlite://") {
            // A client must not create an empty database (and then find no leader in it).
            if !std::path::Path::new(path).exists() {
                return Err(HaError::Unreachable {
                    store: url.clone(),
                    reason: "no such database file (is high-availability.storageDir or \
                             high-availability.sqlite.path the one the runtimes use?)"
                        .into(),
                    source: None,
                });
            }
        }
        let contender = format!("client-{}", std::process::id());
        Ok(sql::SqlHaStore::connect(
            &options.database_url()?,
            &options.cluster_id,
            &contender,
            options.lease,
        )?)
    }
}

/// Frames a record for a store (format version and checksum).
///
/// # Errors
///
/// Returns [`HaError::Corrupt`] when the value cannot be encoded.
pub fn encode_record<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let payload = format::encode(value).map_err(|e| HaError::Corrupt {
        what: "(encoding)".into(),
        reason: "it cannot be encoded".into(),
        source: Some(Arc::new(e)),
    })?;
    Ok(format::frame(FileKind::HaRecord, &payload))
}

/// Reads a framed record; `what` names it in errors.
///
/// # Errors
///
/// Returns [`HaError::Corrupt`] (naming `what`) when `bytes` fails its framing checks (magic,
/// version, kind, length, checksum) or its payload does not decode into a `T`.
pub fn decode_record<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    let corrupt = |reason: &str, e: weir_state::StateError| HaError::Corrupt {
        what: what.to_string(),
        reason: reason.into(),
        source: Some(Arc::new(e)),
    };
    let payload = format::unframe(std::path::Path::new(what), FileKind::HaRecord, bytes)
        .map_err(|e| corrupt("its frame is invalid", e))?;
    format::decode(what, payload).map_err(|e| corrupt("its payload does not decode", e))
}

/// Milliseconds since the Unix epoch (weir's one clock).
pub use weir_state::now_ms;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_and_name_bad_values() {
        let mut o = HaOptions::default();
        o.set("high-availability.type", "sqlite").unwrap();
        o.set("high-availability.storageDir", "/tmp/x").unwrap();
        o.set("high-availability.job-recovery.enabled", "false")
            .unwrap();
        assert!(!o.job_recovery_enabled());
        assert!(
            !o.blob_store_enabled(),
            "the blob store follows job recovery"
        );
        o.set("high-availability.blob-store.enabled", "true")
            .unwrap();
        assert!(o.blob_store_enabled());
        assert_eq!(o.database_url().unwrap(), "sqlite:///tmp/x/weir-ha.db");
        let e = o.set("high-availability.type", "zookeeper").unwrap_err();
        assert!(e.to_string().contains("'high-availability.type'"), "{e}");
        let e = o.set("high-availability.bogus", "1").unwrap_err();
        assert!(e.to_string().contains("high-availability.bogus"), "{e}");
        let e = o
            .set("high-availability.leader-election.lease-duration", "1ms")
            .unwrap_err();
        assert!(e.to_string().contains("at least 100ms"), "{e}");
    }

    #[test]
    fn records_are_framed_and_checked() {
        let r = JobResultRecord {
            job_id: "j".into(),
            name: "n".into(),
            outcome: JobOutcome::Failed("x".into()),
            finished_ms: 5,
        };
        let mut bytes = encode_record(&r).unwrap();
        assert_eq!(decode_record::<JobResultRecord>("r", &bytes).unwrap(), r);
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let e = decode_record::<JobResultRecord>("job result 'j'", &bytes).unwrap_err();
        assert_eq!(
            e.to_string(),
            "corrupt HA record job result 'j': its frame is invalid"
        );
        let cause = std::error::Error::source(&e).map(|s| s.to_string());
        assert!(
            cause.as_deref().unwrap_or("").contains("checksum"),
            "{cause:?}"
        );
    }
}
