//! Benchmarks users run to explore their settings (`weir bench …`).
//!
//! [`backpressure`]: how long checkpoints take under full backpressure in each barrier mode.

pub mod backpressure;
