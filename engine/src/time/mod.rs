//! Event time and processing time.
//!
//! - [`Watermark`]: "no record with a smaller timestamp follows". Watermarks travel in-band with
//!   the data, are monotonic per channel, and a task's watermark is the minimum over its active
//!   input channels ([`valve`]).
//! - [`StreamStatus`]: a source that has nothing to emit marks itself idle so it does not hold
//!   back the watermark downstream; it becomes active again with its next record.
//! - Processing time is wall-clock milliseconds since the Unix epoch, as in Flink.
//! - Watermark strategies (bounded out-of-orderness, periodic emission, idleness) are applied
//!   by an operator: [`crate::operator::watermarks`].

pub mod valve;

use serde::{Deserialize, Serialize};

/// A watermark: event time (milliseconds) up to which the stream is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Watermark(pub i64);

impl Watermark {
    /// The watermark before any record: nothing is known.
    pub const MIN: Watermark = Watermark(i64::MIN);
    /// The watermark at the end of input: every event-time timer fires.
    pub const MAX: Watermark = Watermark(i64::MAX);
    /// The timestamp.
    pub fn timestamp(self) -> i64 {
        self.0
    }
}

/// Whether a stream currently produces records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StreamStatus {
    /// The stream produces records and its watermark counts.
    Active,
    /// The stream is idle: it is ignored when the minimum watermark is computed.
    Idle,
}

/// The time domain of a timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TimeDomain {
    /// Fires when the watermark passes the timer's timestamp.
    EventTime,
    /// Fires when the wall clock passes the timer's timestamp.
    ProcessingTime,
}

/// A timer that fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timer {
    /// The time it was registered for (ms).
    pub timestamp: i64,
    /// Its time domain.
    pub domain: TimeDomain,
}

/// The current processing time: milliseconds since the Unix epoch (weir's one clock).
pub use weir_state::now_ms;
