//! The task loops for source tasks and input tasks, and their shared scheduling.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::chain::Input;
use super::env::TaskEnv;
use super::timer_service::TimerService;
use crate::channel::gate::InputGate;
use crate::channel::{Event, Message};
use crate::data::Data;
use crate::error::TaskError;
use crate::operator::{OperatorInfo, Source, SourceContext, SourceStatus};
use crate::time::valve::{ValveOutput, WatermarkValve};
use crate::time::{now_ms, Watermark};

/// What a task runs; type-erased so the job can hold tasks of any record type.
pub(crate) trait TaskBody: Send {
    fn run(self: Box<Self>, env: &mut TaskEnv, rt: &TaskRuntime) -> Result<(), TaskError>;
}

/// Job-wide facilities a task uses.
pub(crate) struct TaskRuntime {
    pub task: usize,
    pub timers: Arc<TimerService>,
    pub buffer_timeout: Duration,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Waiting {
    Input,
    Credit,
}

/// Deadlines of one task and their registration with the timer service.
struct Scheduler<'a> {
    rt: &'a TaskRuntime,
    scheduled: Option<Instant>,
    flush_at: Option<Instant>,
    operator_timer_at: Option<i64>,
    wake_at: Option<Instant>,
    records_in: u64,
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
            ended: false,
        }
    }

    /// Serves mails and requests raised by the chain; returns `Cancelled` when asked to stop.
    fn service<T>(&mut self, chain: &mut dyn Input<T>, env: &mut TaskEnv) -> Result<(), TaskError> {
        if env.mailbox.has_mail() {
            let (timer, mails) = env.mailbox.take();
            if env.mailbox.is_cancelled() {
                return Err(TaskError::cancelled());
            }
            for mail in mails {
                mail();
            }
            if timer {
                self.scheduled = None;
                self.fire(chain, env)?;
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
        Ok(())
    }

    fn fire<T>(&mut self, chain: &mut dyn Input<T>, env: &mut TaskEnv) -> Result<(), TaskError> {
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
        let start = Instant::now();
        env.mailbox.signal().wait(None);
        match why {
            Waiting::Input => env.metrics.add_idle(start.elapsed()),
            Waiting::Credit => env.metrics.add_backpressured(start.elapsed()),
        }
    }

    /// Stops operator timers: called when the end of input begins.
    fn end(&mut self) {
        self.ended = true;
        self.operator_timer_at = None;
    }

    /// Sends everything still buffered, serving mails while credit is missing.
    fn drain<T>(&mut self, chain: &mut dyn Input<T>, env: &mut TaskEnv) -> Result<(), TaskError> {
        chain.flush(true, env)?;
        loop {
            self.service(chain, env)?;
            env.flush_needed = false;
            chain.flush(true, env)?;
            if env.blocked_channels == 0 {
                return Ok(());
            }
            self.wait(env, Waiting::Credit);
        }
    }

    /// Handles missing credit: returns true if the task must wait.
    fn blocked<T>(
        &mut self,
        chain: &mut dyn Input<T>,
        env: &mut TaskEnv,
    ) -> Result<bool, TaskError> {
        if env.blocked_channels == 0 {
            return Ok(false);
        }
        chain.flush(false, env)?;
        if env.blocked_channels == 0 {
            return Ok(false);
        }
        self.wait(env, Waiting::Credit);
        Ok(true)
    }
}

/// A task whose head is a source.
pub(crate) struct SourceTask<S: Source> {
    pub source: S,
    pub info: OperatorInfo,
    pub chain: Box<dyn Input<S::Out>>,
}

impl<S: Source> SourceTask<S> {
    fn run_loop(
        source: &mut S,
        info: &OperatorInfo,
        chain: &mut dyn Input<S::Out>,
        env: &mut TaskEnv,
        sched: &mut Scheduler<'_>,
    ) -> Result<(), TaskError> {
        chain.open(env)?;
        env.current_operator = 0;
        source.open(info).map_err(|e| TaskError::user(0, e))?;
        loop {
            if env.attention || env.mailbox.has_mail() {
                sched.service(chain, env)?;
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
        sched.end();
        chain.watermark(Watermark::MAX, env)?;
        chain.end_of_input(env)?;
        sched.drain(chain, env)
    }
}

impl<S: Source> TaskBody for SourceTask<S> {
    fn run(self: Box<Self>, env: &mut TaskEnv, rt: &TaskRuntime) -> Result<(), TaskError> {
        let SourceTask {
            mut source,
            info,
            mut chain,
        } = *self;
        let chain = &mut *chain;
        let mut sched = Scheduler::new(rt);
        let result = Self::run_loop(&mut source, &info, chain, env, &mut sched);
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
    pub chain: Box<dyn Input<T>>,
}

fn apply<T>(
    out: ValveOutput,
    chain: &mut dyn Input<T>,
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

impl<T: Data> InputTask<T> {
    fn run_loop(
        gate: &mut InputGate<T>,
        chain: &mut dyn Input<T>,
        env: &mut TaskEnv,
        sched: &mut Scheduler<'_>,
    ) -> Result<(), TaskError> {
        chain.open(env)?;
        let channels = gate.channels();
        let mut valve = WatermarkValve::new(channels);
        let mut ended = 0;
        let mut current: Option<VecDeque<T>> = None;
        let mut recycle: Option<VecDeque<T>> = None;
        loop {
            if env.attention || env.mailbox.has_mail() {
                sched.service(chain, env)?;
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
            match gate.poll(recycle.take()) {
                Some((_, Message::Records(buf))) => {
                    sched.records_in += buf.len() as u64;
                    env.metrics.publish(
                        sched.records_in,
                        env.records_out,
                        env.blocked_channels,
                        env.pending_buffers,
                        env.pending_records,
                    );
                    current = Some(buf);
                }
                Some((ch, Message::Event(ev))) => match ev {
                    Event::Watermark(wm) => apply(valve.input_watermark(ch, wm), chain, env)?,
                    Event::Status(s) => apply(valve.input_status(ch, s), chain, env)?,
                    Event::EndOfInput => {
                        apply(valve.input_finished(ch), chain, env)?;
                        ended += 1;
                        if ended == channels {
                            break;
                        }
                    }
                },
                None => sched.wait(env, Waiting::Input),
            }
        }
        sched.end();
        chain.end_of_input(env)?;
        sched.drain(chain, env)
    }
}

impl<T: Data> TaskBody for InputTask<T> {
    fn run(self: Box<Self>, env: &mut TaskEnv, rt: &TaskRuntime) -> Result<(), TaskError> {
        let InputTask {
            mut gate,
            mut chain,
        } = *self;
        let chain = &mut *chain;
        let mut sched = Scheduler::new(rt);
        let result = Self::run_loop(&mut gate, chain, env, &mut sched);
        env.metrics
            .publish(sched.records_in, env.records_out, 0, 0, 0);
        // Close the chain, also after a failure or cancellation; the first error wins.
        let closed = chain.close(env);
        result.and(closed)
    }
}
