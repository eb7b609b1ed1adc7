//! Operator chains: the operators of one task, linked by direct calls.
//!
//! A task runs a tree of operators rooted at its head (a source, or the operator reading the
//! input gate). Each link owns its operator and the boxed next input; fan-out links feed several
//! consumers, record writers end the chain at network edges. A record handed to the head runs
//! through the whole chain before the next one is taken: chaining costs no channel and no copy.
//!
//! Each link records which operator runs user code (`TaskEnv::current_operator`, restored on
//! return), so a panic is attributed to the operator that raised it.

use std::collections::BTreeSet;

use weir_state::keyed::KeyedStateSnapshot;
use weir_state::{KeyGroupRange, KeyedStateBackend, KeyedTimers};

use crate::checkpoint::{Barrier, Captured, OperatorSubtaskState};
use crate::coordination::gateway::ToCoordinator;
use crate::coordination::OperatorEvent;
use crate::data::{Data, KeySelector};
use crate::error::{TaskError, UserError};
use crate::mailbox::env::TaskEnv;
use crate::operator::output::Output;
use crate::operator::{
    Context, KeyedContext, KeyedOpenContext, KeyedOperator, Operator, OperatorInfo, Sink,
};
use crate::time::{StreamStatus, TimeDomain, Timer, Watermark};

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// Runs `f` as operator `index`, turning its error (or an error from downstream) into a
/// `TaskError` and keeping the panic attribution right.
macro_rules! as_operator {
    ($env:expr, $index:expr, $ctx:ident = $make:expr, $call:expr) => {{
        let prev = $env.current_operator;
        $env.current_operator = $index;
        let mut $ctx = $make;
        let r: Result<(), UserError> = $call;
        let downstream = $ctx.error.take();
        #[allow(clippy::drop_non_drop)]
        drop($ctx);
        $env.current_operator = prev;
        match (downstream, r) {
            (Some(e), _) => Err(e),
            (None, Err(e)) => Err(TaskError::user($index, e)),
            (None, Ok(())) => Ok(()),
        }
    }};
}

/// Runs `f` as operator `index` (for panic attribution) and attributes its error to it.
fn attributed(
    env: &mut TaskEnv,
    index: usize,
    f: impl FnOnce() -> Result<(), UserError>,
) -> Result<(), TaskError> {
    let prev = env.current_operator;
    env.current_operator = index;
    let r = f();
    env.current_operator = prev;
    r.map_err(|e| TaskError::user(index, e))
}

/// A link running an [`Operator`].
pub(crate) struct OperatorLink<O: Operator> {
    pub op: O,
    pub next: Box<dyn Output<O::Out>>,
    pub index: usize,
    pub info: OperatorInfo,
    /// The way to the operator's coordinator, if it has one.
    pub coordinator: Option<ToCoordinator>,
    pub timers: BTreeSet<i64>,
    pub watermark: Watermark,
    /// Operator state to restore before `open`.
    pub restore: Option<Vec<u8>>,
}

impl<O: Operator> OperatorLink<O> {
    pub(crate) fn new(
        op: O,
        next: Box<dyn Output<O::Out>>,
        index: usize,
        info: OperatorInfo,
    ) -> Self {
        OperatorLink {
            op,
            next,
            index,
            info,
            coordinator: None,
            timers: BTreeSet::new(),
            watermark: Watermark::MIN,
            restore: None,
        }
    }
}

macro_rules! ctx {
    ($s:ident, $env:ident) => {
        Context {
            out: &mut *$s.next,
            coordinator: $s.coordinator.as_ref(),
            env: &mut *$env,
            timers: &mut $s.timers,
            info: &$s.info,
            watermark: $s.watermark,
            error: None,
        }
    };
}

impl<O: Operator> Output<O::In> for OperatorLink<O> {
    #[inline]
    fn element(&mut self, record: O::In, env: &mut TaskEnv) -> Result<(), TaskError> {
        as_operator!(
            env,
            self.index,
            ctx = ctx!(self, env),
            self.op.process_element(record, &mut ctx)
        )
    }
    fn watermark(&mut self, wm: Watermark, env: &mut TaskEnv) -> Result<(), TaskError> {
        // Watermarks only advance: an operator never sees (nor forwards) a smaller one.
        if wm <= self.watermark {
            return Ok(());
        }
        self.watermark = wm;
        as_operator!(
            env,
            self.index,
            ctx = ctx!(self, env),
            self.op.process_watermark(wm, &mut ctx)
        )
    }
    fn status(&mut self, status: StreamStatus, env: &mut TaskEnv) -> Result<(), TaskError> {
        self.next.status(status, env)
    }
    fn processing_time(&mut self, now: i64, env: &mut TaskEnv) -> Result<Option<i64>, TaskError> {
        while let Some(&ts) = self.timers.first() {
            if ts > now {
                break;
            }
            self.timers.remove(&ts);
            let timer = Timer {
                timestamp: ts,
                domain: TimeDomain::ProcessingTime,
            };
            as_operator!(
                env,
                self.index,
                ctx = ctx!(self, env),
                self.op.on_timer(timer, &mut ctx)
            )?;
        }
        let rest = self.next.processing_time(now, env)?;
        Ok(min_opt(self.timers.first().copied(), rest))
    }
    fn open(&mut self, env: &mut TaskEnv) -> Result<(), TaskError> {
        self.next.open(env)?;
        if let Some(state) = self.restore.take() {
            let op = &mut self.op;
            attributed(env, self.index, || op.restore_state(&state))?;
        }
        as_operator!(
            env,
            self.index,
            ctx = ctx!(self, env),
            self.op.open(&mut ctx)
        )
    }
    fn end_of_input(&mut self, env: &mut TaskEnv) -> Result<(), TaskError> {
        as_operator!(
            env,
            self.index,
            ctx = ctx!(self, env),
            self.op.finish(&mut ctx)
        )?;
        self.next.end_of_input(env)
    }
    fn close(&mut self, env: &mut TaskEnv) -> Result<(), TaskError> {
        let op = &mut self.op;
        let mine = attributed(env, self.index, || op.close());
        let rest = self.next.close(env);
        mine.and(rest)
    }
    fn flush(&mut self, partial: bool, env: &mut TaskEnv) -> Result<(), TaskError> {
        self.next.flush(partial, env)
    }
    fn poll_async(&mut self, env: &mut TaskEnv) -> Result<(), TaskError> {
        self.next.poll_async(env)
    }
    fn operator_event(
        &mut self,
        operator: usize,
        event: OperatorEvent,
        env: &mut TaskEnv,
    ) -> Result<Option<OperatorEvent>, TaskError> {
        if operator != self.index {
            return self.next.operator_event(operator, event, env);
        }
        as_operator!(
            env,
            self.index,
            ctx = ctx!(self, env),
            self.op.handle_operator_event(event, &mut ctx)
        )?;
        Ok(None)
    }
    fn snapshot(
        &mut self,
        id: u64,
        env: &mut TaskEnv,
        out: &mut Vec<OperatorSubtaskState>,
    ) -> Result<(), TaskError> {
        // What the operator emits now goes out before the barrier.
        as_operator!(
            env,
            self.index,
            ctx = ctx!(self, env),
            self.op.prepare_snapshot_pre_barrier(id, &mut ctx)
        )?;
        let mut state = None;
        let op = &mut self.op;
        attributed(env, self.index, || {
            state = op.snapshot_state(id)?;
            Ok(())
        })?;
        if let Some(bytes) = state {
            out.push(OperatorSubtaskState::operator_state(
                &self.info.uid,
                self.info.subtask,
                bytes,
            ));
        }
        self.next.snapshot(id, env, out)
    }
    fn barrier(
        &mut self,
        barrier: Barrier,
        env: &mut TaskEnv,
        captured: &mut Captured,
    ) -> Result<(), TaskError> {
        self.next.barrier(barrier, env, captured)
    }
    fn notify_checkpoint(
        &mut self,
        id: u64,
        complete: bool,
        env: &mut TaskEnv,
    ) -> Result<(), TaskError> {
        if complete {
            as_operator!(
                env,
                self.index,
                ctx = ctx!(self, env),
                self.op.notify_checkpoint_complete(id, &mut ctx)
            )?;
        } else {
            let op = &mut self.op;
            attributed(env, self.index, || op.notify_checkpoint_aborted(id))?;
        }
        self.next.notify_checkpoint(id, complete, env)
    }
}

/// A link running a [`KeyedOperator`] with its keyed state and timers.
pub(crate) struct KeyedLink<O: KeyedOperator, F> {
    pub op: O,
    pub next: Box<dyn Output<O::Out>>,
    pub index: usize,
    pub info: OperatorInfo,
    pub key_fn: F,
    pub state: KeyedStateBackend<O::Key>,
    pub timers: KeyedTimers<O::Key>,
    pub unkeyed_timers: BTreeSet<i64>,
    pub watermark: Watermark,
    /// Encoded keyed snapshots (overlapping this subtask's key groups) to restore before `open`.
    pub restore: Vec<Vec<u8>>,
}

impl<O: KeyedOperator, F> KeyedLink<O, F> {
    pub(crate) fn new(
        op: O,
        key_fn: F,
        next: Box<dyn Output<O::Out>>,
        index: usize,
        info: OperatorInfo,
    ) -> Self {
        let range =
            KeyGroupRange::for_operator(info.max_parallelism, info.parallelism, info.subtask);
        KeyedLink {
            op,
            next,
            index,
            state: KeyedStateBackend::new(range, info.max_parallelism),
            info,
            key_fn,
            timers: KeyedTimers::default(),
            unkeyed_timers: BTreeSet::new(),
            watermark: Watermark::MIN,
            restore: Vec::new(),
        }
    }
}

macro_rules! kctx {
    ($s:ident, $env:ident, $key:expr) => {
        KeyedContext {
            key: $key,
            state: &mut $s.state,
            timers: &mut $s.timers,
            out: &mut *$s.next,
            env: &mut *$env,
            info: &$s.info,
            watermark: $s.watermark,
            error: None,
        }
    };
}

impl<O: KeyedOperator, F> KeyedLink<O, F> {
    /// Fires, in time order, every timer of `domain` due at `upto` (including timers that
    /// firing registers and that are already due).
    fn fire_timers(
        &mut self,
        domain: TimeDomain,
        upto: i64,
        env: &mut TaskEnv,
    ) -> Result<(), TaskError> {
        loop {
            let due = match domain {
                TimeDomain::EventTime => self.timers.pop_event_time(upto),
                TimeDomain::ProcessingTime => self.timers.pop_processing_time(upto),
            };
            let Some((key, timestamp)) = due else {
                return Ok(());
            };
            let timer = Timer { timestamp, domain };
            as_operator!(
                env,
                self.index,
                ctx = kctx!(self, env, &key),
                self.op.on_timer(timer, &mut ctx)
            )?;
        }
    }
}

impl<O, F> Output<O::In> for KeyedLink<O, F>
where
    O: KeyedOperator,
    F: KeySelector<O::In, O::Key>,
{
    #[inline]
    fn element(&mut self, record: O::In, env: &mut TaskEnv) -> Result<(), TaskError> {
        let key = (self.key_fn)(&record);
        as_operator!(
            env,
            self.index,
            ctx = kctx!(self, env, &key),
            self.op.process_element(record, &mut ctx)
        )
    }
    fn watermark(&mut self, wm: Watermark, env: &mut TaskEnv) -> Result<(), TaskError> {
        if wm <= self.watermark {
            return Ok(());
        }
        self.watermark = wm;
        self.fire_timers(TimeDomain::EventTime, wm.0, env)?;
        self.next.watermark(wm, env)
    }
    fn status(&mut self, status: StreamStatus, env: &mut TaskEnv) -> Result<(), TaskError> {
        self.next.status(status, env)
    }
    fn processing_time(&mut self, now: i64, env: &mut TaskEnv) -> Result<Option<i64>, TaskError> {
        self.fire_timers(TimeDomain::ProcessingTime, now, env)?;
        let rest = self.next.processing_time(now, env)?;
        Ok(min_opt(self.timers.next_processing_time(), rest))
    }
    fn open(&mut self, env: &mut TaskEnv) -> Result<(), TaskError> {
        self.next.open(env)?;
        if !self.restore.is_empty() {
            let (state, timers, restore) = (
                &mut self.state,
                &mut self.timers,
                std::mem::take(&mut self.restore),
            );
            attributed(env, self.index, || {
                let mut snaps = Vec::with_capacity(restore.len());
                for bytes in &restore {
                    snaps.push(
                        weir_state::checkpoint::format::decode::<KeyedStateSnapshot>(
                            "keyed state",
                            bytes,
                        )?,
                    );
                }
                state.restore(&snaps)?;
                for snap in &snaps {
                    timers.restore(&snap.timers, state.key_groups())?;
                }
                Ok(())
            })?;
        }
        let (op, state, info) = (&mut self.op, &mut self.state, &self.info);
        attributed(env, self.index, || {
            op.open(&mut KeyedOpenContext { state, info })
        })
    }
    fn end_of_input(&mut self, env: &mut TaskEnv) -> Result<(), TaskError> {
        as_operator!(
            env,
            self.index,
            ctx = Context {
                out: &mut *self.next,
                coordinator: None,
                env: &mut *env,
                timers: &mut self.unkeyed_timers,
                info: &self.info,
                watermark: self.watermark,
                error: None,
            },
            self.op.finish(&mut ctx)
        )?;
        self.next.end_of_input(env)
    }
    fn close(&mut self, env: &mut TaskEnv) -> Result<(), TaskError> {
        let op = &mut self.op;
        let mine = attributed(env, self.index, || op.close());
        let rest = self.next.close(env);
        mine.and(rest)
    }
    fn flush(&mut self, partial: bool, env: &mut TaskEnv) -> Result<(), TaskError> {
        self.next.flush(partial, env)
    }
    fn poll_async(&mut self, env: &mut TaskEnv) -> Result<(), TaskError> {
        self.next.poll_async(env)
    }
    fn operator_event(
        &mut self,
        operator: usize,
        event: OperatorEvent,
        env: &mut TaskEnv,
    ) -> Result<Option<OperatorEvent>, TaskError> {
        self.next.operator_event(operator, event, env)
    }
    fn snapshot(
        &mut self,
        id: u64,
        env: &mut TaskEnv,
        out: &mut Vec<OperatorSubtaskState>,
    ) -> Result<(), TaskError> {
        let (state, timers, max_p) = (&self.state, &self.timers, self.info.max_parallelism);
        let mut bytes = Vec::new();
        attributed(env, self.index, || {
            let mut snap = state.snapshot()?;
            snap.timers = timers.snapshot(max_p)?;
            bytes = weir_state::checkpoint::format::encode(&snap)?;
            Ok(())
        })?;
        out.push(OperatorSubtaskState {
            uid: self.info.uid.clone(),
            subtask: self.info.subtask,
            key_groups: Some(self.state.key_groups()),
            keyed: Some(bytes),
            operator: None,
            channel: None,
        });
        self.next.snapshot(id, env, out)
    }
    fn barrier(
        &mut self,
        barrier: Barrier,
        env: &mut TaskEnv,
        captured: &mut Captured,
    ) -> Result<(), TaskError> {
        self.next.barrier(barrier, env, captured)
    }
    fn notify_checkpoint(
        &mut self,
        id: u64,
        complete: bool,
        env: &mut TaskEnv,
    ) -> Result<(), TaskError> {
        let op = &mut self.op;
        attributed(env, self.index, || {
            if complete {
                op.notify_checkpoint_complete(id)
            } else {
                op.notify_checkpoint_aborted(id)
            }
        })?;
        self.next.notify_checkpoint(id, complete, env)
    }
}

/// A link running a [`Sink`]: the end of a chain.
pub(crate) struct SinkLink<S> {
    pub sink: S,
    pub index: usize,
    pub info: OperatorInfo,
    /// Sink state to restore before `open`.
    pub restore: Option<Vec<u8>>,
}

impl<S: Sink> SinkLink<S> {
    fn call(
        &mut self,
        env: &mut TaskEnv,
        f: impl FnOnce(&mut S) -> Result<(), UserError>,
    ) -> Result<(), TaskError> {
        let sink = &mut self.sink;
        attributed(env, self.index, || f(sink))
    }
}

impl<S: Sink> Output<S::In> for SinkLink<S> {
    #[inline]
    fn element(&mut self, record: S::In, env: &mut TaskEnv) -> Result<(), TaskError> {
        self.call(env, |s| s.write(record))
    }
    fn watermark(&mut self, _: Watermark, _: &mut TaskEnv) -> Result<(), TaskError> {
        Ok(())
    }
    fn status(&mut self, _: StreamStatus, _: &mut TaskEnv) -> Result<(), TaskError> {
        Ok(())
    }
    fn open(&mut self, env: &mut TaskEnv) -> Result<(), TaskError> {
        if let Some(state) = self.restore.take() {
            self.call(env, |s| s.restore_state(&state))?;
        }
        let info = self.info.clone();
        self.call(env, |s| s.open(&info))
    }
    fn end_of_input(&mut self, env: &mut TaskEnv) -> Result<(), TaskError> {
        self.call(env, |s| s.finish())
    }
    fn close(&mut self, env: &mut TaskEnv) -> Result<(), TaskError> {
        self.call(env, |s| s.close())
    }
    fn snapshot(
        &mut self,
        id: u64,
        env: &mut TaskEnv,
        out: &mut Vec<OperatorSubtaskState>,
    ) -> Result<(), TaskError> {
        let mut state = None;
        self.call(env, |s| {
            state = s.snapshot_state(id)?;
            Ok(())
        })?;
        if let Some(bytes) = state {
            out.push(OperatorSubtaskState::operator_state(
                &self.info.uid,
                self.info.subtask,
                bytes,
            ));
        }
        Ok(())
    }
    fn barrier(&mut self, _: Barrier, _: &mut TaskEnv, _: &mut Captured) -> Result<(), TaskError> {
        Ok(())
    }
    fn notify_checkpoint(
        &mut self,
        id: u64,
        complete: bool,
        env: &mut TaskEnv,
    ) -> Result<(), TaskError> {
        self.call(env, |s| {
            if complete {
                s.notify_checkpoint_complete(id)
            } else {
                s.notify_checkpoint_aborted(id)
            }
        })
    }
}

/// Feeds several consumers of one operator's output.
pub(crate) struct FanOut<T> {
    pub outs: Vec<Box<dyn Output<T>>>,
}

impl<T: Data> Output<T> for FanOut<T> {
    fn element(&mut self, record: T, env: &mut TaskEnv) -> Result<(), TaskError> {
        let (last, rest) = self
            .outs
            .split_last_mut()
            .expect("a fan-out has at least two outputs");
        for o in rest {
            o.element(record.clone(), env)?;
        }
        last.element(record, env)
    }
    fn watermark(&mut self, wm: Watermark, env: &mut TaskEnv) -> Result<(), TaskError> {
        self.outs.iter_mut().try_for_each(|o| o.watermark(wm, env))
    }
    fn status(&mut self, s: StreamStatus, env: &mut TaskEnv) -> Result<(), TaskError> {
        self.outs.iter_mut().try_for_each(|o| o.status(s, env))
    }
    fn processing_time(&mut self, now: i64, env: &mut TaskEnv) -> Result<Option<i64>, TaskError> {
        let mut next = None;
        for o in &mut self.outs {
            next = min_opt(next, o.processing_time(now, env)?);
        }
        Ok(next)
    }
    fn open(&mut self, env: &mut TaskEnv) -> Result<(), TaskError> {
        self.outs.iter_mut().try_for_each(|o| o.open(env))
    }
    fn end_of_input(&mut self, env: &mut TaskEnv) -> Result<(), TaskError> {
        self.outs.iter_mut().try_for_each(|o| o.end_of_input(env))
    }
    fn close(&mut self, env: &mut TaskEnv) -> Result<(), TaskError> {
        let mut first = Ok(());
        for o in &mut self.outs {
            let r = o.close(env);
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
    fn flush(&mut self, partial: bool, env: &mut TaskEnv) -> Result<(), TaskError> {
        self.outs.iter_mut().try_for_each(|o| o.flush(partial, env))
    }
    fn poll_async(&mut self, env: &mut TaskEnv) -> Result<(), TaskError> {
        self.outs.iter_mut().try_for_each(|o| o.poll_async(env))
    }
    fn operator_event(
        &mut self,
        operator: usize,
        event: OperatorEvent,
        env: &mut TaskEnv,
    ) -> Result<Option<OperatorEvent>, TaskError> {
        let mut event = Some(event);
        for o in &mut self.outs {
            match event.take() {
                Some(e) => event = o.operator_event(operator, e, env)?,
                None => break,
            }
        }
        Ok(event)
    }
    fn snapshot(
        &mut self,
        id: u64,
        env: &mut TaskEnv,
        out: &mut Vec<OperatorSubtaskState>,
    ) -> Result<(), TaskError> {
        self.outs
            .iter_mut()
            .try_for_each(|o| o.snapshot(id, env, out))
    }
    fn barrier(
        &mut self,
        barrier: Barrier,
        env: &mut TaskEnv,
        captured: &mut Captured,
    ) -> Result<(), TaskError> {
        self.outs
            .iter_mut()
            .try_for_each(|o| o.barrier(barrier, env, captured))
    }
    fn notify_checkpoint(
        &mut self,
        id: u64,
        complete: bool,
        env: &mut TaskEnv,
    ) -> Result<(), TaskError> {
        self.outs
            .iter_mut()
            .try_for_each(|o| o.notify_checkpoint(id, complete, env))
    }
}

/// The output of an operator nobody consumes: records are dropped.
pub(crate) struct NoOutput;

impl<T: Data> Output<T> for NoOutput {
    #[inline]
    fn element(&mut self, _: T, _: &mut TaskEnv) -> Result<(), TaskError> {
        Ok(())
    }
    fn watermark(&mut self, _: Watermark, _: &mut TaskEnv) -> Result<(), TaskError> {
        Ok(())
    }
    fn status(&mut self, _: StreamStatus, _: &mut TaskEnv) -> Result<(), TaskError> {
        Ok(())
    }
    fn end_of_input(&mut self, _: &mut TaskEnv) -> Result<(), TaskError> {
        Ok(())
    }
    fn snapshot(
        &mut self,
        _: u64,
        _: &mut TaskEnv,
        _: &mut Vec<OperatorSubtaskState>,
    ) -> Result<(), TaskError> {
        Ok(())
    }
    fn barrier(&mut self, _: Barrier, _: &mut TaskEnv, _: &mut Captured) -> Result<(), TaskError> {
        Ok(())
    }
    fn notify_checkpoint(&mut self, _: u64, _: bool, _: &mut TaskEnv) -> Result<(), TaskError> {
        Ok(())
    }
}
