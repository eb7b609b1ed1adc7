//! The record writer: the output end of a task towards one downstream operator.
//!
//! It routes each record to a channel (forward, rebalance, broadcast or by key group), appends
//! it to that channel's partial buffer and seals the buffer when it holds
//! `records_per_buffer` records. Sealed buffers and events wait in a per-channel *pending*
//! queue until credit lets them go. A task never blocks here while it has overdraft left: it
//! finishes the current record and the task loop, seeing `blocked_channels > 0`, stops taking
//! input and waits on its signal (serving mails meanwhile). Only a single record that fills
//! more than `max-overdraft-buffers` buffers on one channel waits inside the record.

use std::collections::VecDeque;
use std::marker::PhantomData;

use weir_state::checkpoint::CheckpointKind;
use weir_state::key_group::{key_group_for_hash, key_hash, operator_index_for_key_group};

use super::ChannelSend;
use super::{Event, Message, SendOutcome};
use crate::checkpoint::Barrier;
use crate::data::{Data, Key, KeySelector};
use crate::error::TaskError;
use crate::mailbox::env::TaskEnv;

/// Chooses the output channel of a record.
pub(crate) trait Partitioner<T>: Send + 'static {
    /// The channel of `record`, or `None` for every channel.
    fn route(&mut self, record: &T, channels: usize) -> Option<usize>;
}

/// Subtask i sends to subtask i (one channel).
pub(crate) struct ForwardPartitioner;
impl<T> Partitioner<T> for ForwardPartitioner {
    #[inline]
    fn route(&mut self, _: &T, _: usize) -> Option<usize> {
        Some(0)
    }
}

/// Records go round-robin over all channels.
pub(crate) struct RebalancePartitioner {
    pub next: usize,
}
impl<T> Partitioner<T> for RebalancePartitioner {
    #[inline]
    fn route(&mut self, _: &T, channels: usize) -> Option<usize> {
        let c = self.next;
        self.next += 1;
        if self.next == channels {
            self.next = 0;
        }
        Some(c)
    }
}

/// Every record goes to every channel.
pub(crate) struct BroadcastPartitioner;
impl<T> Partitioner<T> for BroadcastPartitioner {
    #[inline]
    fn route(&mut self, _: &T, _: usize) -> Option<usize> {
        None
    }
}

/// Records go to the subtask owning their key's key group.
///
/// The key group → channel mapping is a table built once, and the key group is a mask when the
/// max parallelism is a power of two (the default, 128): no division per record.
pub(crate) struct KeyGroupPartitioner<T, K, F> {
    key: F,
    max_parallelism: u64,
    mask: Option<u64>,
    channel_of_group: Vec<u32>,
    _t: PhantomData<fn(&T) -> K>,
}

impl<T, K, F> KeyGroupPartitioner<T, K, F> {
    pub(crate) fn new(key: F, max_parallelism: usize, channels: usize) -> Self {
        KeyGroupPartitioner {
            key,
            max_parallelism: max_parallelism as u64,
            mask: max_parallelism
                .is_power_of_two()
                .then(|| max_parallelism as u64 - 1),
            channel_of_group: (0..max_parallelism)
                .map(|g| operator_index_for_key_group(max_parallelism, channels, g) as u32)
                .collect(),
            _t: PhantomData,
        }
    }
}

impl<T: Data, K: Key, F: KeySelector<T, K>> Partitioner<T> for KeyGroupPartitioner<T, K, F> {
    #[inline]
    fn route(&mut self, record: &T, _channels: usize) -> Option<usize> {
        let h = key_hash(&(self.key)(record));
        let group = match self.mask {
            Some(m) => h & m,
            None => key_group_for_hash(h, self.max_parallelism as usize) as u64,
        };
        Some(self.channel_of_group[group as usize] as usize)
    }
}

struct ChannelOut<T> {
    sender: Box<dyn ChannelSend<T>>,
    /// The partial buffer: a `Vec` (a push is a length check and a store); it becomes the
    /// channel's `VecDeque` buffer without copying when sealed.
    current: Vec<T>,
    pending: VecDeque<Message<T>>,
    pending_buffers: usize,
    pending_records: usize,
    blocked: bool,
    spare: Option<VecDeque<T>>,
    /// Records per buffer on this channel: the configured size, or what the receiver announced
    /// (buffer debloating).
    limit: usize,
}

impl<T: Clone> ChannelOut<T> {
    /// Copies of the records waiting here, in order: the pending buffers, then the partial one.
    fn waiting_records(&self) -> Vec<T> {
        let mut records = Vec::new();
        for m in &self.pending {
            if let Message::Records(b) = m {
                records.extend(b.iter().cloned());
            }
        }
        records.extend(self.current.iter().cloned());
        records
    }
}

/// Settings of a writer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriterSettings {
    /// Records per buffer until a receiver announces a size (buffer debloating starts small).
    pub records_per_buffer: usize,
    /// The most records a buffer may hold (segment size and record bound).
    pub max_records_per_buffer: usize,
    /// Bytes per record, to turn an announced buffer size into records.
    pub record_size: usize,
    pub flush_every_record: bool,
    pub max_overdraft: usize,
    /// Aligned checkpoints time out into unaligned ones
    /// (`execution.checkpointing.aligned-checkpoint-timeout`).
    pub alignment_timeout: bool,
}

/// Writes a task's records to the channels of one downstream edge.
pub(crate) struct RecordWriter<T, P> {
    channels: Vec<ChannelOut<T>>,
    partitioner: P,
    settings: WriterSettings,
    /// Identifies this writer's edge in channel state (`producer uid -> consumer uid #edge`).
    key: String,
    /// Encoded output records of an unaligned checkpoint, sent again first after a restore.
    replay: Option<Vec<u8>>,
}

impl<T: Data, P: Partitioner<T>> RecordWriter<T, P> {
    pub(crate) fn new(
        senders: Vec<Box<dyn ChannelSend<T>>>,
        partitioner: P,
        settings: WriterSettings,
    ) -> Self {
        RecordWriter {
            channels: senders
                .into_iter()
                .map(|sender| ChannelOut {
                    sender,
                    current: Vec::new(),
                    pending: VecDeque::new(),
                    pending_buffers: 0,
                    pending_records: 0,
                    blocked: false,
                    spare: None,
                    limit: settings.records_per_buffer.max(1),
                })
                .collect(),
            partitioner,
            settings,
            key: String::new(),
            replay: None,
        }
    }

    /// Names the writer's edge and gives it output records to send again first (restore).
    pub(crate) fn with_channel_state(mut self, key: String, replay: Option<Vec<u8>>) -> Self {
        self.key = key;
        self.replay = replay;
        self
    }

    /// Appends `record` to channel `idx`'s partial buffer. The per-record path is only this;
    /// starting a buffer and sending a full one are out of line (`start_buffer`,
    /// `buffer_full`), so the path inlines into every caller.
    #[inline]
    fn push(&mut self, idx: usize, record: T, env: &mut TaskEnv) -> Result<(), TaskError> {
        let ch = &mut self.channels[idx];
        if ch.current.is_empty() {
            Self::start_buffer(ch, env);
        }
        ch.current.push(record);
        if ch.current.len() >= ch.limit || self.settings.flush_every_record {
            return self.buffer_full(idx, env);
        }
        Ok(())
    }

    /// The first record goes into an empty buffer: take a recycled one and ask for a flush.
    #[cold]
    #[inline(never)]
    fn start_buffer(ch: &mut ChannelOut<T>, env: &mut TaskEnv) {
        if ch.current.capacity() == 0 {
            ch.current = ch
                .spare
                .take()
                .map_or_else(|| Vec::with_capacity(ch.limit), Vec::from);
        }
        env.request_flush();
    }

    /// Channel `idx`'s buffer is full: seal it and send what credit allows.
    #[cold]
    #[inline(never)]
    fn buffer_full(&mut self, idx: usize, env: &mut TaskEnv) -> Result<(), TaskError> {
        self.seal(idx, env);
        self.send(idx, env)?;
        // Overdraft exhausted inside one record: wait for credit right here.
        while self.channels[idx].pending_buffers > self.settings.max_overdraft {
            env.wait_for_credit()?;
            self.send(idx, env)?;
        }
        Ok(())
    }

    /// Moves the partial buffer of `idx` (if any) to its pending queue.
    fn seal(&mut self, idx: usize, env: &mut TaskEnv) {
        let ch = &mut self.channels[idx];
        if ch.current.is_empty() {
            return;
        }
        let next = ch.spare.take().map(Vec::from).unwrap_or_default();
        let full = VecDeque::from(std::mem::replace(&mut ch.current, next));
        ch.pending_records += full.len();
        env.pending_records += full.len();
        ch.pending.push_back(Message::Records(full));
        ch.pending_buffers += 1;
        env.pending_buffers += 1;
    }

    /// Queues an event on channel `idx` behind its data. A watermark or status directly behind
    /// another of its kind replaces it (only the latest counts), so events waiting for credit
    /// stay bounded; sealing the partial buffer obeys the overdraft limit like records do.
    fn push_event(&mut self, idx: usize, event: Event, env: &mut TaskEnv) -> Result<(), TaskError> {
        self.seal(idx, env);
        let ch = &mut self.channels[idx];
        let replaces = matches!(
            (ch.pending.back(), &event),
            (
                Some(Message::Event(Event::Watermark(_))),
                Event::Watermark(_)
            ) | (Some(Message::Event(Event::Status(_))), Event::Status(_))
        );
        if replaces {
            ch.pending.pop_back();
        }
        ch.pending.push_back(Message::Event(event));
        self.send(idx, env)?;
        while self.channels[idx].pending_buffers > self.settings.max_overdraft {
            env.wait_for_credit()?;
            self.send(idx, env)?;
        }
        Ok(())
    }

    /// Sends what credit allows on channel `idx`, keeping `env`'s counters right; returns what
    /// the channel answered (nothing when nothing waited).
    fn send(&mut self, idx: usize, env: &mut TaskEnv) -> Result<SendOutcome, TaskError> {
        let ch = &mut self.channels[idx];
        if ch.pending.is_empty() {
            return Ok(SendOutcome::default());
        }
        // An aligned barrier takes the (few, overdraft-bounded) buffers ahead of it into the
        // receiver's gate without credit, unless the channel still owes such an overdraft (see
        // `aligned_barrier`).
        let forced = ch
            .pending
            .iter()
            .rposition(|m| matches!(m, Message::Event(Event::Barrier(_))))
            .map_or(0, |i| i + 1);
        let outcome = ch
            .sender
            .send(&mut ch.pending, &mut ch.spare, forced)
            .map_err(|e| TaskError::user(env.current_operator, e.into()))?;
        if let Some(bytes) = outcome.buffer_bytes {
            ch.limit = bytes
                .checked_div(self.settings.record_size)
                .unwrap_or(usize::MAX)
                .clamp(1, self.settings.max_records_per_buffer.max(1));
        }
        if outcome.sent_buffers > 0 {
            let left: usize = ch
                .pending
                .iter()
                .map(|m| {
                    if let Message::Records(b) = m {
                        b.len()
                    } else {
                        0
                    }
                })
                .sum();
            env.pending_records -= ch.pending_records - left;
            ch.pending_records = left;
            ch.pending_buffers -= outcome.sent_buffers;
            env.pending_buffers -= outcome.sent_buffers;
        }
        let blocked = !ch.pending.is_empty();
        if blocked != ch.blocked {
            ch.blocked = blocked;
            if blocked {
                env.blocked_channels += 1;
                env.attention = true;
            } else {
                env.blocked_channels -= 1;
            }
        }
        Ok(outcome)
    }

    /// Queues `event` on every channel behind its data.
    pub(crate) fn broadcast_event(
        &mut self,
        event: Event,
        env: &mut TaskEnv,
    ) -> Result<(), TaskError> {
        for idx in 0..self.channels.len() {
            self.push_event(idx, event.clone(), env)?;
        }
        Ok(())
    }

    /// Routes `record` to its channel (or every channel) and buffers it there.
    #[inline]
    pub(crate) fn emit(&mut self, record: T, env: &mut TaskEnv) -> Result<(), TaskError> {
        env.records_out += 1;
        let n = self.channels.len();
        match self.partitioner.route(&record, n) {
            Some(idx) => self.push(idx, record, env),
            None => {
                for idx in 0..n - 1 {
                    self.push(idx, record.clone(), env)?;
                }
                self.push(n - 1, record, env)
            }
        }
    }

    /// Queues an aligned barrier on every channel behind its data, where the buffers ahead of
    /// it go into the receiver's gate even without credit (an overdraft), so that a receiver
    /// whose alignment times out finds it in its queue.
    ///
    /// With an alignment timeout, a channel that cannot take the barrier now and still owes the
    /// overdraft of a previous one (its receiver has not even reached that barrier's data: it is
    /// too far behind for any alignment to finish in time) gets this barrier unaligned at once,
    /// as Flink 1.16 times out a barrier waiting in an output: it goes through the priority
    /// lane and the records waiting here become output channel state, returned per channel.
    /// So every barrier is either in its receiver's queue or in its priority lane, and a gate
    /// holds at most one overdraft per channel however often barriers come.
    ///
    /// # Errors
    /// The transport could not carry the barrier or a buffer.
    pub(crate) fn aligned_barrier(
        &mut self,
        barrier: Barrier,
        env: &mut TaskEnv,
    ) -> Result<Vec<(usize, Vec<T>)>, TaskError> {
        let mut in_flight = Vec::new();
        // Savepoints are always aligned.
        let may_time_out =
            self.settings.alignment_timeout && barrier.kind == CheckpointKind::Checkpoint;
        for idx in 0..self.channels.len() {
            if may_time_out {
                self.seal(idx, env);
                let outcome = self.send(idx, env)?;
                let ch = &self.channels[idx];
                if outcome.overdrawn > 0 && !ch.pending.is_empty() {
                    let records = ch.waiting_records();
                    if !records.is_empty() {
                        in_flight.push((idx, records));
                    }
                    let unaligned = Barrier {
                        unaligned: true,
                        ..barrier
                    };
                    ch.sender
                        .send_priority(Event::Barrier(unaligned))
                        .map_err(|e| TaskError::user(env.current_operator, e.into()))?;
                    continue;
                }
            }
            self.push_event(idx, Event::Barrier(barrier), env)?;
        }
        Ok(in_flight)
    }

    /// An unaligned barrier overtakes what waits here: copies of the pending and partial
    /// buffers of each channel (which still go out normally afterwards), then the barrier goes
    /// through every channel's priority lane. Per channel, because a replay must put each
    /// record back on the channel it waited for, not route it again (a broadcast record waits
    /// on each channel separately).
    ///
    /// # Errors
    /// The transport could not carry the barrier.
    pub(crate) fn overtake(
        &mut self,
        barrier: Barrier,
        env: &TaskEnv,
    ) -> Result<Vec<(usize, Vec<T>)>, TaskError> {
        let mut in_flight: Vec<(usize, Vec<T>)> = Vec::new();
        for (idx, ch) in self.channels.iter().enumerate() {
            let records = ch.waiting_records();
            if !records.is_empty() {
                in_flight.push((idx, records));
            }
        }
        for ch in &self.channels {
            ch.sender
                .send_priority(Event::Barrier(barrier))
                .map_err(|e| TaskError::user(env.current_operator, e.into()))?;
        }
        Ok(in_flight)
    }

    /// Sends restored output channel state again (`records` per channel), before anything
    /// new.
    ///
    /// # Errors
    /// A channel index this writer does not have (the state belongs to another topology).
    pub(crate) fn resend(
        &mut self,
        per_channel: Vec<(usize, Vec<T>)>,
        env: &mut TaskEnv,
    ) -> Result<(), TaskError> {
        for (idx, records) in per_channel {
            if idx >= self.channels.len() {
                let e = format!(
                    "output channel state names channel {idx} of {}",
                    self.channels.len()
                );
                return Err(TaskError::user(env.current_operator, e.into()));
            }
            for r in records {
                env.records_out += 1;
                self.push(idx, r, env)?;
            }
        }
        Ok(())
    }

    /// Sends pending buffers as credit allows; with `partial`, seals partial ones first.
    ///
    /// # Errors
    /// The transport could not carry a buffer.
    pub(crate) fn flush(&mut self, partial: bool, env: &mut TaskEnv) -> Result<(), TaskError> {
        for idx in 0..self.channels.len() {
            if partial {
                self.seal(idx, env);
            }
            self.send(idx, env)?;
        }
        Ok(())
    }

    /// The output records to send again first after a restore (once).
    pub(crate) fn take_replay(&mut self) -> Option<Vec<u8>> {
        self.replay.take()
    }

    /// This writer's edge in channel state (`producer uid -> consumer uid #edge`).
    pub(crate) fn key(&self) -> &str {
        &self.key
    }
}
