//! The task loops for source tasks and input tasks, and their shared scheduling.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::mpsc::Sender;

use super::alignment::{since_trigger, Aligned, Aligner};
use super::debloating::{Counters, DebloatClock};
use crate::channel::debloat::BufferDebloater;
use crate::channel::gate::{InputGate, Polled};
use crate::channel::{Event, Message};
use crate::checkpoint::messages::CheckpointMsg;
use crate::checkpoint::{Barrier, ChannelStateSnapshot, OperatorSubtaskState, TaskCheckpointStats};
use crate::config::CheckpointingMode;
use crate::coordination::gateway::{SubtaskChannel, ToCoordinator};
use crate::coordination::OperatorEvent;
use crate::data::Data;
use crate::error::TaskError;
use crate::mailbox::env::TaskEnv;
use crate::mailbox::timer_service::TimerService;
use crate::mailbox::Control;
use crate::operator::output::Output;
use crate::operator::{OperatorInfo, Source, SourceContext, SourceStatus};
use crate::time::valve::{ValveOutput, WatermarkValve};
use crate::time::{now_ms, Watermark};
use weir_state::checkpoint::format::{decode, encode};

/// What a task runs; type-erased so the job can hold tasks of any record type.
pub(crate) trait TaskBody: Send {
    fn run(self: Box<Self>, env: &mut TaskEnv, rt: &TaskRuntime) -> Result<(), TaskError>;
}

/// Job-wide facilities a task uses.
pub(crate) struct TaskRuntime {
    pub task: usize,
    pub timers: Arc<TimerService>,
    pub buffer_timeout: Duration,
    pub mode: CheckpointingMode,
    pub coordinator: Option<Sender<CheckpointMsg>>,
    /// Paths from operator coordinators to the operators of this task.
    pub coordinated: Vec<Arc<SubtaskChannel>>,
}

impl TaskRuntime {
    /// This task is done with checkpoint `id`: coordinator events held for it may come now.
    fn release_events(&self, id: u64) {
        for ch in &self.coordinated {
            ch.release(id);
        }
    }

    /// The task's input ended: its coordinators' gateways refuse events from now on, and the
    /// events already sent are handed to their operators before they finish (never dropped).
    fn stop_events<T>(
        &self,
        sched: &mut Scheduler<'_>,
        chain: &mut dyn Output<T>,
        env: &mut TaskEnv,
    ) -> Result<(), TaskError> {
        if self.coordinated.is_empty() {
            return Ok(());
        }
        for ch in &self.coordinated {
            for event in ch.finish() {
                deliver(chain, ch.operator, event, env)?;
            }
        }
        // Events posted before the gateways closed wait in the mailbox.
        for control in sched.service(chain, env)? {
            match control {
                Control::OperatorEvent { operator, event } => deliver(chain, operator, event, env)?,
                Control::CheckpointComplete(id) => chain.notify_checkpoint(id, true, env)?,
                Control::CheckpointAborted(id) => chain.notify_checkpoint(id, false, env)?,
                Control::TriggerCheckpoint(_) | Control::AlignmentTimeout(_) => {}
            }
        }
        Ok(())
    }

    fn decline(&self, id: u64, reason: String) {
        self.release_events(id);
        tracing::warn!(task = self.task, id, "declining checkpoint: {reason}");
        if let Some(c) = &self.coordinator {
            let _ = c.send(CheckpointMsg::Decline {
                task: self.task,
                id,
                reason,
            });
        }
    }

    fn ack(&self, id: u64, states: Vec<OperatorSubtaskState>, stats: TaskCheckpointStats) {
        self.release_events(id);
        if let Some(c) = &self.coordinator {
            let _ = c.send(CheckpointMsg::Ack {
                task: self.task,
                id,
                states,
                stats,
            });
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Waiting {
    /// For input: idle time.
    Input,
    /// For output credit: backpressured time.
    Credit,
    /// For async I/O requests to complete (the queue is full, or the end of input waits for
    /// it): busy time, since the operator's own work is what the task waits for.
    Requests,
}

/// Deadlines of one task and their registration with the timer service.
struct Scheduler<'a> {
    rt: &'a TaskRuntime,
    scheduled: Option<Instant>,
    flush_at: Option<Instant>,
    operator_timer_at: Option<i64>,
    wake_at: Option<Instant>,
    records_in: u64,
    /// Time waited for input and for output credit so far (buffer debloating measures them).
    idle: Duration,
    backpressured: Duration,
    /// End of input began: operator timers no longer fire (as in Flink, pending
    /// processing-time timers are dropped at the end of input).
    ended: bool,
}

fn instant_of(ts_ms: i64) -> Option<Instant> {
    let delta = ts_ms.saturating_sub(now_ms());
    Instant::now().checked_add(Duration::from_millis(delta.max(0) as u64))
}

impl<'a> Scheduler<'a> {
    fn new(rt: &'a TaskRuntime) -> Self {
        Scheduler {
            rt,
            scheduled: None,
            flush_at: None,
            operator_timer_at: None,
            wake_at: None,
            records_in: 0,
            idle: Duration::ZERO,
            backpressured: Duration::ZERO,
            ended: false,
        }
    }

    /// Serves mails and requests raised by the chain; returns the control messages for the
    /// task to handle, or `Cancelled` when asked to stop.
    fn service<T>(
        &mut self,
        chain: &mut dyn Output<T>,
        env: &mut TaskEnv,
    ) -> Result<Vec<Control>, TaskError> {
        let mut controls = Vec::new();
        if env.mailbox.has_mail() {
            let mail = env.mailbox.take();
            if env.mailbox.is_cancelled() {
                return Err(TaskError::cancelled());
            }
            controls = mail.controls;
            if mail.timer {
                self.scheduled = None;
                self.fire(chain, env)?;
            }
            if mail.async_ready {
                chain.poll_async(env)?;
            }
        }
        env.attention = false;
        if env.flush_needed {
            env.flush_needed = false;
            if self.rt.buffer_timeout.is_zero() {
                chain.flush(true, env)?;
            } else {
                // A timeout too large to represent means "never flush by time".
                self.flush_at = Instant::now().checked_add(self.rt.buffer_timeout);
                env.flush_scheduled = self.flush_at.is_some();
            }
        }
        if let Some(ts) = env.timer_request.take() {
            if !self.ended && self.operator_timer_at.is_none_or(|t| ts < t) {
                self.operator_timer_at = Some(ts);
            }
        }
        self.reschedule();
        // A request raised while serving (e.g. a timer that emitted into an empty buffer)
        // leaves `attention` set: it is handled in the next round.
        Ok(controls)
    }

    fn fire<T>(&mut self, chain: &mut dyn Output<T>, env: &mut TaskEnv) -> Result<(), TaskError> {
        let now = Instant::now();
        if self.flush_at.is_some_and(|t| t <= now) {
            self.flush_at = None;
            env.flush_scheduled = false;
            chain.flush(true, env)?;
        }
        if self.wake_at.is_some_and(|t| t <= now) {
            self.wake_at = None;
        }
        let now_ms = now_ms();
        if !self.ended && self.operator_timer_at.is_some_and(|t| t <= now_ms) {
            self.operator_timer_at = chain.processing_time(now_ms, env)?;
        }
        Ok(())
    }

    fn reschedule(&mut self) {
        let mut next = self.flush_at;
        for t in [self.wake_at, self.operator_timer_at.and_then(instant_of)]
            .into_iter()
            .flatten()
        {
            if next.is_none_or(|n| t < n) {
                next = Some(t);
            }
        }
        if let Some(t) = next {
            if self.scheduled.is_none_or(|s| t < s) {
                self.scheduled = Some(t);
                self.rt.timers.schedule(self.rt.task, t);
            }
        }
    }

    fn wait(&mut self, env: &mut TaskEnv, why: Waiting) {
        env.metrics.publish(
            self.records_in,
            env.records_out,
            env.blocked_channels,
            env.pending_buffers,
            env.pending_records,
        );
        match why {
            Waiting::Input => env.metrics.begin_wait(false),
            Waiting::Credit => env.metrics.begin_wait(true),
            Waiting::Requests => {}
        }
        let start = Instant::now();
        env.mailbox.signal().wait(None);
        let waited = start.elapsed();
        match why {
            Waiting::Input => {
                self.idle += waited;
                env.metrics.add_idle(waited)
            }
            Waiting::Credit => {
                self.backpressured += waited;
                env.metrics.add_backpressured(waited)
            }
            Waiting::Requests => {}
        }
    }

    /// Stops operator timers: called when the end of input begins.
    fn end(&mut self) {
        self.ended = true;
        self.operator_timer_at = None;
    }

    /// Sends everything still buffered, serving mails while credit is missing.
    fn drain<T>(&mut self, chain: &mut dyn Output<T>, env: &mut TaskEnv) -> Result<(), TaskError> {
        chain.flush(true, env)?;
        loop {
            // The task is finishing: it takes no further checkpoint.
            let _ = self.service(chain, env)?;
            env.flush_needed = false;
            chain.flush(true, env)?;
            if env.blocked_channels == 0 {
                return Ok(());
            }
            self.wait(env, Waiting::Credit);
        }
    }

    /// Handles missing credit, results of async I/O operators that wait for credit, and full
    /// async I/O queues: returns true if the task may not take input now (it waited, or it
    /// did other work; the caller serves its mailbox and asks again).
    fn blocked<T>(
        &mut self,
        chain: &mut dyn Output<T>,
        env: &mut TaskEnv,
    ) -> Result<bool, TaskError> {
        if env.blocked_channels > 0 {
            chain.flush(false, env)?;
            if env.blocked_channels > 0 {
                self.wait(env, Waiting::Credit);
                return Ok(true);
            }
        }
        if env.async_backlog {
            env.async_backlog = false;
            chain.poll_async(env)?;
            return Ok(true);
        }
        if env.suspended_inputs > 0 {
            self.wait(env, Waiting::Requests);
            return Ok(true);
        }
        Ok(false)
    }

    /// After the end of input: waits until every async I/O operator of the chain drained its
    /// queue and ended the rest of the chain. Serves mail meanwhile: completions, credit,
    /// checkpoint notifications (no new checkpoint is taken: a trigger stays unanswered and is
    /// aborted once the task ended, which does not count as a failure).
    fn finish_requests<T>(
        &mut self,
        chain: &mut dyn Output<T>,
        env: &mut TaskEnv,
    ) -> Result<(), TaskError> {
        while env.pending_ends > 0 {
            for control in self.service(chain, env)? {
                match control {
                    Control::CheckpointComplete(id) => chain.notify_checkpoint(id, true, env)?,
                    Control::CheckpointAborted(id) => chain.notify_checkpoint(id, false, env)?,
                    Control::OperatorEvent { operator, event } => {
                        deliver(chain, operator, event, env)?
                    }
                    Control::TriggerCheckpoint(_) | Control::AlignmentTimeout(_) => {}
                }
            }
            if env.pending_ends == 0 {
                break;
            }
            if env.blocked_channels > 0 {
                chain.flush(false, env)?;
                if env.blocked_channels > 0 {
                    self.wait(env, Waiting::Credit);
                    continue;
                }
            }
            if env.async_backlog {
                env.async_backlog = false;
                chain.poll_async(env)?;
                continue;
            }
            self.wait(env, Waiting::Requests);
        }
        Ok(())
    }
}

/// Hands a coordinator event to the chain's operator `operator`; an event no operator takes
/// fails the task (it is never dropped silently).
fn deliver<T>(
    chain: &mut dyn Output<T>,
    operator: usize,
    event: OperatorEvent,
    env: &mut TaskEnv,
) -> Result<(), TaskError> {
    match chain.operator_event(operator, event, env)? {
        None => Ok(()),
        Some(e) => Err(TaskError::user(
            operator,
            format!(
                "a coordinator event ({}) reached an operator that cannot receive events",
                e.type_name()
            )
            .into(),
        )),
    }
}

/// A task whose head is a source.
pub(crate) struct SourceTask<S: Source> {
    pub source: S,
    pub info: OperatorInfo,
    /// The way to the source's coordinator, if it has one.
    pub coordinator: Option<ToCoordinator>,
    pub chain: Box<dyn Output<S::Out>>,
    /// Source state to restore before `open`.
    pub restore: Option<Vec<u8>>,
}

impl<S: Source> SourceTask<S> {
    fn control(
        control: Control,
        source: &mut S,
        info: &OperatorInfo,
        chain: &mut dyn Output<S::Out>,
        env: &mut TaskEnv,
        sched: &mut Scheduler<'_>,
    ) -> Result<(), TaskError> {
        match control {
            Control::TriggerCheckpoint(barrier) => {
                let start_delay_ms = since_trigger(&barrier);
                let sync_start = Instant::now();
                let mut states = Vec::new();
                env.current_operator = 0;
                let snapshot = match source.snapshot_state(barrier.id) {
                    Ok(Some(bytes)) => {
                        states.push(OperatorSubtaskState::operator_state(
                            &info.uid,
                            info.subtask,
                            bytes,
                        ));
                        chain.snapshot(barrier.id, env, &mut states)
                    }
                    Ok(None) => chain.snapshot(barrier.id, env, &mut states),
                    Err(e) => Err(TaskError::user(0, e)),
                };
                let mut captured = Vec::new();
                // The barrier goes on even if the snapshot failed, so nothing downstream waits.
                chain.barrier(barrier, env, &mut captured)?;
                if let Err(e) = snapshot {
                    sched.rt.decline(barrier.id, e.into_decline()?);
                    return Ok(());
                }
                if !captured.is_empty() {
                    let snapshot = ChannelStateSnapshot {
                        input: Vec::new(),
                        outputs: captured,
                    };
                    states.push(OperatorSubtaskState {
                        uid: info.uid.clone(),
                        subtask: info.subtask,
                        channel: Some(encode(&snapshot).map_err(|e| TaskError::user(0, e.into()))?),
                        ..Default::default()
                    });
                }
                let stats = TaskCheckpointStats {
                    start_delay_ms,
                    sync_ms: ms(sync_start.elapsed()),
                    unaligned: barrier.unaligned,
                    ..Default::default()
                };
                sched.rt.ack(barrier.id, states, stats);
            }
            Control::AlignmentTimeout(_) => {} // sources never align
            Control::OperatorEvent { operator: 0, event } => {
                env.current_operator = 0;
                source
                    .handle_operator_event(event)
                    .map_err(|e| TaskError::user(0, e))?;
                // The event may have given the source work (a split): poll it now.
                sched.wake_at = None;
            }
            Control::OperatorEvent { operator, event } => deliver(chain, operator, event, env)?,
            Control::CheckpointComplete(id) | Control::CheckpointAborted(id) => {
                let complete = matches!(control, Control::CheckpointComplete(_));
                env.current_operator = 0;
                let r = if complete {
                    source.notify_checkpoint_complete(id)
                } else {
                    source.notify_checkpoint_aborted(id)
                };
                r.map_err(|e| TaskError::user(0, e))?;
                chain.notify_checkpoint(id, complete, env)?;
            }
        }
        Ok(())
    }

    fn run_loop(
        source: &mut S,
        restore: Option<Vec<u8>>,
        info: &OperatorInfo,
        coordinator: Option<&ToCoordinator>,
        chain: &mut dyn Output<S::Out>,
        env: &mut TaskEnv,
        sched: &mut Scheduler<'_>,
    ) -> Result<(), TaskError> {
        chain.open(env)?;
        env.current_operator = 0;
        if let Some(state) = restore {
            source
                .restore_state(&state)
                .map_err(|e| TaskError::user(0, e))?;
        }
        source.open(info).map_err(|e| TaskError::user(0, e))?;
        loop {
            if env.attention || env.mailbox.has_mail() {
                for control in sched.service(chain, env)? {
                    Self::control(control, source, info, chain, env, sched)?;
                }
            }
            if sched.blocked(chain, env)? {
                continue;
            }
            if sched.wake_at.is_some() {
                sched.wait(env, Waiting::Input);
                continue;
            }
            let mut ctx = SourceContext {
                out: &mut *chain,
                coordinator,
                env: &mut *env,
                info,
                error: None,
                emitted: 0,
            };
            let status = source.poll_next(&mut ctx);
            if let Some(e) = ctx.error.take() {
                return Err(e);
            }
            match status.map_err(|e| TaskError::user(0, e))? {
                SourceStatus::MoreAvailable => {}
                SourceStatus::Pending(after) => {
                    // A deadline too far to represent: poll again in a second.
                    sched.wake_at = Instant::now()
                        .checked_add(after)
                        .or_else(|| Instant::now().checked_add(Duration::from_secs(1)));
                    env.attention = true;
                }
                SourceStatus::Finished => break,
            }
        }
        sched.rt.stop_events(sched, chain, env)?;
        sched.end();
        chain.watermark(Watermark::MAX, env)?;
        chain.end_of_input(env)?;
        sched.finish_requests(chain, env)?;
        sched.drain(chain, env)
    }
}

impl<S: Source> TaskBody for SourceTask<S> {
    fn run(self: Box<Self>, env: &mut TaskEnv, rt: &TaskRuntime) -> Result<(), TaskError> {
        let SourceTask {
            mut source,
            info,
            coordinator,
            mut chain,
            restore,
        } = *self;
        let chain = &mut *chain;
        let mut sched = Scheduler::new(rt);
        let result = Self::run_loop(
            &mut source,
            restore,
            &info,
            coordinator.as_ref(),
            chain,
            env,
            &mut sched,
        );
        env.metrics.publish(0, env.records_out, 0, 0, 0);
        // Close everything, also after a failure or cancellation; the first error wins.
        env.current_operator = 0;
        let closed_source = source.close().map_err(|e| TaskError::user(0, e));
        let closed_chain = chain.close(env);
        result.and(closed_source).and(closed_chain)
    }
}

/// A task whose head reads an input gate.
pub(crate) struct InputTask<T> {
    pub gate: InputGate<T>,
    pub chain: Box<dyn Output<T>>,
    /// The head operator's uid and subtask (channel state is recorded under them).
    pub head_uid: String,
    pub subtask: usize,
    /// Input records of an unaligned checkpoint, processed again before any new input.
    pub replay: Option<Vec<u8>>,
    /// Buffer debloating of the gate, when on.
    pub debloat: Option<BufferDebloater>,
}

/// An unaligned checkpoint in progress at an input task: the operators are already
/// snapshotted and the barrier forwarded; in-flight input is recorded until every channel's
/// barrier arrived.
struct UnalignedCheckpoint<T> {
    barrier: Barrier,
    first_barrier: Instant,
    stats: TaskCheckpointStats,
    arrived: Vec<bool>,
    input: Vec<T>,
    outputs: Vec<(String, Vec<u8>)>,
    states: Vec<OperatorSubtaskState>,
}

fn apply<T>(
    out: ValveOutput,
    chain: &mut dyn Output<T>,
    env: &mut TaskEnv,
) -> Result<(), TaskError> {
    if let Some(wm) = out.watermark {
        chain.watermark(wm, env)?;
    }
    if let Some(s) = out.status {
        chain.status(s, env)?;
    }
    Ok(())
}

/// Where an input task is with respect to checkpoints.
struct Barriers<T> {
    /// The task's head operator: channel state is recorded under it.
    head: Head,
    aligner: Aligner,
    unaligned: Option<UnalignedCheckpoint<T>>,
    ended: Vec<bool>,
    /// The newest checkpoint this task took: its barriers arriving later are ignored.
    last_taken: u64,
    /// Checkpoints aborted before this task took them: their late barriers are ignored.
    aborted: std::collections::BTreeSet<u64>,
}

/// The head operator of an input task: its channel state is recorded under it.
struct Head {
    uid: String,
    subtask: usize,
}

/// Every input delivered barrier `b` (aligned or at-least-once): snapshot the chain, forward
/// the barrier, acknowledge.
fn aligned_checkpoint<T>(
    a: Aligned,
    chain: &mut dyn Output<T>,
    env: &mut TaskEnv,
    sched: &Scheduler<'_>,
) -> Result<(), TaskError> {
    let alignment_ms = ms(a.first_barrier.elapsed());
    let sync_start = Instant::now();
    let mut states = Vec::new();
    let snapshot = chain.snapshot(a.barrier.id, env, &mut states);
    chain.barrier(a.barrier, env, &mut Vec::new())?;
    if let Err(e) = snapshot {
        sched.rt.decline(a.barrier.id, e.into_decline()?);
        return Ok(());
    }
    let processed = sched
        .records_in
        .saturating_sub(a.records_in_at_first_barrier);
    let stats = TaskCheckpointStats {
        start_delay_ms: a.start_delay_ms,
        alignment_ms,
        sync_ms: ms(sync_start.elapsed()),
        processed_bytes: processed * std::mem::size_of::<T>() as u64,
        ..Default::default()
    };
    sched.rt.ack(a.barrier.id, states, stats);
    Ok(())
}

/// A barrier arrived on channel `ch` (through the priority lane if unaligned).
#[allow(clippy::too_many_arguments)]
fn on_barrier<T: Data>(
    ch: usize,
    b: Barrier,
    overtaken: Vec<T>,
    current: &Option<VecDeque<T>>,
    barriers: &mut Barriers<T>,
    gate: &mut InputGate<T>,
    chain: &mut dyn Output<T>,
    env: &mut TaskEnv,
    sched: &Scheduler<'_>,
) -> Result<(), TaskError> {
    if b.id <= barriers.last_taken || barriers.aborted.contains(&b.id) {
        // Taken already (e.g. switched to unaligned before this barrier came), or given up.
        return Ok(());
    }
    match &mut barriers.unaligned {
        Some(u) if u.barrier.id == b.id => {
            // A later channel's barrier (priority or in-band): what it overtook is in-flight
            // input; an in-band barrier overtook nothing (what came before it was recorded).
            u.arrived[ch] = true;
            u.input.extend(overtaken);
            return finish_unaligned(barriers, sched);
        }
        Some(u) if u.barrier.id > b.id => return Ok(()), // an older, given-up checkpoint
        _ => {}
    }
    if b.unaligned {
        return switch_to_unaligned(
            b,
            Some((ch, overtaken)),
            current,
            barriers,
            gate,
            chain,
            env,
            sched,
        );
    }
    if let Some(done) = barriers.aligner.barrier(ch, b, sched.records_in, gate) {
        barriers.last_taken = done.barrier.id;
        aligned_checkpoint(done, chain, env, sched)?;
    }
    Ok(())
}

/// Takes checkpoint `b` unaligned now: on its first unaligned barrier, or when its alignment
/// timed out. Snapshots the chain, forwards the barrier ahead of queued output, and records the
/// in-flight input: the rest of the buffer in hand, what `first` overtook, for channels whose
/// in-band barrier already waits in the gate the records ahead of it, and for the other
/// channels whatever they deliver until their barrier, which overtakes their queue the moment
/// it reaches the gate (it never waits behind it). Channels that delivered an aligned barrier
/// are done and unblocked.
#[allow(clippy::too_many_arguments)]
fn switch_to_unaligned<T: Data>(
    b: Barrier,
    first: Option<(usize, Vec<T>)>,
    current: &Option<VecDeque<T>>,
    barriers: &mut Barriers<T>,
    gate: &mut InputGate<T>,
    chain: &mut dyn Output<T>,
    env: &mut TaskEnv,
    sched: &Scheduler<'_>,
) -> Result<(), TaskError> {
    let b = Barrier {
        unaligned: true,
        ..b
    };
    let first_barrier = Instant::now();
    let start_delay_ms = since_trigger(&b);
    let mut states = Vec::new();
    let snapshot = chain.snapshot(b.id, env, &mut states);
    let mut outputs = Vec::new();
    chain.barrier(b, env, &mut outputs)?;
    if let Err(e) = snapshot {
        barriers.aligner.take(b.id, gate);
        barriers.last_taken = b.id;
        sched.rt.decline(b.id, e.into_decline()?);
        return Ok(());
    }
    let stats = TaskCheckpointStats {
        start_delay_ms,
        sync_ms: ms(first_barrier.elapsed()),
        unaligned: true,
        ..Default::default()
    };
    let mut input: Vec<T> = current.iter().flatten().cloned().collect();
    let mut arrived: Vec<bool> = barriers.aligner.take(b.id, gate);
    for (a, e) in arrived.iter_mut().zip(&barriers.ended) {
        *a |= *e;
    }
    if let Some((ch, overtaken)) = first {
        arrived[ch] = true;
        input.extend(overtaken);
    }
    for (ch, a) in arrived.iter_mut().enumerate() {
        if !*a {
            if let Some(ahead) = gate.overtake_barrier(ch, b.id) {
                input.extend(ahead);
                *a = true;
            }
        }
    }
    if let Some(old) = barriers.unaligned.take() {
        // An older unaligned checkpoint still in progress here can no longer complete: say so
        // rather than let it expire.
        sched
            .rt
            .decline(old.barrier.id, format!("superseded by checkpoint {}", b.id));
    }
    barriers.unaligned = Some(UnalignedCheckpoint {
        barrier: b,
        first_barrier,
        stats,
        arrived,
        input,
        outputs,
        states,
    });
    finish_unaligned(barriers, sched)
}

/// Acknowledges the unaligned checkpoint once every channel delivered its barrier (or ended).
fn finish_unaligned<T: Data>(
    barriers: &mut Barriers<T>,
    sched: &Scheduler<'_>,
) -> Result<(), TaskError> {
    if !barriers
        .unaligned
        .as_ref()
        .is_some_and(|u| u.arrived.iter().all(|a| *a))
    {
        return Ok(());
    }
    let Some(u) = barriers.unaligned.take() else {
        return Ok(());
    };
    barriers.last_taken = u.barrier.id;
    let mut states = u.states;
    if !u.input.is_empty() || !u.outputs.is_empty() {
        let input = encode(&u.input).map_err(|e| TaskError::user(0, e.into()))?;
        let snapshot = ChannelStateSnapshot {
            input,
            outputs: u.outputs,
        };
        states.push(OperatorSubtaskState {
            uid: barriers.head.uid.clone(),
            subtask: barriers.head.subtask,
            channel: Some(encode(&snapshot).map_err(|e| TaskError::user(0, e.into()))?),
            ..Default::default()
        });
    }
    let stats = TaskCheckpointStats {
        alignment_ms: ms(u.first_barrier.elapsed()),
        ..u.stats
    };
    sched.rt.ack(u.barrier.id, states, stats);
    Ok(())
}

impl<T: Data> InputTask<T> {
    fn run_loop(
        gate: &mut InputGate<T>,
        head: Head,
        replay: Option<Vec<u8>>,
        debloat: Option<BufferDebloater>,
        chain: &mut dyn Output<T>,
        env: &mut TaskEnv,
        sched: &mut Scheduler<'_>,
    ) -> Result<(), TaskError> {
        let mut debloat = debloat.map(|d| DebloatClock::start(d, gate));
        chain.open(env)?;
        if let Some(bytes) = replay {
            // In-flight input of the restored (unaligned) checkpoint comes first.
            let records: Vec<T> =
                decode("input channel state", &bytes).map_err(|e| TaskError::user(0, e.into()))?;
            for r in records {
                chain.element(r, env)?;
            }
        }
        let channels = gate.channels();
        let mut valve = WatermarkValve::new(channels);
        let mut barriers = Barriers {
            head,
            aligner: Aligner::new(sched.rt.mode, channels),
            unaligned: None,
            ended: vec![false; channels],
            last_taken: 0,
            aborted: Default::default(),
        };
        let mut ended = 0;
        let mut current: Option<VecDeque<T>> = None;
        let mut recycle: Option<VecDeque<T>> = None;
        // A barrier of channel `ch` (priority or in-band), with the records it overtook.
        macro_rules! barrier {
            ($ch:expr, $b:expr, $overtaken:expr) => {
                on_barrier(
                    $ch,
                    $b,
                    $overtaken,
                    &current,
                    &mut barriers,
                    gate,
                    chain,
                    env,
                    sched,
                )?
            };
        }
        loop {
            if env.attention || env.mailbox.has_mail() {
                for control in sched.service(chain, env)? {
                    match control {
                        // Input tasks take checkpoints when barriers arrive, not on triggers.
                        Control::TriggerCheckpoint(_) => {}
                        Control::CheckpointComplete(id) => {
                            chain.notify_checkpoint(id, true, env)?
                        }
                        Control::AlignmentTimeout(b) => {
                            let taking = barriers
                                .unaligned
                                .as_ref()
                                .is_some_and(|u| u.barrier.id >= b.id);
                            if b.id > barriers.last_taken && !taking {
                                switch_to_unaligned(
                                    b,
                                    None,
                                    &current,
                                    &mut barriers,
                                    gate,
                                    chain,
                                    env,
                                    sched,
                                )?;
                            }
                        }
                        Control::CheckpointAborted(id) => {
                            barriers.aligner.abort(id, gate);
                            if barriers
                                .unaligned
                                .as_ref()
                                .is_some_and(|u| u.barrier.id == id)
                            {
                                barriers.unaligned = None;
                            }
                            if id > barriers.last_taken {
                                barriers.aborted.insert(id);
                            }
                            let last = barriers.last_taken;
                            barriers.aborted.retain(|a| *a > last);
                            chain.notify_checkpoint(id, false, env)?;
                        }
                        Control::OperatorEvent { operator, event } => {
                            deliver(chain, operator, event, env)?
                        }
                    }
                }
                // Priority events (unaligned barriers) are handled between two records.
                while let Some((ch, ev, overtaken)) = gate.poll_priority() {
                    if let Event::Barrier(b) = ev {
                        barrier!(ch, b, overtaken);
                    }
                }
            }
            if sched.blocked(chain, env)? {
                continue;
            }
            if let Some(buf) = current.as_mut() {
                while let Some(record) = buf.pop_front() {
                    chain.element(record, env)?;
                    if env.attention || env.mailbox.has_mail() {
                        break;
                    }
                }
                if buf.is_empty() {
                    recycle = current.take();
                }
                continue;
            }
            if let Some(clock) = debloat.as_mut() {
                let counters = Counters {
                    consumed: sched.records_in,
                    idle: sched.idle,
                    backpressured: sched.backpressured,
                };
                clock.tick(counters, gate);
            }
            match gate.poll(recycle.take()) {
                Some(Polled::Priority(ch, ev, overtaken)) => {
                    if let Event::Barrier(b) = ev {
                        barrier!(ch, b, overtaken);
                    }
                }
                Some(Polled::Message(ch, Message::Records(buf))) => {
                    sched.records_in += buf.len() as u64;
                    env.metrics.publish(
                        sched.records_in,
                        env.records_out,
                        env.blocked_channels,
                        env.pending_buffers,
                        env.pending_records,
                    );
                    if let Some(u) = barriers.unaligned.as_mut() {
                        if !u.arrived[ch] {
                            // Sent before this channel's barrier: part of the checkpoint.
                            u.input.extend(buf.iter().cloned());
                        }
                    }
                    current = Some(buf);
                }
                Some(Polled::Message(ch, Message::Event(ev))) => match ev {
                    Event::Watermark(wm) => apply(valve.input_watermark(ch, wm), chain, env)?,
                    Event::Status(s) => apply(valve.input_status(ch, s), chain, env)?,
                    Event::EndOfInput => {
                        apply(valve.input_finished(ch), chain, env)?;
                        barriers.ended[ch] = true;
                        if let Some(done) = barriers.aligner.ended(ch, gate) {
                            barriers.last_taken = done.barrier.id;
                            aligned_checkpoint(done, chain, env, sched)?;
                        }
                        if let Some(u) = barriers.unaligned.as_mut() {
                            u.arrived[ch] = true;
                        }
                        finish_unaligned(&mut barriers, sched)?;
                        ended += 1;
                        if ended == channels {
                            break;
                        }
                    }
                    Event::Barrier(b) => barrier!(ch, b, Vec::new()),
                },
                None => sched.wait(env, Waiting::Input),
            }
        }
        sched.rt.stop_events(sched, chain, env)?;
        sched.end();
        chain.end_of_input(env)?;
        sched.finish_requests(chain, env)?;
        sched.drain(chain, env)
    }
}

impl<T: Data> TaskBody for InputTask<T> {
    fn run(self: Box<Self>, env: &mut TaskEnv, rt: &TaskRuntime) -> Result<(), TaskError> {
        let InputTask {
            mut gate,
            mut chain,
            head_uid,
            subtask,
            replay,
            debloat,
        } = *self;
        let head = Head {
            uid: head_uid,
            subtask,
        };
        let chain = &mut *chain;
        let mut sched = Scheduler::new(rt);
        let result = Self::run_loop(&mut gate, head, replay, debloat, chain, env, &mut sched);
        env.metrics
            .publish(sched.records_in, env.records_out, 0, 0, 0);
        // Close the chain, also after a failure or cancellation; the first error wins.
        let closed = chain.close(env);
        result.and(closed)
    }
}
