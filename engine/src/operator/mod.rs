//! The operator API: the traits the built-in operators use, and that custom operators implement.
//!
//! - [`Operator`]: one input, one output; sees every record, watermark and its own
//!   processing-time timers; `open` before the first record, `finish` at the end of input
//!   (emit what is buffered), `close` last.
//! - [`KeyedOperator`]: the same on a keyed stream, with keyed state and per-key timers in both
//!   time domains; every call runs "for" one key (the record's or the timer's).
//! - [`Source`]: polled by its task; emits a bounded batch per poll and returns, so the task can
//!   serve its mailbox between polls.
//! - [`Sink`]: the end of a pipeline.
//! - [`watermarks`]: the operator that applies a [`watermarks::WatermarkStrategy`] after a
//!   source.
//!
//! Invariants: user code runs only on its task's thread and never concurrently with itself;
//! emitting never blocks on a full channel (the record completes, then the task stops taking
//! input) unless one record overflows the overdraft; an error returned (or a panic) fails the
//! job with the operator's name and subtask. Operator state goes into checkpoints through
//! `snapshot_state` and comes back through `restore_state` (keyed state and timers are
//! snapshotted by the engine).

pub(crate) mod output;
pub mod watermarks;

use std::collections::BTreeSet;
use std::time::Duration;

use weir_state::{
    KeyedStateBackend, KeyedTimers, ListStateHandle, MapStateHandle, ValueStateHandle,
};

use crate::coordination::gateway::ToCoordinator;
use crate::coordination::OperatorEvent;
use crate::data::{Data, Key};
use crate::error::{TaskError, UserError};
use crate::fence::CommitFence;
use crate::mailbox::env::TaskEnv;
use crate::operator::output::Output;
use crate::time::{now_ms, StreamStatus, Timer, Watermark};

/// Who an operator instance is: its name, uid and place among its parallel subtasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorInfo {
    /// The operator's name.
    pub name: String,
    /// The operator's stable uid.
    pub uid: String,
    /// This subtask's index, zero-based.
    pub subtask: usize,
    /// The operator's parallelism.
    pub parallelism: usize,
    /// The operator's max parallelism (number of key groups).
    pub max_parallelism: usize,
    /// Asked right before every external commit (two-phase-commit sinks): a job that was taken
    /// over by another runtime must not commit. [`CommitFence::always`] for embedded jobs.
    pub commit_fence: CommitFence,
}

/// What an operator can do while it handles a call: emit, read time, register timers.
pub struct Context<'a, O> {
    pub(crate) out: &'a mut dyn Output<O>,
    pub(crate) coordinator: Option<&'a ToCoordinator>,
    pub(crate) env: &'a mut TaskEnv,
    pub(crate) timers: &'a mut BTreeSet<i64>,
    pub(crate) info: &'a OperatorInfo,
    pub(crate) watermark: Watermark,
    pub(crate) error: Option<TaskError>,
}

impl<'a, O: Data> Context<'a, O> {
    /// Emits a record downstream.
    #[inline]
    pub fn emit(&mut self, record: O) {
        if self.error.is_none() {
            if let Err(e) = self.out.element(record, self.env) {
                self.error = Some(e);
            }
        }
    }

    /// Emits a watermark downstream (operators that override `process_watermark` call this to
    /// forward it).
    pub fn emit_watermark(&mut self, watermark: Watermark) {
        if self.error.is_none() {
            if let Err(e) = self.out.watermark(watermark, self.env) {
                self.error = Some(e);
            }
        }
    }

    /// Marks this operator's output idle (it holds no watermark back downstream) or active.
    pub fn emit_status(&mut self, status: StreamStatus) {
        if self.error.is_none() {
            if let Err(e) = self.out.status(status, self.env) {
                self.error = Some(e);
            }
        }
    }

    /// Asks for [`Operator::on_timer`] at processing time `timestamp` (ms since the epoch).
    /// Registering the same time twice gives one call.
    pub fn register_processing_time_timer(&mut self, timestamp: i64) {
        if self.timers.insert(timestamp) {
            self.env.request_timer(timestamp);
        }
    }

    /// Cancels a processing-time timer.
    pub fn delete_processing_time_timer(&mut self, timestamp: i64) {
        self.timers.remove(&timestamp);
    }

    /// The current processing time (ms since the epoch).
    pub fn current_processing_time(&self) -> i64 {
        now_ms()
    }

    /// The operator's current input watermark.
    pub fn current_watermark(&self) -> Watermark {
        self.watermark
    }

    /// Who this operator instance is.
    pub fn info(&self) -> &OperatorInfo {
        self.info
    }

    /// Sends an event to this operator's coordinator (never blocks); an error if the operator
    /// has none.
    ///
    /// # Errors
    ///
    /// Returns an error when this operator has no coordinator (attach one with
    /// [`coordinated_by`](crate::DataStream::coordinated_by)), and
    /// [`EventError::CoordinatorClosed`](crate::coordination::EventError::CoordinatorClosed) when
    /// its coordinator is closed (the job ended). Both are boxed in a [`UserError`]; the event is
    /// dropped.
    pub fn send_to_coordinator<E: Data>(&self, event: E) -> Result<(), UserError> {
        send_to_coordinator(self.coordinator, self.info, event)
    }
}

fn send_to_coordinator<E: Data>(
    coordinator: Option<&ToCoordinator>,
    info: &OperatorInfo,
    event: E,
) -> Result<(), UserError> {
    match coordinator {
        Some(c) => c.send(event),
        None => Err(format!(
            "operator '{}' has no coordinator to send events to (attach one with coordinated_by)",
            info.name
        )
        .into()),
    }
}

fn no_event_handler(event: &OperatorEvent) -> UserError {
    format!(
        "received a coordinator event ({}) but does not handle events (implement handle_operator_event)",
        event.type_name()
    )
    .into()
}

/// A one-input, one-output operator.
pub trait Operator: Send + 'static {
    /// Input record type.
    type In: Data;
    /// Output record type.
    type Out: Data;

    /// Called once before any other call.
    ///
    /// # Errors
    ///
    /// An error fails the task with [`JobError::TaskFailed`](crate::JobError::TaskFailed) before it
    /// takes any input; the job restarts or fails according to its
    /// [restart strategy](crate::restart).
    fn open(&mut self, _ctx: &mut Context<'_, Self::Out>) -> Result<(), UserError> {
        Ok(())
    }
    /// Called for every record.
    ///
    /// # Errors
    ///
    /// An error fails the task with [`JobError::TaskFailed`](crate::JobError::TaskFailed); the job
    /// restarts or fails according to its [restart strategy](crate::restart).
    fn process_element(
        &mut self,
        element: Self::In,
        ctx: &mut Context<'_, Self::Out>,
    ) -> Result<(), UserError>;
    /// Called when the input watermark advances; the default forwards it.
    ///
    /// # Errors
    ///
    /// An error fails the task with [`JobError::TaskFailed`](crate::JobError::TaskFailed); the job
    /// restarts or fails according to its [restart strategy](crate::restart).
    fn process_watermark(
        &mut self,
        watermark: Watermark,
        ctx: &mut Context<'_, Self::Out>,
    ) -> Result<(), UserError> {
        ctx.emit_watermark(watermark);
        Ok(())
    }
    /// Called when a processing-time timer registered through the context is due.
    ///
    /// # Errors
    ///
    /// An error fails the task with [`JobError::TaskFailed`](crate::JobError::TaskFailed); the job
    /// restarts or fails according to its [restart strategy](crate::restart).
    fn on_timer(
        &mut self,
        _timer: Timer,
        _ctx: &mut Context<'_, Self::Out>,
    ) -> Result<(), UserError> {
        Ok(())
    }
    /// Called once at the end of input: emit what is still buffered. Processing-time timers
    /// still pending are dropped (as in Flink): `on_timer` is never called after `finish`.
    ///
    /// # Errors
    ///
    /// An error fails the task with [`JobError::TaskFailed`](crate::JobError::TaskFailed); the job
    /// restarts or fails according to its [restart strategy](crate::restart).
    fn finish(&mut self, _ctx: &mut Context<'_, Self::Out>) -> Result<(), UserError> {
        Ok(())
    }
    /// An event from this operator's coordinator (see [`coordination`](crate::coordination)),
    /// between records. The default fails: an operator with a coordinator that sends events
    /// implements this.
    ///
    /// # Errors
    ///
    /// An error fails the task with [`JobError::TaskFailed`](crate::JobError::TaskFailed); the job
    /// restarts or fails according to its [restart strategy](crate::restart). The default
    /// implementation always returns an error naming the event's type.
    fn handle_operator_event(
        &mut self,
        event: OperatorEvent,
        _ctx: &mut Context<'_, Self::Out>,
    ) -> Result<(), UserError> {
        Err(no_event_handler(&event))
    }
    /// Called when checkpoint `checkpoint_id` is taken, right before `snapshot_state`: what the
    /// operator emits here goes downstream *before* the barrier (Flink's
    /// `prepareSnapshotPreBarrier`) — e.g. the files a writer closed, for a committer whose
    /// state at this checkpoint must hold them.
    ///
    /// # Errors
    ///
    /// An error declines checkpoint `checkpoint_id`
    /// ([`CheckpointError::Declined`](crate::CheckpointError::Declined)) and does not fail the
    /// task; declines count towards `execution.checkpointing.tolerable-failed-checkpoints`.
    fn prepare_snapshot_pre_barrier(
        &mut self,
        _checkpoint_id: u64,
        _ctx: &mut Context<'_, Self::Out>,
    ) -> Result<(), UserError> {
        Ok(())
    }
    /// Returns this subtask's operator (non-keyed) state for checkpoint `checkpoint_id`, or
    /// `None` if it has none. Called on the task thread between records; encode with
    /// [`encode_state`](crate::checkpoint::encode_state).
    ///
    /// # Errors
    ///
    /// An error declines checkpoint `checkpoint_id`
    /// ([`CheckpointError::Declined`](crate::CheckpointError::Declined)) and does not fail the
    /// task; declines count towards `execution.checkpointing.tolerable-failed-checkpoints`.
    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<Option<Vec<u8>>, UserError> {
        Ok(None)
    }
    /// Restores what `snapshot_state` returned; called before `open` when the job is restored.
    ///
    /// # Errors
    ///
    /// An error fails the task with [`JobError::TaskFailed`](crate::JobError::TaskFailed) before
    /// `open` is called; the job restarts or fails according to its
    /// [restart strategy](crate::restart).
    fn restore_state(&mut self, _state: &[u8]) -> Result<(), UserError> {
        Ok(())
    }
    /// Checkpoint `checkpoint_id` completed: every task's state of it is durable. The operator
    /// may emit here (as in Flink, where a committer emits what it committed): the records go
    /// downstream after the checkpoint's barrier, so they belong to the next checkpoint.
    ///
    /// # Errors
    ///
    /// An error fails the task with [`JobError::TaskFailed`](crate::JobError::TaskFailed); the
    /// checkpoint stays complete, and the job restarts or fails according to its
    /// [restart strategy](crate::restart).
    fn notify_checkpoint_complete(
        &mut self,
        _checkpoint_id: u64,
        _ctx: &mut Context<'_, Self::Out>,
    ) -> Result<(), UserError> {
        Ok(())
    }
    /// Checkpoint `checkpoint_id` was aborted and will never complete.
    ///
    /// # Errors
    ///
    /// An error fails the task with [`JobError::TaskFailed`](crate::JobError::TaskFailed); the job
    /// restarts or fails according to its [restart strategy](crate::restart).
    fn notify_checkpoint_aborted(&mut self, _checkpoint_id: u64) -> Result<(), UserError> {
        Ok(())
    }
    /// Called last, also when the job fails or is cancelled: release resources. (After a panic
    /// it is not called; the operator is dropped.)
    ///
    /// # Errors
    ///
    /// If the task had finished, an error fails it with
    /// [`JobError::TaskFailed`](crate::JobError::TaskFailed) (the job restarts or fails according
    /// to its [restart strategy](crate::restart)); after a failure or a cancellation the error is
    /// dropped (the first error wins).
    fn close(&mut self) -> Result<(), UserError> {
        Ok(())
    }
}

/// What a keyed operator can do in `open`: register its states.
pub struct KeyedOpenContext<'a, K: Key> {
    pub(crate) state: &'a mut KeyedStateBackend<K>,
    pub(crate) info: &'a OperatorInfo,
}

impl<'a, K: Key> KeyedOpenContext<'a, K> {
    /// Registers (or finds) the value state `name`.
    ///
    /// # Errors
    ///
    /// Returns [`StateError::StateTypeMismatch`](weir_state::StateError::StateTypeMismatch) when
    /// `name` is registered, or was restored, as another kind of state or with another value type,
    /// and [`StateError::Decode`](weir_state::StateError::Decode) when restored entries of `name`
    /// do not decode into `V`; both boxed in a [`UserError`].
    pub fn value_state<V: Data>(&mut self, name: &str) -> Result<ValueStateHandle<V>, UserError> {
        Ok(self.state.register_value(name)?)
    }
    /// Registers (or finds) the list state `name`.
    ///
    /// # Errors
    ///
    /// Returns [`StateError::StateTypeMismatch`](weir_state::StateError::StateTypeMismatch) when
    /// `name` is registered, or was restored, as another kind of state or with another element
    /// type, and [`StateError::Decode`](weir_state::StateError::Decode) when restored entries of
    /// `name` do not decode into `V`; both boxed in a [`UserError`].
    pub fn list_state<V: Data>(&mut self, name: &str) -> Result<ListStateHandle<V>, UserError> {
        Ok(self.state.register_list(name)?)
    }
    /// Registers (or finds) the map state `name`.
    ///
    /// # Errors
    ///
    /// Returns [`StateError::StateTypeMismatch`](weir_state::StateError::StateTypeMismatch) when
    /// `name` is registered, or was restored, as another kind of state or with another key or value
    /// type, and [`StateError::Decode`](weir_state::StateError::Decode) when restored entries of
    /// `name` do not decode into `UK` and `UV`; both boxed in a [`UserError`].
    pub fn map_state<UK: Key, UV: Data>(
        &mut self,
        name: &str,
    ) -> Result<MapStateHandle<UK, UV>, UserError> {
        Ok(self.state.register_map(name)?)
    }
    /// Who this operator instance is.
    pub fn info(&self) -> &OperatorInfo {
        self.info
    }
}

/// What a keyed operator can do while it handles a record or a timer of one key.
pub struct KeyedContext<'a, K: Key, O> {
    pub(crate) key: &'a K,
    pub(crate) state: &'a mut KeyedStateBackend<K>,
    pub(crate) timers: &'a mut KeyedTimers<K>,
    pub(crate) out: &'a mut dyn Output<O>,
    pub(crate) env: &'a mut TaskEnv,
    pub(crate) info: &'a OperatorInfo,
    pub(crate) watermark: Watermark,
    pub(crate) error: Option<TaskError>,
}

impl<'a, K: Key, O: Data> KeyedContext<'a, K, O> {
    /// The key this call is for.
    pub fn current_key(&self) -> &K {
        self.key
    }
    /// Emits a record downstream.
    #[inline]
    pub fn emit(&mut self, record: O) {
        if self.error.is_none() {
            if let Err(e) = self.out.element(record, self.env) {
                self.error = Some(e);
            }
        }
    }
    /// The current key's value.
    #[inline]
    pub fn value<V: Data>(&self, h: &ValueStateHandle<V>) -> Option<&V> {
        self.state.value(h, self.key)
    }
    /// The current key's value, mutably.
    #[inline]
    pub fn value_mut<V: Data>(&mut self, h: &ValueStateHandle<V>) -> Option<&mut V> {
        self.state.value_mut(h, self.key)
    }
    /// Sets the current key's value.
    #[inline]
    pub fn set_value<V: Data>(&mut self, h: &ValueStateHandle<V>, value: V) {
        self.state.set_value(h, self.key, value)
    }
    /// Clears the current key's value, returning it.
    pub fn clear_value<V: Data>(&mut self, h: &ValueStateHandle<V>) -> Option<V> {
        self.state.clear_value(h, self.key)
    }
    /// The current key's list.
    pub fn list<V: Data>(&self, h: &ListStateHandle<V>) -> &[V] {
        self.state.list(h, self.key)
    }
    /// Appends to the current key's list.
    pub fn list_add<V: Data>(&mut self, h: &ListStateHandle<V>, value: V) {
        self.state.list_add(h, self.key, value)
    }
    /// Clears the current key's list, returning it.
    pub fn list_clear<V: Data>(&mut self, h: &ListStateHandle<V>) -> Vec<V> {
        self.state.list_clear(h, self.key)
    }
    /// An entry of the current key's map.
    pub fn map_get<UK: Key, UV: Data>(
        &self,
        h: &MapStateHandle<UK, UV>,
        user_key: &UK,
    ) -> Option<&UV> {
        self.state.map_get(h, self.key, user_key)
    }
    /// Puts an entry into the current key's map.
    pub fn map_put<UK: Key, UV: Data>(
        &mut self,
        h: &MapStateHandle<UK, UV>,
        user_key: UK,
        value: UV,
    ) -> Option<UV> {
        self.state.map_put(h, self.key, user_key, value)
    }
    /// Removes an entry of the current key's map.
    pub fn map_remove<UK: Key, UV: Data>(
        &mut self,
        h: &MapStateHandle<UK, UV>,
        user_key: &UK,
    ) -> Option<UV> {
        self.state.map_remove(h, self.key, user_key)
    }
    /// The entries of the current key's map.
    pub fn map_entries<UK: Key, UV: Data>(&self, h: &MapStateHandle<UK, UV>) -> Vec<(&UK, &UV)> {
        self.state.map_entries(h, self.key)
    }
    /// Registers an event-time timer for the current key (fires when the watermark reaches it).
    pub fn register_event_time_timer(&mut self, timestamp: i64) {
        self.timers.register_event_time(self.key, timestamp)
    }
    /// Deletes an event-time timer of the current key.
    pub fn delete_event_time_timer(&mut self, timestamp: i64) {
        self.timers.delete_event_time(self.key, timestamp)
    }
    /// Registers a processing-time timer for the current key (ms since the epoch).
    pub fn register_processing_time_timer(&mut self, timestamp: i64) {
        self.timers.register_processing_time(self.key, timestamp);
        self.env.request_timer(timestamp);
    }
    /// Deletes a processing-time timer of the current key.
    pub fn delete_processing_time_timer(&mut self, timestamp: i64) {
        self.timers.delete_processing_time(self.key, timestamp)
    }
    /// The current processing time (ms since the epoch).
    pub fn current_processing_time(&self) -> i64 {
        now_ms()
    }
    /// The operator's current input watermark.
    pub fn current_watermark(&self) -> Watermark {
        self.watermark
    }
    /// Who this operator instance is.
    pub fn info(&self) -> &OperatorInfo {
        self.info
    }
}

/// An operator on a keyed stream, with keyed state and keyed timers.
pub trait KeyedOperator: Send + 'static {
    /// The key type.
    type Key: Key;
    /// Input record type.
    type In: Data;
    /// Output record type.
    type Out: Data;

    /// Called once before any other call: register states here.
    ///
    /// # Errors
    ///
    /// An error fails the task with [`JobError::TaskFailed`](crate::JobError::TaskFailed) before it
    /// takes any input; the job restarts or fails according to its
    /// [restart strategy](crate::restart).
    fn open(&mut self, _ctx: &mut KeyedOpenContext<'_, Self::Key>) -> Result<(), UserError> {
        Ok(())
    }
    /// Called for every record, with its key current.
    ///
    /// # Errors
    ///
    /// An error fails the task with [`JobError::TaskFailed`](crate::JobError::TaskFailed); the job
    /// restarts or fails according to its [restart strategy](crate::restart).
    fn process_element(
        &mut self,
        element: Self::In,
        ctx: &mut KeyedContext<'_, Self::Key, Self::Out>,
    ) -> Result<(), UserError>;
    /// Called when a timer is due, with its key current. Event-time timers fire before the
    /// watermark that passed them is forwarded.
    ///
    /// # Errors
    ///
    /// An error fails the task with [`JobError::TaskFailed`](crate::JobError::TaskFailed); the job
    /// restarts or fails according to its [restart strategy](crate::restart).
    fn on_timer(
        &mut self,
        _timer: Timer,
        _ctx: &mut KeyedContext<'_, Self::Key, Self::Out>,
    ) -> Result<(), UserError> {
        Ok(())
    }
    /// Called once at the end of input (after the final watermark fired every event-time
    /// timer). Pending processing-time timers are dropped and never fire after this.
    ///
    /// # Errors
    ///
    /// An error fails the task with [`JobError::TaskFailed`](crate::JobError::TaskFailed); the job
    /// restarts or fails according to its [restart strategy](crate::restart).
    fn finish(&mut self, _ctx: &mut Context<'_, Self::Out>) -> Result<(), UserError> {
        Ok(())
    }
    /// Keyed state and timers are snapshotted by the engine; this is called when checkpoint
    /// `checkpoint_id` completed.
    ///
    /// # Errors
    ///
    /// An error fails the task with [`JobError::TaskFailed`](crate::JobError::TaskFailed); the
    /// checkpoint stays complete, and the job restarts or fails according to its
    /// [restart strategy](crate::restart).
    fn notify_checkpoint_complete(&mut self, _checkpoint_id: u64) -> Result<(), UserError> {
        Ok(())
    }
    /// Checkpoint `checkpoint_id` was aborted.
    ///
    /// # Errors
    ///
    /// An error fails the task with [`JobError::TaskFailed`](crate::JobError::TaskFailed); the job
    /// restarts or fails according to its [restart strategy](crate::restart).
    fn notify_checkpoint_aborted(&mut self, _checkpoint_id: u64) -> Result<(), UserError> {
        Ok(())
    }
    /// Called last, also on failure or cancellation.
    ///
    /// # Errors
    ///
    /// If the task had finished, an error fails it with
    /// [`JobError::TaskFailed`](crate::JobError::TaskFailed) (the job restarts or fails according
    /// to its [restart strategy](crate::restart)); after a failure or a cancellation the error is
    /// dropped (the first error wins).
    fn close(&mut self) -> Result<(), UserError> {
        Ok(())
    }
}

/// The end of a pipeline.
pub trait Sink: Send + 'static {
    /// Record type.
    type In: Data;
    /// Called once before any record.
    ///
    /// # Errors
    ///
    /// An error fails the task with [`JobError::TaskFailed`](crate::JobError::TaskFailed) before it
    /// takes any input; the job restarts or fails according to its
    /// [restart strategy](crate::restart).
    fn open(&mut self, _info: &OperatorInfo) -> Result<(), UserError> {
        Ok(())
    }
    /// Called for every record.
    ///
    /// # Errors
    ///
    /// An error fails the task with [`JobError::TaskFailed`](crate::JobError::TaskFailed); the job
    /// restarts or fails according to its [restart strategy](crate::restart).
    fn write(&mut self, record: Self::In) -> Result<(), UserError>;
    /// Called once at the end of input: flush.
    ///
    /// # Errors
    ///
    /// An error fails the task with [`JobError::TaskFailed`](crate::JobError::TaskFailed); the job
    /// restarts or fails according to its [restart strategy](crate::restart).
    fn finish(&mut self) -> Result<(), UserError> {
        Ok(())
    }
    /// Returns this subtask's operator (non-keyed) state for checkpoint `checkpoint_id`, or
    /// `None` if it has none. Called on the task thread between records; encode with
    /// [`encode_state`](crate::checkpoint::encode_state).
    ///
    /// # Errors
    ///
    /// An error declines checkpoint `checkpoint_id`
    /// ([`CheckpointError::Declined`](crate::CheckpointError::Declined)) and does not fail the
    /// task; declines count towards `execution.checkpointing.tolerable-failed-checkpoints`.
    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<Option<Vec<u8>>, UserError> {
        Ok(None)
    }
    /// Restores what `snapshot_state` returned; called before `open` when the job is restored.
    ///
    /// # Errors
    ///
    /// An error fails the task with [`JobError::TaskFailed`](crate::JobError::TaskFailed) before
    /// `open` is called; the job restarts or fails according to its
    /// [restart strategy](crate::restart).
    fn restore_state(&mut self, _state: &[u8]) -> Result<(), UserError> {
        Ok(())
    }
    /// Checkpoint `checkpoint_id` completed: every task's state of it is durable.
    ///
    /// # Errors
    ///
    /// An error fails the task with [`JobError::TaskFailed`](crate::JobError::TaskFailed); the
    /// checkpoint stays complete, and the job restarts or fails according to its
    /// [restart strategy](crate::restart).
    fn notify_checkpoint_complete(&mut self, _checkpoint_id: u64) -> Result<(), UserError> {
        Ok(())
    }
    /// Checkpoint `checkpoint_id` was aborted and will never complete.
    ///
    /// # Errors
    ///
    /// An error fails the task with [`JobError::TaskFailed`](crate::JobError::TaskFailed); the job
    /// restarts or fails according to its [restart strategy](crate::restart).
    fn notify_checkpoint_aborted(&mut self, _checkpoint_id: u64) -> Result<(), UserError> {
        Ok(())
    }
    /// Called last, also on failure or cancellation.
    ///
    /// # Errors
    ///
    /// If the task had finished, an error fails it with
    /// [`JobError::TaskFailed`](crate::JobError::TaskFailed) (the job restarts or fails according
    /// to its [restart strategy](crate::restart)); after a failure or a cancellation the error is
    /// dropped (the first error wins).
    fn close(&mut self) -> Result<(), UserError> {
        Ok(())
    }
}

/// What a source reports after a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceStatus {
    /// More records may be available now: poll again soon.
    MoreAvailable,
    /// Nothing available now: poll again after this long (mails are served meanwhile).
    Pending(Duration),
    /// The source is exhausted (bounded input ends).
    Finished,
}

/// What a source can do while polled.
pub struct SourceContext<'a, T> {
    pub(crate) out: &'a mut dyn Output<T>,
    pub(crate) coordinator: Option<&'a ToCoordinator>,
    pub(crate) env: &'a mut TaskEnv,
    pub(crate) info: &'a OperatorInfo,
    pub(crate) error: Option<TaskError>,
    pub(crate) emitted: usize,
}

/// Records a source emits per poll at most, before it must yield to the task loop.
pub const SOURCE_BATCH: usize = 1024;

impl<'a, T: Data> SourceContext<'a, T> {
    /// Emits a record.
    #[inline]
    pub fn emit(&mut self, record: T) {
        self.emitted += 1;
        if self.error.is_none() {
            if let Err(e) = self.out.element(record, self.env) {
                self.error = Some(e);
            }
        }
    }
    /// Whether the source should return from `poll_next` now: the task has mail, an output
    /// channel ran out of credit, or a batch was emitted. Check it after every record.
    #[inline]
    pub fn should_yield(&self) -> bool {
        self.env.attention
            || self.emitted >= SOURCE_BATCH
            || self.error.is_some()
            || self.env.mailbox.has_mail()
    }
    /// Emits a watermark.
    pub fn emit_watermark(&mut self, watermark: Watermark) {
        if self.error.is_none() {
            if let Err(e) = self.out.watermark(watermark, self.env) {
                self.error = Some(e);
            }
        }
    }
    /// Marks the source idle or active.
    pub fn emit_status(&mut self, status: StreamStatus) {
        if self.error.is_none() {
            if let Err(e) = self.out.status(status, self.env) {
                self.error = Some(e);
            }
        }
    }
    /// Who this source instance is.
    pub fn info(&self) -> &OperatorInfo {
        self.info
    }
    /// Sends an event to this source's coordinator (never blocks); an error if it has none.
    ///
    /// # Errors
    ///
    /// Returns an error when this source has no coordinator (attach one with
    /// [`coordinated_by`](crate::DataStream::coordinated_by)), and
    /// [`EventError::CoordinatorClosed`](crate::coordination::EventError::CoordinatorClosed) when
    /// its coordinator is closed (the job ended). Both are boxed in a [`UserError`]; the event is
    /// dropped.
    pub fn send_to_coordinator<E: Data>(&self, event: E) -> Result<(), UserError> {
        send_to_coordinator(self.coordinator, self.info, event)
    }
}

/// A source of records, polled by its task.
pub trait Source: Send + 'static {
    /// Record type.
    type Out: Data;
    /// Called once before the first poll.
    ///
    /// # Errors
    ///
    /// An error fails the task with [`JobError::TaskFailed`](crate::JobError::TaskFailed) before it
    /// takes any input; the job restarts or fails according to its
    /// [restart strategy](crate::restart).
    fn open(&mut self, _info: &OperatorInfo) -> Result<(), UserError> {
        Ok(())
    }
    /// Emits some records (stop when [`SourceContext::should_yield`] says so) and reports
    /// whether more may come.
    ///
    /// # Errors
    ///
    /// An error fails the task with [`JobError::TaskFailed`](crate::JobError::TaskFailed); the job
    /// restarts or fails according to its [restart strategy](crate::restart).
    fn poll_next(
        &mut self,
        ctx: &mut SourceContext<'_, Self::Out>,
    ) -> Result<SourceStatus, UserError>;
    /// An event from this source's coordinator, between polls; the source is polled right
    /// after. The default fails: a source with a coordinator that sends events implements this.
    ///
    /// # Errors
    ///
    /// An error fails the task with [`JobError::TaskFailed`](crate::JobError::TaskFailed); the job
    /// restarts or fails according to its [restart strategy](crate::restart). The default
    /// implementation always returns an error naming the event's type.
    fn handle_operator_event(&mut self, event: OperatorEvent) -> Result<(), UserError> {
        Err(no_event_handler(&event))
    }
    /// Returns this subtask's source state (its position) for checkpoint `checkpoint_id`, or
    /// `None` if it has none. Called between polls; encode with
    /// [`encode_state`](crate::checkpoint::encode_state).
    ///
    /// # Errors
    ///
    /// An error declines checkpoint `checkpoint_id`
    /// ([`CheckpointError::Declined`](crate::CheckpointError::Declined)) and does not fail the task
    /// (the barrier is still sent on); declines count towards
    /// `execution.checkpointing.tolerable-failed-checkpoints`.
    fn snapshot_state(&mut self, _checkpoint_id: u64) -> Result<Option<Vec<u8>>, UserError> {
        Ok(None)
    }
    /// Restores what `snapshot_state` returned; called before `open` when the job is restored.
    ///
    /// # Errors
    ///
    /// An error fails the task with [`JobError::TaskFailed`](crate::JobError::TaskFailed) before
    /// `open` is called; the job restarts or fails according to its
    /// [restart strategy](crate::restart).
    fn restore_state(&mut self, _state: &[u8]) -> Result<(), UserError> {
        Ok(())
    }
    /// Checkpoint `checkpoint_id` completed: every task's state of it is durable.
    ///
    /// # Errors
    ///
    /// An error fails the task with [`JobError::TaskFailed`](crate::JobError::TaskFailed); the
    /// checkpoint stays complete, and the job restarts or fails according to its
    /// [restart strategy](crate::restart).
    fn notify_checkpoint_complete(&mut self, _checkpoint_id: u64) -> Result<(), UserError> {
        Ok(())
    }
    /// Checkpoint `checkpoint_id` was aborted and will never complete.
    ///
    /// # Errors
    ///
    /// An error fails the task with [`JobError::TaskFailed`](crate::JobError::TaskFailed); the job
    /// restarts or fails according to its [restart strategy](crate::restart).
    fn notify_checkpoint_aborted(&mut self, _checkpoint_id: u64) -> Result<(), UserError> {
        Ok(())
    }
    /// Called last, also on failure or cancellation.
    ///
    /// # Errors
    ///
    /// If the task had finished, an error fails it with
    /// [`JobError::TaskFailed`](crate::JobError::TaskFailed) (the job restarts or fails according
    /// to its [restart strategy](crate::restart)); after a failure or a cancellation the error is
    /// dropped (the first error wins).
    fn close(&mut self) -> Result<(), UserError> {
        Ok(())
    }
}
