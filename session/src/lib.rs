//! The session runtime: one long-lived runtime that runs many jobs, with high availability.
//!
//! A [`SessionRuntime`] accepts jobs concurrently ([`SessionRuntime::submit`] → [`SessionJob`]
//! with status, result and cancel), runs their tasks on the process's shared task pool
//! ([`weir_engine::pool`]: no thread is spawned per task per job once the pool is warm), and takes
//! part in leader election through its [`HaServices`]. Only the leader runs jobs.
//!
//! Per job, the leader writes to the persistence services: blobs and the job graph at submit
//! (so a new leader can recover the job), the checkpoint pointers while it runs, and when it
//! ends a *dirty* result, then the cleanup (job graph, checkpoints, blobs), then marks the
//! result *clean*. Every write carries the leader's fencing token. With
//! `high-availability.job-recovery.enabled = false` these stores are embedded: a runtime
//! running many short jobs writes nothing per job, while leader election stays on.
//!
//! Invariants:
//! - A job is persisted only after it was built successfully (unknown names and bad options
//!   are refused before anything is written), and a submit that fails after a write removes
//!   what it wrote.
//! - A new leader first finishes the cleanup of dirty results, then recovers every job graph
//!   that has no result: a finished job is never run again.
//! - Losing leadership (a lease that could not be renewed in time, or a takeover) suspends
//!   every job: they are cancelled without a result, and the new leader recovers them from
//!   their latest completed checkpoint (whose pointer a deposed leader cannot write).

pub mod checkpoints;
pub mod client;
pub mod error;
pub mod job;
pub mod registry;
pub mod server;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use serde::Serialize;

use weir_engine::{CommitFence, CommitRefused, Config, JobStatus, StreamEnv};
use weir_ha::{
    now_ms, FencingToken, HaError, HaOptions, HaServices, JobGraphRecord, JobOutcome,
    JobResultRecord,
};

pub use error::{Result, SessionError};

use error::report;

pub use client::SessionClient;
pub use job::{SessionJob, SessionJobStatus};
pub use registry::{JobBuilder, JobContext, JobRegistry, JobSubmission};

use job::JobEntry;

/// What happens in a session runtime (for logs and tests).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum SessionEvent {
    /// This runtime became the leader.
    Leading {
        /// Its fencing token.
        token: FencingToken,
        /// Its REST server's URL.
        address: String,
    },
    /// This runtime lost leadership.
    LostLeadership {
        /// The token it held.
        token: FencingToken,
    },
    /// A job was recovered from the job graph store.
    Recovered {
        /// The job.
        job_id: String,
        /// The checkpoint it restores, if any.
        checkpoint: Option<u64>,
    },
    /// A job of the job graph store could not be recovered (it ends as failed).
    RecoveryFailed {
        /// The job.
        job_id: String,
        /// Why.
        error: String,
    },
    /// A job ended (its result is recorded).
    Ended {
        /// The job.
        job_id: String,
        /// How.
        outcome: JobOutcome,
    },
    /// A job was suspended (leadership lost or shutdown).
    Suspended {
        /// The job.
        job_id: String,
    },
}

/// A listener of [`SessionEvent`]s.
pub type EventListener = Arc<dyn Fn(&SessionEvent) + Send + Sync>;

/// Options of a session runtime.
#[derive(Clone)]
pub struct SessionOptions {
    /// The `high-availability.*` options.
    pub ha: HaOptions,
    /// This process's name in leader election (unique in the cluster).
    pub contender: String,
    /// The configuration every job starts from (a submission's options are applied on top).
    pub config: Config,
    /// The REST server of the runtime ([`server`]: API, submissions, metrics, dashboard);
    /// none = in-process only.
    pub rest: Option<weir_engine::rest::RestOptions>,
    /// Called for every [`SessionEvent`].
    pub on_event: Option<EventListener>,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            ha: HaOptions::default(),
            contender: format!("weir-{}", std::process::id()),
            config: Config::default(),
            rest: None,
            on_event: None,
        }
    }
}

struct Leadership {
    token: Option<FencingToken>,
    valid_until: Instant,
}

pub(crate) struct Inner {
    registry: JobRegistry,
    ha: HaServices,
    options: SessionOptions,
    leadership: Mutex<Leadership>,
    jobs: Mutex<HashMap<String, Arc<JobEntry>>>,
    /// Every job this runtime ran, as its REST server shows them.
    directory: weir_engine::rest::JobDirectory,
    /// Submits hold the read side while they persist and register a job; recovery the write.
    registration: parking_lot::RwLock<()>,
    stopping: AtomicBool,
    wake: (Mutex<()>, Condvar),
    address: String,
}

/// A long-lived runtime that runs jobs of a [`JobRegistry`] (see the module docs).
pub struct SessionRuntime {
    inner: Arc<Inner>,
    leader_thread: Option<std::thread::JoinHandle<()>>,
    watchdog: Option<std::thread::JoinHandle<()>>,
    server: Option<weir_engine::rest::RestServer>,
}

impl SessionRuntime {
    /// Opens the HA services (an unreachable store is an error naming it), starts the request
    /// server if asked, and runs for leadership (this returns after the first attempt: a
    /// runtime without HA, or the first of a cluster, leads at once).
    ///
    /// # Errors
    ///
    /// Returns [`SessionError::Ha`] when the HA services cannot be opened (a bad
    /// `high-availability.*` option, an unreachable or failing store),
    /// [`SessionError::Rest`] when the REST server cannot start, and
    /// [`SessionError::Start`] when a thread cannot be started.
    pub fn start(registry: JobRegistry, options: SessionOptions) -> Result<SessionRuntime> {
        let ha = HaServices::open(&options.ha, &options.contender)?;
        let directory = weir_engine::rest::JobDirectory::new();
        let slot: server::RuntimeSlot = Arc::default();
        let server = match &options.rest {
            Some(rest) => Some(server::start(
                rest.clone(),
                directory.clone(),
                slot.clone(),
            )?),
            None => None,
        };
        let address = server.as_ref().map(|s| s.url()).unwrap_or_default();
        let inner = Arc::new(Inner {
            registry,
            ha,
            options,
            leadership: Mutex::new(Leadership {
                token: None,
                valid_until: Instant::now(),
            }),
            jobs: Mutex::new(HashMap::new()),
            directory,
            registration: parking_lot::RwLock::new(()),
            stopping: AtomicBool::new(false),
            wake: (Mutex::new(()), Condvar::new()),
            address,
        });
        let _ = slot.set(Arc::downgrade(&inner));
        inner.campaign();
        let i2 = inner.clone();
        let watchdog = std::thread::Builder::new()
            .name("weir-leader-watchdog".into())
            .spawn(move || i2.watchdog())
            .map_err(|source| SessionError::Start {
                what: "leader watchdog".into(),
                source,
            })?;
        let i2 = inner.clone();
        let leader_thread = std::thread::Builder::new()
            .name("weir-leader".into())
            .spawn(move || i2.leader_loop())
            .map_err(|source| SessionError::Start {
                what: "leader thread".into(),
                source,
            })?;
        Ok(SessionRuntime {
            inner,
            leader_thread: Some(leader_thread),
            watchdog: Some(watchdog),
            server,
        })
    }

    /// Submits a job; it runs when this returns. Refused (nothing written) if this runtime does
    /// not lead, the name is not registered, or an option is unknown or bad.
    ///
    /// # Errors
    ///
    /// Returns [`SessionError::NotLeader`] when this runtime does not lead,
    /// [`SessionError::UnknownJob`] when the name is not registered, [`SessionError::JobStart`]
    /// when an option is unknown or bad, or the job cannot be built or started, and
    /// [`SessionError::Ha`] when persisting it fails ([`HaError::Fenced`] if this runtime was
    /// deposed meanwhile).
    pub fn submit(&self, submission: JobSubmission) -> Result<SessionJob> {
        self.inner.submit(submission)
    }

    /// A handle to a job running on this runtime.
    ///
    /// # Errors
    ///
    /// Returns [`SessionError::NoSuchJob`] when `job_id` is not running on this runtime.
    pub fn job(&self, job_id: &str) -> Result<SessionJob> {
        self.inner
            .jobs
            .lock()
            .get(job_id)
            .map(|e| SessionJob { entry: e.clone() })
            .ok_or_else(|| SessionError::NoSuchJob(job_id.to_string()))
    }

    /// The status of a job: running here, or from the job result store, or waiting for
    /// recovery in the job graph store.
    ///
    /// # Errors
    ///
    /// Returns [`SessionError::NoSuchJob`] when no store knows `job_id`, and [`SessionError::Ha`]
    /// when reading the job result or job graph store fails.
    pub fn status(&self, job_id: &str) -> Result<SessionJobStatus> {
        self.inner.status(job_id)
    }

    /// Ids of the jobs running here.
    pub fn running_jobs(&self) -> Vec<String> {
        let mut v: Vec<String> = self.inner.jobs.lock().keys().cloned().collect();
        v.sort();
        v
    }

    /// The fencing token while this runtime leads.
    pub fn leader_token(&self) -> Option<FencingToken> {
        self.inner.token()
    }

    /// Waits until this runtime leads (true) or `timeout` passed (false).
    pub fn wait_for_leadership(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.inner.token().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.inner.token().is_some()
    }

    /// The REST server's URL, e.g. `http://127.0.0.1:8081` (empty without one).
    pub fn address(&self) -> &str {
        &self.inner.address
    }

    /// The HA services of this runtime.
    pub fn ha(&self) -> &HaServices {
        &self.inner.ha
    }

    /// Stops: suspends every running job (a standby recovers them when job recovery is on),
    /// resigns leadership and stops the server.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        {
            // Under the lock the waiting threads check `stopping` with: no lost wake-up.
            let _g = self.inner.wake.0.lock();
            self.inner.stopping.store(true, Ordering::Release);
            self.inner.wake.1.notify_all();
        }
        for t in [self.leader_thread.take(), self.watchdog.take()]
            .into_iter()
            .flatten()
        {
            let _ = t.join();
        }
        let token = self.inner.leadership.lock().token;
        self.inner.lose_leadership();
        // Resign only once the jobs stopped: a standby must not run them alongside.
        self.inner.wait_for_suspended(Duration::from_secs(60));
        if let Some(t) = token {
            let _ = self.inner.ha.leader.election.resign(t);
        }
        if let Some(s) = self.server.take() {
            s.shutdown();
        }
    }
}

impl Drop for SessionRuntime {
    fn drop(&mut self) {
        if self.leader_thread.is_some() {
            self.stop();
        }
    }
}

impl Inner {
    fn emit(&self, e: SessionEvent) {
        tracing::info!(?e, "session");
        if let Some(f) = &self.options.on_event {
            f(&e);
        }
    }

    pub(crate) fn token(&self) -> Option<FencingToken> {
        let l = self.leadership.lock();
        match l.token {
            Some(t) if Instant::now() < l.valid_until => Some(t),
            _ => None,
        }
    }

    fn not_leader(&self) -> SessionError {
        let leader = self
            .ha
            .leader
            .retrieval
            .leader()
            .ok()
            .flatten()
            .map(|l| l.address);
        SessionError::NotLeader { leader }
    }

    /// How long after sending a renewal this runtime still acts as leader: four fifths of the
    /// lease, so that it has stopped its jobs before any other contender can take over.
    fn validity(&self) -> Duration {
        self.ha.leader.election.lease() * 4 / 5
    }

    /// One round of leader election: take or renew the lease; recover jobs on a new token.
    fn campaign(self: &Arc<Self>) {
        let sent = Instant::now();
        match self.ha.leader.election.try_lead(&self.address) {
            Ok(Some(token)) => {
                let valid_until = sent + self.validity();
                if Instant::now() >= valid_until {
                    // The answer came too late to act on; the next round renews.
                    return;
                }
                let held = {
                    let mut l = self.leadership.lock();
                    let held = l.token;
                    if held == Some(token) {
                        l.valid_until = valid_until;
                    }
                    held
                };
                if held == Some(token) {
                    return;
                }
                if held.is_some() {
                    self.lose_leadership();
                }
                {
                    let mut l = self.leadership.lock();
                    l.token = Some(token);
                    l.valid_until = valid_until;
                }
                self.ha.fence.set(token);
                self.emit(SessionEvent::Leading {
                    token,
                    address: self.address.clone(),
                });
                if let Err(e) = self.recover(token) {
                    tracing::error!("job recovery failed: {}; giving leadership up", report(&e));
                    self.lose_leadership();
                    let _ = self.ha.leader.election.resign(token);
                }
            }
            Ok(None) => {
                if self.leadership.lock().token.is_some() {
                    self.lose_leadership();
                }
            }
            Err(e) => {
                tracing::warn!("leader election: {}", report(&e));
                if self.leadership.lock().token.is_some() && self.token().is_none() {
                    self.lose_leadership();
                }
            }
        }
    }

    /// Renews the lease during a long recovery; an error if leadership was lost.
    fn renew_if_due(&self, token: FencingToken) -> Result<()> {
        let due = {
            let l = self.leadership.lock();
            l.valid_until.saturating_duration_since(Instant::now()) < self.validity() / 2
        };
        if due {
            let sent = Instant::now();
            if self.ha.leader.election.try_lead(&self.address)? == Some(token) {
                let mut l = self.leadership.lock();
                if l.token == Some(token) {
                    l.valid_until = sent + self.validity();
                }
            }
        }
        if self.token() != Some(token) {
            return Err(HaError::Fenced {
                write: "job recovery".into(),
                token,
                current: "unknown (leadership lost)".into(),
            }
            .into());
        }
        Ok(())
    }

    fn leader_loop(self: Arc<Self>) {
        let lease = self.ha.leader.election.lease();
        let period = (lease / 3).max(Duration::from_millis(20));
        loop {
            {
                let mut g = self.wake.0.lock();
                if self.stopping.load(Ordering::Acquire) {
                    return;
                }
                self.wake.1.wait_for(&mut g, period);
                if self.stopping.load(Ordering::Acquire) {
                    return;
                }
            }
            self.campaign();
        }
    }

    /// Stops acting as leader when the lease runs out without a renewal, even while the
    /// leader thread is blocked in a request to the store.
    fn watchdog(self: Arc<Self>) {
        loop {
            let until = {
                let l = self.leadership.lock();
                match l.token {
                    Some(_) => l.valid_until,
                    None => Instant::now() + Duration::from_millis(50),
                }
            };
            {
                let mut g = self.wake.0.lock();
                if self.stopping.load(Ordering::Acquire) {
                    return;
                }
                self.wake.1.wait_until(&mut g, until);
                if self.stopping.load(Ordering::Acquire) {
                    return;
                }
            }
            let expired = {
                let l = self.leadership.lock();
                l.token.is_some() && Instant::now() >= l.valid_until
            };
            if expired {
                tracing::warn!("the leader lease ran out without a renewal: suspending every job");
                self.lose_leadership();
            }
        }
    }

    fn lose_leadership(&self) {
        let token = {
            let mut l = self.leadership.lock();
            l.token.take()
        };
        self.ha.fence.clear();
        let jobs: Vec<Arc<JobEntry>> = self.jobs.lock().values().cloned().collect();
        for j in &jobs {
            j.suspend();
        }
        if let Some(token) = token {
            self.emit(SessionEvent::LostLeadership { token });
        }
    }

    /// Waits (at most `timeout`) until no suspended job is still stopping.
    fn wait_for_suspended(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self
            .jobs
            .lock()
            .values()
            .any(|j| j.suspending.load(Ordering::Acquire))
        {
            if Instant::now() >= deadline {
                tracing::warn!("suspended jobs did not stop within {timeout:?}");
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The configuration of a job: the runtime's, the submission's options on top; its
    /// checkpoints go to a directory of its own, per leader term (`<root>/<job>/term-<token>`),
    /// so that a deposed leader's last checkpoints and a new leader's never share files.
    fn job_config(&self, record: &JobGraphRecord, token: FencingToken) -> Result<Config> {
        let mut config = self.options.config.clone();
        for (k, v) in &record.config {
            config.set(k, v).map_err(|e| SessionError::JobStart {
                job: record.name.clone(),
                message: e.to_string(),
            })?;
        }
        config.validate().map_err(|e| SessionError::JobStart {
            job: record.name.clone(),
            message: e.to_string(),
        })?;
        config.job_name = record.name.clone();
        // The runtime's REST server shows every job: a job serves none of its own.
        config.rest_port = None;
        let recovery = self.ha.persistence.job_recovery;
        if !config.checkpoint_interval.is_zero() || !config.checkpoint_dir.is_empty() {
            let root = if !config.checkpoint_dir.is_empty() {
                PathBuf::from(&config.checkpoint_dir)
            } else if recovery {
                self.options.ha.checkpoint_root()?
            } else {
                return Ok(config); // the job's own check names the missing directory
            };
            config.checkpoint_dir = root
                .join(&record.job_id)
                .join(format!("term-{token}"))
                .display()
                .to_string();
        }
        Ok(config)
    }

    fn submit(self: &Arc<Self>, sub: JobSubmission) -> Result<SessionJob> {
        let token = self.token().ok_or_else(|| self.not_leader())?;
        let entry = self.registry.get(&sub.name)?;
        let record = JobGraphRecord {
            job_id: new_job_id(&sub.name),
            name: sub.name.clone(),
            version: entry.version,
            parameters: sub.parameters.clone(),
            config: sub.config.clone(),
            submitted_ms: now_ms(),
        };
        let artifacts = sub.artifacts;
        let read = |name: &str| Ok(artifacts.get(name).map(|a| a.as_bytes().to_vec()));
        let env = self.build(&record, token, false, &read)?;
        // Persisting and registering the job is one step for recovery (which holds the write
        // side): a recovery never sees a stored graph whose job is about to start here.
        let _term = self.registration.read();
        if self.token() != Some(token) {
            return Err(self.not_leader());
        }
        // Persist: blobs first (a recovered job needs them), then the graph.
        let p = &self.ha.persistence;
        let persisted = (|| {
            for (name, a) in &artifacts {
                p.blobs.put(token, &record.job_id, name, a.as_bytes())?;
            }
            p.job_graphs.put(token, &record)
        })();
        if let Err(e) = persisted {
            let _ = p.blobs.remove_job(token, &record.job_id);
            if matches!(e, HaError::Fenced { .. }) {
                self.lose_leadership();
            }
            return Err(e.into());
        }
        match self.run(env, &record, token) {
            Ok(job) => Ok(job),
            Err(e) => {
                let _ = p.job_graphs.remove(token, &record.job_id);
                let _ = p.blobs.remove_job(token, &record.job_id);
                Err(e)
            }
        }
    }

    /// Builds a job from its record (not started). A recovered job with checkpoint storage
    /// restores its latest completed checkpoint; one without starts from the beginning.
    fn build(
        self: &Arc<Self>,
        record: &JobGraphRecord,
        token: FencingToken,
        recovered: bool,
        artifacts: &dyn Fn(&str) -> Result<Option<Vec<u8>>>,
    ) -> Result<StreamEnv> {
        let entry = self.registry.get(&record.name)?;
        if entry.version != record.version {
            return Err(SessionError::JobStart {
                job: record.job_id.clone(),
                message: format!(
                    "it was submitted as '{}' version {}, but version {} is registered",
                    record.name, record.version, entry.version
                ),
            });
        }
        let mut config = self.job_config(record, token)?;
        let recoverable = self.ha.persistence.job_recovery && !config.checkpoint_dir.is_empty();
        if recovered && recoverable {
            config.restore_path = "latest".into();
        }
        let retained = config.retained_checkpoints;
        let dir = config.checkpoint_dir.clone();
        let env = StreamEnv::with_config(config);
        env.set_job_id(&record.job_id);
        env.set_commit_fence(commit_fence(Arc::downgrade(self), &record.job_id, token));
        if recoverable {
            env.set_checkpoint_storage(Arc::new(checkpoints::HaCheckpointStorage {
                files: weir_state::checkpoint::LocalCheckpointStorage::new(&dir),
                store: self.ha.persistence.checkpoints.clone(),
                job_id: record.job_id.clone(),
                token,
                retain: retained,
            }));
        }
        let ctx = JobContext {
            job_id: &record.job_id,
            name: &record.name,
            parameters: &record.parameters,
            artifacts,
            recovered,
        };
        (entry.build)(&ctx, &env).map_err(|e| SessionError::JobStart {
            job: record.name.clone(),
            message: e.to_string(),
        })?;
        Ok(env)
    }

    /// Starts a built job and watches it to its end.
    fn run(
        self: &Arc<Self>,
        env: StreamEnv,
        record: &JobGraphRecord,
        token: FencingToken,
    ) -> Result<SessionJob> {
        if self.jobs.lock().contains_key(&record.job_id) {
            return Err(SessionError::JobStart {
                job: record.job_id.clone(),
                message: "it is already running on this runtime".into(),
            });
        }
        let handle = env.start().map_err(|e| SessionError::JobStart {
            job: record.name.clone(),
            message: e.to_string(),
        })?;
        let entry = JobEntry::new(&record.job_id, &record.name);
        *entry.canceller.lock() = Some(handle.canceller());
        self.directory.register(handle.observer());
        self.jobs
            .lock()
            .insert(record.job_id.clone(), entry.clone());
        if self.token() != Some(token) {
            // Leadership was lost while the job started: suspend it like the others.
            entry.suspend();
        }
        let me = self.clone();
        let e2 = entry.clone();
        let canceller = handle.canceller();
        if let Err(e) =
            weir_engine::pool::TaskPool::shared().spawn(move || me.watch(e2, handle, token))
        {
            // The closure (and the job handle in it) was dropped: the job is cancelled.
            canceller.cancel();
            self.jobs.lock().remove(&record.job_id);
            return Err(SessionError::JobStart {
                job: record.name.clone(),
                message: format!("cannot watch the job: {e}"),
            });
        }
        Ok(SessionJob { entry })
    }

    fn watch(&self, entry: Arc<JobEntry>, handle: weir_engine::JobHandle, token: FencingToken) {
        let r = handle.join();
        let finished = matches!(&r, Ok(res) if res.status == JobStatus::Finished);
        if entry.suspending.load(Ordering::Acquire) && !finished {
            // Stopped because leadership was lost (a failure caused by the cancel counts as
            // the cancel): no result; the next leader recovers the job.
            self.jobs.lock().remove(&entry.job_id);
            // It runs on the next leader now: this runtime no longer shows it.
            self.directory.remove(&entry.job_id);
            entry.set(SessionJobStatus::Suspended);
            self.emit(SessionEvent::Suspended {
                job_id: entry.job_id.clone(),
            });
            return;
        }
        let outcome = match r {
            Ok(res) if res.status == JobStatus::Finished => JobOutcome::Finished,
            Ok(_) => JobOutcome::Cancelled,
            Err(e) => JobOutcome::Failed(e.to_string()),
        };
        let record = JobResultRecord {
            job_id: entry.job_id.clone(),
            name: entry.name.clone(),
            outcome: outcome.clone(),
            finished_ms: now_ms(),
        };
        // The result first (dirty), then the cleanup, then clean; retried while this runtime
        // still leads under the job's token. The entry stays registered until then, so that a
        // recovery never takes the job for an unfinished one.
        let p = &self.ha.persistence;
        let mut delay = Duration::from_millis(50);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let recorded = p
                .job_results
                .put_dirty(token, &record)
                .and_then(|_| self.cleanup(token, &entry.job_id))
                .and_then(|_| p.job_results.mark_clean(token, &entry.job_id));
            match recorded {
                Ok(()) => break,
                Err(e @ HaError::Fenced { .. }) => {
                    tracing::warn!(
                        "job {} ended but this runtime was deposed: {}",
                        entry.job_id,
                        report(&e)
                    );
                    self.lose_leadership();
                    break;
                }
                Err(e) if attempt < 6 && self.token() == Some(token) => {
                    tracing::warn!(
                        "job {} ended; recording its result failed (attempt {attempt}): {}",
                        entry.job_id,
                        report(&e)
                    );
                    std::thread::sleep(delay);
                    delay *= 2;
                }
                Err(e) => {
                    tracing::error!(
                        "job {} ended ({outcome:?}) but its result could not be recorded: {}; \
                         a later leader may run it again",
                        entry.job_id,
                        report(&e)
                    );
                    break;
                }
            }
        }
        self.jobs.lock().remove(&entry.job_id);
        entry.set(SessionJobStatus::Ended(outcome.clone()));
        self.emit(SessionEvent::Ended {
            job_id: entry.job_id.clone(),
            outcome,
        });
    }

    /// Removes the HA data of a job that has a (dirty) result.
    fn cleanup(&self, token: FencingToken, job_id: &str) -> weir_ha::Result<()> {
        let p = &self.ha.persistence;
        p.job_graphs.remove(token, job_id)?;
        p.checkpoints.remove_job(token, job_id)?;
        p.blobs.remove_job(token, job_id)?;
        if p.job_recovery {
            if let Ok(root) = self.options.ha.checkpoint_root() {
                let dir = root.join(job_id);
                if dir.exists() {
                    if let Err(e) = std::fs::remove_dir_all(&dir) {
                        tracing::warn!("cannot remove {}: {e}", dir.display());
                    }
                }
            }
        }
        Ok(())
    }

    /// Ends a stored job that cannot run, with `error` as its result.
    fn fail_stored(
        &self,
        token: FencingToken,
        graph: &JobGraphRecord,
        error: String,
    ) -> Result<()> {
        self.emit(SessionEvent::RecoveryFailed {
            job_id: graph.job_id.clone(),
            error: error.clone(),
        });
        let p = &self.ha.persistence;
        let record = JobResultRecord {
            job_id: graph.job_id.clone(),
            name: graph.name.clone(),
            outcome: JobOutcome::Failed(error),
            finished_ms: now_ms(),
        };
        p.job_results.put_dirty(token, &record)?;
        self.cleanup(token, &graph.job_id)?;
        Ok(p.job_results.mark_clean(token, &graph.job_id)?)
    }

    /// After becoming leader: finish cleanups, then recover every job without a result.
    fn recover(self: &Arc<Self>, token: FencingToken) -> Result<()> {
        // Jobs of the previous term must have stopped before they are looked at again.
        self.wait_for_suspended(Duration::from_secs(60));
        let _term = self.registration.write();
        let p = self.ha.persistence.clone();
        for dirty in p.job_results.dirty()? {
            self.cleanup(token, &dirty.result.job_id)?;
            p.job_results.mark_clean(token, &dirty.result.job_id)?;
        }
        for job_id in p.job_graphs.job_ids()? {
            self.renew_if_due(token)?;
            let graph = match p.job_graphs.get(&job_id) {
                Ok(Some(g)) => g,
                Ok(None) => continue,
                Err(e @ HaError::Corrupt { .. }) => {
                    // This job cannot be rebuilt; the others can.
                    let unreadable = JobGraphRecord {
                        job_id: job_id.clone(),
                        name: "(unreadable)".into(),
                        version: 0,
                        parameters: Default::default(),
                        config: Default::default(),
                        submitted_ms: 0,
                    };
                    self.fail_stored(token, &unreadable, report(&e))?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if p.job_results.get(&graph.job_id)?.is_some() {
                // Finished under a previous leader: never run again.
                p.job_graphs.remove(token, &graph.job_id)?;
                continue;
            }
            if self.jobs.lock().contains_key(&graph.job_id) {
                continue;
            }
            if !p.job_recovery {
                // Embedded stores: a job of an earlier term of this process, stopped when
                // leadership was lost. Without job recovery it ends as failed.
                self.fail_stored(
                    token,
                    &graph,
                    "this runtime lost leadership while the job ran, and \
                     high-availability.job-recovery.enabled is off"
                        .into(),
                )?;
                continue;
            }
            let checkpoint = p
                .checkpoints
                .latest(&graph.job_id)?
                .map(|c| c.checkpoint_id);
            let blobs = p.blobs.clone();
            let id = graph.job_id.clone();
            let read = move |name: &str| Ok(blobs.get(&id, name)?);
            let started = self
                .build(&graph, token, true, &read)
                .and_then(|env| self.run(env, &graph, token));
            match started {
                Ok(_) => self.emit(SessionEvent::Recovered {
                    job_id: graph.job_id.clone(),
                    checkpoint,
                }),
                Err(SessionError::Ha(
                    e @ (HaError::Fenced { .. }
                    | HaError::Store { .. }
                    | HaError::Unreachable { .. }),
                )) => {
                    // The store, not the job: let the next leader term try again.
                    return Err(HaError::Store {
                        store: "job recovery".into(),
                        reason: format!("cannot recover job {}", graph.job_id),
                        source: Some(Arc::new(e)),
                    }
                    .into());
                }
                Err(e) => self.fail_stored(token, &graph, report(&e))?,
            }
        }
        Ok(())
    }

    pub(crate) fn status(&self, job_id: &str) -> Result<SessionJobStatus> {
        if let Some(e) = self.jobs.lock().get(job_id) {
            return Ok(e.status.lock().clone());
        }
        let p = &self.ha.persistence;
        if let Some(r) = p.job_results.get(job_id)? {
            return Ok(SessionJobStatus::Ended(r.result.outcome));
        }
        if p.job_graphs.job_ids()?.iter().any(|id| id == job_id) {
            return Ok(SessionJobStatus::Recovering);
        }
        Err(SessionError::NoSuchJob(job_id.to_string()))
    }

    pub(crate) fn submit_remote(self: &Arc<Self>, sub: JobSubmission) -> Result<SessionJob> {
        self.submit(sub)
    }
}

/// The commit fence of job `job_id` started under `token`: it may make external commits only
/// while `runtime` still leads under that token. The check is local and cheap, and exact enough
/// because a leader's own validity ends before any other contender can take over.
fn commit_fence(runtime: std::sync::Weak<Inner>, job_id: &str, token: FencingToken) -> CommitFence {
    let job_id = job_id.to_string();
    CommitFence::new(move || {
        let current = runtime.upgrade().and_then(|i| i.token());
        if current == Some(token) {
            return Ok(());
        }
        let refused = HaError::Fenced {
            write: format!("commit of job '{job_id}'"),
            token,
            current: match current {
                Some(t) => t.to_string(),
                None => "none (this runtime no longer leads)".into(),
            },
        };
        Err(CommitRefused {
            reason: refused.to_string(),
        })
    })
}

/// A new job id: the name and 64 random bits.
fn new_job_id(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    format!(
        "{clean}-{}",
        &weir_engine::job::overview::new_job_id()[..16]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commit_fence_refuses_jobs_of_another_token_or_a_gone_runtime() {
        let rt = SessionRuntime::start(JobRegistry::new(), SessionOptions::default()).unwrap();
        assert_eq!(rt.leader_token(), Some(1));
        let weak = Arc::downgrade(&rt.inner);
        let current = commit_fence(weak.clone(), "current", 1);
        let stale = commit_fence(weak, "stale", 7);
        current.may_commit().unwrap();
        let e = stale.may_commit().unwrap_err();
        assert!(
            e.to_string()
                .contains("stale fencing token 7: commit of job 'stale' refused"),
            "{e}"
        );
        // The runtime lost leadership (here: shut down).
        rt.shutdown();
        let e = current.may_commit().unwrap_err();
        assert!(e.to_string().contains("no longer leads"), "{e}");
    }
}
