//! # weir-engine: the stream runtime
//!
//! An operator graph ([`StreamEnv`], [`DataStream`], [`KeyedStream`]) runs as tasks: one thread
//! per subtask of each chain of forward-connected operators. Tasks talk through bounded,
//! credit-based channels ([`channel`]): a slow consumer throttles its producers
//! and memory never grows with the input. Each task runs a mailbox loop that serves timers and
//! control messages between records, even while it has no input or no output credit.
//!
//! A job built directly on the engine's operator API (the built-in `map`, `reduce`, ... of
//! `weir-operators` are written exactly like this):
//!
//! ```
//! use weir_engine::{Context, Operator, Sink, Source, SourceContext, SourceStatus, StreamEnv, UserError};
//!
//! struct Count { next: u64, end: u64 }
//! impl Source for Count {
//!     type Out = u64;
//!     fn poll_next(&mut self, ctx: &mut SourceContext<'_, u64>) -> Result<SourceStatus, UserError> {
//!         while !ctx.should_yield() {
//!             if self.next == self.end { return Ok(SourceStatus::Finished); }
//!             ctx.emit(self.next);
//!             self.next += 1;
//!         }
//!         Ok(SourceStatus::MoreAvailable)
//!     }
//! }
//!
//! struct Square;
//! impl Operator for Square {
//!     type In = u64;
//!     type Out = u64;
//!     fn process_element(&mut self, x: u64, ctx: &mut Context<'_, u64>) -> Result<(), UserError> {
//!         ctx.emit(x * x);
//!         Ok(())
//!     }
//! }
//!
//! struct Total(std::sync::Arc<std::sync::atomic::AtomicU64>);
//! impl Sink for Total {
//!     type In = u64;
//!     fn write(&mut self, x: u64) -> Result<(), UserError> {
//!         self.0.fetch_add(x, std::sync::atomic::Ordering::Relaxed);
//!         Ok(())
//!     }
//! }
//!
//! let total = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
//! let t = total.clone();
//! let env = StreamEnv::new();
//! env.add_non_parallel_source("Count", |_| Count { next: 0, end: 10 })
//!     .rebalance()
//!     .transform("Square", |_| Square)
//!     .set_parallelism(2)
//!     .sink("Total", move |_| Total(t.clone()));
//! env.execute().unwrap();
//! assert_eq!(total.load(std::sync::atomic::Ordering::Relaxed), 285);
//! ```
//!
//! Module map:
//! - [`stream`] — the typed job API; [`operator`] — the operator, source and sink traits;
//! - [`async_io`] — calls to external services with a bounded queue of requests in flight;
//! - [`coordination`] — job-side coordinators of operators, their events and store;
//! - [`job`] — planning (validation, chaining) and execution, [`JobHandle`], [`JobResult`];
//! - [`pool`] — the shared task threads (a session runtime, crate `weir-session`, runs many
//!   jobs on them); [`fence`] — the commit fence two-phase-commit sinks ask before committing;
//! - `channel` — gates, credits, record writers; `task` — mailbox loops, chains, timers;
//! - [`time`] — watermarks, idleness, watermark strategies; [`metrics`]; [`config`].

#![warn(missing_docs)]

pub mod async_io;
pub mod channel;
pub mod checkpoint;
pub mod config;
pub mod coordination;
pub mod data;
pub mod error;
pub mod fence;
pub(crate) mod graph;
pub mod job;
pub mod metrics;
pub mod operator;
pub mod pool;
pub mod restart;
pub mod stream;
pub(crate) mod task;
pub mod time;

pub use async_io::{AsyncIo, OutputOrder, RetryStrategy};
pub use config::{CheckpointingMode, Config, ConfigError, MemorySize, RestartStrategyKind};
pub use data::{Data, Key, KeySelector};
pub use error::{CheckpointError, JobError, Result, UserError, ValidationError};
pub use fence::{CommitFence, CommitRefused};
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
