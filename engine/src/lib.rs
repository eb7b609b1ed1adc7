//! # weir-engine: the stream runtime
//!
//! An operator graph ([`StreamEnv`], [`DataStream`], [`KeyedStream`]) runs as tasks: one thread
//! per subtask of each chain of forward-connected operators. Tasks talk through bounded,
//! credit-based channels ([`channel`]): a slow consumer throttles its producers
//! and memory never grows with the input. Each task runs a mailbox loop that serves timers and
//! control messages between records, even while it has no input or no output credit.
//!
//! Module map:
//! - [`stream`] — the typed job API; [`operator`] — the operator, source and sink traits;
//! - [`job`] — planning (validation, chaining) and execution, [`JobHandle`], [`JobResult`];
//! - `channel` — gates, credits, record writers; `task` — mailbox loops, chains, timers;
//! - [`time`] — watermarks, idleness, watermark strategies; [`metrics`]; [`config`].

#![warn(missing_docs)]

pub mod channel;
pub mod config;
pub mod data;
pub mod error;
pub(crate) mod graph;
pub mod job;
pub mod metrics;
pub mod operator;
pub mod stream;
pub(crate) mod task;
pub mod time;

pub use config::{Config, ConfigError, MemorySize};
pub use data::{Data, Key, KeySelector};
pub use error::{JobError, Result, UserError, ValidationError};
pub use job::{JobHandle, JobResult, JobStatus};
pub use metrics::{JobMetrics, TaskMetrics};
pub use operator::{
    Context, KeyedContext, KeyedOpenContext, KeyedOperator, Operator, OperatorInfo, Sink, Source,
    SourceContext, SourceStatus, SOURCE_BATCH,
};
pub use stream::{DataStream, DataStreamSink, KeyedStream, StreamEnv};
pub use time::strategy::WatermarkStrategy;
pub use time::{now_ms, StreamStatus, TimeDomain, Timer, Watermark};
pub use weir_state::{ListStateHandle, MapStateHandle, ValueStateHandle};
