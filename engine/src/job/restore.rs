//! Restoring an attempt: which state each subtask gets from the restored checkpoint (keyed state
//! by key group, operator state by subtask, channel state into the same subtasks), and the reset
//! of the operator coordinators to the restored checkpoint.

use super::*;

/// Reads what every operator subtask restores from `checkpoint`.
pub(super) fn restore_states(
    g: &Graph,
    plan: &Plan,
    storage: &dyn CheckpointStorage,
    checkpoint: &CompletedCheckpoint,
) -> Result<Vec<Vec<RestoreState>>> {
    let meta = &checkpoint.metadata;
    let err = |m: String| {
        JobError::Restore(format!(
            "{} ({}): {m}",
            checkpoint.location, meta.checkpoint_id
        ))
    };
    for op in &meta.operators {
        if !plan.uids.contains(&op.uid) {
            return Err(err(format!(
                "it holds state of operator '{}' (uid '{}') that this job does not have; give operators stable uids",
                op.name, op.uid
            )));
        }
    }
    let read = |h: &weir_state::checkpoint::StateHandle, kind| {
        storage
            .read_state(checkpoint, h, kind)
            .map_err(|e| JobError::RestoreRead { source: e })
    };
    let has_channel_state = meta
        .operators
        .iter()
        .flat_map(|o| &o.subtasks)
        .any(|s| s.channel.is_some());
    if has_channel_state {
        for op in &meta.operators {
            if let Some(i) = plan.uids.iter().position(|u| *u == op.uid) {
                if plan.parallelism[i] != op.parallelism {
                    return Err(err(format!(
                        "it is an unaligned checkpoint holding in-flight records, and operator '{}' changed parallelism from {} to {}; rescale from a savepoint (always aligned) instead",
                        op.name, op.parallelism, plan.parallelism[i]
                    )));
                }
            }
        }
    }
    let mut out = Vec::with_capacity(g.nodes.len());
    for (i, node) in g.nodes.iter().enumerate() {
        let p = plan.parallelism[i];
        let mut per_subtask = vec![RestoreState::default(); p];
        if let Some(op) = meta.operator(&plan.uids[i]) {
            let has_keyed = op.subtasks.iter().any(|s| s.keyed.is_some());
            let has_operator = op.subtasks.iter().any(|s| s.operator.is_some());
            if has_keyed && op.max_parallelism != plan.max_parallelism[i] {
                return Err(err(format!(
                    "operator '{}' has keyed state for max parallelism {}, the job uses {}; keep pipeline.max-parallelism unchanged",
                    node.name, op.max_parallelism, plan.max_parallelism[i]
                )));
            }
            if has_operator && op.parallelism != p {
                return Err(err(format!(
                    "operator '{}' has operator state written at parallelism {}; restoring it at parallelism {p} is not supported (only keyed state rescales)",
                    node.name, op.parallelism
                )));
            }
            for (j, target) in per_subtask.iter_mut().enumerate() {
                let range = KeyGroupRange::for_operator(plan.max_parallelism[i], p, j);
                for st in &op.subtasks {
                    if let (Some(h), Some(r)) = (&st.keyed, st.key_groups) {
                        if r.start <= range.end && range.start <= r.end {
                            target.keyed.push(read(h, FileKind::KeyedState)?);
                        }
                    }
                    if st.subtask == j {
                        if let Some(h) = &st.operator {
                            target.operator = Some(read(h, FileKind::OperatorState)?);
                        }
                        if let Some(h) = &st.channel {
                            let bytes = read(h, FileKind::ChannelState)?;
                            let cs: ChannelStateSnapshot =
                                weir_state::checkpoint::format::decode("channel state", &bytes)
                                    .map_err(|e| err(e.to_string()))?;
                            if !cs.input.is_empty() {
                                target.channel_input = Some(cs.input);
                            }
                            target.channel_outputs = cs.outputs;
                        }
                    }
                }
            }
        }
        out.push(per_subtask);
    }
    Ok(out)
}

/// Before an attempt starts: a restarted job resets its coordinators to the restored
/// checkpoint (or to nothing) and resets every subtask; the first attempt starts them (after a
/// reset if the job starts from a checkpoint).
pub(super) fn reset_coordinators(
    g: &Graph,
    plan: &Plan,
    attempt: u32,
    restored: Option<&CompletedCheckpoint>,
    storage: Option<&dyn CheckpointStorage>,
) -> Result<()> {
    for (node, h) in &g.coordinators {
        let id = restored.map(|c| c.metadata.checkpoint_id);
        let state = match restored {
            Some(c) => match c.metadata.extra.get(&coordinator_state_key(&h.uid)) {
                Some(handle) => {
                    let local;
                    let reader: &dyn CheckpointStorage = match storage {
                        Some(s) => s,
                        None => {
                            local = LocalCheckpointStorage::new(&c.location);
                            &local
                        }
                    };
                    Some(
                        reader
                            .read_state(c, handle, FileKind::OperatorState)
                            .map_err(|e| JobError::RestoreRead { source: e })?,
                    )
                }
                None => None,
            },
            None => None,
        };
        if attempt > 0 || restored.is_some() {
            h.reset(id, state)
                .map_err(|message| JobError::CoordinatorFailed {
                    operator: h.name.clone(),
                    message,
                })?;
        }
        if attempt == 0 {
            // Before any task runs (as Flink starts coordinators before deploying tasks): a
            // failing start fails the job, and cannot race the tasks' end.
            h.start().map_err(|message| JobError::CoordinatorFailed {
                operator: h.name.clone(),
                message,
            })?;
        } else {
            for subtask in 0..plan.parallelism[*node] {
                h.post(RunnerMsg::SubtaskReset { subtask, id });
            }
        }
    }
    Ok(())
}

/// Where an attempt's checkpoints go and what it starts from.
pub(super) struct RestorePoint {
    /// The checkpoint storage (none: checkpoints are off).
    pub(super) storage: Option<Arc<dyn CheckpointStorage>>,
    /// The checkpoint restored, if any.
    pub(super) restored: Option<CompletedCheckpoint>,
    /// Per node, per subtask: what it restores.
    pub(super) restores: Vec<Vec<RestoreState>>,
    /// The id of the attempt's first checkpoint (above every id the storage or the restored
    /// checkpoint has).
    pub(super) next_checkpoint_id: u64,
}

/// The checkpoint storage of the job and what an attempt restores: the configured restore path
/// on the first attempt, the latest checkpoint after a failure (`restore_latest`).
///
/// # Errors
/// Periodic checkpoints without a directory, "latest" without storage, and a checkpoint that
/// cannot be read.
pub(super) fn restore_point(g: &Graph, plan: &Plan, restore_latest: bool) -> Result<RestorePoint> {
    let cfg = &g.config;
    if !cfg.checkpoint_interval.is_zero() && cfg.checkpoint_dir.is_empty() && g.storage.is_none() {
        return Err(ConfigError::InvalidValue {
            key: "execution.checkpointing.dir".into(),
            value: String::new(),
            expected: "a directory, since execution.checkpointing.interval is set",
        }
        .into());
    }
    let storage: Option<Arc<dyn CheckpointStorage>> =
        match (&g.storage, cfg.checkpoint_dir.is_empty()) {
            (Some(s), _) => Some(s.clone()),
            (None, true) => None,
            (None, false) => Some(Arc::new(LocalCheckpointStorage::new(&cfg.checkpoint_dir))),
        };
    let restore_path = if restore_latest {
        "latest"
    } else {
        cfg.restore_path.as_str()
    };
    let restored: Option<CompletedCheckpoint> =
        match (restore_path, &storage) {
            ("latest", None) if restore_latest => None, // no checkpoints: restart from scratch
            ("", _) => None,
            ("latest", Some(s)) => s
                .latest()
                .map_err(|e| JobError::RestoreRead { source: e })?,
            ("latest", None) => return Err(ConfigError::InvalidValue {
                key: "execution.state-recovery.path".into(),
                value: "latest".into(),
                expected:
                    "a checkpoint path, or \"latest\" together with execution.checkpointing.dir",
            }
            .into()),
            (path, _) => Some(
                LocalCheckpointStorage::new(path)
                    .load(path)
                    .map_err(|e| JobError::RestoreRead { source: e })?,
            ),
        };
    let restores = match &restored {
        Some(c) => {
            let reader: Arc<dyn CheckpointStorage> = storage
                .clone()
                .unwrap_or_else(|| Arc::new(LocalCheckpointStorage::new(&c.location)));
            restore_states(g, plan, &*reader, c)?
        }
        None => (0..g.nodes.len())
            .map(|i| vec![RestoreState::default(); plan.parallelism[i]])
            .collect(),
    };
    let next_checkpoint_id = {
        let highest = match &storage {
            Some(s) => s
                .highest_id()
                .map_err(|e| JobError::RestoreRead { source: e })?,
            None => None,
        };
        highest
            .max(restored.as_ref().map(|c| c.metadata.checkpoint_id))
            .map_or(1, |h| h + 1)
    };
    if let Some(c) = &restored {
        tracing::info!(location = %c.location, id = c.metadata.checkpoint_id, "restoring");
    }
    Ok(RestorePoint {
        storage,
        restored,
        restores,
        next_checkpoint_id,
    })
}
