//! SQL HA services: leader election and the persistence services on one SQLite or PostgreSQL
//! database.
//!
//! [`SqlHaStore`] implements every HA trait on one database: SQLite (`sqlite:///path/file.db`,
//! for runtime processes on one host; the file and its directory are created when missing) or
//! PostgreSQL (`postgres://user[:password]@host:port/database`, for processes on several
//! hosts). Several clusters share one database: every row is keyed by its cluster id. The
//! tables (created at connect when missing, with `CREATE TABLE IF NOT EXISTS`; PostgreSQL
//! serializes concurrent creation with an advisory lock) are:
//!
//! | table | columns (primary key first) | content |
//! |---|---|---|
//! | `weir_ha_leader` | **cluster_id**, holder, address, token BIGINT, lease_until_ms BIGINT | the cluster's leader, its address, its fencing token and the end of its lease |
//! | `weir_ha_job_graphs` | **cluster_id, job_id**, record bytes | a [`JobGraphRecord`] |
//! | `weir_ha_job_results` | **cluster_id, job_id**, record bytes, clean integer (0/1) | a [`JobResultRecord`], dirty or clean |
//! | `weir_ha_checkpoints` | **cluster_id, job_id, checkpoint_id** BIGINT, record bytes | a [`CheckpointPointer`] |
//! | `weir_ha_checkpoint_counters` | **cluster_id, job_id**, highest_id BIGINT | the checkpoint-id counter |
//! | `weir_ha_blobs` | **cluster_id, job_id, name**, bytes | a job artifact |
//!
//! "bytes" is `BLOB` in SQLite and `BYTEA` in PostgreSQL. Records are framed with
//! [`encode_record`] (format version and CRC32) and read with [`decode_record`]: a corrupt row
//! is an [`HaError::Corrupt`] naming it, never skipped.
//!
//! # Leader election
//!
//! [`LeaderElection::try_lead`] is one atomic upsert of the cluster's `weir_ha_leader` row: a
//! missing row is inserted with token 1; a row whose holder is this contender *and* whose token
//! is the one this process holds (kept in memory) is renewed with the same token (even if its
//! lease ran out meanwhile: no one else took over, so no one else wrote under another token);
//! a row whose lease ran out is taken over with the old token + 1; any other row is left
//! alone. `try_lead` returns the token when this contender leads afterwards. Time is the
//! **database's clock** (PostgreSQL `clock_timestamp()`, SQLite `julianday('now')`), so the
//! clocks of the runtime hosts do not matter. A restarted process holds no token: it treats a
//! row under its own name like anyone else's and takes over (with a new token) only when the
//! lease ran out. [`LeaderElection::resign`] ends the lease at once (`lease_until_ms = 0`), so
//! a standby takes over at its next attempt; the token stays the cluster's token until then
//! (a resigning runtime stops writing itself).
//!
//! # The fencing invariant
//!
//! **A write under token `t` commits only if `t` is the cluster's token in `weir_ha_leader`
//! when it commits; a takeover (which raises the token) cannot commit between the check and
//! the write.** Every write ([`JobGraphStore::put`], [`JobResultStore::mark_clean`],
//! [`CompletedCheckpointStore::add`], [`BlobStore::remove_job`], …) runs in one transaction
//! that first reads the leader row and writes nothing unless its token is the writer's (else
//! [`HaError::Fenced`]):
//!
//! - PostgreSQL: `SELECT token … FOR SHARE` locks the leader row until the transaction ends, so
//!   a takeover's upsert of that row waits for the write to commit or roll back (and a write
//!   that starts after the takeover committed reads the new token).
//! - SQLite: the transaction starts with `BEGIN IMMEDIATE`, taking the database's write lock
//!   before the check; a takeover is a write, so it runs entirely before or after.
//!
//! # Concurrency
//!
//! Every method blocks (it must not be called from inside a tokio runtime): requests run on a
//! private two-thread tokio runtime over a pool of up to 8 connections, so any number of
//! threads can call concurrently. SQLite runs in WAL mode with a busy timeout of 10 s, so the
//! processes of one host share the file. Connecting fails with [`HaError::Unreachable`] if the
//! database refuses the connection (at once) or does not answer within 5 s; a request that gets no answer within 30 s fails with
//! [`HaError::Store`]. URLs in errors never show a password.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sqlx::any::{AnyArguments, AnyPoolOptions, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, AnyPool, Connection, Row};

use super::{
    decode_record, encode_record, BlobStore, CheckpointPointer, CompletedCheckpointStore,
    FencingToken, HaError, JobGraphRecord, JobGraphStore, JobResultEntry, JobResultRecord,
    JobResultStore, LeaderElection, LeaderInfo, LeaderRetrieval, Result,
};

/// How long connecting (and acquiring a pooled connection) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request may go unanswered.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// SQLite's busy timeout: how long a connection waits for another's write lock.
const SQLITE_BUSY_TIMEOUT_MS: u64 = 10_000;
/// Connections in the pool.
const MAX_CONNECTIONS: u32 = 8;
/// The PostgreSQL advisory lock that serializes the creation of the tables.
const PG_SCHEMA_LOCK: i64 = 0x0077_6569_725f_6861; // "weir_ha"

/// The SQL dialect of the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The database clock in milliseconds since the Unix epoch, as a BIGINT expression.
    fn now_ms(self) -> &'static str {
        match self {
            Dialect::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
            Dialect::Postgres => "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT",
        }
    }

    /// The column type of byte strings.
    fn bytes(self) -> &'static str {
        match self {
            Dialect::Sqlite => "BLOB",
            Dialect::Postgres => "BYTEA",
        }
    }

    /// The column type of the clean flag.
    fn flag(self) -> &'static str {
        match self {
            Dialect::Sqlite => "INTEGER",
            Dialect::Postgres => "SMALLINT",
        }
    }

    /// Rewrites a statement for the dialect: `?` placeholders become `$1, $2, …` for
    /// PostgreSQL and `NOW_MS` becomes the database clock.
    fn sql(self, q: &str) -> String {
        let q = q.replace("NOW_MS", self.now_ms());
        if self == Dialect::Sqlite {
            return q;
        }
        let mut out = String::with_capacity(q.len() + 16);
        let mut n = 0;
        for c in q.chars() {
            if c == '?' {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            } else {
                out.push(c);
            }
        }
        out
    }

    /// The statements creating the tables.
    fn schema(self) -> Vec<String> {
        let (bytes, flag) = (self.bytes(), self.flag());
        vec![
            "CREATE TABLE IF NOT EXISTS weir_ha_leader (cluster_id TEXT NOT NULL PRIMARY KEY, \
             holder TEXT NOT NULL, address TEXT NOT NULL, token BIGINT NOT NULL, \
             lease_until_ms BIGINT NOT NULL)"
                .to_string(),
            format!(
                "CREATE TABLE IF NOT EXISTS weir_ha_job_graphs (cluster_id TEXT NOT NULL, \
                 job_id TEXT NOT NULL, record {bytes} NOT NULL, PRIMARY KEY (cluster_id, job_id))"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS weir_ha_job_results (cluster_id TEXT NOT NULL, \
                 job_id TEXT NOT NULL, record {bytes} NOT NULL, clean {flag} NOT NULL, \
                 PRIMARY KEY (cluster_id, job_id))"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS weir_ha_checkpoints (cluster_id TEXT NOT NULL, \
                 job_id TEXT NOT NULL, checkpoint_id BIGINT NOT NULL, record {bytes} NOT NULL, \
                 PRIMARY KEY (cluster_id, job_id, checkpoint_id))"
            ),
            "CREATE TABLE IF NOT EXISTS weir_ha_checkpoint_counters (cluster_id TEXT NOT NULL, \
             job_id TEXT NOT NULL, highest_id BIGINT NOT NULL, PRIMARY KEY (cluster_id, job_id))"
                .to_string(),
            format!(
                "CREATE TABLE IF NOT EXISTS weir_ha_blobs (cluster_id TEXT NOT NULL, \
                 job_id TEXT NOT NULL, name TEXT NOT NULL, bytes {bytes} NOT NULL, \
                 PRIMARY KEY (cluster_id, job_id, name))"
            ),
        ]
    }
}

/// A value bound to a placeholder.
#[derive(Debug, Clone, Copy)]
enum Arg<'a> {
    Int(i64),
    Text(&'a str),
    Bytes(&'a [u8]),
}

/// A statement (already in the dialect) with its values.
struct Stmt<'a> {
    sql: String,
    args: Vec<Arg<'a>>,
}

fn bind<'q>(sql: &'q str, args: &[Arg<'q>]) -> Query<'q, Any, AnyArguments<'q>> {
    args.iter().fold(sqlx::query(sql), |q, a| match *a {
        Arg::Int(v) => q.bind(v),
        Arg::Text(v) => q.bind(v),
        Arg::Bytes(v) => q.bind(v),
    })
}

/// The URL without its password (`user:***@host`, `password=***`), and the passwords it held.
fn redact(url: &str) -> (String, Vec<String>) {
    let mut secrets = Vec::new();
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return (url.to_string(), secrets);
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let mut out = url[..scheme_end].to_string();
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            match userinfo.split_once(':') {
                Some((user, password)) => {
                    secrets.push(password.to_string());
                    out.push_str(user);
                    out.push_str(":***");
                }
                None => out.push_str(userinfo),
            }
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    match tail.split_once('?') {
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            let params: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, v)) if k.eq_ignore_ascii_case("password") => {
                        secrets.push(v.to_string());
                        format!("{k}=***")
                    }
                    _ => kv.to_string(),
                })
                .collect();
            out.push_str(&params.join("&"));
        }
        None => out.push_str(tail),
    }
    secrets.retain(|s| !s.is_empty());
    (out, secrets)
}

/// The cause of an error: the driver's (or the file system's) error, shared so that
/// [`HaError`] stays `Clone`.
type Cause = Arc<dyn std::error::Error + Send + Sync>;

/// `e` as the cause of an error.
fn cause(e: impl std::error::Error + Send + Sync + 'static) -> Option<Cause> {
    Some(Arc::new(e))
}

/// The reason and source of an error of a store whose URL held `secrets`: `cause` stays the
/// source unless its text (any level, or its `Debug`) shows a password; then its text is
/// appended to the reason with every password replaced by `***`, and there is no source.
fn scrubbed(secrets: &[String], reason: String, cause: Option<Cause>) -> (String, Option<Cause>) {
    let scrub = |text: String| {
        secrets
            .iter()
            .fold(text, |t, s| t.replace(s.as_str(), "***"))
    };
    let Some(cause) = cause else {
        return (scrub(reason), None);
    };
    let mut chain = Vec::new();
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(&*cause);
    while let Some(e) = next {
        chain.push(e.to_string());
        next = e.source();
    }
    let debug = format!("{cause:?}");
    let leaks = |t: &str| secrets.iter().any(|s| t.contains(s.as_str()));
    if leaks(&debug) || chain.iter().any(|t| leaks(t)) {
        (scrub(format!("{reason}: {}", chain.join(": "))), None)
    } else {
        (scrub(reason), Some(cause))
    }
}

/// The HA services of one contender on one SQL database (SQLite or PostgreSQL): leader
/// election and retrieval, and the job graph, job result, completed checkpoint and blob
/// stores, every write fenced by the leader's token (see the [module documentation](self)).
pub struct SqlHaStore {
    pool: AnyPool,
    /// Taken (and shut down) on drop.
    rt: Option<tokio::runtime::Runtime>,
    dialect: Dialect,
    /// The URL without its password.
    store: String,
    /// Passwords of the URL, removed from every message.
    secrets: Vec<String>,
    cluster: String,
    contender: String,
    lease: Duration,
    /// The token this process leads under (0: none). Locked across a leader request, so
    /// requests of one process do not interleave.
    held: Mutex<FencingToken>,
}

impl std::fmt::Debug for SqlHaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlHaStore")
            .field("store", &self.store)
            .field("cluster", &self.cluster)
            .field("contender", &self.contender)
            .field("lease", &self.lease)
            .finish()
    }
}

impl SqlHaStore {
    /// Connects contender `contender` of cluster `cluster_id` to the database at `url`
    /// (`sqlite:///path/file.db` or `postgres://user[:password]@host:port/database`), creating
    /// the SQLite file (and its directory) and the tables when missing. `lease` is how long a
    /// lease lasts after each [`LeaderElection::try_lead`].
    ///
    /// # Errors
    ///
    /// Returns [`HaError::Unreachable`] (naming the URL without its password) when the URL is
    /// neither `sqlite:` nor `postgres://`, the SQLite directory cannot be created, or the database
    /// refuses the connection or does not answer within 5 s; [`HaError::Store`] when creating the
    /// tables fails; and [`HaError::InvalidOption`] when `lease` is zero.
    pub fn connect(
        url: &str,
        cluster_id: &str,
        contender: &str,
        lease: Duration,
    ) -> Result<Arc<SqlHaStore>> {
        let (store, secrets) = redact(url);
        let unreachable = |(reason, cause): (String, Option<Cause>)| {
            let (reason, source) = scrubbed(&secrets, reason, cause);
            HaError::Unreachable {
                store: store.clone(),
                reason,
                source,
            }
        };
        let (dialect, url) = if url.starts_with("sqlite:") {
            (
                Dialect::Sqlite,
                Self::sqlite_url(url).map_err(&unreachable)?,
            )
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Dialect::Postgres, url.to_string())
        } else {
            return Err(unreachable((
                "not a sqlite:// or postgres:// URL".to_string(),
                None,
            )));
        };
        if lease.is_zero() {
            return Err(HaError::InvalidOption {
                key: "high-availability.leader-election.lease-duration".into(),
                value: "0".into(),
                expected: "a positive duration".into(),
            });
        }
        sqlx::any::install_default_drivers();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("weir-ha-sql")
            .enable_all()
            .build()
            .map_err(|e| unreachable(("cannot start its I/O runtime".into(), cause(e))))?;
        let pool = rt.block_on(async {
            let mut conn = Self::probe(&url).await.map_err(&unreachable)?;
            let prepared = tokio::time::timeout(REQUEST_TIMEOUT, Self::prepare(dialect, &mut conn))
                .await
                .unwrap_or_else(|_| {
                    Err((
                        format!(
                            "creating the HA tables: no answer within {}",
                            humantime::format_duration(REQUEST_TIMEOUT)
                        ),
                        None,
                    ))
                });
            let _ = conn.close().await;
            prepared.map_err(|(reason, cause)| {
                let (reason, source) = scrubbed(&secrets, reason, cause);
                HaError::Store {
                    store: store.clone(),
                    reason,
                    source,
                }
            })?;
            // SQLite takes one writer at a time: this process's requests queue for one
            // connection instead of waking each other through the busy handler's sleeps
            // (other processes still wait in it).
            let mut options = AnyPoolOptions::new()
                .max_connections(if dialect == Dialect::Sqlite {
                    1
                } else {
                    MAX_CONNECTIONS
                })
                .acquire_timeout(CONNECT_TIMEOUT);
            if dialect == Dialect::Sqlite {
                options = options.after_connect(|conn, _meta| {
                    Box::pin(async move {
                        sqlx::query(&format!("PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}"))
                            .execute(&mut *conn)
                            .await?;
                        // WAL with synchronous = NORMAL: a commit survives the crash of any
                        // process (what HA is about); only a power loss may undo the last ones.
                        sqlx::query("PRAGMA synchronous = NORMAL")
                            .execute(&mut *conn)
                            .await?;
                        Ok(())
                    })
                });
            }
            options
                .connect_lazy(&url)
                .map_err(|e| unreachable(("cannot set up the connection pool".into(), cause(e))))
        })?;
        Ok(Arc::new(SqlHaStore {
            pool,
            rt: Some(rt),
            dialect,
            store,
            secrets,
            cluster: cluster_id.to_string(),
            contender: contender.to_string(),
            lease,
            held: Mutex::new(0),
        }))
    }

    /// The connection URL of a SQLite file: its directory is created, and the file is created
    /// on open (`mode=rwc`) unless the URL sets a mode.
    fn sqlite_url(url: &str) -> std::result::Result<String, (String, Option<Cause>)> {
        let (path, query) = match url.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (url, None),
        };
        let file = path
            .trim_start_matches("sqlite://")
            .trim_start_matches("sqlite:");
        if file.is_empty() || file == ":memory:" {
            return Err(("a SQLite HA store needs a database file".to_string(), None));
        }
        if let Some(dir) = std::path::Path::new(file).parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    (
                        format!("cannot create directory {}", dir.display()),
                        cause(e),
                    )
                })?;
            }
        }
        Ok(match query {
            Some(q) if q.split('&').any(|kv| kv.starts_with("mode=")) => url.to_string(),
            Some(q) => format!("{path}?{q}&mode=rwc"),
            None => format!("{path}?mode=rwc"),
        })
    }

    /// Opens one connection, within [`CONNECT_TIMEOUT`].
    async fn probe(url: &str) -> std::result::Result<AnyConnection, (String, Option<Cause>)> {
        match tokio::time::timeout(CONNECT_TIMEOUT, AnyConnection::connect(url)).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(("cannot connect".into(), cause(e))),
            Err(_) => Err((
                format!(
                    "no answer within {}",
                    humantime::format_duration(CONNECT_TIMEOUT)
                ),
                None,
            )),
        }
    }

    /// Sets the database up (SQLite: WAL mode) and creates the tables; an error says what
    /// failed and keeps the driver's error as its cause.
    async fn prepare(
        dialect: Dialect,
        conn: &mut AnyConnection,
    ) -> std::result::Result<(), (String, Option<Cause>)> {
        let failed = |e: sqlx::Error| ("creating the HA tables".to_string(), cause(e));
        match dialect {
            Dialect::Sqlite => {
                sqlx::query(&format!("PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}"))
                    .execute(&mut *conn)
                    .await
                    .map_err(failed)?;
                // Switching to WAL needs an exclusive lock that the busy timeout does not wait
                // for: retry while another process holds the file (it is WAL once switched).
                let deadline = Instant::now() + Duration::from_millis(SQLITE_BUSY_TIMEOUT_MS);
                loop {
                    match sqlx::query("PRAGMA journal_mode = WAL")
                        .execute(&mut *conn)
                        .await
                    {
                        Ok(_) => break,
                        Err(e) if Instant::now() >= deadline => {
                            return Err((
                                "creating the HA tables: cannot switch to WAL mode".into(),
                                cause(e),
                            ))
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
                let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(failed)?;
                for ddl in dialect.schema() {
                    sqlx::query(&ddl).execute(&mut *tx).await.map_err(failed)?;
                }
                tx.commit().await.map_err(failed)
            }
            Dialect::Postgres => {
                // CREATE TABLE IF NOT EXISTS is not safe against a concurrent CREATE of the
                // same table in PostgreSQL: serialize with an advisory lock.
                let mut tx = conn.begin().await.map_err(failed)?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(PG_SCHEMA_LOCK)
                    .execute(&mut *tx)
                    .await
                    .map_err(failed)?;
                for ddl in dialect.schema() {
                    sqlx::query(&ddl).execute(&mut *tx).await.map_err(failed)?;
                }
                tx.commit().await.map_err(failed)
            }
        }
    }

    /// The cluster this store serves.
    pub fn cluster_id(&self) -> &str {
        &self.cluster
    }

    /// The contender (process name) this store elects.
    pub fn contender(&self) -> &str {
        &self.contender
    }

    /// A [`HaError::Store`] of this store: `reason` says what was being done, `cause` is the
    /// driver's error, if there is one (see [`scrubbed`]).
    fn store_err(&self, reason: String, cause: Option<Cause>) -> HaError {
        let (reason, source) = scrubbed(&self.secrets, reason, cause);
        HaError::Store {
            store: self.store.clone(),
            reason,
            source,
        }
    }

    /// Runs a request on the private runtime, within [`REQUEST_TIMEOUT`].
    fn run<T>(
        &self,
        op: &str,
        fut: impl Future<Output = std::result::Result<T, sqlx::Error>>,
    ) -> Result<T> {
        let rt = self.rt.as_ref().expect("the runtime lives until drop");
        match rt.block_on(async { tokio::time::timeout(REQUEST_TIMEOUT, fut).await }) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.store_err(op.to_string(), cause(e))),
            Err(_) => Err(self.store_err(
                format!(
                    "{op}: no answer within {}",
                    humantime::format_duration(REQUEST_TIMEOUT)
                ),
                None,
            )),
        }
    }

    /// The rows of a query (`q` with `?` placeholders).
    fn rows(&self, op: &str, q: &str, args: &[Arg<'_>]) -> Result<Vec<AnyRow>> {
        let sql = self.dialect.sql(q);
        self.run(op, async { bind(&sql, args).fetch_all(&self.pool).await })
    }

    fn col<'r, T>(&self, op: &str, row: &'r AnyRow, i: usize) -> Result<T>
    where
        T: sqlx::Decode<'r, Any> + sqlx::Type<Any>,
    {
        row.try_get(i)
            .map_err(|e| self.store_err(op.to_string(), cause(e)))
    }

    /// Begins a write transaction that holds off any change of the leader row until it ends
    /// (PostgreSQL: a share lock on the row; SQLite: the database's write lock, taken at
    /// `BEGIN IMMEDIATE`), and reads the cluster's current token in it.
    async fn begin_fenced(
        &self,
    ) -> std::result::Result<(sqlx::Transaction<'static, Any>, Option<i64>), sqlx::Error> {
        let (mut tx, select) = match self.dialect {
            Dialect::Sqlite => (
                self.pool.begin_with("BEGIN IMMEDIATE").await?,
                "SELECT token FROM weir_ha_leader WHERE cluster_id = ?",
            ),
            Dialect::Postgres => (
                self.pool.begin().await?,
                "SELECT token FROM weir_ha_leader WHERE cluster_id = $1 FOR SHARE",
            ),
        };
        let current: Option<i64> = sqlx::query_scalar(select)
            .bind(self.cluster.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        Ok((tx, current))
    }

    /// Runs `stmts` in one transaction if `token` is the cluster's leader token, checked
    /// atomically with the writes (see the module documentation); their affected row counts.
    /// `write` names the write in errors.
    fn fenced(&self, token: FencingToken, write: String, stmts: Vec<Stmt<'_>>) -> Result<Vec<u64>> {
        let outcome = self.run(&format!("writing the {write}"), async {
            let (mut tx, current) = self.begin_fenced().await?;
            if token == 0 || current.map(|c| c as u64) != Some(token) {
                tx.rollback().await?;
                return Ok(Err(current));
            }
            let mut counts = Vec::with_capacity(stmts.len());
            for s in &stmts {
                counts.push(
                    bind(&s.sql, &s.args)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected(),
                );
            }
            tx.commit().await?;
            Ok(Ok(counts))
        })?;
        outcome.map_err(|current| HaError::Fenced {
            write,
            token,
            current: current.map_or_else(|| "none".to_string(), |c| c.to_string()),
        })
    }

    fn stmt<'a>(&self, q: &str, args: Vec<Arg<'a>>) -> Stmt<'a> {
        Stmt {
            sql: self.dialect.sql(q),
            args,
        }
    }

    /// A number of the API as a BIGINT.
    fn big(&self, v: u64, what: &str) -> Result<i64> {
        i64::try_from(v).map_err(|_| {
            self.store_err(format!("{what} {v} is out of the range of a BIGINT"), None)
        })
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX / 4)
    }
}

impl Drop for SqlHaStore {
    fn drop(&mut self) {
        let Some(rt) = self.rt.take() else { return };
        if tokio::runtime::Handle::try_current().is_ok() {
            // Dropped inside some runtime: blocking here is not allowed.
            rt.shutdown_background();
            return;
        }
        // Close the connections cleanly (SQLite checkpoints its WAL on the last close).
        let pool = self.pool.clone();
        rt.block_on(async move {
            let _ = tokio::time::timeout(Duration::from_secs(2), pool.close()).await;
        });
    }
}

impl LeaderElection for SqlHaStore {
    fn try_lead(&self, address: &str) -> Result<Option<FencingToken>> {
        let mut held = self.held.lock();
        let mine = self.big(*held, "fencing token")?;
        let sql = self.dialect.sql(
            "INSERT INTO weir_ha_leader (cluster_id, holder, address, token, lease_until_ms) \
             VALUES (?, ?, ?, 1, NOW_MS + ?) \
             ON CONFLICT (cluster_id) DO UPDATE SET \
             token = CASE WHEN weir_ha_leader.holder = excluded.holder \
             AND weir_ha_leader.token = ? \
             THEN weir_ha_leader.token ELSE weir_ha_leader.token + 1 END, \
             holder = excluded.holder, address = excluded.address, \
             lease_until_ms = excluded.lease_until_ms \
             WHERE (weir_ha_leader.holder = excluded.holder AND weir_ha_leader.token = ?) \
             OR weir_ha_leader.lease_until_ms < NOW_MS \
             RETURNING token",
        );
        let args = [
            Arg::Text(&self.cluster),
            Arg::Text(&self.contender),
            Arg::Text(address),
            Arg::Int(self.lease_ms()),
            Arg::Int(mine),
            Arg::Int(mine),
        ];
        let token: Option<i64> = self.run("taking or renewing the leadership", async {
            let row = bind(&sql, &args).fetch_optional(&self.pool).await?;
            row.map(|r| r.try_get::<i64, _>(0)).transpose()
        })?;
        *held = token.map_or(0, |t| t as u64);
        Ok(token.map(|t| t as u64))
    }

    fn resign(&self, token: FencingToken) -> Result<()> {
        let mut held = self.held.lock();
        let t = self.big(token, "fencing token")?;
        let sql = self.dialect.sql(
            "UPDATE weir_ha_leader SET lease_until_ms = 0 \
             WHERE cluster_id = ? AND holder = ? AND token = ?",
        );
        let args = [
            Arg::Text(&self.cluster),
            Arg::Text(&self.contender),
            Arg::Int(t),
        ];
        self.run("resigning the leadership", async {
            bind(&sql, &args).execute(&self.pool).await
        })?;
        if *held == token {
            *held = 0;
        }
        Ok(())
    }

    fn lease(&self) -> Duration {
        self.lease
    }
}

impl LeaderRetrieval for SqlHaStore {
    fn leader(&self) -> Result<Option<LeaderInfo>> {
        let op = "reading the leader";
        let rows = self.rows(
            op,
            "SELECT holder, address, token FROM weir_ha_leader \
             WHERE cluster_id = ? AND lease_until_ms >= NOW_MS",
            &[Arg::Text(&self.cluster)],
        )?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        Ok(Some(LeaderInfo {
            holder: self.col(op, row, 0)?,
            address: self.col(op, row, 1)?,
            token: self.col::<i64>(op, row, 2)? as u64,
        }))
    }
}

impl JobGraphStore for SqlHaStore {
    fn put(&self, token: FencingToken, graph: &JobGraphRecord) -> Result<()> {
        let record = encode_record(graph)?;
        let stmt = self.stmt(
            "INSERT INTO weir_ha_job_graphs (cluster_id, job_id, record) VALUES (?, ?, ?) \
             ON CONFLICT (cluster_id, job_id) DO UPDATE SET record = excluded.record",
            vec![
                Arg::Text(&self.cluster),
                Arg::Text(&graph.job_id),
                Arg::Bytes(&record),
            ],
        );
        self.fenced(
            token,
            format!("job graph of '{}'", graph.job_id),
            vec![stmt],
        )?;
        Ok(())
    }

    fn remove(&self, token: FencingToken, job_id: &str) -> Result<()> {
        let stmt = self.stmt(
            "DELETE FROM weir_ha_job_graphs WHERE cluster_id = ? AND job_id = ?",
            vec![Arg::Text(&self.cluster), Arg::Text(job_id)],
        );
        self.fenced(
            token,
            format!("removal of the job graph of '{job_id}'"),
            vec![stmt],
        )?;
        Ok(())
    }

    fn job_ids(&self) -> Result<Vec<String>> {
        let op = "reading the job graphs";
        let rows = self.rows(
            op,
            "SELECT job_id FROM weir_ha_job_graphs WHERE cluster_id = ? ORDER BY job_id",
            &[Arg::Text(&self.cluster)],
        )?;
        rows.iter().map(|row| self.col(op, row, 0)).collect()
    }

    fn get(&self, job_id: &str) -> Result<Option<JobGraphRecord>> {
        let op = "reading a job graph";
        let rows = self.rows(
            op,
            "SELECT record FROM weir_ha_job_graphs WHERE cluster_id = ? AND job_id = ?",
            &[Arg::Text(&self.cluster), Arg::Text(job_id)],
        )?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let bytes: Vec<u8> = self.col(op, row, 0)?;
        let what = format!("job graph '{job_id}'");
        let graph: JobGraphRecord = decode_record(&what, &bytes)?;
        if graph.job_id != job_id {
            return Err(HaError::Corrupt {
                what,
                reason: format!("it holds the job graph of '{}'", graph.job_id),
                source: None,
            });
        }
        Ok(Some(graph))
    }
}

impl SqlHaStore {
    fn result_entry(&self, op: &str, row: &AnyRow) -> Result<JobResultEntry> {
        let job_id: String = self.col(op, row, 0)?;
        let bytes: Vec<u8> = self.col(op, row, 1)?;
        let clean: i64 = self.col(op, row, 2)?;
        let what = format!("job result '{job_id}'");
        let result: JobResultRecord = decode_record(&what, &bytes)?;
        if result.job_id != job_id {
            return Err(HaError::Corrupt {
                what,
                reason: format!("it holds the result of '{}'", result.job_id),
                source: None,
            });
        }
        Ok(JobResultEntry {
            result,
            clean: clean != 0,
        })
    }
}

impl JobResultStore for SqlHaStore {
    fn put_dirty(&self, token: FencingToken, result: &JobResultRecord) -> Result<()> {
        let record = encode_record(result)?;
        let stmt = self.stmt(
            "INSERT INTO weir_ha_job_results (cluster_id, job_id, record, clean) \
             VALUES (?, ?, ?, 0) ON CONFLICT (cluster_id, job_id) \
             DO UPDATE SET record = excluded.record, clean = 0",
            vec![
                Arg::Text(&self.cluster),
                Arg::Text(&result.job_id),
                Arg::Bytes(&record),
            ],
        );
        self.fenced(
            token,
            format!("job result of '{}'", result.job_id),
            vec![stmt],
        )?;
        Ok(())
    }

    fn mark_clean(&self, token: FencingToken, job_id: &str) -> Result<()> {
        let stmt = self.stmt(
            "UPDATE weir_ha_job_results SET clean = 1 WHERE cluster_id = ? AND job_id = ?",
            vec![Arg::Text(&self.cluster), Arg::Text(job_id)],
        );
        let counts = self.fenced(
            token,
            format!("clean mark of the job result of '{job_id}'"),
            vec![stmt],
        )?;
        if counts.first().copied().unwrap_or(0) == 0 {
            return Err(HaError::NoSuchJob(job_id.to_string()));
        }
        Ok(())
    }

    fn get(&self, job_id: &str) -> Result<Option<JobResultEntry>> {
        let op = "reading a job result";
        let rows = self.rows(
            op,
            "SELECT job_id, record, clean FROM weir_ha_job_results \
             WHERE cluster_id = ? AND job_id = ?",
            &[Arg::Text(&self.cluster), Arg::Text(job_id)],
        )?;
        rows.first().map(|r| self.result_entry(op, r)).transpose()
    }

    fn dirty(&self) -> Result<Vec<JobResultEntry>> {
        let op = "reading the dirty job results";
        let rows = self.rows(
            op,
            "SELECT job_id, record, clean FROM weir_ha_job_results \
             WHERE cluster_id = ? AND clean = 0 ORDER BY job_id",
            &[Arg::Text(&self.cluster)],
        )?;
        rows.iter().map(|r| self.result_entry(op, r)).collect()
    }
}

impl CompletedCheckpointStore for SqlHaStore {
    fn add(
        &self,
        token: FencingToken,
        job_id: &str,
        pointer: &CheckpointPointer,
        retain: usize,
    ) -> Result<()> {
        let id = self.big(pointer.checkpoint_id, "checkpoint id")?;
        let retain = i64::try_from(retain.max(1)).unwrap_or(i64::MAX);
        let record = encode_record(pointer)?;
        let c = Arg::Text(&self.cluster);
        let j = Arg::Text(job_id);
        let stmts = vec![
            self.stmt(
                "INSERT INTO weir_ha_checkpoints (cluster_id, job_id, checkpoint_id, record) \
                 VALUES (?, ?, ?, ?) ON CONFLICT (cluster_id, job_id, checkpoint_id) \
                 DO UPDATE SET record = excluded.record",
                vec![c, j, Arg::Int(id), Arg::Bytes(&record)],
            ),
            self.stmt(
                "DELETE FROM weir_ha_checkpoints WHERE cluster_id = ? AND job_id = ? \
                 AND checkpoint_id NOT IN (SELECT checkpoint_id FROM weir_ha_checkpoints \
                 WHERE cluster_id = ? AND job_id = ? ORDER BY checkpoint_id DESC LIMIT ?)",
                vec![c, j, c, j, Arg::Int(retain)],
            ),
            self.stmt(
                "INSERT INTO weir_ha_checkpoint_counters (cluster_id, job_id, highest_id) \
                 VALUES (?, ?, ?) ON CONFLICT (cluster_id, job_id) DO UPDATE SET highest_id = \
                 CASE WHEN excluded.highest_id > weir_ha_checkpoint_counters.highest_id \
                 THEN excluded.highest_id ELSE weir_ha_checkpoint_counters.highest_id END",
                vec![c, j, Arg::Int(id)],
            ),
        ];
        self.fenced(
            token,
            format!("checkpoint {} of '{job_id}'", pointer.checkpoint_id),
            stmts,
        )?;
        Ok(())
    }

    fn latest(&self, job_id: &str) -> Result<Option<CheckpointPointer>> {
        let op = "reading the latest checkpoint";
        let rows = self.rows(
            op,
            "SELECT checkpoint_id, record FROM weir_ha_checkpoints \
             WHERE cluster_id = ? AND job_id = ? ORDER BY checkpoint_id DESC LIMIT 1",
            &[Arg::Text(&self.cluster), Arg::Text(job_id)],
        )?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let id: i64 = self.col(op, row, 0)?;
        let bytes: Vec<u8> = self.col(op, row, 1)?;
        let what = format!("checkpoint {id} of '{job_id}'");
        let pointer: CheckpointPointer = decode_record(&what, &bytes)?;
        if pointer.checkpoint_id as i64 != id {
            return Err(HaError::Corrupt {
                what,
                reason: format!("it points to checkpoint {}", pointer.checkpoint_id),
                source: None,
            });
        }
        Ok(Some(pointer))
    }

    fn highest_id(&self, job_id: &str) -> Result<u64> {
        let op = "reading the checkpoint-id counter";
        let rows = self.rows(
            op,
            "SELECT highest_id FROM weir_ha_checkpoint_counters \
             WHERE cluster_id = ? AND job_id = ?",
            &[Arg::Text(&self.cluster), Arg::Text(job_id)],
        )?;
        match rows.first() {
            Some(row) => Ok(self.col::<i64>(op, row, 0)? as u64),
            None => Ok(0),
        }
    }

    fn remove_job(&self, token: FencingToken, job_id: &str) -> Result<()> {
        let args = vec![Arg::Text(&self.cluster), Arg::Text(job_id)];
        let stmts = vec![
            self.stmt(
                "DELETE FROM weir_ha_checkpoints WHERE cluster_id = ? AND job_id = ?",
                args.clone(),
            ),
            self.stmt(
                "DELETE FROM weir_ha_checkpoint_counters WHERE cluster_id = ? AND job_id = ?",
                args,
            ),
        ];
        self.fenced(
            token,
            format!("removal of the checkpoints of '{job_id}'"),
            stmts,
        )?;
        Ok(())
    }
}

impl BlobStore for SqlHaStore {
    fn put(&self, token: FencingToken, job_id: &str, name: &str, bytes: &[u8]) -> Result<()> {
        let stmt = self.stmt(
            "INSERT INTO weir_ha_blobs (cluster_id, job_id, name, bytes) VALUES (?, ?, ?, ?) \
             ON CONFLICT (cluster_id, job_id, name) DO UPDATE SET bytes = excluded.bytes",
            vec![
                Arg::Text(&self.cluster),
                Arg::Text(job_id),
                Arg::Text(name),
                Arg::Bytes(bytes),
            ],
        );
        self.fenced(token, format!("blob '{name}' of '{job_id}'"), vec![stmt])?;
        Ok(())
    }

    fn get(&self, job_id: &str, name: &str) -> Result<Option<Vec<u8>>> {
        let op = "reading a blob";
        let rows = self.rows(
            op,
            "SELECT bytes FROM weir_ha_blobs WHERE cluster_id = ? AND job_id = ? AND name = ?",
            &[Arg::Text(&self.cluster), Arg::Text(job_id), Arg::Text(name)],
        )?;
        rows.first().map(|r| self.col(op, r, 0)).transpose()
    }

    fn remove_job(&self, token: FencingToken, job_id: &str) -> Result<()> {
        let stmt = self.stmt(
            "DELETE FROM weir_ha_blobs WHERE cluster_id = ? AND job_id = ?",
            vec![Arg::Text(&self.cluster), Arg::Text(job_id)],
        );
        self.fenced(
            token,
            format!("removal of the blobs of '{job_id}'"),
            vec![stmt],
        )?;
        Ok(())
    }
}

#[cfg(test)]
#[path = "../../tests/support/provision.rs"]
mod provision;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{JobOutcome, JobResultRecord};
    use std::collections::BTreeSet;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const LONG: Duration = Duration::from_secs(30);

    fn unique(name: &str) -> String {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        format!(
            "{name}-{}-{nanos}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// A SQLite URL in a fresh directory (its `sub` directory does not exist yet).
    struct TempDb {
        dir: PathBuf,
        url: String,
    }

    impl TempDb {
        fn new(name: &str) -> TempDb {
            let dir = std::env::temp_dir().join(unique(&format!("weir-ha-sql-{name}")));
            let url = format!("sqlite://{}", dir.join("sub").join("ha.db").display());
            TempDb { dir, url }
        }
    }

    impl Drop for TempDb {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn graph(id: &str, version: u32) -> JobGraphRecord {
        JobGraphRecord {
            job_id: id.into(),
            name: "wordcount".into(),
            version,
            parameters: [("input".to_string(), format!("/data/{id}"))].into(),
            config: [("parallelism.default".to_string(), "2".to_string())].into(),
            submitted_ms: 1_700_000_000_000,
        }
    }

    fn result(id: &str) -> JobResultRecord {
        JobResultRecord {
            job_id: id.into(),
            name: "wordcount".into(),
            outcome: JobOutcome::Failed("boom".into()),
            finished_ms: 1_700_000_000_500,
        }
    }

    fn pointer(id: u64) -> CheckpointPointer {
        CheckpointPointer {
            checkpoint_id: id,
            location: format!("/ckp/chk-{id}"),
        }
    }

    fn raw(s: &SqlHaStore, q: &str, args: &[Arg<'_>]) -> u64 {
        let sql = s.dialect.sql(q);
        s.run("test", async { bind(&sql, args).execute(&s.pool).await })
            .unwrap()
            .rows_affected()
    }

    fn count(s: &SqlHaStore, table: &str) -> i64 {
        let rows = s
            .rows(
                "test",
                &format!("SELECT COUNT(*) FROM {table} WHERE cluster_id = ?"),
                &[Arg::Text(&s.cluster)],
            )
            .unwrap();
        s.col("test", &rows[0], 0).unwrap()
    }

    fn assert_fenced(r: Result<()>, write: &str, token: u64, current: &str) {
        match r {
            Err(HaError::Fenced {
                write: w,
                token: t,
                current: c,
            }) => {
                assert_eq!((w.as_str(), t, c.as_str()), (write, token, current));
            }
            other => panic!("expected a fenced {write}, got {other:?}"),
        }
    }

    /// Two contenders: leadership, renewal, retrieval, resignation, takeover, and a deposed
    /// leader's writes refused without effect.
    fn scenario_two_contenders(url: &str, cluster: &str) {
        let a = SqlHaStore::connect(url, cluster, "a", LONG).unwrap();
        let b = SqlHaStore::connect(url, cluster, "b", LONG).unwrap();
        assert_eq!(b.leader().unwrap(), None);
        assert_fenced(
            JobGraphStore::put(&*a, 1, &graph("job-0", 1)),
            "job graph of 'job-0'",
            1,
            "none",
        );

        assert_eq!(a.try_lead("host-a:1").unwrap(), Some(1));
        assert_eq!(b.try_lead("host-b:1").unwrap(), None);
        assert_eq!(
            a.try_lead("host-a:2").unwrap(),
            Some(1),
            "renewal keeps the token"
        );
        assert_eq!(
            b.leader().unwrap(),
            Some(LeaderInfo {
                holder: "a".into(),
                address: "host-a:2".into(),
                token: 1,
            })
        );
        JobGraphStore::put(&*a, 1, &graph("job-1", 1)).unwrap();
        assert_fenced(
            JobGraphStore::put(&*b, 2, &graph("job-2", 1)),
            "job graph of 'job-2'",
            2,
            "1",
        );

        b.resign(1).unwrap(); // not b's: no effect
        assert_eq!(b.leader().unwrap().map(|l| l.holder), Some("a".into()));
        a.resign(1).unwrap();
        assert_eq!(b.leader().unwrap(), None, "a resigned: no one leads");
        assert_eq!(b.try_lead("host-b:1").unwrap(), Some(2));
        assert_eq!(a.try_lead("host-a:2").unwrap(), None);
        assert_eq!(
            a.leader().unwrap(),
            Some(LeaderInfo {
                holder: "b".into(),
                address: "host-b:1".into(),
                token: 2,
            })
        );
        a.resign(1).unwrap(); // stale: b keeps leading
        assert_eq!(a.leader().unwrap().map(|l| l.token), Some(2));

        // Every write of the deposed leader is refused and writes nothing.
        assert_fenced(
            JobGraphStore::put(&*a, 1, &graph("job-9", 1)),
            "job graph of 'job-9'",
            1,
            "2",
        );
        assert_fenced(
            JobGraphStore::remove(&*a, 1, "job-1"),
            "removal of the job graph of 'job-1'",
            1,
            "2",
        );
        assert_fenced(
            a.put_dirty(1, &result("job-1")),
            "job result of 'job-1'",
            1,
            "2",
        );
        assert_fenced(
            a.mark_clean(1, "job-1"),
            "clean mark of the job result of 'job-1'",
            1,
            "2",
        );
        assert_fenced(
            a.add(1, "job-1", &pointer(3), 2),
            "checkpoint 3 of 'job-1'",
            1,
            "2",
        );
        assert_fenced(
            CompletedCheckpointStore::remove_job(&*a, 1, "job-1"),
            "removal of the checkpoints of 'job-1'",
            1,
            "2",
        );
        assert_fenced(
            BlobStore::put(&*a, 1, "job-1", "input", b"x"),
            "blob 'input' of 'job-1'",
            1,
            "2",
        );
        assert_fenced(
            BlobStore::remove_job(&*a, 1, "job-1"),
            "removal of the blobs of 'job-1'",
            1,
            "2",
        );
        assert_fenced(
            JobGraphStore::put(&*b, 0, &graph("job-9", 1)),
            "job graph of 'job-9'",
            0,
            "2",
        );
        assert_eq!(b.graphs().unwrap(), vec![graph("job-1", 1)]);
        assert_eq!(JobResultStore::get(&*b, "job-1").unwrap(), None);
        assert_eq!(b.latest("job-1").unwrap(), None);
        assert_eq!(b.highest_id("job-1").unwrap(), 0);
        assert_eq!(BlobStore::get(&*b, "job-1", "input").unwrap(), None);

        // The new leader writes.
        JobGraphStore::remove(&*b, 2, "job-1").unwrap();
        assert_eq!(b.graphs().unwrap(), vec![]);
    }

    /// Round trips of every store.
    fn scenario_round_trips(url: &str, cluster: &str) {
        let s = SqlHaStore::connect(url, cluster, "solo", LONG).unwrap();
        let t = s.try_lead("h:1").unwrap().expect("alone: leads");

        // Job graphs.
        JobGraphStore::put(&*s, t, &graph("job-2", 1)).unwrap();
        JobGraphStore::put(&*s, t, &graph("job-1", 1)).unwrap();
        JobGraphStore::put(&*s, t, &graph("job-1", 2)).unwrap();
        assert_eq!(
            s.graphs().unwrap(),
            vec![graph("job-1", 2), graph("job-2", 1)]
        );
        JobGraphStore::remove(&*s, t, "job-2").unwrap();
        JobGraphStore::remove(&*s, t, "job-unknown").unwrap();
        assert_eq!(s.graphs().unwrap(), vec![graph("job-1", 2)]);

        // Job results: dirty, then clean.
        assert_eq!(JobResultStore::get(&*s, "job-1").unwrap(), None);
        s.put_dirty(t, &result("job-1")).unwrap();
        s.put_dirty(t, &result("job-2")).unwrap();
        let dirty = JobResultEntry {
            result: result("job-1"),
            clean: false,
        };
        assert_eq!(
            JobResultStore::get(&*s, "job-1").unwrap(),
            Some(dirty.clone())
        );
        assert_eq!(s.dirty().unwrap().len(), 2);
        s.mark_clean(t, "job-1").unwrap();
        s.mark_clean(t, "job-1").unwrap();
        assert_eq!(
            JobResultStore::get(&*s, "job-1").unwrap(),
            Some(JobResultEntry {
                result: result("job-1"),
                clean: true,
            })
        );
        assert_eq!(
            s.dirty().unwrap(),
            vec![JobResultEntry {
                result: result("job-2"),
                clean: false,
            }]
        );
        match s.mark_clean(t, "job-unknown") {
            Err(HaError::NoSuchJob(j)) => assert_eq!(j, "job-unknown"),
            other => panic!("expected NoSuchJob, got {other:?}"),
        }

        // Checkpoints: retain, latest, the counter.
        assert_eq!(s.latest("job-1").unwrap(), None);
        assert_eq!(s.highest_id("job-1").unwrap(), 0);
        for id in 1..=4 {
            s.add(t, "job-1", &pointer(id), 2).unwrap();
        }
        assert_eq!(s.latest("job-1").unwrap(), Some(pointer(4)));
        assert_eq!(s.highest_id("job-1").unwrap(), 4);
        assert_eq!(count(&s, "weir_ha_checkpoints"), 2, "retain 2");
        s.add(t, "job-1", &pointer(10), 1).unwrap();
        assert_eq!(count(&s, "weir_ha_checkpoints"), 1, "retain 1");
        s.add(t, "job-1", &pointer(7), 0).unwrap(); // retain 0 counts as 1; 10 is newer
        assert_eq!(s.latest("job-1").unwrap(), Some(pointer(10)));
        assert_eq!(
            s.highest_id("job-1").unwrap(),
            10,
            "the counter never goes back"
        );
        s.add(t, "job-2", &pointer(3), 5).unwrap();
        assert_eq!(s.highest_id("job-2").unwrap(), 3);
        CompletedCheckpointStore::remove_job(&*s, t, "job-1").unwrap();
        assert_eq!(s.latest("job-1").unwrap(), None);
        assert_eq!(s.highest_id("job-1").unwrap(), 0);
        assert_eq!(
            s.latest("job-2").unwrap(),
            Some(pointer(3)),
            "other jobs stay"
        );

        // Blobs.
        let big_blob: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        BlobStore::put(&*s, t, "job-1", "input", b"first").unwrap();
        BlobStore::put(&*s, t, "job-1", "input", b"second").unwrap();
        BlobStore::put(&*s, t, "job-1", "big", &big_blob).unwrap();
        BlobStore::put(&*s, t, "job-2", "input", b"other").unwrap();
        assert_eq!(
            BlobStore::get(&*s, "job-1", "input").unwrap(),
            Some(b"second".to_vec())
        );
        assert_eq!(BlobStore::get(&*s, "job-1", "big").unwrap(), Some(big_blob));
        assert_eq!(BlobStore::get(&*s, "job-1", "none").unwrap(), None);
        BlobStore::remove_job(&*s, t, "job-1").unwrap();
        assert_eq!(BlobStore::get(&*s, "job-1", "input").unwrap(), None);
        assert_eq!(BlobStore::get(&*s, "job-1", "big").unwrap(), None);
        assert_eq!(
            BlobStore::get(&*s, "job-2", "input").unwrap(),
            Some(b"other".to_vec())
        );

        // Another cluster on the same database sees none of it, and leads on its own.
        let other_cluster = format!("{cluster}-other");
        let o = SqlHaStore::connect(url, &other_cluster, "solo", LONG).unwrap();
        assert_eq!(o.leader().unwrap(), None);
        assert_eq!(o.graphs().unwrap(), vec![]);
        assert_eq!(o.dirty().unwrap(), vec![]);
        assert_eq!(o.highest_id("job-2").unwrap(), 0);
        assert_eq!(BlobStore::get(&*o, "job-2", "input").unwrap(), None);
        assert_eq!(o.try_lead("h:2").unwrap(), Some(1));
        assert_eq!(s.leader().unwrap().map(|l| l.address), Some("h:1".into()));
    }

    /// A leader writes from several threads while another contender takes over: every write
    /// that returned Ok is stored, no refused write is, and nothing commits after the takeover.
    fn scenario_takeover_race(url: &str, cluster: &str) {
        let a = SqlHaStore::connect(url, cluster, "a", LONG).unwrap();
        let b = SqlHaStore::connect(url, cluster, "b", LONG).unwrap();
        assert_eq!(a.try_lead("a:1").unwrap(), Some(1));
        let writers: Vec<_> = (0..6)
            .map(|w| {
                let a = a.clone();
                std::thread::spawn(move || {
                    let mut ok = BTreeSet::new();
                    for i in 0..100_000 {
                        let g = graph(&format!("job-{w}-{i:06}"), 1);
                        match JobGraphStore::put(&*a, 1, &g) {
                            Ok(()) => {
                                ok.insert(g.job_id);
                            }
                            Err(HaError::Fenced { .. }) => return ok,
                            Err(e) => panic!("{e}"),
                        }
                    }
                    panic!("the writer was never fenced");
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        a.resign(1).unwrap();
        assert_eq!(b.try_lead("b:1").unwrap(), Some(2));
        let at_takeover = b.graphs().unwrap().len();
        let mut ok = BTreeSet::new();
        for w in writers {
            ok.extend(w.join().unwrap());
        }
        let stored: BTreeSet<String> = b.graphs().unwrap().into_iter().map(|g| g.job_id).collect();
        assert!(!ok.is_empty());
        assert_eq!(stored, ok, "exactly the acknowledged writes are stored");
        assert_eq!(
            stored.len(),
            at_takeover,
            "nothing committed after the takeover"
        );
    }

    /// A takeover waits for a fenced write in flight: the write commits under the old token,
    /// and the new leader gets its token only after it.
    fn scenario_takeover_waits_for_writes(url: &str, cluster: &str) {
        let a = SqlHaStore::connect(url, cluster, "a", LONG).unwrap();
        let b = SqlHaStore::connect(url, cluster, "b", LONG).unwrap();
        assert_eq!(a.try_lead("a:1").unwrap(), Some(1));
        a.resign(1).unwrap();
        let rt = a.rt.as_ref().unwrap();
        let (mut tx, current) = rt.block_on(a.begin_fenced()).unwrap();
        assert_eq!(current, Some(1));
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let taker = {
            let b = b.clone();
            std::thread::spawn(move || {
                let r = b.try_lead("b:1");
                done_tx.send(()).unwrap();
                r
            })
        };
        // Checked after the commit: the transaction must end inside the runtime.
        let waited = done_rx.recv_timeout(Duration::from_millis(300)).is_err();
        let record = encode_record(&graph("job-1", 1)).unwrap();
        let insert = a
            .dialect
            .sql("INSERT INTO weir_ha_job_graphs (cluster_id, job_id, record) VALUES (?, ?, ?)");
        let args = [Arg::Text(cluster), Arg::Text("job-1"), Arg::Bytes(&record)];
        rt.block_on(async {
            bind(&insert, &args).execute(&mut *tx).await?;
            tx.commit().await
        })
        .unwrap();
        assert!(waited, "the takeover must wait for the write in flight");
        assert_eq!(taker.join().unwrap().unwrap(), Some(2));
        assert_eq!(b.graphs().unwrap(), vec![graph("job-1", 1)]);
    }

    /// A 300 ms lease: a contender that stops renewing is replaced after its lease, not before.
    fn scenario_lease_expiry(url: &str, cluster: &str) {
        let lease = Duration::from_millis(300);
        let a = SqlHaStore::connect(url, cluster, "a", lease).unwrap();
        let b = SqlHaStore::connect(url, cluster, "b", lease).unwrap();
        let a_again = SqlHaStore::connect(url, cluster, "a", lease).unwrap();
        assert_eq!(a.lease(), lease);
        let started = Instant::now();
        assert_eq!(a.try_lead("a:1").unwrap(), Some(1));
        // The lease was written before this instant, so it ends before `written + lease`.
        let written = Instant::now();
        let r = b.try_lead("b:1").unwrap();
        let r_again = a_again.try_lead("a:2").unwrap();
        if started.elapsed() < lease {
            assert_eq!(r, None, "the lease has not run out");
            assert_eq!(r_again, None, "a restarted contender holds no token");
        }
        std::thread::sleep(Duration::from_millis(120));
        let r = b.try_lead("b:1").unwrap();
        if started.elapsed() < lease {
            assert_eq!(r, None, "the lease has not run out");
        }
        std::thread::sleep(lease + Duration::from_millis(100) - written.elapsed().min(lease));
        assert_eq!(a.leader().unwrap(), None, "the lease ran out");
        assert_eq!(b.try_lead("b:1").unwrap(), Some(2));
        assert_eq!(a.try_lead("a:1").unwrap(), None, "a was replaced");
        assert_eq!(a.leader().unwrap().map(|l| l.holder), Some("b".into()));
        assert_fenced(
            JobGraphStore::put(&*a, 1, &graph("job-1", 1)),
            "job graph of 'job-1'",
            1,
            "2",
        );
    }

    #[test]
    fn sqlite_two_contenders_and_fencing() {
        let db = TempDb::new("two");
        scenario_two_contenders(&db.url, "c1");
    }

    #[test]
    fn sqlite_takeover_waits_for_writes() {
        let db = TempDb::new("wait");
        scenario_takeover_waits_for_writes(&db.url, "c1");
    }

    #[test]
    fn sqlite_lease_expiry() {
        let db = TempDb::new("lease");
        scenario_lease_expiry(&db.url, "c1");
    }

    #[test]
    fn sqlite_round_trips() {
        let db = TempDb::new("round");
        scenario_round_trips(&db.url, "c1");
        // The file is in WAL mode and can be reopened.
        let s = SqlHaStore::connect(&db.url, "c1", "solo", LONG).unwrap();
        let rows = s.rows("test", "PRAGMA journal_mode", &[]).unwrap();
        assert_eq!(s.col::<String>("test", &rows[0], 0).unwrap(), "wal");
        assert_eq!(s.graphs().unwrap(), vec![graph("job-1", 2)]);
    }

    #[test]
    fn sqlite_takeover_race() {
        let db = TempDb::new("race");
        scenario_takeover_race(&db.url, "c1");
    }

    #[test]
    fn sqlite_concurrent_threads_and_processes_share_the_file() {
        let db = TempDb::new("threads");
        // Two stores (as two processes would) connecting at once.
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| SqlHaStore::connect(&db.url, "c1", "a", LONG).unwrap());
            let b = s.spawn(|| SqlHaStore::connect(&db.url, "c1", "b", LONG).unwrap());
            (a.join().unwrap(), b.join().unwrap())
        });
        let t = a.try_lead("a:1").unwrap().unwrap();
        std::thread::scope(|s| {
            for w in 0..8 {
                let a = &a;
                s.spawn(move || {
                    for i in 0..15 {
                        let id = format!("job-{w}-{i}");
                        JobGraphStore::put(&**a, t, &graph(&id, 1)).unwrap();
                        a.add(t, &id, &pointer(1), 1).unwrap();
                        assert_eq!(a.try_lead("a:1").unwrap(), Some(t));
                    }
                });
            }
            s.spawn(|| {
                for _ in 0..30 {
                    assert_eq!(b.try_lead("b:1").unwrap(), None);
                    assert_eq!(b.leader().unwrap().map(|l| l.token), Some(t));
                }
            });
        });
        assert_eq!(b.graphs().unwrap().len(), 120);
    }

    #[test]
    fn sqlite_corrupt_records_are_errors_naming_them() {
        let db = TempDb::new("corrupt");
        let s = SqlHaStore::connect(&db.url, "c1", "a", LONG).unwrap();
        let t = s.try_lead("a:1").unwrap().unwrap();
        JobGraphStore::put(&*s, t, &graph("job-1", 1)).unwrap();
        JobGraphStore::put(&*s, t, &graph("job-2", 1)).unwrap();
        s.put_dirty(t, &result("job-1")).unwrap();
        s.add(t, "job-1", &pointer(5), 1).unwrap();

        // Flip the last byte of one job graph.
        let rows = s
            .rows(
                "test",
                "SELECT record FROM weir_ha_job_graphs WHERE cluster_id = ? AND job_id = ?",
                &[Arg::Text("c1"), Arg::Text("job-1")],
            )
            .unwrap();
        let mut bytes: Vec<u8> = s.col("test", &rows[0], 0).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        let q = "UPDATE weir_ha_job_graphs SET record = ? WHERE cluster_id = ? AND job_id = ?";
        assert_eq!(
            raw(
                &s,
                q,
                &[Arg::Bytes(&bytes), Arg::Text("c1"), Arg::Text("job-1")]
            ),
            1
        );
        match s.graphs() {
            Err(HaError::Corrupt { what, .. }) => assert_eq!(what, "job graph 'job-1'"),
            other => panic!("expected a corrupt job graph, got {other:?}"),
        }

        let garbage = b"not a record".as_slice();
        let q = "UPDATE weir_ha_job_results SET record = ? WHERE cluster_id = ? AND job_id = ?";
        raw(
            &s,
            q,
            &[Arg::Bytes(garbage), Arg::Text("c1"), Arg::Text("job-1")],
        );
        let e = JobResultStore::get(&*s, "job-1").unwrap_err();
        assert!(e.to_string().contains("job result 'job-1'"), "{e}");
        assert!(matches!(s.dirty(), Err(HaError::Corrupt { .. })));

        let q = "UPDATE weir_ha_checkpoints SET record = ? WHERE cluster_id = ? AND job_id = ?";
        raw(
            &s,
            q,
            &[Arg::Bytes(garbage), Arg::Text("c1"), Arg::Text("job-1")],
        );
        match s.latest("job-1") {
            Err(HaError::Corrupt { what, .. }) => assert_eq!(what, "checkpoint 5 of 'job-1'"),
            other => panic!("expected a corrupt checkpoint pointer, got {other:?}"),
        }

        // A record of another job under this job's key is corrupt too.
        let other = encode_record(&graph("job-2", 1)).unwrap();
        let q = "UPDATE weir_ha_job_graphs SET record = ? WHERE cluster_id = ? AND job_id = ?";
        raw(
            &s,
            q,
            &[Arg::Bytes(&other), Arg::Text("c1"), Arg::Text("job-1")],
        );
        let e = s.graphs().unwrap_err();
        assert!(e.to_string().contains("job graph 'job-1'"), "{e}");
    }

    #[test]
    fn unreachable_database_is_named_without_its_password() {
        let started = Instant::now();
        let e = SqlHaStore::connect("postgres://postgres@127.0.0.1:1/weir", "c", "a", LONG)
            .unwrap_err();
        match &e {
            HaError::Unreachable {
                store,
                reason,
                source,
            } => {
                assert_eq!(store, "postgres://postgres@127.0.0.1:1/weir");
                // The driver's error is the source, not part of the message.
                assert_eq!(reason, "cannot connect");
                let source = source.as_ref().expect("the driver's error");
                assert!(!e.to_string().contains(&source.to_string()), "{e}");
            }
            other => panic!("expected unreachable, got {other:?}"),
        }
        let e =
            SqlHaStore::connect("postgres://u:secret@127.0.0.1:1/x", "c", "a", LONG).unwrap_err();
        assert!(matches!(e, HaError::Unreachable { .. }), "{e:?}");
        let text = format!("{e} {e:?}");
        assert!(!text.contains("secret"), "{text}");
        assert!(text.contains("postgres://u:***@127.0.0.1:1/x"), "{text}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );

        // A SQLite file that cannot be created.
        let e = SqlHaStore::connect("sqlite:///proc/weir-no/ha.db", "c", "a", LONG).unwrap_err();
        assert!(matches!(e, HaError::Unreachable { .. }), "{e:?}");
        assert!(
            e.to_string().contains("sqlite:///proc/weir-no/ha.db"),
            "{e}"
        );
    }

    #[test]
    fn a_cause_showing_a_password_is_kept_as_scrubbed_text() {
        let secrets = vec!["hunter2".to_string()];
        let (reason, source) = scrubbed(
            &secrets,
            "cannot connect".into(),
            cause(std::io::Error::other("bad url postgres://u:hunter2@h")),
        );
        assert_eq!(reason, "cannot connect: bad url postgres://u:***@h");
        assert!(source.is_none());
        let (reason, source) = scrubbed(
            &secrets,
            "cannot connect".into(),
            cause(std::io::Error::other("connection refused")),
        );
        assert_eq!(reason, "cannot connect");
        assert_eq!(
            source.map(|s| s.to_string()).as_deref(),
            Some("connection refused")
        );
    }

    #[test]
    fn urls_are_redacted() {
        let r = |u: &str| redact(u).0;
        assert_eq!(r("postgres://u:pw@h:5/db"), "postgres://u:***@h:5/db");
        assert_eq!(r("postgres://u@h:5/db"), "postgres://u@h:5/db");
        assert_eq!(
            r("postgres://h/db?user=u&password=pw&sslmode=off"),
            "postgres://h/db?user=u&password=***&sslmode=off"
        );
        assert_eq!(r("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
        assert_eq!(redact("postgres://u:p@ss@h/db").1, vec!["p@ss".to_string()]);
        assert_eq!(
            Dialect::Postgres.sql("a = ? AND b = ?"),
            "a = $1 AND b = $2"
        );
    }

    #[test]
    fn postgres_scenarios() {
        // `$WEIR_POSTGRES_URL`, else the throwaway server `.ci/postgres.sh` starts (once; it
        // serialises concurrent callers).
        let url = match std::env::var("WEIR_POSTGRES_URL") {
            Ok(url) => url,
            Err(_) => {
                let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
                super::provision::provision(&root, ".ci/postgres.sh", "starting PostgreSQL")
                    .unwrap_or_else(|e| panic!("{e}"))
            }
        };
        let cluster = unique("test");
        scenario_two_contenders(&url, &format!("{cluster}-two"));
        scenario_round_trips(&url, &format!("{cluster}-round"));
        scenario_takeover_race(&url, &format!("{cluster}-race"));
        scenario_takeover_waits_for_writes(&url, &format!("{cluster}-wait"));
        scenario_lease_expiry(&url, &format!("{cluster}-lease"));
    }
}
