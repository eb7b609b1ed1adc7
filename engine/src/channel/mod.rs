//! Bounded, credit-based channels between tasks.
//!
//! A *channel* joins one upstream subtask to one downstream subtask; the channels that end at one
//! subtask form its *input gate*. Records travel in *buffers*: batches bounded by a record count
//! and by bytes (`taskmanager.memory.segment-size`). Events (watermarks, stream status, end of
//! input; barriers later) travel in-band, in order with the buffers.
//!
//! Credit: a sender may put a buffer into a channel only with a credit, which is one of the
//! channel's *exclusive* buffers (`buffers-per-channel`, default 2) or one of the gate's
//! *floating* buffers (`floating-buffers-per-gate`, default 8). The receiver returns the credit
//! when it takes the buffer out. A sender without credit keeps the buffer and waits: that is
//! backpressure. Hence the invariant: the buffers queued in a gate never exceed
//! `channels × exclusive + floating`, whatever the rates, and memory stays bounded.
//!
//! Events need no credit (they are tiny and few): consecutive watermarks or status changes in
//! a queue are coalesced, so even a stalled receiver holds a bounded number of them. The
//! *priority lane* lets an event overtake every queued buffer (used by unaligned checkpoints).
//!
//! Empty buffers are recycled from receiver to sender through the gate, so a steady stream
//! allocates nothing per buffer.

pub(crate) mod gate;
pub(crate) mod writer;

use std::collections::VecDeque;

use crate::time::{StreamStatus, Watermark};

/// An in-band event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Event time has advanced.
    Watermark(Watermark),
    /// The sender became idle or active.
    Status(StreamStatus),
    /// The sender will send nothing more on this channel.
    EndOfInput,
    /// A checkpoint barrier: everything before it belongs to checkpoint `id`.
    Barrier(crate::checkpoint::Barrier),
}

/// What a channel carries: a buffer of records or one event.
#[derive(Debug)]
pub(crate) enum Message<T> {
    Records(VecDeque<T>),
    Event(Event),
}
