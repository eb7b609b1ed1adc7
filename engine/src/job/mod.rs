//! Planning and running a job: validation, chaining, channels, one thread per task (taken from
//! the process's shared task pool, [`crate::pool`]).
//!
//! Planning resolves every operator's parallelism and max parallelism, validates the graph,
//! and groups operators into chains (an operator joins its predecessor's task when it has a
//! single input, the edge is forward, the parallelisms are equal and chaining is enabled).
//! Running creates one input gate per subtask of every chain head with network inputs, the
//! record writers of every network edge, and one thread per task, plus the job's
//! processing-time service thread.
//!
//! Failure: the first task that fails (error or panic) records a [`JobError::TaskFailed`] naming
//! the operator and subtask and cancels every other task; `join` waits for every thread and
//! returns that error. Nothing is left running after `join` returns.

mod checkpoint_coordinator;

use crate::error::panic_message;
use crate::pool::TaskThread;
use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use std::collections::BTreeMap;
use std::sync::mpsc::Sender;

use weir_state::checkpoint::format::FileKind;
use weir_state::checkpoint::{
    CheckpointKind, CheckpointStorage, CompletedCheckpoint, LocalCheckpointStorage,
};
use weir_state::KeyGroupRange;

use crate::checkpoint::messages::{coordinator_state_key, CheckpointMsg};
use crate::checkpoint::{ChannelStateSnapshot, CheckpointHistory, CheckpointStats, RestoreState};
use crate::config::{Config, ConfigError};
use crate::coordination::event::RunnerMsg;
use crate::coordination::gateway::{SubtaskChannel, ToCoordinator};
use crate::error::{CheckpointError, JobError, Result, TaskErrorKind, ValidationError};
use crate::graph::{EdgeWiring, Graph, NodeKind, PartitionKind};
use crate::mailbox::env::TaskEnv;
use crate::mailbox::signal::Signal;
use crate::mailbox::timer_service::TimerService;
use crate::mailbox::Mailbox;
use crate::metrics::{JobMetrics, TaskMetricsCell};
use crate::operator::OperatorInfo;
use crate::task::run::{TaskBody, TaskRuntime};
use checkpoint_coordinator::{CheckpointCoordinatorSetup, OperatorDescription};

mod handle;
mod launch;
mod observer;
pub mod overview;
mod plan;
mod restore;
mod supervise;

pub use handle::{JobCanceller, JobHandle};
use launch::*;
pub use observer::JobObserver;
pub use overview::{JobException, JobPlan, JobState, PlanEdge, Vertex};
use plan::*;
use restore::*;
pub(crate) use supervise::start;
use supervise::*;

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    /// Every source ended and every record was processed.
    Finished,
    /// The job was cancelled.
    Cancelled,
}

/// The result of a job that did not fail.
#[derive(Debug, Clone)]
pub struct JobResult {
    /// How it ended.
    pub status: JobStatus,
    /// Wall-clock duration.
    pub duration: Duration,
    /// Final metrics of every task (rates over each task's lifetime).
    pub metrics: JobMetrics,
    /// Statistics of every finished checkpoint.
    pub checkpoints: Vec<CheckpointStats>,
    /// How often the job was restarted after a failure.
    pub restarts: usize,
}
