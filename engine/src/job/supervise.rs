//! Supervising a job: coordinators started before any task, attempts run one after another
//! until one finishes, the job is cancelled, or the restart strategy gives up.

use super::*;

/// What the job handle reaches of the current attempt.
#[derive(Clone)]
pub(super) struct AttemptControl {
    pub(super) shared: Arc<JobShared>,
    pub(super) coordinator: Option<Sender<CheckpointMsg>>,
    pub(super) restored_from: Option<CompletedCheckpoint>,
}

/// State shared by every attempt of a job and its handle.
pub(super) struct JobLevel {
    pub(super) id: String,
    pub(super) config: Config,
    pub(super) plan: JobPlan,
    pub(super) log: Mutex<overview::StateLog>,
    /// The last attempt's metrics, read when it ended (an ended job still shows them).
    pub(super) final_metrics: Mutex<Option<JobMetrics>>,
    pub(super) current: Mutex<Option<AttemptControl>>,
    pub(super) cancelled: AtomicBool,
    pub(super) done: AtomicBool,
    pub(super) restarts: AtomicUsize,
    pub(super) checkpoint_stats: Arc<Mutex<CheckpointHistory>>,
    pub(super) pending_checkpoints: Arc<Mutex<BTreeMap<u64, Instant>>>,
    /// A coordinator failed while no attempt was running: the next attempt (or the ending
    /// one) fails with it.
    pub(super) coordinator_failure: Mutex<Option<JobError>>,
}

/// Validates the job, then runs it under a supervisor thread; returns once the first attempt
/// started (or failed to start).
pub(crate) fn start(mut g: Graph) -> Result<JobHandle> {
    g.config.validate()?;
    let plan = plan(&g)?;
    let level = Arc::new(JobLevel {
        id: g.job_id.clone().unwrap_or_else(overview::new_job_id),
        config: g.config.clone(),
        plan: overview::job_plan(&g, &plan),
        log: Mutex::new(overview::StateLog::new()),
        final_metrics: Mutex::new(None),
        current: Mutex::new(None),
        cancelled: AtomicBool::new(false),
        done: AtomicBool::new(false),
        restarts: AtomicUsize::new(0),
        checkpoint_stats: Arc::new(Mutex::new(CheckpointHistory::default())),
        pending_checkpoints: Arc::new(Mutex::new(BTreeMap::new())),
        coordinator_failure: Mutex::new(None),
    });
    if g.async_io {
        g.runtime = Some(
            crate::async_io::runtime(g.config.async_io_worker_threads).map_err(|e| {
                JobError::Start {
                    what: "async I/O runtime",
                    source: e,
                }
            })?,
        );
    }
    if let Err(e) = start_coordinators(&mut g, &plan, &level) {
        for (_, h) in std::mem::take(&mut g.coordinators) {
            h.close();
        }
        return Err(e);
    }
    let (first_tx, first_rx) = std::sync::mpsc::channel::<Result<()>>();
    let lv = level.clone();
    let pooled = g.config.task_threads_pooled;
    let supervisor = TaskThread::spawn(pooled, "weir-job".into(), move || {
        let r = supervise(&mut g, &plan, &lv, first_tx);
        for (_, h) in std::mem::take(&mut g.coordinators) {
            h.close();
        }
        if let Some(rt) = g.runtime.take() {
            // Requests still in flight (of a failed or cancelled job) are dropped.
            rt.shutdown_background();
        }
        if let Some(c) = lv.current.lock().take() {
            *lv.final_metrics.lock() = Some(c.shared.metrics());
        }
        {
            let mut log = lv.log.lock();
            match &r {
                Ok(JobResult {
                    status: JobStatus::Finished,
                    ..
                }) => log.enter(JobState::Finished),
                Ok(_) => log.enter(JobState::Canceled),
                Err(e) if lv.cancelled.load(Ordering::Acquire) => {
                    log.exception(e, false);
                    log.enter(JobState::Canceled)
                }
                Err(e) => {
                    log.exception(e, false);
                    log.enter(JobState::Failed)
                }
            }
        }
        lv.done.store(true, Ordering::Release);
        r
    })
    .map_err(|e| JobError::Start {
        what: "job supervisor",
        source: e,
    })?;
    match first_rx.recv() {
        Ok(Ok(())) => Ok(JobHandle {
            observer: JobObserver { level },
            rest_url: None,
            attachments: Vec::new(),
            supervisor: Some(supervisor),
        }),
        Ok(Err(e)) => {
            let _ = supervisor.join();
            Err(e)
        }
        Err(_) => match supervisor.join() {
            Ok(Err(e)) => Err(e),
            _ => Err(JobError::Internal(
                "the job supervisor ended before the job started".into(),
            )),
        },
    }
}

/// Starts the coordinators of the job's operators (one thread each). A coordinator's failure
/// fails the current attempt.
pub(super) fn start_coordinators(g: &mut Graph, plan: &Plan, level: &Arc<JobLevel>) -> Result<()> {
    let store = crate::coordination::CoordinatorStore::new();
    let weak = Arc::downgrade(level);
    let fail: Arc<dyn Fn(JobError) + Send + Sync> = Arc::new(move |e: JobError| {
        let Some(level) = weak.upgrade() else {
            return tracing::error!("{e}");
        };
        let current = level.current.lock();
        match current.as_ref() {
            Some(c) if c.shared.running.load(Ordering::Acquire) > 0 => c.shared.fail(e),
            // Between attempts: the next one fails with it.
            _ => {
                level.coordinator_failure.lock().get_or_insert(e);
            }
        }
    });
    for i in 0..g.nodes.len() {
        let Some(mut factory) = g.nodes[i].coordinator.take() else {
            continue;
        };
        let ctx = crate::coordination::CoordinatorContext {
            info: crate::coordination::CoordinatorInfo {
                name: g.nodes[i].name.clone(),
                uid: plan.uids[i].clone(),
                parallelism: plan.parallelism[i],
            },
            store: store.clone(),
        };
        let spawned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            factory.spawn(ctx, fail.clone())
        }));
        let handle = match spawned {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                return Err(JobError::Internal(format!(
                    "cannot start the coordinator of '{}': {e}",
                    g.nodes[i].name
                )))
            }
            Err(p) => {
                return Err(JobError::CoordinatorFailed {
                    operator: g.nodes[i].name.clone(),
                    message: panic_message(&*p),
                })
            }
        };
        g.coordinators.push((i, handle));
    }
    Ok(())
}

/// Runs attempts until one finishes, is cancelled, or fails beyond the restart strategy.
pub(super) fn supervise(
    g: &mut Graph,
    plan: &Plan,
    level: &JobLevel,
    first: std::sync::mpsc::Sender<Result<()>>,
) -> Result<JobResult> {
    let mut strategy = crate::restart::RestartStrategy::from_config(&g.config);
    let started = Instant::now();
    let mut restarts = 0usize;
    let mut first = Some(first);
    loop {
        // On the first attempt `start` learns a launch error from this thread's result.
        let attempt = match launch(g, plan, restarts as u32, level) {
            Ok(a) => a,
            // A coordinator failing its reset is a failure of the restart, handled by the
            // restart strategy like any other.
            Err(e @ JobError::CoordinatorFailed { .. }) if restarts > 0 => {
                if !wait_to_restart(&mut strategy, level, &e, restarts) {
                    return Err(e);
                }
                restarts += 1;
                level.restarts.store(restarts, Ordering::Release);
                continue;
            }
            Err(e) => return Err(e),
        };
        {
            let mut current = level.current.lock();
            *current = Some(attempt.control());
            level.log.lock().enter(JobState::Running);
            // A coordinator that failed while no attempt ran fails this one.
            if let Some(e) = level.coordinator_failure.lock().take() {
                attempt.shared.fail(e);
            }
        }
        if let Some(tx) = first.take() {
            let _ = tx.send(Ok(()));
        }
        if level.cancelled.load(Ordering::Acquire) {
            attempt.shared.cancelled.store(true, Ordering::Release);
            attempt.shared.cancel_all();
        }
        let outcome = attempt.wait().and_then(|r| {
            // Every call queued to a coordinator before the end (attempt_ready, events of the
            // subtasks) is made before the attempt counts as finished: a failure there
            // fails the attempt, however late the coordinator's thread gets to it.
            for (_, h) in &g.coordinators {
                h.flush();
            }
            // A coordinator failure after the last task ended still fails the attempt.
            match level.coordinator_failure.lock().take() {
                Some(e) => Err(e),
                None => Ok(r),
            }
        });
        match outcome {
            Ok(mut result) => {
                result.duration = started.elapsed();
                result.restarts = restarts;
                return Ok(result);
            }
            Err(e) if level.cancelled.load(Ordering::Acquire) => {
                tracing::info!("job cancelled while failing: {e}");
                return Err(e);
            }
            Err(e) => {
                // Every subtask of the attempt failed over: its coordinator hears it.
                for (node, h) in &g.coordinators {
                    for subtask in 0..plan.parallelism[*node] {
                        h.post(RunnerMsg::AttemptFailed {
                            subtask,
                            attempt: restarts as u32,
                            reason: e.to_string(),
                        });
                    }
                }
                if !wait_to_restart(&mut strategy, level, &e, restarts) {
                    return Err(e);
                }
                restarts += 1;
                level.restarts.store(restarts, Ordering::Release);
            }
        }
    }
}

/// Asks the restart strategy about failure `e` and waits its delay; false if the job must end
/// (the strategy gives up, or the job was cancelled meanwhile).
pub(super) fn wait_to_restart(
    strategy: &mut crate::restart::RestartStrategy,
    level: &JobLevel,
    e: &JobError,
    restarts: usize,
) -> bool {
    let Some(delay) = strategy.on_failure(Instant::now()) else {
        return false;
    };
    {
        let mut log = level.log.lock();
        log.exception(e, true);
        log.enter(JobState::Restarting);
    }
    tracing::warn!(
        "attempt {} failed ({e}); restarting in {delay:?}",
        restarts + 1
    );
    let until = Instant::now() + delay;
    while Instant::now() < until {
        if level.cancelled.load(Ordering::Acquire) {
            return false;
        }
        std::thread::sleep((until - Instant::now()).min(Duration::from_millis(20)));
    }
    true
}
