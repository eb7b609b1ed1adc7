//! Launching one attempt of a job: input gates and mailboxes for every task, the chains with
//! their record writers, the restored state handed to each subtask, the checkpoint coordinator,
//! then one thread per task. An [`Attempt`] is what runs until its tasks end.

use super::*;

pub(super) struct JobShared {
    pub(super) mailboxes: Vec<Arc<Mailbox>>,
    pub(super) metrics: Vec<Arc<TaskMetricsCell>>,
    pub(super) failure: Mutex<Option<JobError>>,
    pub(super) cancelled: AtomicBool,
    pub(super) running: AtomicUsize,
}

impl JobShared {
    pub(super) fn metrics(&self) -> JobMetrics {
        JobMetrics {
            tasks: self.metrics.iter().map(|m| m.snapshot()).collect(),
        }
    }
    pub(super) fn cancel_all(&self) {
        for m in &self.mailboxes {
            m.cancel();
        }
    }
    pub(super) fn fail(&self, e: JobError) {
        {
            let mut f = self.failure.lock();
            if f.is_none() {
                tracing::error!("{e}");
                *f = Some(e);
            }
        }
        self.cancel_all();
    }
}

/// One run of a job's tasks (a restart makes a new attempt).
pub(super) struct Attempt {
    pub(super) shared: Arc<JobShared>,
    pub(super) threads: Vec<TaskThread<()>>,
    pub(super) timer_service: Arc<TimerService>,
    pub(super) timer_thread: Option<TaskThread<()>>,
    pub(super) coordinator: Option<Sender<CheckpointMsg>>,
    pub(super) coordinator_thread: Option<TaskThread<()>>,
    pub(super) checkpoint_stats: Arc<Mutex<crate::checkpoint::CheckpointHistory>>,
    pub(super) restored_from: Option<CompletedCheckpoint>,
    pub(super) started: Instant,
}

impl Attempt {
    /// What the job handle reaches of this attempt.
    pub(super) fn control(&self) -> AttemptControl {
        AttemptControl {
            shared: self.shared.clone(),
            coordinator: self.coordinator.clone(),
            restored_from: self.restored_from.clone(),
        }
    }

    pub(super) fn stop_services(&mut self) {
        if let Some(c) = self.coordinator.take() {
            let _ = c.send(CheckpointMsg::Shutdown);
        }
        if let Some(t) = self.coordinator_thread.take() {
            let _ = t.join();
        }
        self.timer_service.shutdown();
        if let Some(t) = self.timer_thread.take() {
            let _ = t.join();
        }
    }
    /// Waits for every task of the attempt and returns how it ended.
    pub(super) fn wait(mut self) -> Result<JobResult> {
        let mut join_error = None;
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                join_error = Some(JobError::Internal(
                    "a task thread could not be joined".into(),
                ));
            }
        }
        self.stop_services();
        if let Some(e) = self.shared.failure.lock().take() {
            return Err(e);
        }
        if let Some(e) = join_error {
            return Err(e);
        }
        let status = if self.shared.cancelled.load(Ordering::Acquire) {
            JobStatus::Cancelled
        } else {
            JobStatus::Finished
        };
        Ok(JobResult {
            status,
            duration: self.started.elapsed(),
            metrics: self.shared.metrics(),
            checkpoints: self.checkpoint_stats.lock().recent.clone(),
            restarts: 0,
        })
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            // Dropped without join: stop the job rather than leak running threads.
            self.shared.cancel_all();
            for t in self.threads.drain(..) {
                let _ = t.join();
            }
        }
        self.stop_services();
    }
}

pub(super) struct Builder<'a> {
    pub(super) g: &'a mut Graph,
    pub(super) plan: &'a Plan,
    /// Per node with network inputs: its gates (erased), one per subtask.
    pub(super) gates: Vec<Vec<Box<dyn Any>>>,
    /// Per node, per input edge, per receiver subtask: the edge's first channel in the gate.
    pub(super) offsets: Vec<Vec<Vec<usize>>>,
    /// Per node, per subtask: the state it restores.
    pub(super) restores: Vec<Vec<RestoreState>>,
    /// Output channel state of the task being built, by writer key.
    pub(super) replays: std::collections::HashMap<String, Vec<u8>>,
    /// Every task's mailbox.
    pub(super) mailboxes: &'a [Arc<Mailbox>],
    /// The attempt being built.
    pub(super) attempt: u32,
    /// The task being built.
    pub(super) task: usize,
    /// Coordinator paths made so far: (task, node, channel).
    pub(super) channels: Vec<(usize, usize, Arc<SubtaskChannel>)>,
}

impl Builder<'_> {
    /// The way between `node`'s coordinator (if it has one) and its subtask `subtask`, the
    /// link with chain index `index` of the task being built.
    pub(super) fn coordinator(
        &mut self,
        node: usize,
        subtask: usize,
        index: usize,
    ) -> Option<ToCoordinator> {
        let (_, h) = self.g.coordinators.iter().find(|(n, _)| *n == node)?;
        let h = h.clone();
        let ch = Arc::new(SubtaskChannel::new(
            subtask,
            self.attempt,
            index,
            self.mailboxes[self.task].clone(),
            h.deliveries.clone(),
        ));
        self.channels.push((self.task, node, ch));
        Some(ToCoordinator {
            operator: h.name.clone(),
            subtask,
            attempt: self.attempt,
            tx: h.tx.clone(),
        })
    }

    pub(super) fn info(&self, node: usize, subtask: usize) -> OperatorInfo {
        OperatorInfo {
            name: self.g.nodes[node].name.clone(),
            uid: self.plan.uids[node].clone(),
            subtask,
            parallelism: self.plan.parallelism[node],
            max_parallelism: self.plan.max_parallelism[node],
            commit_fence: self.g.commit_fence.clone(),
        }
    }

    /// Builds everything downstream of `node` in its task: chained links and network writers.
    pub(super) fn output(
        &mut self,
        node: usize,
        subtask: usize,
        signal: &Signal,
        names: &mut Vec<String>,
        channels: &mut usize,
    ) -> Box<dyn Any> {
        let mut outs = Vec::new();
        for &(c, e_idx) in &self.plan.consumers[node].clone() {
            if self.plan.chained[c] {
                let index = names.len();
                names.push(self.g.nodes[c].name.clone());
                let next = self.output(c, subtask, signal, names, channels);
                let info = self.info(c, subtask);
                let coordinator = self.coordinator(c, subtask, index);
                match &mut self.g.nodes[c].kind {
                    NodeKind::Operator(f) => {
                        let restore = std::mem::take(&mut self.restores[c][subtask]);
                        outs.push(f.build(info, index, next, restore, coordinator))
                    }
                    NodeKind::Source(_) => unreachable!("a source has no input"),
                }
            } else {
                let (fp, tp) = (self.plan.parallelism[node], self.plan.parallelism[c]);
                let kind = self.g.nodes[c].inputs[e_idx].kind;
                let pw = pointwise(kind, fp, tp);
                *channels += if pw { 1 } else { tp };
                let settings = self.g.nodes[node]
                    .out_type
                    .as_ref()
                    .expect("a node with consumers has an output type")
                    .writer_settings(&self.g.config);
                let key = format!("{}->{}#{e_idx}", self.plan.uids[node], self.plan.uids[c]);
                let replay = self.replays.remove(&key);
                let w = self.g.nodes[c].inputs[e_idx].connector.writer(EdgeWiring {
                    gates: &self.gates[c],
                    offsets: &self.offsets[c][e_idx],
                    sender: subtask,
                    pointwise: pw,
                    signal: signal.clone(),
                    settings,
                    transport: self.g.config.channel_transport,
                    max_parallelism: self.plan.max_parallelism[c],
                    key,
                    replay,
                });
                outs.push(w);
            }
        }
        let n = &self.g.nodes[node];
        match (outs.len(), &n.out_type) {
            (_, None) => Box::new(()), // a sink: its link ignores `next`
            (0, Some(t)) => t.no_output(),
            (1, Some(_)) => outs.pop().expect("one output"),
            (_, Some(t)) => t.fanout(outs),
        }
    }

    pub(super) fn chain_name(&self, head: usize) -> String {
        let mut names = vec![self.g.nodes[head].name.clone()];
        let mut stack = vec![head];
        while let Some(n) = stack.pop() {
            for &(c, _) in &self.plan.consumers[n] {
                if self.plan.chained[c] {
                    names.push(self.g.nodes[c].name.clone());
                    stack.push(c);
                }
            }
        }
        names.join(" -> ")
    }
}

pub(super) struct TaskSpec {
    pub(super) body: Box<dyn TaskBody>,
    pub(super) names: Vec<String>,
    pub(super) subtask: usize,
    pub(super) parallelism: usize,
}

/// Builds and starts one attempt of the job. `restore_latest` overrides the configured restore
/// path with the latest checkpoint (after a failure).
pub(super) fn launch(
    g: &mut Graph,
    plan: &Plan,
    attempt: u32,
    level: &JobLevel,
) -> Result<Attempt> {
    let heads: Vec<usize> = (0..g.nodes.len()).filter(|&i| !plan.chained[i]).collect();

    // One signal and mailbox per task; tasks are numbered head by head, subtask by subtask.
    let mut task_of = vec![usize::MAX; g.nodes.len()];
    let mut n_tasks = 0;
    for &h in &heads {
        task_of[h] = n_tasks;
        n_tasks += plan.parallelism[h];
    }
    let signals: Vec<Signal> = (0..n_tasks).map(|_| Signal::new()).collect();
    let mailboxes: Vec<Arc<Mailbox>> = signals
        .iter()
        .map(|s| Arc::new(Mailbox::new(s.clone())))
        .collect();

    // Gates for every head with network inputs.
    let InputGates {
        gates,
        probes,
        offsets,
    } = input_gates(g, plan, &heads, &task_of, &signals, &mailboxes);

    // Checkpoint storage and what to restore.
    let RestorePoint {
        storage,
        restored,
        restores,
        next_checkpoint_id,
    } = restore_point(g, plan, attempt > 0)?;

    reset_coordinators(g, plan, attempt, restored.as_ref(), storage.as_deref())?;

    let mut b = Builder {
        g: &mut *g,
        plan,
        gates,
        offsets,
        restores,
        replays: Default::default(),
        mailboxes: &mailboxes,
        attempt,
        task: 0,
        channels: Vec::new(),
    };
    let (specs, cells) = build_tasks(&mut b, &heads, &task_of, &signals, &probes)?;
    let coordinated = std::mem::take(&mut b.channels);
    drop(b);
    let buffer_timeout = g.config.buffer_timeout;
    let source_tasks: Vec<usize> = heads
        .iter()
        .filter(|&&h| g.nodes[h].inputs.is_empty())
        .flat_map(|&h| task_of[h]..task_of[h] + plan.parallelism[h])
        .collect();

    let timer_service = TimerService::new(mailboxes.clone());
    let shared = Arc::new(JobShared {
        mailboxes: mailboxes.clone(),
        metrics: cells.clone(),
        failure: Mutex::new(None),
        cancelled: AtomicBool::new(false),
        running: AtomicUsize::new(specs.len()),
    });
    let timer_thread = {
        let ts = timer_service.clone();
        TaskThread::spawn(
            g.config.task_threads_pooled,
            "weir-timers".into(),
            move || ts.run(),
        )
        .map_err(|e| JobError::Start {
            what: "timer thread",
            source: e,
        })?
    };
    let checkpoint_stats = level.checkpoint_stats.clone();
    let pending_checkpoints = level.pending_checkpoints.clone();
    // The coordinators learn of the new attempt's subtasks before the tasks run and before the
    // first checkpoint can be triggered (so the new gateways hold for it): a subtask's first
    // event never reaches its coordinator before `attempt_ready` (both go through the
    // coordinator's one queue), and events the coordinator sends wait in the task's mailbox.
    for (_, node, ch) in &coordinated {
        if let Some((_, h)) = g.coordinators.iter().find(|(n, _)| n == node) {
            h.post(RunnerMsg::AttemptReady(ch.clone()));
        }
    }
    let (coordinator_tx, coordinator_thread) = start_checkpoint_coordinator(
        g,
        plan,
        storage,
        CoordinatorWiring {
            mailboxes: mailboxes.clone(),
            source_tasks: source_tasks.clone(),
            stats: checkpoint_stats.clone(),
            pending: pending_checkpoints.clone(),
            shared: shared.clone(),
            next_id: next_checkpoint_id,
        },
    )?;
    let mut handle = Attempt {
        shared: shared.clone(),
        threads: Vec::new(),
        timer_service: timer_service.clone(),
        timer_thread: Some(timer_thread),
        coordinator: coordinator_tx.clone(),
        coordinator_thread,
        checkpoint_stats,
        restored_from: restored,
        started: Instant::now(),
    };
    let wiring = TaskWiring {
        signals: &signals,
        mailboxes: &mailboxes,
        cells: &cells,
        coordinated: &coordinated,
        timer_service: &timer_service,
        buffer_timeout,
        checkpoint: coordinator_tx,
    };
    spawn_tasks(g, specs, &wiring, &mut handle);
    Ok(handle)
}

/// Where tasks send their checkpoint acknowledgements, and the checkpoint coordinator's thread
/// (both none when the job has no checkpoint storage).
pub(super) type RunningCheckpointCoordinator =
    (Option<Sender<CheckpointMsg>>, Option<TaskThread<()>>);

/// What the checkpoint coordinator of an attempt is wired to.
pub(super) struct CoordinatorWiring {
    pub(super) mailboxes: Vec<Arc<Mailbox>>,
    pub(super) source_tasks: Vec<usize>,
    pub(super) stats: Arc<Mutex<crate::checkpoint::CheckpointHistory>>,
    pub(super) pending: Arc<Mutex<BTreeMap<u64, Instant>>>,
    pub(super) shared: Arc<JobShared>,
    pub(super) next_id: u64,
}

/// Starts the attempt's checkpoint coordinator on its own thread when the job has checkpoint
/// storage; returns where tasks send their acknowledgements, and the thread.
///
/// # Errors
/// The thread could not be started.
pub(super) fn start_checkpoint_coordinator(
    g: &Graph,
    plan: &Plan,
    storage: Option<Arc<dyn CheckpointStorage>>,
    w: CoordinatorWiring,
) -> Result<RunningCheckpointCoordinator> {
    let checkpoint_cfg = &g.config;
    let operator_descriptions: BTreeMap<String, OperatorDescription> = g
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            (
                plan.uids[i].clone(),
                OperatorDescription {
                    name: n.name.clone(),
                    parallelism: plan.parallelism[i],
                    max_parallelism: plan.max_parallelism[i],
                },
            )
        })
        .collect();
    Ok(match storage {
        Some(storage) => {
            let (tx, rx) = std::sync::mpsc::channel();
            let setup = CheckpointCoordinatorSetup {
                job: checkpoint_cfg.job_name.clone(),
                storage: Some(storage),
                mailboxes: w.mailboxes,
                source_tasks: w.source_tasks,
                operators: operator_descriptions,
                interval: (!checkpoint_cfg.checkpoint_interval.is_zero())
                    .then_some(checkpoint_cfg.checkpoint_interval),
                timeout: checkpoint_cfg.checkpoint_timeout,
                min_pause: checkpoint_cfg.checkpoint_min_pause,
                max_concurrent: checkpoint_cfg.max_concurrent_checkpoints,
                retained: checkpoint_cfg.retained_checkpoints,
                unaligned: checkpoint_cfg.unaligned,
                aligned_timeout: (!checkpoint_cfg.aligned_checkpoint_timeout.is_zero())
                    .then_some(checkpoint_cfg.aligned_checkpoint_timeout),
                at_least_once: checkpoint_cfg.checkpointing_mode
                    == crate::config::CheckpointingMode::AtLeastOnce,
                stats: w.stats,
                pending: w.pending,
                tolerable_failures: checkpoint_cfg.tolerable_failed_checkpoints,
                fail_job: {
                    let shared = w.shared;
                    Box::new(move |e| shared.fail(e))
                },
                next_id: w.next_id,
                operator_coordinators: g.coordinators.iter().map(|(_, h)| h.clone()).collect(),
            };
            let t = TaskThread::spawn(
                g.config.task_threads_pooled,
                "weir-checkpoints".into(),
                move || checkpoint_coordinator::run(setup, rx),
            )
            .map_err(|e| JobError::Start {
                what: "checkpoint coordinator",
                source: e,
            })?;
            (Some(tx), Some(t))
        }
        None => (None, None),
    })
}

/// What the tasks of an attempt are wired to.
pub(super) struct TaskWiring<'a> {
    pub(super) signals: &'a [Signal],
    pub(super) mailboxes: &'a [Arc<Mailbox>],
    pub(super) cells: &'a [Arc<TaskMetricsCell>],
    pub(super) coordinated: &'a [(usize, usize, Arc<SubtaskChannel>)],
    pub(super) timer_service: &'a Arc<TimerService>,
    pub(super) buffer_timeout: Duration,
    pub(super) checkpoint: Option<Sender<CheckpointMsg>>,
}

/// Starts one thread per task (from the shared pool when configured). A task that ends tells
/// its coordinators' gateways and the checkpoint coordinator; a task that fails fails the
/// attempt; a thread that cannot start fails the attempt too.
pub(super) fn spawn_tasks(
    g: &Graph,
    specs: Vec<TaskSpec>,
    w: &TaskWiring<'_>,
    handle: &mut Attempt,
) {
    let shared = handle.shared.clone();
    let (signals, mailboxes, cells, coordinated) = (w.signals, w.mailboxes, w.cells, w.coordinated);
    let (timer_service, buffer_timeout, coordinator_tx) =
        (w.timer_service, w.buffer_timeout, &w.checkpoint);
    for (task, spec) in specs.into_iter().enumerate() {
        let signal = signals[task].clone();
        let mailbox = mailboxes[task].clone();
        let mailbox_of_task = mailbox.clone();
        let cell = cells[task].clone();
        let task_shared = shared.clone();
        let rt = TaskRuntime {
            task,
            timers: timer_service.clone(),
            buffer_timeout,
            mode: g.config.checkpointing_mode,
            coordinator: coordinator_tx.clone(),
            coordinated: coordinated
                .iter()
                .filter(|(t, _, _)| *t == task)
                .map(|(_, _, ch)| ch.clone())
                .collect(),
        };
        let thread_name = format!("weir-{task}");
        let async_runtime = g.runtime.as_ref().map(|r| r.handle().clone());
        let spawned = TaskThread::spawn(g.config.task_threads_pooled, thread_name, move || {
            signal.bind_current_thread();
            cell.start();
            let TaskSpec {
                body,
                names,
                subtask,
                parallelism,
            } = spec;
            let mut env = TaskEnv::new(mailbox, cell.clone());
            env.async_runtime = async_runtime;
            let r =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body.run(&mut env, &rt)));
            cell.finish();
            // Coordinators can no longer reach this task; events in its mailbox are lost
            // with it (a failure: the coordinator hears attempt_failed).
            let how = if matches!(r, Ok(Ok(()))) {
                "finished"
            } else {
                "failed or cancelled"
            };
            for ch in &rt.coordinated {
                ch.end(how);
            }
            mailbox_of_task.discard();
            let name_of = |i: usize| names.get(i).cloned().unwrap_or_else(|| names[0].clone());
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => match e.into_kind() {
                    TaskErrorKind::Cancelled => {}
                    TaskErrorKind::User { operator, error } => {
                        task_shared.fail(JobError::TaskFailed {
                            operator: name_of(operator),
                            subtask,
                            parallelism,
                            message: error.to_string(),
                            panicked: false,
                        })
                    }
                },
                Err(panic) => task_shared.fail(JobError::TaskFailed {
                    operator: name_of(env.current_operator),
                    subtask,
                    parallelism,
                    message: panic_message(&*panic),
                    panicked: true,
                }),
            }
            if let Some(c) = &rt.coordinator {
                let _ = c.send(CheckpointMsg::TaskEnded { task: rt.task });
            }
            task_shared.running.fetch_sub(1, Ordering::AcqRel);
        });
        match spawned {
            Ok(t) => handle.threads.push(t),
            Err(e) => {
                for (_, _, ch) in coordinated.iter().filter(|(t, _, _)| *t == task) {
                    ch.end("not started");
                }
                shared.fail(JobError::Start {
                    what: "task thread",
                    source: e,
                });
                shared.running.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}

/// The input gates of an attempt, per head node and subtask.
pub(super) struct InputGates {
    /// Erased `Arc<GateShared<T>>` per head node, per subtask.
    pub(super) gates: Vec<Vec<Box<dyn Any>>>,
    /// Their usage probes (for metrics).
    pub(super) probes: Vec<Vec<Arc<dyn crate::metrics::UsageProbe>>>,
    /// Per head node, per input edge, per subtask: the edge's first channel in the gate.
    pub(super) offsets: Vec<Vec<Vec<usize>>>,
}

/// One input gate for every subtask of every head with network inputs: a channel per sending
/// subtask (one for a pointwise edge), edges in input order.
pub(super) fn input_gates(
    g: &Graph,
    plan: &Plan,
    heads: &[usize],
    task_of: &[usize],
    signals: &[Signal],
    mailboxes: &[Arc<Mailbox>],
) -> InputGates {
    let n_nodes = g.nodes.len();
    let mut gates: Vec<Vec<Box<dyn Any>>> = (0..n_nodes).map(|_| Vec::new()).collect();
    let mut probes: Vec<Vec<Arc<dyn crate::metrics::UsageProbe>>> =
        (0..n_nodes).map(|_| Vec::new()).collect();
    let mut offsets: Vec<Vec<Vec<usize>>> = (0..n_nodes).map(|_| Vec::new()).collect();
    for &h in heads {
        let node = &g.nodes[h];
        if node.inputs.is_empty() {
            continue;
        }
        let tp = plan.parallelism[h];
        let mut per_edge = vec![vec![0; tp]; node.inputs.len()];
        #[allow(clippy::needless_range_loop)] // `j` is the receiving subtask, not just an index
        for j in 0..tp {
            let mut total = 0;
            for (e_idx, e) in node.inputs.iter().enumerate() {
                per_edge[e_idx][j] = total;
                total += if pointwise(e.kind, plan.parallelism[e.from], tp) {
                    1
                } else {
                    plan.parallelism[e.from]
                };
            }
            let in_type = node
                .in_type
                .as_ref()
                .expect("an operator has an input type");
            let task = task_of[h] + j;
            let (gate, probe) = in_type.new_gate(
                total,
                &g.config,
                signals[task].clone(),
                mailboxes[task].clone(),
            );
            gates[h].push(gate);
            probes[h].push(probe);
        }
        offsets[h] = per_edge;
    }
    InputGates {
        gates,
        probes,
        offsets,
    }
}

/// Builds every task of an attempt: its chain (head, chained operators, network outputs), its
/// body (a source loop or an input loop over its gate) and its metrics cell.
///
/// # Errors
/// An operator without input that is not a source (an internal error).
pub(super) fn build_tasks(
    b: &mut Builder<'_>,
    heads: &[usize],
    task_of: &[usize],
    signals: &[Signal],
    probes: &[Vec<Arc<dyn crate::metrics::UsageProbe>>],
) -> Result<(Vec<TaskSpec>, Vec<Arc<TaskMetricsCell>>)> {
    let plan = b.plan;
    let mut specs = Vec::new();
    let mut cells = Vec::new();
    for &h in heads {
        let name = b.chain_name(h);
        for i in 0..plan.parallelism[h] {
            let task = task_of[h] + i;
            b.task = task;
            let mut names = vec![b.g.nodes[h].name.clone()];
            let mut channels = 0;
            b.replays = std::mem::take(&mut b.restores[h][i].channel_outputs)
                .into_iter()
                .collect();
            let out = b.output(h, i, &signals[task], &mut names, &mut channels);
            let info = b.info(h, i);
            let info_for_task = info.clone();
            let body: Box<dyn TaskBody> = if b.g.nodes[h].inputs.is_empty() {
                let coordinator = b.coordinator(h, i, 0);
                match &mut b.g.nodes[h].kind {
                    NodeKind::Source(f) => f.build(
                        info,
                        out,
                        std::mem::take(&mut b.restores[h][i]),
                        coordinator,
                    ),
                    NodeKind::Operator(_) => {
                        return Err(JobError::Internal(format!(
                            "operator '{}' has no input",
                            info.name
                        )))
                    }
                }
            } else {
                // The task replays the head's input channel state; the link gets the rest.
                let replay = b.restores[h][i].channel_input.take();
                let coordinator = b.coordinator(h, i, 0);
                let head_link = match &mut b.g.nodes[h].kind {
                    NodeKind::Operator(f) => f.build(
                        info,
                        0,
                        out,
                        std::mem::take(&mut b.restores[h][i]),
                        coordinator,
                    ),
                    NodeKind::Source(_) => unreachable!("a source has no input"),
                };
                let in_type = b.g.nodes[h]
                    .in_type
                    .as_ref()
                    .expect("an operator has an input type");
                in_type.input_task(
                    &*b.gates[h][i],
                    head_link,
                    &info_for_task,
                    replay,
                    &b.g.config,
                )
            };
            let cell = Arc::new(TaskMetricsCell::new(
                name.clone(),
                i,
                plan.parallelism[h],
                channels,
            ));
            if let Some(p) = probes[h].get(i) {
                cell.set_input(p.clone());
            }
            cells.push(cell);
            specs.push(TaskSpec {
                body,
                names,
                subtask: i,
                parallelism: plan.parallelism[h],
            });
        }
    }
    Ok((specs, cells))
}
