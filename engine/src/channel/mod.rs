//! Bounded, credit-based channels between tasks.
//!
//! A *channel* joins one upstream subtask to one downstream subtask; the channels that end at one
//! subtask form its *input gate*. Records travel in *buffers*: batches bounded by a record count
//! and by bytes (`taskmanager.memory.segment-size`). Events (watermarks, stream status, end of
//! input, checkpoint barriers) travel in-band, in order with the buffers.
//!
//! Credit: a sender may put a buffer into a channel only with a credit, which is one of the
//! channel's *exclusive* buffers (`buffers-per-channel`, default 2) or one of the gate's
//! *floating* buffers (`floating-buffers-per-gate`, default 8). The receiver returns the credit
//! when it takes the buffer out. A sender without credit keeps the buffer and waits: that is
//! backpressure. Hence the invariant: the buffers queued in a gate never exceed
//! `channels × exclusive + floating`, whatever the rates, and memory stays bounded. One
//! exception, bounded too: the few buffers ahead of an aligned barrier may go in without credit
//! (so a receiver whose alignment times out finds the barrier in its queue), as an *overdraft*
//! of the channel that is repaid when the receiver takes them; a channel that still owes one
//! forces nothing more, so a gate holds at most its credit plus one overdraft per channel.
//!
//! Events need no credit (they are tiny and few): consecutive watermarks or status changes in
//! a queue are coalesced, so even a stalled receiver holds a bounded number of them. The
//! *priority lane* lets an event overtake every queued buffer (used by unaligned checkpoints).
//!
//! Empty buffers are recycled from receiver to sender through the gate, so a steady stream
//! allocates nothing per buffer.
//!
//! **Buffer debloating** ([`debloat`]): a gate may announce a smaller buffer size and a lower
//! credit, sized to its task's throughput. The announcement reaches a sender with the outcome of
//! its sends (with credit), so it crosses any transport behind the seam below.
//!
//! **The transport seam**: a record writer sends through [`ChannelSend`], never through a
//! concrete channel. The in-process channel ([`gate::ChannelSender`]) is one implementation;
//! [`encoded::EncodedSender`] is another, which carries every buffer and event across a pipe
//! as versioned bytes and decodes it on the far side before it enters the receiver's gate (how
//! a channel between processes behaves; `execution.channel-transport = encoded`). A channel to
//! another process is one more implementation of [`ChannelSend`] and its receiving half; the
//! task loop and the writer do not change.

pub(crate) mod debloat;
pub(crate) mod encoded;
pub(crate) mod gate;
pub(crate) mod writer;

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::time::{StreamStatus, Watermark};

/// An in-band event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// The outcome of a send attempt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SendOutcome {
    /// Some message could not be sent for lack of credit.
    pub blocked: bool,
    /// Records buffers that were sent.
    pub sent_buffers: usize,
    /// The buffer size the receiver announced (buffer debloating), bytes: the sender cuts its
    /// next buffers at it. It travels with credit, as a remote receiver's announcement would.
    pub buffer_bytes: Option<usize>,
    /// Buffers the receiver holds from this channel beyond its credit (forced ahead of a
    /// barrier and not taken yet); it travels with credit.
    pub overdrawn: usize,
}

/// A channel could not carry a message (a transport that encodes or crosses a process
/// boundary; the in-process channel never fails).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("channel {channel}: {reason}")]
pub(crate) struct ChannelError {
    /// The channel's index in the receiving gate.
    pub channel: usize,
    /// What went wrong.
    pub reason: String,
}

/// The sending half of one channel, as a record writer uses it: normal sends of buffers and
/// events under credit, and the priority lane of unaligned barriers.
///
/// Credit is the channel's: a buffer moves only with a credit of the receiver (an exclusive
/// buffer of the channel or a floating buffer of its gate); a sender without credit keeps the
/// buffer in `pending` and is woken through its task's signal when credit returns. Events need
/// no credit. Whatever an implementation does with the bytes, the receiver sees exactly the
/// messages sent, in order, and never holds more buffers than its credit allows.
pub(crate) trait ChannelSend<T>: Send {
    /// Moves the leading messages of `pending` into the channel while credit allows; events go
    /// without credit. The first `forced` messages (the buffers ahead of a barrier, bounded by
    /// the writer's overdraft) go beyond credit when there is none, as an overdraft of the
    /// channel, unless it still owes a previous one ([`SendOutcome::overdrawn`]). Takes a
    /// recycled empty buffer into `spare` when one is free.
    ///
    /// # Errors
    /// [`ChannelError`] when the transport cannot carry a message; what was not sent stays in
    /// `pending`.
    fn send(
        &self,
        pending: &mut VecDeque<Message<T>>,
        spare: &mut Option<VecDeque<T>>,
        forced: usize,
    ) -> Result<SendOutcome, ChannelError>;

    /// Sends `event` through the priority lane, ahead of every buffer queued in the channel
    /// (unaligned checkpoint barriers). The records it overtakes are captured at this moment and
    /// handed to the receiver with the event, so the receiver learns exactly which queued
    /// records precede it (they become channel state).
    ///
    /// # Errors
    /// [`ChannelError`] when the transport cannot carry the event.
    fn send_priority(&self, event: Event) -> Result<(), ChannelError>;
}
