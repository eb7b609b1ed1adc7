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
//! ## Layers
//!
//! The top-level modules form layers; a module uses only modules of layers below its own
//! (checked by a unit test, `layers`, that reads the `crate::` paths of the sources), bottom
//! first:
//!
//! 1. [`data`] (record and key types), [`config`] (typed options with Flink's names), [`fence`]
//!    (the commit fence), [`pool`] (the shared task threads);
//! 2. [`error`], [`restart`] (restart strategies), [`metrics`] (task counters, the gate-usage
//!    probe);
//! 3. [`time`] — watermarks, stream status, timers, the watermark valve;
//! 4. [`checkpoint`] — the checkpoint protocol: barriers, task states, the messages tasks send
//!    to the checkpoint coordinator, statistics; [`coordination`] — operator coordinators, their
//!    events, gateways and store;
//! 5. `mailbox` — a task's mailbox, its signal, its environment and timer service;
//! 6. `channel` — input gates, credits, the record writer (routing, buffering, credit);
//! 7. [`operator`] — the operator, source and sink traits, what they emit into, the watermark
//!    strategy operator;
//! 8. `task` — chains, the task loop, barrier alignment, network outputs;
//! 9. [`async_io`] — calls to external services with a bounded queue of requests in flight;
//! 10. `graph` — the job graph as the API builds it;
//! 11. [`job`] — planning, launching, restoring, supervising; the checkpoint coordinator;
//!     [`JobHandle`], [`JobResult`];
//! 12. [`stream`] — the typed job API: [`StreamEnv`], [`DataStream`], [`KeyedStream`].

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
#[cfg(test)]
mod layers;
pub(crate) mod mailbox;
pub mod metrics;
pub mod operator;
pub mod pool;
pub mod rest;
pub mod restart;
pub mod stream;
pub(crate) mod task;
pub mod time;

pub use async_io::{AsyncIo, OutputOrder, RetryStrategy};
pub use config::{
    ChannelTransport, CheckpointingMode, Config, ConfigError, MemorySize, RestartStrategyKind,
};
pub use data::{Data, Key, KeySelector};
pub use error::{CheckpointError, JobError, Result, UserError, ValidationError};
pub use fence::{CommitFence, CommitRefused};
pub use job::{JobHandle, JobResult, JobStatus};
pub use metrics::{JobMetrics, TaskMetrics};
pub use operator::watermarks::WatermarkStrategy;
pub use operator::{
    Context, KeyedContext, KeyedOpenContext, KeyedOperator, Operator, OperatorInfo, Sink, Source,
    SourceContext, SourceStatus, SOURCE_BATCH,
};
pub use stream::{DataStream, DataStreamSink, KeyedStream, StreamEnv};
pub use time::{now_ms, StreamStatus, TimeDomain, Timer, Watermark};
pub use weir_state::{ListStateHandle, MapStateHandle, ValueStateHandle};
