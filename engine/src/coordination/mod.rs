//! # Operator coordinators: job-side components that talk with subtasks
//!
//! Some decisions need one place that sees all subtasks of an operator: which split a source
//! subtask reads next, when a maintenance run may start, when a committer has finished. A
//! [`Coordinator`] is attached to an operator with
//! [`DataStream::coordinated_by`](crate::DataStream::coordinated_by); one instance runs per
//! operator per job, on its own thread (never on a task thread, never blocking one), for the
//! whole job: it survives restarts and is reset to the restored checkpoint.
//!
//! - **Events** go both ways, typed and serialisable: the coordinator sends `ToSubtask`
//!   events through the [`SubtaskGateway`] it is given when a subtask's attempt is ready; an
//!   operator sends `FromSubtask` events with `Context::send_to_coordinator` (or
//!   `SourceContext::send_to_coordinator`) and receives events in
//!   `Operator::handle_operator_event` / `Source::handle_operator_event`, on its task thread
//!   between records, like any mail.
//! - **Calls** for one subtask come in the order ready → failed → reset → ready: `attempt_ready`
//!   when a subtask's attempt starts, `attempt_failed` when its attempt ended by a failure,
//!   `subtask_reset` when it is restored. A whole-job restore first calls
//!   `reset_to_checkpoint` with the coordinator's state from that checkpoint.
//! - **Checkpoints** (see the `gateway` module): the coordinator is checkpointed before
//!   any source; events it sent before its checkpoint result are handled by their subtasks
//!   before the barrier; events sent after it wait until the subtask took the checkpoint. So a
//!   restore never finds an event on the wrong side of the barrier.
//! - **Failures**: an error returned by a coordinator (or a panic in it) fails the job, which
//!   restarts as its restart strategy says. A gateway of an attempt that is not running
//!   refuses events with an error; an event in transit to a task that fails is lost with it,
//!   and the coordinator hears `attempt_failed` for that subtask and the resets that follow.
//! - **The store** ([`CoordinatorStore`]): a concurrent map shared by all coordinators of a
//!   job, with atomic put-if-absent and compute.

pub(crate) mod event;
pub(crate) mod gateway;
pub(crate) mod runner;
mod store;

use std::fmt::Debug;

use crate::data::Data;
use crate::error::UserError;

pub use event::OperatorEvent;
pub use gateway::{EventError, SubtaskGateway};
pub use store::CoordinatorStore;

/// Who a coordinator works for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorInfo {
    /// The operator's name.
    pub name: String,
    /// The operator's uid.
    pub uid: String,
    /// The operator's parallelism (number of subtasks).
    pub parallelism: usize,
}

/// What a coordinator can reach in every call.
pub struct CoordinatorContext {
    pub(crate) info: CoordinatorInfo,
    pub(crate) store: CoordinatorStore,
}

impl CoordinatorContext {
    /// The operator this coordinator works for.
    pub fn info(&self) -> &CoordinatorInfo {
        &self.info
    }
    /// The store shared by all coordinators of the job.
    pub fn store(&self) -> &CoordinatorStore {
        &self.store
    }
}

/// A job-side component of an operator: one instance per operator per job.
///
/// Every method runs on the coordinator's own thread, one at a time, in the order the events
/// happened. An error fails the job.
pub trait Coordinator: Send + 'static {
    /// Events the coordinator sends to subtasks.
    type ToSubtask: Data + Debug;
    /// Events subtasks send to the coordinator.
    type FromSubtask: Data + Debug;

    /// Called once, before any other call except a `reset_to_checkpoint` of a job started
    /// from a checkpoint.
    ///
    /// # Errors
    ///
    /// An error fails the job before any task runs, without a restart:
    /// [`StreamEnv::start`](crate::StreamEnv::start) returns it as
    /// [`JobError::CoordinatorFailed`](crate::JobError::CoordinatorFailed).
    fn start(&mut self, _ctx: &CoordinatorContext) -> Result<(), UserError> {
        Ok(())
    }
    /// An event from `subtask` (of `attempt`).
    ///
    /// # Errors
    ///
    /// An error fails the job's current attempt with
    /// [`JobError::CoordinatorFailed`](crate::JobError::CoordinatorFailed) (or the next attempt, if
    /// none is running); the job restarts or fails according to its
    /// [restart strategy](crate::restart).
    fn handle_event(
        &mut self,
        subtask: usize,
        attempt: u32,
        event: Self::FromSubtask,
        ctx: &CoordinatorContext,
    ) -> Result<(), UserError>;
    /// The coordinator's state for checkpoint `checkpoint_id`. Events sent after this returns
    /// reach each subtask after it took the checkpoint.
    ///
    /// # Errors
    ///
    /// An error declines the checkpoint
    /// ([`CheckpointError::Declined`](crate::CheckpointError::Declined)) and, like any error of a
    /// coordinator, also fails the job's current attempt with
    /// [`JobError::CoordinatorFailed`](crate::JobError::CoordinatorFailed); the job restarts or
    /// fails according to its [restart strategy](crate::restart).
    fn checkpoint(
        &mut self,
        checkpoint_id: u64,
        ctx: &CoordinatorContext,
    ) -> Result<Vec<u8>, UserError>;
    /// Checkpoint `checkpoint_id` completed (every subtask's state and this coordinator's are
    /// durable).
    ///
    /// # Errors
    ///
    /// An error fails the job's current attempt with
    /// [`JobError::CoordinatorFailed`](crate::JobError::CoordinatorFailed) (or the next attempt, if
    /// none is running); the job restarts or fails according to its
    /// [restart strategy](crate::restart).
    fn checkpoint_complete(
        &mut self,
        _checkpoint_id: u64,
        _ctx: &CoordinatorContext,
    ) -> Result<(), UserError> {
        Ok(())
    }
    /// Checkpoint `checkpoint_id` was aborted.
    ///
    /// # Errors
    ///
    /// An error fails the job's current attempt with
    /// [`JobError::CoordinatorFailed`](crate::JobError::CoordinatorFailed) (or the next attempt, if
    /// none is running); the job restarts or fails according to its
    /// [restart strategy](crate::restart).
    fn checkpoint_aborted(
        &mut self,
        _checkpoint_id: u64,
        _ctx: &CoordinatorContext,
    ) -> Result<(), UserError> {
        Ok(())
    }
    /// The whole job is restored from checkpoint `checkpoint_id` with this coordinator's
    /// `state` from it; `None` when it restarts without a checkpoint (from scratch).
    ///
    /// # Errors
    ///
    /// An error fails the restart that called it with
    /// [`JobError::CoordinatorFailed`](crate::JobError::CoordinatorFailed), and the
    /// [restart strategy](crate::restart) decides whether to try again; when the job starts from a
    /// checkpoint, [`StreamEnv::start`](crate::StreamEnv::start) returns the error.
    fn reset_to_checkpoint(
        &mut self,
        checkpoint_id: Option<u64>,
        state: Option<&[u8]>,
        ctx: &CoordinatorContext,
    ) -> Result<(), UserError>;
    /// `subtask` is restored from checkpoint `checkpoint_id` (`None`: from scratch).
    ///
    /// # Errors
    ///
    /// An error fails the job's current attempt with
    /// [`JobError::CoordinatorFailed`](crate::JobError::CoordinatorFailed) (or the next attempt, if
    /// none is running); the job restarts or fails according to its
    /// [restart strategy](crate::restart).
    fn subtask_reset(
        &mut self,
        _subtask: usize,
        _checkpoint_id: Option<u64>,
        _ctx: &CoordinatorContext,
    ) -> Result<(), UserError> {
        Ok(())
    }
    /// The attempt `attempt` of `subtask` ended by a failure (`reason`); events in transit to
    /// it are lost.
    ///
    /// # Errors
    ///
    /// An error fails the job's current attempt with
    /// [`JobError::CoordinatorFailed`](crate::JobError::CoordinatorFailed) (or the next attempt, if
    /// none is running); the job restarts or fails according to its
    /// [restart strategy](crate::restart).
    fn attempt_failed(
        &mut self,
        _subtask: usize,
        _attempt: u32,
        _reason: &str,
        _ctx: &CoordinatorContext,
    ) -> Result<(), UserError> {
        Ok(())
    }
    /// The attempt `attempt` of `subtask` runs; `gateway` sends events to it.
    ///
    /// # Errors
    ///
    /// An error fails the job's current attempt with
    /// [`JobError::CoordinatorFailed`](crate::JobError::CoordinatorFailed) (or the next attempt, if
    /// none is running); the job restarts or fails according to its
    /// [restart strategy](crate::restart).
    fn attempt_ready(
        &mut self,
        subtask: usize,
        attempt: u32,
        gateway: SubtaskGateway<Self::ToSubtask>,
        ctx: &CoordinatorContext,
    ) -> Result<(), UserError>;
    /// Called last, when the job ended (finished, failed or cancelled).
    ///
    /// # Errors
    ///
    /// An error is ignored: the job has already ended.
    fn close(&mut self, _ctx: &CoordinatorContext) -> Result<(), UserError> {
        Ok(())
    }
}
