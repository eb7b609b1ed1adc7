//! # weir
//!
//! An embeddable stream-processing runtime: an operator graph with parallel subtasks, bounded
//! credit-based channels (a slow consumer throttles the source; memory never grows with input),
//! event time with watermarks, keyed state and timers.
//!
//! This crate is a thin facade over the workspace crates:
//! [`engine`] (weir-engine: runtime and job API), [`operators`] (weir-operators: built-in
//! sources, transforms, keyed operators and sinks), [`state`] (weir-state: key groups, keyed
//! state, timers, checkpoint storage), [`ha`] (weir-ha: leader election and persistence
//! services), [`session`] (weir-session: a long-lived runtime for many jobs) and
//! [`maintenance`] (weir-maintenance: the Iceberg sink and table maintenance). Most programs
//! only need the [`prelude`].
//!
//! ```
//! use weir::prelude::*;
//!
//! let env = StreamEnv::new();
//! let sums = env
//!     .generate_sequence(0..1000)
//!     .map(|x| (x % 10, x))
//!     .key_by(|(k, _)| *k)
//!     .reduce(|(k, a), (_, b)| (k, a + b))
//!     .collect();
//! env.execute().unwrap();
//! let mut last = std::collections::HashMap::new();
//! for (k, s) in sums.take() { last.insert(k, s); }
//! assert_eq!(last[&3], (0..1000).filter(|x| x % 10 == 3).sum::<u64>());
//! ```

pub mod bench;
pub mod demo;
pub mod jobs;
pub mod signals;

pub use weir_engine as engine;
pub use weir_ha as ha;
pub use weir_maintenance as maintenance;
pub use weir_operators as operators;
pub use weir_session as session;
pub use weir_state as state;

/// What most programs need: the job API, the operator traits and the built-in operators.
pub mod prelude {
    pub use weir_engine::{
        AsyncIo, Config, Context, Data, DataStream, JobError, JobHandle, JobResult, JobStatus, Key,
        KeyedContext, KeyedOpenContext, KeyedOperator, KeyedStream, Operator, OperatorInfo,
        OutputOrder, RetryStrategy, Sink, Source, SourceContext, SourceStatus, StreamEnv,
        StreamStatus, TimeDomain, Timer, UserError, Watermark, WatermarkStrategy,
    };
    pub use weir_operators::{
        CollectHandle, DataStreamExt, Generator, KeyedProcessFunction, KeyedStreamExt, StreamEnvExt,
    };
    pub use weir_state::{ListStateHandle, MapStateHandle, ValueStateHandle};
}
