//! Benchmarks users run to explore their settings (`weir bench …`).
//!
//! - [`backpressure`]: how long checkpoints take under full backpressure in each barrier mode;
//! - [`async_io`]: the async I/O operator's throughput against Little's law, and its
//!   checkpoints with a full queue;
//! - [`coordinator`]: round trips of coordinator events.

pub mod async_io;
pub mod backpressure;
pub mod coordinator;
pub mod short_jobs;
