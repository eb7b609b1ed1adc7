//! The output of an operator: the interface every link of a task's chain implements.
//!
//! An operator emits into an [`Output`] (its [`Context`](super::Context) holds one); the task
//! drives its chain through the same interface, head first. Implementations live above this
//! module: chained operators and fan-outs (`task::chain`), network outputs
//! (`task::network_output`), async I/O links (`async_io`).

use crate::checkpoint::{Barrier, Captured, OperatorSubtaskState};
use crate::coordination::OperatorEvent;
use crate::error::TaskError;
use crate::mailbox::env::TaskEnv;
use crate::time::{StreamStatus, Watermark};

/// What an operator emits into: the rest of its chain (the next operator, a fan-out, or a
/// network output), seen from the operator. Every call a task makes on its chain goes through
/// this interface too: records, watermarks and status, then the lifecycle, timers, coordinator
/// events, async completions, flushes and the checkpoint steps.
pub(crate) trait Output<T>: Send {
    /// A record.
    fn element(&mut self, record: T, env: &mut TaskEnv) -> Result<(), TaskError>;
    /// The input watermark advanced.
    fn watermark(&mut self, wm: Watermark, env: &mut TaskEnv) -> Result<(), TaskError>;
    /// The input became idle or active.
    fn status(&mut self, status: StreamStatus, env: &mut TaskEnv) -> Result<(), TaskError>;
    /// Processing time is `now`: fire due timers; return the earliest timer left in the chain.
    fn processing_time(&mut self, _now: i64, _env: &mut TaskEnv) -> Result<Option<i64>, TaskError> {
        Ok(None)
    }
    /// Called once before any record, tail first.
    fn open(&mut self, _env: &mut TaskEnv) -> Result<(), TaskError> {
        Ok(())
    }
    /// End of input: finish this operator, then the rest of the chain.
    fn end_of_input(&mut self, env: &mut TaskEnv) -> Result<(), TaskError>;
    /// Release everything; best effort, also after a failure.
    fn close(&mut self, _env: &mut TaskEnv) -> Result<(), TaskError> {
        Ok(())
    }
    /// An event from the coordinator of the chain's operator `operator` (by index): the
    /// operator with that index handles it; returns the event if no link of this branch has
    /// that index.
    fn operator_event(
        &mut self,
        _operator: usize,
        event: OperatorEvent,
        _env: &mut TaskEnv,
    ) -> Result<Option<OperatorEvent>, TaskError> {
        Ok(Some(event))
    }
    /// Async I/O operators of the chain apply completed requests and emit what they may.
    fn poll_async(&mut self, _env: &mut TaskEnv) -> Result<(), TaskError> {
        Ok(())
    }
    /// Send pending output buffers as credit allows; with `partial`, seal partial ones first.
    fn flush(&mut self, _partial: bool, _env: &mut TaskEnv) -> Result<(), TaskError> {
        Ok(())
    }
    /// Snapshot every operator of the chain for checkpoint `id` into `out`.
    fn snapshot(
        &mut self,
        id: u64,
        env: &mut TaskEnv,
        out: &mut Vec<OperatorSubtaskState>,
    ) -> Result<(), TaskError>;
    /// Forward a barrier (writers emit it on every output channel). For an unaligned barrier,
    /// writers add their in-flight output records to `captured` (by writer key) and send the
    /// barrier through the priority lane.
    fn barrier(
        &mut self,
        barrier: Barrier,
        env: &mut TaskEnv,
        captured: &mut Captured,
    ) -> Result<(), TaskError>;
    /// Tell every operator that checkpoint `id` completed (or was aborted).
    fn notify_checkpoint(
        &mut self,
        id: u64,
        complete: bool,
        env: &mut TaskEnv,
    ) -> Result<(), TaskError>;
}
