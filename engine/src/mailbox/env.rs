//! What a task's operators, chain links and writers share while the task runs.
//!
//! The environment is owned by the task thread and passed down every call by `&mut`; it holds
//! the few facts the task loop must learn between records (an output channel ran out of credit,
//! a timer or a buffer flush was requested) in one `attention` flag, so the per-record check is
//! a single branch on local memory plus one atomic load of the mailbox flag.

use std::sync::Arc;
use std::time::Instant;

use super::Mailbox;
use crate::error::TaskError;
use crate::metrics::TaskMetricsCell;

/// The task-local environment.
pub(crate) struct TaskEnv {
    /// Set whenever the loop must look at the fields below before taking the next record.
    pub attention: bool,
    /// Output channels holding buffers that wait for credit.
    pub blocked_channels: usize,
    /// Buffers waiting for credit, over all output channels.
    pub pending_buffers: usize,
    /// Records in full output buffers waiting for credit.
    pub pending_records: usize,
    /// Records emitted to output channels.
    pub records_out: u64,
    /// Index (in the chain) of the operator currently running user code.
    pub current_operator: usize,
    /// A partial output buffer exists and no flush is scheduled.
    pub flush_needed: bool,
    /// A flush of partial buffers is scheduled.
    pub flush_scheduled: bool,
    /// Earliest processing-time timer requested since the loop last scheduled one.
    pub timer_request: Option<i64>,
    /// Async I/O operators of the chain whose queue is full: the task takes no input.
    pub suspended_inputs: usize,
    /// An async I/O operator stopped emitting for lack of credit: poll it again once credit
    /// returned.
    pub async_backlog: bool,
    /// Async I/O operators whose end of input waits for their queue to drain.
    pub pending_ends: usize,
    /// The job's runtime for async functions (if the job has async operators).
    pub async_runtime: Option<tokio::runtime::Handle>,
    /// The task's mailbox (cancellation, timers, mails).
    pub mailbox: Arc<Mailbox>,
    /// The task's metrics.
    pub metrics: Arc<TaskMetricsCell>,
}

impl TaskEnv {
    pub(crate) fn new(mailbox: Arc<Mailbox>, metrics: Arc<TaskMetricsCell>) -> Self {
        TaskEnv {
            attention: false,
            blocked_channels: 0,
            pending_buffers: 0,
            pending_records: 0,
            records_out: 0,
            current_operator: 0,
            flush_needed: false,
            flush_scheduled: false,
            timer_request: None,
            suspended_inputs: 0,
            async_backlog: false,
            pending_ends: 0,
            async_runtime: None,
            mailbox,
            metrics,
        }
    }

    /// An operator wants a processing-time callback at `ts` (ms since the epoch).
    #[inline]
    pub(crate) fn request_timer(&mut self, ts: i64) {
        if self.timer_request.is_none_or(|t| ts < t) {
            self.timer_request = Some(ts);
            self.attention = true;
        }
    }

    /// A writer started filling an empty buffer.
    #[inline]
    pub(crate) fn request_flush(&mut self) {
        if !self.flush_scheduled {
            self.flush_needed = true;
            self.attention = true;
        }
    }

    /// Blocks inside a record until some output credit comes back (overdraft exhausted).
    /// Returns `Cancelled` if the task is cancelled meanwhile.
    pub(crate) fn wait_for_credit(&mut self) -> Result<(), TaskError> {
        if self.mailbox.is_cancelled() {
            return Err(TaskError::cancelled());
        }
        self.metrics.begin_wait(true);
        let start = Instant::now();
        self.mailbox.signal().wait(None);
        self.metrics.add_backpressured(start.elapsed());
        Ok(())
    }
}
